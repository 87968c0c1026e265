/*
 * ttl_cache - bounded hash table of expiring entries.
 *
 * What it does: finds entries by key, forgets them when they expire, and
 * holds no more than its bound. What it does not: know what a key or a
 * value is (its users do: dns_cache.c for DNS answers, spf.c for egress
 * outcomes), allocate entries, or lock.
 *
 * Data structure: a chained hash table whose bucket count is a power of
 * two at least max_entries (load factor <= 1), and a doubly linked list
 * threaded through the entries in recency order, most recent at the
 * newest end. A hit moves the entry there; both are O(1).
 *
 * Making room: a put into a full cache first drops what has expired, found
 * by a sweep of the list, and only when nothing has, the least recently
 * used entry. An expired entry is worth nothing, a live one may be asked
 * for again. sweep_after_ms (at most the earliest expiry among the
 * entries) keeps the sweep from running when nothing can have expired,
 * so a full cache of live entries evicts in O(1); a sweep costs one pass
 * over max_entries entries at most once per expiry time passed, and
 * frees every entry that has expired by then.
 */
#include "config.h"

#include <limits.h>
#include <stdlib.h>

#include "ttl_cache.h"

/* Buckets for the smallest caches: a power of two. */
#define TTL_CACHE_MIN_BUCKETS 16

struct ttl_cache {
	const struct ttl_cache_ops *ops;
	struct ttl_cache_entry **buckets;
	size_t mask;				/* bucket count - 1 */
	size_t count, max_entries;
	struct ttl_cache_entry *newest, *oldest;
	long long sweep_after_ms;		/* no entry expires before */
};

static void ttl_cache_make_newest(struct ttl_cache *c, struct ttl_cache_entry *e)
{
	e->older = c->newest;
	e->newer = NULL;
	if (c->newest != NULL)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
}

static void ttl_cache_unlink(struct ttl_cache *c, struct ttl_cache_entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

struct ttl_cache *ttl_cache_new(size_t max_entries, const struct ttl_cache_ops *ops)
{
	struct ttl_cache *c = calloc(1, sizeof(*c));
	size_t n = TTL_CACHE_MIN_BUCKETS;

	if (c == NULL)
		return NULL;
	while (n < max_entries)
		n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->ops = ops;
	c->mask = n - 1;
	c->max_entries = max_entries > 0 ? max_entries : 1;
	c->sweep_after_ms = LLONG_MAX;
	return c;
}

static void ttl_cache_drop(struct ttl_cache *c, struct ttl_cache_entry *e)
{
	struct ttl_cache_entry **pp = &c->buckets[e->hash & c->mask];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	ttl_cache_unlink(c, e);
	c->count--;
	c->ops->free(e);
}

static struct ttl_cache_entry *ttl_cache_find(struct ttl_cache *c, uint32_t hash,
	const void *key)
{
	for (struct ttl_cache_entry *e = c->buckets[hash & c->mask]; e != NULL; e = e->chain)
		if (e->hash == hash && c->ops->match(e, key))
			return e;
	return NULL;
}

/* Makes room in a full cache: the expired entries go, else the least recently used. */
static void ttl_cache_make_room(struct ttl_cache *c, long long now_ms)
{
	if (now_ms >= c->sweep_after_ms) {
		long long soonest = LLONG_MAX;

		for (struct ttl_cache_entry *e = c->oldest, *newer; e != NULL; e = newer) {
			newer = e->newer;
			if (e->expires_ms <= now_ms)
				ttl_cache_drop(c, e);
			else if (e->expires_ms < soonest)
				soonest = e->expires_ms;
		}
		c->sweep_after_ms = soonest;
	}
	if (c->count >= c->max_entries)
		ttl_cache_drop(c, c->oldest);
}

struct ttl_cache_entry *ttl_cache_get(struct ttl_cache *c, uint32_t hash, const void *key,
	long long now_ms)
{
	struct ttl_cache_entry *e = ttl_cache_find(c, hash, key);

	if (e == NULL)
		return NULL;
	if (e->expires_ms <= now_ms) {
		ttl_cache_drop(c, e);
		return NULL;
	}
	ttl_cache_unlink(c, e);
	ttl_cache_make_newest(c, e);
	return e;
}

void ttl_cache_put(struct ttl_cache *c, struct ttl_cache_entry *e, const void *key,
	long long now_ms)
{
	struct ttl_cache_entry *old;

	if (e->expires_ms <= now_ms) {
		c->ops->free(e);
		return;
	}
	if ((old = ttl_cache_find(c, e->hash, key)) != NULL)
		ttl_cache_drop(c, old);
	if (c->count >= c->max_entries)
		ttl_cache_make_room(c, now_ms);
	e->chain = c->buckets[e->hash & c->mask];
	c->buckets[e->hash & c->mask] = e;
	ttl_cache_make_newest(c, e);
	c->count++;
	if (e->expires_ms < c->sweep_after_ms)
		c->sweep_after_ms = e->expires_ms;
}

size_t ttl_cache_count(const struct ttl_cache *c)
{
	return c->count;
}

void ttl_cache_free(struct ttl_cache *c)
{
	if (c == NULL)
		return;
	while (c->oldest != NULL)
		ttl_cache_drop(c, c->oldest);
	free(c->buckets);
	free(c);
}
