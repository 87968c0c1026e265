/*
 * store_redis - the Redis backend of the store: turns charges, refunds,
 * peeks and deletions into calls of the rate-limit script
 * (store_redis_script.c) and reads their replies.
 *
 * What it does: prepends RedisPrefix to the keys, turns rates into exact
 * integer units, gives every charge and refund its once key, and hands
 * the commands to the connection layer (store_redis_conn.c: pool,
 * back-off, NOSCRIPT).
 * What it does not: decide what a failure means for the mail (the
 * caller's OnStoreFailure), or know classes and accounts (keys come from
 * ratelimit.c).
 *
 * Decisions:
 * - Rates become integer "units" here (gcd-reduced, checked below 2^53,
 *   STORE_REDIS_UNITS_MAX), so the script's arithmetic is exact.
 * - The connection may have died after Redis ran the script (the reply
 *   was lost), so the connection layer's retry may be a replay: every
 *   charge and refund carries an id no other call has (a random
 *   per-store nonce and a counter) in its "once" key, under the hash tag
 *   of its first key, and the script answers a replay from that key
 *   without touching a bucket (store_redis_script.c). The id travels
 *   inside the one EVALSHA: no round trip more.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "store.h"
#include "store_redis.h"
#include "store_redis_conn.h"
#include "text.h"

/* Used when RedisTimeout is not positive. */
#define REDIS_DEFAULT_TIMEOUT_MS 200
/* Integers a Lua double holds exactly; every bucket value stays below. */
#define STORE_REDIS_UNITS_MAX (1ULL << 53)
/* Longest RedisPrefix; keys must stay readable and bounded. */
#define REDIS_PREFIX_MAX 128
/*
 * How long a once key outlives its call: a call's retry reaches Redis
 * within about four RedisTimeouts of its first attempt (reply, connect,
 * AUTH/SCRIPT LOAD, EVALSHA), plus this margin for a loaded server.
 */
#define REDIS_ONCE_MARGIN_MS 10000

struct redis_store {
	struct redis_conn *conn;	/* where the commands go */
	char prefix[REDIS_PREFIX_MAX + 1];
	char sha[2 * SHA_DIGEST_LENGTH + 1];
	char nonce[17];			/* 64 random bits, hex: this store's ids */
	_Atomic unsigned long long seq;	/* calls that carried an id */
	long once_ttl_ms;		/* life of a once key */
};

/* ---- commands ---- */

static unsigned long redis_gcd(unsigned long a, unsigned long b)
{
	while (b != 0) {
		unsigned long t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/*
 * A bucket in units (see the top of the file). A cost beyond the bucket
 * is clamped: to count + 1 for a charge (still never fits), to count for
 * a refund (never beyond full); this also keeps cost * tu exact.
 */
struct redis_units {
	unsigned long long count, tu, refill, cost;
};

static int redis_units(const struct store_bucket *b, bool charge, struct redis_units *u,
	char *err, size_t errlen)
{
	if (b->count == 0) {
		snprintf(err, errlen, "store: bucket %s has an empty rate", b->key);
		return -1;
	}
	if (b->period_ms == 0) {
		/* A calendar window counts tokens as they are: tu 0 marks it. */
		const long long *w = b->bounds;
		if (w[0] < 0 || w[0] >= w[1] || w[1] >= w[2] || w[2] >= w[3] ||
		    (unsigned long long)w[3] >= STORE_REDIS_UNITS_MAX || b->count >= STORE_REDIS_UNITS_MAX) {
			snprintf(err, errlen, "store: calendar window %s has bad bounds", b->key);
			return -1;
		}
		*u = (struct redis_units){ b->count, 0, 0, b->cost };
		if (u->cost > u->count)
			u->cost = charge ? u->count + 1 : u->count;
		return 0;
	}
	unsigned long g = redis_gcd(b->count, b->period_ms);
	u->count = b->count;
	u->tu = b->period_ms / g;
	u->refill = b->count / g;
	u->cost = b->cost;
	if (u->cost > u->count)
		u->cost = charge ? u->count + 1 : u->count;
	if (((unsigned __int128)u->count + 1) * u->tu >= STORE_REDIS_UNITS_MAX) {
		snprintf(err, errlen, "store: rate %lu/%lums of %s is too fine for exact counting",
			 b->count, b->period_ms, b->key);
		return -1;
	}
	return 0;
}

/*
 * The once key of a call (see the top of the file): the first key up to
 * the end of its hash tag (the whole key when it has none), then
 * ":once:ID", so Redis Cluster puts it in the slot of the call's keys.
 */
static void redis_cmd_once(struct redis_cmd *c, struct redis_store *rs, const char *first)
{
	char stack[1024], id[64];
	size_t plen = strlen(rs->prefix), flen = strlen(first), cut;
	char *full = plen + flen < sizeof(stack) ? stack : malloc(plen + flen + 1);

	if (full == NULL) {
		c->nomem = true;
		return;
	}
	memcpy(full, rs->prefix, plen);
	memcpy(full + plen, first, flen + 1);
	cut = plen + flen;
	const char *open = strchr(full, '{'), *close = open ? strchr(open + 1, '}') : NULL;
	if (close != NULL && close > open + 1)
		cut = (size_t)(close + 1 - full);
	/* ":once:NONCE.SEQ", SEQ in hex */
	struct text t = TEXT_INIT(id);
	text_put(&t, ":once:", 6);
	text_str(&t, rs->nonce);
	text_put(&t, ".", 1);
	text_hex(&t, atomic_fetch_add(&rs->seq, 1), 1);
	redis_cmd_put(c, full, cut, id, t.len);
	if (full != stack)
		free(full);
}

/* The safety part's arguments after its count (store_redis_script.c). */
static size_t redis_safety_args(const struct store_safety *sf)
{
	return 4 + 5 * sf->ncounts + 2 * sf->nnotify + (sf->suppression_key ? 2 : 0);
}

/*
 * EVALSHA of the script for one op; charge and refund carry a once key.
 * sf (charge only, may be NULL) is the account-safety part: its keys
 * after the once key, its arguments after the volume windows'.
 */
static int redis_cmd_script(struct redis_cmd *c, struct redis_store *rs, const char *op,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	const struct store_safety *sf, long long offset, char *err, size_t errlen)
{
	size_t plen = strlen(rs->prefix);
	bool once = strcmp(op, "peek") != 0 && nb + nw > 0;
	size_t nsk = sf ? 1 + sf->ncounts + sf->nnotify + (sf->suppression_key ? 1 : 0) : 0;

	redis_cmd_init(c, (int)(10 + (1 + STORE_REDIS_BUCKET_ARGS) * nb + 3 * nw + nsk
				+ (sf ? redis_safety_args(sf) : 0)));
	redis_cmd_str(c, "EVALSHA");
	redis_cmd_str(c, rs->sha);
	redis_cmd_num(c, nb + nw + once + nsk);
	for (size_t i = 0; i < nb; i++)
		redis_cmd_put(c, rs->prefix, plen, b[i].key, strlen(b[i].key));
	for (size_t i = 0; i < nw; i++)
		redis_cmd_put(c, rs->prefix, plen, w[i].key, strlen(w[i].key));
	if (once)
		redis_cmd_once(c, rs, nb > 0 ? b[0].key : w[0].key);
	if (sf) {
		redis_cmd_put(c, rs->prefix, plen, sf->suspension_key, strlen(sf->suspension_key));
		for (size_t i = 0; i < sf->ncounts; i++)
			redis_cmd_put(c, rs->prefix, plen, sf->counts[i].key, strlen(sf->counts[i].key));
		for (size_t i = 0; i < sf->nnotify; i++)
			redis_cmd_put(c, rs->prefix, plen, sf->notify[i].key, strlen(sf->notify[i].key));
		if (sf->suppression_key)
			redis_cmd_put(c, rs->prefix, plen, sf->suppression_key, strlen(sf->suppression_key));
	}
	redis_cmd_str(c, op);
	redis_cmd_num(c, nb);
	redis_cmd_num(c, nw);
	redis_cmd_num(c, once ? (unsigned long long)rs->once_ttl_ms : 0);
	for (size_t i = 0; i < nb; i++) {
		struct redis_units u;
		if (redis_units(&b[i], strcmp(op, "charge") == 0, &u, err, errlen) < 0) {
			redis_cmd_free(c);
			return -1;
		}
		redis_cmd_num(c, u.count);
		redis_cmd_num(c, u.tu);
		redis_cmd_num(c, u.refill);
		redis_cmd_num(c, u.cost);
		for (size_t k = 0; k < 4; k++)
			redis_cmd_num(c, b[i].period_ms == 0 ? (unsigned long long)b[i].bounds[k] : 0);
	}
	for (size_t i = 0; i < nw; i++) {
		if (w[i].period_ms == 0 || w[i].at_ms < 0) {
			snprintf(err, errlen, "store: bad volume window %s", w[i].key);
			redis_cmd_free(c);
			return -1;
		}
		redis_cmd_num(c, w[i].period_ms);
		redis_cmd_num(c, (unsigned long long)w[i].at_ms);
	}
	redis_cmd_num(c, sf ? redis_safety_args(sf) : 0);
	if (sf) {
		redis_cmd_num(c, sf->suspend_for_ms);
		redis_cmd_str(c, sf->account ? sf->account : "");
		redis_cmd_num(c, sf->ncounts);
		redis_cmd_num(c, sf->nnotify);
		for (size_t i = 0; i < sf->ncounts; i++) {
			const struct store_safety_count *k = &sf->counts[i];
			redis_cmd_str(c, k->kind == STORE_COUNT_DISTINCT ? "d" : k->kind == STORE_COUNT_SENT ? "s" : "r");
			redis_cmd_str(c, k->element ? k->element : "");
			redis_cmd_num(c, k->limit);
			redis_cmd_num(c, k->period_ms);
			redis_cmd_str(c, k->rule ? k->rule : "");
		}
		for (size_t i = 0; i < sf->nnotify; i++) {
			if (sf->notify[i].bucket >= nb) {
				snprintf(err, errlen, "store: threshold of a bucket the charge does not have");
				redis_cmd_free(c);
				return -1;
			}
			redis_cmd_num(c, sf->notify[i].bucket + 1);
			redis_cmd_num(c, sf->notify[i].pct);
		}
		if (sf->suppression_key) {
			redis_cmd_str(c, sf->recipient ? sf->recipient : "");
			redis_cmd_str(c, sf->suppression_note ? "n" : "s");
		}
	}
	if (offset > 0)
		redis_cmd_num(c, (unsigned long long)offset);
	if (c->nomem) {
		snprintf(err, errlen, "store: out of memory");
		redis_cmd_free(c);
		return -1;
	}
	redis_cmd_finish(c);
	return 0;
}


static bool redis_integers(const redisReply *r, size_t n)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER)
			return false;
	return true;
}

/* ---- the backend ---- */

/*
 * The safety outcome after a charge's 4 + nw numbers: state, by, reason,
 * until, tripped, figure, nfired, then per fired threshold: index, used,
 * resets (store_redis_script.c). A replayed charge has none: nothing
 * happened. false: the reply is not of that shape.
 */
static bool redis_safety_outcome(const redisReply *r, size_t at, size_t nnotify,
	struct store_safety_result *sr)
{
	if (r->elements == at)
		return true;
	if (r->elements < at + 7)
		return false;
	redisReply *const *e = r->element + at;
	if (e[0]->type != REDIS_REPLY_INTEGER || e[1]->type != REDIS_REPLY_STRING
	    || e[2]->type != REDIS_REPLY_STRING)
		return false;
	for (size_t i = 3; i < 7; i++)
		if (e[i]->type != REDIS_REPLY_INTEGER)
			return false;
	size_t nfired = (size_t)e[6]->integer;
	if (e[0]->integer < 0 || e[0]->integer > STORE_SUPPRESSED || nfired > nnotify
	    || r->elements != at + 7 + 3 * nfired)
		return false;
	for (size_t i = 0; i < 3 * nfired; i++)
		if (e[7 + i]->type != REDIS_REPLY_INTEGER)
			return false;
	sr->suspended = (enum store_suspension)e[0]->integer;
	text_copy(sr->by, sizeof(sr->by), e[1]->str);
	text_copy(sr->reason, sizeof(sr->reason), e[2]->str);
	sr->until_ms = e[3]->integer;
	sr->tripped = (size_t)e[4]->integer;
	sr->figure = e[5]->integer;
	sr->nfired = nfired;
	for (size_t i = 0; i < nfired; i++) {
		if (e[7 + 3 * i]->integer < 0 || (size_t)e[7 + 3 * i]->integer >= nnotify)
			return false;
		sr->fired[i].notify = (size_t)e[7 + 3 * i]->integer;
		sr->fired[i].used = e[8 + 3 * i]->integer;
		sr->fired[i].resets_ms = e[9 + 3 * i]->integer;
	}
	return true;
}

static enum store_status redis_charge_safe(void *impl, long long offset,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	const struct store_safety *sf, struct store_charge_result *res,
	struct store_safety_result *sr, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd cmd, *cmds[1] = { &cmd };
	redisReply *r;

	if (redis_cmd_script(&cmd, rs, "charge", b, nb, w, nw, sf, offset, err, errlen) < 0)
		return STORE_FAILED;
	enum store_status status = redis_conn_run(rs->conn, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 4 + nw)
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	for (size_t i = 0; i < 4 + nw; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER)
			return redis_conn_bad_reply(rs->conn, r, err, errlen);
	if (sf ? !redis_safety_outcome(r, 4 + nw, sf->nnotify, sr) : r->elements != 4 + nw)
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	long long over = r->element[1]->integer;
	if (over < 0 || (size_t)over > nb)
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	res->admitted = r->element[0]->integer == 1;
	res->over = over > 0 ? (size_t)over - 1 : 0;
	res->retry_ms = (long)r->element[2]->integer;
	res->now_ms = r->element[3]->integer;
	for (size_t i = 0; i < nw; i++)
		res->volume[i] = (unsigned long)r->element[4 + i]->integer;
	freeReplyObject(r);
	return STORE_OK;
}

static enum store_status redis_charge_tags(void *impl, long long offset,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	const struct store_safety *sf, struct store_charge_result *res,
	struct store_safety_result *sr, char *err, size_t errlen);

static enum store_status redis_charge(void *impl, long long offset, const struct store_bucket *b,
	size_t nb, const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen)
{
	struct store_safety_result none;

	return redis_charge_tags(impl, offset, b, nb, w, nw, NULL, res, &none, err, errlen);
}

static enum store_status redis_refund(void *impl, long long offset, struct store_batch *batches,
	size_t n, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd *cmd = calloc(n, sizeof(*cmd));
	struct redis_cmd **cmds = calloc(n, sizeof(*cmds));
	redisReply **replies = calloc(n, sizeof(*replies));
	enum store_status status = STORE_FAILED;
	size_t built = 0;

	if (cmd == NULL || cmds == NULL || replies == NULL) {
		snprintf(err, errlen, "store: out of memory");
		goto out;
	}
	for (; built < n; built++) {
		const struct store_batch *bt = &batches[built];
		if (redis_cmd_script(&cmd[built], rs, "refund", bt->buckets, bt->nb, bt->windows,
				     bt->nw, NULL, offset, err, errlen) < 0)
			goto out;
		cmds[built] = &cmd[built];
	}
	status = redis_conn_run(rs->conn, cmds, n, replies, err, errlen);
	if (status == STORE_OK)
		for (size_t i = 0; i < n; i++) {
			batches[i].now_ms = replies[i]->type == REDIS_REPLY_INTEGER ? replies[i]->integer : 0;
			freeReplyObject(replies[i]);
		}
out:
	for (size_t i = 0; i < built; i++)
		redis_cmd_free(&cmd[i]);
	free(cmd);
	free(cmds);
	free(replies);
	return status;
}

static enum store_status redis_peek(void *impl, long long offset, const struct store_bucket *b,
	size_t nb, struct store_level *out, long long *now_ms, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd cmd, *cmds[1] = { &cmd };
	redisReply *r;

	if (redis_cmd_script(&cmd, rs, "peek", b, nb, NULL, 0, NULL, offset, err, errlen) < 0)
		return STORE_FAILED;
	enum store_status status = redis_conn_run(rs->conn, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (!redis_integers(r, 2 * nb + 1))
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	*now_ms = r->element[2 * nb]->integer;
	for (size_t i = 0; i < nb; i++) {
		struct redis_units u;
		if (redis_units(&b[i], false, &u, err, errlen) < 0) {
			freeReplyObject(r);
			return STORE_FAILED;
		}
		out[i].used = (double)r->element[2 * i]->integer / (double)(u.tu ? u.tu : 1);
		out[i].full_in_ms = (long)r->element[2 * i + 1]->integer;
	}
	freeReplyObject(r);
	return STORE_OK;
}

static enum store_status redis_forget(void *impl, const char *const *keys, size_t n, long *deleted,
	char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd cmd, *cmds[1] = { &cmd };
	size_t plen = strlen(rs->prefix);
	redisReply *r;

	redis_cmd_init(&cmd, (int)n + 1);
	redis_cmd_str(&cmd, "DEL");
	for (size_t i = 0; i < n; i++)
		redis_cmd_put(&cmd, rs->prefix, plen, keys[i], strlen(keys[i]));
	if (cmd.nomem) {
		redis_cmd_free(&cmd);
		snprintf(err, errlen, "store: out of memory");
		return STORE_FAILED;
	}
	redis_cmd_finish(&cmd);
	enum store_status status = redis_conn_run(rs->conn, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (r->type != REDIS_REPLY_INTEGER)
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	if (deleted)
		*deleted = (long)r->integer;
	freeReplyObject(r);
	return STORE_OK;
}

/* One reply element as text; false for a kind we do not take. */
static bool redis_eval_text(const redisReply *r, char *buf, size_t size)
{
	if (r->type == REDIS_REPLY_INTEGER)
		snprintf(buf, size, "%lld", r->integer);
	else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
		snprintf(buf, size, "%.*s", (int)(r->len < size ? r->len : size - 1), r->str);
	else if (r->type == REDIS_REPLY_NIL)
		buf[0] = '\0';
	else
		return false;
	return true;
}

/* slot: where a key-less script runs in a cluster (-1: any master). */
static enum store_status redis_eval_slot(void *impl, int slot, const char *script,
	const char *const *keys, size_t nk, const char *const *args, size_t na,
	char (*out)[STORE_EVAL_VALUE_MAX], size_t nout, size_t *got, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd cmd, *cmds[1] = { &cmd };
	size_t plen = strlen(rs->prefix);
	redisReply *r;

	redis_cmd_init(&cmd, (int)(nk + na) + 3);
	cmd.slot = slot;
	redis_cmd_str(&cmd, "EVAL");
	redis_cmd_str(&cmd, script);
	redis_cmd_num(&cmd, nk);
	for (size_t i = 0; i < nk; i++)
		redis_cmd_put(&cmd, rs->prefix, plen, keys[i], strlen(keys[i]));
	for (size_t i = 0; i < na; i++)
		redis_cmd_str(&cmd, args[i]);
	if (cmd.nomem) {
		redis_cmd_free(&cmd);
		snprintf(err, errlen, "store: out of memory");
		return STORE_FAILED;
	}
	redis_cmd_finish(&cmd);
	enum store_status status = redis_conn_run(rs->conn, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements && *got < nout; i++)
			if (!redis_eval_text(r->element[i], out[(*got)++], STORE_EVAL_VALUE_MAX))
				return redis_conn_bad_reply(rs->conn, r, err, errlen);
	} else if (nout > 0 && !redis_eval_text(r, out[(*got)++], STORE_EVAL_VALUE_MAX)) {
		return redis_conn_bad_reply(rs->conn, r, err, errlen);
	}
	freeReplyObject(r);
	return STORE_OK;
}

static enum store_status redis_eval(void *impl, const char *script, const char *const *keys,
	size_t nk, const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX],
	size_t nout, size_t *got, char *err, size_t errlen)
{
	return redis_eval_slot(impl, -1, script, keys, nk, args, na, out, nout, got, err, errlen);
}

/* The masters: one slot each in a cluster (redis_conn_master_slots). */
static size_t redis_masters(void *impl, unsigned *where, size_t max, char *err, size_t errlen)
{
	struct redis_store *rs = impl;

	return redis_conn_master_slots(rs->conn, where, max, err, errlen);
}

static enum store_status redis_eval_at(void *impl, unsigned where, const char *script,
	const char *const *args, size_t na, char (*out)[STORE_EVAL_VALUE_MAX], size_t nout,
	size_t *got, char *err, size_t errlen)
{
	return redis_eval_slot(impl, (int)where, script, NULL, 0, args, na, out, nout, got, err,
			       errlen);
}

static void redis_stats(void *impl, struct store_stats *out)
{
	struct redis_store *rs = impl;

	redis_conn_stats(rs->conn, out);
}

static void redis_close(void *impl)
{
	struct redis_store *rs = impl;

	redis_conn_close(rs->conn);
	free(rs);
}

/*
 * 64 bits that no other store of the fleet draws: from getrandom, or,
 * where the kernel cannot give them yet (early boot), from the clocks
 * and the pid, which still differ from host to host and run to run.
 */
static void redis_nonce(char *buf, size_t size)
{
	unsigned long long v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		struct timespec rt, mono;
		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		v = ((unsigned long long)rt.tv_sec * 1000000000ULL + (unsigned long long)rt.tv_nsec)
			^ ((unsigned long long)getpid() << 40)
			^ ((unsigned long long)mono.tv_nsec << 20);
	}
	snprintf(buf, size, "%016llx", v);
}

static void *redis_open(const struct settings *s, struct diag *errs)
{
	const char *file = s->path ? s->path : "bulkmilter.conf";
	const char *url = s->redis_url ? s->redis_url : STORE_DEFAULT_URL;
	const char *prefix = s->redis_prefix ? s->redis_prefix : STORE_DEFAULT_PREFIX;
	struct store_redis_url parsed;
	char err[256];

	struct redis_store *rs = calloc(1, sizeof(*rs));
	if (rs == NULL) {
		diag_add(errs, file, 0, "Redis: out of memory");
		return NULL;
	}
	if (store_redis_parse_url(url, &parsed, err, sizeof(err)) < 0) {
		diag_add(errs, file, settings_line(s, "Redis"), "Redis: %s", err);
		free(rs);
		return NULL;
	}
	if (s->redis_password_file != NULL) {
		if (parsed.password[0] != '\0') {
			diag_add(errs, file, settings_line(s, "RedisPasswordFile"),
				 "Redis: password both in the URL and in RedisPasswordFile; keep one");
			goto failed;
		}
		if (store_redis_read_password(s->redis_password_file, parsed.password,
					sizeof(parsed.password), err, sizeof(err)) < 0) {
			diag_add(errs, file, settings_line(s, "RedisPasswordFile"), "%s", err);
			goto failed;
		}
	}
	if (strlen(prefix) > REDIS_PREFIX_MAX) {
		diag_add(errs, file, settings_line(s, "RedisPrefix"), "RedisPrefix: longer than %d characters",
			 REDIS_PREFIX_MAX);
		goto failed;
	}
	strcpy(rs->prefix, prefix);
	long ms = s->redis_timeout_ms > 0 ? s->redis_timeout_ms : REDIS_DEFAULT_TIMEOUT_MS;
	rs->once_ttl_ms = 4 * ms + REDIS_ONCE_MARGIN_MS;
	redis_nonce(rs->nonce, sizeof(rs->nonce));
	atomic_init(&rs->seq, 0);

	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)store_redis_script, store_redis_script_len, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(rs->sha + 2 * i, 3, "%02x", md[i]);
	if ((rs->conn = redis_conn_open(&parsed, ms, rs->sha)) == NULL) {
		diag_add(errs, file, 0, "Redis: out of memory");
		goto failed;
	}
	explicit_bzero(&parsed, sizeof(parsed));
	return rs;

failed:
	explicit_bzero(&parsed, sizeof(parsed));
	free(rs);
	return NULL;
}

/*
 * ---- calls over several hash tags ----
 * In a Cluster the scopes of one call (account, domain, class: each its
 * own tag) may live on different masters: store_redis_groups.c charges
 * them one group at a time and refunds on a later refusal. The account
 * safety part goes with the first group, the account's.
 */
struct redis_group_call {
	void *impl;
	long long offset;
	const struct store_safety *sf;
	struct store_safety_result *sr;
};

static enum store_status redis_group_charge(void *ctx, size_t group, const struct store_bucket *b,
	size_t nb, const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen)
{
	struct redis_group_call *gc = ctx;
	struct store_safety_result none;

	return redis_charge_safe(gc->impl, gc->offset, b, nb, w, nw, group == 0 ? gc->sf : NULL,
				 res, group == 0 ? gc->sr : &none, err, errlen);
}

static enum store_status redis_group_refund(void *ctx, struct store_batch *batches, size_t n,
	char *err, size_t errlen)
{
	struct redis_group_call *gc = ctx;

	return redis_refund(gc->impl, gc->offset, batches, n, err, errlen);
}

static enum store_status redis_charge_tags(void *impl, long long offset,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	const struct store_safety *sf, struct store_charge_result *res,
	struct store_safety_result *sr, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_group_call gc = { impl, offset, sf, sr };
	/* The windows and the safety part are under the account's tag. */
	const char *account = nw > 0 ? w[0].key : sf && sf->suspension_key ? sf->suspension_key : NULL;
	bool lead = account != NULL && nb > 0 && !redis_same_tag(account, b[0].key);

	if (!redis_conn_splits(rs->conn) || (redis_tag_run(b, nb) == nb && !lead))
		return redis_charge_safe(impl, offset, b, nb, w, nw, sf, res, sr, err, errlen);
	return redis_groups_charge(&gc, redis_group_charge, redis_group_refund, lead, b, nb, w, nw,
				   res, err, errlen);
}

/* A peek over several tags, one tag at a time (Cluster). */
static enum store_status redis_peek_tags(void *impl, long long offset,
	const struct store_bucket *b, size_t nb, struct store_level *out, long long *now_ms,
	char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	long long first = 0, at;

	if (!redis_conn_splits(rs->conn) || redis_tag_run(b, nb) == nb)
		return redis_peek(impl, offset, b, nb, out, now_ms, err, errlen);
	for (size_t start = 0; start < nb;) {
		size_t n = redis_tag_run(b + start, nb - start);
		if (redis_peek(impl, offset, b + start, n, out + start, &at, err, errlen) != STORE_OK)
			return STORE_FAILED;
		if (start == 0)
			first = at;
		start += n;
	}
	*now_ms = first;
	return STORE_OK;
}

static enum store_status redis_refund_tags(void *impl, long long offset,
	struct store_batch *batches, size_t n, char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_group_call gc = { impl, offset, NULL, NULL };

	if (!redis_conn_splits(rs->conn) || redis_batches_one_tag(batches, n))
		return redis_refund(impl, offset, batches, n, err, errlen);
	return redis_groups_refund(&gc, redis_group_refund, batches, n, err, errlen);
}

const struct store_ops store_redis_ops = {
	.name = "redis",
	.open = redis_open,
	.close = redis_close,
	.charge = redis_charge,
	.charge_safe = redis_charge_tags,
	.refund = redis_refund_tags,
	.peek = redis_peek_tags,
	.forget = redis_forget,
	.stats = redis_stats,
	.eval = redis_eval,
	.masters = redis_masters,
	.eval_at = redis_eval_at,
};
