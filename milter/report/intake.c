/*
 * intake - what the milter does with a report passing through it
 * (intake.h). Decisions: only multipart/report bodies are kept (bounded);
 * a report counts only through a Feedback-ID that verifies, so a report
 * about mail we never sent, or a forged one, changes nothing; the
 * message's own verdict never depends on any of it.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "report.h"
#include "safety.h"
#include "suppress.h"

void intake_reset(struct intake *in)
{
	free(in->body);
	memset(in, 0, sizeof(*in));
}

void intake_begin(struct intake *in, bool reading)
{
	intake_reset(in);
	in->reading = reading;
}

void intake_header(struct intake *in, const char *name, const char *value)
{
	if (!in->reading || in->ct_seen || strcasecmp(name, "Content-Type") != 0)
		return;
	in->ct_seen = true;
	snprintf(in->ct, sizeof(in->ct), "%s", value);
}

bool intake_wants_body(const struct intake *in)
{
	return in->reading && !in->full && report_maybe(in->ct_seen ? in->ct : NULL);
}

void intake_body(struct intake *in, const unsigned char *chunk, size_t len)
{
	if (!intake_wants_body(in))
		return;
	if (len > REPORT_BODY_MAX - in->len) {
		len = REPORT_BODY_MAX - in->len;
		in->full = true;
	}
	if (in->len + len > in->cap) {
		size_t cap = in->cap ? in->cap : 16384;
		while (cap < in->len + len)
			cap *= 2;
		if (cap > REPORT_BODY_MAX)
			cap = REPORT_BODY_MAX;
		char *grown = realloc(in->body, cap);
		if (grown == NULL) {
			in->full = true;	/* read what we have */
			return;
		}
		in->body = grown;
		in->cap = cap;
	}
	memcpy(in->body + in->len, chunk, len);
	in->len += len;
}

bool intake_wants_feedback_id(const struct policy_class *c)
{
	if (c->suppress != 0)
		return true;
	for (size_t i = 0; i < c->suspend_if_count; i++)
		if (c->suspend_if[i].kind == SUSPEND_BOUNCE_RATE || c->suspend_if[i].kind == SUSPEND_COMPLAINT_RATE)
			return true;
	return false;
}

/* ---- the fleet's secret ------------------------------------------------- */

static pthread_mutex_t fleet_lock = PTHREAD_MUTEX_INITIALIZER;
static struct feedback_key fleet_key;
static bool fleet_known;
static long long fleet_next_try_ms;

static const char fleet_script[] =
	"local s = redis.call('GET', KEYS[1])\n"
	"if not s then\n"
	"  redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
	"  s = redis.call('GET', KEYS[1])\n"
	"end\n"
	"return s\n";

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct feedback_key *intake_feedback_key(struct snapshot *snap)
{
	if (snap->feedback)
		return snap->feedback;
	pthread_mutex_lock(&fleet_lock);
	bool known = fleet_known, wait = mono_ms() < fleet_next_try_ms;
	pthread_mutex_unlock(&fleet_lock);
	if (known)
		return &fleet_key;
	if (wait || snap->store == NULL)
		return NULL;

	unsigned char rnd[32];
	char mine[65], out[1][STORE_EVAL_VALUE_MAX], err[256];
	const char *keys[1] = { INTAKE_SECRET_KEY }, *args[1] = { mine };
	size_t got = 0;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(mine + 2 * i, 3, "%02x", rnd[i]);
	enum store_status st = store_eval(snap->store, fleet_script, keys, 1, args, 1, out, 1, &got,
					  err, sizeof(err));
	OPENSSL_cleanse(mine, sizeof(mine));
	OPENSSL_cleanse(rnd, sizeof(rnd));
	struct feedback_key k;
	bool ok = st == STORE_OK && got == 1 && strlen(out[0]) >= FEEDBACK_SECRET_MIN;
	if (ok)
		feedback_key_secret(out[0], strlen(out[0]), &k);
	OPENSSL_cleanse(out, sizeof(out));
	pthread_mutex_lock(&fleet_lock);
	if (ok && !fleet_known) {
		fleet_key = k;
		fleet_known = true;
	} else if (!ok) {
		fleet_next_try_ms = mono_ms() + INTAKE_SECRET_RETRY_MS;
	}
	pthread_mutex_unlock(&fleet_lock);
	OPENSSL_cleanse(&k, sizeof(k));
	if (!ok) {
		log_warning("Feedback-ID secret: cannot read it from Redis (%s): mail goes out without "
			    "Feedback-ID, reports are not read, for %d s", st == STORE_OK ? "bad value" : err,
			    INTAKE_SECRET_RETRY_MS / 1000);
		return NULL;
	}
	return &fleet_key;
}

/* ---- reading a report --------------------------------------------------- */

static const struct policy_class *class_named(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < policy_class_count(p); i++) {
		const struct policy_class *c = policy_class_at(p, i);
		if (strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

/*
 * A bounce-rate or complaint-rate rule, when a report is read: add the
 * report's events to the rule's count and compare with the recipients
 * the account sent in the same sliding window (the RCPT script counts
 * them: safety.h). A report is a claim that anyone who received one of
 * the account's messages can make (its Feedback-ID is the same on every
 * message), so an event counts once per recipient a day: each rule keeps
 * the recipients it counted in a sorted set (address -> expiry, Redis
 * clock), and a recipient already there adds nothing. Replaying a report,
 * or one recipient's several reports, moves no rate; it also makes the
 * script safe to run twice. A complaint without a recipient counts as the
 * empty address: once a day. KEYS sent, events, suspension, counted;
 * ARGV period ms, share, min, then the event's recipients. Returns
 * {tripped, sent, events, added}; a trip starts both counts afresh (the
 * suspension itself is safety_suspend's).
 */
#define INTAKE_EVENT_ONCE_MS "86400000"	/* one count per recipient a day */
#define INTAKE_COUNTED_SUFFIX ":once"

static const char rate_script[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local period = tonumber(ARGV[1])\n"
	"local len = math.max(1, math.floor(period / 60))\n"
	"local n = math.floor(period / len)\n"
	"local cur = math.floor(now / len)\n"
	"local function sum(key)\n"
	"  local h, s = redis.call('HGETALL', key), 0\n"
	"  for k = 1, #h, 2 do\n"
	"    if tonumber(h[k]) <= cur - n then redis.call('HDEL', key, h[k])\n"
	"    else s = s + tonumber(h[k + 1]) end\n"
	"  end\n"
	"  return s\n"
	"end\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', now))\n"
	"local add = 0\n"
	"for i = 4, #ARGV do\n"
	"  add = add + redis.call('ZADD', KEYS[4], 'NX', string.format('%.0f', now + " INTAKE_EVENT_ONCE_MS "), ARGV[i])\n"
	"end\n"
	"redis.call('PEXPIRE', KEYS[4], " INTAKE_EVENT_ONCE_MS ")\n"
	"if add > 0 then\n"
	"  redis.call('HINCRBY', KEYS[2], string.format('%.0f', cur), add)\n"
	"  redis.call('PEXPIRE', KEYS[2], string.format('%.0f', period))\n"
	"end\n"
	"local sent, ev = sum(KEYS[1]), sum(KEYS[2])\n"
	"local trip = 0\n"
	"if add > 0 and redis.call('EXISTS', KEYS[3]) == 0 and sent > 0 and sent >= tonumber(ARGV[3])\n"
	"   and ev > tonumber(ARGV[2]) * sent then\n"
	"  trip = 1\n"
	"  redis.call('DEL', KEYS[1], KEYS[2])\n"
	"end\n"
	"return {trip, sent, ev, add}\n";

static void rates(const struct report *r, struct snapshot *snap, const struct policy_class *c,
		  const char *account, const char *qid)
{
	/* the event's recipients, as suppression writes them */
	static const char none[] = "";
	char (*addrs)[ADDRESS_MAX] = malloc(sizeof(char[REPORT_RCPTS_MAX][ADDRESS_MAX]));
	const char *args[3 + REPORT_RCPTS_MAX];
	if (addrs == NULL) {
		log_warning("%s: account=%s class=%s suspend-if rates not counted: out of memory", qid,
			    account, c->name);
		return;
	}
	for (size_t i = 0; i < c->suspend_if_count; i++) {
		const struct policy_suspend_rule *rule = &c->suspend_if[i];
		size_t na = 3;
		if (rule->kind == SUSPEND_BOUNCE_RATE && r->kind == REPORT_DSN) {
			for (size_t j = 0; j < r->nrcpt; j++)
				if (r->rcpt[j].hard) {
					suppress_address(r->rcpt[j].address, addrs[na - 3], ADDRESS_MAX);
					args[na] = addrs[na - 3];
					na++;
				}
		} else if (rule->kind == SUSPEND_COMPLAINT_RATE && r->kind == REPORT_ARF && r->complaint) {
			if (r->nrcpt > 0) {
				suppress_address(r->rcpt[0].address, addrs[0], ADDRESS_MAX);
				args[na++] = addrs[0];
			} else {
				args[na++] = none;
			}
		}
		char sent[POLICY_ACCOUNT_MAX + POLICY_NAME_MAX + 64], events[sizeof(sent)], susp[sizeof(sent)];
		char once[sizeof(sent) + sizeof(INTAKE_COUNTED_SUFFIX)];
		char a_period[32], a_share[32], a_min[32], err[256], reason[STORE_SAFETY_TEXT_MAX];
		char out[4][STORE_EVAL_VALUE_MAX];
		size_t got = 0;
		if (na == 3 || safety_rate_keys(c, account, rule, sent, events, sizeof(sent)) != 0)
			continue;
		snprintf(susp, sizeof(susp), "{%s}" SAFETY_SUSPENSION_SUFFIX, account);
		snprintf(once, sizeof(once), "%s" INTAKE_COUNTED_SUFFIX, events);
		snprintf(a_period, sizeof(a_period), "%lu", safety_rate_period_ms(rule));
		snprintf(a_share, sizeof(a_share), "%.9g", rule->share);
		snprintf(a_min, sizeof(a_min), "%lu", rule->min);
		const char *keys[4] = { sent, events, susp, once };
		args[0] = a_period;
		args[1] = a_share;
		args[2] = a_min;
		enum store_status st = store_eval(snap->store, rate_script, keys, 4, args, na, out, 4, &got,
						  err, sizeof(err));
		if (st != STORE_OK || got != 4) {
			log_warning("%s: account=%s class=%s suspend-if %s not counted: %s", qid, account,
				    c->name, rule->text, st != STORE_OK ? err : "bad reply");
			continue;
		}
		long long n_sent = atoll(out[1]), n_ev = atoll(out[2]), n_add = atoll(out[3]);
		if (n_add < (long long)(na - 3))
			log_info("%s: account=%s class=%s suspend-if %s: %lld of %zu reported recipients "
				 "already counted today", qid, account, c->name, rule->text,
				 (long long)(na - 3) - n_add, na - 3);
		log_info("%s: account=%s class=%s suspend-if %s: %lld of %lld recipients sent%s", qid,
			 account, c->name, rule->text, n_ev, n_sent, strcmp(out[0], "1") == 0 ? ": tripped" : "");
		if (strcmp(out[0], "1") != 0)
			continue;
		snprintf(reason, sizeof(reason), "%s (%lld of %lld)", rule->text, n_ev, n_sent);
		if (safety_suspend(snap->store, c, DIRECTION_OUTBOUND, account, rule, n_ev, reason, qid, err,
				   sizeof(err)) != 0)
			log_warning("%s: account=%s class=%s suspend-if %s tripped, suspension not stored: %s",
				    qid, account, c->name, rule->text, err);
	}
	free(addrs);
}

static void act(const struct report *r, struct snapshot *snap, const char *qid)
{
	const struct feedback_key *key = intake_feedback_key(snap);
	char cls_name[POLICY_NAME_MAX], account[POLICY_ACCOUNT_MAX];
	const char *kind = report_kind_name(r->kind);
	unsigned hard = 0;
	for (size_t i = 0; i < r->nrcpt; i++)
		hard += r->rcpt[i].hard;

	if (r->feedback_id[0] == '\0') {
		log_info("%s: report=%s rcpts=%zu hard=%u feedback_id=none decision=ignored", qid, kind,
			 r->rcpts, hard);
		return;
	}
	if (key == NULL ||
	    feedback_read(key, r->feedback_id, cls_name, sizeof(cls_name), account, sizeof(account)) != 0) {
		metrics_inc(METRIC_REPORTS_UNVERIFIED);
		log_info("%s: report=%s rcpts=%zu hard=%u feedback_id=unverified decision=ignored", qid,
			 kind, r->rcpts, hard);
		return;
	}
	const struct policy_class *c = class_named(snap->policy, cls_name);
	if (c != NULL)
		rates(r, snap, c, account, qid);
	if (c == NULL) {
		log_info("%s: report=%s class=%s account=%s rcpts=%zu hard=%u decision=ignored "
			 "reason=\"class %s is not in the policy\"", qid, kind, cls_name, account, r->rcpts,
			 hard, cls_name);
		return;
	}
	if (c->suppress == 0) {		/* its rate rules were counted above */
		log_info("%s: report=%s class=%s account=%s rcpts=%zu hard=%u%s%s decision=counted", qid,
			 kind, c->name, account, r->rcpts, hard, r->kind == REPORT_ARF ? " feedback_type=" : "",
			 r->kind == REPORT_ARF ? r->feedback_type : "");
		return;
	}

	char addrs[REPORT_RCPTS_MAX][ADDRESS_MAX], list[1024] = "";
	const char *ptr[REPORT_RCPTS_MAX];
	size_t n = 0, used = 0;
	for (size_t i = 0; i < r->nrcpt; i++) {
		bool take = r->kind == REPORT_DSN ? r->rcpt[i].hard && (c->suppress & POLICY_SUPPRESS_HARD_BOUNCE)
						  : r->complaint && (c->suppress & POLICY_SUPPRESS_COMPLAINT);
		if (!take)
			continue;
		suppress_address(r->rcpt[i].address, addrs[n], sizeof(addrs[n]));
		ptr[n] = addrs[n];
		int w = snprintf(list + used, sizeof(list) - used, "%s%s", used ? "," : "", addrs[n]);
		if (w > 0 && (size_t)w < sizeof(list) - used)
			used += (size_t)w;
		n++;
	}
	if (n == 0) {
		log_info("%s: report=%s class=%s account=%s rcpts=%zu hard=%u%s%s decision=none", qid,
			 kind, c->name, account, r->rcpts, hard,
			 r->kind == REPORT_ARF ? " feedback_type=" : "",
			 r->kind == REPORT_ARF ? r->feedback_type : "");
		return;
	}
	char err[256];
	long added = 0;
	if (suppress_add(snap->store, account, ptr, n, SUPPRESS_DEFAULT_MS, &added, err, sizeof(err)) !=
	    STORE_OK) {
		log_warning("%s: report=%s class=%s account=%s suppress=%s decision=store-failed "
			    "reason=\"%s\"", qid, kind, c->name, account, list, err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		metrics_inc(METRIC_REPORT_SUPPRESSIONS);
	log_info("%s: report=%s class=%s account=%s rcpts=%zu hard=%u%s%s suppress=%s new=%ld "
		 "decision=suppressed", qid, kind, c->name, account, r->rcpts, hard,
		 r->kind == REPORT_ARF ? " feedback_type=" : "",
		 r->kind == REPORT_ARF ? r->feedback_type : "", list, added);
}

void intake_finish(struct intake *in, struct snapshot *snap, const char *qid)
{
	if (!in->reading || !in->ct_seen || !report_maybe(in->ct) || snap == NULL)
		return;
	struct report *r = malloc(sizeof(*r));
	if (r == NULL) {
		log_warning("%s: report not read: out of memory", qid);
		return;
	}
	if (report_parse(in->ct, in->body, in->len, r) == REPORT_NONE) {
		log_debug("%s: multipart/report without a delivery-status or feedback-report part", qid);
	} else {
		metrics_inc(METRIC_REPORTS_READ);
		act(r, snap, qid);
	}
	free(r);
	free(in->body);
	in->body = NULL;
	in->len = in->cap = 0;
}
