/*
 * NAME
 *	store_redis - internals of the Redis store backend
 * SYNOPSIS
 *	int store_redis_parse_url(const char *url, struct store_redis_url *out,
 *		char *err, size_t errlen);
 *	int store_redis_read_password(const char *path, char *buf, size_t size,
 *		char *err, size_t errlen);
 *	extern const char store_redis_script[];
 * DESCRIPTION
 *	Callers of the store need only store.h; this header is for the
 *	backend's own files, its tests and bulkmilterctl.
 *
 *	store_redis_parse_url takes "redis://[[USER]:PASS@]HOST[:PORT][/DB]"
 *	(HOST may be "[IPv6]"; USER and PASS may hold %XX escapes) or
 *	"unix:/PATH[?db=N]" (also "unix:///PATH"), both STORE_REDIS_STANDALONE;
 *	"sentinel://[[USER]:PASS@]HOST[:PORT][,HOST[:PORT]...]/MASTER[?db=N]"
 *	(STORE_REDIS_SENTINEL: seeds are the sentinels, port 26379 by
 *	default, USER and PASS theirs: the data nodes' password comes from
 *	RedisPasswordFile); "cluster://[[USER]:PASS@]HOST[:PORT][,...]"
 *	(STORE_REDIS_CLUSTER: seeds are any of its nodes; database 0).
 *	Port defaults to 6379, db to 0. out holds copies of every part, the
 *	passwords included: wipe it (explicit_bzero) when done.
 *
 *	store_redis_read_password reads the first line of RedisPasswordFile
 *	(without its line end) into buf.
 *
 *	store_redis_script is the Lua script that keeps every bucket and
 *	volume window (its layout is described in store_redis_script.c).
 * DIAGNOSTICS
 *	Both functions return 0, or -1 with a one-line reason in err that
 *	never contains the password.
 */
#ifndef BM_STORE_REDIS_H
#define BM_STORE_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#define STORE_REDIS_HOST_MAX 256
#define STORE_REDIS_PATH_MAX 108	/* sizeof(sun_path) */
#define STORE_REDIS_SECRET_MAX 512	/* user name or password */
#define STORE_REDIS_DEFAULT_PORT 6379
#define STORE_REDIS_SENTINEL_PORT 26379
#define STORE_REDIS_SEEDS_MAX 16	/* sentinels or cluster nodes in one URL */
#define STORE_REDIS_NAME_MAX 128	/* Sentinel master name */

enum store_redis_topology {
	STORE_REDIS_STANDALONE = 0,	/* redis://, unix: */
	STORE_REDIS_SENTINEL,
	STORE_REDIS_CLUSTER,
};

struct store_redis_seed {
	char host[STORE_REDIS_HOST_MAX];
	int port;
};

struct store_redis_url {
	enum store_redis_topology topology;
	bool unix_socket;
	char host[STORE_REDIS_HOST_MAX];
	int port;
	char path[STORE_REDIS_PATH_MAX];
	int db;
	char user[STORE_REDIS_SECRET_MAX];	/* "" = the default user */
	char password[STORE_REDIS_SECRET_MAX];	/* "" = none */
	/* sentinel, cluster: */
	size_t nseeds;
	struct store_redis_seed seeds[STORE_REDIS_SEEDS_MAX];
	char master[STORE_REDIS_NAME_MAX];	/* sentinel: the master's name */
	char sentinel_user[STORE_REDIS_SECRET_MAX];
	char sentinel_password[STORE_REDIS_SECRET_MAX];
};

int store_redis_parse_url(const char *url, struct store_redis_url *out, char *err, size_t errlen);
int store_redis_read_password(const char *path, char *buf, size_t size, char *err, size_t errlen);

/* ARGV numbers per bucket of the script (store_redis_script.c). */
#define STORE_REDIS_BUCKET_ARGS 8

extern const char store_redis_script[];
extern const size_t store_redis_script_len;

#endif
