/*
 * Unit tests of the policy file: syntax, errors, lookup, accounts, maps.
 */
#include "unit.h"

#include <time.h>

#include "policy.h"

static struct policy *load_ok(const char *text)
{
	struct diag d = { 0 };
	struct policy *p = policy_load(unit_file(text), &d);
	diag_print(&d, stderr);
	assert_non_null(p);
	return p;
}

static const char *class_of(const struct policy *p, enum policy_direction dir, const char *sasl,
			    const char *sender, const char *ip)
{
	struct netaddr a;
	struct policy_facts f = { .direction = dir, .sasl = sasl, .sender = sender };
	if (ip) {
		assert_int_equal(netaddr_parse(ip, &a), 0);
		f.client = &a;
	}
	const struct policy_class *c = policy_lookup(p, &f, NULL);
	return c ? c->name : "(none)";
}

static const char spec_example[] =
	"# Rates are COUNT/PERIOD\n"
	"class standard {\n"
	"    account     sasl sender          # whose bucket\n"
	"    messages    200/1h 2000/1d\n"
	"    recipients  1000/1h 10000/1d\n"
	"    over-limit  tempfail\n"
	"    bulk        recipients >= 50\n"
	"    bulk        header List-Unsubscribe\n"
	"}\n"
	"\n"
	"class newsletter {\n"
	"    account     sasl\n"
	"    recipients  50000/1h\n"
	"    bulk        always\n"
	"    bulk-require dkim-aligned spf-aligned list-unsubscribe\n"
	"    bulk-noncompliant hold\n"
	"}\n"
	"\n"
	"class unlimited { }\n"
	"assign sasl     news@example.com    newsletter\n"
	"assign domain   example.org         newsletter\n"
	"assign ip       10.0.0.0/8          unlimited\n"
	"assign outbound                     standard\n";

static void spec_example_parses_with_its_meaning(void **state)
{
	(void)state;
	struct policy *p = load_ok(spec_example);
	const struct policy_class *c = policy_class_find(p, "standard");
	assert_non_null(c);
	assert_int_equal(c->account_count, 2);
	assert_int_equal(c->account[0], ACCOUNT_SASL);
	assert_int_equal(c->account[1], ACCOUNT_SENDER);
	assert_int_equal(c->messages_count, 2);
	assert_int_equal(c->messages[0].count, 200);
	assert_int_equal(c->messages[0].period_ms, 3600000);
	assert_int_equal(c->messages[1].period_ms, 86400000);
	assert_int_equal(c->recipients_count, 2);
	assert_int_equal(c->over_limit, ACTION_TEMPFAIL);
	assert_int_equal(c->bulk_count, 2);
	assert_int_equal(c->bulk[0].kind, BULK_RECIPIENTS);
	assert_int_equal(c->bulk[0].min, 50);
	assert_int_equal(c->bulk[1].kind, BULK_HEADER);
	assert_string_equal(c->bulk[1].header, "List-Unsubscribe");
	c = policy_class_find(p, "newsletter");
	assert_int_equal(c->bulk_require, BULK_REQ_DKIM_ALIGNED | BULK_REQ_SPF_ALIGNED | BULK_REQ_LIST_UNSUB);
	assert_int_equal(c->bulk_noncompliant, ACTION_HOLD);
	assert_int_equal(c->bulk[0].kind, BULK_ALWAYS);
	c = policy_class_find(p, "unlimited");
	assert_int_equal(c->messages_count + c->recipients_count + c->bulk_count, 0);
	assert_int_equal(c->bulk_noncompliant, ACTION_TAG);	/* default */
	assert_int_equal(c->spf_fail, ACTION_NONE);		/* default */
	assert_int_equal(policy_class_count(p), 3);
	policy_free(p);
}

static void first_match_wins(void **state)
{
	(void)state;
	struct policy *p = load_ok(spec_example);
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "news@example.com", "x@example.org", "10.1.1.1"), "newsletter");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "NEWS@Example.COM", "", NULL), "newsletter");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "alice", "bob@EXAMPLE.org", NULL), "newsletter");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "alice", "bob@example.com", "10.1.1.1"), "unlimited");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "bob@example.com", "10.1.1.1"), "unlimited");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "alice", "a@example.com", "192.0.2.1"), "standard");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "a@example.com", "192.0.2.1"), "(none)");
	policy_free(p);
}

static void globs_cidrs_and_ipv6(void **state)
{
	(void)state;
	struct policy *p = load_ok(
		"class a { }\nclass b { }\nclass c { }\nclass d { }\n"
		"assign sender *@*.example.com a\n"
		"assign sasl   shop-?? b\n"
		"assign ip     2001:db8::/32 c\n"
		"assign ip     192.0.2.7 d\n"
		"assign inbound b\n");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "x@mail.Example.com", NULL), "a");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "x@example.com", NULL), "(none)");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "shop-42", "", NULL), "b");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "shop-420", "", NULL), "(none)");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "", "2001:db8::25"), "c");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "", "2001:db9::25"), "(none)");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "", "192.0.2.7"), "d");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "", "::ffff:192.0.2.7"), "d");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "", "192.0.2.8"), "(none)");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "192.0.2.8"), "b");
	policy_free(p);
}

static void accounts_take_the_first_source_present(void **state)
{
	(void)state;
	struct policy *p = load_ok(
		"class s { account sasl sender }\nclass d { account domain }\nclass i { account ip }\n"
		"class dflt { }\n");
	char buf[POLICY_ACCOUNT_MAX];
	struct netaddr a;
	netaddr_parse("2001:db8::25", &a);
	struct policy_facts f = { .sasl = "Alice", .sender = "Bob@Example.COM", .client = &a };
	assert_int_equal(policy_account(policy_class_find(p, "s"), &f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "Alice");
	f.sasl = "";
	assert_int_equal(policy_account(policy_class_find(p, "s"), &f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "bob@example.com");
	assert_int_equal(policy_account(policy_class_find(p, "d"), &f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "example.com");
	assert_int_equal(policy_account(policy_class_find(p, "i"), &f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2001:db8::25");
	f.sender = "";
	assert_int_equal(policy_account(policy_class_find(p, "s"), &f, buf, sizeof(buf)), -1);
	assert_int_equal(policy_account(policy_class_find(p, "dflt"), &f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2001:db8::25");
	policy_free(p);
}

/*
 * The envelope sender of inbound mail proves nothing: assign sender and
 * assign domain lines, exact, glob or file: map, match outbound mail
 * only, so a forged MAIL FROM neither reaches a local class nor escapes
 * the inbound one.
 */
static void sender_and_domain_assigns_match_outbound_mail_only(void **state)
{
	(void)state;
	const char *senders = unit_file("ceo@board.example vip\n");
	const char *domains = unit_file("shop.example vip\n");
	char text[1024];
	snprintf(text, sizeof(text),
		 "class vip { }\nclass staff { }\nclass inbound { }\n"
		 "assign sender  boss@corp.example   staff\n"
		 "assign sender  *@ops.example.net   staff\n"
		 "assign domain  corp.example        staff\n"
		 "assign domain  *.corp.example      staff\n"
		 "assign sender  file:%s\n"
		 "assign domain  file:%s\n"
		 "assign inbound inbound\n", senders, domains);
	struct policy *p = load_ok(text);
	static const struct { const char *sender, *outbound; } cases[] = {
		{ "boss@corp.example", "staff" },	/* exact sender */
		{ "x@ops.example.net", "staff" },	/* glob sender */
		{ "anyone@Corp.Example", "staff" },	/* exact domain */
		{ "y@mail.corp.example", "staff" },	/* glob domain */
		{ "ceo@board.example", "vip" },		/* sender map */
		{ "z@shop.example", "vip" },		/* domain map */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", cases[i].sender, "127.0.0.1"),
				    cases[i].outbound);
		assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "alice", cases[i].sender, NULL),
				    cases[i].outbound);
		assert_string_equal(class_of(p, DIRECTION_INBOUND, "", cases[i].sender, "198.51.100.7"),
				    "inbound");
		assert_string_equal(class_of(p, DIRECTION_INBOUND, "", cases[i].sender, NULL), "inbound");
	}
	policy_free(p);

	/* without an inbound line, forged inbound mail gets no class at all */
	snprintf(text, sizeof(text), "class staff { }\nclass vip { }\nassign sender *@ops.example.net staff\n"
		 "assign domain file:%s\n", domains);
	p = load_ok(text);
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "x@ops.example.net", "198.51.100.7"), "(none)");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "z@shop.example", "198.51.100.7"), "(none)");
	policy_free(p);
}

/* What "bulkmilterctl explain --sender x@ops.example.net --ip 198.51.100.7" shows. */
static void shipped_hosting_policy_keeps_a_forged_ops_sender_inbound(void **state)
{
	(void)state;
	struct diag d = { 0 };
	struct policy *p = policy_load(TEST_SRCDIR "/policy/hosting.policy", &d);
	diag_print(&d, stderr);
	assert_non_null(p);
	const struct policy_assign *why = NULL;
	char line[256];
	struct netaddr a;
	assert_int_equal(netaddr_parse("198.51.100.7", &a), 0);
	struct policy_facts f = { .direction = DIRECTION_INBOUND, .sasl = "", .sender = "x@ops.example.net",
				  .client = &a };
	const struct policy_class *c = policy_lookup(p, &f, &why);
	assert_non_null(c);
	assert_string_equal(c->name, "inbound");
	policy_assign_describe(why, line, sizeof(line));
	assert_non_null(strstr(line, "assign inbound inbound"));
	/* the provider's own hosts still get their class */
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "", "x@ops.example.net", "127.0.0.1"), "internal");
	/* a stranger in the web servers' network is rate-limited as such, by the
	 * domain it claims; ratelimit keeps that bucket apart from the outbound one */
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "x@cust.example", "192.0.2.9"), "webserver");
	policy_free(p);
}

static void over_limit_actions_and_texts(void **state)
{
	(void)state;
	struct policy *p = load_ok(
		"class a { over-limit reject \"Quota of your plan reached\" }\n"
		"class b {\n over-limit hold\n spf-fail reject\n bulk-noncompliant tempfail \"fix it\"\n"
		" bulk precedence\n bulk volume >= 5/1m\n}\nclass n { bulk never }\n"
		"class c { over-limit tag }\n");
	const struct policy_class *a = policy_class_find(p, "a"), *b = policy_class_find(p, "b");
	assert_int_equal(a->over_limit, ACTION_REJECT);
	assert_string_equal(a->over_limit_text, "Quota of your plan reached");
	assert_int_equal(b->over_limit, ACTION_HOLD);
	assert_int_equal(b->spf_fail, ACTION_REJECT);
	assert_int_equal(b->bulk_noncompliant, ACTION_TEMPFAIL);
	assert_string_equal(b->bulk_noncompliant_text, "fix it");
	assert_int_equal(b->bulk[1].kind, BULK_VOLUME);
	assert_int_equal(b->bulk[1].volume.count, 5);
	assert_int_equal(b->bulk[1].volume.period_ms, 60000);
	assert_true(b->has_volume);
	assert_int_equal(policy_class_find(p, "n")->bulk[0].kind, BULK_NEVER);
	assert_int_equal(policy_class_find(p, "c")->over_limit, ACTION_TAG);
	policy_free(p);
}

static void rates(void **state)
{
	(void)state;
	struct policy_rate r;
	assert_int_equal(policy_parse_rate("100/1h", &r), 0);
	assert_int_equal(r.count, 100);
	assert_int_equal(r.period_ms, 3600000);
	assert_int_equal(policy_parse_rate("5/10s", &r), 0);
	assert_int_equal(r.period_ms, 10000);
	assert_int_equal(policy_parse_rate("2000/d", &r), 0);
	assert_int_equal(r.period_ms, 86400000);
	assert_string_equal(r.text, "2000/d");
	assert_int_equal(policy_parse_rate("0/1h", &r), -1);
	assert_int_equal(policy_parse_rate("10/0h", &r), -1);
	assert_int_equal(policy_parse_rate("10/1w", &r), -1);
	assert_int_equal(policy_parse_rate("10", &r), -1);
	assert_int_equal(policy_parse_rate("-1/1h", &r), -1);
	assert_int_equal(policy_parse_rate("x/1h", &r), -1);
	assert_int_equal(policy_parse_rate("10/1h ", &r), -1);
	/* too fine to count exactly (lcm of count and period_ms >= 2^53) */
	assert_int_equal(policy_parse_rate("999999937/d", &r), -1);
	assert_int_equal(policy_parse_rate("1000000/90d", &r), 0);
}

static void errors_name_file_and_line(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file(
		"class a {\n"				/* 1 */
		"  messages 10/1w\n"			/* 2 */
		"  frobnicate yes\n"			/* 3 */
		"  over-limit explode\n"		/* 4 */
		"  bulk recipients > 5\n"		/* 5 */
		"  bulk-require dkim-aligned sparkly\n"	/* 6 */
		"  account sasl carrier-pigeon\n"	/* 7 */
		"}\n"					/* 8 */
		"class a { }\n"				/* 9 */
		"assign sasl alice missing\n"		/* 10 */
		"assign color red a\n"			/* 11 */
		"assign ip 10.0.0.0/40 a\n"		/* 12 */
		"assign outbound\n"			/* 13 */
		"}\n"					/* 14 */
		"frob\n"				/* 15 */
		"class b {\n"				/* 16 */
		"  over-limit tag\n"			/* 17 */
		"  over-limit hold\n"			/* 18 */
		"  spf-fail hold\n"			/* 19 */
		"  over-limit tag \"unterminated\n"	/* 20 */
		"}\n"					/* 21 */
		"class c {\n"				/* 22 */
		"  bulk always\n"			/* 23 */
		"  bulk never\n"			/* 24 */
		"}\n"					/* 25 */
		"class d {\n");				/* 26 */
	struct policy *p = policy_load(path, &d);
	assert_null(p);
	assert_true(unit_has_error(&d, path, 2, "messages: bad rate 10/1w"));
	assert_true(unit_has_error(&d, path, 3, "unknown directive frobnicate in class a"));
	assert_true(unit_has_error(&d, path, 4, "over-limit: unknown action explode"));
	assert_true(unit_has_error(&d, path, 5, "bulk recipients: expected recipients >= N"));
	assert_true(unit_has_error(&d, path, 6, "bulk-require: unknown check sparkly"));
	assert_true(unit_has_error(&d, path, 7, "account: unknown source carrier-pigeon"));
	assert_true(unit_has_error(&d, path, 9, "class a: already defined at line 1"));
	assert_true(unit_has_error(&d, path, 10, "assign: unknown class missing"));
	assert_true(unit_has_error(&d, path, 11, "assign: unknown key color"));
	assert_true(unit_has_error(&d, path, 12, "assign ip: not an IP address or CIDR block: 10.0.0.0/40"));
	assert_true(unit_has_error(&d, path, 13, "assign outbound: expected assign outbound CLASS"));
	assert_true(unit_has_error(&d, path, 14, "'}' without an open class"));
	assert_true(unit_has_error(&d, path, 15, "unknown statement frob"));
	assert_true(unit_has_error(&d, path, 18, "over-limit: already set for class b at line 17"));
	assert_true(unit_has_error(&d, path, 19, "spf-fail: unknown action hold"));
	assert_true(unit_has_error(&d, path, 20, "unterminated quoted text"));
	assert_true(unit_has_error(&d, path, 24, "bulk never cannot be combined with other bulk lines in class c"));
	assert_true(unit_has_error(&d, path, 26, "class d: missing '}'"));
	diag_free(&d);
}

static void map_errors_name_the_map_file_and_line(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *map = unit_file("alice standard\nbob\ncarol gold\n");
	char text[512];
	snprintf(text, sizeof(text), "class standard { }\nassign sasl file:%s\nassign ip file:/nonexistent/map\n"
		 "assign sasl file:%s standard\n", map, map);
	const char *path = unit_file(text);
	assert_null(policy_load(path, &d));
	/* a class after file:PATH is a mistake, not an exact login "file:..." */
	assert_true(unit_has_error(&d, path, 4,
		"assign sasl: file:PATH takes no class (each line of the map names its class)"));
	assert_true(unit_has_error(&d, map, 2, "expected \"value class\""));
	assert_true(unit_has_error(&d, map, 3, "unknown class gold"));
	assert_true(unit_has_error(&d, path, 3, "assign ip: cannot open map /nonexistent/map"));
	diag_free(&d);
}

static void ip_maps_match_longest_prefix(void **state)
{
	(void)state;
	const char *map = unit_file("# networks\n10.0.0.0/8 wide\n10.1.0.0/16 narrow\n10.1.2.3 host\n2001:db8::/32 v6\n");
	char text[512];
	snprintf(text, sizeof(text), "class wide { }\nclass narrow { }\nclass host { }\nclass v6 { }\nassign ip file:%s\n", map);
	struct policy *p = load_ok(text);
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "10.9.9.9"), "wide");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "10.1.9.9"), "narrow");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "10.1.2.3"), "host");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "2001:db8:5::1"), "v6");
	assert_string_equal(class_of(p, DIRECTION_INBOUND, "", "", "11.0.0.1"), "(none)");
	policy_free(p);
}

static void large_map_loads_fast_and_looks_up(void **state)
{
	(void)state;
	char mapfile[] = "/tmp/bm-unit-map-XXXXXX";
	int fd = mkstemp(mapfile);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "w");
	for (int i = 0; i < 100000; i++)
		fprintf(fp, "user%d@example.com %s\n", i, i % 2 ? "gold" : "silver");
	fclose(fp);
	char text[512];
	snprintf(text, sizeof(text), "class gold { }\nclass silver { }\nassign sasl file:%s\nassign outbound silver\n", mapfile);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct policy *p = load_ok(text);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "100,000-line map loaded in %.3f s\n", secs);
	assert_true(secs < 1.0);
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "user99999@example.com", "", NULL), "gold");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "USER4@EXAMPLE.COM", "", NULL), "silver");
	assert_string_equal(class_of(p, DIRECTION_OUTBOUND, "nobody@example.com", "", NULL), "silver");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 100000; i++)
		class_of(p, DIRECTION_OUTBOUND, "user77777@example.com", "", NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "100,000 lookups in %.3f s\n", secs);
	policy_free(p);
	unlink(mapfile);
}

static void braces_and_one_line_classes(void **state)
{
	(void)state;
	struct policy *p = load_ok("class x{messages 5/1m}\nclass y {\n}\nclass z { messages 1/1s\n recipients 2/1s }\nassign outbound z\n");
	assert_int_equal(policy_class_find(p, "x")->messages_count, 1);
	assert_int_equal(policy_class_find(p, "z")->recipients_count, 1);
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spec_example_parses_with_its_meaning),
		cmocka_unit_test(first_match_wins),
		cmocka_unit_test(globs_cidrs_and_ipv6),
		cmocka_unit_test(accounts_take_the_first_source_present),
		cmocka_unit_test(sender_and_domain_assigns_match_outbound_mail_only),
		cmocka_unit_test(shipped_hosting_policy_keeps_a_forged_ops_sender_inbound),
		cmocka_unit_test(over_limit_actions_and_texts),
		cmocka_unit_test(rates),
		cmocka_unit_test(errors_name_file_and_line),
		cmocka_unit_test(map_errors_name_the_map_file_and_line),
		cmocka_unit_test(ip_maps_match_longest_prefix),
		cmocka_unit_test(large_map_loads_fast_and_looks_up),
		cmocka_unit_test(braces_and_one_line_classes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
