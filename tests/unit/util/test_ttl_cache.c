/*
 * Unit tests of the bounded expiring hash table (ttl_cache.c) behind the
 * DNS cache and the egress cache: hits, misses, expiry, replacement, and
 * what goes when it is full. Entries here are a name and a number; times
 * are made up (milliseconds).
 */
#include "unit.h"

#include <stdint.h>

#include "fnv.h"
#include "ttl_cache.h"

struct entry {
	struct ttl_cache_entry base;
	int value;
	char name[16];
};

static int freed;			/* entries the cache gave back */
static bool same_hash;			/* every name hashes alike: one chain */

static uint32_t entry_hash(const char *name)
{
	return same_hash ? 7u : fnv1a32(FNV1A32_OFFSET, name, strlen(name));
}

static bool entry_match(const struct ttl_cache_entry *e, const void *key)
{
	return strcmp(TTL_CACHE_ENTRY(e, struct entry, base)->name, key) == 0;
}

static void entry_free(struct ttl_cache_entry *e)
{
	freed++;
	free(TTL_CACHE_ENTRY(e, struct entry, base));
}

static const struct ttl_cache_ops entry_ops = { .match = entry_match, .free = entry_free };

static void put(struct ttl_cache *c, const char *name, int value, long long now_ms,
	long long expires_ms)
{
	struct entry *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->value = value;
	e->base.hash = entry_hash(name);
	e->base.expires_ms = expires_ms;
	ttl_cache_put(c, &e->base, name, now_ms);
}

/* The value cached for name at now_ms, or -1 when there is none. */
static int get(struct ttl_cache *c, const char *name, long long now_ms)
{
	struct ttl_cache_entry *e = ttl_cache_get(c, entry_hash(name), name, now_ms);

	return e != NULL ? TTL_CACHE_ENTRY(e, struct entry, base)->value : -1;
}

static int setup(void **state)
{
	(void)state;
	freed = 0;
	same_hash = false;
	return 0;
}

static void entry_is_found_until_it_expires(void **state)
{
	struct ttl_cache *c = ttl_cache_new(4, &entry_ops);
	(void)state;

	put(c, "a", 1, 0, 1000);
	assert_int_equal(get(c, "a", 0), 1);
	assert_int_equal(get(c, "a", 999), 1);
	assert_int_equal(get(c, "b", 999), -1);
	assert_int_equal(ttl_cache_count(c), 1);
	/* At its expiry it is gone, and dropped at once. */
	assert_int_equal(get(c, "a", 1000), -1);
	assert_int_equal(ttl_cache_count(c), 0);
	assert_int_equal(freed, 1);
	assert_int_equal(get(c, "a", 0), -1);
	ttl_cache_free(c);
}

static void put_replaces_the_entry_of_the_same_key(void **state)
{
	struct ttl_cache *c = ttl_cache_new(4, &entry_ops);
	(void)state;

	put(c, "a", 1, 0, 1000);
	put(c, "a", 2, 10, 5000);
	assert_int_equal(ttl_cache_count(c), 1);
	assert_int_equal(freed, 1);
	/* The new entry, with its own expiry. */
	assert_int_equal(get(c, "a", 2000), 2);
	ttl_cache_free(c);
	assert_int_equal(freed, 2);
}

static void full_cache_evicts_the_least_recently_used(void **state)
{
	struct ttl_cache *c = ttl_cache_new(3, &entry_ops);
	(void)state;

	put(c, "a", 1, 0, 9000);
	put(c, "b", 2, 0, 9000);
	put(c, "c", 3, 0, 9000);
	/* a is used: b is now the least recently used. */
	assert_int_equal(get(c, "a", 100), 1);
	put(c, "d", 4, 100, 9000);
	assert_int_equal(ttl_cache_count(c), 3);
	assert_int_equal(freed, 1);
	assert_int_equal(get(c, "b", 100), -1);
	assert_int_equal(get(c, "a", 100), 1);
	assert_int_equal(get(c, "c", 100), 3);
	assert_int_equal(get(c, "d", 100), 4);
	/* Now a is the least recently used. */
	put(c, "e", 5, 100, 9000);
	assert_int_equal(get(c, "a", 100), -1);
	assert_int_equal(ttl_cache_count(c), 3);
	ttl_cache_free(c);
	assert_int_equal(freed, 5);
}

static void full_cache_drops_the_expired_before_any_live_entry(void **state)
{
	struct ttl_cache *c = ttl_cache_new(4, &entry_ops);
	(void)state;

	put(c, "old1", 1, 0, 100);
	put(c, "live1", 2, 0, 9000);
	put(c, "old2", 3, 0, 150);
	put(c, "live2", 4, 0, 9000);
	/* The expired ones were used last: recency alone would evict live1. */
	assert_int_equal(get(c, "old1", 50), 1);
	assert_int_equal(get(c, "old2", 50), 3);
	put(c, "new", 5, 200, 9000);
	/* Both expired entries went, in one sweep; every live one stayed. */
	assert_int_equal(ttl_cache_count(c), 3);
	assert_int_equal(freed, 2);
	assert_int_equal(get(c, "live1", 200), 2);
	assert_int_equal(get(c, "live2", 200), 4);
	assert_int_equal(get(c, "new", 200), 5);
	ttl_cache_free(c);
}

static void entry_already_expired_is_not_kept(void **state)
{
	struct ttl_cache *c = ttl_cache_new(4, &entry_ops);
	(void)state;

	put(c, "a", 1, 500, 500);
	assert_int_equal(ttl_cache_count(c), 0);
	assert_int_equal(freed, 1);
	assert_int_equal(get(c, "a", 0), -1);
	ttl_cache_free(c);
}

static void keys_of_one_hash_are_told_apart(void **state)
{
	struct ttl_cache *c = ttl_cache_new(8, &entry_ops);
	char name[8];
	(void)state;

	same_hash = true;
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		put(c, name, i, 0, 9000);
	}
	for (int i = 7; i >= 0; i--) {
		snprintf(name, sizeof(name), "k%d", i);
		assert_int_equal(get(c, name, 0), i);
	}
	assert_int_equal(get(c, "k8", 0), -1);
	/* Eviction unlinks from the middle of a chain too: k7 is least recent. */
	put(c, "k8", 8, 0, 9000);
	assert_int_equal(get(c, "k7", 0), -1);
	for (int i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		assert_int_equal(get(c, name, 0), i);
	}
	assert_int_equal(get(c, "k8", 0), 8);
	ttl_cache_free(c);
	assert_int_equal(freed, 9);
}

static void cache_of_zero_entries_holds_one(void **state)
{
	struct ttl_cache *c = ttl_cache_new(0, &entry_ops);
	(void)state;

	put(c, "a", 1, 0, 9000);
	put(c, "b", 2, 0, 9000);
	assert_int_equal(ttl_cache_count(c), 1);
	assert_int_equal(get(c, "a", 0), -1);
	assert_int_equal(get(c, "b", 0), 2);
	ttl_cache_free(c);
	assert_int_equal(freed, 2);
}

static void bound_holds_under_churn(void **state)
{
	enum { BOUND = 64 };
	struct ttl_cache *c = ttl_cache_new(BOUND, &entry_ops);
	char name[16];
	int live = 0;
	(void)state;

	/* Ten times the bound, with expiries spread over time. */
	for (int i = 0; i < 10 * BOUND; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		put(c, name, i, i, i + 1 + (i % 7) * 20);
		assert_true(ttl_cache_count(c) <= BOUND);
	}
	for (int i = 0; i < 10 * BOUND; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		live += get(c, name, 10 * BOUND - 1) == i;
	}
	assert_true(live > 0);
	assert_true(live <= BOUND);
	assert_int_equal(freed + (int)ttl_cache_count(c), 10 * BOUND);
	ttl_cache_free(c);
	assert_int_equal(freed, 10 * BOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(entry_is_found_until_it_expires, setup),
		cmocka_unit_test_setup(put_replaces_the_entry_of_the_same_key, setup),
		cmocka_unit_test_setup(full_cache_evicts_the_least_recently_used, setup),
		cmocka_unit_test_setup(full_cache_drops_the_expired_before_any_live_entry, setup),
		cmocka_unit_test_setup(entry_already_expired_is_not_kept, setup),
		cmocka_unit_test_setup(keys_of_one_hash_are_told_apart, setup),
		cmocka_unit_test_setup(cache_of_zero_entries_holds_one, setup),
		cmocka_unit_test_setup(bound_holds_under_churn, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
