/*
 * Unit tests of our libspf2 DNS layer (dns.c) and its cache
 * (dns_cache.c), in this process, against a private dnsmasq.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns.h"
#include "dns_cache.h"
#include "test_spf_dnsmasq.h"

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

static void budget_bounds_time_and_lookups(void **state)
{
	struct dns_resolver *r = resolver_at(server.blackhole_port, 400);
	long long t0;
	(void)state;

	/* 250 ms budget: the query is cut short, the next is not even sent. */
	dns_budget_start(r, 250, 0, 0);
	t0 = spf_test_now_ms();
	expect_answer(r, "pass.test", ns_t_txt, TRY_AGAIN);
	expect_answer(r, "fail.test", ns_t_txt, TRY_AGAIN);
	assert_true(spf_test_now_ms() - t0 < 250 + 150);
	assert_int_equal(dns_budget_exceeded(r), DNS_BUDGET_TIME);
	dns_resolver_free(r);

	r = resolver_at(server.port, 2000);
	dns_budget_start(r, 0, 3, 0);
	for (int i = 0; i < 3; i++)
		expect_answer(r, "pass.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(dns_budget_exceeded(r), 0);
	expect_answer(r, "pass.test", ns_t_txt, TRY_AGAIN);
	assert_int_equal(dns_budget_exceeded(r), DNS_BUDGET_LOOKUPS);
	/* A new evaluation starts afresh. */
	dns_budget_start(r, 0, 3, 0);
	expect_answer(r, "pass.test", ns_t_txt, NETDB_SUCCESS);
	assert_int_equal(dns_budget_exceeded(r), 0);
	dns_resolver_free(r);
}

static void budget_bounds_void_lookups(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	(void)state;

	/* Two void answers: NXDOMAIN to an A question, NO_DATA to another. */
	dns_budget_start(r, 0, 0, 2);
	expect_answer(r, "nx1.void.test", ns_t_a, HOST_NOT_FOUND);
	expect_answer(r, "pass.test", ns_t_a, NO_DATA);
	/* TXT questions fetch records; their absence is not a void lookup. */
	expect_answer(r, "nx2.void.test", ns_t_txt, HOST_NOT_FOUND);
	/* Nor are the address questions for the hosts an MX answer named. */
	expect_answer(r, "v4mx.test", ns_t_mx, NETDB_SUCCESS);
	expect_answer(r, "mx1.v4mx.test", ns_t_aaaa, NO_DATA);
	expect_answer(r, "MX2.v4mx.test.", ns_t_aaaa, NO_DATA);
	expect_answer(r, "mx3.v4mx.test", ns_t_aaaa, NO_DATA);
	assert_int_equal(dns_budget_exceeded(r), 0);
	/* The third is answered as it is, and ends the evaluation. */
	expect_answer(r, "nx3.void.test", ns_t_mx, HOST_NOT_FOUND);
	assert_int_equal(dns_budget_exceeded(r), DNS_BUDGET_VOID);
	expect_answer(r, "host.a.test", ns_t_a, TRY_AGAIN);
	/* A new evaluation starts afresh; 0 is no limit. */
	dns_budget_start(r, 0, 0, 0);
	for (int i = 0; i < 4; i++)
		expect_answer(r, "nx1.void.test", ns_t_aaaa, HOST_NOT_FOUND);
	expect_answer(r, "host.a.test", ns_t_a, NETDB_SUCCESS);
	assert_int_equal(dns_budget_exceeded(r), 0);
	dns_resolver_free(r);
}

/*
 * A scripted DNS server on a loopback UDP port, run by a thread, for
 * answers dnsmasq will not give: spoofed, malformed, with an SOA.
 */
struct fake_dns {
	int fd, port;
	pthread_t thread;
	int queries[8];			/* per scripted name, see fake_names */
};

static const char *const fake_names[] = { "spoof.test", "negative.test", "nosoa.test",
					  "garbage.test", "servfail.test", "cname.test" };

static size_t put_rr_header(unsigned char *p, unsigned type, unsigned ttl, unsigned rdlen)
{
	p[0] = 0xc0;			/* name: pointer to the question's */
	p[1] = 12;
	p[2] = (unsigned char)(type >> 8), p[3] = (unsigned char)type;
	p[4] = 0, p[5] = 1;		/* IN */
	p[6] = (unsigned char)(ttl >> 24), p[7] = (unsigned char)(ttl >> 16);
	p[8] = (unsigned char)(ttl >> 8), p[9] = (unsigned char)ttl;
	p[10] = (unsigned char)(rdlen >> 8), p[11] = (unsigned char)rdlen;
	return 12;
}

static size_t put_txt(unsigned char *p, unsigned ttl, const char *text)
{
	size_t l = strlen(text), n = put_rr_header(p, ns_t_txt, ttl, (unsigned)l + 1);
	p[n++] = (unsigned char)l;
	memcpy(p + n, text, l);
	return n + l;
}

static void *fake_dns_run(void *arg)
{
	struct fake_dns *f = arg;
	unsigned char q[512], a[1024];
	struct sockaddr_storage peer;

	for (;;) {
		socklen_t plen = sizeof(peer);
		ssize_t n = recvfrom(f->fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &plen);
		size_t qend = 12, len;
		char name[256] = "";
		int which = -1;

		if (n <= 12)
			return NULL;	/* closed, or the stop packet */
		/* The question's name, as text, and where the question ends. */
		while (qend < (size_t)n && q[qend] != 0) {
			strncat(name, (char *)q + qend + 1, q[qend]);
			qend += q[qend] + 1;
			if (q[qend] != 0)
				strcat(name, ".");
		}
		qend += 5;
		for (size_t i = 0; i < sizeof(fake_names) / sizeof(fake_names[0]); i++)
			if (strcmp(name, fake_names[i]) == 0)
				which = (int)i;
		if (which < 0)
			continue;
		f->queries[which]++;
		memcpy(a, q, qend);
		a[2] = 0x81, a[3] = 0x80;			/* QR RD RA, NOERROR */
		a[6] = a[7] = a[8] = a[9] = a[10] = a[11] = 0;	/* no AN/NS/AR (no OPT back) */
		len = qend;
		switch (which) {
		case 0:	/* spoof.test: wrong ID first, then a wrong question, then the truth */
			a[0] ^= 0xff;
			len += put_txt(a + len, 300, "v=spf1 +all");
			a[7] = 1;
			sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
			a[0] ^= 0xff;
			a[qend - 3] ^= 0x01;			/* QTYPE TXT -> other */
			sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
			a[qend - 3] ^= 0x01;
			len = qend;
			len += put_txt(a + len, 300, "v=spf1 -all");
			break;
		case 1:	/* negative.test: NXDOMAIN, SOA TTL 600, minimum 120 */
			a[3] = 0x83;
			a[9] = 1;
			len += put_rr_header(a + len, ns_t_soa, 600, 22);
			memset(a + len, 0, 22);
			a[len + 20] = 0, a[len + 21] = 120;	/* minimum, last 4 bytes */
			len += 22;
			break;
		case 2:	/* nosoa.test: NODATA without SOA */
			break;
		case 3:	/* garbage.test: claims an answer that is not there */
			a[7] = 1;
			a[len++] = 0xc0;
			break;
		case 4:	/* servfail.test */
			a[3] = 0x82;
			break;
		case 5:	/* cname.test: CNAME (TTL 50) to a TXT (TTL 100) */
			a[7] = 2;
			len += put_rr_header(a + len, ns_t_cname, 50, 2);
			a[len++] = 0xc0, a[len++] = 12;
			len += put_txt(a + len, 100, "v=spf1 ?all");
			break;
		}
		sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
	}
}

static void fake_dns_start(struct fake_dns *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	/* Port 0: the kernel picks a free one, so it cannot collide. */
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_dns_run, f), 0);
}

static void fake_dns_stop(struct fake_dns *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sendto(fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	pthread_join(f->thread, NULL);
	close(f->fd);
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
static long observed_ttl(struct dns_resolver *r, struct observed *o, const char *name,
	int herrno)
{
	int calls = o->calls;
	SPF_dns_rr_t *rr = dns_lookup(r, name, ns_t_txt);

	assert_int_equal(rr->herrno, herrno);
	assert_int_equal(o->calls, calls + 1);
	assert_int_equal(o->herrno, herrno);
	SPF_dns_rr_free(rr);
	return o->ttl;
}

static void observer_sees_each_answer_with_the_ttl_left(void **state)
{
	struct dns_resolver *r = resolver_at(server.port, 2000);
	struct observed o = { 0 };
	struct fake_dns f;
	(void)state;

	dns_resolver_observe(r, observe, &o);
	assert_int_equal(observed_ttl(r, &o, "pass.test", NETDB_SUCCESS), 300);
	usleep(10000);
	/* From the cache: the whole seconds left. */
	assert_int_equal(observed_ttl(r, &o, "pass.test", NETDB_SUCCESS), 299);
	assert_int_equal(observed_ttl(r, &o, "refused.example", TRY_AGAIN), 0);
	/* Over the lookup budget: a failure. */
	dns_budget_start(r, 0, 1, 0);
	assert_int_equal(observed_ttl(r, &o, "pass.test", NETDB_SUCCESS), 299);
	assert_int_equal(observed_ttl(r, &o, "pass.test", TRY_AGAIN), 0);
	dns_budget_start(r, 0, 0, 0);
	/* Made up without asking (type SPF, impossible names): not shown. */
	SPF_dns_rr_free(dns_lookup(r, "pass.test", ns_t_spf));
	SPF_dns_rr_free(dns_lookup(r, "bad..test", ns_t_txt));
	assert_int_equal(o.calls, 5);
	dns_resolver_free(r);

	fake_dns_start(&f);
	r = resolver_at(f.port, 1000);
	dns_resolver_observe(r, observe, &o);
	assert_int_equal(observed_ttl(r, &o, "negative.test", HOST_NOT_FOUND), 120);
	assert_int_equal(observed_ttl(r, &o, "nosoa.test", NO_DATA), 0);	/* TTL unknown */
	assert_int_equal(observed_ttl(r, &o, "servfail.test", TRY_AGAIN), 0);
	assert_int_equal(observed_ttl(r, &o, "cname.test", NETDB_SUCCESS), 50);
	dns_resolver_observe(r, NULL, NULL);
	SPF_dns_rr_free(dns_lookup(r, "cname.test", ns_t_txt));
	assert_int_equal(o.calls, 9);
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
	int rc = spf_dnsmasq_start(&server);
	if (rc == 77) {
		fprintf(stderr, "dnsmasq not installed: skipping\n");
		exit(77);
	}
	return rc;
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
		cmocka_unit_test(budget_bounds_time_and_lookups),
		cmocka_unit_test(budget_bounds_void_lookups),
		cmocka_unit_test(spoofed_and_mismatched_answers_are_ignored),
		cmocka_unit_test(negative_answers_cached_for_soa_minimum_only),
		cmocka_unit_test(cache_expires_and_evicts_least_recently_used),
		cmocka_unit_test(observer_sees_each_answer_with_the_ttl_left),
		cmocka_unit_test(reply_broken_after_a_record_has_no_records),
	};
	return cmocka_run_group_tests(tests, start_server, stop_server);
}
