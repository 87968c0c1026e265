/*
 * transaction_harness - what the transaction tests share (see
 * transaction_harness.h): an in-memory store behind store.h's backend
 * table, an SPF double, the configuration, the captured log, and the
 * stages of a transaction.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include "policy.h"
#include "store.h"
#include "transaction_harness.h"

/*
 * ---- an in-memory store: token buckets that never refill ---------------
 * A calendar window (period_ms 0) counts under its key and the start of
 * the window it names (bounds[1]), so a refund naming another window
 * gives nothing back, as the script's; the clock is the caller's.
 */

struct th_store th_store;

static unsigned long *fake_find(const char *key)
{
	for (size_t i = 0; i < th_store.buckets; i++)
		if (strcmp(th_store.bucket[i].key, key) == 0)
			return &th_store.bucket[i].used;
	assert_true(th_store.buckets < TH_KEYS);
	snprintf(th_store.bucket[th_store.buckets].key, sizeof(th_store.bucket[0].key), "%s", key);
	th_store.bucket[th_store.buckets].used = 0;
	return &th_store.bucket[th_store.buckets++].used;
}

static unsigned long *fake_used(const struct store_bucket *b)
{
	char key[256];
	if (b->period_ms != 0)
		return fake_find(b->key);
	snprintf(key, sizeof(key), "%s@%lld", b->key, b->bounds[1]);
	return fake_find(key);
}

static void *fake_open(const struct settings *s, struct diag *errs)
{
	(void)s;
	(void)errs;
	return &th_store;
}

static void fake_close(void *impl)
{
	(void)impl;
}

static enum store_status fake_charge(void *impl, long long offset, const struct store_bucket *b,
				     size_t nb, const struct store_window *w, size_t nw,
				     struct store_charge_result *res, char *err, size_t errlen)
{
	(void)impl;
	(void)offset;
	(void)w;
	(void)nw;
	if (th_store.down) {
		snprintf(err, errlen, "redis unavailable: connection refused");
		return STORE_FAILED;
	}
	th_store.charges++;
	res->now_ms = store_now_ms(th_snap.store);
	for (size_t i = 0; i < nb; i++) {
		bool full = th_store.full && strstr(b[i].key, th_store.full);
		if (full || *fake_used(&b[i]) + b[i].cost > b[i].count) {
			res->admitted = false;
			res->over = i;
			res->retry_ms = 60000;
			return STORE_OK;
		}
	}
	for (size_t i = 0; i < nb; i++)
		*fake_used(&b[i]) += b[i].cost;
	res->admitted = true;
	return STORE_OK;
}

static enum store_status fake_refund(void *impl, long long offset, struct store_batch *batches,
				     size_t n, char *err, size_t errlen)
{
	(void)impl;
	(void)offset;
	if (th_store.down) {
		snprintf(err, errlen, "redis unavailable: connection refused");
		return STORE_FAILED;
	}
	th_store.refunds++;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < batches[i].nb; k++) {
			unsigned long *used = fake_used(&batches[i].buckets[k]);
			*used -= batches[i].buckets[k].cost < *used ? batches[i].buckets[k].cost : *used;
		}
	return STORE_OK;
}

static enum store_status fake_peek(void *impl, long long offset, const struct store_bucket *b,
				   size_t nb, struct store_level *out, long long *now_ms, char *err,
				   size_t errlen)
{
	(void)impl;
	(void)offset;
	(void)err;
	(void)errlen;
	for (size_t i = 0; i < nb; i++)
		out[i] = (struct store_level){ (double)*fake_used(&b[i]), 0 };
	*now_ms = store_now_ms(th_snap.store);
	return STORE_OK;
}

static enum store_status fake_forget(void *impl, const char *const *keys, size_t n, long *deleted,
				     char *err, size_t errlen)
{
	(void)impl;
	(void)keys;
	(void)n;
	(void)deleted;
	(void)err;
	(void)errlen;
	return STORE_OK;
}

static void fake_stats(void *impl, struct store_stats *out)
{
	(void)impl;
	memset(out, 0, sizeof(*out));
}

static const struct store_ops fake_store_ops = {
	.name = "fake", .open = fake_open, .close = fake_close, .charge = fake_charge,
	.refund = fake_refund, .peek = fake_peek, .forget = fake_forget, .stats = fake_stats,
};

/* ---- SPF: answers set by the test --------------------------------------- */

struct th_spf th_spf;

static enum spf_outcome spf_double_check(void *impl, const struct netaddr *client, const char *helo,
					 const char *mail_from, char *detail, size_t len)
{
	(void)impl;
	(void)client;
	(void)helo;
	(void)mail_from;
	th_spf.checks++;
	snprintf(detail, len, "%s", th_spf.detail);
	return th_spf.inbound;
}

static enum spf_outcome spf_double_egress(void *impl, const struct netaddr *egress, const char *helo,
					  const char *mail_from)
{
	(void)impl;
	(void)egress;
	(void)helo;
	(void)mail_from;
	return SPF_OUTCOME_PASS;
}

static enum dmarc_record spf_double_dmarc(void *impl, const char *domain)
{
	(void)impl;
	(void)domain;
	return DMARC_RECORD_FOUND;
}

static const struct transaction_spf spf_double = {
	.check = spf_double_check, .check_egress = spf_double_egress, .dmarc_record = spf_double_dmarc,
};

/* ---- the configuration: one class per rule and action ------------------- */

const char *const th_classes[TH_CLASSES] = {
	"over_tempfail", "over_reject", "over_hold", "over_tag",
	"bulk_tempfail", "bulk_reject", "bulk_hold", "bulk_tag",
	"spf_none", "spf_tag", "spf_tempfail", "spf_reject",
};
struct snapshot th_snap;

static void write_policy(char *buf, size_t len)
{
	static const char *const actions[] = { "tempfail", "reject", "hold", "tag" };
	size_t n = 0;
	for (size_t i = 0; i < 4; i++)
		n += (size_t)snprintf(buf + n, len - n,
				      "class over_%s {\n account sasl sender\n messages 1/1h\n"
				      " recipients 2/1h\n recipients 1/day to gmail.test\n over-limit %s\n}\n"
				      "class bulk_%s {\n account sasl sender\n bulk always\n"
				      " bulk-require list-unsubscribe\n bulk-noncompliant %s\n}\n",
				      actions[i], actions[i], actions[i], actions[i]);
	n += (size_t)snprintf(buf + n, len - n,
			      "class spf_none {\n}\nclass spf_tag {\n spf-fail tag\n}\n"
			      "class spf_tempfail {\n spf-fail tempfail\n}\nclass spf_reject {\n spf-fail reject\n}\n");
	for (size_t i = 0; i < TH_CLASSES; i++)
		n += (size_t)snprintf(buf + n, len - n,
				      "assign sasl %s %s\nassign sender %s@local.example %s\n"
				      "assign ip 192.0.2.%zu %s\n",
				      th_classes[i], th_classes[i], th_classes[i], th_classes[i], i + 1, th_classes[i]);
	assert_true(n < len);
}

int th_group_setup(void **state)
{
	char policy[8192], conf[512];
	struct diag d = { 0 };
	(void)state;
	write_policy(policy, sizeof(policy));
	snprintf(conf, sizeof(conf),
		 "Policy %s\nAuthservID mx.test.example\nInternalHosts 10.0.0.0/8\n", unit_file(policy));
	th_snap.settings = settings_load(unit_file(conf), &d);
	th_snap.policy = th_snap.settings ? policy_load(th_snap.settings->policy_path, &d) : NULL;
	diag_print(&d, stderr);
	assert_non_null(th_snap.settings);
	assert_non_null(th_snap.policy);
	th_snap.store = store_open_backend(&fake_store_ops, th_snap.settings, &d);
	assert_non_null(th_snap.store);
	th_snap.refs = 1;
	return 0;
}

int th_group_teardown(void **state)
{
	(void)state;
	store_close(th_snap.store);
	policy_free(th_snap.policy);
	settings_free(th_snap.settings);
	return 0;
}

/* ---- the log: captured per test ----------------------------------------- */

static char log_path[64];
static int log_saved = -1;

void th_log_capture(bool on)
{
	if (on) {
		int fd = open(log_path, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		log_saved = dup(STDERR_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	} else {
		dup2(log_saved, STDERR_FILENO);
		close(log_saved);
	}
}

bool th_logged(const char *text)
{
	char buf[65536];
	FILE *f = fopen(log_path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

void th_assert_logged(const char *text)
{
	if (th_logged(text))
		return;
	char cmd[128];
	fprintf(stderr, "  wanted in the log: %s\n  the log:\n", text);
	snprintf(cmd, sizeof(cmd), "sed 's/^/    /' %s >&2", log_path);
	assert_int_equal(system(cmd), 0);
	fail();
}

int th_setup(void **state)
{
	(void)state;
	memset(&th_store, 0, sizeof(th_store));
	th_spf = (struct th_spf){ .inbound = SPF_OUTCOME_PASS, .detail = "" };
	th_snap.settings->mode = MODE_ENFORCE;
	th_snap.settings->on_store_failure = STORE_FAILURE_ACCEPT;
	snprintf(log_path, sizeof(log_path), "/tmp/bm-unit-log-XXXXXX");
	int fd = mkstemp(log_path);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

int th_teardown(void **state)
{
	(void)state;
	unlink(log_path);
	return 0;
}

/* ---- driving a transaction ----------------------------------------------- */

struct transaction th_t;

void th_connect(enum th_way way, const char *cls)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(40000) };
	const char *host = "client.example";
	char ip[32] = "198.51.100.7";

	for (size_t i = 0; way == INBOUND && i < TH_CLASSES; i++)
		if (strcmp(th_classes[i], cls) == 0)
			snprintf(ip, sizeof(ip), "192.0.2.%zu", i + 1);
	if (way == LOCAL) {	/* what Postfix's cleanup says for sendmail(1) */
		snprintf(ip, sizeof(ip), "127.0.0.1");
		sin.sin_port = 0;
		host = "localhost";
	}
	inet_pton(AF_INET, ip, &sin.sin_addr);
	memset(&th_t, 0, sizeof(th_t));
	th_log_capture(true);
	transaction_connect(&th_t, &th_snap, host, (const struct sockaddr *)&sin);
	transaction_use_spf(&th_t, &spf_double, &th_spf);
	transaction_helo(&th_t, way == LOCAL ? "localhost" : "client.example");
	th_log_capture(false);
}

enum verdict th_mail(enum th_way way, const char *cls)
{
	char sender[128];
	snprintf(sender, sizeof(sender), "<%s%s>", way == LOCAL ? cls : way == INBOUND ? "bob@example.net"
				       : "alice@example.com", way == LOCAL ? "@local.example" : "");
	th_log_capture(true);
	enum verdict v = transaction_mail(&th_t, sender, way == OUTBOUND ? cls : NULL, "QID1");
	th_log_capture(false);
	return v;
}

enum verdict th_rcpt(void)
{
	return th_rcpt_to("<rcpt@example.net>");
}

enum verdict th_rcpt_to(const char *rcpt)
{
	th_log_capture(true);
	enum verdict v = transaction_rcpt(&th_t, rcpt, "QID1");
	th_log_capture(false);
	return v;
}

void th_header(const char *name, const char *value)
{
	th_log_capture(true);
	assert_int_equal(transaction_header(&th_t, name, value, "QID1"), VERDICT_CONTINUE);
	th_log_capture(false);
}

/* Headers (NULL-terminated name, value pairs), body, end of message. */
enum verdict th_content(const char *const *headers, const struct transaction_result **res)
{
	static const char body[] = "Hello.\r\n";
	for (size_t i = 0; headers && headers[i]; i += 2)
		th_header(headers[i], headers[i + 1]);
	th_log_capture(true);
	assert_int_equal(transaction_eoh(&th_t, "QID1"), VERDICT_CONTINUE);
	enum verdict b = transaction_body(&th_t, (const unsigned char *)body, sizeof(body) - 1);
	assert_true(b == VERDICT_CONTINUE || b == VERDICT_SKIP_BODY);
	enum verdict v = transaction_eom(&th_t, "QID1", res);
	th_log_capture(false);
	return v;
}

/* The end of the message, with the edits made: what the milter layer does. */
void th_end(enum verdict v)
{
	th_log_capture(true);
	transaction_end(&th_t, v);
	th_log_capture(false);
}

void th_disconnect(void)
{
	th_log_capture(true);
	assert_ptr_equal(transaction_close(&th_t), &th_snap);
	th_log_capture(false);
}

const char *const th_plain_headers[] = {
	"From", " Alice <alice@example.com>", "Subject", " hello", NULL,
};

void th_assert_edits(const struct th_edit *want, size_t max, const char *hold,
		     const struct transaction_result *res)
{
	size_t n = 0;
	while (n < max && want[n].name)
		n++;
	assert_non_null(res);
	assert_int_equal(res->edits, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(res->edit[i].op, want[i].op);
		assert_string_equal(res->edit[i].name, want[i].name);
		if (want[i].value)
			assert_string_equal(res->edit[i].value, want[i].value);
		else
			assert_null(res->edit[i].value);
		assert_int_equal(res->edit[i].index, want[i].index);
		assert_int_equal(res->edit[i].count, want[i].count);
	}
	assert_int_equal(res->sigs, 0);
	if (hold)
		assert_string_equal(res->hold_reason, hold);
	else
		assert_null(res->hold_reason);
}
