/*
 * NAME
 *	dns - our libspf2 DNS layer: one resolver, per-query timeout, TTL cache
 * SYNOPSIS
 *	int dns_server_parse(const char *spec, struct sockaddr_storage *addr,
 *		socklen_t *addrlen, char *err, size_t len);
 *	int dns_resolv_conf_server(const char *path, struct sockaddr_storage *addr,
 *		socklen_t *addrlen, char *err, size_t len);
 *	struct dns_resolver *dns_resolver_new(const char *spec, long timeout_ms,
 *		char *err, size_t len);
 *	void dns_resolver_free(struct dns_resolver *r);
 *	SPF_dns_server_t *dns_resolver_layer(struct dns_resolver *r);
 *	SPF_dns_rr_t *dns_lookup(struct dns_resolver *r, const char *name,
 *		ns_type type);
 *	void dns_budget_start(struct dns_resolver *r, long budget_ms,
 *		unsigned max_lookups, unsigned max_void);
 *	unsigned dns_budget_exceeded(const struct dns_resolver *r);
 *	void dns_stats_get(const struct dns_resolver *r, struct dns_stats *out);
 *	void dns_resolver_observe(struct dns_resolver *r, dns_observer *fn,
 *		void *arg);
 *	SPF_dns_rr_t *dns_reply_parse(struct dns_resolver *r, const char *name,
 *		ns_type type, const unsigned char *msg, size_t len, long *ttl);
 * DESCRIPTION
 *	dns_server_parse turns the Resolver setting into the address of one
 *	DNS server: "system" is the first nameserver of /etc/resolv.conf
 *	(127.0.0.1 when it names none, as in glibc), otherwise a numeric
 *	"IPv4[:PORT]", "[IPv6][:PORT]" or bare IPv6 address; the port
 *	defaults to 53. It returns 0, or -1 with a one-line reason in err.
 *	dns_resolv_conf_server does the "system" part for a given file.
 *
 *	dns_resolver_new makes a resolver for spec whose queries each wait
 *	at most timeout_ms. With "system", resolv.conf is read again when
 *	it changes (checked at each dns_budget_start).
 *	dns_resolver_layer is the SPF_dns_server_t to hand to
 *	SPF_server_new_dns(); it stays owned by the resolver (libspf2 does
 *	not free it), so free the SPF server first, then the resolver.
 *
 *	dns_lookup answers (name, type) the way a libspf2 layer must: never
 *	NULL (libspf2 aborts on NULL) except when out of memory, and herrno
 *	NETDB_SUCCESS (num_rr > 0), NO_DATA, HOST_NOT_FOUND (NXDOMAIN, or a
 *	name that cannot exist) or TRY_AGAIN (timeout, network error,
 *	SERVFAIL, REFUSED, a malformed or mismatched answer, budget spent).
 *	TXT strings of one record are concatenated (RFC 7208 3.3). A
 *	truncated UDP answer is asked again over TCP. Answers are cached
 *	for their TTL (at most DNS_TTL_MAX); NXDOMAIN and NODATA for the
 *	SOA minimum when the server sends one; failures are never cached.
 *	An answer's ttl is what is left of it: its TTL when just asked (the
 *	SOA's for a negative one, 0 when it had none), the whole seconds
 *	left when from the cache. Type SPF (99) is answered NO_DATA
 *	without a query: RFC 7208 retired it, and libspf2 1.2.10 would
 *	otherwise double every lookup. The caller frees the answer with
 *	SPF_dns_rr_free.
 *
 *	dns_budget_start opens an evaluation: from then on, a lookup after
 *	budget_ms (<= 0: no deadline), beyond max_lookups (0: no limit;
 *	cache hits count) or after more than max_void void answers (0: no
 *	limit; NXDOMAIN or NO_DATA to an A, AAAA, MX or PTR question, RFC
 *	7208 4.6.4; TXT questions do not count, nor address questions for
 *	a host an MX or PTR answer of the evaluation named) is answered
 *	TRY_AGAIN without a query, and dns_budget_exceeded says which
 *	bound was hit (DNS_BUDGET_TIME, DNS_BUDGET_LOOKUPS,
 *	DNS_BUDGET_VOID). A query never waits past the deadline.
 *
 *	dns_resolver_observe has dns_lookup show every answer it gives to
 *	fn(arg, answer, ttl), asked or cached, before returning it; ttl is
 *	how many seconds the answer may still be relied on: its ttl, and 0
 *	for a failure (TRY_AGAIN; answer NULL when out of memory). Answers
 *	made without asking, for type SPF and for names that cannot exist,
 *	are not shown: they never change. fn NULL stops it. This is how the
 *	SPF helper learns how long an evaluation's result stays true.
 *
 *	dns_reply_parse is for tests and fuzzing: what a query for (name,
 *	type) makes of msg, a server's reply carrying the query's ID (msg's
 *	own): TRY_AGAIN when msg is not an answer to that question or is
 *	malformed, else the answer as dns_lookup gives it. *ttl is how long
 *	it would be cached (-1: not at all). Nothing is sent or cached.
 *
 *	Not thread-safe: one resolver per (single-threaded) SPF helper.
 */
#ifndef BM_DNS_H
#define BM_DNS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#define DNS_PORT 53
/* No answer is kept longer than a day, whatever its TTL (as unbound). */
#define DNS_TTL_MAX 86400
/* RFC 2308 allows hours for negative answers; an hour is what unbound uses. */
#define DNS_NEGATIVE_TTL_MAX 3600
/* Answers per helper; a few hundred bytes each, a few MB at most. */
#define DNS_CACHE_MAX 8192

#define DNS_BUDGET_TIME 1u
#define DNS_BUDGET_LOOKUPS 2u
#define DNS_BUDGET_VOID 4u

struct dns_resolver;

typedef void dns_observer(void *arg, const SPF_dns_rr_t *answer, long ttl);

struct dns_stats {
	unsigned long lookups;		/* dns_lookup calls, type SPF excluded */
	unsigned long cache_hits;
	unsigned long queries;		/* questions sent (UDP or TCP, no resends) */
	unsigned long failures;		/* lookups answered TRY_AGAIN */
};

int dns_server_parse(const char *spec, struct sockaddr_storage *addr, socklen_t *addrlen,
	char *err, size_t len);
int dns_resolv_conf_server(const char *path, struct sockaddr_storage *addr,
	socklen_t *addrlen, char *err, size_t len);
struct dns_resolver *dns_resolver_new(const char *spec, long timeout_ms, char *err, size_t len);
void dns_resolver_free(struct dns_resolver *r);
SPF_dns_server_t *dns_resolver_layer(struct dns_resolver *r);
SPF_dns_rr_t *dns_lookup(struct dns_resolver *r, const char *name, ns_type type);
void dns_budget_start(struct dns_resolver *r, long budget_ms, unsigned max_lookups,
	unsigned max_void);
unsigned dns_budget_exceeded(const struct dns_resolver *r);
void dns_stats_get(const struct dns_resolver *r, struct dns_stats *out);
void dns_resolver_observe(struct dns_resolver *r, dns_observer *fn, void *arg);
SPF_dns_rr_t *dns_reply_parse(struct dns_resolver *r, const char *name, ns_type type,
	const unsigned char *msg, size_t len, long *ttl);

#endif
