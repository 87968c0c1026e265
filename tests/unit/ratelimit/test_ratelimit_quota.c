/*
 * Quotas as hosting providers run them: the calendar window boundaries
 * from the system's zone data (calendar.c; DST days, a skipped and a
 * repeated midnight), and, on a private Redis with the real policy
 * parser, calendar windows, scopes (by domain, by class) admitted all or
 * none, and destination rates (to DOMAIN).
 */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "calendar.h"
#include "ratelimit.h"
#include "store.h"
#include "test_ratelimit_redis.h"

static struct trl_redis redis;
static struct store *st;
static struct policy *pol;
static char policy_path[96];

static const char policy_text[] =
	"class hosting {\n"
	"    account    sasl\n"
	"    messages   13/day\n"
	"    recipients 5/1h\n"
	"    recipients 8/1h by domain\n"
	"    recipients 3/1h to gmail.com googlemail.com\n"
	"    timezone   Pacific/Kiritimati\n"
	"}\n"
	"class shared {\n"
	"    account    sasl\n"
	"    recipients 4/1h by class\n"
	"}\n"
	"assign outbound hosting\n";

/* UTC seconds of a civil UTC time (tests only; timegm is fine here). */
static long long utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi };
	return (long long)timegm(&tm);
}

static struct calendar_zone *zone(const char *name)
{
	char err[256];
	struct calendar_zone *z = calendar_zone_load(name, err, sizeof(err));
	if (z == NULL)
		fail_msg("%s", err);
	return z;
}

static void window_is(const char *name, enum calendar_period p, long long t, long long start,
		      long long end)
{
	struct calendar_zone *z = zone(name);
	long long s, e;
	calendar_window(z, p, t, &s, &e);
	if (s != start || e != end)
		fail_msg("%s at %lld: [%lld, %lld), expected [%lld, %lld)", name, t, s, e, start, end);
	calendar_zone_free(z);
}

static void day_of_spring_forward_is_23_hours_long(void **state)
{
	(void)state;
	/* Europe/Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST */
	window_is("Europe/Paris", CALENDAR_DAY, utc(2026, 3, 29, 12, 0), utc(2026, 3, 28, 23, 0),
		  utc(2026, 3, 29, 22, 0));
	/* ... and 2026-10-25 falls back: 25 hours */
	window_is("Europe/Paris", CALENDAR_DAY, utc(2026, 10, 25, 12, 0), utc(2026, 10, 24, 22, 0),
		  utc(2026, 10, 25, 23, 0));
	/* the footer rule (past the table) gives the same for 2040 */
	window_is("Europe/Paris", CALENDAR_DAY, utc(2040, 3, 25, 12, 0), utc(2040, 3, 24, 23, 0),
		  utc(2040, 3, 25, 22, 0));
}

static void skipped_midnight_starts_the_day_at_the_transition(void **state)
{
	(void)state;
	/* America/Santiago springs forward at 24:00 on 2026-09-05: 00:00 of the 6th never happens */
	window_is("America/Santiago", CALENDAR_DAY, utc(2026, 9, 6, 12, 0), utc(2026, 9, 6, 4, 0),
		  utc(2026, 9, 7, 3, 0));
}

static void repeated_midnight_counts_from_its_first_time(void **state)
{
	(void)state;
	/* America/Havana falls back at 01:00 CDT to 00:00 CST on 2026-11-01 */
	window_is("America/Havana", CALENDAR_DAY, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 4, 0),
		  utc(2026, 11, 2, 5, 0));
	window_is("America/Havana", CALENDAR_DAY, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 4, 0),
		  utc(2026, 11, 2, 5, 0));
}

static void far_zones_reset_at_their_own_midnight(void **state)
{
	(void)state;
	/* 2026-12-02 19:00 UTC is 12-03 09:00 in Kiritimati (+14), 12-02 09:00 in Adak (-10) */
	window_is("Pacific/Kiritimati", CALENDAR_DAY, utc(2026, 12, 2, 19, 0), utc(2026, 12, 2, 10, 0),
		  utc(2026, 12, 3, 10, 0));
	window_is("America/Adak", CALENDAR_DAY, utc(2026, 12, 2, 19, 0), utc(2026, 12, 2, 10, 0),
		  utc(2026, 12, 3, 10, 0));
	window_is("UTC", CALENDAR_DAY, utc(2026, 12, 2, 19, 0), utc(2026, 12, 2, 0, 0),
		  utc(2026, 12, 3, 0, 0));
	char buf[40];
	struct calendar_zone *z = zone("Pacific/Kiritimati");
	calendar_rfc3339(z, utc(2026, 12, 3, 10, 0), buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-04T00:00:00+14:00");
	calendar_zone_free(z);
	z = zone("America/Adak");
	calendar_rfc3339(z, utc(2026, 12, 3, 10, 0), buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-03T00:00:00-10:00");
	calendar_zone_free(z);
}

static void weeks_start_monday_and_months_the_first(void **state)
{
	(void)state;
	/* Wednesday 2026-12-02 in Paris: week from Monday 11-30, month from 12-01 */
	window_is("Europe/Paris", CALENDAR_WEEK, utc(2026, 12, 2, 12, 0), utc(2026, 11, 29, 23, 0),
		  utc(2026, 12, 6, 23, 0));
	window_is("Europe/Paris", CALENDAR_MONTH, utc(2026, 12, 2, 12, 0), utc(2026, 11, 30, 23, 0),
		  utc(2026, 12, 31, 23, 0));
	/* a month across the DST change: March 2026 in Paris */
	window_is("Europe/Paris", CALENDAR_MONTH, utc(2026, 3, 31, 12, 0), utc(2026, 2, 28, 23, 0),
		  utc(2026, 3, 31, 22, 0));
}

/* The three windows of a bucket, as calendar_window gives them one by one. */
static void windows_match(const struct calendar_zone *z, enum calendar_period p, long long t)
{
	long long b[4], s, e, ps, pe, ns, ne;
	calendar_windows(z, p, t, b);
	calendar_window(z, p, t, &s, &e);
	calendar_window(z, p, s - 1, &ps, &pe);
	calendar_window(z, p, e, &ns, &ne);
	if (b[0] != ps || b[1] != s || b[2] != e || b[3] != ne)
		fail_msg("%s at %lld: {%lld %lld %lld %lld}, expected {%lld %lld %lld %lld}",
			 calendar_zone_name(z), t, b[0], b[1], b[2], b[3], ps, s, e, ne);
}

static void windows_are_cached_per_zone_and_period_and_never_stale(void **state)
{
	(void)state;
	struct calendar_zone *paris = zone("Europe/Paris"), *adak = zone("America/Adak");
	/* across the spring-forward day: before, on it (23 h), after */
	for (long long t = utc(2026, 3, 27, 0, 0); t < utc(2026, 4, 1, 0, 0); t += 1800) {
		windows_match(paris, CALENDAR_DAY, t);
		windows_match(adak, CALENDAR_DAY, t);	/* the other zone, same period, in turn */
		windows_match(paris, CALENDAR_MONTH, t);
		windows_match(NULL, CALENDAR_DAY, t);	/* UTC */
	}
	/* the last second of a window and the first of the next */
	long long end = utc(2026, 3, 29, 22, 0), b[4];
	calendar_windows(paris, CALENDAR_DAY, end - 1, b);
	assert_true(b[2] == end);
	calendar_windows(paris, CALENDAR_DAY, end, b);
	assert_true(b[1] == end && b[2] == utc(2026, 3, 30, 22, 0));
	calendar_windows(paris, CALENDAR_DAY, end - 1, b);	/* back again: not the cached next day */
	assert_true(b[2] == end);
	/* a zone freed and another loaded (perhaps at the same address) gets its own answer */
	calendar_windows(paris, CALENDAR_DAY, utc(2026, 12, 2, 19, 0), b);
	calendar_zone_free(paris);
	struct calendar_zone *kiritimati = zone("Pacific/Kiritimati");
	calendar_windows(kiritimati, CALENDAR_DAY, utc(2026, 12, 2, 19, 0), b);
	assert_true(b[1] == utc(2026, 12, 2, 10, 0) && b[2] == utc(2026, 12, 3, 10, 0));
	calendar_zone_free(kiritimati);
	calendar_zone_free(adak);
}

static void bad_zones_are_refused(void **state)
{
	(void)state;
	char err[256];
	assert_null(calendar_zone_load("Mars/Olympus_Mons", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown time zone Mars/Olympus_Mons"));
	assert_null(calendar_zone_load("../../etc/passwd", err, sizeof(err)));
	assert_non_null(strstr(err, "bad time zone name"));
	assert_null(calendar_zone_load("/etc/localtime", err, sizeof(err)));
	static const unsigned char junk[] = "TZif2 but not really a zone file at all, no";
	assert_null(calendar_zone_parse("x", junk, sizeof(junk), err, sizeof(err)));
}

/* ---- the policy's lines ---- */

/* Loads text as a policy; the diagnostics, joined, into out. */
static struct policy *load_text(const char *text, char *out, size_t len)
{
	char path[] = "/tmp/bm-quota-policy.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct diag d = { 0 };
	struct policy *p = policy_load(path, &d);
	out[0] = '\0';
	for (size_t i = 0; i < d.count; i++) {
		const char *line = strchr(d.lines[i], ':');	/* without the path */
		snprintf(out + strlen(out), len - strlen(out), "%s\n", line ? line + 1 : d.lines[i]);
	}
	diag_free(&d);
	unlink(path);
	return p;
}

static void rate_lines_take_windows_scopes_and_destinations(void **state)
{
	(void)state;
	char errs[2048];
	struct policy *p = load_text("class h {\n"
		"  account sasl sender\n"
		"  messages 200/1h 2000/day\n"
		"  recipients 20000/month 50/week by domain\n"
		"  recipients 300/1h to GMail.com *.yahoo.com by class\n"
		"  timezone Europe/Paris\n"
		"}\n", errs, sizeof(errs));
	assert_non_null(p);
	const struct policy_class *c = policy_class_find(p, "h");
	assert_int_equal(c->messages_count, 2);
	assert_int_equal(c->messages[1].calendar, CALENDAR_DAY);
	assert_int_equal(c->messages[1].count, 2000);
	assert_int_equal(c->recipients[0].calendar, CALENDAR_MONTH);
	assert_int_equal(c->recipients[1].calendar, CALENDAR_WEEK);
	assert_int_equal(c->recipients[1].scope, SCOPE_DOMAIN);
	assert_int_equal(c->recipients[2].scope, SCOPE_CLASS);
	assert_int_equal(c->recipients[2].to_count, 2);
	assert_string_equal(c->recipients[2].to[0], "gmail.com");
	assert_string_equal(calendar_zone_name(c->zone), "Europe/Paris");
	char d[256];
	policy_rate_describe(&c->recipients[2], d, sizeof(d));
	assert_string_equal(d, "300/1h by class to gmail.com *.yahoo.com");
	assert_true(policy_rate_applies(&c->recipients[2], "mail.yahoo.com"));
	assert_false(policy_rate_applies(&c->recipients[2], "yahoo.com"));
	assert_true(policy_rate_applies(&c->recipients[2], "GMAIL.COM"));
	assert_false(policy_rate_applies(&c->recipients[2], "notgmail.com"));
	policy_free(p);
}

static void senseless_rate_lines_are_file_line_errors(void **state)
{
	(void)state;
	char errs[4096];
	struct policy *p = load_text("class a {\n"
		"  account ip\n"
		"  recipients 5/1h by domain\n"
		"  messages 5/1h to gmail.com\n"
		"  recipients 5/fortnight\n"
		"  recipients 5/2day\n"
		"  recipients 5/1h by planet\n"
		"  recipients 5/1h to\n"
		"  recipients 5/1h by class by domain\n"
		"  recipients 5/1h to bad..domain\n"
		"  timezone Mars/Olympus_Mons\n"
		"  bulk volume >= 5/day\n"
		"}\n", errs, sizeof(errs));
	assert_null(p);
	static const char *const want[] = {
		"3: recipients: by domain: the accounts of class a are client addresses",
		"4: messages: \"to\" limits recipients",
		"5: recipients: bad rate 5/fortnight",
		"6: recipients: bad rate 5/2day",
		"7: recipients: by: unknown scope planet",
		"8: recipients: to: expected one or more DOMAIN",
		"9: recipients: \"by\" given twice",
		"10: recipients: to: bad domain bad..domain",
		"11: timezone: unknown time zone Mars/Olympus_Mons",
		"12: bulk volume: bad rate 5/day",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (strstr(errs, want[i]) == NULL)
			fail_msg("missing \"%s\" in:\n%s", want[i], errs);
}

/* ---- on Redis ---- */

static int group_setup(void **state)
{
	(void)state;
	struct diag d = { 0 };
	st = trl_store_open(&redis, 500);
	snprintf(policy_path, sizeof(policy_path), "%s/quota.policy", redis.dir);
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

static enum ratelimit_status rcpt(const char *cls, const char *account, const char *domain,
				  struct ratelimit_verdict *v)
{
	struct ratelimit_receipt r = { 0 };
	enum ratelimit_status s = ratelimit_check_recipients(st, policy_class_find(pol, cls),
		DIRECTION_OUTBOUND, account, domain, 1, &r, v);
	ratelimit_receipt_clear(&r);
	return s;
}

static void calendar_window_holds_its_count_until_local_midnight(void **state)
{
	(void)state;
	const struct policy_class *c = policy_class_find(pol, "hosting");
	struct ratelimit_verdict v;
	struct ratelimit_receipt r = { 0 }, refunded = { 0 };

	for (int i = 0; i < 12; i++)
		assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &r, &v),
				 RATELIMIT_OK);
	ratelimit_receipt_clear(&r);
	/* the 13th, refunded (the transaction failed), then taken again */
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &refunded, &v),
			 RATELIMIT_OK);
	ratelimit_refund(st, &refunded);
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &r, &v),
			 RATELIMIT_OK);
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &r, &v),
			 RATELIMIT_OVER);
	assert_string_equal(v.rate->text, "13/day");
	/* the retry is the end of the window: the next midnight in Kiritimati */
	long long s, e, now = store_now_ms(st);
	calendar_window(c->zone, CALENDAR_DAY, now / 1000, &s, &e);
	assert_true(v.retry_ms > e * 1000 - now - 2000 && v.retry_ms <= e * 1000 - now + 1000);

	struct ratelimit_usage u[16];
	size_t n;
	char err[256];
	assert_int_equal(ratelimit_usage(st, pol, DIRECTION_OUTBOUND, "win@a.example", u, 16, &n, err,
					 sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal((long)u[0].used, 13);
	assert_true(u[0].resets_ms / 1000 == e || u[0].resets_ms / 1000 == e - 1);

	/* past midnight (the store clock moved on): 13 again */
	store_set_clock_offset(st, e * 1000 - now + 1000);
	for (int i = 0; i < 13; i++)
		assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &r, &v),
				 RATELIMIT_OK);
	assert_int_equal(ratelimit_check_message(st, c, DIRECTION_OUTBOUND, "win@a.example", &r, &v),
			 RATELIMIT_OVER);
	ratelimit_receipt_clear(&r);
	store_set_clock_offset(st, 0);
}

static void domain_scope_refuses_the_ninth_and_charges_nothing_then(void **state)
{
	(void)state;
	struct ratelimit_verdict v;
	for (int i = 0; i < 5; i++)
		assert_int_equal(rcpt("hosting", "a@cust.example", "example.net", &v), RATELIMIT_OK);
	for (int i = 0; i < 2; i++)
		assert_int_equal(rcpt("hosting", "b@cust.example", "example.net", &v), RATELIMIT_OK);
	/* the domain's case does not make another customer */
	assert_int_equal(rcpt("hosting", "c@CUST.Example", "example.net", &v), RATELIMIT_OK);
	/* b has room (2 of 5), the domain has not (8 of 8) */
	assert_int_equal(rcpt("hosting", "b@cust.example", "example.net", &v), RATELIMIT_OVER);
	assert_string_equal(v.rate->text, "8/1h");
	assert_int_equal(v.rate->scope, SCOPE_DOMAIN);

	/* nothing was charged by the refusal: b's own bucket still holds 2 */
	redisContext *raw = trl_redis_raw(&redis);
	redisReply *rep = redisCommand(raw, "HGET bm:{b@cust.example}:hosting:r:5/3600000 u");
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STRING);
	/* 2 tokens of 720000 units, a little refilled since */
	assert_true(atoll(rep->str) <= 2 * 720000LL && atoll(rep->str) > 2 * 720000LL - 5000);
	freeReplyObject(rep);
	rep = redisCommand(raw, "EXISTS bm:{d:cust.example}:hosting:d:r:8/3600000");
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	redisFree(raw);

	/* an account without a domain has no domain bucket */
	for (int i = 0; i < 5; i++)
		assert_int_equal(rcpt("hosting", "nodomain", "example.net", &v), RATELIMIT_OK);
}

static void class_scope_is_one_bucket_for_every_account(void **state)
{
	(void)state;
	struct ratelimit_verdict v;
	assert_int_equal(rcpt("shared", "x1", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("shared", "x2", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("shared", "x3", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("shared", "x1", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("shared", "x3", "example.net", &v), RATELIMIT_OVER);
	assert_int_equal(v.rate->scope, SCOPE_CLASS);
}

static void destination_rate_counts_only_its_domains_and_names_the_domain(void **state)
{
	(void)state;
	struct ratelimit_verdict v;
	assert_int_equal(rcpt("hosting", "g@g.example", "gmail.com", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "g@g.example", "googlemail.com", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "g@g.example", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "g@g.example", "gmail.com", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "g@g.example", "gmail.com", &v), RATELIMIT_OVER);
	assert_non_null(v.rate);
	assert_int_equal(v.rate->to_count, 2);
	assert_string_equal(v.domain, "gmail.com");
	/* the others still pass: the account has 1 of its 5 left */
	assert_int_equal(rcpt("hosting", "g@g.example", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "g@g.example", "example.net", &v), RATELIMIT_OVER);
	assert_null(v.domain);
}

static void local_submission_sums_its_recipients_per_destination(void **state)
{
	(void)state;
	const struct policy_class *c = policy_class_find(pol, "hosting");
	struct ratelimit_rcpts rc = { 0 };
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	/* 2 at gmail.com, 1 at googlemail.com, 1 elsewhere: the 3/1h to gmail is exactly full */
	ratelimit_rcpts_add(&rc, c, "gmail.com", 1);
	ratelimit_rcpts_add(&rc, c, "example.net", 1);
	ratelimit_rcpts_add(&rc, c, "googlemail.com", 1);
	ratelimit_rcpts_add(&rc, c, "gmail.com", 1);
	assert_int_equal(rc.count, 4);
	assert_int_equal(ratelimit_check_rcpts(st, c, DIRECTION_OUTBOUND, "local@l.example", &rc, &r, &v),
			 RATELIMIT_OK);
	struct ratelimit_rcpts more = { 0 };
	ratelimit_rcpts_add(&more, c, "gmail.com", 1);
	assert_int_equal(ratelimit_check_rcpts(st, c, DIRECTION_OUTBOUND, "local@l.example", &more, &r, &v),
			 RATELIMIT_OVER);
	assert_int_equal(v.rate->to_count, 2);
	assert_string_equal(v.domain, "gmail.com");
	/* the refund gives each rate back what it took: all of it fits again */
	ratelimit_refund(st, &r);
	assert_int_equal(ratelimit_check_rcpts(st, c, DIRECTION_OUTBOUND, "local@l.example", &rc, &r, &v),
			 RATELIMIT_OK);
	ratelimit_receipt_clear(&r);
}

static void store_refuses_a_clock_outside_the_windows_and_refunds_only_its_window(void **state)
{
	(void)state;
	char err[256];
	struct store_charge_result res;
	long long now = store_now_ms(st), day = 86400000LL;
	/* windows a week ago: the store's clock is in none of them */
	struct store_bucket old = { "{skew}:x:r:3/day", 3, 0, 1,
				    { now - 10 * day, now - 9 * day, now - 8 * day, now - 7 * day } };
	assert_int_equal(store_charge(st, &old, 1, NULL, 0, &res, err, sizeof(err)), STORE_FAILED);
	assert_non_null(strstr(err, "clock skew"));
	store_close(st);	/* the failure put it in back-off: a fresh one */
	st = trl_store_open(&redis, 500);
	assert_non_null(st);

	/* the window around now: 3 fit, a refund naming yesterday's window gives nothing */
	struct store_bucket b = { "{skew}:x:r:3/day", 3, 0, 3,
				  { now - 2 * day, now - day / 2, now + day / 2, now + 2 * day } };
	assert_int_equal(store_charge(st, &b, 1, NULL, 0, &res, err, sizeof(err)), STORE_OK);
	assert_true(res.admitted);
	struct store_bucket yesterday = b;
	yesterday.bounds[1] = now - day;
	yesterday.bounds[0] = now - 2 * day - 1;
	yesterday.bounds[2] = now - day / 2;
	struct store_batch batch = { &yesterday, 1, NULL, 0, 0 };
	assert_int_equal(store_refund(st, &batch, 1, err, sizeof(err)), STORE_OK);
	b.cost = 1;
	assert_int_equal(store_charge(st, &b, 1, NULL, 0, &res, err, sizeof(err)), STORE_OK);
	assert_false(res.admitted);
	/* ... one naming this window gives back, never beyond empty */
	b.cost = 5;
	batch.buckets = &b;
	assert_int_equal(store_refund(st, &batch, 1, err, sizeof(err)), STORE_OK);
	b.cost = 3;
	assert_int_equal(store_charge(st, &b, 1, NULL, 0, &res, err, sizeof(err)), STORE_OK);
	assert_true(res.admitted);
}

static void reset_takes_a_scope(void **state)
{
	(void)state;
	struct ratelimit_verdict v;
	char err[256];
	for (int i = 0; i < 5; i++)
		assert_int_equal(rcpt("hosting", "r1@reset.example", "example.net", &v), RATELIMIT_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rcpt("hosting", "r2@reset.example", "example.net", &v), RATELIMIT_OK);
	assert_int_equal(rcpt("hosting", "r2@reset.example", "example.net", &v), RATELIMIT_OVER);
	/* the account scope alone does not help r2: the domain is full */
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_OUTBOUND, "r2@reset.example",
					 RATELIMIT_SCOPE(SCOPE_ACCOUNT), err, sizeof(err)), 0);
	assert_int_equal(rcpt("hosting", "r2@reset.example", "example.net", &v), RATELIMIT_OVER);
	assert_int_equal(ratelimit_reset(st, pol, DIRECTION_OUTBOUND, "r2@reset.example",
					 RATELIMIT_SCOPE(SCOPE_DOMAIN), err, sizeof(err)), 0);
	assert_int_equal(rcpt("hosting", "r2@reset.example", "example.net", &v), RATELIMIT_OK);
	/* r1 is still full on its own */
	assert_int_equal(rcpt("hosting", "r1@reset.example", "example.net", &v), RATELIMIT_OVER);
	assert_int_equal(v.rate->scope, SCOPE_ACCOUNT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(calendar_window_holds_its_count_until_local_midnight),
		cmocka_unit_test(domain_scope_refuses_the_ninth_and_charges_nothing_then),
		cmocka_unit_test(class_scope_is_one_bucket_for_every_account),
		cmocka_unit_test(destination_rate_counts_only_its_domains_and_names_the_domain),
		cmocka_unit_test(local_submission_sums_its_recipients_per_destination),
		cmocka_unit_test(store_refuses_a_clock_outside_the_windows_and_refunds_only_its_window),
		cmocka_unit_test(reset_takes_a_scope),
	};
	const struct CMUnitTest zones[] = {
		cmocka_unit_test(day_of_spring_forward_is_23_hours_long),
		cmocka_unit_test(skipped_midnight_starts_the_day_at_the_transition),
		cmocka_unit_test(repeated_midnight_counts_from_its_first_time),
		cmocka_unit_test(far_zones_reset_at_their_own_midnight),
		cmocka_unit_test(weeks_start_monday_and_months_the_first),
		cmocka_unit_test(windows_are_cached_per_zone_and_period_and_never_stale),
		cmocka_unit_test(bad_zones_are_refused),
		cmocka_unit_test(rate_lines_take_windows_scopes_and_destinations),
		cmocka_unit_test(senseless_rate_lines_are_file_line_errors),
	};
	signal(SIGPIPE, SIG_IGN);
	if (access("/usr/share/zoneinfo/Europe/Paris", R_OK) != 0 && getenv("TZDIR") == NULL) {
		fprintf(stderr, "no tzdata: skipped\n");
		return TRL_SKIP;
	}
	int failed = cmocka_run_group_tests_name("calendar", zones, NULL, NULL);
	trl_redis_start(&redis, 0, "");
	failed |= cmocka_run_group_tests_name("quota", tests, group_setup, group_teardown);
	trl_redis_cleanup(&redis);
	return failed;
}
