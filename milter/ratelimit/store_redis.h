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
 *	"unix:/PATH[?db=N]" (also "unix:///PATH"). Port defaults to 6379,
 *	db to 0. out holds copies of every part, the password included:
 *	wipe it (explicit_bzero) when done.
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

struct store_redis_url {
	bool unix_socket;
	char host[STORE_REDIS_HOST_MAX];
	int port;
	char path[STORE_REDIS_PATH_MAX];
	int db;
	char user[STORE_REDIS_SECRET_MAX];	/* "" = the default user */
	char password[STORE_REDIS_SECRET_MAX];	/* "" = none */
};

int store_redis_parse_url(const char *url, struct store_redis_url *out, char *err, size_t errlen);
int store_redis_read_password(const char *path, char *buf, size_t size, char *err, size_t errlen);

extern const char store_redis_script[];
extern const size_t store_redis_script_len;

#endif
