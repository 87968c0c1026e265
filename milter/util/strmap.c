/*
 * strmap - open-addressing hash table with linear probing.
 *
 * Keys are hashed with FNV-1a over the (optionally case-folded) bytes.
 * The table doubles at 50% load, so probes stay short; there is no
 * delete, because maps are built at load time and dropped whole.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strmap.h"

struct strmap_slot {
	char *key;
	void *value;
	uint64_t hash;
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap;		/* power of two */
	size_t count;
	bool fold_case;
};

static uint64_t strmap_hash(const char *key, bool fold)
{
	uint64_t h = 1469598103934665603ULL;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= fold ? (uint64_t)tolower(*p) : (uint64_t)*p;
		h *= 1099511628211ULL;
	}
	return h;
}

struct strmap *strmap_new(size_t expected, bool fold_case)
{
	struct strmap *m = calloc(1, sizeof(*m));
	size_t cap = 16;

	if (m == NULL)
		return NULL;
	while (cap < expected * 2)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (m->slots == NULL) {
		free(m);
		return NULL;
	}
	m->cap = cap;
	m->fold_case = fold_case;
	return m;
}

static struct strmap_slot *strmap_find(const struct strmap *m, const char *key, uint64_t h)
{
	size_t i = (size_t)h & (m->cap - 1);
	for (;;) {
		struct strmap_slot *s = &m->slots[i];
		if (s->key == NULL)
			return s;
		if (s->hash == h && (m->fold_case ? strcasecmp(s->key, key) : strcmp(s->key, key)) == 0)
			return s;
		i = (i + 1) & (m->cap - 1);
	}
}

static int strmap_grow(struct strmap *m)
{
	struct strmap old = *m;
	m->slots = calloc(old.cap * 2, sizeof(*m->slots));
	if (m->slots == NULL) {
		m->slots = old.slots;
		return -1;
	}
	m->cap = old.cap * 2;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			*strmap_find(m, old.slots[i].key, old.slots[i].hash) = old.slots[i];
	free(old.slots);
	return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value)
{
	if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != 0)
		return -1;
	uint64_t h = strmap_hash(key, m->fold_case);
	struct strmap_slot *s = strmap_find(m, key, h);
	if (s->key)
		return 1;
	s->key = strdup(key);
	if (s->key == NULL)
		return -1;
	s->value = value;
	s->hash = h;
	m->count++;
	return 0;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	if (m == NULL)
		return NULL;
	struct strmap_slot *s = strmap_find(m, key, strmap_hash(key, m->fold_case));
	return s->key ? s->value : NULL;
}

size_t strmap_count(const struct strmap *m)
{
	return m ? m->count : 0;
}

void strmap_foreach(const struct strmap *m, void (*fn)(const char *, void *, void *), void *arg)
{
	for (size_t i = 0; m && i < m->cap; i++)
		if (m->slots[i].key)
			fn(m->slots[i].key, m->slots[i].value, arg);
}

void strmap_free(struct strmap *m, void (*free_value)(void *))
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key) {
			free(m->slots[i].key);
			if (free_value)
				free_value(m->slots[i].value);
		}
	}
	free(m->slots);
	free(m);
}
