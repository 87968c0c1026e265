/*
 * Unit tests of account safety without Redis or HTTP: the policy lines
 * (notify, suspended, suspend-if, suspend-for), the JSON of events, the
 * bounded queue (drops counted), the safety part of a charge (keys,
 * counts per event kind, thresholds of the account's own buckets only)
 * and the IPv6 /64 of distinct-ips.
 */
#include "unit.h"

#include <stdlib.h>

#include "events.h"
#include "metrics.h"
#include "policy.h"
#include "safety.h"

static struct policy *load(const char *text, struct diag *d)
{
	return policy_load(unit_file(text), d);
}

static const struct policy_class *only_class(const char *text, struct policy **p)
{
	struct diag d = { 0 };
	*p = load(text, &d);
	diag_print(&d, stderr);
	assert_non_null(*p);
	diag_free(&d);
	return policy_class_at(*p, 0);
}

static void safety_lines_parse_with_their_meaning(void **state)
{
	(void)state;
	struct policy *p;
	const struct policy_class *c = only_class(
		"class hosting {\n"
		"  recipients 10/1h\n"
		"  notify 50% 100%\n"
		"  suspended reject \"Call support\"\n"
		"  suspend-if distinct-ips > 3/1h\n"
		"  suspend-if distinct-recipients > 50/1h\n"
		"  suspend-if deferred > 5/1h\n"
		"  suspend-if bounce-rate > 5% min 200/1d\n"
		"  suspend-if complaint-rate > 0.3%\n"
		"  suspend-for 2s\n"
		"}\n", &p);

	assert_int_equal(c->notify_count, 2);
	assert_int_equal(c->notify_pct[0], 50);
	assert_int_equal(c->notify_pct[1], 100);
	assert_int_equal(c->suspended, ACTION_REJECT);
	assert_string_equal(c->suspended_text, "Call support");
	assert_int_equal(c->suspend_for_ms, 2000);
	assert_int_equal(c->suspend_if_count, 5);
	assert_int_equal(c->suspend_if[0].kind, SUSPEND_DISTINCT_IPS);
	assert_int_equal(c->suspend_if[0].limit, 3);
	assert_int_equal(c->suspend_if[0].period_ms, 3600000);
	assert_string_equal(c->suspend_if[0].text, "distinct-ips > 3/1h");
	assert_int_equal(c->suspend_if[1].kind, SUSPEND_DISTINCT_RECIPIENTS);
	assert_int_equal(c->suspend_if[2].kind, SUSPEND_DEFERRED);
	assert_int_equal(c->suspend_if[2].limit, 5);
	assert_int_equal(c->suspend_if[3].kind, SUSPEND_BOUNCE_RATE);
	assert_true(c->suspend_if[3].share > 0.0499 && c->suspend_if[3].share < 0.0501);
	assert_int_equal(c->suspend_if[3].min, 200);
	assert_int_equal(c->suspend_if[3].min_period_ms, 86400000);
	assert_string_equal(c->suspend_if[3].text, "bounce-rate > 5% min 200/1d");
	assert_int_equal(c->suspend_if[4].kind, SUSPEND_COMPLAINT_RATE);
	assert_int_equal(c->suspend_if[4].min, 0);
	policy_free(p);
}

static void safety_defaults_are_hold_and_24h(void **state)
{
	(void)state;
	struct policy *p;
	const struct policy_class *c = only_class("class plain { messages 5/1h }\n", &p);

	assert_int_equal(c->suspended, ACTION_HOLD);
	assert_int_equal(c->suspend_for_ms, 24UL * 3600 * 1000);
	assert_int_equal(c->notify_count, 0);
	assert_int_equal(c->suspend_if_count, 0);
	assert_false(safety_wants_mail_event(c));
	policy_free(p);
}

static void safety_line_errors_name_file_and_line(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *text =
		"class bad {\n"
		"  notify 80% 50%\n"
		"  notify 0%\n"
		"  suspend-if distinct-ips 5/1h\n"
		"  suspend-if stolen > 5/1h\n"
		"  suspend-if deferred > 5/1h\n"
		"  suspend-if deferred > 6/1h\n"
		"  suspend-for 0s\n"
		"  suspended tag\n"
		"  suspend-for 1h\n"
		"  suspend-for 2h\n"
		"  suspend-if bounce-rate > 5 min 200/1d\n"
		"}\n";
	struct policy *p = load(text, &d);
	const char *path = unit_paths[unit_next - 1];

	assert_null(p);
	assert_true(unit_has_error(&d, path, 2, "notify: thresholds must ascend"));
	assert_true(unit_has_error(&d, path, 3, "notify: bad threshold 0%"));
	assert_true(unit_has_error(&d, path, 4, "suspend-if: expected KIND > LIMIT/PERIOD"));
	assert_true(unit_has_error(&d, path, 5, "suspend-if: unknown kind stolen"));
	assert_true(unit_has_error(&d, path, 7, "suspend-if: deferred already set for class bad"));
	assert_true(unit_has_error(&d, path, 8, "suspend-for: expected a duration from 1s to 365d"));
	assert_true(unit_has_error(&d, path, 9, "suspended: unknown action tag"));
	assert_true(unit_has_error(&d, path, 11, "suspend-for: already set for class bad at line 10"));
	assert_true(unit_has_error(&d, path, 12, "suspend-if bounce-rate: expected bounce-rate > P%"));
	diag_free(&d);
}

static void event_json_is_exact(void **state)
{
	(void)state;
	char buf[EVENTS_BODY_MAX], host[256] = "";
	struct event e = {
		.event = "threshold", .account = "al\"ice@example.com", .cls = "hosting",
		.time_ms = 1767225600000LL, .rate = "10/1h", .kind = "recipients", .used = 5,
		.limit = 10, .threshold_pct = 50, .resets_ms = 1767227400000LL,
	};

	gethostname(host, sizeof(host) - 1);
	size_t n = events_format(&e, buf, sizeof(buf));
	char want[EVENTS_BODY_MAX];
	snprintf(want, sizeof(want),
		 "{\"event\":\"threshold\",\"account\":\"al\\\"ice@example.com\",\"class\":\"hosting\","
		 "\"host\":\"%s\",\"time\":\"2026-01-01T00:00:00Z\",\"rate\":\"10/1h\","
		 "\"kind\":\"recipients\",\"used\":5,\"limit\":10,\"threshold\":\"50%%\","
		 "\"resets\":\"2026-01-01T00:30:00Z\"}", host);
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));

	e = (struct event){
		.event = "suspended", .account = "bob", .time_ms = 1767225600000LL,
		.rule = "distinct-ips > 3/1h", .reason = "distinct-ips > 3/1h (4)",
		.by = "distinct-ips > 3/1h", .until_ms = 1767312000000LL,
	};
	events_format(&e, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "{\"event\":\"suspended\",\"account\":\"bob\",\"host\":\"%s\","
		 "\"time\":\"2026-01-01T00:00:00Z\",\"rule\":\"distinct-ips > 3/1h\","
		 "\"reason\":\"distinct-ips > 3/1h (4)\",\"by\":\"distinct-ips > 3/1h\","
		 "\"until\":\"2026-01-02T00:00:00Z\"}", host);
	assert_string_equal(buf, want);
	assert_int_equal(events_format(&e, buf, 20), 0);
}

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

static void events_queue_is_bounded_and_drops_are_counted(void **state)
{
	(void)state;
	struct event e = { .event = "released", .account = "carol", .by = "ctl" };

	/* without NotifyURL nothing is queued, and nothing counts as dropped */
	events_set_url(NULL);
	assert_false(events_post(&e));
	unsigned long dropped = metric_value("bulkmilter_events_dropped_total");
	assert_int_equal(dropped, 0);

	/* no sender thread: the queue fills and the next event is dropped */
	events_set_url("http://127.0.0.1:9/hook");
	for (int i = 0; i < EVENTS_QUEUE_MAX; i++)
		assert_true(events_post(&e));
	assert_false(events_post(&e));
	assert_false(events_post(&e));
	assert_int_equal(metric_value("bulkmilter_events_dropped_total"), 2);
	events_stop();
}

static void safety_block_has_keys_counts_and_thresholds_of_the_event(void **state)
{
	(void)state;
	struct policy *p;
	const struct policy_class *c = only_class(
		"class h {\n"
		"  messages 100/1h\n"
		"  recipients 10/1h\n"
		"  notify 50% 100%\n"
		"  suspend-if distinct-ips > 3/1h\n"
		"  suspend-if distinct-recipients > 50/1h\n"
		"  suspend-if deferred > 5/1h\n"
		"  suspend-for 2s\n"
		"}\n", &p);
	struct safety_block b;
	struct store_bucket bk[2] = {
		{ .key = "{a@x}:h:r:10/3600000", .count = 10, .period_ms = 3600000, .cost = 1 },
		{ .key = "{d:x}:h:r:10/3600000", .count = 10, .period_ms = 3600000, .cost = 1 },
	};
	const struct policy_rate *rates[2] = { &c->recipients[0], &c->recipients[0] };
	bool msg[2] = { false, false };

	assert_true(safety_wants_mail_event(c));
	assert_int_equal(safety_block_build(&b, c, DIRECTION_OUTBOUND, "a@x", false, "r@y", bk,
					    rates, msg, 2), 0);
	assert_string_equal(b.sf.suspension_key, "{a@x}:susp");
	assert_int_equal(b.sf.suspend_for_ms, 2000);
	/* a recipient event counts distinct recipients and deferrals, not addresses */
	assert_int_equal(b.sf.ncounts, 2);
	assert_string_equal(b.counts[0].key, "{a@x}:h:si:distinct-recipients:50/3600000");
	assert_int_equal(b.counts[0].kind, STORE_COUNT_DISTINCT);
	assert_string_equal(b.counts[0].element, "r@y");
	assert_string_equal(b.counts[0].rule, "distinct-recipients > 50/1h");
	assert_int_equal(b.counts[1].kind, STORE_COUNT_REFUSED);
	assert_int_equal(b.counts[1].limit, 5);
	/* thresholds of the account's own bucket only, not its domain's */
	assert_int_equal(b.sf.nnotify, 2);
	assert_string_equal(b.notify[0].key, "{a@x}:h:n:r:10/1h:50");
	assert_int_equal(b.notify[0].bucket, 0);
	assert_int_equal(b.notify[1].pct, 100);
	safety_block_free(&b);

	assert_int_equal(safety_block_build(&b, c, DIRECTION_INBOUND, "a@x", true, "192.0.2.1", NULL,
					    NULL, NULL, 0), 0);
	assert_string_equal(b.sf.suspension_key, "in{a@x}:susp");
	assert_int_equal(b.sf.ncounts, 2);
	assert_string_equal(b.counts[0].key, "in{a@x}:h:si:distinct-ips:3/3600000");
	assert_string_equal(b.counts[0].element, "192.0.2.1");
	safety_block_free(&b);
	policy_free(p);
}

static void distinct_ips_counts_ipv6_by_64(void **state)
{
	(void)state;
	struct netaddr a;
	char buf[NETADDR_TEXT_MAX + 4];

	assert_int_equal(netaddr_parse("2001:db8:1:2:aaaa:bbbb:cccc:dddd", &a), 0);
	safety_client_element(&a, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8:1:2::/64");
	assert_int_equal(netaddr_parse("192.0.2.77", &a), 0);
	safety_client_element(&a, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.77");
	safety_client_element(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(safety_lines_parse_with_their_meaning),
		cmocka_unit_test(safety_defaults_are_hold_and_24h),
		cmocka_unit_test(safety_line_errors_name_file_and_line),
		cmocka_unit_test(event_json_is_exact),
		cmocka_unit_test(events_queue_is_bounded_and_drops_are_counted),
		cmocka_unit_test(safety_block_has_keys_counts_and_thresholds_of_the_event),
		cmocka_unit_test(distinct_ips_counts_ipv6_by_64),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	unit_cleanup();
	return rc;
}
