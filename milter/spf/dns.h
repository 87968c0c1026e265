/*
 * NAME
 *	dns - the SPF helpers' DNS: one resolver, per-query timeout, TTL cache
 * SYNOPSIS
 *	int dns_server_parse(const char *spec, struct sockaddr_storage *addr,
 *		socklen_t *addrlen, char *err, size_t len);
 *	int dns_resolv_conf_server(const char *path, struct sockaddr_storage *addr,
 *		socklen_t *addrlen, char *err, size_t len);
 *	struct dns_resolver *dns_resolver_new(const char *spec, long timeout_ms,
 *		char *err, size_t len);
 *	void dns_resolver_free(struct dns_resolver *r);
 *	void dns_resolver_refresh(struct dns_resolver *r);
 *	SPF_dns_rr_t *dns_lookup(struct dns_resolver *r, const char *name,
 *		ns_type type);
 *	SPF_dns_rr_t *dns_lookup_until(struct dns_resolver *r, const char *name,
 *		ns_type type, long long deadline_ms);
 *	void dns_stats_get(const struct dns_resolver *r, struct dns_stats *out);
 *	int dns_name_normalize(const char *name, char out[DNS_NAME_MAX + 1]);
 *	long long dns_now_ms(void);
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
 *	at most timeout_ms. With "system", dns_resolver_refresh reads
 *	resolv.conf again when it changed since it was last read (the SPF
 *	helper calls it before each request); otherwise it does nothing.
 *	libspf2 does not call the resolver itself: it calls the evaluation's
 *	layer (spf_budget.h), which asks the resolver.
 *
 *	dns_lookup answers (name, type) the way a libspf2 layer must: never
 *	NULL (libspf2 aborts on NULL) except when out of memory, and herrno
 *	NETDB_SUCCESS (num_rr > 0), NO_DATA, HOST_NOT_FOUND (NXDOMAIN, or a
 *	name that cannot exist) or TRY_AGAIN (timeout, network error,
 *	SERVFAIL, REFUSED, a malformed or mismatched answer; for
 *	dns_lookup_until also a deadline passed).
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
 *	dns_lookup_until is dns_lookup with a deadline, deadline_ms on
 *	dns_now_ms's clock (0: none): an answer the cache lacks is not
 *	asked for once the deadline has passed (TRY_AGAIN without a query),
 *	and a query never waits past it. A cached answer is given whatever
 *	the time.
 *
 *	dns_stats_get reads the resolver's counters (struct dns_stats).
 *
 *	dns_name_normalize writes name as the cache and the wire want it,
 *	lower case without a trailing dot, and returns 0; or -1 when it
 *	cannot be a DNS name (empty label, too long, control characters,
 *	spaces or backslashes): dns_lookup answers such a name
 *	HOST_NOT_FOUND without a query. dns_now_ms reads CLOCK_MONOTONIC in
 *	milliseconds.
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
/* RFC 1035: a name is at most 253 characters of text. */
#define DNS_NAME_MAX 253

struct dns_resolver;

struct dns_stats {
	unsigned long lookups;		/* dns_lookup(_until) calls, type SPF excluded */
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
void dns_resolver_refresh(struct dns_resolver *r);
SPF_dns_rr_t *dns_lookup(struct dns_resolver *r, const char *name, ns_type type);
SPF_dns_rr_t *dns_lookup_until(struct dns_resolver *r, const char *name, ns_type type,
	long long deadline_ms);
void dns_stats_get(const struct dns_resolver *r, struct dns_stats *out);
int dns_name_normalize(const char *name, char out[DNS_NAME_MAX + 1]);
long long dns_now_ms(void);
SPF_dns_rr_t *dns_reply_parse(struct dns_resolver *r, const char *name, ns_type type,
	const unsigned char *msg, size_t len, long *ttl);

#endif
