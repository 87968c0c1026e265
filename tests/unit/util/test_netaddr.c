/*
 * Unit tests of addresses: IP/CIDR (netaddr.c), mail addresses
 * (address.c) and the bulk rules (bulk.c).
 */
#include "unit.h"

#include "address.h"
#include "bulk.h"
#include "netaddr.h"

static bool in(const char *block, const char *addr)
{
	struct cidr c;
	struct netaddr a;
	assert_int_equal(cidr_parse(block, &c), 0);
	assert_int_equal(netaddr_parse(addr, &a), 0);
	return cidr_match(&c, &a);
}

static void cidr_matching(void **state)
{
	(void)state;
	assert_true(in("10.0.0.0/8", "10.255.1.2"));
	assert_false(in("10.0.0.0/8", "11.0.0.1"));
	assert_true(in("192.0.2.128/25", "192.0.2.200"));
	assert_false(in("192.0.2.128/25", "192.0.2.127"));
	assert_true(in("0.0.0.0/0", "203.0.113.9"));
	assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(in("2001:db8::/32", "2001:db9::1"));
	assert_true(in("::1", "::1"));
	assert_false(in("::1", "127.0.0.1"));
	assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));	/* mapped form */
	assert_true(in("::ffff:10.0.0.0/104", "10.1.2.3"));
	assert_true(in("192.0.2.1", "IPv6:::ffff:192.0.2.1"));
	assert_true(in("2001:db8::25", "IPv6:2001:db8::25"));
	struct cidr c;
	assert_int_equal(cidr_parse("10.0.0.0/33", &c), -1);
	assert_int_equal(cidr_parse("2001:db8::/129", &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/", &c), -1);
	assert_int_equal(cidr_parse("10.0.0/8", &c), -1);
	assert_int_equal(cidr_parse("example.com", &c), -1);
	assert_int_equal(cidr_parse("/8", &c), -1);
}

static void format_roundtrip(void **state)
{
	(void)state;
	struct netaddr a;
	char buf[NETADDR_TEXT_MAX];
	assert_int_equal(netaddr_parse("[2001:DB8::25]", &a), 0);
	netaddr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::25");
	assert_int_equal(netaddr_parse("::ffff:192.0.2.10", &a), 0);
	netaddr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.10");
}

static void header_addresses(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_header(" Alice <alice@example.com>", b, sizeof(b)), 0);
	assert_string_equal(b, "alice@example.com");
	assert_int_equal(address_from_header(" \"Smith, Bob (Sales)\" <bob@example.com> (work)", b, sizeof(b)), 0);
	assert_string_equal(b, "bob@example.com");
	assert_int_equal(address_from_header(" carol@example.net (Carol)", b, sizeof(b)), 0);
	assert_string_equal(b, "carol@example.net");
	assert_int_equal(address_from_header(" Dave\n\t<dave@example.org>", b, sizeof(b)), 0);
	assert_string_equal(b, "dave@example.org");
	assert_int_equal(address_from_header(" \"x\"@example.com", b, sizeof(b)), 0);
	assert_string_equal(b, "\"x\"@example.com");
	/* not one author: refused */
	assert_int_equal(address_from_header(" a@example.com, b@example.com", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" A <a@example.com>, B <b@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" undisclosed-recipients:;", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" Broken <a@example.com", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" nobody", b, sizeof(b)), -1);
	assert_int_equal(address_from_header("", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" <@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" (unterminated <a@b.c>", b, sizeof(b)), -1);
	char huge[2000];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	huge[1000] = '@';
	assert_int_equal(address_from_header(huge, b, sizeof(b)), -1);
}

static void envelope_addresses(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_envelope("<alice@example.com>", b, sizeof(b)), 0);
	assert_string_equal(b, "alice@example.com");
	assert_int_equal(address_from_envelope("<>", b, sizeof(b)), 0);
	assert_string_equal(b, "");
	assert_int_equal(address_from_envelope("<@relay.example:bob@example.com>", b, sizeof(b)), 0);
	assert_string_equal(b, "bob@example.com");
	assert_int_equal(address_from_envelope("<bad address@example.com>", b, sizeof(b)), -1);
	/* a quoted local part may hold spaces and '@' */
	assert_int_equal(address_from_envelope("<\"a b\"@fail.example>", b, sizeof(b)), 0);
	assert_string_equal(b, "\"a b\"@fail.example");
	assert_string_equal(address_domain(b), "fail.example");
	assert_int_equal(address_from_envelope("<\"x@y\"@example.com>", b, sizeof(b)), 0);
	assert_string_equal(address_domain(b), "example.com");
	assert_int_equal(address_from_envelope("<\"open@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a@[192.0.2.1]>", b, sizeof(b)), 0);
	assert_string_equal(address_domain("a@b.example"), "b.example");
	assert_null(address_domain("nodomain"));
	assert_null(address_domain("trailing@"));
}

/*
 * Two '@' outside quotes: parsers disagree on the domain ("a@b@c" is b to
 * some, c to others), so neither a From value nor an envelope takes it.
 * Found by tests/fuzz/fuzz_address.
 */
static void address_with_two_at_signs_is_refused(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_header(" victim@bank.example@evil.example", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" Bank <victim@bank.example@evil.example>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" @@x", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<victim@bank.example@evil.example>", b, sizeof(b)), -1);
	/* quoted, the '@' is part of the local part: one domain */
	assert_int_equal(address_from_header(" <\"victim@bank.example\"@evil.example>", b, sizeof(b)), 0);
	assert_string_equal(address_domain(b), "evil.example");
}

/*
 * A domain is a name or an address literal: "a@example.com:evil" is no
 * address (a From value with it would otherwise read back as a group).
 * Found by tests/fuzz/fuzz_address.
 */
static void domain_outside_a_literal_has_no_colon(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_header(" <a@example.com:evil>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" <a@exa;mple.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a@example.com:25>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a@[192.0.2.1>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a@x[1]>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" <a@[IPv6:2001:db8::1]>", b, sizeof(b)), 0);
	assert_string_equal(b, "a@[IPv6:2001:db8::1]");
	assert_int_equal(address_from_envelope("<a@[192.0.2.1]>", b, sizeof(b)), 0);
}

/*
 * RFC 5322's specials need quotes in a local part: "<a:b@example.com>"
 * would read back as a group. Found by tests/fuzz/fuzz_address.
 */
static void local_part_specials_need_quotes(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_header(" <x.example:bob@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" <a;b@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a[1]@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_envelope("<a\\b@example.com>", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" <\"x.example:bob\"@example.com>", b, sizeof(b)), 0);
	assert_string_equal(b, "\"x.example:bob\"@example.com");
	assert_int_equal(address_from_envelope("<first.last+tag@example.com>", b, sizeof(b)), 0);
}

/*
 * A bare From address may end in an IPv6 literal, whose ':' is no group
 * (as an angle address it always could). Found by tests/fuzz/fuzz_address.
 */
static void from_with_ipv6_literal(void **state)
{
	(void)state;
	char b[ADDRESS_MAX];
	assert_int_equal(address_from_header(" root@[IPv6:2001:db8::1]", b, sizeof(b)), 0);
	assert_string_equal(b, "root@[IPv6:2001:db8::1]");
	assert_int_equal(address_from_header(" root@[IPv6:2001:db8::1] (ops)", b, sizeof(b)), 0);
	assert_string_equal(b, "root@[IPv6:2001:db8::1]");
	assert_int_equal(address_from_header(" [Ops] <root@example.com>", b, sizeof(b)), 0);
	assert_string_equal(b, "root@example.com");
	assert_int_equal(address_from_header(" root@[IPv6:2001:db8::1", b, sizeof(b)), -1);
	assert_int_equal(address_from_header(" a@[x], b@[y]", b, sizeof(b)), -1);
}

static void bulk_rules(void **state)
{
	(void)state;
	struct policy_class c = { .bulk_count = 3 };
	c.bulk[0] = (struct policy_bulk_rule){ .kind = BULK_RECIPIENTS, .min = 3 };
	c.bulk[1] = (struct policy_bulk_rule){ .kind = BULK_HEADER, .header = "List-Unsubscribe" };
	c.bulk[2] = (struct policy_bulk_rule){ .kind = BULK_VOLUME, .volume = { .count = 5 } };
	char why[128];
	struct bulk_facts f = { .recipients = 2, .volume_known = true };
	assert_false(bulk_classify(&c, &f, why, sizeof(why)));
	f.recipients = 3;
	assert_true(bulk_classify(&c, &f, why, sizeof(why)));
	assert_string_equal(why, "recipients 3 >= 3");
	f.recipients = 1;
	f.header_present[1] = true;
	assert_true(bulk_classify(&c, &f, why, sizeof(why)));
	assert_string_equal(why, "header List-Unsubscribe");
	f.header_present[1] = false;
	f.volume[2] = 4;
	assert_false(bulk_classify(&c, &f, why, sizeof(why)));
	f.volume[2] = 5;
	assert_true(bulk_classify(&c, &f, why, sizeof(why)));
	f.volume_known = false;
	assert_false(bulk_classify(&c, &f, why, sizeof(why)));

	assert_true(bulk_precedence_is_bulk(" bulk"));
	assert_true(bulk_precedence_is_bulk(" List "));
	assert_true(bulk_precedence_is_bulk("JUNK"));
	assert_false(bulk_precedence_is_bulk(" first-class"));
	assert_true(bulk_is_one_click(" List-Unsubscribe=One-Click"));
	assert_false(bulk_is_one_click(" List-Unsubscribe=One-Click-Maybe"));
	bool https, mailto;
	bulk_list_unsubscribe_scan(" <mailto:u@example.com?subject=unsub>,\n\t<https://example.com/u/1>", &https, &mailto);
	assert_true(https && mailto);
	bulk_list_unsubscribe_scan(" <http://example.com/u>", &https, &mailto);
	assert_false(https || mailto);
}

static void compliance_checks(void **state)
{
	(void)state;
	struct policy_class c = { .bulk_require = BULK_REQ_DKIM_ALIGNED | BULK_REQ_SPF_ALIGNED |
					 BULK_REQ_LIST_UNSUB | BULK_REQ_DMARC_RECORD };
	const char *d[] = { "news.example.com" };
	struct bulk_evidence e = {
		.from_domain = "example.com", .mailfrom_domain = "bounces.example.com",
		.dkim_domains = d, .dkim_count = 1, .spf_pass_all_egress = true,
		.list_unsub_https = true, .list_unsub_one_click = true, .dmarc_published = 1,
	};
	assert_int_equal(bulk_check(&c, &e), 0);
	e.list_unsub_one_click = false;		/* https needs RFC 8058 one-click */
	assert_int_equal(bulk_check(&c, &e), BULK_REQ_LIST_UNSUB);
	e.list_unsub_https = false;
	e.list_unsub_mailto = true;		/* mailto alone is enough */
	assert_int_equal(bulk_check(&c, &e), 0);
	e.mailfrom_domain = "example.net";
	assert_int_equal(bulk_check(&c, &e), BULK_REQ_SPF_ALIGNED);
	e.mailfrom_domain = "example.com";
	e.spf_pass_all_egress = false;
	assert_int_equal(bulk_check(&c, &e), BULK_REQ_SPF_ALIGNED);
	e.spf_pass_all_egress = true;
	d[0] = "other.co.uk";
	assert_int_equal(bulk_check(&c, &e), BULK_REQ_DKIM_ALIGNED);
	e.dkim_count = 0;
	e.dmarc_published = -1;
	assert_int_equal(bulk_check(&c, &e), BULK_REQ_DKIM_ALIGNED | BULK_REQ_DMARC_RECORD);
	char text[96];
	bulk_failures_text(BULK_REQ_DKIM_ALIGNED | BULK_REQ_DMARC_RECORD, text, sizeof(text));
	assert_string_equal(text, "dkim-aligned dmarc-record");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cidr_matching),
		cmocka_unit_test(format_roundtrip),
		cmocka_unit_test(header_addresses),
		cmocka_unit_test(envelope_addresses),
		cmocka_unit_test(address_with_two_at_signs_is_refused),
		cmocka_unit_test(domain_outside_a_literal_has_no_colon),
		cmocka_unit_test(local_part_specials_need_quotes),
		cmocka_unit_test(from_with_ipv6_literal),
		cmocka_unit_test(bulk_rules),
		cmocka_unit_test(compliance_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
