/*
 * NAME
 *	dns_cache - a bounded TTL cache of DNS answers (one per SPF helper)
 * SYNOPSIS
 *	struct dns_cache *dns_cache_new(size_t max_entries);
 *	void dns_cache_free(struct dns_cache *c);
 *	SPF_dns_rr_t *dns_cache_get(struct dns_cache *c, const char *name,
 *		ns_type type, long long now_ms);
 *	void dns_cache_put(struct dns_cache *c, const char *name, ns_type type,
 *		SPF_dns_rr_t *answer, long long now_ms, long long expires_ms);
 *	size_t dns_cache_count(const struct dns_cache *c);
 * DESCRIPTION
 *	Keys are (name, type); name must already be normalized (lower case,
 *	no trailing dot): the cache compares bytes. dns_cache_get returns a
 *	copy the caller frees with SPF_dns_rr_free (libspf2 frees what a DNS
 *	layer returns), its ttl set to the whole seconds left until it
 *	expires (rounded down, as a resolver counts a cached TTL down), or
 *	NULL when the key is absent or expired; an expired entry is
 *	dropped. dns_cache_put stores a copy of answer (the caller keeps its
 *	own) until expires_ms, replacing an older entry of the same key;
 *	when max_entries are held, the entries expired by now_ms go first,
 *	else the least recently used one (ttl_cache.h). Times are
 *	CLOCK_MONOTONIC milliseconds. Out of memory means "not cached",
 *	never an error. Not thread-safe: each helper process is
 *	single-threaded and owns one cache.
 */
#ifndef BM_DNS_CACHE_H
#define BM_DNS_CACHE_H

#include <stddef.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

struct dns_cache;

struct dns_cache *dns_cache_new(size_t max_entries);
void dns_cache_free(struct dns_cache *c);
SPF_dns_rr_t *dns_cache_get(struct dns_cache *c, const char *name, ns_type type,
	long long now_ms);
void dns_cache_put(struct dns_cache *c, const char *name, ns_type type,
	SPF_dns_rr_t *answer, long long now_ms, long long expires_ms);
size_t dns_cache_count(const struct dns_cache *c);

#endif
