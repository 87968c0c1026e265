/*
 * NAME
 *	store_redis_conn - the Redis backend's connections: pools, back-off,
 *	pipelined exchanges, Sentinel and Cluster routing
 * SYNOPSIS
 *	struct redis_conn *redis_conn_open(const struct store_redis_url *url,
 *		long timeout_ms, const char *sha);
 *	void redis_conn_close(struct redis_conn *rc);
 *	enum store_status redis_conn_run(struct redis_conn *rc,
 *		struct redis_cmd **cmds, size_t n, redisReply **replies,
 *		char *err, size_t errlen);
 *	enum store_status redis_conn_bad_reply(struct redis_conn *rc,
 *		redisReply *r, char *err, size_t errlen);
 *	void redis_conn_stats(struct redis_conn *rc, struct store_stats *out);
 *	bool redis_conn_splits(const struct redis_conn *rc);
 *	size_t redis_conn_master_slots(struct redis_conn *rc, unsigned *slots,
 *		size_t max, char *err, size_t errlen);

bool redis_conn_splits(const struct redis_conn *rc);

typedef enum store_status (*redis_group_charge_fn)(void *ctx, size_t group,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	struct store_charge_result *res, char *err, size_t errlen);
typedef enum store_status (*redis_group_refund_fn)(void *ctx, struct store_batch *batches,
	size_t n, char *err, size_t errlen);
size_t redis_tag_run(const struct store_bucket *b, size_t nb);
bool redis_same_tag(const char *a, const char *b);
bool redis_batches_one_tag(const struct store_batch *batches, size_t n);
enum store_status redis_groups_charge(void *ctx, redis_group_charge_fn charge,
	redis_group_refund_fn refund, bool lead, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen);
enum store_status redis_groups_refund(void *ctx, redis_group_refund_fn refund,
	struct store_batch *batches, size_t n, char *err, size_t errlen);

redisContext *redis_connect(const struct store_redis_url *url, const struct store_redis_seed *addr,
	const char *where, struct timeval timeout, const char *sha, char *err, size_t errlen);

unsigned redis_cluster_keyslot(const char *key, size_t len);
int redis_cluster_redirect(const char *msg, bool *ask, unsigned *slot, struct store_redis_seed *to);
int redis_cluster_parse_slots(const redisReply *r, const struct store_redis_seed *asked,
	struct store_redis_seed *masters, size_t max, size_t *nmasters, uint8_t *owner,
	char *err, size_t errlen);
int redis_cluster_slots(const struct store_redis_url *url, struct timeval timeout,
	const struct store_redis_seed *at, struct store_redis_seed *masters, size_t max,
	size_t *nmasters, uint8_t *owner, char *err, size_t errlen);
int redis_sentinel_master(const struct store_redis_url *url, struct timeval timeout, size_t *first,
	struct store_redis_seed *master, char *err, size_t errlen);
 *
 *	void redis_cmd_init(struct redis_cmd *c, int cap);
 *	void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen,
 *		const char *b, size_t blen);
 *	void redis_cmd_str(struct redis_cmd *c, const char *s);
 *	void redis_cmd_num(struct redis_cmd *c, unsigned long long v);
 *	void redis_cmd_finish(struct redis_cmd *c);
 *	void redis_cmd_free(struct redis_cmd *c);
 *	int redis_cmd_append(redisContext *ctx, const struct redis_cmd *c);
 *
 *	size_t redis_tag_run(const struct store_bucket *b, size_t nb);
 *	bool redis_same_tag(const char *a, const char *b);
 *	bool redis_batches_one_tag(const struct store_batch *batches, size_t n);
 *	enum store_status redis_groups_charge(void *ctx,
 *		redis_group_charge_fn charge, redis_group_refund_fn refund,
 *		bool lead, const struct store_bucket *b, size_t nb,
 *		const struct store_window *w, size_t nw,
 *		struct store_charge_result *res, char *err, size_t errlen);
 *	enum store_status redis_groups_refund(void *ctx,
 *		redis_group_refund_fn refund, struct store_batch *batches,
 *		size_t n, char *err, size_t errlen);
 *
 *	redisContext *redis_connect(const struct store_redis_url *url,
 *		const struct store_redis_seed *addr, const char *where,
 *		struct timeval timeout, const char *sha, char *err, size_t errlen);
 *
 *	unsigned redis_cluster_keyslot(const char *key, size_t len);
 *	int redis_cluster_redirect(const char *msg, bool *ask, unsigned *slot,
 *		struct store_redis_seed *to);
 *	int redis_cluster_parse_slots(const redisReply *r,
 *		const struct store_redis_seed *asked,
 *		struct store_redis_seed *masters, size_t max, size_t *nmasters,
 *		uint8_t *owner, char *err, size_t errlen);
 *	int redis_cluster_slots(const struct store_redis_url *url,
 *		struct timeval timeout, const struct store_redis_seed *at,
 *		struct store_redis_seed *masters, size_t max, size_t *nmasters,
 *		uint8_t *owner, char *err, size_t errlen);
 *	int redis_sentinel_master(const struct store_redis_url *url,
 *		struct timeval timeout, size_t *first,
 *		struct store_redis_seed *master, char *err, size_t errlen);
 * DESCRIPTION
 *	Internal to the Redis backend (store_redis.c builds the script
 *	calls, this layer carries them). redis_conn_open copies url (the
 *	caller wipes its own copy) and does not connect. sha is the digest
 *	of store_redis_script: every new connection loads the script and
 *	checks it.
 *
 *	redis_conn_run sends n commands in one pipeline on a pooled
 *	connection (EVALSHA answered NOSCRIPT is sent again as EVAL with
 *	the body) and fills replies[0..n-1]; on STORE_OK every reply is a
 *	non-error reply the caller frees. redis_conn_bad_reply counts a
 *	reply the caller cannot use as a failure, frees it and says so.
 *
 *	The URL's topology decides where commands go (store_redis_conn.c
 *	tells how): the one server; the master the sentinels name; in a
 *	Cluster, the owner of the slot of the command's first key (EVAL and
 *	EVALSHA: argv[3] when numkeys > 0; other commands: argv[1]; none:
 *	the owner of the command's slot field when it is >= 0, else any
 *	node), each command on its own, so a pipeline of n commands is n
 *	round trips there.
 *
 *	redis_conn_master_slots is for key-less commands that must see
 *	every key (a SCAN listing): in a Cluster it asks for the slot map
 *	afresh and writes one slot of each master into slots[0 .. n - 1]
 *	(at most max), for the caller to set as a redis_cmd's slot; in the
 *	other topologies there is one server, and slots[0] is 0. It returns
 *	n, 0 with err when no master is known.
 *
 *	A redis_cmd is an argument vector whose strings live in one growing
 *	arena, already in RESP; cap is the most arguments it takes. Out of
 *	memory or beyond cap sets c->nomem, which the caller checks before
 *	redis_cmd_finish. After it, argv[0] and argv[1] may be pointed
 *	elsewhere (the NOSCRIPT fallback); the other arguments are sent as
 *	they were put.
 *	redis_cmd_append puts a finished command in a connection's output
 *	buffer, as redisAppendCommandArgv does (REDIS_OK or REDIS_ERR; after
 *	REDIS_ERR the context may hold part of it and must be dropped).
 *
 *	redis_conn_splits is true when keys of different hash tags may live
 *	on different servers (Cluster): a call whose buckets carry several
 *	tags (redis_tag_run: how many from b[0] share its tag) must then go
 *	through redis_groups_charge / redis_groups_refund
 *	(store_redis_groups.c), which call charge once per group of one tag
 *	(windows only with group 0) in order and refund with refund the
 *	groups charged before a refusal or a failure; refund gets batches of
 *	one tag each. lead: group 0 is the windows alone (nb 0), as their
 *	tag (the account's) is not the first bucket's; redis_same_tag says
 *	whether two keys share a hash tag.
 *
 *	redis_connect opens a connection to addr (port 0: url's unix
 *	socket; where names it in messages) ready for the script (AUTH,
 *	SELECT, ROLE for a sentinel:// URL, SCRIPT LOAD checked against sha)
 *	or returns NULL with a reason (store_redis_node.c).
 *
 *	redis_cluster_keyslot is the Cluster slot of a key (of its hash tag,
 *	when it has one). redis_cluster_redirect reads "MOVED SLOT HOST:PORT"
 *	and "ASK SLOT HOST:PORT" (ask tells which). redis_cluster_parse_slots
 *	reads a CLUSTER SLOTS reply: the masters (at most max) and, for each
 *	of the REDIS_CLUSTER_SLOTS slots, owner[slot] = 1 + the master's
 *	index, 0 when no master has it; redis_cluster_slots asks node at for
 *	it. redis_sentinel_master asks the sentinels, starting with
 *	*first and leaving there the one that answered, for the address of
 *	the master url->master.
 * DIAGNOSTICS
 *	The cluster and sentinel functions return 0, or -1 with a reason in
 *	err (redirect: none). redis_conn_run, as store.h: STORE_FAILED with a one-line reason without secrets;
 *	the back-off and its log lines (unavailable, available again) are
 *	kept here.
 */
#ifndef BM_STORE_REDIS_CONN_H
#define BM_STORE_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "store.h"
#include "store_redis.h"

/* Slots of a Redis Cluster. */
#define REDIS_CLUSTER_SLOTS 16384

struct redis_cmd {
	int argc, cap;
	const char **argv;
	size_t *argvlen;
	size_t *off;		/* while built: offsets into arena */
	char *arena;		/* the arguments in RESP, one after another */
	size_t used, size;
	size_t tail;		/* arena offset of the third argument's RESP */
	bool nomem;
	int slot;		/* cluster: where a key-less command goes; -1: any node */
};

void redis_cmd_init(struct redis_cmd *c, int cap);
void redis_cmd_free(struct redis_cmd *c);
void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen, const char *b, size_t blen);
void redis_cmd_str(struct redis_cmd *c, const char *s);
void redis_cmd_num(struct redis_cmd *c, unsigned long long v);
void redis_cmd_finish(struct redis_cmd *c);
int redis_cmd_append(redisContext *ctx, const struct redis_cmd *c);

struct redis_conn;

struct redis_conn *redis_conn_open(const struct store_redis_url *url, long timeout_ms,
	const char *sha);
void redis_conn_close(struct redis_conn *rc);
enum store_status redis_conn_run(struct redis_conn *rc, struct redis_cmd **cmds, size_t n,
	redisReply **replies, char *err, size_t errlen);
enum store_status redis_conn_bad_reply(struct redis_conn *rc, redisReply *r, char *err,
	size_t errlen);
void redis_conn_stats(struct redis_conn *rc, struct store_stats *out);

bool redis_conn_splits(const struct redis_conn *rc);
size_t redis_conn_master_slots(struct redis_conn *rc, unsigned *slots, size_t max, char *err,
	size_t errlen);

typedef enum store_status (*redis_group_charge_fn)(void *ctx, size_t group,
	const struct store_bucket *b, size_t nb, const struct store_window *w, size_t nw,
	struct store_charge_result *res, char *err, size_t errlen);
typedef enum store_status (*redis_group_refund_fn)(void *ctx, struct store_batch *batches,
	size_t n, char *err, size_t errlen);
size_t redis_tag_run(const struct store_bucket *b, size_t nb);
bool redis_same_tag(const char *a, const char *b);
bool redis_batches_one_tag(const struct store_batch *batches, size_t n);
enum store_status redis_groups_charge(void *ctx, redis_group_charge_fn charge,
	redis_group_refund_fn refund, bool lead, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res,
	char *err, size_t errlen);
enum store_status redis_groups_refund(void *ctx, redis_group_refund_fn refund,
	struct store_batch *batches, size_t n, char *err, size_t errlen);

redisContext *redis_connect(const struct store_redis_url *url, const struct store_redis_seed *addr,
	const char *where, struct timeval timeout, const char *sha, char *err, size_t errlen);

unsigned redis_cluster_keyslot(const char *key, size_t len);
int redis_cluster_redirect(const char *msg, bool *ask, unsigned *slot, struct store_redis_seed *to);
int redis_cluster_parse_slots(const redisReply *r, const struct store_redis_seed *asked,
	struct store_redis_seed *masters, size_t max, size_t *nmasters, uint8_t *owner,
	char *err, size_t errlen);
int redis_cluster_slots(const struct store_redis_url *url, struct timeval timeout,
	const struct store_redis_seed *at, struct store_redis_seed *masters, size_t max,
	size_t *nmasters, uint8_t *owner, char *err, size_t errlen);
int redis_sentinel_master(const struct store_redis_url *url, struct timeval timeout, size_t *first,
	struct store_redis_seed *master, char *err, size_t errlen);

#endif
