/*
 * test_feedback - Feedback-ID tokens (feedback.h): they read back to the
 * class and account they were made for, only with the same keys, never
 * show the account, and any change to them is refused.
 */
#include "config.h"

#include "unit.h"

#include "feedback.h"

static struct feedback_key key, other;

static int setup(void **state)
{
	(void)state;
	feedback_key_secret("0123456789abcdef-secret", 23, &key);
	feedback_key_secret("another secret of the fleet", 27, &other);
	return 0;
}

static void a_token_reads_back_to_its_class_and_account(void **state)
{
	(void)state;
	char v[FEEDBACK_VALUE_MAX], v2[FEEDBACK_VALUE_MAX + 8], cls[64], acct[400];
	assert_int_equal(feedback_make(&key, "newsletter", "news@example.com", v, sizeof(v)), 0);
	assert_true(strncmp(v, "newsletter:", 11) == 0);
	assert_true(strlen(v) > 11 + 10 && strcmp(v + strlen(v) - 11, ":bulkmilter") == 0);
	assert_null(strstr(v, "news@"));
	assert_null(strstr(v, "example"));
	assert_int_equal(feedback_read(&key, v, cls, sizeof(cls), acct, sizeof(acct)), 0);
	assert_string_equal(cls, "newsletter");
	assert_string_equal(acct, "news@example.com");
	/* the same for every message of the account */
	assert_int_equal(feedback_make(&key, "newsletter", "news@example.com", v2, sizeof(v2)), 0);
	assert_string_equal(v, v2);
	/* as a report quotes it: white space around it */
	snprintf(v2, sizeof(v2), "  %s \t", v);
	assert_int_equal(feedback_read(&key, v2, cls, sizeof(cls), acct, sizeof(acct)), 0);
}

static void a_longest_account_fits(void **state)
{
	(void)state;
	char account[320], v[FEEDBACK_VALUE_MAX], cls[64], acct[400];
	memset(account, 'a', sizeof(account) - 1);
	account[sizeof(account) - 1] = '\0';
	account[10] = '@';
	assert_int_equal(feedback_make(&key, "a-class-name-of-some-length-for-the-test-abcdefghijklmnopqrstu",
				       account, v, sizeof(v)), 0);
	assert_int_equal(feedback_read(&key, v, cls, sizeof(cls), acct, sizeof(acct)), 0);
	assert_string_equal(acct, account);
}

static void forged_or_foreign_values_are_refused(void **state)
{
	(void)state;
	char v[FEEDBACK_VALUE_MAX], bad[FEEDBACK_VALUE_MAX + 16], cls[64], acct[400];
	assert_int_equal(feedback_make(&key, "newsletter", "news@example.com", v, sizeof(v)), 0);
	/* other keys */
	assert_int_equal(feedback_read(&other, v, cls, sizeof(cls), acct, sizeof(acct)), -1);
	/* another class in front of the same token */
	snprintf(bad, sizeof(bad), "standard%s", strchr(v, ':'));
	assert_int_equal(feedback_read(&key, bad, cls, sizeof(cls), acct, sizeof(acct)), -1);
	/* each character of the token changed in turn */
	size_t start = strlen("newsletter:"), end = strlen(v) - strlen(":bulkmilter");
	for (size_t i = start; i < end; i++) {
		snprintf(bad, sizeof(bad), "%s", v);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(feedback_read(&key, bad, cls, sizeof(cls), acct, sizeof(acct)), -1);
	}
	/* cut, not ours, junk */
	snprintf(bad, sizeof(bad), "%.*s:bulkmilter", (int)(end - 2), v);
	assert_int_equal(feedback_read(&key, bad, cls, sizeof(cls), acct, sizeof(acct)), -1);
	assert_int_equal(feedback_read(&key, "a:b:c:SenderId", cls, sizeof(cls), acct, sizeof(acct)), -1);
	assert_int_equal(feedback_read(&key, "newsletter:Zm9vYmFy:bulkmilter", cls, sizeof(cls), acct,
				       sizeof(acct)), -1);
	assert_int_equal(feedback_read(&key, "", cls, sizeof(cls), acct, sizeof(acct)), -1);
	assert_int_equal(feedback_read(&key, "::bulkmilter", cls, sizeof(cls), acct, sizeof(acct)), -1);
}

static void a_key_file_must_hold_a_long_enough_secret(void **state)
{
	(void)state;
	struct feedback_key a, b;
	char err[256];
	assert_int_equal(feedback_key_file(unit_file("short\n"), &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "shorter than 16 octets"));
	assert_null(strstr(err, "short\n"));
	assert_int_equal(feedback_key_file("/nonexistent/key", &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/key"));
	/* one line end is not part of the secret */
	assert_int_equal(feedback_key_file(unit_file("0123456789abcdef-secret\n"), &a, err, sizeof(err)), 0);
	assert_int_equal(feedback_key_file(unit_file("0123456789abcdef-secret"), &b, err, sizeof(err)), 0);
	assert_memory_equal(&a, &key, sizeof(a));
	assert_memory_equal(&b, &key, sizeof(b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_token_reads_back_to_its_class_and_account),
		cmocka_unit_test(a_longest_account_fits),
		cmocka_unit_test(forged_or_foreign_values_are_refused),
		cmocka_unit_test(a_key_file_must_hold_a_long_enough_secret),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
