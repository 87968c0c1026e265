/*
 * dns_cache - bounded TTL cache of DNS answers.
 *
 * What it does: keeps parsed answers (libspf2's SPF_dns_rr_t) for their
 * TTL so a burst of mail from one domain costs one query per record.
 * What it does not: decide TTLs (dns.c does, from the packet), or share
 * anything between processes. The table, the expiry and the eviction
 * are ttl_cache.c's; this file says what a key and a value are.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_cache.h"
#include "fnv.h"
#include "ttl_cache.h"

struct dns_cache_entry {
	struct ttl_cache_entry base;
	ns_type type;
	SPF_dns_rr_t *answer;
	char name[];
};

struct dns_cache_key {
	const char *name;
	ns_type type;
};

struct dns_cache {
	struct ttl_cache *table;
};

#define DNS_CACHE_ENTRY(e) TTL_CACHE_ENTRY(e, struct dns_cache_entry, base)

/* FNV-1a over the name and the type. */
static uint32_t dns_cache_hash(const char *name, ns_type type)
{
	uint32_t h = fnv1a32(FNV1A32_OFFSET, name, strlen(name));

	return (h ^ (uint32_t)type) * FNV1A32_PRIME;
}

static bool dns_cache_match(const struct ttl_cache_entry *base, const void *key)
{
	const struct dns_cache_entry *e = DNS_CACHE_ENTRY(base);
	const struct dns_cache_key *k = key;

	return e->type == k->type && strcmp(e->name, k->name) == 0;
}

static void dns_cache_entry_free(struct ttl_cache_entry *base)
{
	struct dns_cache_entry *e = DNS_CACHE_ENTRY(base);

	SPF_dns_rr_free(e->answer);
	free(e);
}

static const struct ttl_cache_ops dns_cache_ops = {
	.match = dns_cache_match, .free = dns_cache_entry_free,
};

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
	struct dns_cache *c = malloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	c->table = ttl_cache_new(max_entries, &dns_cache_ops);
	if (c->table == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

SPF_dns_rr_t *dns_cache_get(struct dns_cache *c, const char *name, ns_type type,
	long long now_ms)
{
	struct dns_cache_key key = { .name = name, .type = type };
	struct ttl_cache_entry *hit = ttl_cache_get(c->table, dns_cache_hash(name, type), &key,
						    now_ms);
	SPF_dns_rr_t *copy;

	if (hit == NULL)
		return NULL;
	copy = dns_cache_copy(DNS_CACHE_ENTRY(hit)->answer);
	if (copy != NULL)
		copy->ttl = (time_t)((hit->expires_ms - now_ms) / 1000);
	return copy;
}

void dns_cache_put(struct dns_cache *c, const char *name, ns_type type,
	SPF_dns_rr_t *answer, long long now_ms, long long expires_ms)
{
	struct dns_cache_key key = { .name = name, .type = type };
	size_t len = strlen(name);
	struct dns_cache_entry *e = malloc(sizeof(*e) + len + 1);

	if (e == NULL)
		return;
	e->answer = dns_cache_copy(answer);
	if (e->answer == NULL) {
		free(e);
		return;
	}
	memcpy(e->name, name, len + 1);
	e->type = type;
	e->base.hash = dns_cache_hash(name, type);
	e->base.expires_ms = expires_ms;
	ttl_cache_put(c->table, &e->base, &key, now_ms);
}

size_t dns_cache_count(const struct dns_cache *c)
{
	return ttl_cache_count(c->table);
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	ttl_cache_free(c->table);
	free(c);
}
