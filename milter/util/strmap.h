/*
 * NAME
 *	strmap - a string-keyed hash table (open addressing)
 * SYNOPSIS
 *	struct strmap *strmap_new(size_t expected, bool fold_case);
 *	int strmap_put(struct strmap *m, const char *key, void *value);
 *	void *strmap_get(const struct strmap *m, const char *key);
 *	size_t strmap_count(const struct strmap *m);
 *	void strmap_free(struct strmap *m, void (*free_value)(void *));
 * DESCRIPTION
 *	Built once (at load) and then only read, so readers on many threads
 *	need no lock. Keys are copied; with fold_case, ASCII case does not
 *	matter (mail addresses and domains). strmap_put keeps the first value
 *	of a key and returns 1 for a duplicate, 0 when added, -1 on no memory
 *	("first match wins", as in the policy file).
 */
#ifndef BM_STRMAP_H
#define BM_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap;

struct strmap *strmap_new(size_t expected, bool fold_case);
int strmap_put(struct strmap *m, const char *key, void *value);
void *strmap_get(const struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Calls fn for every entry, in no particular order. */
void strmap_foreach(const struct strmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg);
void strmap_free(struct strmap *m, void (*free_value)(void *));

#endif
