/*
 * NAME
 *	store - where rate-limit state lives (token buckets and volume
 *	windows; Redis for now)
 * SYNOPSIS
 *	struct store *store_open(const struct settings *s, struct diag *errs);
 *	struct store *store_open_backend(const struct store_ops *ops,
 *		const struct settings *s, struct diag *errs);
 *	void store_close(struct store *st);
 *
 *	enum store_status store_charge(struct store *st,
 *		const struct store_bucket *b, size_t nb,
 *		const struct store_window *w, size_t nw,
 *		struct store_charge_result *res, char *err, size_t errlen);
 *	enum store_status store_refund(struct store *st,
 *		struct store_batch *batches, size_t n,
 *		char *err, size_t errlen);
 *	enum store_status store_peek(struct store *st,
 *		const struct store_bucket *b, size_t nb,
 *		struct store_level *out, long long *now_ms,
 *		char *err, size_t errlen);
 *	enum store_status store_forget(struct store *st, const char *const *keys,
 *		size_t n, long *deleted, char *err, size_t errlen);
 *	void store_get_stats(struct store *st, struct store_stats *out);
 * DESCRIPTION
 *	store_open parses the Redis URL, reads RedisPasswordFile and
 *	prepares a connection pool; it does not connect, so "-n" and a
 *	reload never wait on the network. Errors (bad URL, unreadable
 *	password file) go to errs as FILE: diagnostics; the password never
 *	appears in them or in any log line.
 *
 *	Keys are given without RedisPrefix; the store prepends it, so
 *	deployments sharing one Redis never see each other's keys.
 *
 *	A bucket is a token bucket: it holds count tokens and refills evenly
 *	over period_ms (count/period_ms tokens per millisecond), using the
 *	store's clock (the Redis server's TIME), never the caller's. A bucket
 *	that is full again costs no memory: its key expires.
 *
 *	store_charge is atomic over all the buckets it is given (callers pass
 *	keys that share a Redis hash tag): when every bucket has room for its
 *	cost, all are charged and res->admitted is true; otherwise none is,
 *	res->over is the index of the first bucket without room and
 *	res->retry_ms the wait until all have room (-1: never, a cost is
 *	larger than its bucket). In the same round trip it reads each volume
 *	window: res->volume[i] is the number of events counted in window i
 *	during its last period_ms, before this one; an admitted charge then
 *	counts itself in every window. res->now_ms is the store clock of the
 *	charge; a refund of the windows names it (store_window.at_ms).
 *
 *	store_refund gives back each batch's costs (never filling a bucket
 *	beyond full) and uncounts one event at at_ms in each window. Every
 *	batch is atomic on its own; all batches travel in one round trip.
 *	Each batch's now_ms receives the store clock it ran at.
 *
 *	A charge or a refund takes effect once, however often the backend
 *	sends it: a backend that retries (Redis: once, on a connection that
 *	died, perhaps after the script ran) gives every call an id unique
 *	across the fleet, the store keeps the ids it applied for a short
 *	while beside the account's keys (same hash tag), and a replay gets
 *	the first reply and changes nothing. This costs no round trip.
 *
 *	store_peek reads buckets without charging: used tokens (fractions
 *	included) and the time until the bucket is full again; *now_ms
 *	(may be NULL) receives the store clock it read them at. store_forget
 *	deletes keys; *deleted (may be NULL) receives how many existed.
 *
 *	The store is shared by all worker threads (libmilter runs one
 *	connection's callbacks on any of its workers). Calls never hold a
 *	lock across a network round trip.
 * DIAGNOSTICS
 *	Every call returns STORE_OK or STORE_FAILED with a one-line reason in
 *	err (no secrets): Redis unreachable, timed out, refused AUTH, sent an
 *	error. After a failure the store does not try Redis for a back-off
 *	(STORE_BACKOFF_MIN_MS, doubling up to STORE_BACKOFF_MAX_MS); calls in
 *	that time fail at once with "redis unavailable (backoff)". When the
 *	back-off ends one call probes; when Redis answers, the store resumes
 *	by itself. Transitions (unavailable, available again) are logged
 *	once each, not per call.
 * BACKENDS
 *	A backend is a table of functions (struct store_ops); store.c picks
 *	one by the URL scheme, so another backend is one more file.
 *	store_open_backend opens a store on the backend given (the unit
 *	tests' in-memory one), whatever the URL says.
 */
#ifndef BM_STORE_H
#define BM_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "settings.h"

/* What a settings struct without Redis/RedisPrefix values means (SPEC). */
#define STORE_DEFAULT_URL "redis://127.0.0.1:6379/0"
#define STORE_DEFAULT_PREFIX "bm:"
/* Volume windows one charge can read (one per bulk "volume" rule). */
#define STORE_WINDOWS_MAX 16
/* Back-off after a failure: first wait, doubled per failed probe, cap. */
#define STORE_BACKOFF_MIN_MS 100
#define STORE_BACKOFF_MAX_MS 3000

enum store_status { STORE_OK = 0, STORE_FAILED };

struct store;

struct store_bucket {
	const char *key;
	unsigned long count;		/* tokens the bucket holds */
	unsigned long period_ms;	/* time to refill from empty to full */
	unsigned long cost;		/* tokens to take (charge) or give back (refund) */
};

/* A sliding window that counts events (messages) over period_ms. */
struct store_window {
	const char *key;
	unsigned long period_ms;
	long long at_ms;		/* refund only: res->now_ms of the charge */
};

struct store_charge_result {
	bool admitted;
	size_t over;			/* !admitted: first bucket without room */
	long retry_ms;			/* !admitted: wait until all have room; -1 never */
	long long now_ms;		/* store clock of this charge */
	unsigned long volume[STORE_WINDOWS_MAX];
};

/* One atomic refund (keys of one hash tag). */
struct store_batch {
	const struct store_bucket *buckets;
	size_t nb;
	const struct store_window *windows;
	size_t nw;
	long long now_ms;		/* out: the store clock of the refund */
};

struct store_level {
	double used;			/* tokens taken and not yet refilled; 0 = full */
	long full_in_ms;		/* 0 = full */
};

struct store_stats {
	unsigned long long calls;	/* store calls made */
	unsigned long long failures;	/* calls that failed, back-off included */
	bool backing_off;		/* Redis is not being tried right now */
};

struct store *store_open(const struct settings *s, struct diag *errs);
void store_close(struct store *st);

enum store_status store_charge(struct store *st, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen);
enum store_status store_refund(struct store *st, struct store_batch *batches, size_t n,
	char *err, size_t errlen);
enum store_status store_peek(struct store *st, const struct store_bucket *b, size_t nb,
	struct store_level *out, long long *now_ms, char *err, size_t errlen);
enum store_status store_forget(struct store *st, const char *const *keys, size_t n,
	long *deleted, char *err, size_t errlen);
void store_get_stats(struct store *st, struct store_stats *out);

/*
 * Tests only: shift the store clock by offset_ms (0 = none; only ever
 * increase it). An offset, not a fixed time, so that Redis key expiry,
 * which runs on the real clock, can never fire before the shifted clock
 * says a bucket is full.
 */
void store_set_clock_offset(struct store *st, long long offset_ms);

/*
 * Backend interface. impl is the backend's own state; clock_offset_ms is
 * the test offset above (0 in production).
 */
struct store_ops {
	const char *name;
	void *(*open)(const struct settings *s, struct diag *errs);
	void (*close)(void *impl);
	enum store_status (*charge)(void *impl, long long clock_offset_ms,
		const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
		struct store_charge_result *res, char *err, size_t errlen);
	enum store_status (*refund)(void *impl, long long clock_offset_ms,
		struct store_batch *batches, size_t n, char *err, size_t errlen);
	enum store_status (*peek)(void *impl, long long clock_offset_ms,
		const struct store_bucket *b, size_t nb, struct store_level *out,
		long long *now_ms, char *err, size_t errlen);
	enum store_status (*forget)(void *impl, const char *const *keys, size_t n,
		long *deleted, char *err, size_t errlen);
	void (*stats)(void *impl, struct store_stats *out);
};

extern const struct store_ops store_redis_ops;

struct store *store_open_backend(const struct store_ops *ops, const struct settings *s,
	struct diag *errs);

#endif
