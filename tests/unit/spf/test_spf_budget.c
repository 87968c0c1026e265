/*
 * Unit tests of the SPF evaluation's DNS layer (spf_budget.c): RFC
 * 7208's bounds on time, lookups and void lookups, and the observer
 * that shows the helper every answer, over a real resolver (dns.c)
 * asking a private dnsmasq or the scripted server of test_spf_fakedns.
 */
#include "unit.h"

#include <netinet/in.h>

#include "dns.h"
#include "spf_budget.h"
#include "test_spf_dnsmasq.h"
#include "test_spf_fakedns.h"

static struct spf_dnsmasq server;

/* An evaluation's DNS: a budget over a resolver of its own. */
struct evaluation {
	struct dns_resolver *r;
	struct spf_budget *b;
};

static struct evaluation evaluation_at(int port, long timeout_ms)
{
	char spec[32], err[256] = "";
	struct evaluation e;

	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	e.r = dns_resolver_new(spec, timeout_ms, err, sizeof(err));
	assert_non_null(e.r);
	assert_string_equal(err, "");
	e.b = spf_budget_new(e.r);
	assert_non_null(e.b);
	return e;
}

static void evaluation_free(struct evaluation *e)
{
	spf_budget_free(e->b);
	dns_resolver_free(e->r);
}

/* Looks name up through the budget and checks how it was answered. */
static void expect_answer(struct spf_budget *b, const char *name, ns_type type, int herrno)
{
	SPF_dns_rr_t *rr = spf_budget_lookup(b, name, type);
	assert_non_null(rr);
	assert_int_equal(rr->herrno, herrno);
	SPF_dns_rr_free(rr);
}

static void budget_bounds_time_and_lookups(void **state)
{
	struct evaluation e = evaluation_at(server.blackhole_port, 400);
	long long t0;
	(void)state;

	/* 250 ms budget: the query is cut short, the next is not even sent. */
	spf_budget_start(e.b, 250, 0, 0);
	t0 = spf_test_now_ms();
	expect_answer(e.b, "pass.test", ns_t_txt, TRY_AGAIN);
	expect_answer(e.b, "fail.test", ns_t_txt, TRY_AGAIN);
	assert_true(spf_test_now_ms() - t0 < 250 + 150);
	assert_int_equal(spf_budget_exceeded(e.b), SPF_BUDGET_OVER_TIME);
	evaluation_free(&e);

	e = evaluation_at(server.port, 2000);
	spf_budget_start(e.b, 0, 3, 0);
	for (int i = 0; i < 3; i++)
		expect_answer(e.b, "pass.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	expect_answer(e.b, "pass.test", ns_t_txt, TRY_AGAIN);
	assert_int_equal(spf_budget_exceeded(e.b), SPF_BUDGET_OVER_LOOKUPS);
	/* A new evaluation starts afresh. */
	spf_budget_start(e.b, 0, 3, 0);
	expect_answer(e.b, "pass.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	evaluation_free(&e);
}

static void budget_bounds_void_lookups(void **state)
{
	struct evaluation e = evaluation_at(server.port, 2000);
	(void)state;

	/* Two void answers: NXDOMAIN to an A question, NO_DATA to another. */
	spf_budget_start(e.b, 0, 0, 2);
	expect_answer(e.b, "nx1.void.test", ns_t_a, HOST_NOT_FOUND);
	expect_answer(e.b, "pass.test", ns_t_a, NO_DATA);
	/* TXT questions fetch records; their absence is not a void lookup. */
	expect_answer(e.b, "nx2.void.test", ns_t_txt, HOST_NOT_FOUND);
	/* Nor are the address questions for the hosts an MX answer named. */
	expect_answer(e.b, "v4mx.test", ns_t_mx, NETDB_SUCCESS);
	expect_answer(e.b, "mx1.v4mx.test", ns_t_aaaa, NO_DATA);
	expect_answer(e.b, "MX2.v4mx.test.", ns_t_aaaa, NO_DATA);
	expect_answer(e.b, "mx3.v4mx.test", ns_t_aaaa, NO_DATA);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	/* The third is answered as it is, and ends the evaluation. */
	expect_answer(e.b, "nx3.void.test", ns_t_mx, HOST_NOT_FOUND);
	assert_int_equal(spf_budget_exceeded(e.b), SPF_BUDGET_OVER_VOID);
	expect_answer(e.b, "host.a.test", ns_t_a, TRY_AGAIN);
	/* A new evaluation starts afresh; 0 is no limit. */
	spf_budget_start(e.b, 0, 0, 0);
	for (int i = 0; i < 4; i++)
		expect_answer(e.b, "nx1.void.test", ns_t_aaaa, HOST_NOT_FOUND);
	expect_answer(e.b, "host.a.test", ns_t_a, NETDB_SUCCESS);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	evaluation_free(&e);
}

static void impossible_names_are_void_but_no_lookup(void **state)
{
	struct evaluation e = evaluation_at(server.port, 2000);
	(void)state;

	/* One lookup and one void answer allowed. */
	spf_budget_start(e.b, 0, 1, 1);
	expect_answer(e.b, "bad..test", ns_t_a, HOST_NOT_FOUND);
	expect_answer(e.b, "pass.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	/* Type SPF is answered unasked and costs nothing either. */
	expect_answer(e.b, "pass.test", ns_t_spf, NO_DATA);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	/* A second void answer is one too many, though no question was sent. */
	expect_answer(e.b, "sp ace.test", ns_t_aaaa, HOST_NOT_FOUND);
	assert_int_equal(spf_budget_exceeded(e.b), SPF_BUDGET_OVER_VOID);
	evaluation_free(&e);
}

static void cached_answers_outlive_the_deadline(void **state)
{
	struct evaluation e = evaluation_at(server.port, 2000);
	int asked;
	(void)state;

	spf_budget_start(e.b, 0, 0, 0);
	expect_answer(e.b, "softfail.test", ns_t_txt, NETDB_SUCCESS);
	asked = spf_dnsmasq_count(&server, "TXT", "neutral.test");
	spf_budget_start(e.b, 1, 0, 0);
	usleep(5000);
	/* From the cache: answered, and the evaluation is not over time. */
	expect_answer(e.b, "softfail.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(spf_budget_exceeded(e.b), 0);
	/* Not in the cache: not asked, and over time. */
	expect_answer(e.b, "neutral.test", ns_t_txt, TRY_AGAIN);
	assert_int_equal(spf_budget_exceeded(e.b), SPF_BUDGET_OVER_TIME);
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "neutral.test"), asked);
	evaluation_free(&e);
}

struct observed {
	int calls;
	long ttl;			/* shown with the last answer */
	int herrno;			/* of the last answer; -1 for NULL */
};

static void observe(void *arg, const SPF_dns_rr_t *answer, long ttl)
{
	struct observed *o = arg;

	o->calls++;
	o->ttl = ttl;
	o->herrno = answer != NULL ? answer->herrno : -1;
}

/* Looks up a TXT record that must be shown once with herrno; the ttl shown. */
static long observed_ttl(struct spf_budget *b, struct observed *o, const char *name,
	int herrno)
{
	int calls = o->calls;
	SPF_dns_rr_t *rr = spf_budget_lookup(b, name, ns_t_txt);

	assert_int_equal(rr->herrno, herrno);
	assert_int_equal(o->calls, calls + 1);
	assert_int_equal(o->herrno, herrno);
	SPF_dns_rr_free(rr);
	return o->ttl;
}

static void observer_sees_each_answer_with_the_ttl_left(void **state)
{
	struct evaluation e = evaluation_at(server.port, 2000);
	struct observed o = { 0 };
	struct fake_dns f;
	(void)state;

	spf_budget_observe(e.b, observe, &o);
	assert_int_equal(observed_ttl(e.b, &o, "pass.test", NETDB_SUCCESS), 300);
	usleep(10000);
	/* From the cache: the whole seconds left. */
	assert_int_equal(observed_ttl(e.b, &o, "pass.test", NETDB_SUCCESS), 299);
	assert_int_equal(observed_ttl(e.b, &o, "refused.example", TRY_AGAIN), 0);
	/* Over the lookup budget: a failure. */
	spf_budget_start(e.b, 0, 1, 0);
	assert_int_equal(observed_ttl(e.b, &o, "pass.test", NETDB_SUCCESS), 299);
	assert_int_equal(observed_ttl(e.b, &o, "pass.test", TRY_AGAIN), 0);
	spf_budget_start(e.b, 0, 0, 0);
	/* Made up without asking (type SPF, impossible names): not shown. */
	SPF_dns_rr_free(spf_budget_lookup(e.b, "pass.test", ns_t_spf));
	SPF_dns_rr_free(spf_budget_lookup(e.b, "bad..test", ns_t_txt));
	assert_int_equal(o.calls, 5);
	evaluation_free(&e);

	fake_dns_start(&f);
	e = evaluation_at(f.port, 1000);
	spf_budget_observe(e.b, observe, &o);
	assert_int_equal(observed_ttl(e.b, &o, "negative.test", HOST_NOT_FOUND), 120);
	assert_int_equal(observed_ttl(e.b, &o, "nosoa.test", NO_DATA), 0);	/* TTL unknown */
	assert_int_equal(observed_ttl(e.b, &o, "servfail.test", TRY_AGAIN), 0);
	assert_int_equal(observed_ttl(e.b, &o, "cname.test", NETDB_SUCCESS), 50);
	spf_budget_observe(e.b, NULL, NULL);
	SPF_dns_rr_free(spf_budget_lookup(e.b, "cname.test", ns_t_txt));
	assert_int_equal(o.calls, 9);
	evaluation_free(&e);
	fake_dns_stop(&f);
}

static int start_server(void **state)
{
	(void)state;
	return spf_dnsmasq_start_or_skip(&server);
}

static int stop_server(void **state)
{
	(void)state;
	spf_dnsmasq_stop(&server);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(budget_bounds_time_and_lookups),
		cmocka_unit_test(budget_bounds_void_lookups),
		cmocka_unit_test(impossible_names_are_void_but_no_lookup),
		cmocka_unit_test(cached_answers_outlive_the_deadline),
		cmocka_unit_test(observer_sees_each_answer_with_the_ttl_left),
	};
	return cmocka_run_group_tests(tests, start_server, stop_server);
}
