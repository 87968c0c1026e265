/*
 * fuzz_dns - DNS replies as the SPF helpers' resolver reads them
 * (dns_reply_parse: the question check and the answer parser of dns.c),
 * and the cache that keeps the answers (dns_cache_put, dns_cache_get).
 *
 * Input: one DNS message, raw wire bytes as a server sends them over UDP.
 * The question asked is the one the message names (its first question;
 * example.com/A when it names none), with the message's own ID, so the
 * answer sections are what gets fuzzed. Properties: every reply gives an
 * answer in libspf2's form with one of the four outcomes, records only
 * with success, a TTL within DNS_TTL_MAX, NUL-terminated names and
 * texts; an answer cached reads back the same.
 */
#include "config.h"

#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "dns_cache.h"
#include "fuzz.h"

static bool fuzz_same(const SPF_dns_rr_t *a, const SPF_dns_rr_t *b)
{
	if (a->num_rr != b->num_rr || a->herrno != b->herrno || a->rr_type != b->rr_type)
		return false;
	for (int i = 0; i < a->num_rr; i++) {
		switch (a->rr_type) {
		case ns_t_a:
			if (memcmp(&a->rr[i]->a, &b->rr[i]->a, 4) != 0)
				return false;
			break;
		case ns_t_aaaa:
			if (memcmp(&a->rr[i]->aaaa, &b->rr[i]->aaaa, 16) != 0)
				return false;
			break;
		default:	/* TXT, MX and PTR are strings */
			if (strcmp(a->rr[i]->txt, b->rr[i]->txt) != 0)
				return false;
			break;
		}
	}
	return true;
}

static void fuzz_check_answer(const SPF_dns_rr_t *rr, long ttl)
{
	fuzz_check(rr->herrno == NETDB_SUCCESS || rr->herrno == NO_DATA ||
		   rr->herrno == HOST_NOT_FOUND || rr->herrno == TRY_AGAIN, "an outcome libspf2 does not know");
	fuzz_check((rr->herrno == NETDB_SUCCESS) == (rr->num_rr > 0), "records without success, or none with it");
	fuzz_check(ttl <= DNS_TTL_MAX && rr->ttl >= 0 && rr->ttl <= DNS_TTL_MAX, "a TTL out of range");
	fuzz_check(rr->herrno != TRY_AGAIN || ttl < 0, "a failure that would be cached");
	for (int i = 0; i < rr->num_rr; i++)
		if (rr->rr_type != ns_t_a && rr->rr_type != ns_t_aaaa)
			fuzz_check(strlen(rr->rr[i]->txt) < rr->rr_buf_len[i], "a record text overruns its buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_resolver *r;
	static struct dns_cache *cache;
	char name[NS_MAXDNAME] = "example.com", err[256];
	ns_type type = ns_t_a;
	ns_msg handle;
	ns_rr q;
	SPF_dns_rr_t *rr, *cached;
	long ttl;

	fuzz_init();
	if (r == NULL) {
		r = dns_resolver_new("127.0.0.1:1", 100, err, sizeof(err));
		cache = dns_cache_new(16);
		fuzz_check(r != NULL && cache != NULL, err);
	}
	if (ns_initparse(data, (int)size, &handle) == 0 && ns_msg_count(handle, ns_s_qd) > 0 &&
	    ns_parserr(&handle, ns_s_qd, 0, &q) == 0) {
		snprintf(name, sizeof(name), "%s", ns_rr_name(q));
		type = ns_rr_type(q);
	}
	rr = dns_reply_parse(r, name, type, data, size, &ttl);
	fuzz_check(rr != NULL, "no answer (out of memory?)");
	fuzz_check_answer(rr, ttl);
	if (ttl > 0) {
		dns_cache_put(cache, rr->domain, type, rr, 0, 1000000);
		cached = dns_cache_get(cache, rr->domain, type, 0);
		fuzz_check(cached != NULL && fuzz_same(rr, cached), "a cached answer reads back different");
		SPF_dns_rr_free(cached);
	}
	SPF_dns_rr_free(rr);
	return 0;
}
