/*
 * Rate limits against a real, private Redis: charging, all-or-none over
 * several rates, refunds, refill, expiry, volume windows, the NOSCRIPT
 * fallback and concurrency. Each test uses its own account, so tests do
 * not share buckets.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit.h"
#include "store.h"
#include "test_ratelimit_redis.h"

static struct trl_redis redis;
static struct store *st;

static int group_setup(void **state)
{
	(void)state;
	st = trl_store_open(&redis, 500);
	return st == NULL;
}

static int group_teardown(void **state)
{
	(void)state;
	store_close(st);
	return 0;
}

/* The value of a raw Redis command that returns an integer. */
static long long raw_int(const char *fmt, ...)
{
	redisContext *c = trl_redis_raw(&redis);
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	long long v = r->integer;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

/* Tokens used in a bucket, read through the store. */
static double used(const char *key, unsigned long count, unsigned long period_ms)
{
	struct store_bucket b = { key, count, period_ms, 0, { 0 } };
	struct store_level lv;
	char err[256];
	assert_int_equal(store_peek(st, &b, 1, &lv, NULL, err, sizeof(err)), STORE_OK);
	return lv.used;
}

static enum ratelimit_status msg(const struct policy_class *c, const char *account,
				 struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	return ratelimit_check_message(st, c, DIRECTION_OUTBOUND, account, r, v);
}

static enum ratelimit_status rcpt(const struct policy_class *c, const char *account, unsigned long n,
				  struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	return ratelimit_check_recipients(st, c, DIRECTION_OUTBOUND, account, NULL, n, r, v);
}

static void messages_are_admitted_until_the_bucket_is_empty(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "std");
	c.messages[c.messages_count++] = trl_rate(5, 60000);

	for (int i = 0; i < 5; i++)
		assert_int_equal(msg(&c, "fill", &r, &v), RATELIMIT_OK);
	assert_int_equal(r.events, 5);
	assert_int_equal(msg(&c, "fill", &r, &v), RATELIMIT_OVER);
	assert_ptr_equal(v.rate, &c.messages[0]);
	assert_string_equal(v.kind, "messages");
	/* one token comes back every 12 s */
	assert_in_range(v.retry_ms, 11000, 12000);
	assert_int_equal(r.events, 5);
	assert_int_equal(msg(&c, "fill", &r, &v), RATELIMIT_OVER);
	/* another account has its own bucket */
	struct ratelimit_receipt r2 = { 0 };
	assert_int_equal(msg(&c, "fill2", &r2, &v), RATELIMIT_OK);
	assert_in_range((long)(used("{fill}:std:m:5/60000", 5, 60000) * 1000), 4990, 5000);
	ratelimit_receipt_clear(&r);
	ratelimit_receipt_clear(&r2);
	assert_null(r.charges);
	assert_int_equal(r.events, 0);
}

static void tighter_rate_governs_and_a_full_bucket_charges_no_other(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "two");
	c.messages[c.messages_count++] = trl_rate(5, 60000);
	c.messages[c.messages_count++] = trl_rate(8, 3600000);

	for (int i = 0; i < 5; i++)
		assert_int_equal(msg(&c, "two", &r, &v), RATELIMIT_OK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(msg(&c, "two", &r, &v), RATELIMIT_OVER);
		assert_ptr_equal(v.rate, &c.messages[0]);
	}
	/* the 1h bucket was charged 5 times, not 8 */
	assert_in_range((long)(used("{two}:two:m:8/3600000", 8, 3600000) * 1000), 4990, 5000);
	ratelimit_receipt_clear(&r);

	/* the other way round: the 1h bucket is empty, the 1m one must stay at 3 */
	struct policy_class d;
	trl_class(&d, "rev");
	d.messages[d.messages_count++] = trl_rate(10, 60000);
	d.messages[d.messages_count++] = trl_rate(3, 3600000);
	for (int i = 0; i < 3; i++)
		assert_int_equal(msg(&d, "rev", &r, &v), RATELIMIT_OK);
	assert_int_equal(msg(&d, "rev", &r, &v), RATELIMIT_OVER);
	assert_ptr_equal(v.rate, &d.messages[1]);
	assert_in_range(v.retry_ms, 1100000, 1200000);
	assert_in_range((long)(used("{rev}:rev:m:10/60000", 10, 60000) * 1000), 2990, 3000);
	ratelimit_receipt_clear(&r);

	/* both empty: the first in class order is reported */
	struct policy_class e;
	trl_class(&e, "both");
	e.messages[e.messages_count++] = trl_rate(2, 60000);
	e.messages[e.messages_count++] = trl_rate(2, 3600000);
	assert_int_equal(msg(&e, "both", &r, &v), RATELIMIT_OK);
	assert_int_equal(msg(&e, "both", &r, &v), RATELIMIT_OK);
	assert_int_equal(msg(&e, "both", &r, &v), RATELIMIT_OVER);
	assert_ptr_equal(v.rate, &e.messages[0]);
	/* the wait is the longer one: until both have a token */
	assert_in_range(v.retry_ms, 1790000, 1800000);
	ratelimit_receipt_clear(&r);
}

static void refund_restores_every_token_of_the_receipt(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "ref");
	c.messages[c.messages_count++] = trl_rate(4, 3600000);
	c.recipients[c.recipients_count++] = trl_rate(3, 3600000);
	c.recipients[c.recipients_count++] = trl_rate(100, 86400000);

	assert_int_equal(msg(&c, "ref", &r, &v), RATELIMIT_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rcpt(&c, "ref", 1, &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "ref", 1, &r, &v), RATELIMIT_OVER);
	assert_string_equal(v.kind, "recipients");
	assert_ptr_equal(v.rate, &c.recipients[0]);
	/* three recipient events share one entry */
	assert_int_equal(r.events, 4);
	assert_int_equal(r.n, 2);

	ratelimit_refund(st, &r);
	assert_int_equal(r.events, 0);
	assert_int_equal(r.n, 0);
	assert_null(r.charges);
	assert_true(used("{ref}:ref:m:4/3600000", 4, 3600000) == 0);
	assert_true(used("{ref}:ref:r:3/3600000", 3, 3600000) == 0);
	assert_true(used("{ref}:ref:r:100/86400000", 100, 86400000) == 0);
	/* a full bucket is no key at all */
	assert_int_equal(raw_int("EXISTS bm:{ref}:ref:r:3/3600000"), 0);
	assert_int_equal(rcpt(&c, "ref", 3, &r, &v), RATELIMIT_OK);
	ratelimit_receipt_clear(&r);

	/* a refund gives back only its own tokens: others' charges stay */
	struct ratelimit_receipt other = { 0 };
	assert_int_equal(msg(&c, "ref2", &other, &v), RATELIMIT_OK);
	assert_int_equal(msg(&c, "ref2", &r, &v), RATELIMIT_OK);
	ratelimit_refund(st, &r);
	ratelimit_refund(st, &r);			/* empty now: nothing happens */
	assert_in_range((long)(used("{ref2}:ref:m:4/3600000", 4, 3600000) * 1000), 990, 1000);
	ratelimit_receipt_clear(&other);

	/* and never makes a bucket hold more than its count */
	assert_int_equal(msg(&c, "ref3", &r, &v), RATELIMIT_OK);
	assert_int_equal(raw_int("DEL bm:{ref3}:ref:m:4/3600000"), 1);	/* full again */
	ratelimit_refund(st, &r);
	assert_int_equal(raw_int("EXISTS bm:{ref3}:ref:m:4/3600000"), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(msg(&c, "ref3", &r, &v), RATELIMIT_OK);
	assert_int_equal(msg(&c, "ref3", &r, &v), RATELIMIT_OVER);
	ratelimit_receipt_clear(&r);
}

static void empty_receipt_refund_costs_no_round_trip(void **state)
{
	(void)state;
	struct ratelimit_receipt r = { 0 };
	struct store_stats before, after;
	store_get_stats(st, &before);
	ratelimit_refund(st, &r);
	store_get_stats(st, &after);
	assert_int_equal(after.calls, before.calls);

	/* nor does a class without rates or volume */
	struct policy_class c;
	struct ratelimit_verdict v;
	trl_class(&c, "none");
	assert_int_equal(msg(&c, "x", &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "x", 5, &r, &v), RATELIMIT_OK);
	store_get_stats(st, &after);
	assert_int_equal(after.calls, before.calls);
	assert_int_equal(r.events, 0);
}

static void recipients_at_end_of_message_are_charged_at_once(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "local");
	c.recipients[c.recipients_count++] = trl_rate(10, 3600000);

	assert_int_equal(rcpt(&c, "local", 7, &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "local", 4, &r, &v), RATELIMIT_OVER);	/* 3 left: none taken */
	assert_int_equal(rcpt(&c, "local", 3, &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "local2", 11, &r, &v), RATELIMIT_OVER);
	assert_int_equal(v.retry_ms, -1);				/* never fits */
	assert_int_equal(r.events, 2);
	ratelimit_refund(st, &r);
	assert_int_equal(rcpt(&c, "local", 10, &r, &v), RATELIMIT_OK);
	ratelimit_receipt_clear(&r);
}

static void bucket_refills_evenly_over_its_period(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "fast");
	c.recipients[c.recipients_count++] = trl_rate(5, 1000);

	for (int i = 0; i < 5; i++)
		assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OVER);
	assert_in_range(v.retry_ms, 150, 200);
	trl_sleep_ms(v.retry_ms + 15);
	assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OK);	/* one token back */
	assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OVER);
	trl_sleep_ms(1050);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OK);	/* full again */
	assert_int_equal(rcpt(&c, "fast", 1, &r, &v), RATELIMIT_OVER);
	ratelimit_receipt_clear(&r);
}

static void keys_expire_when_the_bucket_is_full_again(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "exp");
	c.messages[c.messages_count++] = trl_rate(5, 1000);
	trl_add_volume(&c, 100, 300);

	assert_int_equal(msg(&c, "exp", &r, &v), RATELIMIT_OK);
	assert_int_equal(msg(&c, "exp", &r, &v), RATELIMIT_OK);
	/* two tokens refill in 400 ms; the window lives one period */
	assert_in_range(raw_int("PTTL bm:{exp}:exp:m:5/1000"), 300, 400);
	assert_in_range(raw_int("PTTL bm:{exp}:exp:v:300"), 250, 300);
	trl_sleep_ms(450);
	assert_int_equal(raw_int("EXISTS bm:{exp}:exp:m:5/1000"), 0);
	assert_int_equal(raw_int("EXISTS bm:{exp}:exp:v:300"), 0);
	ratelimit_receipt_clear(&r);
}

static void key_layout_names_prefix_account_class_kind_and_rate(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "plan-a");
	c.messages[c.messages_count++] = trl_rate(200, 3600000);
	c.recipients[c.recipients_count++] = trl_rate(1000, 3600000);
	trl_add_volume(&c, 5, 60000);

	assert_int_equal(msg(&c, "bob@example.com", &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "bob@example.com", 1, &r, &v), RATELIMIT_OK);
	assert_int_equal(raw_int("EXISTS bm:{bob@example.com}:plan-a:m:200/3600000"), 1);
	assert_int_equal(raw_int("EXISTS bm:{bob@example.com}:plan-a:r:1000/3600000"), 1);
	assert_int_equal(raw_int("EXISTS bm:{bob@example.com}:plan-a:v:60000"), 1);
	/* a plan change means fresh buckets */
	snprintf(c.name, sizeof(c.name), "plan-b");
	assert_int_equal(msg(&c, "bob@example.com", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[0], 0);
	assert_int_equal(raw_int("EXISTS bm:{bob@example.com}:plan-b:m:200/3600000"), 1);
	ratelimit_receipt_clear(&r);
}

static void volume_counts_the_messages_before_this_one(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "vol");
	c.bulk[c.bulk_count++].kind = BULK_PRECEDENCE;
	trl_add_volume(&c, 5, 60000);
	trl_add_volume(&c, 3, 60000);		/* same window, counted once */
	trl_add_volume(&c, 100, 3600000);

	for (unsigned long i = 0; i < 6; i++) {
		assert_int_equal(msg(&c, "vol", &r, &v), RATELIMIT_OK);
		assert_int_equal(v.volume[0], 0);	/* not a volume rule */
		assert_int_equal(v.volume[1], i);
		assert_int_equal(v.volume[2], i);
		assert_int_equal(v.volume[3], i);
	}
	/* the 6th message saw 5: "volume >= 5/1m" holds for it */
	assert_int_equal(r.events, 6);
	ratelimit_refund(st, &r);
	assert_int_equal(msg(&c, "vol", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[1], 0);
	assert_int_equal(v.volume[3], 0);
	ratelimit_receipt_clear(&r);
}

static void refused_message_is_not_counted_in_volume(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "volover");
	c.messages[c.messages_count++] = trl_rate(2, 60000);
	trl_add_volume(&c, 5, 60000);

	assert_int_equal(msg(&c, "vo", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[0], 0);
	assert_int_equal(msg(&c, "vo", &r, &v), RATELIMIT_OK);
	assert_int_equal(v.volume[0], 1);
	assert_int_equal(msg(&c, "vo", &r, &v), RATELIMIT_OVER);
	assert_int_equal(v.volume[0], 2);
	assert_int_equal(msg(&c, "vo", &r, &v), RATELIMIT_OVER);
	assert_int_equal(v.volume[0], 2);
	ratelimit_receipt_clear(&r);
}

static void lost_script_is_sent_again(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	trl_class(&c, "flush");
	c.recipients[c.recipients_count++] = trl_rate(3, 3600000);

	assert_int_equal(rcpt(&c, "flush", 1, &r, &v), RATELIMIT_OK);
	redisContext *raw = trl_redis_raw(&redis);
	redisReply *rep = redisCommand(raw, "SCRIPT FLUSH");
	assert_non_null(rep);
	freeReplyObject(rep);
	assert_int_equal(rcpt(&c, "flush", 1, &r, &v), RATELIMIT_OK);
	rep = redisCommand(raw, "SCRIPT FLUSH");
	freeReplyObject(rep);
	assert_int_equal(rcpt(&c, "flush", 1, &r, &v), RATELIMIT_OK);
	assert_int_equal(rcpt(&c, "flush", 1, &r, &v), RATELIMIT_OVER);
	rep = redisCommand(raw, "SCRIPT FLUSH");
	freeReplyObject(rep);
	ratelimit_refund(st, &r);		/* refund, too, survives a flush */
	assert_true(used("{flush}:flush:r:3/3600000", 3, 3600000) == 0);
	redisFree(raw);
}

struct racer {
	const struct policy_class *c;
	atomic_int *admitted;
	atomic_int *failed;
	pthread_barrier_t *start;
};

static void *race(void *arg)
{
	struct racer *x = arg;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	pthread_barrier_wait(x->start);
	for (int i = 0; i < 10; i++) {
		enum ratelimit_status s = ratelimit_check_recipients(st, x->c, DIRECTION_OUTBOUND, "race", NULL, 1,
								     &r, &v);
		if (s == RATELIMIT_OK)
			atomic_fetch_add(x->admitted, 1);
		else if (s == RATELIMIT_STORE_FAILED)
			atomic_fetch_add(x->failed, 1);
	}
	ratelimit_receipt_clear(&r);
	return NULL;
}

static void twenty_parallel_senders_get_exactly_fifty(void **state)
{
	(void)state;
	enum { THREADS = 20 };
	struct policy_class c;
	trl_class(&c, "race");
	c.recipients[c.recipients_count++] = trl_rate(50, 3600000);
	atomic_int admitted = 0, failed = 0;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, THREADS);
	pthread_t t[THREADS];
	struct racer x = { &c, &admitted, &failed, &start };

	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race, &x), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(atomic_load(&failed), 0);
	assert_int_equal(atomic_load(&admitted), 50);
}

static void missing_account_fails_without_a_charge(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	char longer[POLICY_ACCOUNT_MAX + 1];
	trl_class(&c, "acct");
	c.messages[c.messages_count++] = trl_rate(5, 60000);
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';

	assert_int_equal(msg(&c, "", &r, &v), RATELIMIT_STORE_FAILED);
	assert_non_null(strstr(v.reason, "no account"));
	assert_int_equal(msg(&c, NULL, &r, &v), RATELIMIT_STORE_FAILED);
	assert_int_equal(msg(&c, longer, &r, &v), RATELIMIT_STORE_FAILED);
	assert_int_equal(r.events, 0);
}

/*
 * No cap on events fails open: one message to 2,500 recipients against
 * recipients 1500/1d gets exactly 1,500 admitted and 1,000 over the
 * rate, never a store failure, in one receipt entry.
 */
static void every_recipient_is_counted_however_many(void **state)
{
	(void)state;
	struct policy_class c;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	int admitted = 0, over = 0, failed = 0;
	trl_class(&c, "many");
	c.recipients[c.recipients_count++] = trl_rate(1500, 86400000);

	for (int i = 0; i < 2500; i++)
		switch (rcpt(&c, "many", 1, &r, &v)) {
		case RATELIMIT_OK: admitted++; break;
		case RATELIMIT_OVER: over++; break;
		default: failed++; break;
		}
	assert_int_equal(failed, 0);
	assert_int_equal(admitted, 1500);
	assert_int_equal(over, 1000);
	assert_int_equal(r.events, 1500);
	assert_int_equal(r.n, 1);
	assert_in_range((long)(used("{many}:many:r:1500/86400000", 1500, 86400000) * 100),
			149990, 150000);
	ratelimit_refund(st, &r);
	assert_true(used("{many}:many:r:1500/86400000", 1500, 86400000) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(messages_are_admitted_until_the_bucket_is_empty),
		cmocka_unit_test(tighter_rate_governs_and_a_full_bucket_charges_no_other),
		cmocka_unit_test(refund_restores_every_token_of_the_receipt),
		cmocka_unit_test(empty_receipt_refund_costs_no_round_trip),
		cmocka_unit_test(recipients_at_end_of_message_are_charged_at_once),
		cmocka_unit_test(bucket_refills_evenly_over_its_period),
		cmocka_unit_test(keys_expire_when_the_bucket_is_full_again),
		cmocka_unit_test(key_layout_names_prefix_account_class_kind_and_rate),
		cmocka_unit_test(volume_counts_the_messages_before_this_one),
		cmocka_unit_test(refused_message_is_not_counted_in_volume),
		cmocka_unit_test(lost_script_is_sent_again),
		cmocka_unit_test(twenty_parallel_senders_get_exactly_fifty),
		cmocka_unit_test(missing_account_fails_without_a_charge),
		cmocka_unit_test(every_recipient_is_counted_however_many),
	};
	signal(SIGPIPE, SIG_IGN);
	trl_redis_start(&redis, 0, "");
	int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
	trl_redis_cleanup(&redis);
	return failed;
}
