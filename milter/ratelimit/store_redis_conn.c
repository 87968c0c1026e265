/*
 * store_redis_conn - carries the Redis backend's commands: a pool of
 * hiredis connections, the back-off after failures, pipelined exchanges.
 *
 * What it does: keeps a small mutex-protected stack of idle connections
 * (libmilter runs one connection's callbacks on any worker thread, so a
 * Redis connection is borrowed per call, never bound to a thread), runs
 * a pipeline of commands on one, sends EVAL with the body where EVALSHA
 * met NOSCRIPT (after a Redis restart or SCRIPT FLUSH), and backs off
 * after a failure so a dead Redis does not cost a timeout per message.
 * What it does not: build the script calls or read their replies
 * (store_redis.c), or decide what a failure means for the mail (the
 * caller's OnStoreFailure).
 *
 * Decisions:
 * - hiredis 0.14: the connect timeout does not cover commands, so every
 *   new context gets redisSetTimeout; a context with c->err is freed,
 *   never reused. A pooled context that finds the server gone (EOF,
 *   reset) is retried once on a fresh one: that is Redis having closed
 *   an idle connection (restart, client timeout) before our command.
 *   A timeout is never retried, as Redis may still run the command.
 *   The retry may still be a replay (the reply was lost after Redis ran
 *   the script): the script's once keys make that harmless
 *   (store_redis.c).
 * - After a failure, one call at a time probes Redis when the back-off
 *   ends; the others keep failing fast until the probe answers.
 * - The process must ignore SIGPIPE (libmilter's smfi_main does): a
 *   write to a connection Redis closed must fail, not kill us.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "store.h"
#include "store_redis.h"
#include "store_redis_conn.h"

/* Idle connections kept; more are closed when returned. */
#define REDIS_POOL_IDLE_MAX 64
/* How much of a Redis error reply goes into a reason. */
#define REDIS_ERROR_SHOWN 100
/* Hex digits of a SHA-1 digest, and its NUL. */
#define REDIS_SHA_SIZE 41

struct redis_conn {
	struct store_redis_url url;	/* holds the password: wiped on close */
	char where[STORE_REDIS_HOST_MAX + 16];	/* "host:port" or path, for messages */
	struct timeval timeout;
	char sha[REDIS_SHA_SIZE];

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
static redisContext *redis_connect(struct redis_conn *rc, char *err, size_t errlen)
{
	redisContext *c = rc->url.unix_socket
		? redisConnectUnixWithTimeout(rc->url.path, rc->timeout)
		: redisConnectWithTimeout(rc->url.host, rc->url.port, rc->timeout);
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", rc->where);
		return NULL;
	}
	if (c->err || redisSetTimeout(c, rc->timeout) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: connect: %s", rc->where,
			 c->err ? c->errstr : "cannot set timeout");
		redisFree(c);
		return NULL;
	}

	int sent = 0;
	if (rc->url.password[0] != '\0') {
		const char *argv[3] = { "AUTH" };
		int argc = 1;
		if (rc->url.user[0] != '\0')
			argv[argc++] = rc->url.user;
		argv[argc++] = rc->url.password;
		redisAppendCommandArgv(c, argc, argv, NULL);
		sent++;
	}
	if (rc->url.db != 0) {
		redisAppendCommand(c, "SELECT %d", rc->url.db);
		sent++;
	}
	redisAppendCommand(c, "SCRIPT LOAD %s", store_redis_script);
	sent++;

	bool auth = rc->url.password[0] != '\0';
	for (int i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			snprintf(err, errlen, "redis %s: %s", rc->where, c->errstr);
			redisFree(c);
			return NULL;
		}
		bool is_auth = auth && i == 0, last = i == sent - 1;
		const char *failed = NULL;
		char word[32] = "";
		if (r->type == REDIS_REPLY_ERROR) {
			redis_error_word(r, word, sizeof(word));
			failed = is_auth ? "authentication refused" : last ? "SCRIPT LOAD failed" : "SELECT failed";
		} else if (last && (r->type != REDIS_REPLY_STRING || strcmp(r->str, rc->sha) != 0)) {
			failed = "SCRIPT LOAD returned an unexpected digest";
		}
		freeReplyObject(r);
		if (failed != NULL) {
			/* Only the error's first word: some servers echo arguments. */
			snprintf(err, errlen, "redis %s: %s%s%s%s", rc->where, failed,
				 word[0] ? " (" : "", word, word[0] ? ")" : "");
			redisFree(c);
			return NULL;
		}
	}
	return c;
}

enum redis_gate { REDIS_GO, REDIS_PROBE, REDIS_SKIP };

/* Whether to try Redis now; hands out an idle connection when there is one. */
static enum redis_gate redis_enter(struct redis_conn *rc, redisContext **c)
{
	long long now = redis_mono_ms();
	enum redis_gate g = REDIS_GO;

	*c = NULL;
	pthread_mutex_lock(&rc->lock);
	rc->calls++;
	if (rc->backoff_ms > 0) {
		if (now < rc->retry_at_ms || rc->probing) {
			rc->failures++;
			pthread_mutex_unlock(&rc->lock);
			return REDIS_SKIP;
		}
		rc->probing = true;
		g = REDIS_PROBE;
	}
	if (rc->nidle > 0)
		*c = rc->idle[--rc->nidle];
	pthread_mutex_unlock(&rc->lock);
	return g;
}

static void redis_leave_ok(struct redis_conn *rc, redisContext *c)
{
	long was = 0;
	unsigned long long failures = 0;

	pthread_mutex_lock(&rc->lock);
	if (rc->backoff_ms > 0) {
		was = rc->backoff_ms;
		failures = rc->failures;
	}
	rc->backoff_ms = 0;
	rc->probing = false;
	if (c != NULL && rc->nidle < REDIS_POOL_IDLE_MAX) {
		rc->idle[rc->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rc->lock);
	if (c != NULL)
		redisFree(c);
	if (was)
		log_info("redis %s: available again (%llu failed calls so far)", rc->where, failures);
}

/* Closes every idle connection. */
static void redis_drain(struct redis_conn *rc)
{
	redisContext *drop[REDIS_POOL_IDLE_MAX];
	size_t ndrop = 0;

	pthread_mutex_lock(&rc->lock);
	while (rc->nidle > 0)
		drop[ndrop++] = rc->idle[--rc->nidle];
	pthread_mutex_unlock(&rc->lock);
	for (size_t i = 0; i < ndrop; i++)
		redisFree(drop[i]);
}

/*
 * A failed call. dead: the connection failed, so the idle ones are
 * probably dead too (Redis restarted): drop them all. c (may be NULL)
 * is returned to the pool when it is still good.
 */
static void redis_leave_failed(struct redis_conn *rc, enum redis_gate g, redisContext *c,
	bool dead, const char *why)
{
	bool first;
	long wait;

	if (dead)
		redis_drain(rc);
	pthread_mutex_lock(&rc->lock);
	rc->failures++;
	first = rc->backoff_ms == 0;
	if (first)
		rc->backoff_ms = STORE_BACKOFF_MIN_MS;
	else if (g == REDIS_PROBE)
		rc->backoff_ms = rc->backoff_ms * 2 > STORE_BACKOFF_MAX_MS
			? STORE_BACKOFF_MAX_MS : rc->backoff_ms * 2;
	wait = rc->backoff_ms;
	rc->retry_at_ms = redis_mono_ms() + wait;
	if (g == REDIS_PROBE)
		rc->probing = false;
	if (!dead && c != NULL && rc->nidle < REDIS_POOL_IDLE_MAX) {
		rc->idle[rc->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rc->lock);
	if (c != NULL)
		redisFree(c);
	if (first)
		log_warning("%s; not trying Redis for %ld ms", why, wait);
	else
		log_debug("%s; not trying Redis for %ld ms", why, wait);
}

/* ---- commands ---- */

/* Commands are built by the caller (store_redis_conn.h has the struct). */


void redis_cmd_init(struct redis_cmd *c, int cap)
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

void redis_cmd_free(struct redis_cmd *c)
{
	free(c->argv);
	free(c->argvlen);
	free(c->off);
	free(c->arena);
}

/* Appends one argument made of a then b. */
void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen, const char *b, size_t blen)
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

void redis_cmd_str(struct redis_cmd *c, const char *s)
{
	redis_cmd_put(c, s, strlen(s), "", 0);
}

void redis_cmd_num(struct redis_cmd *c, unsigned long long v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%llu", v);

	redis_cmd_put(c, buf, (size_t)n, "", 0);
}

void redis_cmd_finish(struct redis_cmd *c)
{
	for (int i = 0; i < c->argc; i++)
		c->argv[i] = c->arena + c->off[i];
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
enum store_status redis_conn_run(struct redis_conn *rc, struct redis_cmd **cmds, size_t n,
	redisReply **replies, char *err, size_t errlen)
{
	redisContext *c;
	enum redis_gate g = redis_enter(rc, &c);
	int e = 0;

	if (g == REDIS_SKIP) {
		snprintf(err, errlen, "redis unavailable (backoff)");
		return STORE_FAILED;
	}
	bool pooled = c != NULL;
	for (int attempt = 0;; attempt++) {
		if (c == NULL && (c = redis_connect(rc, err, errlen)) == NULL) {
			redis_leave_failed(rc, g, NULL, true, err);
			return STORE_FAILED;
		}
		if (redis_exchange(c, cmds, n, replies, &e) == 0)
			break;
		bool gone = c->err == REDIS_ERR_EOF
			|| (c->err == REDIS_ERR_IO && (e == ECONNRESET || e == EPIPE));
		snprintf(err, errlen, "redis %s: %s", rc->where, c->errstr);
		redisFree(c);
		c = NULL;
		if (!(gone && pooled && attempt == 0)) {
			redis_leave_failed(rc, g, NULL, true, err);
			return STORE_FAILED;
		}
		/* Redis restarted: the other idle connections are dead as well. */
		redis_drain(rc);
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
			snprintf(err, errlen, "redis %s: %s", rc->where, c->errstr);
			for (size_t i = 0; i < n; i++)
				if (replies[i] != NULL)
					freeReplyObject(replies[i]);
			redisFree(c);
			redis_leave_failed(rc, g, NULL, true, err);
			return STORE_FAILED;
		}
		for (size_t i = 0; i < nagain; i++)
			replies[where[i]] = fresh[i];
	}

	for (size_t i = 0; i < n; i++)
		if (replies[i]->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s: %.*s", rc->where, REDIS_ERROR_SHOWN,
				 replies[i]->str);
			for (size_t j = 0; j < n; j++)
				freeReplyObject(replies[j]);
			redis_leave_failed(rc, g, c, false, err);
			return STORE_FAILED;
		}
	redis_leave_ok(rc, c);
	return STORE_OK;
}

/* A reply that is not what the script returns: Redis answered, we cannot use it. */
enum store_status redis_conn_bad_reply(struct redis_conn *rc, redisReply *r, char *err,
	size_t errlen)
{
	pthread_mutex_lock(&rc->lock);
	rc->failures++;
	pthread_mutex_unlock(&rc->lock);
	snprintf(err, errlen, "redis %s: unexpected reply to the rate-limit script", rc->where);
	freeReplyObject(r);
	return STORE_FAILED;
}

void redis_conn_stats(struct redis_conn *rc, struct store_stats *out)
{
	pthread_mutex_lock(&rc->lock);
	out->calls = rc->calls;
	out->failures = rc->failures;
	out->backing_off = rc->backoff_ms > 0;
	pthread_mutex_unlock(&rc->lock);
}

struct redis_conn *redis_conn_open(const struct store_redis_url *url, long timeout_ms,
	const char *sha)
{
	struct redis_conn *rc = calloc(1, sizeof(*rc));

	if (rc == NULL)
		return NULL;
	rc->url = *url;
	if (rc->url.unix_socket)
		snprintf(rc->where, sizeof(rc->where), "%s", rc->url.path);
	else
		snprintf(rc->where, sizeof(rc->where), strchr(rc->url.host, ':') ? "[%s]:%d" : "%s:%d",
			 rc->url.host, rc->url.port);
	rc->timeout.tv_sec = timeout_ms / 1000;
	rc->timeout.tv_usec = (timeout_ms % 1000) * 1000;
	snprintf(rc->sha, sizeof(rc->sha), "%s", sha);
	pthread_mutex_init(&rc->lock, NULL);
	return rc;
}

void redis_conn_close(struct redis_conn *rc)
{
	if (rc == NULL)
		return;
	for (size_t i = 0; i < rc->nidle; i++)
		redisFree(rc->idle[i]);
	pthread_mutex_destroy(&rc->lock);
	explicit_bzero(&rc->url, sizeof(rc->url));
	free(rc);
}
