/*
 * Unit tests of SPF evaluation through the real helper pool (spf.c,
 * spf_helper.c) against a private dnsmasq. This program is also the
 * helpers' executable: main() hands "--spf-helper" to spf_helper_main,
 * as the daemon's main() does.
 */
#include "unit.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "netaddr.h"
#include "settings.h"
#include "spf.h"
#include "test_spf_dnsmasq.h"

#define MAIN_TIMEOUT_MS 1000
#define HELPERS_MAX 16

static struct spf_dnsmasq server;
static struct spf_pool *pool;

static struct spf_pool *pool_for(const char *resolver, long timeout_ms, const char *user)
{
	struct settings s;
	char err[256] = "";
	struct spf_pool *p;

	memset(&s, 0, sizeof(s));
	s.resolver = (char *)resolver;
	s.dns_timeout_ms = timeout_ms;
	s.spf_user_id = (char *)user;
	p = spf_pool_start(&s, err, sizeof(err));
	if (p == NULL)
		fprintf(stderr, "spf_pool_start: %s\n", err);
	assert_non_null(p);
	return p;
}

static struct spf_pool *pool_at(int port, long timeout_ms)
{
	char spec[32];

	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	return pool_for(spec, timeout_ms, NULL);
}

static enum spf_outcome check_in(struct spf_pool *p, const char *ip, const char *helo,
	const char *from, char *detail, size_t len)
{
	struct netaddr a;

	assert_int_equal(netaddr_parse(ip, &a), 0);
	return spf_check(p, &a, helo, from, detail, len);
}

static enum spf_outcome check(const char *ip, const char *helo, const char *from)
{
	char detail[256];

	return check_in(pool, ip, helo, from, detail, sizeof(detail));
}

/* Our helpers: children whose argv[1] is --spf-helper. */
static int helper_pids(pid_t *out, int max)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int n = 0;

	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL && n < max) {
		char path[64], buf[512], *p;
		int pid = atoi(e->d_name), ppid = 0;
		FILE *fp;
		size_t len;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if ((fp = fopen(path, "r")) == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[len] = '\0';
		if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1 ||
		    ppid != getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		if ((fp = fopen(path, "r")) == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[len] = '\0';
		if (strlen(buf) + 1 < len && strcmp(buf + strlen(buf) + 1, "--spf-helper") == 0)
			out[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

static bool contains(const pid_t *pids, int n, pid_t pid)
{
	for (int i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

struct expectation {
	const char *from;
	enum spf_outcome want;
};

static void expect_all(const char *ip, const struct expectation *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char detail[256];
		enum spf_outcome got = check_in(pool, ip, "client.example", e[i].from, detail,
						sizeof(detail));
		if (got != e[i].want)
			fprintf(stderr, "%s from %s: got %s (%s), want %s\n", e[i].from, ip,
				spf_outcome_name(got), detail, spf_outcome_name(e[i].want));
		assert_int_equal(got, e[i].want);
	}
}

static void outcomes_for_ipv4_client(void **state)
{
	static const struct expectation in_range[] = {
		{ "user@pass.test", SPF_OUTCOME_PASS },
		{ "<user@pass.test>", SPF_OUTCOME_PASS },
		{ "user@fail.test", SPF_OUTCOME_FAIL },
		{ "user@softfail.test", SPF_OUTCOME_SOFTFAIL },
		{ "user@neutral.test", SPF_OUTCOME_NEUTRAL },
		{ "user@nospf.test", SPF_OUTCOME_NONE },
		{ "user@nonexistent.test", SPF_OUTCOME_NONE },
		{ "user@syntax.test", SPF_OUTCOME_PERMERROR },
		{ "user@toomany.test", SPF_OUTCOME_PERMERROR },
		{ "user@a.test", SPF_OUTCOME_PASS },
		{ "user@mx.test", SPF_OUTCOME_PASS },
		{ "user@include.test", SPF_OUTCOME_PASS },
		{ "user@split.test", SPF_OUTCOME_PASS },
		{ "user@big.test", SPF_OUTCOME_PASS },
		{ "user@PASS.TEST.", SPF_OUTCOME_PASS },
		{ "user@elsewhere.example", SPF_OUTCOME_TEMPERROR },	/* REFUSED */
	};
	static const struct expectation out_of_range[] = {
		{ "user@pass.test", SPF_OUTCOME_FAIL },
		{ "user@fail.test", SPF_OUTCOME_PASS },
		{ "user@a.test", SPF_OUTCOME_FAIL },
		{ "user@mx.test", SPF_OUTCOME_FAIL },
		{ "user@include.test", SPF_OUTCOME_FAIL },
	};
	(void)state;
	expect_all("192.0.2.10", in_range, sizeof(in_range) / sizeof(in_range[0]));
	expect_all("198.51.100.7", out_of_range, sizeof(out_of_range) / sizeof(out_of_range[0]));
}

static void outcomes_for_ipv6_client(void **state)
{
	static const struct expectation in_range[] = {
		{ "user@pass.test", SPF_OUTCOME_PASS },
		{ "user@fail.test", SPF_OUTCOME_FAIL },
		{ "user@softfail.test", SPF_OUTCOME_SOFTFAIL },
		{ "user@neutral.test", SPF_OUTCOME_NEUTRAL },
		{ "user@nospf.test", SPF_OUTCOME_NONE },
		{ "user@nonexistent.test", SPF_OUTCOME_NONE },
		{ "user@syntax.test", SPF_OUTCOME_PERMERROR },
		{ "user@toomany.test", SPF_OUTCOME_PERMERROR },
		{ "user@a.test", SPF_OUTCOME_PASS },
		{ "user@mx.test", SPF_OUTCOME_PASS },
		{ "user@include.test", SPF_OUTCOME_PASS },
	};
	static const struct expectation out_of_range[] = {
		{ "user@pass.test", SPF_OUTCOME_FAIL },
		{ "user@fail.test", SPF_OUTCOME_PASS },
		{ "user@a.test", SPF_OUTCOME_FAIL },
	};
	(void)state;
	expect_all("2001:db8::25", in_range, sizeof(in_range) / sizeof(in_range[0]));
	expect_all("2001:db8:ffff::1", out_of_range, sizeof(out_of_range) / sizeof(out_of_range[0]));
}

static void details_name_domain_and_address(void **state)
{
	char detail[256];
	(void)state;

	assert_int_equal(check_in(pool, "192.0.2.10", "h.example", "user@pass.test", detail,
				  sizeof(detail)), SPF_OUTCOME_PASS);
	assert_string_equal(detail, "pass.test designates 192.0.2.10 as permitted sender");
	assert_int_equal(check_in(pool, "2001:db8::25", "h.example", "a%b@fail.test", detail,
				  sizeof(detail)), SPF_OUTCOME_FAIL);
	assert_string_equal(detail, "fail.test does not designate 2001:db8::25 as permitted sender");
	assert_int_equal(check_in(pool, "192.0.2.10", "h", "x@nospf.test", detail, sizeof(detail)),
			 SPF_OUTCOME_NONE);
	assert_string_equal(detail, "nospf.test publishes no SPF record");
	assert_int_equal(check_in(pool, "192.0.2.10", "h", "x@syntax.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PERMERROR);
	assert_memory_equal(detail, "SPF record of syntax.test is invalid: ", 38);
	assert_null(strpbrk(detail, "%\r\n"));
	assert_int_equal(check_in(pool, "192.0.2.10", "h", "x@toomany.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PERMERROR);
	assert_string_equal(detail, "SPF record of toomany.test is invalid: "
				    "Mechanisms used too many DNS lookups");
	/* libspf2 counts terms per record; our layer bounds the whole chain. */
	assert_int_equal(check_in(pool, "192.0.2.99", "h", "x@chain.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PERMERROR);
	assert_string_equal(detail, "SPF record of chain.test needs more than 112 DNS lookups");
	/* libspf2 has no void-lookup limit; our layer has RFC 7208's two. */
	assert_int_equal(check_in(pool, "192.0.2.10", "h", "x@void2.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	assert_int_equal(check_in(pool, "192.0.2.10", "h", "x@void3.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PERMERROR);
	assert_string_equal(detail, "SPF record of void3.test leads to more than 2 void DNS lookups");
	/* The empty AAAA answers of an mx term's hosts are the term's, not void lookups. */
	assert_int_equal(check_in(pool, "2001:db8::25", "h", "x@v4mx.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	/* A small buffer is cut, never overrun. */
	char tiny[8];
	memset(tiny, 'x', sizeof(tiny));
	check_in(pool, "192.0.2.10", "h", "user@pass.test", tiny, sizeof(tiny));
	assert_string_equal(tiny, "pass.te");
}

static void null_sender_checks_helo(void **state)
{
	char detail[256];
	(void)state;

	assert_int_equal(check_in(pool, "192.0.2.10", "helo.test", "", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	assert_string_equal(detail, "helo.test designates 192.0.2.10 as permitted sender");
	assert_int_equal(check("192.0.2.10", "helo.test", "<>"), SPF_OUTCOME_PASS);
	assert_int_equal(check("2001:db8::25", "HELO.test", ""), SPF_OUTCOME_PASS);
	assert_int_equal(check("192.0.2.11", "helo.test", ""), SPF_OUTCOME_FAIL);
	assert_int_equal(check("192.0.2.10", "fail.test", ""), SPF_OUTCOME_FAIL);
	/* MAIL FROM wins over HELO when there is one. */
	assert_int_equal(check("192.0.2.10", "helo.test", "user@fail.test"), SPF_OUTCOME_FAIL);
	/* Nothing valid to check is none, without asking anyone. */
	assert_int_equal(check_in(pool, "192.0.2.10", "[192.0.2.10]", "", detail, sizeof(detail)),
			 SPF_OUTCOME_NONE);
	assert_string_equal(detail, "HELO name is not a valid domain name");
	assert_int_equal(check("192.0.2.10", "localhost", ""), SPF_OUTCOME_NONE);
	assert_int_equal(check("192.0.2.10", NULL, ""), SPF_OUTCOME_NONE);
	assert_int_equal(check_in(pool, "192.0.2.10", "helo.test", "user@bad..test", detail,
				  sizeof(detail)), SPF_OUTCOME_NONE);
	assert_string_equal(detail, "MAIL FROM domain is not a valid domain name");
	assert_int_equal(spf_check(pool, NULL, "helo.test", "", detail, sizeof(detail)),
			 SPF_OUTCOME_NONE);
	assert_string_equal(detail, "client address unknown");
}

static void identity_domain_is_what_gets_checked(void **state)
{
	char d[256];
	(void)state;

	assert_int_equal(spf_identity_domain("helo.test", "<User@Sub.Example.COM>", d, sizeof(d)),
			 SPF_IDENTITY_MAILFROM);
	assert_string_equal(d, "sub.example.com");
	assert_int_equal(spf_identity_domain("Helo.Test.", "<>", d, sizeof(d)), SPF_IDENTITY_HELO);
	assert_string_equal(d, "helo.test");
	assert_int_equal(spf_identity_domain("helo.test", "", d, sizeof(d)), SPF_IDENTITY_HELO);
	assert_int_equal(spf_identity_domain("[192.0.2.1]", "", d, sizeof(d)), SPF_IDENTITY_NONE);
	assert_string_equal(d, "");
	/* a one-label HELO name normalizes but is no identity: nothing is left in d
	 * (fuzz_envelope found "J") */
	assert_int_equal(spf_identity_domain("localhost", "<>", d, sizeof(d)), SPF_IDENTITY_NONE);
	assert_string_equal(d, "");
	assert_int_equal(spf_identity_domain("helo.test", "user@[192.0.2.1]", d, sizeof(d)),
			 SPF_IDENTITY_NONE);
	assert_int_equal(spf_identity_domain("helo.test", "example.com", d, sizeof(d)),
			 SPF_IDENTITY_MAILFROM);
	assert_string_equal(d, "example.com");
}

static void burst_from_one_domain_costs_one_query(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++) {
		char from[64];
		snprintf(from, sizeof(from), "user%d@burst.test", i);
		assert_int_equal(check("192.0.2.10", "h.example", from), SPF_OUTCOME_PASS);
	}
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "burst.test"), 1);
	assert_int_equal(spf_dnsmasq_count(&server, "SPF", "burst.test"), 0);
}

static void dmarc_record_found_at_domain_or_org_domain(void **state)
{
	(void)state;

	assert_int_equal(spf_dmarc_record(pool, "dmarc.test"), DMARC_RECORD_FOUND);
	assert_int_equal(spf_dmarc_record(pool, "sub.dmarc.test"), DMARC_RECORD_FOUND);
	assert_int_equal(spf_dmarc_record(pool, "Deep.Sub.DMARC.test."), DMARC_RECORD_FOUND);
	assert_int_equal(spf_dmarc_record(pool, "spaced.test"), DMARC_RECORD_FOUND);
	assert_int_equal(spf_dmarc_record(pool, "nodmarc.test"), DMARC_RECORD_NONE);
	assert_int_equal(spf_dmarc_record(pool, "sub.nodmarc.test"), DMARC_RECORD_NONE);
	assert_int_equal(spf_dmarc_record(pool, "notdmarc.test"), DMARC_RECORD_NONE);
	/* RFC 7489 6.6.3: more than one record is none */
	assert_int_equal(spf_dmarc_record(pool, "two.test"), DMARC_RECORD_NONE);
	assert_int_equal(spf_dmarc_record(pool, "lower.test"), DMARC_RECORD_NONE);
	assert_int_equal(spf_dmarc_record(pool, "not a domain"), DMARC_RECORD_NONE);
	assert_int_equal(spf_dmarc_record(pool, "elsewhere.example"), DMARC_RECORD_TEMPERROR);
	/* The org domain's record is asked once, then cached. */
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "_dmarc.dmarc.test"), 1);
}

struct slow_check {
	enum spf_outcome outcome;
	long long elapsed_ms;
};

static void *slow_check_thread(void *arg)
{
	struct slow_check *c = arg;
	long long t0 = spf_test_now_ms();

	c->outcome = check("192.0.2.10", "h.example", "user@x.slow.test");
	c->elapsed_ms = spf_test_now_ms() - t0;
	return NULL;
}

static void killed_helper_costs_only_the_request_in_flight(void **state)
{
	pid_t before[HELPERS_MAX], after[HELPERS_MAX];
	struct slow_check c;
	pthread_t t;
	int n, m;
	(void)state;

	n = helper_pids(before, HELPERS_MAX);
	assert_int_equal(n, SPF_POOL_SIZE);
	/* A check that waits on a DNS server that never answers... */
	assert_int_equal(pthread_create(&t, NULL, slow_check_thread, &c), 0);
	usleep(300000);
	/* ...loses its helper to kill -9. */
	for (int i = 0; i < n; i++)
		assert_int_equal(kill(before[i], SIGKILL), 0);
	pthread_join(t, NULL);
	assert_int_equal(c.outcome, SPF_OUTCOME_TEMPERROR);
	assert_true(c.elapsed_ms < MAIN_TIMEOUT_MS);	/* noticed the death, not a timeout */
	/*
	 * The other three die too; a request sent to one in the moment
	 * before its socket hangs up would be in flight when it dies.
	 */
	usleep(50000);

	/* The next checks are evaluated normally by fresh helpers. */
	assert_int_equal(check("192.0.2.10", "h.example", "user@pass.test"), SPF_OUTCOME_PASS);
	assert_int_equal(check("192.0.2.10", "h.example", "user@fail.test"), SPF_OUTCOME_FAIL);
	m = helper_pids(after, HELPERS_MAX);
	assert_true(m >= 1);
	for (int i = 0; i < m; i++)
		assert_false(contains(before, n, after[i]));

	/* Helpers killed while idle cost nothing at all. */
	for (int i = 0; i < m; i++)
		assert_int_equal(kill(after[i], SIGKILL), 0);
	usleep(50000);
	assert_int_equal(check("192.0.2.10", "h.example", "user@pass.test"), SPF_OUTCOME_PASS);
	assert_int_equal(check("192.0.2.10", "h.example", "user@fail.test"), SPF_OUTCOME_FAIL);
	assert_int_equal(check("2001:db8::25", "h.example", "user@softfail.test"),
			 SPF_OUTCOME_SOFTFAIL);
}

static void signal_all(const pid_t *pids, int n, int sig)
{
	/* A helper may be gone by SIGCONT: assert_same_helpers tells. */
	for (int i = 0; i < n; i++)
		assert_true(kill(pids[i], sig) == 0 || sig == SIGCONT);
}

/* The same helper processes run as before: none killed, none new. */
static void assert_same_helpers(const pid_t *before, int n)
{
	pid_t after[HELPERS_MAX];
	int m = helper_pids(after, HELPERS_MAX);

	assert_int_equal(m, n);
	for (int i = 0; i < m; i++)
		assert_true(contains(before, n, after[i]));
}

static void timed_out_caller_leaves_its_helper_at_work(void **state)
{
	struct spf_pool *p = pool_at(server.port, 300);
	pid_t pids[HELPERS_MAX];
	char detail[256];
	long long t0, elapsed;
	int n;
	(void)state;

	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	n = helper_pids(pids, HELPERS_MAX);
	assert_true(n >= SPF_POOL_SIZE);	/* the main pool's helpers are ours too */
	signal_all(pids, n, SIGSTOP);
	t0 = spf_test_now_ms();
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_TEMPERROR);
	elapsed = spf_test_now_ms() - t0;
	assert_string_equal(detail, "SPF evaluation timed out");
	/* W = SPF_BUDGET_TIMEOUTS * 300 + SPF_REPLY_MARGIN_MS = 1100 ms */
	assert_true(elapsed >= 1000);
	assert_true(elapsed < 1100 + 500);
	signal_all(pids, n, SIGCONT);
	/* The helper answers late (dropped) and serves the next request. */
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@fail.test", detail, sizeof(detail)),
			 SPF_OUTCOME_FAIL);
	assert_same_helpers(pids, n);
	spf_pool_stop(p);
}

static void hung_helper_is_killed_after_two_waits(void **state)
{
	struct spf_pool *p = pool_at(server.port, 300);
	pid_t pids[HELPERS_MAX], after[HELPERS_MAX];
	char detail[256];
	int n, m, kept = 0;
	(void)state;

	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	n = helper_pids(pids, HELPERS_MAX);
	signal_all(pids, n, SIGSTOP);
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_TEMPERROR);
	/* SPF_HUNG_WAITS * 1100 ms after it got the request, it is killed. */
	usleep((SPF_HUNG_WAITS - 1) * 1100000 + 400000);
	m = helper_pids(after, HELPERS_MAX);
	for (int i = 0; i < m; i++)
		kept += contains(pids, n, after[i]);
	assert_int_equal(m, n - 1);
	assert_int_equal(kept, n - 1);
	signal_all(after, m, SIGCONT);
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	spf_pool_stop(p);
}

struct timed_check {
	struct spf_pool *pool;
	const char *from;
	enum spf_outcome outcome;
	char detail[256];
	long long elapsed_ms;
};

static void *timed_check_thread(void *arg)
{
	struct timed_check *c = arg;
	long long t0 = spf_test_now_ms();

	c->outcome = check_in(c->pool, "192.0.2.10", "h.example", c->from, c->detail,
			      sizeof(c->detail));
	c->elapsed_ms = spf_test_now_ms() - t0;
	return NULL;
}

static void queued_request_gets_its_full_time_once_sent(void **state)
{
	/* W = SPF_BUDGET_TIMEOUTS * 1000 + SPF_REPLY_MARGIN_MS = 2500 ms */
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	struct timed_check busy[SPF_POOL_SIZE] = {
		{ .pool = p, .from = "a@pass.test" }, { .pool = p, .from = "b@fail.test" },
		{ .pool = p, .from = "c@softfail.test" }, { .pool = p, .from = "d@neutral.test" },
	};
	static const enum spf_outcome want[SPF_POOL_SIZE] = {
		SPF_OUTCOME_PASS, SPF_OUTCOME_FAIL, SPF_OUTCOME_SOFTFAIL, SPF_OUTCOME_NEUTRAL,
	};
	struct timed_check queued = { .pool = p, .from = "e@x.slow.test" };
	pthread_t t[SPF_POOL_SIZE + 1];
	pid_t pids[HELPERS_MAX];
	int n;
	(void)state;

	n = helper_pids(pids, HELPERS_MAX);
	/* Four domains take p's four helpers, which are stopped... */
	signal_all(pids, n, SIGSTOP);
	for (int i = 0; i < SPF_POOL_SIZE; i++)
		assert_int_equal(pthread_create(&t[i], NULL, timed_check_thread, &busy[i]), 0);
	usleep(200000);
	/* ...so a fifth waits 1.9 s of its 2.5 for a helper. */
	assert_int_equal(pthread_create(&t[SPF_POOL_SIZE], NULL, timed_check_thread, &queued), 0);
	usleep(1900000);
	signal_all(pids, n, SIGCONT);
	for (int i = 0; i <= SPF_POOL_SIZE; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < SPF_POOL_SIZE; i++)
		assert_int_equal(busy[i].outcome, want[i]);
	/*
	 * Once sent, it has 2.5 s of its own: the helper's answer (the slow
	 * zone's DNS timeout of 1 s) arrives, 2.9 s after the call.
	 */
	assert_int_equal(queued.outcome, SPF_OUTCOME_TEMPERROR);
	if (strncmp(queued.detail, "DNS failure for x.slow.test: ", 29) != 0)
		fprintf(stderr, "queued: %s after %lld ms\n", queued.detail, queued.elapsed_ms);
	assert_memory_equal(queued.detail, "DNS failure for x.slow.test: ", 29);
	assert_true(queued.elapsed_ms > 2500);
	assert_same_helpers(pids, n);
	spf_pool_stop(p);
}

struct hammer {
	struct spf_pool *pool;
	atomic_bool stop;
	int rounds;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;

	while (!atomic_load(&h->stop)) {
		check_in(h->pool, "192.0.2.10", "h.example", "user@x.slow.test", NULL, 0);
		h->rounds++;
	}
	return NULL;
}

static void slow_zone_does_not_hold_a_domain_routed_to_its_helper(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	struct hammer hammers[4];
	pthread_t t[4];
	pid_t pids[HELPERS_MAX];
	int n;
	(void)state;

	n = helper_pids(pids, HELPERS_MAX);
	/* slow.test and pass.test hash to the same helper (FNV-1a: both 2). */
	for (int i = 0; i < 4; i++) {
		hammers[i].pool = p;
		hammers[i].rounds = 0;
		atomic_init(&hammers[i].stop, false);
		assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &hammers[i]), 0);
	}
	usleep(300000);
	for (int i = 0; i < 12; i++) {
		char detail[256];
		long long t0 = spf_test_now_ms(), elapsed;
		enum spf_outcome o = check_in(p, "198.51.100.7", "h", "ceo@pass.test", detail,
					      sizeof(detail));
		elapsed = spf_test_now_ms() - t0;
		if (o != SPF_OUTCOME_FAIL || elapsed >= MAIN_TIMEOUT_MS)
			fprintf(stderr, "check %d: %s (%s) in %lld ms\n", i, spf_outcome_name(o),
				detail, elapsed);
		assert_int_equal(o, SPF_OUTCOME_FAIL);
		/* It never waits for the slow zone's DNS timeout. */
		assert_true(elapsed < MAIN_TIMEOUT_MS);
		usleep(100000);
	}
	for (int i = 0; i < 4; i++)
		atomic_store(&hammers[i].stop, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_true(hammers[i].rounds >= 1);
	}
	assert_same_helpers(pids, n);
	spf_pool_stop(p);
}

static void unreachable_dns_answers_within_timeout(void **state)
{
	struct spf_pool *p = pool_at(server.blackhole_port, 500);
	const char *domains[] = { "user@pass.test", "user@fail.test", "user@neutral.test" };
	(void)state;

	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		char detail[256];
		long long t0 = spf_test_now_ms(), elapsed;
		enum spf_outcome o = check_in(p, i % 2 ? "2001:db8::25" : "192.0.2.10", "h",
					      domains[i], detail, sizeof(detail));
		elapsed = spf_test_now_ms() - t0;
		assert_int_equal(o, SPF_OUTCOME_TEMPERROR);
		assert_true(elapsed >= 450);
		assert_true(elapsed < 500 + 1500);
	}
	assert_int_equal(spf_dmarc_record(p, "dmarc.test"), DMARC_RECORD_TEMPERROR);
	spf_pool_stop(p);
}

static void stopped_dns_server_gives_temperror(void **state)
{
	struct spf_dnsmasq own;
	struct spf_pool *p;
	(void)state;

	assert_int_equal(spf_dnsmasq_start(&own), 0);
	p = pool_at(own.port, MAIN_TIMEOUT_MS);
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", (char[64]){ 0 }, 64),
			 SPF_OUTCOME_PASS);
	spf_dnsmasq_stop(&own);
	char detail[256];
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@fail.test", detail, sizeof(detail)),
			 SPF_OUTCOME_TEMPERROR);
	assert_memory_equal(detail, "DNS failure for fail.test", 25);
	assert_int_equal(check_in(p, "2001:db8::25", "h", "user@softfail.test", detail,
				  sizeof(detail)), SPF_OUTCOME_TEMPERROR);
	assert_int_equal(check_in(p, "192.0.2.10", "helo.test", "", detail, sizeof(detail)),
			 SPF_OUTCOME_TEMPERROR);
	/* What was cached before the outage still answers. */
	assert_int_equal(check_in(p, "192.0.2.10", "h", "user@pass.test", detail, sizeof(detail)),
			 SPF_OUTCOME_PASS);
	spf_pool_stop(p);
}

struct worker {
	int id;
	int wrong;
};

static void *worker_thread(void *arg)
{
	static const struct expectation mix[] = {
		{ "a@pass.test", SPF_OUTCOME_PASS }, { "b@fail.test", SPF_OUTCOME_FAIL },
		{ "c@softfail.test", SPF_OUTCOME_SOFTFAIL }, { "d@neutral.test", SPF_OUTCOME_NEUTRAL },
		{ "e@nospf.test", SPF_OUTCOME_NONE }, { "f@a.test", SPF_OUTCOME_PASS },
	};
	struct worker *w = arg;

	for (int i = 0; i < 30; i++) {
		const struct expectation *e = &mix[(size_t)(i + w->id) % 6];
		if (check(w->id % 2 ? "192.0.2.10" : "2001:db8::25", "h.example", e->from) != e->want)
			w->wrong++;
	}
	return NULL;
}

static void concurrent_checks_get_their_own_answers(void **state)
{
	struct worker w[8];
	pthread_t t[8];
	(void)state;

	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){ .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_thread, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].wrong, 0);
	}
}

static void helpers_run_unprivileged(void **state)
{
	pid_t pids[HELPERS_MAX];
	struct settings s;
	char err[256] = "";
	int n;
	(void)state;

	if (geteuid() != 0)
		skip();
	n = helper_pids(pids, HELPERS_MAX);
	assert_true(n >= 1);
	for (int i = 0; i < n; i++) {
		char path[64], line[256];
		unsigned uid = 0, gid = 0;
		FILE *fp;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pids[i]);
		fp = fopen(path, "r");
		assert_non_null(fp);
		while (fgets(line, sizeof(line), fp) != NULL) {
			sscanf(line, "Uid: %u", &uid);
			sscanf(line, "Gid: %u", &gid);
		}
		fclose(fp);
		assert_int_equal(uid, 65534);	/* nobody */
		assert_int_not_equal(gid, 0);
	}
	/* An unknown SpfUserID: no helper starts, and the pool says so. */
	memset(&s, 0, sizeof(s));
	s.resolver = "127.0.0.1";
	s.dns_timeout_ms = 500;
	s.spf_user_id = "no-such-user-bm";
	assert_null(spf_pool_start(&s, err, sizeof(err)));
	assert_non_null(strstr(err, "no SPF helper"));
}

static void bad_resolver_is_refused_at_start(void **state)
{
	struct settings s;
	char err[256] = "";
	(void)state;

	memset(&s, 0, sizeof(s));
	s.resolver = "dns.example:53";
	assert_null(spf_pool_start(&s, err, sizeof(err)));
	assert_string_equal(err, "bad resolver \"dns.example:53\": expected system, "
				 "IPv4[:PORT] or [IPv6][:PORT]");
}

static void outcome_names_are_rfc8601(void **state)
{
	(void)state;
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_NONE), "none");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_NEUTRAL), "neutral");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_PASS), "pass");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_FAIL), "fail");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_SOFTFAIL), "softfail");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_TEMPERROR), "temperror");
	assert_string_equal(spf_outcome_name(SPF_OUTCOME_PERMERROR), "permerror");
}

static enum spf_outcome egress_check(struct spf_pool *p, const char *ip, const char *helo,
	const char *from)
{
	struct netaddr a;

	assert_int_equal(netaddr_parse(ip, &a), 0);
	return spf_check_egress(p, &a, helo, from);
}

/* The pool's counters: requests sent to helpers, egress outcomes from the cache. */
static void assert_stats(struct spf_pool *p, unsigned long requests, unsigned long hits)
{
	unsigned long r, h;

	spf_pool_stats(p, &r, &h);
	if (r != requests || h != hits)
		fprintf(stderr, "requests %lu, hits %lu; want %lu, %lu\n", r, h, requests, hits);
	assert_int_equal(r, requests);
	assert_int_equal(h, hits);
}

static void egress_outcome_is_reused_for_the_same_domain(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	(void)state;

	assert_stats(p, 0, 0);
	assert_int_equal(egress_check(p, "192.0.2.10", "h.example", "alice@pass.test"),
			 SPF_OUTCOME_PASS);
	assert_stats(p, 1, 0);
	/* Another local part, HELO name, case and angle brackets: the same key. */
	assert_int_equal(egress_check(p, "192.0.2.10", "other.example", "<bob@PASS.Test>"),
			 SPF_OUTCOME_PASS);
	assert_stats(p, 1, 1);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "x@fail.test"), SPF_OUTCOME_FAIL);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "y@fail.test"), SPF_OUTCOME_FAIL);
	assert_stats(p, 2, 2);
	/* A permanent error holds as long as the record does. */
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "x@syntax.test"), SPF_OUTCOME_PERMERROR);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "y@syntax.test"), SPF_OUTCOME_PERMERROR);
	assert_stats(p, 3, 3);
	/* spf_check (inbound) never takes from the cache. */
	assert_int_equal(check_in(p, "192.0.2.10", "h", "alice@pass.test", (char[64]){ 0 }, 64),
			 SPF_OUTCOME_PASS);
	assert_stats(p, 4, 3);
	spf_pool_stop(p);
	/* Without a pool: temperror, as spf_check. */
	assert_int_equal(egress_check(NULL, "192.0.2.10", "h", "alice@pass.test"),
			 SPF_OUTCOME_TEMPERROR);
	assert_stats(NULL, 0, 0);
}

static void egress_outcome_expires_with_the_least_ttl(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	(void)state;

	/* The TXT record lives 300 s, the A record it names 1 s: 1 s it is. */
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "a@shortttl.test"), SPF_OUTCOME_PASS);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "b@shortttl.test"), SPF_OUTCOME_PASS);
	assert_stats(p, 1, 1);
	usleep(1500000);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "c@shortttl.test"), SPF_OUTCOME_PASS);
	assert_stats(p, 2, 1);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "d@shortttl.test"), SPF_OUTCOME_PASS);
	assert_stats(p, 2, 2);
	assert_int_equal(spf_dnsmasq_count(&server, "A", "h.shortttl.test"), 2);
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "shortttl.test"), 1);
	spf_pool_stop(p);
}

static void egress_outcome_is_never_reused_when_a_record_uses_the_sender(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	static const struct { const char *helo, *from; enum spf_outcome want; } calls[] = {
		{ "h", "alice@local.test", SPF_OUTCOME_PASS },		/* %{l} */
		{ "h", "alice@local.test", SPF_OUTCOME_PASS },
		{ "h", "bob@local.test", SPF_OUTCOME_FAIL },
		{ "h", "alice@local2.test", SPF_OUTCOME_PASS },		/* %{Lr-} */
		{ "h", "bob@local2.test", SPF_OUTCOME_FAIL },
		{ "h", "alice@viainclude.test", SPF_OUTCOME_PASS },	/* %{l} in an include */
		{ "h", "bob@viainclude.test", SPF_OUTCOME_FAIL },
		{ "host.a.test", "x@helomacro.test", SPF_OUTCOME_PASS },	/* %{h} */
		{ "h1.test", "x@helomacro.test", SPF_OUTCOME_FAIL },
		{ "h", "x@sender.test", SPF_OUTCOME_PASS },		/* %{s}, never expanded */
		{ "h", "x@sender.test", SPF_OUTCOME_PASS },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		enum spf_outcome got = egress_check(p, "192.0.2.10", calls[i].helo, calls[i].from);
		if (got != calls[i].want)
			fprintf(stderr, "%s (HELO %s): got %s\n", calls[i].from, calls[i].helo,
				spf_outcome_name(got));
		assert_int_equal(got, calls[i].want);
		assert_stats(p, i + 1, 0);
	}
	/* "%%" is a literal percent sign, not a macro: this one is reused. */
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "x@literal.test"), SPF_OUTCOME_PASS);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "y@literal.test"), SPF_OUTCOME_PASS);
	assert_stats(p, sizeof(calls) / sizeof(calls[0]) + 1, 1);
	spf_pool_stop(p);
}

static void egress_temperror_is_never_reused(void **state)
{
	struct spf_pool *p = pool_at(server.port, 300);
	(void)state;

	/* REFUSED, then a server that never answers. */
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "a@elsewhere.example"),
			 SPF_OUTCOME_TEMPERROR);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "b@elsewhere.example"),
			 SPF_OUTCOME_TEMPERROR);
	assert_stats(p, 2, 0);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "a@x.slow.test"), SPF_OUTCOME_TEMPERROR);
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "b@x.slow.test"), SPF_OUTCOME_TEMPERROR);
	assert_stats(p, 4, 0);
	spf_pool_stop(p);
}

static void egress_addresses_are_cached_separately(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	static const struct { const char *ip; enum spf_outcome want; } by_address[] = {
		{ "192.0.2.10", SPF_OUTCOME_PASS }, { "198.51.100.7", SPF_OUTCOME_FAIL },
		{ "2001:db8::25", SPF_OUTCOME_PASS }, { "2001:db8:ffff::1", SPF_OUTCOME_FAIL },
	};
	(void)state;

	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < 4; i++)
			assert_int_equal(egress_check(p, by_address[i].ip, "h",
						      round ? "bob@pass.test" : "alice@pass.test"),
					 by_address[i].want);
	assert_stats(p, 4, 4);
	/* An IPv4-mapped address is the IPv4 address. */
	assert_int_equal(egress_check(p, "::ffff:198.51.100.7", "h", "carol@pass.test"),
			 SPF_OUTCOME_FAIL);
	assert_stats(p, 4, 5);
	spf_pool_stop(p);
}

static void egress_null_sender_is_never_cached(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	(void)state;

	assert_int_equal(egress_check(p, "192.0.2.10", "helo.test", ""), SPF_OUTCOME_PASS);
	assert_int_equal(egress_check(p, "192.0.2.10", "helo.test", "<>"), SPF_OUTCOME_PASS);
	assert_int_equal(egress_check(p, "192.0.2.10", "fail.test", ""), SPF_OUTCOME_FAIL);
	assert_stats(p, 3, 0);
	/* Nothing valid to check: none, without asking. */
	assert_int_equal(egress_check(p, "192.0.2.10", "h", "user@bad..test"), SPF_OUTCOME_NONE);
	assert_stats(p, 3, 0);
	spf_pool_stop(p);
}

/* Egress address number i in 2001:db8::/64, which pass.test permits. */
static void egress_address(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "2001:db8::%x:%x", i >> 16, i & 0xffff);
}

static void egress_cache_at_its_limit_drops_the_least_recently_used(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	char ip[NETADDR_TEXT_MAX];
	(void)state;

	for (unsigned i = 1; i <= SPF_EGRESS_CACHE_MAX; i++) {
		egress_address(i, ip, sizeof(ip));
		assert_int_equal(egress_check(p, ip, "h", "a@pass.test"), SPF_OUTCOME_PASS);
	}
	assert_stats(p, SPF_EGRESS_CACHE_MAX, 0);
	/* 1 is used again; then a new one pushes out 2, the least recently used. */
	egress_address(1, ip, sizeof(ip));
	assert_int_equal(egress_check(p, ip, "h", "b@pass.test"), SPF_OUTCOME_PASS);
	egress_address(SPF_EGRESS_CACHE_MAX + 1, ip, sizeof(ip));
	assert_int_equal(egress_check(p, ip, "h", "b@pass.test"), SPF_OUTCOME_PASS);
	assert_stats(p, SPF_EGRESS_CACHE_MAX + 1, 1);
	egress_address(1, ip, sizeof(ip));
	assert_int_equal(egress_check(p, ip, "h", "c@pass.test"), SPF_OUTCOME_PASS);
	egress_address(3, ip, sizeof(ip));
	assert_int_equal(egress_check(p, ip, "h", "c@pass.test"), SPF_OUTCOME_PASS);
	assert_stats(p, SPF_EGRESS_CACHE_MAX + 1, 3);
	egress_address(2, ip, sizeof(ip));
	assert_int_equal(egress_check(p, ip, "h", "c@pass.test"), SPF_OUTCOME_PASS);
	assert_stats(p, SPF_EGRESS_CACHE_MAX + 2, 3);
	spf_pool_stop(p);
}

struct egress_worker {
	struct spf_pool *pool;
	int id;
	int wrong;
};

static void *egress_worker_thread(void *arg)
{
	static const struct { const char *ip, *from; enum spf_outcome want; } mix[] = {
		{ "192.0.2.10", "a@pass.test", SPF_OUTCOME_PASS },
		{ "198.51.100.7", "b@pass.test", SPF_OUTCOME_FAIL },
		{ "2001:db8::25", "c@fail.test", SPF_OUTCOME_FAIL },
		{ "192.0.2.10", "d@softfail.test", SPF_OUTCOME_SOFTFAIL },
		{ "2001:db8::25", "e@neutral.test", SPF_OUTCOME_NEUTRAL },
		{ "198.51.100.7", "f@fail.test", SPF_OUTCOME_PASS },
	};
	struct egress_worker *w = arg;

	for (int i = 0; i < 50; i++) {
		size_t k = (size_t)(i + w->id) % (sizeof(mix) / sizeof(mix[0]));
		if (egress_check(w->pool, mix[k].ip, "h", mix[k].from) != mix[k].want)
			w->wrong++;
	}
	return NULL;
}

static void concurrent_egress_checks_share_the_cache(void **state)
{
	struct spf_pool *p = pool_at(server.port, MAIN_TIMEOUT_MS);
	struct egress_worker w[8];
	pthread_t t[8];
	unsigned long requests, hits;
	(void)state;

	for (int i = 0; i < 8; i++) {
		w[i] = (struct egress_worker){ .pool = p, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, egress_worker_thread, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].wrong, 0);
	}
	/* Each check is a hit or one request; misses at the same moment may overlap. */
	spf_pool_stats(p, &requests, &hits);
	assert_int_equal(requests + hits, 8 * 50);
	assert_true(requests >= 6 && requests <= 6 * 8);
	spf_pool_stop(p);
}

static int start_all(void **state)
{
	(void)state;
	if (spf_dnsmasq_start_or_skip(&server) != 0)
		return -1;
	pool = pool_at(server.port, MAIN_TIMEOUT_MS);
	return 0;
}

static int stop_all(void **state)
{
	(void)state;
	spf_pool_stop(pool);
	spf_dnsmasq_stop(&server);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--spf-helper") == 0)
		return spf_helper_main(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(outcome_names_are_rfc8601),
		cmocka_unit_test(bad_resolver_is_refused_at_start),
		cmocka_unit_test(outcomes_for_ipv4_client),
		cmocka_unit_test(outcomes_for_ipv6_client),
		cmocka_unit_test(details_name_domain_and_address),
		cmocka_unit_test(null_sender_checks_helo),
		cmocka_unit_test(identity_domain_is_what_gets_checked),
		cmocka_unit_test(burst_from_one_domain_costs_one_query),
		cmocka_unit_test(dmarc_record_found_at_domain_or_org_domain),
		cmocka_unit_test(concurrent_checks_get_their_own_answers),
		cmocka_unit_test(helpers_run_unprivileged),
		cmocka_unit_test(killed_helper_costs_only_the_request_in_flight),
		cmocka_unit_test(timed_out_caller_leaves_its_helper_at_work),
		cmocka_unit_test(hung_helper_is_killed_after_two_waits),
		cmocka_unit_test(queued_request_gets_its_full_time_once_sent),
		cmocka_unit_test(slow_zone_does_not_hold_a_domain_routed_to_its_helper),
		cmocka_unit_test(unreachable_dns_answers_within_timeout),
		cmocka_unit_test(stopped_dns_server_gives_temperror),
		cmocka_unit_test(egress_outcome_is_reused_for_the_same_domain),
		cmocka_unit_test(egress_outcome_expires_with_the_least_ttl),
		cmocka_unit_test(egress_outcome_is_never_reused_when_a_record_uses_the_sender),
		cmocka_unit_test(egress_temperror_is_never_reused),
		cmocka_unit_test(egress_addresses_are_cached_separately),
		cmocka_unit_test(egress_null_sender_is_never_cached),
		cmocka_unit_test(egress_cache_at_its_limit_drops_the_least_recently_used),
		cmocka_unit_test(concurrent_egress_checks_share_the_cache),
	};
	return cmocka_run_group_tests(tests, start_all, stop_all);
}
