/*
 * NAME
 *	suppress - per-account suppression lists in Redis
 * SYNOPSIS
 *	int suppress_key(const char *account, char *buf, size_t len);
 *	void suppress_address(const char *addr, char *buf, size_t len);
 *	extern const char suppress_add_script[];
 *	extern const char suppress_del_script[];
 *	extern const char suppress_list_script[];
 *	enum store_status suppress_add(struct store *st, const char *account,
 *		const char *const *addrs, size_t n, long long ttl_ms,
 *		long *added, char *err, size_t errlen);
 * DESCRIPTION
 *	An account's list is one sorted set, "{ACCOUNT}:sup" (under
 *	RedisPrefix, with the account's hash tag, so the recipient's one
 *	script at RCPT TO reads it beside the account's buckets): member the
 *	recipient address (suppress_address: lower case, as it is looked
 *	up), score the Redis time in ms at which the entry expires. So each
 *	entry has its own expiry: an entry whose score has passed is not
 *	suppressed any more, writers remove the passed ones, and the key
 *	itself expires with its last entry. Only outbound accounts have
 *	lists (reports are about mail we sent).
 *
 *	The scripts run on the Redis clock (TIME), shared with the RCPT
 *	script and bulkmilterctl:
 *	  add   KEYS[1] list, ARGV[1] ttl ms, ARGV[2..] addresses; returns
 *	        how many were not on the list (each entry's expiry is renewed)
 *	  del   KEYS[1] list, ARGV[1..] addresses; returns how many were
 *	  list  KEYS[1] list; returns address, expiry ms, ... of live entries
 *	Each is safe to run twice.
 *
 *	suppress_add runs add through the store (store_eval: one round trip
 *	for all of n).
 * DIAGNOSTICS
 *	suppress_key: -1 when the account does not fit. suppress_add:
 *	STORE_FAILED with err as store.h.
 */
#ifndef BM_SUPPRESS_H
#define BM_SUPPRESS_H

#include <stddef.h>

#include "store.h"

/* How long a report's suppression lasts (SPEC: 180 days). */
#define SUPPRESS_DEFAULT_MS (180LL * 24 * 3600 * 1000)
#define SUPPRESS_KEY_SUFFIX ":sup"

int suppress_key(const char *account, char *buf, size_t len);
void suppress_address(const char *addr, char *buf, size_t len);
enum store_status suppress_add(struct store *st, const char *account, const char *const *addrs,
	size_t n, long long ttl_ms, long *added, char *err, size_t errlen);

extern const char suppress_add_script[];
extern const char suppress_del_script[];
extern const char suppress_list_script[];

#endif
