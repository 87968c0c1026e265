/*
 * What bulkmilterctl asks of the rate limits: "usage ACCOUNT" lists the
 * buckets in use for every class of the policy (and, ratelimit_usage_in,
 * every bucket of the account's class), "reset ACCOUNT" deletes
 * them all (volume windows too). Uses the real policy parser and a
 * private Redis.
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

static struct trl_redis redis;
static struct store *st;
static struct policy *pol;
static char policy_path[96];

static const char policy_text[] =
	"class std {\n"
	"    account    sasl\n"
	"    messages   5/1m 50/1h\n"
	"    recipients 10/1h\n"
	"    bulk       volume >= 3/1m\n"
	"}\n"
	"class other {\n"
	"    account    sasl\n"
	"    messages   2/1h\n"
	"}\n"
	"class unlimited { }\n"
	"assign outbound std\n";

static int group_setup(void **state)
{
	(void)state;
	struct diag d = { 0 };
	st = trl_store_open(&redis, 500);
	snprintf(policy_path, sizeof(policy_path), "%s/test.policy", redis.dir);
	FILE *fp = fopen(policy_path, "w");
	if (fp == NULL)
		return 1;
	fputs(policy_text, fp);
	fclose(fp);
	pol = policy_load(policy_path, &d);
	diag_print(&d, stderr);
	diag_free(&d);
	return st == NULL || pol == NULL;
}

static int group_teardown(void **state)
{
	(void)state;
	policy_free(pol);
	store_close(st);
	unlink(policy_path);
	return 0;
}

static void charge_as(enum policy_direction dir, const char *cls, const char *account, int messages,
		      unsigned long rcpts)
{
	const struct policy_class *c = policy_class_find(pol, cls);
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	assert_non_null(c);
	for (int i = 0; i < messages; i++)
		assert_int_equal(ratelimit_check_message(st, c, dir, account, &r, &v), RATELIMIT_OK);
	if (rcpts)
		assert_int_equal(ratelimit_check_recipients(st, c, dir, account, NULL, rcpts, &r, &v), RATELIMIT_OK);
	ratelimit_receipt_clear(&r);
}

static void charge(const char *cls, const char *account, int messages, unsigned long rcpts)
{
	charge_as(DIRECTION_OUTBOUND, cls, account, messages, rcpts);
}

static long long raw_exists(const char *key)
{
	redisContext *c = trl_redis_raw(&redis);
	redisReply *r = redisCommand(c, "EXISTS %s", key);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	long long v = r->integer;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

static void assert_usage(const struct ratelimit_usage *u, const char *cls, const char *kind,
			 const char *rate, double used, long full_lo, long full_hi)
{
	assert_string_equal(u->cls->name, cls);
	assert_string_equal(u->kind, kind);
	assert_string_equal(u->rate->text, rate);
	assert_in_range((long)(u->used * 1000), (long)(used * 1000) - 10, (long)(used * 1000));
	assert_true(u->left > (double)u->rate->count - used - 0.0001);
	assert_in_range(u->full_in_ms, full_lo, full_hi);
}

static void usage_lists_buckets_in_use_for_every_class(void **state)
{
	(void)state;
	struct ratelimit_usage u[16];
	size_t n = 99;
	char err[256];

	charge("std", "alice", 2, 3);
	charge("other", "alice", 1, 0);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "alice", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 4);
	assert_usage(&u[0], "std", "messages", "5/1m", 2, 23000, 24000);
	assert_usage(&u[1], "std", "messages", "50/1h", 2, 143000, 144000);
	assert_usage(&u[2], "std", "recipients", "10/1h", 3, 1079000, 1080000);
	assert_usage(&u[3], "other", "messages", "2/1h", 1, 1799000, 1800000);

	/* an account with nothing in use has no buckets, and that is fine */
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "nobody", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	/* more buckets than the caller has room for is an error, not a cut list */
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "alice", u, 2, &n, err, sizeof(err)), -1);
	assert_string_equal(err, "more than 2 buckets in use");
}

/* A full bucket: used 0, left its whole count, full now. */
static void assert_full(const struct ratelimit_usage *u, const char *cls, const char *kind, const char *rate)
{
	assert_string_equal(u->cls->name, cls);
	assert_string_equal(u->kind, kind);
	assert_string_equal(u->rate->text, rate);
	assert_true(u->used == 0.0);
	assert_true(u->left == (double)u->rate->count);
	assert_int_equal(u->full_in_ms, 0);
}

/* bulkmilterctl usage: the class the account is assigned to, even full. */
static void usage_in_lists_the_assigned_class_even_full(void **state)
{
	(void)state;
	struct ratelimit_usage u[16];
	const struct policy_class *home[1] = { policy_class_find(pol, "std") };
	size_t n = 99;
	char err[256];

	assert_int_equal(ratelimit_usage_in(st, pol, DIRECTION_OUTBOUND, "fresh", home, 1, u, 16, &n, err,
					    sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_full(&u[0], "std", "messages", "5/1m");
	assert_full(&u[1], "std", "messages", "50/1h");
	assert_full(&u[2], "std", "recipients", "10/1h");
	/* a bucket in use in another class is still listed beside them */
	charge("other", "fresh", 1, 0);
	assert_int_equal(ratelimit_usage_in(st, pol, DIRECTION_OUTBOUND, "fresh", home, 1, u, 16, &n, err,
					    sizeof(err)), 0);
	assert_int_equal(n, 4);
	assert_full(&u[0], "std", "messages", "5/1m");
	assert_usage(&u[3], "other", "messages", "2/1h", 1, 1799000, 1800000);
	/* without an assigned class, only what is in use */
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "fresh", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
}

static void reset_deletes_every_key_of_the_account_only(void **state)
{
	(void)state;
	struct ratelimit_usage u[16];
	size_t n;
	char err[256];

	charge("std", "carol", 1, 1);
	charge("other", "carol", 1, 0);
	charge("std", "dave", 1, 0);
	assert_int_equal(raw_exists("bm:{carol}:std:v:60000"), 1);
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_OUTBOUND, "carol", RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), 0);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "carol", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_int_equal(raw_exists("bm:{carol}:std:v:60000"), 0);
	assert_int_equal(raw_exists("bm:{carol}:other:m:2/3600000"), 0);
	/* volume starts again from zero */
	const struct policy_class *c = policy_class_find(pol, "std");
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "carol", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[0], 0);
	ratelimit_receipt_clear(&r);
	/* another account keeps its buckets */
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "dave", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	/* resetting an account with nothing in use is fine too */
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_OUTBOUND, "nobody", RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), 0);
}

/*
 * A stranger whose MAIL FROM names a local account charges the inbound
 * account of that name, never the outbound one: each side has its own
 * keys (outbound ones named as before inbound ones were marked, both
 * under the account's hash tag), refunds go back to the side charged,
 * and usage and reset reach one side only.
 */
static void inbound_and_outbound_accounts_of_one_name_are_apart(void **state)
{
	(void)state;
	const struct policy_class *c = policy_class_find(pol, "std");
	struct ratelimit_usage u[16];
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	size_t n;
	char err[256];

	charge_as(DIRECTION_INBOUND, "std", "erin", 5, 2);
	assert_int_equal(raw_exists("bm:in{erin}:std:m:5/60000"), 1);
	assert_int_equal(raw_exists("bm:in{erin}:std:r:10/3600000"), 1);
	assert_int_equal(raw_exists("bm:in{erin}:std:v:60000"), 1);
	assert_int_equal(raw_exists("bm:{erin}:std:m:5/60000"), 0);
	assert_int_equal(raw_exists("bm:{erin}:std:r:10/3600000"), 0);
	assert_int_equal(raw_exists("bm:{erin}:std:v:60000"), 0);
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_INBOUND, "erin", &r, &v), RATELIMIT_OVER);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "erin", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);

	/* the outbound account still has its whole quota, and its volume */
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "erin", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[0], 0);
	ratelimit_refund(st, &r);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "erin", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	charge("std", "erin", 4, 0);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "erin", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_usage(&u[1], "std", "messages", "50/1h", 4, 287000, 288000);
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_INBOUND, "erin", u, 16, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_usage(&u[1], "std", "messages", "50/1h", 5, 359000, 360000);
	assert_usage(&u[2], "std", "recipients", "10/1h", 2, 719000, 720000);

	/* reset reaches the side it is asked for */
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_INBOUND, "erin", RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), 0);
	assert_int_equal(raw_exists("bm:in{erin}:std:m:5/60000"), 0);
	assert_int_equal(raw_exists("bm:in{erin}:std:v:60000"), 0);
	assert_int_equal(raw_exists("bm:{erin}:std:m:5/60000"), 1);
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_OUTBOUND, "erin", RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), 0);
	assert_int_equal(raw_exists("bm:{erin}:std:m:5/60000"), 0);
}

static void usage_and_reset_report_a_dead_store(void **state)
{
	(void)state;
	struct settings s;
	struct diag d = { 0 };
	struct ratelimit_usage u[4];
	size_t n;
	char err[256];
	trl_settings(&s, &redis, 200);
	s.redis_url = (char *)"unix:/nonexistent/bm-redis.sock";
	struct store *dead = store_open(&s, &d);
	assert_non_null(dead);
	assert_int_equal(ratelimit_usage(dead, pol, DIRECTION_OUTBOUND, "alice", u, 4, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/bm-redis.sock: connect"));
	assert_int_equal(ratelimit_reset(dead, pol, DIRECTION_OUTBOUND, "alice", RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), -1);
	assert_string_equal(err, "redis unavailable (backoff)");
	store_close(dead);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(usage_lists_buckets_in_use_for_every_class),
		cmocka_unit_test(usage_in_lists_the_assigned_class_even_full),
		cmocka_unit_test(reset_deletes_every_key_of_the_account_only),
		cmocka_unit_test(inbound_and_outbound_accounts_of_one_name_are_apart),
		cmocka_unit_test(usage_and_reset_report_a_dead_store),
	};
	signal(SIGPIPE, SIG_IGN);
	trl_redis_start(&redis, 0, "");
	int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
	trl_redis_cleanup(&redis);
	return failed;
}
