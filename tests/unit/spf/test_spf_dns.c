/*
 * Unit tests of our resolver (dns.c) and its cache (dns_cache.c), in
 * this process, against a private dnsmasq and the scripted server of
 * test_spf_fakedns. The budget layer over it is test_spf_budget's.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dns.h"
#include "dns_cache.h"
#include "test_spf_dnsmasq.h"
#include "test_spf_fakedns.h"

static struct spf_dnsmasq server;

static struct dns_resolver *resolver_at(int port, long timeout_ms)
{
	char spec[32], err[256] = "";
	struct dns_resolver *r;

	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	r = dns_resolver_new(spec, timeout_ms, err, sizeof(err));
	assert_non_null(r);
	assert_string_equal(err, "");
	return r;
}

/* Looks name up and checks how it was answered. */
static void expect_answer(struct dns_resolver *r, const char *name, ns_type type, int herrno)
{
	SPF_dns_rr_t *rr = dns_lookup(r, name, type);
	assert_non_null(rr);
	assert_int_equal(rr->herrno, herrno);
	SPF_dns_rr_free(rr);
}

static void server_spec_forms_parse(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];
	char text[INET6_ADDRSTRLEN];
	(void)state;

	assert_int_equal(dns_server_parse("192.0.2.1", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 53);
	assert_int_equal(dns_server_parse("192.0.2.1:5353", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 5353);
	assert_int_equal(dns_server_parse("[2001:db8::1]:5300", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 5300);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "2001:db8::1");
	assert_int_equal(dns_server_parse("[::1]", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 53);
	assert_int_equal(dns_server_parse("2001:db8::53", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 53);
	assert_int_equal(dns_server_parse("system", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(dns_server_parse(NULL, &ss, &len, err, sizeof(err)), 0);

	const char *bad[] = { "", "dns.example", "[192.0.2.1]", "192.0.2.1:0", "192.0.2.1:65536",
			      "192.0.2.1:", ":53", "[::1", "[::1]x", "192.0.2.1:5x", "300.1.1.1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(dns_server_parse(bad[i], &ss, &len, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "bad resolver"));
	}
}

static void resolv_conf_first_usable_nameserver_wins(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char text[INET6_ADDRSTRLEN];
	(void)state;

	const char *conf = unit_file("# comment\nsearch example.com\nnameserver not-an-address\n"
				     "nameserver 2001:db8::53\nnameserver 192.0.2.53\n");
	assert_int_equal(dns_resolv_conf_server(conf, &ss, &len, NULL, 0), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "2001:db8::53");
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 53);

	/* No nameserver at all: glibc's default, the local host. */
	const char *empty = unit_file("options ndots:1\n");
	assert_int_equal(dns_resolv_conf_server(empty, &ss, &len, NULL, 0), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof(text));
	assert_string_equal(text, "127.0.0.1");
	assert_int_equal(dns_resolv_conf_server("/nonexistent/resolv.conf", &ss, &len, NULL, 0), 0);
	assert_int_equal(ss.ss_family, AF_INET);
}

static void records_of_each_type_are_parsed(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	SPF_dns_rr_t *rr;
	char text[INET6_ADDRSTRLEN];
	(void)state;

	rr = dns_lookup(r, "pass.test", ns_t_txt);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->txt, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/64 -all");
	assert_int_equal(rr->ttl, 300);
	SPF_dns_rr_free(rr);

	/* Two character-strings of one record are joined without a space. */
	rr = dns_lookup(r, "SPLIT.test.", ns_t_txt);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->txt, "v=spf1 ip4:192.0.2.10 -all");
	SPF_dns_rr_free(rr);

	rr = dns_lookup(r, "host.a.test", ns_t_a);
	assert_int_equal(rr->num_rr, 1);
	inet_ntop(AF_INET, &rr->rr[0]->a, text, sizeof(text));
	assert_string_equal(text, "192.0.2.10");
	SPF_dns_rr_free(rr);

	rr = dns_lookup(r, "host.a.test", ns_t_aaaa);
	assert_int_equal(rr->num_rr, 1);
	inet_ntop(AF_INET6, &rr->rr[0]->aaaa, text, sizeof(text));
	assert_string_equal(text, "2001:db8::25");
	SPF_dns_rr_free(rr);

	rr = dns_lookup(r, "mx.test", ns_t_mx);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->mx, "mail.mx.test");
	SPF_dns_rr_free(rr);
	dns_resolver_free(r);
}

static void negative_and_failed_answers_are_told_apart(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	SPF_dns_rr_t *rr;
	(void)state;

	rr = dns_lookup(r, "nonexistent.test", ns_t_txt);
	assert_int_equal(rr->herrno, HOST_NOT_FOUND);
	assert_int_equal(rr->num_rr, 0);
	SPF_dns_rr_free(rr);
	expect_answer(r, "pass.test", ns_t_a, NO_DATA);
	/* dnsmasq REFUSES names outside its zone: a temporary failure. */
	expect_answer(r, "elsewhere.example", ns_t_txt, TRY_AGAIN);
	/* Characters that DNS text escapes still get their answer, not a timeout. */
	long long t0 = spf_test_now_ms();
	rr = dns_lookup(r, "user@odd$name.test", ns_t_txt);
	assert_int_equal(rr->herrno, HOST_NOT_FOUND);
	assert_true(spf_test_now_ms() - t0 < 500);
	SPF_dns_rr_free(rr);
	unsigned long before;
	struct dns_stats st;
	/* Names that cannot exist are never sent. */
	dns_stats_get(r, &st);
	before = st.queries;
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	const char *impossible[] = { "a..b.test", "", ".", "sp ace.test", "back\\slash.test",
				     longname };
	for (size_t i = 0; i < sizeof(impossible) / sizeof(impossible[0]); i++)
		expect_answer(r, impossible[i], ns_t_txt, HOST_NOT_FOUND);
	dns_stats_get(r, &st);
	assert_int_equal(st.queries, before);
	dns_resolver_free(r);
}

static void truncated_answer_is_asked_again_over_tcp(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	SPF_dns_rr_t *rr;
	int spf = 0;
	(void)state;

	rr = dns_lookup(r, "big.test", ns_t_txt);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 8);
	for (int i = 0; i < rr->num_rr; i++)
		if (strcmp(rr->rr[i]->txt, "v=spf1 ip4:192.0.2.10 -all") == 0)
			spf++;
	assert_int_equal(spf, 1);
	SPF_dns_rr_free(rr);
	/* One question over UDP (truncated), the same one over TCP. */
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "big.test"), 2);
	dns_resolver_free(r);
}

static void type_spf_is_answered_without_a_query(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	(void)state;

	expect_answer(r, "softfail.test", ns_t_spf, NO_DATA);
	assert_int_equal(spf_dnsmasq_count(&server, "SPF", "softfail.test"), 0);
	dns_resolver_free(r);
}

static void answers_are_cached_for_their_ttl(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	struct dns_stats st;
	(void)state;

	for (int i = 0; i < 50; i++) {
		SPF_dns_rr_t *rr = dns_lookup(r, i % 2 ? "Neutral.Test" : "neutral.test.", ns_t_txt);
		assert_int_equal(rr->herrno, NETDB_SUCCESS);
		assert_string_equal(rr->rr[0]->txt, "v=spf1 ?all");
		SPF_dns_rr_free(rr);
	}
	dns_stats_get(r, &st);
	assert_int_equal(st.lookups, 50);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 49);
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "neutral.test"), 1);
	/* Failures are not cached: each costs a query. */
	for (int i = 0; i < 2; i++) {
		SPF_dns_rr_t *rr = dns_lookup(r, "refused.example", ns_t_txt);
		assert_int_equal(rr->herrno, TRY_AGAIN);
		SPF_dns_rr_free(rr);
	}
	assert_int_equal(spf_dnsmasq_count(&server, "TXT", "refused.example"), 2);
	dns_resolver_free(r);
}

static void silent_server_costs_one_timeout(void **state)
{
	struct dns_resolver *r = resolver_at(server.blackhole_port, 400);
	long long t0 = spf_test_now_ms(), elapsed;
	SPF_dns_rr_t *rr;
	(void)state;

	rr = dns_lookup(r, "pass.test", ns_t_txt);
	elapsed = spf_test_now_ms() - t0;
	assert_int_equal(rr->herrno, TRY_AGAIN);
	assert_true(elapsed >= 380);
	assert_true(elapsed < 400 + 300);
	SPF_dns_rr_free(rr);
	dns_resolver_free(r);
}

static void spoofed_and_mismatched_answers_are_ignored(void **state)
{
	struct fake_dns f;
	struct dns_resolver *r;
	SPF_dns_rr_t *rr;
	(void)state;

	fake_dns_start(&f);
	r = resolver_at(f.port, 1000);
	rr = dns_lookup(r, "spoof.test", ns_t_txt);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->txt, "v=spf1 -all");
	SPF_dns_rr_free(rr);
	dns_resolver_free(r);
	fake_dns_stop(&f);
}

static void negative_answers_cached_for_soa_minimum_only(void **state)
{
	struct fake_dns f;
	struct dns_resolver *r;
	SPF_dns_rr_t *rr;
	(void)state;

	fake_dns_start(&f);
	r = resolver_at(f.port, 1000);
	for (int i = 0; i < 3; i++) {
		expect_answer(r, "negative.test", ns_t_txt, HOST_NOT_FOUND);
		expect_answer(r, "nosoa.test", ns_t_txt, NO_DATA);
		expect_answer(r, "garbage.test", ns_t_txt, TRY_AGAIN);
		expect_answer(r, "servfail.test", ns_t_txt, TRY_AGAIN);
		rr = dns_lookup(r, "cname.test", ns_t_txt);
		assert_int_equal(rr->herrno, NETDB_SUCCESS);
		assert_string_equal(rr->rr[0]->txt, "v=spf1 ?all");
		/* The chain's smallest TTL; from the cache, what is left of it. */
		assert_true(rr->ttl == 50 || (i > 0 && rr->ttl == 49));
		SPF_dns_rr_free(rr);
	}
	assert_int_equal(f.queries[1], 1);	/* SOA: cached */
	assert_int_equal(f.queries[2], 3);	/* no SOA: not cacheable */
	assert_int_equal(f.queries[3], 3);	/* failures are never cached */
	assert_int_equal(f.queries[4], 3);
	assert_int_equal(f.queries[5], 1);
	dns_resolver_free(r);
	fake_dns_stop(&f);
}

static SPF_dns_rr_t *txt_answer(const char *text)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(NULL, "x.test", ns_t_txt, 60, NETDB_SUCCESS);
	assert_int_equal(SPF_dns_rr_buf_realloc(rr, 0, strlen(text) + 1), SPF_E_SUCCESS);
	strcpy(rr->rr[0]->txt, text);
	rr->num_rr = 1;
	return rr;
}

static void cache_expires_and_evicts_least_recently_used(void **state)
{
	struct dns_cache *c = dns_cache_new(2);
	SPF_dns_rr_t *a = txt_answer("a"), *b = txt_answer("b"), *x = txt_answer("x"), *got;
	(void)state;

	dns_cache_put(c, "a.test", ns_t_txt, a, 0, 1000);
	dns_cache_put(c, "b.test", ns_t_txt, b, 0, 5000);
	got = dns_cache_get(c, "a.test", ns_t_txt, 999);
	assert_non_null(got);
	assert_string_equal(got->rr[0]->txt, "a");
	SPF_dns_rr_free(got);
	assert_null(dns_cache_get(c, "a.test", ns_t_a, 999));	/* type is part of the key */
	/* a was used last: adding x evicts b. */
	dns_cache_put(c, "x.test", ns_t_txt, x, 999, 5000);
	assert_int_equal(dns_cache_count(c), 2);
	assert_null(dns_cache_get(c, "b.test", ns_t_txt, 999));
	got = dns_cache_get(c, "x.test", ns_t_txt, 999);
	assert_non_null(got);
	assert_int_equal(got->ttl, 4);		/* 4.001 s left, rounded down */
	SPF_dns_rr_free(got);
	/* a expires at 1000. */
	assert_null(dns_cache_get(c, "a.test", ns_t_txt, 1000));
	assert_int_equal(dns_cache_count(c), 1);
	/* Replacing a key keeps one entry. */
	dns_cache_put(c, "x.test", ns_t_txt, b, 1000, 9000);
	assert_int_equal(dns_cache_count(c), 1);
	got = dns_cache_get(c, "x.test", ns_t_txt, 6000);
	assert_string_equal(got->rr[0]->txt, "b");
	SPF_dns_rr_free(got);
	SPF_dns_rr_free(a);
	SPF_dns_rr_free(b);
	SPF_dns_rr_free(x);
	dns_cache_free(c);
}

/*
 * A reply whose first answer parses and whose second does not is a
 * failure with no records: TRY_AGAIN never carries a record. Found by
 * tests/fuzz/fuzz_dns (its input is in the fuzz corpus).
 */
static void reply_broken_after_a_record_has_no_records(void **state)
{
	(void)state;
	static const unsigned char head[] = {
		0x4a, 0x2f, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,		/* 2 answers */
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 16, 0, 1,
		0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 12,		/* TXT, TTL 300 */
		11, 'v', '=', 's', 'p', 'f', '1', ' ', '-', 'a', 'l', 'l',
	};
	/* a second answer whose name points past the end of the message */
	static const unsigned char broken[] = { 0xc0, 0xff, 0, 16, 0, 1, 0, 0, 0, 60, 0, 0 };
	unsigned char msg[sizeof(head) + sizeof(broken)];
	struct dns_resolver *r = resolver_at(1, 100);
	SPF_dns_rr_t *rr;
	long ttl;

	memcpy(msg, head, sizeof(head));
	memcpy(msg + sizeof(head), broken, sizeof(broken));
	rr = dns_reply_parse(r, "example.com", ns_t_txt, msg, sizeof(msg), &ttl);
	assert_non_null(rr);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	assert_int_equal(rr->num_rr, 0);
	assert_int_equal(ttl, -1);
	SPF_dns_rr_free(rr);

	/* the same reply saying one answer is a success with its record */
	msg[7] = 1;
	rr = dns_reply_parse(r, "example.com", ns_t_txt, msg, sizeof(head), &ttl);
	assert_non_null(rr);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->txt, "v=spf1 -all");
	assert_int_equal(ttl, 300);
	SPF_dns_rr_free(rr);
	dns_resolver_free(r);
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
		cmocka_unit_test(server_spec_forms_parse),
		cmocka_unit_test(resolv_conf_first_usable_nameserver_wins),
		cmocka_unit_test(records_of_each_type_are_parsed),
		cmocka_unit_test(negative_and_failed_answers_are_told_apart),
		cmocka_unit_test(truncated_answer_is_asked_again_over_tcp),
		cmocka_unit_test(type_spf_is_answered_without_a_query),
		cmocka_unit_test(answers_are_cached_for_their_ttl),
		cmocka_unit_test(silent_server_costs_one_timeout),
		cmocka_unit_test(spoofed_and_mismatched_answers_are_ignored),
		cmocka_unit_test(negative_answers_cached_for_soa_minimum_only),
		cmocka_unit_test(cache_expires_and_evicts_least_recently_used),
		cmocka_unit_test(reply_broken_after_a_record_has_no_records),
	};
	return cmocka_run_group_tests(tests, start_server, stop_server);
}
