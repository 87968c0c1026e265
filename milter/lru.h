/*
 * NAME
 *	lru - a recency list threaded through the entries of a cache
 * SYNOPSIS
 *	struct lru_link { struct lru_link *newer, *older; };
 *	struct lru { struct lru_link *newest, *oldest; };
 *	void lru_make_newest(struct lru *list, struct lru_link *link);
 *	void lru_remove(struct lru *list, struct lru_link *link);
 *	TYPE *LRU_ENTRY(struct lru_link *link, TYPE, MEMBER);
 * DESCRIPTION
 *	The caches (dns_cache.c, the egress cache in spf.c) keep their
 *	entries in a hash table for lookups and in one of these lists for
 *	eviction: an entry embeds a struct lru_link, a zeroed struct lru is
 *	an empty list. lru_make_newest puts a link that is in no list at
 *	the newest end; lru_remove takes a link out of the list. To move an
 *	entry to the front, remove it and make it newest. LRU_ENTRY turns a
 *	link (list->oldest, link->newer, ...) back into its entry, or NULL
 *	for NULL. No locking: the cache that owns the list does that.
 */
#ifndef BM_LRU_H
#define BM_LRU_H

#include <stddef.h>

struct lru_link {
	struct lru_link *newer, *older;
};

struct lru {
	struct lru_link *newest, *oldest;
};

#define LRU_ENTRY(link, type, member) \
	((link) != NULL ? (type *)(void *)((char *)(link) - offsetof(type, member)) : (type *)NULL)

static inline void lru_make_newest(struct lru *list, struct lru_link *link)
{
	link->older = list->newest;
	link->newer = NULL;
	if (list->newest != NULL)
		list->newest->newer = link;
	list->newest = link;
	if (list->oldest == NULL)
		list->oldest = link;
}

static inline void lru_remove(struct lru *list, struct lru_link *link)
{
	if (link->newer != NULL)
		link->newer->older = link->older;
	else
		list->newest = link->older;
	if (link->older != NULL)
		link->older->newer = link->newer;
	else
		list->oldest = link->newer;
	link->newer = link->older = NULL;
}

#endif
