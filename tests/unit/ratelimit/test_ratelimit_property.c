/*
 * Property test: random sequences of charges (random costs), refunds,
 * reads and clock jumps go through the Lua script on a real Redis and
 * through a plain C model of a token bucket and a sliding window; every
 * answer must agree exactly (admit or deny, which bucket, retry time,
 * volume counts, used tokens, time to full).
 *
 * The model is written from the definition, not from the script: a
 * bucket of COUNT tokens refilling over PERIOD ms is kept in
 * "token-milliseconds" (tokens x PERIOD), so COUNT comes back per ms and
 * everything is an integer; no gcd, no units, no expiry. Keys expiring in
 * Redis must not matter, because a key only expires once its bucket is
 * full. The store clock is shifted by a growing test offset
 * (store_set_clock_offset), and every call reports the clock it used, so
 * the model advances to exactly the same instant.
 */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store.h"
#include "test_ratelimit_redis.h"

#define STEPS 4000
#define SEED 0x5eed0b011cULL
#define MODEL_SLOTS_MAX 4096

static struct trl_redis redis;
static struct store *st;

struct model_bucket {
	long long count, period;
	long long used;			/* token-milliseconds */
	long long at;			/* clock of used */
};

struct model_window {
	long long period;
	long long slot[MODEL_SLOTS_MAX];	/* slot index -> events (sparse by index) */
	long long idx[MODEL_SLOTS_MAX];
	size_t n;
};

struct config {
	const char *name;
	unsigned long count[2], period[2];
	unsigned long window;
	unsigned long max_cost;
};

struct charge {
	unsigned long cost;
	long long at;
};

static uint64_t rng;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned long pick(unsigned long n)
{
	return (unsigned long)(next_random() % n);
}

static void model_refill(struct model_bucket *b, long long now)
{
	if (now > b->at) {
		b->used -= (now - b->at) * b->count;
		if (b->used < 0)
			b->used = 0;
		b->at = now;
	}
}

static long long ceil_div(long long a, long long b)
{
	return (a + b - 1) / b;
}

static long long window_slot_len(const struct model_window *w)
{
	return w->period / 60 > 0 ? w->period / 60 : 1;
}

/* Events in the window at now; forgets slots that left it. */
static long long model_volume(struct model_window *w, long long now)
{
	long long len = window_slot_len(w), slots = w->period / len, cur = now / len, sum = 0;
	size_t keep = 0;
	for (size_t i = 0; i < w->n; i++) {
		if (w->idx[i] <= cur - slots)
			continue;
		sum += w->slot[i];
		w->idx[keep] = w->idx[i];
		w->slot[keep++] = w->slot[i];
	}
	w->n = keep;
	return sum;
}

static void model_count(struct model_window *w, long long at, long long delta)
{
	long long idx = at / window_slot_len(w);
	for (size_t i = 0; i < w->n; i++)
		if (w->idx[i] == idx) {
			w->slot[i] += delta;
			if (w->slot[i] <= 0) {
				w->idx[i] = w->idx[w->n - 1];
				w->slot[i] = w->slot[--w->n];
			}
			return;
		}
	if (delta > 0) {
		assert_true(w->n < MODEL_SLOTS_MAX);
		w->idx[w->n] = idx;
		w->slot[w->n++] = delta;
	}
}

static void run(const struct config *cf)
{
	char keys[3][64], err[256];
	struct model_bucket mb[2];
	struct model_window *mw = calloc(1, sizeof(*mw));
	struct charge *admitted = calloc(STEPS, sizeof(*admitted));
	size_t nadmitted = 0;
	unsigned long stats[5] = { 0 };		/* admit, deny, refund, peek, jump */
	long long offset = 0;

	assert_non_null(mw);
	assert_non_null(admitted);
	store_set_clock_offset(st, 0);		/* fresh keys: the clock may restart */
	for (int i = 0; i < 2; i++) {
		snprintf(keys[i], sizeof(keys[i]), "{prop-%s}:b%d", cf->name, i);
		mb[i] = (struct model_bucket){ (long long)cf->count[i], (long long)cf->period[i], 0, 0 };
	}
	snprintf(keys[2], sizeof(keys[2]), "{prop-%s}:w", cf->name);
	mw->period = (long long)cf->window;

	for (int step = 0; step < STEPS; step++) {
		unsigned long op = pick(100);
		if (op < 50) {
			unsigned long cost = 1 + pick(cf->max_cost);
			struct store_bucket b[2] = {
				{ keys[0], cf->count[0], cf->period[0], cost, { 0 } },
				{ keys[1], cf->count[1], cf->period[1], cost, { 0 } },
			};
			struct store_window w = { keys[2], cf->window, 0 };
			struct store_charge_result res;
			assert_int_equal(store_charge(st, b, 2, &w, 1, &res, err, sizeof(err)), STORE_OK);

			long long now = res.now_ms, retry = 0;
			int over = -1;
			for (int i = 0; i < 2; i++) {
				model_refill(&mb[i], now);
				long long excess = mb[i].used + (long long)cost * mb[i].period
						   - mb[i].count * mb[i].period;
				if (excess <= 0)
					continue;
				if (over < 0)
					over = i;
				if ((long long)cost > mb[i].count)
					retry = -1;
				else if (retry >= 0 && ceil_div(excess, mb[i].count) > retry)
					retry = ceil_div(excess, mb[i].count);
			}
			long long volume = model_volume(mw, now);
			if (res.admitted != (over < 0) || (over >= 0 && (int)res.over != over)
			    || (over >= 0 && res.retry_ms != retry) || (long long)res.volume[0] != volume)
				fail_msg("%s step %d: charge %lu at %lld: store admitted=%d over=%zu retry=%ld "
					 "volume=%lu, model admitted=%d over=%d retry=%lld volume=%lld",
					 cf->name, step, cost, now, res.admitted, res.over, res.retry_ms,
					 res.volume[0], over < 0, over, retry, volume);
			if (over < 0) {
				for (int i = 0; i < 2; i++)
					mb[i].used += (long long)cost * mb[i].period;
				model_count(mw, now, 1);
				admitted[nadmitted++] = (struct charge){ cost, now };
				stats[0]++;
			} else {
				stats[1]++;
			}
		} else if (op < 70 && nadmitted > 0) {
			size_t k = pick(nadmitted);
			struct charge ch = admitted[k];
			admitted[k] = admitted[--nadmitted];
			struct store_bucket b[2] = {
				{ keys[0], cf->count[0], cf->period[0], ch.cost, { 0 } },
				{ keys[1], cf->count[1], cf->period[1], ch.cost, { 0 } },
			};
			struct store_window w = { keys[2], cf->window, ch.at };
			struct store_batch batch = { b, 2, &w, 1, 0 };
			assert_int_equal(store_refund(st, &batch, 1, err, sizeof(err)), STORE_OK);
			for (int i = 0; i < 2; i++) {
				model_refill(&mb[i], batch.now_ms);
				mb[i].used -= (long long)ch.cost * mb[i].period;
				if (mb[i].used < 0)
					mb[i].used = 0;
			}
			model_count(mw, ch.at, -1);
			stats[2]++;
		} else if (op < 80) {
			struct store_bucket b[2] = {
				{ keys[0], cf->count[0], cf->period[0], 0, { 0 } },
				{ keys[1], cf->count[1], cf->period[1], 0, { 0 } },
			};
			struct store_level lv[2];
			long long now;
			assert_int_equal(store_peek(st, b, 2, lv, &now, err, sizeof(err)), STORE_OK);
			for (int i = 0; i < 2; i++) {
				model_refill(&mb[i], now);
				double used = (double)mb[i].used / (double)mb[i].period;
				long full = mb[i].used > 0 ? (long)ceil_div(mb[i].used, mb[i].count) : 0;
				if (lv[i].used != used || lv[i].full_in_ms != full)
					fail_msg("%s step %d: peek bucket %d at %lld: store used=%.6f full_in=%ld, "
						 "model used=%.6f full_in=%ld", cf->name, step, i, now,
						 lv[i].used, lv[i].full_in_ms, used, full);
			}
			stats[3]++;
		} else {
			/* mostly small steps, sometimes past a whole period */
			offset += pick(20) == 0 ? (long long)pick(3 * cf->period[0] + 1)
						: (long long)pick(cf->period[0] / 4 + 2);
			store_set_clock_offset(st, offset);
			stats[4]++;
		}
	}
	/* a run that never denied or never admitted proves little */
	print_message("%s: %lu admitted, %lu denied, %lu refunds, %lu peeks, %lu clock jumps\n",
		      cf->name, stats[0], stats[1], stats[2], stats[3], stats[4]);
	assert_true(stats[0] > STEPS / 10);
	assert_true(stats[1] > STEPS / 10);
	assert_true(stats[2] > STEPS / 20);
	free(mw);
	free(admitted);
}

static void script_agrees_with_the_model_on_second_scale_buckets(void **state)
{
	(void)state;
	static const struct config cf = { "sec", { 7, 20 }, { 1000, 60000 }, 600, 8 };
	run(&cf);
}

static void script_agrees_with_the_model_on_uneven_rates(void **state)
{
	(void)state;
	static const struct config cf = { "uneven", { 3, 1000 }, { 250, 3600000 }, 60000, 4 };
	run(&cf);
}

static void script_agrees_with_the_model_on_millisecond_periods(void **state)
{
	(void)state;
	static const struct config cf = { "tiny", { 1, 5 }, { 1, 7 }, 59, 2 };
	run(&cf);
}

static int group_setup(void **state)
{
	(void)state;
	st = trl_store_open(&redis, 1000);
	return st == NULL;
}

static int group_teardown(void **state)
{
	(void)state;
	store_close(st);
	return 0;
}

static int reseed(void **state)
{
	(void)state;
	rng = SEED;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(script_agrees_with_the_model_on_second_scale_buckets, reseed),
		cmocka_unit_test_setup(script_agrees_with_the_model_on_uneven_rates, reseed),
		cmocka_unit_test_setup(script_agrees_with_the_model_on_millisecond_periods, reseed),
	};
	signal(SIGPIPE, SIG_IGN);
	trl_redis_start(&redis, 0, "");
	int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
	trl_redis_cleanup(&redis);
	return failed;
}
