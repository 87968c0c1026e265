/*
 * When Redis is gone, stalled, restarted or wants a password: the store
 * fails fast, backs off, resumes by itself, and never shows a password.
 * When a connection dies after Redis ran a script (the reply is lost)
 * the store's retry charges or refunds nothing twice.
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit.h"
#include "store.h"
#include "test_ratelimit_redis.h"

#define PASSWORD "S3cret-Pw"
#define WRONG "Wr0ng-Pw"

static struct trl_redis plain, locked;

static struct store *open_store(const char *url, const char *password_file, long timeout_ms)
{
	struct settings s;
	struct diag d = { 0 };
	trl_settings(&s, &plain, timeout_ms);
	s.redis_url = (char *)url;
	s.redis_password_file = (char *)password_file;
	struct store *st = store_open(&s, &d);
	diag_print(&d, stderr);
	assert_int_equal(d.count, 0);
	assert_non_null(st);
	return st;
}

static void one_rate(struct policy_class *c)
{
	trl_class(c, "fail");
	c->recipients[c->recipients_count++] = trl_rate(1000000, 3600000);
}

static enum ratelimit_status check(struct store *st, const struct policy_class *c,
				   struct ratelimit_verdict *v)
{
	struct ratelimit_receipt r = { 0 };
	enum ratelimit_status s = ratelimit_check_recipients(st, c, DIRECTION_OUTBOUND, "acct", NULL, 1, &r, v);
	ratelimit_receipt_clear(&r);
	return s;
}

/* Calls during the back-off all fail at once, without touching Redis. */
static void fifty_calls_in_backoff_are_fast(struct store *st, const struct policy_class *c)
{
	struct ratelimit_verdict v;
	long long t0 = trl_now_ms();
	for (int i = 0; i < 50; i++) {
		assert_int_equal(check(st, c, &v), RATELIMIT_STORE_FAILED);
		assert_string_equal(v.reason, "redis unavailable (backoff)");
	}
	assert_in_range(trl_now_ms() - t0, 0, 999);
}

/* Polls until a check passes; returns how long that took. */
static long long wait_until_ok(struct store *st, const struct policy_class *c)
{
	struct ratelimit_verdict v;
	long long t0 = trl_now_ms();
	while (check(st, c, &v) != RATELIMIT_OK) {
		if (trl_now_ms() - t0 > 8000)
			fail_msg("store did not resume: %s", v.reason);
		trl_sleep_ms(20);
	}
	return trl_now_ms() - t0;
}

static void dead_redis_fails_fast_backs_off_and_resumes_after_restart(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	struct store_stats stats;
	one_rate(&c);
	struct store *st = open_store(plain.url, NULL, 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);

	trl_redis_stop(&plain);
	long long t0 = trl_now_ms();
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_in_range(trl_now_ms() - t0, 0, 299);
	assert_non_null(strstr(v.reason, plain.sock));
	fifty_calls_in_backoff_are_fast(st, &c);
	store_get_stats(st, &stats);
	assert_true(stats.backing_off);
	assert_in_range(stats.failures, 51, 51);

	trl_redis_restart(&plain);
	wait_until_ok(st, &c);
	store_get_stats(st, &stats);
	assert_false(stats.backing_off);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);
	store_close(st);
}

static void stalled_redis_costs_one_timeout_then_backs_off(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	one_rate(&c);
	struct store *st = open_store(plain.url, NULL, 100);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);

	kill(plain.pid, SIGSTOP);
	long long t0 = trl_now_ms();
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_in_range(trl_now_ms() - t0, 90, 400);
	fifty_calls_in_backoff_are_fast(st, &c);

	/* after the back-off one call probes (and times out again); the
	 * back-off then doubles, so the next calls fail fast once more */
	trl_sleep_ms(STORE_BACKOFF_MIN_MS + 10);
	t0 = trl_now_ms();
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_in_range(trl_now_ms() - t0, 90, 400);
	trl_sleep_ms(STORE_BACKOFF_MIN_MS + 10);
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_string_equal(v.reason, "redis unavailable (backoff)");

	kill(plain.pid, SIGCONT);
	assert_in_range(wait_until_ok(st, &c), 0, 2 * STORE_BACKOFF_MIN_MS * 2 + 500);
	store_close(st);
}

static void restarted_redis_is_used_again_without_a_failure(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	struct store_stats before, after;
	one_rate(&c);
	struct store *st = open_store(plain.url, NULL, 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);
	store_get_stats(st, &before);

	/* the pooled connection is dead now; the store notices and reconnects */
	trl_redis_restart(&plain);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);
	store_get_stats(st, &after);
	assert_int_equal(after.failures, before.failures);
	store_close(st);
}

static const char *password_file(const char *text)
{
	static char path[96];
	snprintf(path, sizeof(path), "%s/password", locked.dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "%s\n", text);
	fclose(fp);
	return path;
}

static void password_file_logs_in(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	one_rate(&c);
	struct store *st = open_store(locked.url, password_file(PASSWORD), 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);
	store_close(st);
}

static void password_in_the_url_and_database_number_are_used(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	char url[128];
	one_rate(&c);
	snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%d/2", PASSWORD, locked.port);
	struct store *st = open_store(url, NULL, 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_OK);
	store_close(st);

	redisContext *raw = trl_redis_raw(&locked);
	redisReply *r = redisCommand(raw, "SELECT 2");
	freeReplyObject(r);
	r = redisCommand(raw, "EXISTS bm:{acct}:fail:r:1000000/3600000");
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	redisFree(raw);
}

static void wrong_or_missing_password_fails_cleanly(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_verdict v;
	one_rate(&c);
	struct store *st = open_store(locked.url, password_file(WRONG), 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_non_null(strstr(v.reason, "authentication refused (WRONGPASS)"));
	assert_null(strstr(v.reason, WRONG));
	assert_null(strstr(v.reason, PASSWORD));
	store_close(st);

	st = open_store(locked.url, NULL, 200);
	assert_int_equal(check(st, &c, &v), RATELIMIT_STORE_FAILED);
	assert_non_null(strstr(v.reason, "(NOAUTH)"));
	store_close(st);
}

/* ---- a connection that dies after Redis ran the script ---- */

/*
 * A proxy between the store and Redis (unix sockets). Armed, it passes
 * the next EVALSHA on to Redis, waits for Redis's reply (so the script
 * ran), and then closes the store's connection instead of passing the
 * reply on: the store sees EOF on a pooled connection and retries.
 */
struct lossy {
	char path[100];		/* fits sun_path */
	char url[112];
	const char *upstream;
	int fd;
	pthread_t thread;
	atomic_bool armed, stop;
	atomic_int lost;		/* replies lost so far */
	atomic_int relays;		/* connections being relayed */
};

struct lossy_conn {
	struct lossy *px;
	int client;
};

static int unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool write_all(int fd, const char *buf, ssize_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, (size_t)n);
		if (w <= 0)
			return false;
		buf += w;
		n -= w;
	}
	return true;
}

static void *lossy_relay(void *arg)
{
	struct lossy_conn *lc = arg;
	struct lossy *px = lc->px;
	int client = lc->client, server = unix_connect(px->upstream);
	static _Thread_local char buf[65536];
	free(lc);

	while (server >= 0 && !atomic_load(&px->stop)) {
		struct pollfd p[2] = { { client, POLLIN, 0 }, { server, POLLIN, 0 } };
		if (poll(p, 2, 50) < 0)
			break;
		if (p[0].revents) {
			ssize_t n = read(client, buf, sizeof(buf));
			if (n <= 0)
				break;
			bool lose = memmem(buf, (size_t)n, "EVALSHA", 7) != NULL
				&& atomic_exchange(&px->armed, false);
			if (!write_all(server, buf, n))
				break;
			if (lose) {
				struct pollfd w = { server, POLLIN, 0 };
				if (poll(&w, 1, 2000) == 1 && read(server, buf, sizeof(buf)) > 0)
					atomic_fetch_add(&px->lost, 1);
				break;
			}
		}
		if (p[1].revents) {
			ssize_t n = read(server, buf, sizeof(buf));
			if (n <= 0 || !write_all(client, buf, n))
				break;
		}
	}
	close(client);
	if (server >= 0)
		close(server);
	atomic_fetch_sub(&px->relays, 1);
	return NULL;
}

static void *lossy_accept(void *arg)
{
	struct lossy *px = arg;
	while (!atomic_load(&px->stop)) {
		struct pollfd p = { px->fd, POLLIN, 0 };
		if (poll(&p, 1, 50) != 1)
			continue;
		int client = accept(px->fd, NULL, NULL);
		struct lossy_conn *lc = malloc(sizeof(*lc));
		pthread_t t;
		if (client < 0 || lc == NULL) {
			if (client >= 0)
				close(client);
			free(lc);
			continue;
		}
		*lc = (struct lossy_conn){ px, client };
		atomic_fetch_add(&px->relays, 1);
		if (pthread_create(&t, NULL, lossy_relay, lc) != 0) {
			atomic_fetch_sub(&px->relays, 1);
			close(client);
			free(lc);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static void lossy_start(struct lossy *px, const struct trl_redis *r)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memset(px, 0, sizeof(*px));
	px->upstream = r->sock;
	snprintf(px->path, sizeof(px->path), "%s/lossy.sock", r->dir);
	snprintf(px->url, sizeof(px->url), "unix:%s", px->path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", px->path);
	unlink(px->path);
	px->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(px->fd >= 0);
	assert_int_equal(bind(px->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(px->fd, 16), 0);
	assert_int_equal(pthread_create(&px->thread, NULL, lossy_accept, px), 0);
}

/* Call after closing every store that used it. */
static void lossy_stop(struct lossy *px)
{
	atomic_store(&px->stop, true);
	pthread_join(px->thread, NULL);
	close(px->fd);
	unlink(px->path);
	while (atomic_load(&px->relays) > 0)
		trl_sleep_ms(10);
}

/* Tokens used in a bucket, read straight from Redis (not through the proxy). */
static double used(const char *key, unsigned long count, unsigned long period_ms)
{
	struct store *direct = open_store(plain.url, NULL, 500);
	struct store_bucket b = { key, count, period_ms, 0, { 0 } };
	struct store_level lv;
	char err[256];
	assert_int_equal(store_peek(direct, &b, 1, &lv, NULL, err, sizeof(err)), STORE_OK);
	store_close(direct);
	return lv.used;
}

/* Sure to be exact: a month-long bucket refills 0.0004 tokens a second. */
#define MONTH_MS 2592000000UL

static void charge_retried_after_a_lost_reply_is_counted_once(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	struct lossy px;
	trl_class(&c, "lossy");
	c.messages[c.messages_count++] = trl_rate(10, MONTH_MS);
	c.recipients[c.recipients_count++] = trl_rate(10, MONTH_MS);
	trl_add_volume(&c, 100, 3600000);
	lossy_start(&px, &plain);
	struct store *st = open_store(px.url, NULL, 500);

	/* the first call leaves a pooled connection through the proxy */
	assert_int_equal(ratelimit_check_recipients(st, &c, DIRECTION_OUTBOUND, "lc", NULL, 1, &r, &v),
			 RATELIMIT_OK);
	atomic_store(&px.armed, true);
	assert_int_equal(ratelimit_check_recipients(st, &c, DIRECTION_OUTBOUND, "lc", NULL, 1, &r, &v),
			 RATELIMIT_OK);
	assert_int_equal(atomic_load(&px.lost), 1);
	assert_in_range((long)(used("{lc}:lossy:r:10/2592000000", 10, MONTH_MS) * 1000), 1990, 2000);
	/* what made it so: each call's once key, in the account's hash slot,
	 * living a few RedisTimeouts (500 ms here) plus a margin */
	redisContext *raw = trl_redis_raw(&plain);
	redisReply *keys = redisCommand(raw, "KEYS bm:{lc}:once:*");
	assert_non_null(keys);
	assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
	assert_int_equal(keys->elements, 2);
	redisReply *ttl = redisCommand(raw, "PTTL %s", keys->element[0]->str);
	assert_in_range(ttl->integer, 5000, 4 * 500 + 10000);
	freeReplyObject(ttl);
	freeReplyObject(keys);
	redisFree(raw);

	/* a message: its bucket and its volume window count it once */
	assert_int_equal(ratelimit_check_message(st, &c, DIRECTION_OUTBOUND, "lc", &r, &v),
			 RATELIMIT_OK);
	atomic_store(&px.armed, true);
	assert_int_equal(ratelimit_check_message(st, &c, DIRECTION_OUTBOUND, "lc", &r, &v),
			 RATELIMIT_OK);
	assert_int_equal(v.volume[0], 1);	/* what the first attempt saw */
	assert_int_equal(atomic_load(&px.lost), 2);
	assert_in_range((long)(used("{lc}:lossy:m:10/2592000000", 10, MONTH_MS) * 1000), 1990, 2000);
	assert_int_equal(ratelimit_check_message(st, &c, DIRECTION_OUTBOUND, "lc", &r, &v),
			 RATELIMIT_OK);
	assert_int_equal(v.volume[0], 2);

	ratelimit_receipt_clear(&r);
	store_close(st);
	lossy_stop(&px);
}

static void refund_retried_after_a_lost_reply_gives_back_once(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt kept = { 0 }, r = { 0 };
	struct ratelimit_verdict v;
	struct lossy px;
	trl_class(&c, "lossy");
	c.recipients[c.recipients_count++] = trl_rate(10, MONTH_MS);
	lossy_start(&px, &plain);
	struct store *st = open_store(px.url, NULL, 500);

	/* 5 tokens another transaction keeps, then 2 of this one */
	assert_int_equal(ratelimit_check_recipients(st, &c, DIRECTION_OUTBOUND, "lr", NULL, 5, &kept, &v),
			 RATELIMIT_OK);
	ratelimit_receipt_clear(&kept);
	assert_int_equal(ratelimit_check_recipients(st, &c, DIRECTION_OUTBOUND, "lr", NULL, 2, &r, &v),
			 RATELIMIT_OK);
	assert_in_range((long)(used("{lr}:lossy:r:10/2592000000", 10, MONTH_MS) * 1000), 6990, 7000);
	atomic_store(&px.armed, true);
	ratelimit_refund(st, &r);
	assert_int_equal(atomic_load(&px.lost), 1);
	/* the 2 came back once: the other transaction's 5 stay charged */
	assert_in_range((long)(used("{lr}:lossy:r:10/2592000000", 10, MONTH_MS) * 1000), 4990, 5000);

	store_close(st);
	lossy_stop(&px);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dead_redis_fails_fast_backs_off_and_resumes_after_restart),
		cmocka_unit_test(stalled_redis_costs_one_timeout_then_backs_off),
		cmocka_unit_test(restarted_redis_is_used_again_without_a_failure),
		cmocka_unit_test(password_file_logs_in),
		cmocka_unit_test(password_in_the_url_and_database_number_are_used),
		cmocka_unit_test(wrong_or_missing_password_fails_cleanly),
		cmocka_unit_test(charge_retried_after_a_lost_reply_is_counted_once),
		cmocka_unit_test(refund_retried_after_a_lost_reply_gives_back_once),
	};
	signal(SIGPIPE, SIG_IGN);
	trl_redis_start(&plain, 0, "");
	trl_redis_start(&locked, trl_free_port(1), PASSWORD);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	char path[96];
	snprintf(path, sizeof(path), "%s/password", locked.dir);
	unlink(path);
	trl_redis_cleanup(&plain);
	trl_redis_cleanup(&locked);
	return failed;
}
