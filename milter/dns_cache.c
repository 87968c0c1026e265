/*
 * dns_cache - bounded TTL cache of DNS answers.
 *
 * What it does: keeps parsed answers (libspf2's SPF_dns_rr_t) for their
 * TTL so a burst of mail from one domain costs one query per record.
 * What it does not: decide TTLs (dns.c does, from the packet), or share
 * anything between processes.
 *
 * Data structure: a chained hash table whose bucket count is a power of
 * two at least max_entries (load factor <= 1), and an intrusive doubly
 * linked list in recency order, most recent at the head. A hit moves
 * the entry to the head; an insert into a full cache evicts the tail.
 * Both are O(1), so the bound costs nothing on the hot path.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_cache.h"
#include "fnv.h"
#include "lru.h"

struct dns_cache_entry {
	struct dns_cache_entry *chain;		/* next in the same bucket */
	struct lru_link recency;
	uint32_t hash;
	ns_type type;
	long long expires_ms;
	SPF_dns_rr_t *answer;
	char name[];
};

struct dns_cache {
	struct dns_cache_entry **buckets;
	size_t mask;				/* bucket count - 1 */
	size_t count, max_entries;
	struct lru recency;
};

/* FNV-1a over the name and the type. */
static uint32_t dns_cache_hash(const char *name, ns_type type)
{
	uint32_t h = fnv1a32(FNV1A32_OFFSET, name, strlen(name));

	return (h ^ (uint32_t)type) * FNV1A32_PRIME;
}

/* A copy of answer, or NULL when memory ran out (then nothing leaks). */
static SPF_dns_rr_t *dns_cache_copy(SPF_dns_rr_t *answer)
{
	SPF_dns_rr_t *copy = NULL;

	if (SPF_dns_rr_dup(&copy, answer) != SPF_E_SUCCESS) {
		if (copy != NULL)
			SPF_dns_rr_free(copy);
		return NULL;
	}
	return copy;
}

struct dns_cache *dns_cache_new(size_t max_entries)
{
	struct dns_cache *c = calloc(1, sizeof(*c));
	size_t n = 16;

	if (c == NULL)
		return NULL;
	while (n < max_entries)
		n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	c->max_entries = max_entries > 0 ? max_entries : 1;
	return c;
}

static struct dns_cache_entry *dns_cache_oldest(struct dns_cache *c)
{
	return LRU_ENTRY(c->recency.oldest, struct dns_cache_entry, recency);
}

static void dns_cache_drop(struct dns_cache *c, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &c->buckets[e->hash & c->mask];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	lru_remove(&c->recency, &e->recency);
	c->count--;
	SPF_dns_rr_free(e->answer);
	free(e);
}

static struct dns_cache_entry *dns_cache_find(struct dns_cache *c, const char *name,
	ns_type type, uint32_t hash)
{
	for (struct dns_cache_entry *e = c->buckets[hash & c->mask]; e != NULL; e = e->chain)
		if (e->hash == hash && e->type == type && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

SPF_dns_rr_t *dns_cache_get(struct dns_cache *c, const char *name, ns_type type,
	long long now_ms)
{
	uint32_t hash = dns_cache_hash(name, type);
	struct dns_cache_entry *e = dns_cache_find(c, name, type, hash);
	SPF_dns_rr_t *copy;

	if (e == NULL)
		return NULL;
	if (e->expires_ms <= now_ms) {
		dns_cache_drop(c, e);
		return NULL;
	}
	lru_remove(&c->recency, &e->recency);
	lru_make_newest(&c->recency, &e->recency);
	copy = dns_cache_copy(e->answer);
	if (copy != NULL)
		copy->ttl = (time_t)((e->expires_ms - now_ms) / 1000);
	return copy;
}

void dns_cache_put(struct dns_cache *c, const char *name, ns_type type,
	SPF_dns_rr_t *answer, long long expires_ms)
{
	uint32_t hash = dns_cache_hash(name, type);
	struct dns_cache_entry *e = dns_cache_find(c, name, type, hash);
	size_t len = strlen(name);

	if (e != NULL)
		dns_cache_drop(c, e);
	while (c->count >= c->max_entries && c->recency.oldest != NULL)
		dns_cache_drop(c, dns_cache_oldest(c));
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return;
	e->answer = dns_cache_copy(answer);
	if (e->answer == NULL) {
		free(e);
		return;
	}
	memcpy(e->name, name, len + 1);
	e->hash = hash;
	e->type = type;
	e->expires_ms = expires_ms;
	e->chain = c->buckets[hash & c->mask];
	c->buckets[hash & c->mask] = e;
	c->count++;
	lru_make_newest(&c->recency, &e->recency);
}

size_t dns_cache_count(const struct dns_cache *c)
{
	return c->count;
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	while (c->recency.oldest != NULL)
		dns_cache_drop(c, dns_cache_oldest(c));
	free(c->buckets);
	free(c);
}
