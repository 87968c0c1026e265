/*
 * Robustness of the parsers that read untrusted or hand-edited input:
 * From headers and envelope arguments (from any client), List-Unsubscribe
 * values, policy and config files (from ops). Seeded random and mutated
 * inputs must give an answer (0/-1, a diag) and never a crash, overread
 * or leak; the sanitizer build is where this test earns its keep.
 */
#include "unit.h"

#include "address.h"
#include "bulk.h"
#include "policy.h"
#include "settings.h"

#define ROUNDS 20000

static unsigned long rng = 0x2545F4914F6CDD1DUL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* Pieces that matter to the parsers, glued at random with random bytes. */
static const char *const pieces[] = {
	"<", ">", "\"", "\\", "(", ")", "@", ",", ";", ":", " ", "\t", "\n", "\r\n", "\n\t",
	"a", "example.com", "[192.0.2.1]", "\xc3\xa9", "\xff", "=?utf-8?q?x?=", "alice",
	"<mailto:u@x>", "<https://x/u>", "List-Unsubscribe=One-Click",
	"class", "assign", "{", "}", "messages", "recipients", "1/1h", "0/0s", "99999999999/d",
	"bulk", ">=", "volume", "header", "file:", "ip", "10.0.0.0/8", "::1/129", "#",
	"over-limit", "tempfail", "\"text", "Socket", "unix:/x", "Redis", "InternalHosts",
};

static size_t random_input(char *buf, size_t cap)
{
	size_t n = 0, parts = rnd(40);
	for (size_t i = 0; i < parts && n + 32 < cap; i++) {
		if (rnd(4) == 0) {
			buf[n++] = (char)(rnd(255) + 1);	/* any byte but NUL */
		} else {
			const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
			size_t l = strlen(p);
			memcpy(buf + n, p, l);
			n += l;
		}
	}
	buf[n] = '\0';
	return n;
}

static void header_parsers_never_crash(void **state)
{
	(void)state;
	char in[4096], out[ADDRESS_MAX];
	for (int i = 0; i < ROUNDS; i++) {
		random_input(in, sizeof(in));
		if (address_from_header(in, out, sizeof(out)) == 0) {
			assert_true(strlen(out) < ADDRESS_MAX);
			assert_non_null(strchr(out, '@'));
			assert_non_null(address_domain(out));
		}
		if (address_from_envelope(in, out, sizeof(out)) == 0)
			assert_true(strlen(out) < ADDRESS_MAX);
		bool https, mailto;
		bulk_list_unsubscribe_scan(in, &https, &mailto);
		(void)bulk_is_one_click(in);
		(void)bulk_precedence_is_bulk(in);
	}
}

static void huge_header_is_refused(void **state)
{
	(void)state;
	size_t n = 1 << 20;
	char *big = malloc(n + 1), out[ADDRESS_MAX];
	assert_non_null(big);
	memset(big, 'a', n);
	big[n] = '\0';
	big[n / 2] = '@';
	assert_int_equal(address_from_header(big, out, sizeof(out)), -1);
	big[0] = '<';
	assert_int_equal(address_from_header(big, out, sizeof(out)), -1);
	free(big);
}

static void policy_and_config_files_never_crash(void **state)
{
	(void)state;
	char in[8192];
	for (int i = 0; i < 2000; i++) {
		size_t n = random_input(in, sizeof(in));
		char path[] = "/tmp/bm-robust-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, in, n), (ssize_t)n);
		close(fd);
		struct diag d = { 0 };
		struct policy *p = policy_load(path, &d);
		assert_true(p != NULL || diag_errors(&d) > 0);
		policy_free(p);
		diag_free(&d);
		struct settings *s = settings_load(path, &d);
		assert_true(s != NULL || diag_errors(&d) > 0);
		settings_free(s);
		diag_free(&d);
		unlink(path);
	}
}

static void a_line_longer_than_the_limit_is_an_error(void **state)
{
	(void)state;
	size_t n = 100000;
	char *text = malloc(n + 16);
	assert_non_null(text);
	memset(text, 'x', n);
	strcpy(text + n, "\nclass a { }\n");
	const char *path = unit_file(text);
	struct diag d = { 0 };
	assert_null(policy_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "line longer than"));
	diag_free(&d);
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "line longer than"));
	diag_free(&d);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_parsers_never_crash),
		cmocka_unit_test(huge_header_is_refused),
		cmocka_unit_test(policy_and_config_files_never_crash),
		cmocka_unit_test(a_line_longer_than_the_limit_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
