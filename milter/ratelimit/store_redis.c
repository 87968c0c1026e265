/*
 * store_redis - the Redis backend of the store: runs the rate-limit
 * script (store_redis_script.c) through a pool of hiredis connections.
 *
 * What it does: keeps a small mutex-protected stack of idle connections
 * (libmilter runs one connection's callbacks on any worker thread, so a
 * Redis connection is borrowed per call, never bound to a thread), runs
 * the script with EVALSHA (EVAL with the body on NOSCRIPT, after a Redis
 * restart or SCRIPT FLUSH), and backs off after a failure so a dead
 * Redis does not cost a timeout per message.
 * What it does not: decide what a failure means for the mail (the
 * caller's OnStoreFailure), or know classes and accounts (keys come from
 * ratelimit.c; this file only prepends RedisPrefix).
 *
 * Decisions:
 * - Rates become integer "units" here (gcd-reduced, checked below 2^53,
 *   STORE_REDIS_UNITS_MAX), so the script's arithmetic is exact.
 * - hiredis 0.14: the connect timeout does not cover commands, so every
 *   new context gets redisSetTimeout; a context with c->err is freed,
 *   never reused. A pooled context that finds the server gone (EOF,
 *   reset) is retried once on a fresh one: that is Redis having closed
 *   an idle connection (restart, client timeout) before our command.
 *   A timeout is never retried, as Redis may still run the command.
 * - The connection may also have died after Redis ran the script (the
 *   reply was lost), so the retry may be a replay: every charge and
 *   refund carries an id no other call has (a random per-store nonce and
 *   a counter) in its "once" key, under the hash tag of its first key,
 *   and the script answers a replay from that key without touching a
 *   bucket (store_redis_script.c). The id travels inside the one
 *   EVALSHA: no round trip more.
 * - After a failure, one call at a time probes Redis when the back-off
 *   ends; the others keep failing fast until the probe answers.
 * - The process must ignore SIGPIPE (libmilter's smfi_main does): a
 *   write to a connection Redis closed must fail, not kill us.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
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

#include "log.h"
#include "store.h"
#include "store_redis.h"

/* Idle connections kept; more are closed when returned. */
#define REDIS_POOL_IDLE_MAX 64
/* Used when RedisTimeout is not positive. */
#define REDIS_DEFAULT_TIMEOUT_MS 200
/* Integers a Lua double holds exactly; every bucket value stays below. */
#define STORE_REDIS_UNITS_MAX (1ULL << 53)
/* Longest RedisPrefix; keys must stay readable and bounded. */
#define REDIS_PREFIX_MAX 128
/* How much of a Redis error reply goes into a reason. */
#define REDIS_ERROR_SHOWN 100
/*
 * How long a once key outlives its call: a call's retry reaches Redis
 * within about four RedisTimeouts of its first attempt (reply, connect,
 * AUTH/SCRIPT LOAD, EVALSHA), plus this margin for a loaded server.
 */
#define REDIS_ONCE_MARGIN_MS 10000

struct redis_store {
	struct store_redis_url url;	/* holds the password: wiped on close */
	char where[STORE_REDIS_HOST_MAX + 16];	/* "host:port" or path, for messages */
	char prefix[REDIS_PREFIX_MAX + 1];
	struct timeval timeout;
	char sha[2 * SHA_DIGEST_LENGTH + 1];
	char nonce[17];			/* 64 random bits, hex: this store's ids */
	_Atomic unsigned long long seq;	/* calls that carried an id */
	long once_ttl_ms;		/* life of a once key */

	pthread_mutex_t lock;		/* guards everything below */
	redisContext *idle[REDIS_POOL_IDLE_MAX];
	size_t nidle;
	long backoff_ms;		/* 0 = healthy */
	long long retry_at_ms;		/* monotonic; Redis is not tried before */
	bool probing;			/* one call is trying Redis after a back-off */
	unsigned long long calls, failures;
};

/* ---- connections and back-off ---- */

static long long redis_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first word of an error reply ("WRONGPASS", "NOAUTH"): safe to show. */
static void redis_error_word(const redisReply *r, char *buf, size_t size)
{
	size_t n = r->str ? strcspn(r->str, " ") : 0;

	if (n >= size)
		n = size - 1;
	memcpy(buf, r->str ? r->str : "", n);
	buf[n] = '\0';
}

/*
 * A new connection, ready for the script: timeout set, AUTH and SELECT
 * done, the script loaded. All in one round trip after the connect.
 */
static redisContext *redis_connect(struct redis_store *rs, char *err, size_t errlen)
{
	redisContext *c = rs->url.unix_socket
		? redisConnectUnixWithTimeout(rs->url.path, rs->timeout)
		: redisConnectWithTimeout(rs->url.host, rs->url.port, rs->timeout);
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", rs->where);
		return NULL;
	}
	if (c->err || redisSetTimeout(c, rs->timeout) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: connect: %s", rs->where,
			 c->err ? c->errstr : "cannot set timeout");
		redisFree(c);
		return NULL;
	}

	int sent = 0;
	if (rs->url.password[0] != '\0') {
		const char *argv[3] = { "AUTH" };
		int argc = 1;
		if (rs->url.user[0] != '\0')
			argv[argc++] = rs->url.user;
		argv[argc++] = rs->url.password;
		redisAppendCommandArgv(c, argc, argv, NULL);
		sent++;
	}
	if (rs->url.db != 0) {
		redisAppendCommand(c, "SELECT %d", rs->url.db);
		sent++;
	}
	redisAppendCommand(c, "SCRIPT LOAD %s", store_redis_script);
	sent++;

	bool auth = rs->url.password[0] != '\0';
	for (int i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			snprintf(err, errlen, "redis %s: %s", rs->where, c->errstr);
			redisFree(c);
			return NULL;
		}
		bool is_auth = auth && i == 0, last = i == sent - 1;
		const char *failed = NULL;
		char word[32] = "";
		if (r->type == REDIS_REPLY_ERROR) {
			redis_error_word(r, word, sizeof(word));
			failed = is_auth ? "authentication refused" : last ? "SCRIPT LOAD failed" : "SELECT failed";
		} else if (last && (r->type != REDIS_REPLY_STRING || strcmp(r->str, rs->sha) != 0)) {
			failed = "SCRIPT LOAD returned an unexpected digest";
		}
		freeReplyObject(r);
		if (failed != NULL) {
			/* Only the error's first word: some servers echo arguments. */
			snprintf(err, errlen, "redis %s: %s%s%s%s", rs->where, failed,
				 word[0] ? " (" : "", word, word[0] ? ")" : "");
			redisFree(c);
			return NULL;
		}
	}
	return c;
}

enum redis_gate { REDIS_GO, REDIS_PROBE, REDIS_SKIP };

/* Whether to try Redis now; hands out an idle connection when there is one. */
static enum redis_gate redis_enter(struct redis_store *rs, redisContext **c)
{
	long long now = redis_mono_ms();
	enum redis_gate g = REDIS_GO;

	*c = NULL;
	pthread_mutex_lock(&rs->lock);
	rs->calls++;
	if (rs->backoff_ms > 0) {
		if (now < rs->retry_at_ms || rs->probing) {
			rs->failures++;
			pthread_mutex_unlock(&rs->lock);
			return REDIS_SKIP;
		}
		rs->probing = true;
		g = REDIS_PROBE;
	}
	if (rs->nidle > 0)
		*c = rs->idle[--rs->nidle];
	pthread_mutex_unlock(&rs->lock);
	return g;
}

static void redis_leave_ok(struct redis_store *rs, redisContext *c)
{
	long was = 0;
	unsigned long long failures = 0;

	pthread_mutex_lock(&rs->lock);
	if (rs->backoff_ms > 0) {
		was = rs->backoff_ms;
		failures = rs->failures;
	}
	rs->backoff_ms = 0;
	rs->probing = false;
	if (c != NULL && rs->nidle < REDIS_POOL_IDLE_MAX) {
		rs->idle[rs->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rs->lock);
	if (c != NULL)
		redisFree(c);
	if (was)
		log_info("redis %s: available again (%llu failed calls so far)", rs->where, failures);
}

/* Closes every idle connection. */
static void redis_drain(struct redis_store *rs)
{
	redisContext *drop[REDIS_POOL_IDLE_MAX];
	size_t ndrop = 0;

	pthread_mutex_lock(&rs->lock);
	while (rs->nidle > 0)
		drop[ndrop++] = rs->idle[--rs->nidle];
	pthread_mutex_unlock(&rs->lock);
	for (size_t i = 0; i < ndrop; i++)
		redisFree(drop[i]);
}

/*
 * A failed call. dead: the connection failed, so the idle ones are
 * probably dead too (Redis restarted): drop them all. c (may be NULL)
 * is returned to the pool when it is still good.
 */
static void redis_leave_failed(struct redis_store *rs, enum redis_gate g, redisContext *c,
	bool dead, const char *why)
{
	bool first;
	long wait;

	if (dead)
		redis_drain(rs);
	pthread_mutex_lock(&rs->lock);
	rs->failures++;
	first = rs->backoff_ms == 0;
	if (first)
		rs->backoff_ms = STORE_BACKOFF_MIN_MS;
	else if (g == REDIS_PROBE)
		rs->backoff_ms = rs->backoff_ms * 2 > STORE_BACKOFF_MAX_MS
			? STORE_BACKOFF_MAX_MS : rs->backoff_ms * 2;
	wait = rs->backoff_ms;
	rs->retry_at_ms = redis_mono_ms() + wait;
	if (g == REDIS_PROBE)
		rs->probing = false;
	if (!dead && c != NULL && rs->nidle < REDIS_POOL_IDLE_MAX) {
		rs->idle[rs->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rs->lock);
	if (c != NULL)
		redisFree(c);
	if (first)
		log_warning("%s; not trying Redis for %ld ms", why, wait);
	else
		log_debug("%s; not trying Redis for %ld ms", why, wait);
}

/* ---- commands ---- */

/*
 * An argument vector whose strings live in one growing arena. While it
 * is built, argv holds offsets; redis_cmd_finish turns them into pointers.
 */
struct redis_cmd {
	int argc, cap;
	const char **argv;
	size_t *argvlen;
	size_t *off;
	char *arena;
	size_t used, size;
	bool nomem;
};

static void redis_cmd_init(struct redis_cmd *c, int cap)
{
	memset(c, 0, sizeof(*c));
	c->cap = cap;
	c->argv = calloc((size_t)cap, sizeof(*c->argv));
	c->argvlen = calloc((size_t)cap, sizeof(*c->argvlen));
	c->off = calloc((size_t)cap, sizeof(*c->off));
	c->size = 1024;
	c->arena = malloc(c->size);
	c->nomem = !c->argv || !c->argvlen || !c->off || !c->arena;
}

static void redis_cmd_free(struct redis_cmd *c)
{
	free(c->argv);
	free(c->argvlen);
	free(c->off);
	free(c->arena);
}

/* Appends one argument made of a then b. */
static void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen, const char *b, size_t blen)
{
	if (c->nomem || c->argc >= c->cap) {
		c->nomem = true;
		return;
	}
	if (c->used + alen + blen > c->size) {
		size_t size = 2 * (c->used + alen + blen);
		char *p = realloc(c->arena, size);
		if (p == NULL) {
			c->nomem = true;
			return;
		}
		c->arena = p;
		c->size = size;
	}
	memcpy(c->arena + c->used, a, alen);
	memcpy(c->arena + c->used + alen, b, blen);
	c->off[c->argc] = c->used;
	c->argvlen[c->argc++] = alen + blen;
	c->used += alen + blen;
}

static void redis_cmd_str(struct redis_cmd *c, const char *s)
{
	redis_cmd_put(c, s, strlen(s), "", 0);
}

static void redis_cmd_num(struct redis_cmd *c, unsigned long long v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%llu", v);

	redis_cmd_put(c, buf, (size_t)n, "", 0);
}

static void redis_cmd_finish(struct redis_cmd *c)
{
	for (int i = 0; i < c->argc; i++)
		c->argv[i] = c->arena + c->off[i];
}

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
	if (b->count == 0 || b->period_ms == 0) {
		snprintf(err, errlen, "store: bucket %s has an empty rate", b->key);
		return -1;
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
	char *full, id[64];
	size_t plen = strlen(rs->prefix), cut;

	if ((full = malloc(plen + strlen(first) + 1)) == NULL) {
		c->nomem = true;
		return;
	}
	strcpy(full, rs->prefix);
	strcat(full, first);
	cut = strlen(full);
	const char *open = strchr(full, '{'), *close = open ? strchr(open + 1, '}') : NULL;
	if (close != NULL && close > open + 1)
		cut = (size_t)(close + 1 - full);
	int n = snprintf(id, sizeof(id), ":once:%s.%llx", rs->nonce,
			 atomic_fetch_add(&rs->seq, 1));
	redis_cmd_put(c, full, cut, id, (size_t)n);
	free(full);
}

/* EVALSHA of the script for one op; charge and refund carry a once key. */
static int redis_cmd_script(struct redis_cmd *c, struct redis_store *rs, const char *op,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	long long offset, char *err, size_t errlen)
{
	size_t plen = strlen(rs->prefix);
	bool once = strcmp(op, "peek") != 0 && nb + nw > 0;

	redis_cmd_init(c, (int)(9 + 5 * nb + 3 * nw));
	redis_cmd_str(c, "EVALSHA");
	redis_cmd_str(c, rs->sha);
	redis_cmd_num(c, nb + nw + once);
	for (size_t i = 0; i < nb; i++)
		redis_cmd_put(c, rs->prefix, plen, b[i].key, strlen(b[i].key));
	for (size_t i = 0; i < nw; i++)
		redis_cmd_put(c, rs->prefix, plen, w[i].key, strlen(w[i].key));
	if (once)
		redis_cmd_once(c, rs, nb > 0 ? b[0].key : w[0].key);
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

/* Sends n commands in one pipeline and reads n replies; -1 on a dead context. */
static int redis_exchange(redisContext *c, struct redis_cmd **cmds, size_t n, redisReply **replies,
	int *saved_errno)
{
	size_t got = 0;

	for (size_t i = 0; i < n; i++)
		if (redisAppendCommandArgv(c, cmds[i]->argc, cmds[i]->argv, cmds[i]->argvlen) != REDIS_OK)
			goto failed;
	for (; got < n; got++)
		if (redisGetReply(c, (void **)&replies[got]) != REDIS_OK)
			goto failed;
	return 0;
failed:
	*saved_errno = errno;
	for (size_t i = 0; i < got; i++) {
		freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
	return -1;
}

static bool redis_is_noscript(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/*
 * Runs n commands in one round trip (two when Redis lost the script).
 * On STORE_OK every reply is a non-error reply the caller frees.
 */
static enum store_status redis_run(struct redis_store *rs, struct redis_cmd **cmds, size_t n,
	redisReply **replies, char *err, size_t errlen)
{
	redisContext *c;
	enum redis_gate g = redis_enter(rs, &c);
	int e = 0;

	if (g == REDIS_SKIP) {
		snprintf(err, errlen, "redis unavailable (backoff)");
		return STORE_FAILED;
	}
	bool pooled = c != NULL;
	for (int attempt = 0;; attempt++) {
		if (c == NULL && (c = redis_connect(rs, err, errlen)) == NULL) {
			redis_leave_failed(rs, g, NULL, true, err);
			return STORE_FAILED;
		}
		if (redis_exchange(c, cmds, n, replies, &e) == 0)
			break;
		bool gone = c->err == REDIS_ERR_EOF
			|| (c->err == REDIS_ERR_IO && (e == ECONNRESET || e == EPIPE));
		snprintf(err, errlen, "redis %s: %s", rs->where, c->errstr);
		redisFree(c);
		c = NULL;
		if (!(gone && pooled && attempt == 0)) {
			redis_leave_failed(rs, g, NULL, true, err);
			return STORE_FAILED;
		}
		/* Redis restarted: the other idle connections are dead as well. */
		redis_drain(rs);
	}

	/* The server lost the script (restart, SCRIPT FLUSH): send its body. */
	struct redis_cmd *again[n];
	size_t where[n], nagain = 0;
	for (size_t i = 0; i < n; i++)
		if (redis_is_noscript(replies[i])) {
			cmds[i]->argv[0] = "EVAL";
			cmds[i]->argvlen[0] = 4;
			cmds[i]->argv[1] = store_redis_script;
			cmds[i]->argvlen[1] = store_redis_script_len;
			freeReplyObject(replies[i]);
			replies[i] = NULL;
			where[nagain] = i;
			again[nagain++] = cmds[i];
		}
	if (nagain > 0) {
		redisReply *fresh[nagain];
		if (redis_exchange(c, again, nagain, fresh, &e) < 0) {
			snprintf(err, errlen, "redis %s: %s", rs->where, c->errstr);
			for (size_t i = 0; i < n; i++)
				if (replies[i] != NULL)
					freeReplyObject(replies[i]);
			redisFree(c);
			redis_leave_failed(rs, g, NULL, true, err);
			return STORE_FAILED;
		}
		for (size_t i = 0; i < nagain; i++)
			replies[where[i]] = fresh[i];
	}

	for (size_t i = 0; i < n; i++)
		if (replies[i]->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s: %.*s", rs->where, REDIS_ERROR_SHOWN,
				 replies[i]->str);
			for (size_t j = 0; j < n; j++)
				freeReplyObject(replies[j]);
			redis_leave_failed(rs, g, c, false, err);
			return STORE_FAILED;
		}
	redis_leave_ok(rs, c);
	return STORE_OK;
}

/* A reply that is not what the script returns: Redis answered, we cannot use it. */
static enum store_status redis_bad_reply(struct redis_store *rs, redisReply *r, char *err, size_t errlen)
{
	pthread_mutex_lock(&rs->lock);
	rs->failures++;
	pthread_mutex_unlock(&rs->lock);
	snprintf(err, errlen, "redis %s: unexpected reply to the rate-limit script", rs->where);
	freeReplyObject(r);
	return STORE_FAILED;
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

static enum store_status redis_charge(void *impl, long long offset, const struct store_bucket *b,
	size_t nb, const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen)
{
	struct redis_store *rs = impl;
	struct redis_cmd cmd, *cmds[1] = { &cmd };
	redisReply *r;

	if (redis_cmd_script(&cmd, rs, "charge", b, nb, w, nw, offset, err, errlen) < 0)
		return STORE_FAILED;
	enum store_status status = redis_run(rs, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (!redis_integers(r, 4 + nw))
		return redis_bad_reply(rs, r, err, errlen);
	long long over = r->element[1]->integer;
	if (over < 0 || (size_t)over > nb)
		return redis_bad_reply(rs, r, err, errlen);
	res->admitted = r->element[0]->integer == 1;
	res->over = over > 0 ? (size_t)over - 1 : 0;
	res->retry_ms = (long)r->element[2]->integer;
	res->now_ms = r->element[3]->integer;
	for (size_t i = 0; i < nw; i++)
		res->volume[i] = (unsigned long)r->element[4 + i]->integer;
	freeReplyObject(r);
	return STORE_OK;
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
				     bt->nw, offset, err, errlen) < 0)
			goto out;
		cmds[built] = &cmd[built];
	}
	status = redis_run(rs, cmds, n, replies, err, errlen);
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

	if (redis_cmd_script(&cmd, rs, "peek", b, nb, NULL, 0, offset, err, errlen) < 0)
		return STORE_FAILED;
	enum store_status status = redis_run(rs, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (!redis_integers(r, 2 * nb + 1))
		return redis_bad_reply(rs, r, err, errlen);
	*now_ms = r->element[2 * nb]->integer;
	for (size_t i = 0; i < nb; i++) {
		struct redis_units u;
		if (redis_units(&b[i], false, &u, err, errlen) < 0) {
			freeReplyObject(r);
			return STORE_FAILED;
		}
		out[i].used = (double)r->element[2 * i]->integer / (double)u.tu;
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
	enum store_status status = redis_run(rs, cmds, 1, &r, err, errlen);
	redis_cmd_free(&cmd);
	if (status != STORE_OK)
		return status;
	if (r->type != REDIS_REPLY_INTEGER)
		return redis_bad_reply(rs, r, err, errlen);
	if (deleted)
		*deleted = (long)r->integer;
	freeReplyObject(r);
	return STORE_OK;
}

static void redis_stats(void *impl, struct store_stats *out)
{
	struct redis_store *rs = impl;

	pthread_mutex_lock(&rs->lock);
	out->calls = rs->calls;
	out->failures = rs->failures;
	out->backing_off = rs->backoff_ms > 0;
	pthread_mutex_unlock(&rs->lock);
}

static void redis_close(void *impl)
{
	struct redis_store *rs = impl;

	for (size_t i = 0; i < rs->nidle; i++)
		redisFree(rs->idle[i]);
	pthread_mutex_destroy(&rs->lock);
	explicit_bzero(&rs->url, sizeof(rs->url));
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
	char err[256];

	struct redis_store *rs = calloc(1, sizeof(*rs));
	if (rs == NULL) {
		diag_add(errs, file, 0, "Redis: out of memory");
		return NULL;
	}
	if (store_redis_parse_url(url, &rs->url, err, sizeof(err)) < 0) {
		diag_add(errs, file, 0, "Redis: %s", err);
		free(rs);
		return NULL;
	}
	if (s->redis_password_file != NULL) {
		if (rs->url.password[0] != '\0') {
			diag_add(errs, file, 0,
				 "Redis: password both in the URL and in RedisPasswordFile; keep one");
			goto failed;
		}
		if (store_redis_read_password(s->redis_password_file, rs->url.password,
					sizeof(rs->url.password), err, sizeof(err)) < 0) {
			diag_add(errs, file, 0, "%s", err);
			goto failed;
		}
	}
	if (strlen(prefix) > REDIS_PREFIX_MAX) {
		diag_add(errs, file, 0, "RedisPrefix: longer than %d characters", REDIS_PREFIX_MAX);
		goto failed;
	}
	strcpy(rs->prefix, prefix);
	if (rs->url.unix_socket)
		snprintf(rs->where, sizeof(rs->where), "%s", rs->url.path);
	else
		snprintf(rs->where, sizeof(rs->where), strchr(rs->url.host, ':') ? "[%s]:%d" : "%s:%d",
			 rs->url.host, rs->url.port);
	long ms = s->redis_timeout_ms > 0 ? s->redis_timeout_ms : REDIS_DEFAULT_TIMEOUT_MS;
	rs->timeout.tv_sec = ms / 1000;
	rs->timeout.tv_usec = (ms % 1000) * 1000;
	rs->once_ttl_ms = 4 * ms + REDIS_ONCE_MARGIN_MS;
	redis_nonce(rs->nonce, sizeof(rs->nonce));
	atomic_init(&rs->seq, 0);

	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)store_redis_script, store_redis_script_len, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(rs->sha + 2 * i, 3, "%02x", md[i]);
	pthread_mutex_init(&rs->lock, NULL);
	return rs;

failed:
	explicit_bzero(&rs->url, sizeof(rs->url));
	free(rs);
	return NULL;
}

const struct store_ops store_redis_ops = {
	.name = "redis",
	.open = redis_open,
	.close = redis_close,
	.charge = redis_charge,
	.refund = redis_refund,
	.peek = redis_peek,
	.forget = redis_forget,
	.stats = redis_stats,
};
