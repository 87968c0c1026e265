/*
 * Unit tests of organizational domains and relaxed alignment (align.c).
 */
#include "unit.h"

#include <stdbool.h>

#include "align.h"

static const char *org(const char *domain)
{
	static char buf[ALIGN_NAME_MAX + 1];

	if (align_org_domain(domain, buf, sizeof(buf)) < 0)
		return "(none)";
	return buf;
}

static void subdomain_aligns_with_its_parent(void **state)
{
	(void)state;
	assert_true(align_relaxed("bounces.example.com", "example.com"));
	assert_true(align_relaxed("example.com", "mail.bounces.example.com"));
	assert_true(align_relaxed("a.example.com", "b.example.com"));
}

static void different_organizations_do_not_align(void **state)
{
	(void)state;
	assert_false(align_relaxed("example.com", "example.net"));
	assert_false(align_relaxed("example.co.uk", "other.co.uk"));
	assert_false(align_relaxed("mail.example.co.uk", "mail.other.co.uk"));
	assert_false(align_relaxed("example.com", "notexample.com"));
}

static void case_and_trailing_dot_do_not_matter(void **state)
{
	(void)state;
	assert_true(align_relaxed("MAIL.EXAMPLE.CO.UK", "example.co.uk."));
	assert_true(align_relaxed("Bounces.Example.COM.", "example.com"));
	assert_string_equal(org("MAIL.EXAMPLE.CO.UK"), "example.co.uk");
	assert_string_equal(org("mail.example.co.uk."), "example.co.uk");
}

static void private_suffixes_are_their_own_organizations(void **state)
{
	(void)state;
	assert_string_equal(org("foo.github.io"), "foo.github.io");
	assert_string_equal(org("www.foo.github.io"), "foo.github.io");
	assert_true(align_relaxed("www.foo.github.io", "foo.github.io"));
	assert_false(align_relaxed("foo.github.io", "bar.github.io"));
}

static void public_suffixes_and_junk_have_no_org_domain(void **state)
{
	(void)state;
	assert_string_equal(org("co.uk"), "(none)");
	assert_string_equal(org("com"), "(none)");
	assert_string_equal(org("github.io"), "(none)");
	assert_string_equal(org("192.0.2.1"), "(none)");
	assert_string_equal(org("a..example.com"), "(none)");
	assert_string_equal(org(""), "(none)");
	assert_string_equal(org("."), "(none)");
	assert_string_equal(org("user@example.com"), "(none)");
	assert_string_equal(org("[192.0.2.1]"), "(none)");
	assert_false(align_relaxed("com", "example.com"));
	assert_false(align_relaxed("co.uk", "other.co.uk"));
	assert_false(align_relaxed("", ""));
	assert_false(align_relaxed(NULL, "example.com"));
	/* The same name is aligned with itself even without an org domain. */
	assert_true(align_relaxed("localhost", "LOCALHOST."));
}

static void unknown_tld_uses_the_default_rule(void **state)
{
	(void)state;
	assert_string_equal(org("sub.dmarc.test"), "dmarc.test");
	assert_string_equal(org("dmarc.test"), "dmarc.test");
}

/*
 * Bytes that are not UTF-8 make no name (libpsl would make each U+FFFD,
 * and "x\xff" the same name as "x\xfe"), and neither does a name that
 * lower casing makes longer than ALIGN_NAME_MAX, whatever the buffer.
 * Found by tests/fuzz/fuzz_envelope.
 */
static void names_that_are_not_utf8_or_grow_too_long_are_refused(void **state)
{
	(void)state;
	char buf[1024], name[300] = "";

	assert_int_equal(align_normalize("\xff.example.com", buf, sizeof(buf)), -1);
	assert_int_equal(align_normalize("\xc3.example.com", buf, sizeof(buf)), -1);
	assert_int_equal(align_normalize("\xc0\xae.example.com", buf, sizeof(buf)), -1);	/* overlong '.' */
	assert_int_equal(align_normalize("\xed\xa0\x80.example.com", buf, sizeof(buf)), -1); /* surrogate */
	assert_false(align_relaxed("x\xff", "x\xfe"));
	assert_int_equal(align_normalize("B\xc3\x9c" "CHER.example", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "b\xc3\xbc" "cher.example");
	/* 5 labels of 20 U+023A (2 bytes, lower case U+2C65: 3 bytes): 212 -> 312 */
	for (int l = 0; l < 5; l++) {
		for (int i = 0; i < 20; i++)
			strcat(name, "\xc8\xba");
		strcat(name, ".");
	}
	strcat(name, "example");
	assert_int_equal(align_normalize(name, buf, sizeof(buf)), -1);
	assert_string_equal(org(name), "(none)");
}

/*
 * libpsl lower-cases a name before its compatibility normalization, which
 * can make capitals: U+2145 (double-struck italic capital D) became "D",
 * U+03D4 (upsilon with diaeresis and hook) U+03AB (capital upsilon with
 * dialytika). Normalizing twice must change nothing. Found by
 * tests/fuzz/fuzz_envelope.
 */
static void normalized_names_are_lower_case_after_compatibility_mapping(void **state)
{
	(void)state;
	char buf[ALIGN_NAME_MAX + 1];

	char again[ALIGN_NAME_MAX + 1];

	assert_int_equal(align_normalize("\xe2\x85\x85.example.com", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "d.example.com");
	assert_true(align_relaxed("\xe2\x85\x85", "d"));
	assert_int_equal(align_normalize("\xcf\x94.example", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "\xcf\x8b.example");		/* U+03CB */
	assert_int_equal(align_normalize(buf, again, sizeof(again)), 0);
	assert_string_equal(again, buf);
}

static void normalize_lowercases_and_checks_shape(void **state)
{
	char buf[ALIGN_NAME_MAX + 1], small[8];
	(void)state;

	assert_int_equal(align_normalize("Mail.Example.COM.", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "mail.example.com");
	assert_int_equal(align_normalize("_dmarc.example.com", buf, sizeof(buf)), 0);
	assert_int_equal(align_normalize("example.com", small, sizeof(small)), -1);
	assert_int_equal(align_normalize("exa mple.com", buf, sizeof(buf)), -1);
	assert_int_equal(align_normalize("example.com..", buf, sizeof(buf)), -1);

	char label[80];
	snprintf(label, sizeof(label), "%.64s.com", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(align_normalize(label, buf, sizeof(buf)), -1);	/* 64-octet label */
	assert_int_equal(align_normalize(label + 1, buf, sizeof(buf)), 0);	/* 63 is the limit */

	char name[300];
	memset(name, 'a', sizeof(name));
	for (int i = 50; i < 290; i += 51)
		name[i] = '.';
	name[254] = '\0';	/* 254 characters: one too many */
	assert_int_equal(align_normalize(name, buf, sizeof(buf)), -1);
	name[253] = '\0';
	assert_int_equal(align_normalize(name, buf, sizeof(buf)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(subdomain_aligns_with_its_parent),
		cmocka_unit_test(different_organizations_do_not_align),
		cmocka_unit_test(case_and_trailing_dot_do_not_matter),
		cmocka_unit_test(private_suffixes_are_their_own_organizations),
		cmocka_unit_test(public_suffixes_and_junk_have_no_org_domain),
		cmocka_unit_test(unknown_tld_uses_the_default_rule),
		cmocka_unit_test(normalize_lowercases_and_checks_shape),
		cmocka_unit_test(normalized_names_are_lower_case_after_compatibility_mapping),
		cmocka_unit_test(names_that_are_not_utf8_or_grow_too_long_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
