/*
 * Unit tests of the printf-free formatters of the mail path: decimal.h
 * (numbers) against snprintf, and text.h (keys built from pieces):
 * overflow, copies and cuts.
 */
#include "unit.h"

#include <stdbool.h>
#include <stdint.h>

#include "decimal.h"
#include "text.h"

static void assert_decimal(unsigned long long v)
{
	char got[DECIMAL_MAX + 1], want[32];
	size_t n = decimal_put(got, v);

	got[n] = '\0';
	snprintf(want, sizeof(want), "%llu", v);
	assert_string_equal(got, want);
	assert_int_equal(decimal_len(v), strlen(want));
}

static void decimal_matches_printf_at_every_power_of_two_and_ten(void **state)
{
	(void)state;
	for (int shift = 0; shift < 64; shift++)
		for (int d = -2; d <= 2; d++)
			assert_decimal((1ULL << shift) + (unsigned long long)(long long)d);
	unsigned long long ten = 1;
	for (int k = 0; k < DECIMAL_MAX; k++, ten *= 10) {
		assert_decimal(ten - 1);
		assert_decimal(ten);
		assert_decimal(ten + 1);
	}
	assert_decimal(0);
	assert_decimal(UINT64_MAX);
	assert_decimal(UINT64_MAX - 1);
}

static void decimal_matches_printf_on_random_numbers(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		assert_decimal(x >> (x % 64));	/* every length, not only 20 digits */
	}
}

static void text_builds_a_key_from_pieces(void **state)
{
	(void)state;
	char buf[64];
	struct text t = TEXT_INIT(buf);

	text_put(&t, "{", 1);
	text_str(&t, "alice@example.com");
	text_put(&t, "}:r:", 4);
	text_num(&t, 1000);
	text_put(&t, "/", 1);
	text_num(&t, 3600000);
	assert_true(text_ok(&t));
	assert_string_equal(buf, "{alice@example.com}:r:1000/3600000");
	assert_int_equal(t.len, strlen(buf));
	char *copy = text_dup(&t);
	assert_string_equal(copy, buf);
	free(copy);
}

static void text_that_does_not_fit_is_over_for_good(void **state)
{
	(void)state;
	char buf[8];
	struct text t = TEXT_INIT(buf);

	text_str(&t, "1234567");		/* 7 bytes and the NUL: fits */
	assert_true(text_ok(&t));
	text_put(&t, "8", 1);
	assert_false(text_ok(&t));
	assert_string_equal(buf, "1234567");	/* still a string */
	assert_null(text_dup(&t));
	text_put(&t, "", 0);			/* nothing fits once over */
	assert_false(text_ok(&t));
}

static void text_hex_matches_printf_with_and_without_width(void **state)
{
	(void)state;
	unsigned long long vs[] = { 0, 1, 0xf, 0x10, 0xdeadbeef, 0x1234, UINT64_MAX };
	for (size_t i = 0; i < sizeof(vs) / sizeof(*vs); i++) {
		char buf[64], want[64];
		struct text t = TEXT_INIT(buf);
		text_hex(&t, vs[i], 1);
		text_put(&t, ".", 1);
		text_hex(&t, vs[i] & 0xffffffffu, 8);
		snprintf(want, sizeof(want), "%llx.%08llx", vs[i], vs[i] & 0xffffffffu);
		assert_string_equal(buf, want);
	}
}

static void text_copy_cuts_as_snprintf_does(void **state)
{
	(void)state;
	char small[4];
	const char *src = "abcdef";

	text_copy(small, sizeof(small), src);
	assert_string_equal(small, "abc");	/* snprintf's cut */
	text_copy(small, sizeof(small), "ab");
	assert_string_equal(small, "ab");
	text_copy(small, 1, "xyz");
	assert_string_equal(small, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decimal_matches_printf_at_every_power_of_two_and_ten),
		cmocka_unit_test(decimal_matches_printf_on_random_numbers),
		cmocka_unit_test(text_builds_a_key_from_pieces),
		cmocka_unit_test(text_that_does_not_fit_is_over_for_good),
		cmocka_unit_test(text_hex_matches_printf_with_and_without_width),
		cmocka_unit_test(text_copy_cuts_as_snprintf_does),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
