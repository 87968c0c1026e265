/*
 * test_ratelimit_redis.h - what the rate-limit tests share: a private
 * redis-server on a unix socket in a temp dir (killed by PID, and by the
 * kernel if the test dies first), a raw hiredis connection to look at
 * keys, and plain policy structs (no parser involved).
 */
#ifndef BM_TEST_RATELIMIT_REDIS_H
#define BM_TEST_RATELIMIT_REDIS_H

#include <stdbool.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "policy.h"
#include "settings.h"
#include "store.h"

/* Test result when the environment cannot run the test (automake SKIP). */
#define TRL_SKIP 77

struct trl_redis {
	pid_t pid;
	char dir[64];			/* temp dir: socket, log */
	char sock[128];
	char url[160];			/* "unix:SOCK" */
	int port;			/* 0 = unix socket only */
	char password[64];		/* "" = none */
};

/*
 * Exits TRL_SKIP when redis-server is not installed. port > 0 also
 * listens on 127.0.0.1:port; password "" = none.
 */
void trl_redis_start(struct trl_redis *r, int port, const char *password);
/* Kills the server by its PID and waits for it; the dir stays. */
void trl_redis_stop(struct trl_redis *r);
/* Starts it again on the same socket (no data survives). */
void trl_redis_restart(struct trl_redis *r);
/* Stops it and removes the temp dir. */
void trl_redis_cleanup(struct trl_redis *r);
/* A direct connection for looking at keys (AUTH done); asserts. */
redisContext *trl_redis_raw(const struct trl_redis *r);
/* A loopback port below 32768 derived from the pid, not in use now. */
int trl_free_port(int salt);

/* Settings for a store on r's socket: timeout_ms, prefix "bm:". */
void trl_settings(struct settings *s, const struct trl_redis *r, long timeout_ms);
/* A store on r (settings as trl_settings); diagnostics to stderr; NULL on error. */
struct store *trl_store_open(const struct trl_redis *r, long timeout_ms);
struct policy_rate trl_rate(unsigned long count, unsigned long period_ms);
/* An empty class (no rates, no bulk rules) named name. */
void trl_class(struct policy_class *c, const char *name);
void trl_add_volume(struct policy_class *c, unsigned long count, unsigned long period_ms);
/* Milliseconds on the monotonic clock. */
long long trl_now_ms(void);
void trl_sleep_ms(long ms);

#endif
