/*
 * store - picks the backend for the Redis setting and forwards calls to it.
 *
 * This file knows no backend's internals: a backend is a struct store_ops
 * in its own file (store_redis.c), chosen here by the URL scheme. Checks
 * common to every backend (empty calls, argument sanity) live here, so a
 * backend only does its own work. The test clock offset lives here too,
 * so production paths never see anything but 0.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"

struct store {
	const struct store_ops *ops;
	void *impl;
	_Atomic long long clock_offset_ms;
};

/* URL schemes and their backends; "later" ones (ops NULL) are named for a clear error. */
static const struct store_scheme {
	const char *prefix;
	const struct store_ops *ops;
} store_schemes[] = {
	{ "redis://", &store_redis_ops },
	{ "unix:", &store_redis_ops },
	{ "sentinel://", &store_redis_ops },
	{ "cluster://", &store_redis_ops },
};

struct store *store_open(const struct settings *s, struct diag *errs)
{
	const char *file = s->path ? s->path : "bulkmilter.conf";
	const char *url = s->redis_url ? s->redis_url : STORE_DEFAULT_URL;
	const struct store_scheme *scheme = NULL;

	for (size_t i = 0; i < sizeof(store_schemes) / sizeof(store_schemes[0]); i++)
		if (strncmp(url, store_schemes[i].prefix, strlen(store_schemes[i].prefix)) == 0) {
			scheme = &store_schemes[i];
			break;
		}
	if (scheme == NULL) {
		/* Not echoing the URL: it may hold a password. */
		diag_add(errs, file, 0, "Redis: unknown URL scheme (use redis://, unix:, sentinel:// or cluster://)");
		return NULL;
	}
	if (scheme->ops == NULL) {
		diag_add(errs, file, 0, "Redis: %s is not supported yet", scheme->prefix);
		return NULL;
	}
	return store_open_backend(scheme->ops, s, errs);
}

struct store *store_open_backend(const struct store_ops *ops, const struct settings *s,
				 struct diag *errs)
{
	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		diag_add(errs, s->path ? s->path : "bulkmilter.conf", 0, "Redis: out of memory");
		return NULL;
	}
	st->ops = ops;
	st->impl = st->ops->open(s, errs);
	if (st->impl == NULL) {
		free(st);
		return NULL;
	}
	atomic_init(&st->clock_offset_ms, 0);
	return st;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	st->ops->close(st->impl);
	free(st);
}

enum store_status store_charge(struct store *st, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen)
{
	memset(res, 0, sizeof(*res));
	if (nw > STORE_WINDOWS_MAX) {
		snprintf(err, errlen, "store: %zu volume windows, at most %d", nw, STORE_WINDOWS_MAX);
		return STORE_FAILED;
	}
	if (nb == 0 && nw == 0) {
		res->admitted = true;
		return STORE_OK;
	}
	return st->ops->charge(st->impl, atomic_load(&st->clock_offset_ms), b, nb, w, nw, res,
			       err, errlen);
}

enum store_status store_charge_safe(struct store *st, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, const struct store_safety *sf,
	struct store_charge_result *res, struct store_safety_result *sr, char *err, size_t errlen)
{
	memset(sr, 0, sizeof(*sr));
	if (sf == NULL || sf->suspension_key == NULL || st->ops->charge_safe == NULL)
		return store_charge(st, b, nb, w, nw, res, err, errlen);
	memset(res, 0, sizeof(*res));
	if (nw > STORE_WINDOWS_MAX || sf->ncounts > STORE_SAFETY_COUNTS_MAX
	    || sf->nnotify > STORE_SAFETY_NOTIFY_MAX) {
		snprintf(err, errlen, "store: too many windows, counts or thresholds in one charge");
		return STORE_FAILED;
	}
	return st->ops->charge_safe(st->impl, atomic_load(&st->clock_offset_ms), b, nb, w, nw, sf,
				    res, sr, err, errlen);
}

enum store_status store_refund(struct store *st, struct store_batch *batches, size_t n,
	char *err, size_t errlen)
{
	if (n == 0)
		return STORE_OK;
	return st->ops->refund(st->impl, atomic_load(&st->clock_offset_ms), batches, n, err, errlen);
}

enum store_status store_peek(struct store *st, const struct store_bucket *b, size_t nb,
	struct store_level *out, long long *now_ms, char *err, size_t errlen)
{
	long long ignored;

	if (nb == 0)
		return STORE_OK;
	return st->ops->peek(st->impl, atomic_load(&st->clock_offset_ms), b, nb, out,
			     now_ms ? now_ms : &ignored, err, errlen);
}

enum store_status store_forget(struct store *st, const char *const *keys, size_t n,
	long *deleted, char *err, size_t errlen)
{
	if (deleted)
		*deleted = 0;
	if (n == 0)
		return STORE_OK;
	return st->ops->forget(st->impl, keys, n, deleted, err, errlen);
}

enum store_status store_eval(struct store *st, const char *script, const char *const *keys,
	size_t nk, const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX],
	size_t nout, size_t *got, char *err, size_t errlen)
{
	*got = 0;
	if (st->ops->eval == NULL) {
		snprintf(err, errlen, "store %s: no scripts", st->ops->name);
		return STORE_FAILED;
	}
	return st->ops->eval(st->impl, script, keys, nk, args, na, out, nout, got, err, errlen);
}

size_t store_masters(struct store *st, unsigned *where, size_t max, char *err, size_t errlen)
{
	if (max == 0)
		return 0;
	if (st->ops->masters == NULL) {
		where[0] = 0;
		return 1;
	}
	return st->ops->masters(st->impl, where, max, err, errlen);
}

enum store_status store_eval_at(struct store *st, unsigned where, const char *script,
	const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX], size_t nout,
	size_t *got, char *err, size_t errlen)
{
	*got = 0;
	if (st->ops->eval_at == NULL)
		return store_eval(st, script, NULL, 0, args, na, out, nout, got, err, errlen);
	return st->ops->eval_at(st->impl, where, script, args, na, out, nout, got, err, errlen);
}

void store_get_stats(struct store *st, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	st->ops->stats(st->impl, out);
}

long long store_now_ms(struct store *st)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&st->clock_offset_ms);
}

void store_set_clock_offset(struct store *st, long long offset_ms)
{
	atomic_store(&st->clock_offset_ms, offset_ms);
}
