/*
 * test_report - the report parser (report.h) on the corpus of report
 * shapes in tests/report/ and on the edges: the recipient limit, NUL
 * octets, a base64 part that is not base64, nesting past the limit.
 */
#include "config.h"

#include <dirent.h>

#include "unit.h"

#include "report.h"

#define CORPUS TEST_SRCDIR "/tests/report"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* What the parser found, in the .expect format. */
static void describe(const struct report *r, char *out, size_t size)
{
	size_t n = 0;
	n += (size_t)snprintf(out + n, size - n, "kind %s\n", report_kind_name(r->kind));
	if (r->kind == REPORT_ARF)
		n += (size_t)snprintf(out + n, size - n, "feedback-type %s %s\n",
				      r->feedback_type[0] ? r->feedback_type : "-",
				      r->complaint ? "complaint" : "no-complaint");
	n += (size_t)snprintf(out + n, size - n, "feedback-id %s\nrcpts %zu\n",
			      r->feedback_id[0] ? r->feedback_id : "-", r->rcpts);
	for (size_t i = 0; i < r->nrcpt && n < size; i++)
		n += (size_t)snprintf(out + n, size - n, "rcpt %s %s %s %s\n", r->rcpt[i].address,
				      r->rcpt[i].action[0] ? r->rcpt[i].action : "-",
				      r->rcpt[i].status[0] ? r->rcpt[i].status : "-",
				      r->rcpt[i].hard ? "hard" : "soft");
}

static void corpus_shapes_parse_to_their_expected_recipients(void **state)
{
	(void)state;
	DIR *d = opendir(CORPUS);
	assert_non_null(d);
	int seen = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name);
		if (nl < 5 || strcmp(e->d_name + nl - 4, ".eml") != 0)
			continue;
		char path[512], want_path[512], got[8192];
		size_t len, wlen;
		snprintf(path, sizeof(path), "%s/%s", CORPUS, e->d_name);
		snprintf(want_path, sizeof(want_path), "%s/%.*s.expect", CORPUS, (int)(nl - 4),
			 e->d_name);
		char *msg = slurp(path, &len);
		char *want = slurp(want_path, &wlen);
		struct report *r = malloc(sizeof(*r));
		assert_non_null(r);
		report_parse_message(msg, len, r);
		describe(r, got, sizeof(got));
		if (strcmp(got, want) != 0)
			fail_msg("%s:\n--- expected\n%s--- got\n%s", e->d_name, want, got);
		free(r);
		free(msg);
		free(want);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 12);
}

static void recipients_past_the_limit_are_counted_not_kept(void **state)
{
	(void)state;
	size_t cap = 64 * 1024, n = 0;
	char *body = malloc(cap);
	assert_non_null(body);
	n += (size_t)snprintf(body + n, cap - n, "--b\nContent-Type: message/delivery-status\n\n"
			      "Reporting-MTA: dns; x.example\n\n");
	for (int i = 0; i < REPORT_RCPTS_MAX + 10; i++)
		n += (size_t)snprintf(body + n, cap - n, "Final-Recipient: rfc822; u%d@example.org\n"
				      "Action: failed\nStatus: 5.1.1\n\n", i);
	n += (size_t)snprintf(body + n, cap - n, "--b--\n");
	struct report *r = malloc(sizeof(*r));
	assert_non_null(r);
	assert_int_equal(report_parse("multipart/report; boundary=b", body, n, r), REPORT_DSN);
	assert_int_equal(r->rcpts, REPORT_RCPTS_MAX + 10);
	assert_int_equal(r->nrcpt, REPORT_RCPTS_MAX);
	assert_string_equal(r->rcpt[REPORT_RCPTS_MAX - 1].address, "u63@example.org");
	free(r);
	free(body);
}

static void nul_octets_and_junk_base64_do_not_stop_the_parse(void **state)
{
	(void)state;
	static const char body[] =
		"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!\0\0###\n"
		"--b\nContent-Type: message/delivery-status\n\nX-Junk: a\0b\n\n"
		"Final-Recipient: rfc822; q@example.org\nAction: failed\nStatus: 5.1.1\n"
		"--b--\n";
	struct report r;
	assert_int_equal(report_parse("multipart/report; boundary=\"b\"", body, sizeof(body) - 1, &r),
			 REPORT_DSN);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpt[0].address, "q@example.org");
	assert_true(r.rcpt[0].hard);
}

static void nesting_past_the_limit_is_not_read(void **state)
{
	(void)state;
	char body[4096];
	size_t n = 0;
	for (int i = 0; i < REPORT_DEPTH_MAX; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n,
				      "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i, i + 1);
	n += (size_t)snprintf(body + n, sizeof(body) - n,
			      "--b%d\nContent-Type: message/delivery-status\n\n"
			      "Final-Recipient: rfc822; deep@example.org\nAction: failed\nStatus: 5.1.1\n",
			      REPORT_DEPTH_MAX);
	struct report r;
	assert_int_equal(report_parse("multipart/mixed; boundary=b0", body, n, &r), REPORT_NONE);
	assert_int_equal(r.nrcpt, 0);
}

static void only_multipart_report_bodies_are_kept(void **state)
{
	(void)state;
	assert_true(report_maybe("multipart/report; report-type=delivery-status"));
	assert_true(report_maybe("  Multipart/Report;boundary=x"));
	assert_false(report_maybe("multipart/mixed; boundary=x"));
	assert_false(report_maybe("multipart/reports"));
	assert_false(report_maybe("text/plain"));
	assert_false(report_maybe(NULL));
	struct report r;
	assert_int_equal(report_parse(NULL, NULL, 0, &r), REPORT_NONE);
	assert_int_equal(report_parse_message("", 0, &r), REPORT_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(corpus_shapes_parse_to_their_expected_recipients),
		cmocka_unit_test(recipients_past_the_limit_are_counted_not_kept),
		cmocka_unit_test(nul_octets_and_junk_base64_do_not_stop_the_parse),
		cmocka_unit_test(nesting_past_the_limit_is_not_read),
		cmocka_unit_test(only_multipart_report_bodies_are_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
