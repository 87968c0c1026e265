/*
 * NAME
 *	store - where rate-limit state lives (token buckets, calendar
 *	windows and volume windows; Redis for now)
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
 *	enum store_status store_charge_safe(struct store *st,
 *		const struct store_bucket *b, size_t nb,
 *		const struct store_window *w, size_t nw,
 *		const struct store_safety *sf, struct store_charge_result *res,
 *		struct store_safety_result *sr, char *err, size_t errlen);
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
 *	long long store_now_ms(struct store *st);
 *	enum store_status store_eval(struct store *st, const char *script,
 *		const char *const *keys, size_t nk, const char *const *args,
 *		size_t na, char (*out)[STORE_EVAL_VALUE_MAX], size_t nout,
 *		size_t *got, char *err, size_t errlen);
 *	size_t store_masters(struct store *st, unsigned *where, size_t max,
 *		char *err, size_t errlen);
 *	enum store_status store_eval_at(struct store *st, unsigned where,
 *		const char *script, const char *const *args, size_t na,
 *		char (*out)[STORE_EVAL_VALUE_MAX], size_t nout, size_t *got,
 *		char *err, size_t errlen);
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
 *	A calendar window (period_ms 0) holds count for a fixed stretch of
 *	time whose boundaries the caller computes (ratelimit.c, from the
 *	zone data, calendar.h) and passes in bounds; the store's clock picks
 *	which of the three windows it is in, so a caller whose clock is a
 *	little off near midnight still counts in the right window, and a
 *	store clock outside all three is an error (a clock skewed by a
 *	window). The count is of the window the store clock is in; a new
 *	window starts from zero, and the key expires when its window ends.
 *	Refunds give back only to the window that was charged. A window's
 *	retry_ms is the time until it ends.
 *
 *	store_charge is atomic over all the buckets it is given: when every
 *	bucket has room for its
 *	cost, all are charged and res->admitted is true; otherwise none is,
 *	res->over is the index of the first bucket without room and
 *	res->retry_ms the wait until all have room (-1: never, a cost is
 *	larger than its bucket). In the same round trip it reads each volume
 *	window: res->volume[i] is the number of events counted in window i
 *	during its last period_ms, before this one; an admitted charge then
 *	counts itself in every window. res->now_ms is the store clock of the
 *	charge; a refund of the windows names it (store_window.at_ms).
 *
 *	Hash tags: the buckets of one call may carry different Redis hash
 *	tags (an account "{alice@x}", its domain "{d:x}", its class
 *	"{c:NAME}"); callers pass them grouped by tag (every bucket of one
 *	tag next to each other, the account's group first) and the volume
 *	windows under the first group's tag. A standalone Redis runs the
 *	whole call as one script; a backend whose keys of different tags
 *	may live on different servers (Redis Cluster) splits the call at
 *	each change of tag, charges the groups in order and refunds the
 *	groups already charged when a later one refuses, so a bucket never
 *	admits more than it holds. The same holds for a refund batch.
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
	unsigned long period_ms;	/* time to refill from empty to full; 0: a
					   calendar window (bounds) */
	unsigned long cost;		/* tokens to take (charge) or give back (refund) */
	/*
	 * Calendar window only: four boundaries on the store clock (ms),
	 * [bounds[0], bounds[1]) the window before the caller's, [bounds[1],
	 * bounds[2]) the caller's (charge, peek: the one holding
	 * store_now_ms; refund: the one that was charged), [bounds[2],
	 * bounds[3]) the next one.
	 */
	long long bounds[4];
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

/*
 * Account safety (safety.h builds it; SPEC.md "Account safety"): the part
 * of one charge that checks the account's suspension, counts its
 * suspend-if rules and fires its notify thresholds, in the same script
 * and round trip. Keys are the account's (same hash tag as its buckets).
 *
 * A suspended account's event is not charged: res->admitted is false,
 * res->over 0 and safety->suspended says why. A count rule counts the
 * event (STORE_COUNT_DISTINCT adds element to a HyperLogLog,
 * STORE_COUNT_REFUSED counts the event when the charge is refused) over
 * a fixed window of period_ms from its first count; when the count goes
 * beyond limit the rule trips: the account is suspended for
 * suspend_for_ms (by = the rule), the rule's count starts afresh, and
 * the event is not charged. A notify entry fires when its bucket's use
 * after an admitted charge reaches pct% of the bucket (in whole tokens,
 * rounded up: 50% of 10 is the 5th; a token being refilled still
 * counts), once until the bucket has refilled below that share or its
 * calendar window has ended (a key under the account's tag lives
 * exactly that long, so the fleet fires once). The safety part travels
 * with the account's own buckets (its hash tag); store_charge_safe with
 * sf NULL is store_charge. A replayed charge (store.h, once) returns no
 * safety outcome: sr says nothing happened.
 *
 * An outbound recipient event may also name the account's suppression
 * list and the recipient (suppression_key, recipient: suppress.h): a
 * listed recipient whose entry has not expired stops the charge before
 * any bucket, and sr->suspended is STORE_SUPPRESSED with until_ms the
 * entry's expiry; with suppression_note the charge goes on, and an
 * admitted one says STORE_SUPPRESSED.
 */
#define STORE_SAFETY_COUNTS_MAX 8
/* thresholds of one event: 4 notify shares x 16 rates of its kind (policy.h) */
#define STORE_SAFETY_NOTIFY_MAX 64
#define STORE_SAFETY_TEXT_MAX 256

/*
 * STORE_COUNT_SENT counts an admitted event in a sliding window of
 * period_ms (a hash of slot -> events, 60 slots, as the volume windows)
 * and never trips here: bounce-rate and complaint-rate rules divide by
 * it when a report is read (intake.h).
 */
enum store_count_kind { STORE_COUNT_DISTINCT, STORE_COUNT_REFUSED, STORE_COUNT_SENT };

struct store_safety_count {
	const char *key;
	enum store_count_kind kind;
	const char *element;		/* DISTINCT: what to count ("" or NULL: nothing this event) */
	unsigned long limit;		/* trips when the count exceeds it */
	unsigned long period_ms;
	const char *rule;		/* "distinct-ips > 5/1h": the suspension's by */
};

struct store_safety_notify {
	const char *key;		/* the fleet's "already sent" flag */
	size_t bucket;			/* index into the charge's buckets */
	unsigned pct;			/* 1..100 */
};

struct store_safety {
	const char *suspension_key;	/* NULL: no safety part in this charge */
	const char *suppression_key;	/* RCPT: the account's suppression list
					   (suppress.h), NULL: not checked */
	const char *recipient;		/* ... the address looked up in it */
	bool suppression_note;		/* a listed recipient is charged as usual,
					   only said to be listed (suppressed tag) */
	const char *account;		/* stored in a suspension a rule makes */
	unsigned long suspend_for_ms;
	const struct store_safety_count *counts;
	size_t ncounts;
	const struct store_safety_notify *notify;
	size_t nnotify;
};

/* STORE_SUPPRESSED: the recipient is on the account's suppression list
 * (until_ms: when its entry expires); nothing was charged. */
enum store_suspension { STORE_NOT_SUSPENDED = 0, STORE_SUSPENDED, STORE_SUSPENDED_NOW,
	STORE_SUPPRESSED };

struct store_safety_result {
	enum store_suspension suspended;
	char by[STORE_SAFETY_TEXT_MAX];		/* SUSPENDED: "ctl" or the rule */
	char reason[STORE_SAFETY_TEXT_MAX];	/* SUSPENDED: as given */
	long long until_ms;			/* 0: until released */
	size_t tripped;				/* SUSPENDED_NOW: counts[tripped - 1] tripped */
	long long figure;			/* ... at this count */
	size_t nfired;				/* notify entries that fired */
	struct {
		size_t notify;			/* index into notify */
		long long used;			/* tokens in use after the charge */
		long long resets_ms;		/* store clock when the bucket is full again */
	} fired[STORE_SAFETY_NOTIFY_MAX];
};

struct store *store_open(const struct settings *s, struct diag *errs);
void store_close(struct store *st);

enum store_status store_charge(struct store *st, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen);
/* store_charge with the account-safety part sf (below); sr receives its outcome. */
enum store_status store_charge_safe(struct store *st, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, const struct store_safety *sf,
	struct store_charge_result *res, struct store_safety_result *sr, char *err, size_t errlen);
enum store_status store_refund(struct store *st, struct store_batch *batches, size_t n,
	char *err, size_t errlen);
enum store_status store_peek(struct store *st, const struct store_bucket *b, size_t nb,
	struct store_level *out, long long *now_ms, char *err, size_t errlen);
enum store_status store_forget(struct store *st, const char *const *keys, size_t n,
	long *deleted, char *err, size_t errlen);
void store_get_stats(struct store *st, struct store_stats *out);

/*
 * A small script of the caller's, off the mail path (reading a report:
 * report.h; the Feedback-ID secret: feedback.h): keys get RedisPrefix
 * and must share one hash tag; args are passed as given. The reply, an
 * integer, a string or an array of them (nil as ""), comes back as text
 * in out[0 .. *got - 1], each cut to STORE_EVAL_VALUE_MAX - 1 octets;
 * values past nout are dropped. One round trip; like every call it may
 * be sent again on a connection that died, so a script given here must
 * be safe to run twice. STORE_FAILED as the others, also for a backend
 * without scripts.
 */
#define STORE_EVAL_VALUE_MAX 128
enum store_status store_eval(struct store *st, const char *script, const char *const *keys,
	size_t nk, const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX],
	size_t nout, size_t *got, char *err, size_t errlen);
/*
 * Key-less scripts that must see every key (a SCAN listing, off the mail
 * path): store_masters writes a place per master into where[0 .. n - 1]
 * (at most max) and returns n: 1, but in a Redis Cluster one per master
 * of a slot map asked for afresh; 0 with err when no master is known.
 * store_eval_at is store_eval without keys on the master at where. A
 * master that appears after store_masters is not visited, and a slot
 * migrating during a listing may be seen twice or not at all.
 */
#define STORE_MASTERS_MAX 64
size_t store_masters(struct store *st, unsigned *where, size_t max, char *err, size_t errlen);
enum store_status store_eval_at(struct store *st, unsigned where, const char *script,
	const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX], size_t nout,
	size_t *got, char *err, size_t errlen);
/*
 * The caller's view of the store clock (ms): the real-time clock plus the
 * test offset below. Calendar windows are computed around it.
 */
long long store_now_ms(struct store *st);

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
	enum store_status (*eval)(void *impl, const char *script, const char *const *keys,
		size_t nk, const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX],
		size_t nout, size_t *got, char *err, size_t errlen);	/* NULL: none */
	/* charge with the account-safety part; NULL: the backend has none,
	   and store_charge_safe charges without it */
	enum store_status (*charge_safe)(void *impl, long long clock_offset_ms,
		const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
		const struct store_safety *sf, struct store_charge_result *res,
		struct store_safety_result *sr, char *err, size_t errlen);
	/* store_masters; NULL: one server, where 0 */
	size_t (*masters)(void *impl, unsigned *where, size_t max, char *err, size_t errlen);
	/* store_eval_at; NULL: eval without keys */
	enum store_status (*eval_at)(void *impl, unsigned where, const char *script,
		const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX],
		size_t nout, size_t *got, char *err, size_t errlen);
};

extern const struct store_ops store_redis_ops;

struct store *store_open_backend(const struct store_ops *ops, const struct settings *s,
	struct diag *errs);

#endif
