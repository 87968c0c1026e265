/*
 * Deferrals by class (metrics_class_deferral): exact counts per class
 * name, no class and a class named "other" in class="other", concurrent
 * first deferrals of one name making one member, and a full table of
 * 256 names sending the rest to class="other". The table is process
 * state, so the tests run in order and each uses its own names.
 */
#include "unit.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

static char text[1 << 17];

/* The value of bulkmilter_class_deferrals_total{class="cls"}; -1: not served. */
static long class_count(const char *cls)
{
	char want[160];
	const char *p;
	long n = -1;

	metrics_format(text, sizeof(text));
	snprintf(want, sizeof(want), "\nbulkmilter_class_deferrals_total{class=\"%s\"} ", cls);
	p = strstr(text, want);
	if (p != NULL)
		sscanf(p + strlen(want), "%ld", &n);
	return n;
}

static int family_members(void)
{
	int n = 0;

	metrics_format(text, sizeof(text));
	for (const char *p = text; (p = strstr(p, "\nbulkmilter_class_deferrals_total{")) != NULL; p++)
		n++;
	return n;
}

static void counts_per_class_exact_other_for_none_and_other(void **state)
{
	(void)state;
	assert_int_equal(class_count("other"), 0);
	assert_int_equal(family_members(), 1);
	metrics_class_deferral("standard");
	metrics_class_deferral("news");
	metrics_class_deferral("news");
	metrics_class_deferral(NULL);
	metrics_class_deferral("other");
	assert_int_equal(class_count("standard"), 1);
	assert_int_equal(class_count("news"), 2);
	assert_int_equal(class_count("other"), 2);
	assert_int_equal(family_members(), 3);
	metrics_format(text, sizeof(text));
	assert_non_null(strstr(text, "# HELP bulkmilter_class_deferrals_total "));
	assert_non_null(strstr(text, "# TYPE bulkmilter_class_deferrals_total counter\n"));
}

#define THREADS 4
#define ROUNDS 1000

static void *defer_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "race%d", i % 8);
		metrics_class_deferral(name);
	}
	return NULL;
}

static void concurrent_first_deferrals_make_one_member_each(void **state)
{
	pthread_t t[THREADS];
	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, defer_many, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 8; i++) {
		char name[16];
		snprintf(name, sizeof(name), "race%d", i);
		assert_int_equal(class_count(name), THREADS * ROUNDS / 8);
	}
	assert_int_equal(family_members(), 3 + 8);
}

static void beyond_256_names_other(void **state)
{
	long other = class_count("other");
	(void)state;
	for (int i = 0; i < 300; i++) {
		char name[16];
		snprintf(name, sizeof(name), "c%03d", i);
		metrics_class_deferral(name);
	}
	/* 2 + 8 names before: c000..c245 fill the table */
	assert_int_equal(class_count("c245"), 1);
	assert_int_equal(class_count("c246"), -1);
	assert_int_equal(class_count("other"), other + 300 - 246);
	assert_int_equal(family_members(), 256 + 1);
	metrics_class_deferral("c000");
	metrics_class_deferral("c299");
	assert_int_equal(class_count("c000"), 2);
	assert_int_equal(class_count("other"), other + 300 - 246 + 1);
	/* a buffer too small for the class family leaves the fixed counters whole */
	static char small[8192];
	size_t n = metrics_format(small, sizeof(small));
	assert_true(n > 0 && n < sizeof(small) && small[n - 1] == '\n');
	assert_null(strstr(small, "bulkmilter_class_deferrals_total"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(counts_per_class_exact_other_for_none_and_other),
		cmocka_unit_test(concurrent_first_deferrals_make_one_member_each),
		cmocka_unit_test(beyond_256_names_other),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
