/*
 * When Redis is gone, stalled, restarted or wants a password: the store
 * fails fast, backs off, resumes by itself, and never shows a password.
 */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	enum ratelimit_status s = ratelimit_check_recipients(st, c, DIRECTION_OUTBOUND, "acct", 1, &r, v);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dead_redis_fails_fast_backs_off_and_resumes_after_restart),
		cmocka_unit_test(stalled_redis_costs_one_timeout_then_backs_off),
		cmocka_unit_test(restarted_redis_is_used_again_without_a_failure),
		cmocka_unit_test(password_file_logs_in),
		cmocka_unit_test(password_in_the_url_and_database_number_are_used),
		cmocka_unit_test(wrong_or_missing_password_fails_cleanly),
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
