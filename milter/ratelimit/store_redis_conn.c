/*
 * store_redis_conn - carries the Redis backend's commands to one server,
 * a Sentinel-watched master, or the nodes of a Redis Cluster: pools of
 * hiredis connections, back-off after failures, pipelined exchanges,
 * and the topology (who is master, which node has which slot).
 *
 * What it does: keeps one node per server it talks to, each with a small
 * stack of idle connections (libmilter runs one connection's callbacks
 * on any worker thread, so a Redis connection is borrowed per call,
 * never bound to a thread) and its own back-off, so a dead Redis does
 * not cost a timeout per message, and in a Cluster one dead master does
 * not stop the accounts of the others. EVALSHA met with NOSCRIPT (after
 * a restart, a SCRIPT FLUSH, on a node new to us) is sent again as EVAL.
 * - sentinel://: the master is asked of the sentinels
 *   (store_redis_sentinel.c) and confirmed with ROLE on every new
 *   connection; a lost connection, a timeout, a -READONLY reply or a
 *   node in back-off make the next call ask again.
 * - cluster://: the slot map comes from CLUSTER SLOTS of any node that
 *   answers; each command goes to the owner of its key's slot
 *   (store_redis_cluster.c). MOVED updates the map (and asks for a new
 *   one), ASK goes once to the node named with ASKING first, TRYAGAIN
 *   and CLUSTERDOWN wait a little and try again, up to
 *   REDIS_CLUSTER_WAIT_MS, then fail like a dead server.
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
 *   A timeout is never retried on the same node, as Redis may still run
 *   the command. Every retry, redirections included, sends the same
 *   command with the same once key, so one that Redis already ran is
 *   answered from that key and charges nothing twice (store_redis.c).
 * - After a failure, one call at a time probes a node when its back-off
 *   ends; the others keep failing fast until the probe answers. Asking
 *   the sentinels or the cluster for the topology again is done by one
 *   call at a time, at most every REDIS_LOOKUP_INTERVAL_MS, so a master
 *   that is down costs the sentinels ten questions a second, not one
 *   per message.
 * - A call that finds no topology at all (start-up) waits, a few
 *   RedisTimeouts at most, for the call that is asking, rather than
 *   failing with "no master known".
 * - Nodes are never freed before the store: a cluster has a bounded
 *   number (REDIS_NODES_MAX), and a pointer handed to a call stays good.
 *   Every address ever seen takes one, so a Sentinel set whose masters
 *   change address more than REDIS_NODES_MAX times in one process's life
 *   fails ("too many masters seen") until a reload.
 * - The process must ignore SIGPIPE (libmilter's smfi_main does): a
 *   write to a connection Redis closed must fail, not kill us.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "store.h"
#include "store_redis.h"
#include "store_redis_conn.h"

/* Idle connections kept per node; more are closed when returned. */
#define REDIS_POOL_IDLE_MAX 64
/* Servers one store talks to (cluster masters, successive sentinel masters). */
#define REDIS_NODES_MAX 64
/* How much of a Redis error reply goes into a reason. */
#define REDIS_ERROR_SHOWN 100
/* Hex digits of a SHA-1 digest, and its NUL. */
#define REDIS_SHA_SIZE 41
/* Least time between two questions to the sentinels or the cluster. */
#define REDIS_LOOKUP_INTERVAL_MS 100
/* Redirections (MOVED, ASK) one command follows before it fails. */
#define REDIS_REDIRECTS_MAX 8
/* TRYAGAIN/CLUSTERDOWN: first wait, and the most a command waits in all. */
#define REDIS_CLUSTER_RETRY_MS 10
#define REDIS_CLUSTER_WAIT_MS 1000

enum redis_gate { REDIS_GO, REDIS_PROBE, REDIS_SKIP };

/* A server and its connections; the fields below addr are under rc->lock. */
struct redis_node {
	size_t index;			/* in rc->nodes */
	struct store_redis_seed addr;	/* host ""/port 0: the URL's unix socket */
	char where[STORE_REDIS_HOST_MAX + 16];	/* "host:port" or path, for messages */
	redisContext *idle[REDIS_POOL_IDLE_MAX];
	size_t nidle;
	long backoff_ms;		/* 0 = healthy */
	long long retry_at_ms;		/* monotonic; the node is not tried before */
	bool probing;			/* one call is trying it after a back-off */
};

struct redis_conn {
	struct store_redis_url url;	/* holds the passwords: wiped on close */
	struct timeval timeout;
	char sha[REDIS_SHA_SIZE];

	pthread_mutex_t lock;		/* guards everything below */
	struct redis_node *nodes[REDIS_NODES_MAX];
	size_t nnodes;
	struct redis_node *master;	/* standalone: nodes[0]; sentinel: NULL = not known */
	uint8_t owner[REDIS_CLUSTER_SLOTS];	/* cluster: 1 + index in nodes; 0 = not known */
	bool lookup_wanted;		/* the topology may have changed: ask again */
	bool looking;			/* one call is asking */
	pthread_cond_t looked;		/* signalled when it has its answer */
	long long lookup_after_ms;	/* monotonic; no question before */
	bool lookup_failing;		/* the last question had no answer (logged once) */
	size_t sentinel_first;		/* the sentinel that answered last */
	unsigned long long calls, failures;
};

static long long redis_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void redis_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static bool redis_error_is(const redisReply *r, const char *word)
{
	size_t n = strlen(word);

	return r->type == REDIS_REPLY_ERROR && r->str != NULL && strncmp(r->str, word, n) == 0
		&& (r->str[n] == ' ' || r->str[n] == '\0');
}

/* ---- nodes ---- */

/* The node of addr, added when new; NULL when the table is full. Called locked. */
static struct redis_node *redis_node_get(struct redis_conn *rc, const struct store_redis_seed *addr)
{
	for (size_t i = 0; i < rc->nnodes; i++)
		if (rc->nodes[i]->addr.port == addr->port && strcmp(rc->nodes[i]->addr.host, addr->host) == 0)
			return rc->nodes[i];
	if (rc->nnodes == REDIS_NODES_MAX)
		return NULL;
	struct redis_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->addr = *addr;
	n->index = rc->nnodes;
	if (addr->port == 0)
		snprintf(n->where, sizeof(n->where), "%s", rc->url.path);
	else
		snprintf(n->where, sizeof(n->where), strchr(addr->host, ':') ? "[%s]:%d" : "%s:%d",
			 addr->host, addr->port);
	rc->nodes[rc->nnodes++] = n;
	return n;
}

/* Whether to try the node now. */
static enum redis_gate redis_enter(struct redis_conn *rc, struct redis_node *node)
{
	long long now = redis_mono_ms();
	enum redis_gate g = REDIS_GO;

	pthread_mutex_lock(&rc->lock);
	if (node->backoff_ms > 0) {
		if (now < node->retry_at_ms || node->probing)
			g = REDIS_SKIP;
		else {
			node->probing = true;
			g = REDIS_PROBE;
		}
	}
	pthread_mutex_unlock(&rc->lock);
	return g;
}

static void redis_leave_ok(struct redis_conn *rc, struct redis_node *node)
{
	long was;

	pthread_mutex_lock(&rc->lock);
	was = node->backoff_ms;
	node->backoff_ms = 0;
	node->probing = false;
	pthread_mutex_unlock(&rc->lock);
	if (was)
		log_info("redis %s: available again", node->where);
}

/* A failed try of the node: its back-off starts or, after a failed probe, doubles. */
static void redis_leave_failed(struct redis_conn *rc, struct redis_node *node, enum redis_gate g,
	const char *why)
{
	bool first;
	long wait;

	pthread_mutex_lock(&rc->lock);
	first = node->backoff_ms == 0;
	if (first)
		node->backoff_ms = STORE_BACKOFF_MIN_MS;
	else if (g == REDIS_PROBE)
		node->backoff_ms = node->backoff_ms * 2 > STORE_BACKOFF_MAX_MS
			? STORE_BACKOFF_MAX_MS : node->backoff_ms * 2;
	wait = node->backoff_ms;
	node->retry_at_ms = redis_mono_ms() + wait;
	if (g == REDIS_PROBE)
		node->probing = false;
	pthread_mutex_unlock(&rc->lock);
	if (first)
		log_warning("%s; not trying Redis %s for %ld ms", why, node->where, wait);
	else
		log_debug("%s; not trying Redis %s for %ld ms", why, node->where, wait);
}

static redisContext *redis_pool_take(struct redis_conn *rc, struct redis_node *node)
{
	redisContext *c = NULL;

	pthread_mutex_lock(&rc->lock);
	if (node->nidle > 0)
		c = node->idle[--node->nidle];
	pthread_mutex_unlock(&rc->lock);
	return c;
}

static void redis_pool_put(struct redis_conn *rc, struct redis_node *node, redisContext *c)
{
	pthread_mutex_lock(&rc->lock);
	if (node->nidle < REDIS_POOL_IDLE_MAX) {
		node->idle[node->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&rc->lock);
	if (c != NULL)
		redisFree(c);
}

/* Closes every idle connection of the node. */
static void redis_drain(struct redis_conn *rc, struct redis_node *node)
{
	redisContext *drop[REDIS_POOL_IDLE_MAX];
	size_t ndrop = 0;

	pthread_mutex_lock(&rc->lock);
	while (node->nidle > 0)
		drop[ndrop++] = node->idle[--node->nidle];
	pthread_mutex_unlock(&rc->lock);
	for (size_t i = 0; i < ndrop; i++)
		redisFree(drop[i]);
}

/* ---- exchanges ---- */

static struct redis_cmd redis_asking = {
	.argc = 1, .argv = (const char *[]){ "ASKING" }, .argvlen = (size_t[]){ 6 },
};

/*
 * Sends n commands in one pipeline (each after ASKING when asking) and
 * reads their n replies; -1 on a dead context.
 */
static int redis_pipeline(redisContext *c, struct redis_cmd **cmds, size_t n, bool asking,
	redisReply **replies, int *saved_errno)
{
	size_t got = 0;

	for (size_t i = 0; i < n; i++) {
		if (asking && redis_cmd_append(c, &redis_asking) != REDIS_OK)
			goto failed;
		if (redis_cmd_append(c, cmds[i]) != REDIS_OK)
			goto failed;
	}
	for (; got < n; got++) {
		redisReply *ok;
		if (asking) {
			if (redisGetReply(c, (void **)&ok) != REDIS_OK)
				goto failed;
			freeReplyObject(ok);
		}
		if (redisGetReply(c, (void **)&replies[got]) != REDIS_OK)
			goto failed;
	}
	return 0;
failed:
	*saved_errno = errno;
	for (size_t i = 0; i < got; i++) {
		freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
	return -1;
}

/*
 * Runs n commands on the node in one round trip (two when it lacked the
 * script) and fills replies, error replies included. -1 (err set, the
 * node's idle connections closed) when the connection failed.
 */
static int redis_node_run(struct redis_conn *rc, struct redis_node *node, struct redis_cmd **cmds,
	size_t n, bool asking, redisReply **replies, char *err, size_t errlen)
{
	redisContext *c = redis_pool_take(rc, node);
	bool pooled = c != NULL;
	int e = 0;

	for (int attempt = 0;; attempt++) {
		if (c == NULL && (c = redis_connect(&rc->url, &node->addr, node->where, rc->timeout,
						  rc->sha, err, errlen)) == NULL) {
			redis_drain(rc, node);
			return -1;
		}
		if (redis_pipeline(c, cmds, n, asking, replies, &e) == 0)
			break;
		bool gone = c->err == REDIS_ERR_EOF
			|| (c->err == REDIS_ERR_IO && (e == ECONNRESET || e == EPIPE));
		snprintf(err, errlen, "redis %s: %s", node->where, c->errstr);
		redisFree(c);
		c = NULL;
		/* Redis restarted: the other idle connections are dead as well. */
		redis_drain(rc, node);
		if (!(gone && pooled && attempt == 0))
			return -1;
	}

	/* The server lost the script (restart, SCRIPT FLUSH): send its body. */
	struct redis_cmd *again[n];
	size_t where[n], nagain = 0;
	for (size_t i = 0; i < n; i++)
		if (redis_error_is(replies[i], "NOSCRIPT")) {
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
		if (redis_pipeline(c, again, nagain, asking, fresh, &e) < 0) {
			snprintf(err, errlen, "redis %s: %s", node->where, c->errstr);
			for (size_t i = 0; i < n; i++)
				if (replies[i] != NULL)
					freeReplyObject(replies[i]);
			redisFree(c);
			redis_drain(rc, node);
			return -1;
		}
		for (size_t i = 0; i < nagain; i++)
			replies[where[i]] = fresh[i];
	}
	redis_pool_put(rc, node, c);
	return 0;
}

static void redis_free_replies(redisReply **replies, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (replies[i] != NULL)
			freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
}

/* ---- topology ---- */

/*
 * The topology may have changed (a node failed, MOVED, -READONLY): ask
 * again soon. What is known stays in use meanwhile: a dead node fails
 * fast in its back-off.
 */
static void redis_lookup_wanted(struct redis_conn *rc)
{
	pthread_mutex_lock(&rc->lock);
	rc->lookup_wanted = true;
	pthread_mutex_unlock(&rc->lock);
}

/* Asks the sentinels for the master; 0 when one was named. */
static int redis_sentinel_lookup(struct redis_conn *rc, char *err, size_t errlen)
{
	struct store_redis_seed addr;
	size_t first;

	pthread_mutex_lock(&rc->lock);
	first = rc->sentinel_first;
	pthread_mutex_unlock(&rc->lock);
	if (redis_sentinel_master(&rc->url, rc->timeout, &first, &addr, err, errlen) < 0)
		return -1;
	pthread_mutex_lock(&rc->lock);
	rc->sentinel_first = first;
	struct redis_node *was = rc->master, *node = redis_node_get(rc, &addr);
	rc->master = node;
	pthread_mutex_unlock(&rc->lock);
	if (node == NULL) {
		snprintf(err, errlen, "redis sentinel %s: too many masters seen", rc->url.master);
		return -1;
	}
	if (node != was)
		log_info("redis sentinel %s: master is %s", rc->url.master, node->where);
	return 0;
}

/* One node's CLUSTER SLOTS into the map; 0 when it answered. */
static int redis_cluster_ask(struct redis_conn *rc, const struct store_redis_seed *at, char *err,
	size_t errlen)
{
	struct store_redis_seed masters[REDIS_NODES_MAX];
	uint8_t owner[REDIS_CLUSTER_SLOTS], index[REDIS_NODES_MAX + 1] = { 0 };
	size_t nmasters, moved = 0;

	if (redis_cluster_slots(&rc->url, rc->timeout, at, masters, REDIS_NODES_MAX, &nmasters,
				owner, err, errlen) < 0)
		return -1;
	pthread_mutex_lock(&rc->lock);
	for (size_t i = 0; i < nmasters; i++) {
		struct redis_node *node = redis_node_get(rc, &masters[i]);
		index[i + 1] = node ? (uint8_t)(node->index + 1) : 0;
	}
	for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
		moved += rc->owner[s] != index[owner[s]];
		rc->owner[s] = index[owner[s]];
	}
	pthread_mutex_unlock(&rc->lock);
	if (moved > 0)
		log_info("redis cluster: slot map from %s:%d, %zu masters, %zu slots changed owner",
			 at->host, at->port, nmasters, moved);
	return 0;
}

/* Asks the known masters, then the URL's nodes, for the slot map. */
static int redis_cluster_lookup(struct redis_conn *rc, char *err, size_t errlen)
{
	struct store_redis_seed ask[REDIS_NODES_MAX + STORE_REDIS_SEEDS_MAX];
	size_t nask = 0;

	pthread_mutex_lock(&rc->lock);
	for (size_t i = 0; i < rc->nnodes; i++)
		if (rc->nodes[i]->backoff_ms == 0)
			ask[nask++] = rc->nodes[i]->addr;
	pthread_mutex_unlock(&rc->lock);
	for (size_t i = 0; i < rc->url.nseeds; i++)
		ask[nask++] = rc->url.seeds[i];
	for (size_t i = 0; i < nask; i++)
		if (redis_cluster_ask(rc, &ask[i], err, errlen) == 0)
			return 0;
	return -1;
}

/*
 * Asks for the topology when it is wanted (or not known at all) and it
 * is this call's turn; others go on with what is known.
 */
static void redis_lookup(struct redis_conn *rc, bool unknown)
{
	long long now = redis_mono_ms();
	char err[256];

	pthread_mutex_lock(&rc->lock);
	bool go = (rc->lookup_wanted || unknown) && !rc->looking && now >= rc->lookup_after_ms;
	if (go)
		rc->looking = true;
	pthread_mutex_unlock(&rc->lock);
	if (!go)
		return;
	int rv = rc->url.topology == STORE_REDIS_SENTINEL
		? redis_sentinel_lookup(rc, err, sizeof(err))
		: redis_cluster_lookup(rc, err, sizeof(err));
	pthread_mutex_lock(&rc->lock);
	bool was_failing = rc->lookup_failing;
	rc->looking = false;
	pthread_cond_broadcast(&rc->looked);
	rc->lookup_after_ms = redis_mono_ms() + REDIS_LOOKUP_INTERVAL_MS;
	rc->lookup_failing = rv < 0;
	if (rv == 0)
		rc->lookup_wanted = false;
	pthread_mutex_unlock(&rc->lock);
	if (rv < 0 && !was_failing)
		log_warning("%s", err);
	else if (rv < 0)
		log_debug("%s", err);
	else if (was_failing)
		log_info("redis %s: topology known again",
			 rc->url.topology == STORE_REDIS_SENTINEL ? "sentinel" : "cluster");
}

/*
 * Under rc->lock: while another call is asking for the topology (at
 * start-up, say), waits for its answer, which is near.
 */
static void redis_lookup_wait(struct redis_conn *rc)
{
	struct timespec until;
	long ms = (long)(rc->url.nseeds + 2) * (rc->timeout.tv_sec * 1000 + rc->timeout.tv_usec / 1000);

	if (!rc->looking)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000 + (until.tv_nsec + (ms % 1000) * 1000000L) / 1000000000L;
	until.tv_nsec = (until.tv_nsec + (ms % 1000) * 1000000L) % 1000000000L;
	while (rc->looking && pthread_cond_timedwait(&rc->looked, &rc->lock, &until) == 0)
		;
}

size_t redis_conn_master_slots(struct redis_conn *rc, unsigned *slots, size_t max, char *err,
	size_t errlen)
{
	bool seen[REDIS_NODES_MAX] = { false };
	size_t n = 0;

	if (max == 0)
		return 0;
	if (rc->url.topology != STORE_REDIS_CLUSTER) {
		slots[0] = 0;
		return 1;
	}
	redis_lookup(rc, true);		/* a listing wants the masters as they are now */
	pthread_mutex_lock(&rc->lock);
	redis_lookup_wait(rc);
	for (unsigned s = 0; s < REDIS_CLUSTER_SLOTS && n < max; s++) {
		uint8_t o = rc->owner[s];
		if (o != 0 && !seen[o - 1]) {
			seen[o - 1] = true;
			slots[n++] = s;
		}
	}
	pthread_mutex_unlock(&rc->lock);
	if (n == 0)
		snprintf(err, errlen, "redis cluster: no master known");
	return n;
}

/* Whether argument i of the command is word (arguments are not NUL-terminated). */
static bool redis_cmd_arg_is(const struct redis_cmd *cmd, int i, const char *word)
{
	return i < cmd->argc && cmd->argvlen[i] == strlen(word)
		&& memcmp(cmd->argv[i], word, cmd->argvlen[i]) == 0;
}

/* The index of a command's first key in argv; 0 when it has none. */
static int redis_cmd_first_key(const struct redis_cmd *cmd)
{
	if (redis_cmd_arg_is(cmd, 0, "EVALSHA") || redis_cmd_arg_is(cmd, 0, "EVAL"))
		return cmd->argc > 3 && !redis_cmd_arg_is(cmd, 2, "0") ? 3 : 0;
	return cmd->argc > 1 ? 1 : 0;
}

/* The node a command goes to: the master, or the owner of its key's slot. */
static struct redis_node *redis_route(struct redis_conn *rc, const struct redis_cmd *cmd,
	char *err, size_t errlen)
{
	struct redis_node *node;
	unsigned slot = 0;
	bool cluster = rc->url.topology == STORE_REDIS_CLUSTER;

	if (rc->url.topology == STORE_REDIS_STANDALONE)
		return rc->master;
	int key = redis_cmd_first_key(cmd);
	if (cluster && key > 0)
		slot = redis_cluster_keyslot(cmd->argv[key], cmd->argvlen[key]);
	else if (cluster && cmd->slot >= 0 && cmd->slot < REDIS_CLUSTER_SLOTS)
		slot = (unsigned)cmd->slot;
	pthread_mutex_lock(&rc->lock);
	bool unknown = cluster ? rc->owner[slot] == 0 : rc->master == NULL;
	pthread_mutex_unlock(&rc->lock);
	redis_lookup(rc, unknown);
	pthread_mutex_lock(&rc->lock);
	if (unknown)
		redis_lookup_wait(rc);
	node = cluster ? (rc->owner[slot] ? rc->nodes[rc->owner[slot] - 1] : NULL) : rc->master;
	pthread_mutex_unlock(&rc->lock);
	if (node == NULL && cluster)
		snprintf(err, errlen, "redis cluster: no master known for slot %u", slot);
	else if (node == NULL)
		snprintf(err, errlen, "redis sentinel %s: no master known", rc->url.master);
	return node;
}

/* A redirection to follow: MOVED updates the map, ASK names a node for one try. */
static struct redis_node *redis_redirect(struct redis_conn *rc, const redisReply *r, bool *ask)
{
	struct store_redis_seed to;
	struct redis_node *node;
	unsigned slot;

	if (redis_cluster_redirect(r->str, ask, &slot, &to) < 0)
		return NULL;
	pthread_mutex_lock(&rc->lock);
	node = redis_node_get(rc, &to);
	if (node != NULL && !*ask) {
		rc->owner[slot] = (uint8_t)(node->index + 1);
		rc->lookup_wanted = true;	/* more slots may have moved */
	}
	pthread_mutex_unlock(&rc->lock);
	return node;
}

/*
 * Runs n commands on the node their first command routes to, following
 * redirections (cluster, n == 1) and waiting out TRYAGAIN/CLUSTERDOWN.
 */
static enum store_status redis_run_routed(struct redis_conn *rc, struct redis_cmd **cmds, size_t n,
	redisReply **replies, char *err, size_t errlen)
{
	bool cluster = rc->url.topology == STORE_REDIS_CLUSTER;
	bool standalone = rc->url.topology == STORE_REDIS_STANDALONE;
	struct redis_node *ask = NULL;
	long waited = 0, wait = REDIS_CLUSTER_RETRY_MS;
	int redirects = 0;

	for (;;) {
		struct redis_node *node = ask ? ask : redis_route(rc, cmds[0], err, errlen);
		if (node == NULL)
			return STORE_FAILED;
		enum redis_gate g = redis_enter(rc, node);
		if (g == REDIS_SKIP) {
			if (!standalone)
				redis_lookup_wanted(rc);
			snprintf(err, errlen, "redis unavailable (backoff)");
			return STORE_FAILED;
		}
		if (redis_node_run(rc, node, cmds, n, ask != NULL, replies, err, errlen) < 0) {
			redis_leave_failed(rc, node, g, err);
			if (!standalone)
				redis_lookup_wanted(rc);
			return STORE_FAILED;
		}
		ask = NULL;

		const redisReply *bad = NULL;
		for (size_t i = 0; i < n && bad == NULL; i++)
			if (replies[i]->type == REDIS_REPLY_ERROR)
				bad = replies[i];
		if (bad == NULL) {
			redis_leave_ok(rc, node);
			return STORE_OK;
		}
		snprintf(err, errlen, "redis %s: %.*s", node->where, REDIS_ERROR_SHOWN, bad->str);
		bool moved = redis_error_is(bad, "MOVED"), asked = redis_error_is(bad, "ASK");
		bool down = redis_error_is(bad, "CLUSTERDOWN");
		bool busy = down || redis_error_is(bad, "TRYAGAIN");
		bool demoted = redis_error_is(bad, "READONLY") || redis_error_is(bad, "MASTERDOWN");
		if (cluster && n == 1 && (moved || asked) && redirects < REDIS_REDIRECTS_MAX) {
			bool is_ask;
			struct redis_node *to = redis_redirect(rc, bad, &is_ask);
			redis_leave_ok(rc, node);
			redis_free_replies(replies, n);
			if (to == NULL) {
				redis_lookup_wanted(rc);
				return STORE_FAILED;
			}
			log_debug("redis cluster: %s from %s: %s %s", is_ask ? "ASK" : "MOVED",
				  node->where, is_ask ? "asking" : "now at", to->where);
			if (is_ask)
				ask = to;
			redirects++;
			continue;
		}
		if (cluster && busy && waited < REDIS_CLUSTER_WAIT_MS) {
			/* A slot in migration, or the cluster electing a master: soon over. */
			redis_leave_ok(rc, node);
			redis_free_replies(replies, n);
			if (down)
				redis_lookup_wanted(rc);
			log_debug("%s; trying again in %ld ms", err, wait);
			redis_sleep_ms(wait);
			waited += wait;
			wait = wait * 2 > 100 ? 100 : wait * 2;
			continue;
		}
		redis_free_replies(replies, n);
		if (!standalone && (demoted || moved || asked || busy)) {
			/* No longer the master, or the cluster is not done moving. */
			redis_drain(rc, node);
			redis_lookup_wanted(rc);
		}
		redis_leave_failed(rc, node, g, err);
		return STORE_FAILED;
	}
}

enum store_status redis_conn_run(struct redis_conn *rc, struct redis_cmd **cmds, size_t n,
	redisReply **replies, char *err, size_t errlen)
{
	enum store_status status = STORE_OK;

	pthread_mutex_lock(&rc->lock);
	rc->calls++;
	pthread_mutex_unlock(&rc->lock);
	if (rc->url.topology == STORE_REDIS_CLUSTER) {
		/* Each command to its own slot's node; a pipeline only shares a node. */
		for (size_t i = 0; i < n && status == STORE_OK; i++)
			if ((status = redis_run_routed(rc, &cmds[i], 1, &replies[i], err, errlen)) != STORE_OK)
				redis_free_replies(replies, i);
	} else {
		status = redis_run_routed(rc, cmds, n, replies, err, errlen);
	}
	if (status != STORE_OK) {
		pthread_mutex_lock(&rc->lock);
		rc->failures++;
		pthread_mutex_unlock(&rc->lock);
	}
	return status;
}

bool redis_conn_splits(const struct redis_conn *rc)
{
	return rc->url.topology == STORE_REDIS_CLUSTER;
}

/* A reply that is not what the script returns: Redis answered, we cannot use it. */
enum store_status redis_conn_bad_reply(struct redis_conn *rc, redisReply *r, char *err,
	size_t errlen)
{
	pthread_mutex_lock(&rc->lock);
	rc->failures++;
	pthread_mutex_unlock(&rc->lock);
	snprintf(err, errlen, "redis: unexpected reply to the rate-limit script");
	freeReplyObject(r);
	return STORE_FAILED;
}

/*
 * Backing off: a server in use is in back-off, or no master is known.
 * In a cluster only the masters of the map count: an old master that
 * died and was replaced is never tried again, and stays in back-off.
 */
void redis_conn_stats(struct redis_conn *rc, struct store_stats *out)
{
	bool used[REDIS_NODES_MAX] = { false };

	pthread_mutex_lock(&rc->lock);
	out->calls = rc->calls;
	out->failures = rc->failures;
	if (rc->url.topology == STORE_REDIS_CLUSTER) {
		out->backing_off = rc->lookup_failing;
		for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++)
			if (rc->owner[s])
				used[rc->owner[s] - 1] = true;
		for (size_t i = 0; i < rc->nnodes; i++)
			if (used[i] && rc->nodes[i]->backoff_ms > 0)
				out->backing_off = true;
	} else {
		out->backing_off = rc->master == NULL ? rc->lookup_failing : rc->master->backoff_ms > 0;
	}
	pthread_mutex_unlock(&rc->lock);
}

struct redis_conn *redis_conn_open(const struct store_redis_url *url, long timeout_ms,
	const char *sha)
{
	struct redis_conn *rc = calloc(1, sizeof(*rc));

	if (rc == NULL)
		return NULL;
	rc->url = *url;
	rc->timeout.tv_sec = timeout_ms / 1000;
	rc->timeout.tv_usec = (timeout_ms % 1000) * 1000;
	snprintf(rc->sha, sizeof(rc->sha), "%s", sha);
	pthread_mutex_init(&rc->lock, NULL);
	pthread_cond_init(&rc->looked, NULL);
	if (url->topology == STORE_REDIS_STANDALONE) {
		struct store_redis_seed addr = { "", 0 };	/* port 0: the unix socket */
		if (!url->unix_socket) {
			snprintf(addr.host, sizeof(addr.host), "%s", url->host);
			addr.port = url->port;
		}
		if ((rc->master = redis_node_get(rc, &addr)) == NULL) {
			redis_conn_close(rc);
			return NULL;
		}
	}
	return rc;
}

void redis_conn_close(struct redis_conn *rc)
{
	if (rc == NULL)
		return;
	for (size_t i = 0; i < rc->nnodes; i++) {
		for (size_t k = 0; k < rc->nodes[i]->nidle; k++)
			redisFree(rc->nodes[i]->idle[k]);
		free(rc->nodes[i]);
	}
	pthread_cond_destroy(&rc->looked);
	pthread_mutex_destroy(&rc->lock);
	explicit_bzero(&rc->url, sizeof(rc->url));
	free(rc);
}
