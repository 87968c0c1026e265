/*
 * store_redis_groups - a charge or refund whose buckets carry several
 * hash tags (account, domain, class scopes), where one script cannot run
 * them all: in a Redis Cluster their keys may live on different masters.
 *
 * What it does: splits the buckets at each change of hash tag (callers
 * group them, store.h), charges the groups in order, and when a later
 * group refuses or fails, refunds the groups already charged, so no
 * bucket ever admits more than it holds; a refund is split the same way.
 * What it does not: run scripts (the callbacks of store_redis.c do, each
 * group with its own once key, so a retried group never counts twice).
 *
 * The volume windows and the account-safety part live under the
 * account's tag; when the first group of buckets has another tag (a
 * class with only "by domain" or "by class" rates), they go first, on
 * their own ("lead"), and are refunded like a group.
 *
 * Decisions:
 * - Between a group's charge and its refund another message may see
 *   that group's bucket with this message's tokens in it and be refused:
 *   an over-refusal for a round trip, never an over-admission.
 * - The volume windows go with the first group (the account's, or the
 *   lead), and only it learns the store clock the windows are refunded
 *   at.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_redis_conn.h"

/* The hash tag of a key (what Cluster hashes): "{x}" content, or the key. */
static void redis_key_tag(const char *key, const char **tag, size_t *len)
{
	const char *open = strchr(key, '{');
	const char *close = open ? strchr(open + 1, '}') : NULL;

	if (close != NULL && close > open + 1) {
		*tag = open + 1;
		*len = (size_t)(close - open - 1);
	} else {
		*tag = key;
		*len = strlen(key);
	}
}

bool redis_same_tag(const char *a, const char *b)
{
	const char *ta, *tb;
	size_t la, lb;

	redis_key_tag(a, &ta, &la);
	redis_key_tag(b, &tb, &lb);
	return la == lb && memcmp(ta, tb, la) == 0;
}

size_t redis_tag_run(const struct store_bucket *b, size_t nb)
{
	const char *t0, *t;
	size_t l0, l, n = 1;

	if (nb == 0)
		return 0;
	redis_key_tag(b[0].key, &t0, &l0);
	for (; n < nb; n++) {
		redis_key_tag(b[n].key, &t, &l);
		if (l != l0 || memcmp(t, t0, l) != 0)
			break;
	}
	return n;
}

/* Whether a batch's windows live under another tag than its first bucket. */
static bool redis_windows_apart(const struct store_batch *bt)
{
	return bt->nb > 0 && bt->nw > 0 && !redis_same_tag(bt->windows[0].key, bt->buckets[0].key);
}

bool redis_batches_one_tag(const struct store_batch *batches, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (redis_tag_run(batches[i].buckets, batches[i].nb) < batches[i].nb
		    || redis_windows_apart(&batches[i]))
			return false;
	return true;
}

/* Gives back the groups of b[0..nb) charged before a refusal; windows with group 0. */
static void redis_groups_undo(void *ctx, redis_group_refund_fn refund, bool lead,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	long long at_ms)
{
	struct store_window *ws = nw ? calloc(nw, sizeof(*ws)) : NULL;
	struct store_batch *bt = calloc(nb + 1, sizeof(*bt));
	size_t n = 0;
	char err[256];

	if (bt == NULL || (nw && ws == NULL)) {
		log_error("store: out of memory giving back a charge");
		goto out;
	}
	for (size_t i = 0; i < nw; i++) {
		ws[i] = w[i];
		ws[i].at_ms = at_ms;
	}
	if (lead && nw > 0)
		bt[n++] = (struct store_batch){ NULL, 0, ws, nw, 0 };
	for (size_t start = 0; start < nb; n++) {
		size_t k = redis_tag_run(b + start, nb - start);
		bool windows = !lead && start == 0;
		bt[n] = (struct store_batch){ b + start, k, windows ? ws : NULL, windows ? nw : 0, 0 };
		start += k;
	}
	if (refund(ctx, bt, n, err, sizeof(err)) != STORE_OK)
		log_error("store: could not give back the charge of %s after a later scope refused: %s",
			  nb ? b[0].key : w[0].key, err);
out:
	free(ws);
	free(bt);
}

enum store_status redis_groups_charge(void *ctx, redis_group_charge_fn charge,
	redis_group_refund_fn refund, bool lead, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen)
{
	struct store_charge_result later;
	size_t group = 0;

	if (lead) {
		/* The account's part first: windows (and safety) under its own tag. */
		enum store_status st = charge(ctx, group++, NULL, 0, w, nw, res, err, errlen);
		if (st != STORE_OK || !res->admitted)
			return st;
	}
	for (size_t start = 0; start < nb; group++) {
		size_t n = redis_tag_run(b + start, nb - start);
		bool first = group == 0;
		struct store_charge_result *got = first ? res : &later;
		enum store_status st = charge(ctx, group, b + start, n, first ? w : NULL,
					      first ? nw : 0, got, err, errlen);
		if (st != STORE_OK || !got->admitted) {
			if (!first)
				redis_groups_undo(ctx, refund, lead, b, start, w, nw, res->now_ms);
			if (st != STORE_OK)
				return st;
			if (!first) {
				res->admitted = false;
				res->over = start + later.over;
				res->retry_ms = later.retry_ms;
			}
			return STORE_OK;
		}
		start += n;
	}
	return STORE_OK;
}

enum store_status redis_groups_refund(void *ctx, redis_group_refund_fn refund,
	struct store_batch *batches, size_t n, char *err, size_t errlen)
{
	size_t total = 0, k = 0;

	for (size_t i = 0; i < n; i++)		/* at most a group per bucket, and the windows */
		total += batches[i].nb + 1;
	struct store_batch *split = calloc(total ? total : 1, sizeof(*split));
	size_t *first = calloc(n ? n : 1, sizeof(*first));
	if (split == NULL || first == NULL) {
		free(split);
		free(first);
		snprintf(err, errlen, "store: out of memory");
		return STORE_FAILED;
	}
	for (size_t i = 0; i < n; i++) {
		const struct store_batch *bt = &batches[i];
		bool apart = redis_windows_apart(bt);
		first[i] = k;
		if (apart)
			split[k++] = (struct store_batch){ NULL, 0, bt->windows, bt->nw, 0 };
		size_t start = 0;
		do {
			size_t m = bt->nb ? redis_tag_run(bt->buckets + start, bt->nb - start) : 0;
			bool windows = !apart && start == 0;
			split[k++] = (struct store_batch){ bt->buckets + start, m,
				windows ? bt->windows : NULL, windows ? bt->nw : 0, 0 };
			start += m;
		} while (start < bt->nb);
	}
	enum store_status st = refund(ctx, split, k, err, errlen);
	if (st == STORE_OK)
		for (size_t i = 0; i < n; i++)
			batches[i].now_ms = split[first[i]].now_ms;
	free(split);
	free(first);
	return st;
}
