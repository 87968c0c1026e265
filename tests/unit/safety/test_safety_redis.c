/*
 * Account safety against a private redis-server: safety_suspend (the
 * trip found outside a charge, for bounce and complaint rates) makes the
 * suspension the charge script reads, and the next charge of the account
 * is stopped with the rule as "by"; the suspensions bulkmilterctl makes,
 * lists (by prefix) and releases.
 */
#include "unit.h"

#include <stdlib.h>

#include "metrics.h"
#include "policy.h"
#include "ratelimit.h"
#include "safety.h"
#include "test_ratelimit_redis.h"

static struct trl_redis redis;

static unsigned long metric_value(const char *name)
{
	static char text[16384];
	metrics_format(text, sizeof(text));
	char want[128];
	snprintf(want, sizeof(want), "\n%s ", name);
	const char *p = strstr(text, want);
	assert_non_null(p);
	return strtoul(p + strlen(want), NULL, 10);
}

static void safety_suspend_stops_the_next_charge_with_the_rule(void **state)
{
	(void)state;
	struct diag d = { 0 };
	struct policy *p = policy_load(unit_file(
		"class news {\n"
		"  messages 10/1h\n"
		"  suspend-if bounce-rate > 5% min 200/1d\n"
		"  suspend-for 1h\n"
		"}\n"), &d);
	diag_print(&d, stderr);
	assert_non_null(p);
	const struct policy_class *c = policy_class_at(p, 0);
	struct store *st = trl_store_open(&redis, 500);
	assert_non_null(st);
	char err[256];
	unsigned long trips = metric_value("bulkmilter_rule_trips_total");

	assert_int_equal(safety_suspend(st, c, DIRECTION_OUTBOUND, "news@example.com", &c->suspend_if[0],
					14, "bounce-rate > 5% min 200/1d (14 of 210)", "REPORT1", err,
					sizeof(err)), 0);
	assert_int_equal(metric_value("bulkmilter_rule_trips_total"), trips + 1);

	redisContext *raw = trl_redis_raw(&redis);
	redisReply *r = redisCommand(raw, "HMGET bm:{news@example.com}:susp by reason account");
	assert_non_null(r);
	assert_int_equal(r->elements, 3);
	assert_string_equal(r->element[0]->str, "bounce-rate > 5% min 200/1d");
	assert_string_equal(r->element[1]->str, "bounce-rate > 5% min 200/1d (14 of 210)");
	assert_string_equal(r->element[2]->str, "news@example.com");
	freeReplyObject(r);
	r = redisCommand(raw, "PTTL bm:{news@example.com}:susp");
	assert_true(r->integer > 3500000 && r->integer <= 3600000);
	freeReplyObject(r);
	redisFree(raw);

	struct ratelimit_receipt rc = { 0 };
	struct ratelimit_verdict v;
	assert_int_equal(ratelimit_check_message_from(st, c, DIRECTION_OUTBOUND, "news@example.com",
						      "192.0.2.1", &rc, &v), RATELIMIT_SUSPENDED);
	assert_int_equal(v.safety.suspended, STORE_SUSPENDED);
	assert_string_equal(v.safety.by, "bounce-rate > 5% min 200/1d");
	assert_int_equal(rc.events, 0);
	/* the inbound account of that name is another account */
	assert_int_equal(ratelimit_check_message_from(st, c, DIRECTION_INBOUND, "news@example.com",
						      "192.0.2.1", &rc, &v), RATELIMIT_OK);
	ratelimit_refund(st, &rc);
	store_close(st);
	policy_free(p);
}

static void suspensions_are_listed_and_released(void **state)
{
	(void)state;
	struct store *st = trl_store_open(&redis, 500);
	assert_non_null(st);
	struct safety_suspension *list;
	size_t n;
	long long since, until;
	bool released;
	char err[256];

	assert_int_equal(safety_store_suspend(st, DIRECTION_OUTBOUND, "b@example.com", 0, "ctl", "test",
					      &since, &until, err, sizeof(err)), 0);
	assert_int_equal(until, 0);
	assert_int_equal(safety_store_suspend(st, DIRECTION_OUTBOUND, "a@example.com", 60000, "ctl", "",
					      &since, &until, err, sizeof(err)), 0);
	assert_int_equal(until - since, 60000);
	assert_int_equal(safety_store_list(st, "bm:", &list, &n, err, sizeof(err)), 0);
	/* news@example.com from the test before, a and b */
	assert_int_equal(n, 3);
	bool seen_b = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].account, "b@example.com") == 0) {
			seen_b = true;
			assert_string_equal(list[i].by, "ctl");
			assert_string_equal(list[i].reason, "test");
			assert_int_equal(list[i].until_ms, 0);
		}
	assert_true(seen_b);
	free(list);
	/* another deployment's prefix sees none of them */
	assert_int_equal(safety_store_list(st, "bm2:", &list, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(list);

	assert_int_equal(safety_store_release(st, DIRECTION_OUTBOUND, "b@example.com", &released, err,
					      sizeof(err)), 0);
	assert_true(released);
	assert_int_equal(safety_store_release(st, DIRECTION_OUTBOUND, "b@example.com", &released, err,
					      sizeof(err)), 0);
	assert_false(released);
	assert_int_equal(safety_store_list(st, "bm:", &list, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	free(list);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(safety_suspend_stops_the_next_charge_with_the_rule),
		cmocka_unit_test(suspensions_are_listed_and_released),
	};
	trl_redis_start(&redis, 0, "");
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	trl_redis_cleanup(&redis);
	unit_cleanup();
	return rc;
}
