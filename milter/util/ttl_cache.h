/*
 * NAME
 *	ttl_cache - a bounded hash table of entries that expire, least
 *	recently used out first: the one behind the DNS cache
 *	(dns_cache.c) and the egress cache (spf.c)
 * SYNOPSIS
 *	struct ttl_cache_entry { ...; uint32_t hash; long long expires_ms; };
 *	struct ttl_cache_ops {
 *		bool (*match)(const struct ttl_cache_entry *e, const void *key);
 *		void (*free)(struct ttl_cache_entry *e);
 *	};
 *	struct ttl_cache *ttl_cache_new(size_t max_entries,
 *		const struct ttl_cache_ops *ops);
 *	void ttl_cache_free(struct ttl_cache *c);
 *	struct ttl_cache_entry *ttl_cache_get(struct ttl_cache *c, uint32_t hash,
 *		const void *key, long long now_ms);
 *	void ttl_cache_put(struct ttl_cache *c, struct ttl_cache_entry *e,
 *		const void *key, long long now_ms);
 *	size_t ttl_cache_count(const struct ttl_cache *c);
 * DESCRIPTION
 *	The cache is intrusive: a user's entry embeds a struct
 *	ttl_cache_entry (turn it back with TTL_CACHE_ENTRY) next to its key
 *	and value, so a lookup allocates nothing. The user hashes its key
 *	and says whether an entry matches one (ops->match); key is passed
 *	through untouched. ops->free releases an entry the cache drops.
 *
 *	ttl_cache_new makes an empty cache of at most max_entries (at least
 *	1) entries, or NULL when out of memory. ttl_cache_free frees it and
 *	every entry in it.
 *
 *	ttl_cache_get returns the entry of key (hash is the key's) while
 *	now_ms is before its expires_ms, and makes it the most recently
 *	used; the entry stays the cache's, valid until the next put or
 *	free. An expired entry is dropped, and then, as for a key not
 *	there, the answer is NULL.
 *
 *	ttl_cache_put takes e, whose hash and expires_ms the caller has set,
 *	and keeps it until expires_ms, in place of an entry of the same key.
 *	When max_entries are held, the entries expired by now_ms go first,
 *	else the least recently used one. An entry that expires by now_ms
 *	is freed at once. Times are CLOCK_MONOTONIC milliseconds.
 *
 *	Not thread-safe: a cache shared between threads is locked by its
 *	user. Not for keys an attacker can pick to collide: chains are
 *	searched one entry after another (the hash is fnv.h's).
 */
#ifndef BM_TTL_CACHE_H
#define BM_TTL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ttl_cache_entry {
	struct ttl_cache_entry *chain;		/* next in the same bucket */
	struct ttl_cache_entry *newer, *older;	/* the recency list */
	uint32_t hash;				/* of the key: set before ttl_cache_put */
	long long expires_ms;			/* likewise */
};

struct ttl_cache_ops {
	bool (*match)(const struct ttl_cache_entry *e, const void *key);
	void (*free)(struct ttl_cache_entry *e);
};

/* The user's entry of type TYPE whose MEMBER is the struct ttl_cache_entry e. */
#define TTL_CACHE_ENTRY(e, type, member) \
	((type *)(void *)((char *)(e) - offsetof(type, member)))

struct ttl_cache;

struct ttl_cache *ttl_cache_new(size_t max_entries, const struct ttl_cache_ops *ops);
void ttl_cache_free(struct ttl_cache *c);
struct ttl_cache_entry *ttl_cache_get(struct ttl_cache *c, uint32_t hash, const void *key,
	long long now_ms);
void ttl_cache_put(struct ttl_cache *c, struct ttl_cache_entry *e, const void *key,
	long long now_ms);
size_t ttl_cache_count(const struct ttl_cache *c);

#endif
