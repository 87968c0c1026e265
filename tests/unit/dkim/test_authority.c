/*
 * Unit tests of SigningAuthority (authority.c): sasl-domain by
 * organizational domain, the file: map (exact logins, globs, subdomains,
 * first matching line) and its FILE:LINE errors; the setting and the
 * class directive from-unauthorized as they parse.
 */
#include "unit.h"

#include "authority.h"
#include "policy.h"

static struct settings with(enum signing_authority_mode mode, const char *file)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.path = (char *)"test.conf";
	s.signing_authority = mode;
	s.signing_authority_file = (char *)file;
	return s;
}

static bool allows(const struct authority *a, const char *login, const char *domain)
{
	char why[512];
	bool ok = authority_allows(a, login, domain, why, sizeof(why));
	fprintf(stderr, "  %s %s: %s (%s)\n", login ? login : "-", domain, ok ? "yes" : "no", why);
	return ok;
}

static void none_loads_nothing_and_allows_everything(void **state)
{
	(void)state;
	struct diag errs = { .count = 0 };
	struct settings s = with(SIGNING_AUTHORITY_NONE, NULL);
	struct authority *a = authority_load(&s, &errs);
	assert_null(a);
	assert_int_equal(diag_errors(&errs), 0);
	assert_true(allows(a, "alice@cust-a.example", "cust-b.example"));
	assert_string_equal(authority_describe(a), "none");
}

static void sasl_domain_signs_the_login_organization_only(void **state)
{
	(void)state;
	struct diag errs = { .count = 0 };
	struct settings s = with(SIGNING_AUTHORITY_SASL_DOMAIN, NULL);
	struct authority *a = authority_load(&s, &errs);
	assert_non_null(a);
	assert_true(allows(a, "alice@cust-a.example", "cust-a.example"));
	assert_true(allows(a, "alice@cust-a.example", "news.cust-a.example"));
	assert_true(allows(a, "alice@cust-a.example", "NEWS.Cust-A.Example."));
	assert_true(allows(a, "bob@mail.cust-a.co.uk", "cust-a.co.uk"));
	assert_false(allows(a, "alice@cust-a.example", "cust-b.example"));
	assert_false(allows(a, "alice@cust-a.example", "cust-a.example.evil.example"));
	assert_false(allows(a, "bob@x.co.uk", "y.co.uk"));	/* a public suffix is no organization */
	assert_false(allows(a, "alice", "cust-a.example"));	/* a login without a domain */
	assert_false(allows(a, "alice@", "cust-a.example"));
	assert_false(allows(a, "alice@cust-a.example", "bad..example"));
	/* no login: InternalHosts or local submission, signed as before */
	assert_true(allows(a, "", "cust-b.example"));
	assert_true(allows(a, NULL, "cust-b.example"));
	assert_string_equal(authority_describe(a), "sasl-domain");
	authority_free(a);
}

static void file_map_exact_glob_and_subdomains(void **state)
{
	(void)state;
	struct diag errs = { .count = 0 };
	const char *path = unit_file(
		"# who may sign for what\n"
		"alice@cust-a.example  cust-a.example\n"
		"boss@cust-a.example   cust-a.example, cust-b.example other.example\n"
		"*@cust-c.example      cust-c.example   # every mailbox of cust-c\n"
		"*@cust-a.example      shop.example\n"
		"\n");
	struct settings s = with(SIGNING_AUTHORITY_FILE, path);
	struct authority *a = authority_load(&s, &errs);
	assert_int_equal(diag_errors(&errs), 0);
	assert_non_null(a);
	assert_true(allows(a, "alice@cust-a.example", "cust-a.example"));
	assert_true(allows(a, "ALICE@Cust-A.example", "news.cust-a.example"));
	assert_false(allows(a, "alice@cust-a.example", "cust-b.example"));
	assert_false(allows(a, "alice@cust-a.example", "xcust-a.example"));
	assert_true(allows(a, "boss@cust-a.example", "cust-b.example"));
	assert_true(allows(a, "boss@cust-a.example", "mail.other.example"));
	/* exact lines come first: alice's own line is her whole answer */
	assert_false(allows(a, "alice@cust-a.example", "shop.example"));
	assert_true(allows(a, "carol@cust-a.example", "shop.example"));
	assert_false(allows(a, "carol@cust-a.example", "cust-a.example"));
	assert_true(allows(a, "anyone@CUST-C.example", "cust-c.example"));
	assert_false(allows(a, "stranger@cust-d.example", "cust-d.example"));
	char why[512];
	assert_false(authority_allows(a, "stranger@cust-d.example", "cust-d.example", why, sizeof(why)));
	char want[256];
	snprintf(want, sizeof(want), "login stranger@cust-d.example is not in %s", path);
	assert_string_equal(why, want);
	assert_true(authority_allows(a, "boss@cust-a.example", "x.cust-b.example", why, sizeof(why)));
	snprintf(want, sizeof(want), "%s:3: boss@cust-a.example may sign for cust-b.example", path);
	assert_string_equal(why, want);
	authority_free(a);
}

static void file_map_errors_name_file_and_line(void **state)
{
	(void)state;
	struct diag errs = { .count = 0 };
	const char *path = unit_file(
		"alice@cust-a.example cust-a.example\n"
		"bob@cust-b.example\n"
		"carol@cust-c.example bad..domain\n"
		"ALICE@cust-a.example cust-z.example\n");
	struct settings s = with(SIGNING_AUTHORITY_FILE, path);
	assert_null(authority_load(&s, &errs));
	assert_true(unit_has_error(&errs, path, 2, "bob@cust-b.example: no domains"));
	assert_true(unit_has_error(&errs, path, 3, "bad domain \"bad..domain\""));
	assert_true(unit_has_error(&errs, path, 4, "ALICE@cust-a.example: already listed at line 1"));
	diag_free(&errs);

	struct diag errs2 = { .count = 0 };
	s = with(SIGNING_AUTHORITY_FILE, "/nonexistent/authority.map");
	assert_null(authority_load(&s, &errs2));
	assert_true(unit_has_error(&errs2, "/nonexistent/authority.map", 0, "cannot open: No such file"));
	diag_free(&errs2);
}

static void setting_parses_and_refuses_with_file_line(void **state)
{
	(void)state;
	struct diag d = { .count = 0 };
	struct settings *s = settings_load(unit_file("SigningAuthority sasl-domain\n"), &d);
	assert_non_null(s);
	assert_int_equal(s->signing_authority, SIGNING_AUTHORITY_SASL_DOMAIN);
	settings_free(s);
	s = settings_load(unit_file("SigningAuthority file:/etc/bulkmilter/authority.map\n"), &d);
	assert_non_null(s);
	assert_int_equal(s->signing_authority, SIGNING_AUTHORITY_FILE);
	assert_string_equal(s->signing_authority_file, "/etc/bulkmilter/authority.map");
	settings_free(s);
	s = settings_load(unit_file("# default\n"), &d);
	assert_non_null(s);
	assert_int_equal(s->signing_authority, SIGNING_AUTHORITY_NONE);
	settings_free(s);
	const char *bad = unit_file("\nSigningAuthority sasl\n");
	assert_null(settings_load(bad, &d));
	assert_true(unit_has_error(&d, bad, 2,
				   "SigningAuthority: expected none, sasl-domain or file:PATH, got sasl"));
	diag_free(&d);
}

static void from_unauthorized_per_class(void **state)
{
	(void)state;
	struct diag d = { .count = 0 };
	struct policy *p = policy_load(unit_file(
		"class a {\n    from-unauthorized reject \"Use your own domain\"\n}\n"
		"class b {\n    from-unauthorized hold\n}\n"
		"class c {\n    from-unauthorized tag\n}\n"
		"class d { }\n"), &d);
	assert_int_equal(diag_errors(&d), 0);
	assert_non_null(p);
	assert_int_equal(policy_class_find(p, "a")->from_unauthorized, ACTION_REJECT);
	assert_string_equal(policy_class_find(p, "a")->from_unauthorized_text, "Use your own domain");
	assert_int_equal(policy_class_find(p, "b")->from_unauthorized, ACTION_HOLD);
	assert_int_equal(policy_class_find(p, "c")->from_unauthorized, ACTION_TAG);
	assert_int_equal(policy_class_find(p, "d")->from_unauthorized, ACTION_NONE);
	policy_free(p);

	const char *path = unit_file("class a {\n    from-unauthorized tempfail\n"
				     "    from-unauthorized tag\n}\n");
	assert_null(policy_load(path, &d));
	assert_true(unit_has_error(&d, path, 2,
				   "from-unauthorized: unknown action tempfail (expected none, reject, hold, tag)"));
	assert_true(unit_has_error(&d, path, 3, "from-unauthorized: already set for class a at line 2"));
	diag_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(none_loads_nothing_and_allows_everything),
		cmocka_unit_test(sasl_domain_signs_the_login_organization_only),
		cmocka_unit_test(file_map_exact_glob_and_subdomains),
		cmocka_unit_test(file_map_errors_name_file_and_line),
		cmocka_unit_test(setting_parses_and_refuses_with_file_line),
		cmocka_unit_test(from_unauthorized_per_class),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
