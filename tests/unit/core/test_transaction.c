/*
 * The transaction core's rules on their own (direction, the one action
 * rule, our Authentication-Results) and whole transactions beyond the
 * action matrix (test_transaction_matrix.c): store round trips, refunds,
 * removals of forged headers, envelope senders, stages out of order.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "direction.h"
#include "header_facts.h"
#include "transaction_harness.h"
#include "verdict.h"

/* ---- the rules on their own ---------------------------------------------- */

static void direction_is_outbound_for_sasl_internal_or_local_submission(void **state)
{
	(void)state;
	assert_int_equal(direction_decide("alice", false, false), DIRECTION_OUTBOUND);
	assert_int_equal(direction_decide(NULL, true, false), DIRECTION_OUTBOUND);
	assert_int_equal(direction_decide("", false, true), DIRECTION_OUTBOUND);
	assert_int_equal(direction_decide("", false, false), DIRECTION_INBOUND);
	assert_int_equal(direction_decide(NULL, false, false), DIRECTION_INBOUND);
	assert_string_equal(direction_name(DIRECTION_INBOUND), "inbound");
	assert_string_equal(direction_name(DIRECTION_OUTBOUND), "outbound");
}

static void local_submission_is_localhost_127_0_0_1_port_0(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
	const struct sockaddr *sa = (const struct sockaddr *)&sin;
	(void)state;
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_true(direction_local_submission("localhost", sa));
	assert_false(direction_local_submission("mail.example", sa));
	assert_false(direction_local_submission(NULL, sa));
	sin.sin_port = htons(25);
	assert_false(direction_local_submission("localhost", sa));
	sin.sin_port = 0;
	inet_pton(AF_INET, "127.0.0.2", &sin.sin_addr);
	assert_false(direction_local_submission("localhost", sa));
}

static void monitor_tags_and_local_submission_holds(void **state)
{
	static const struct { enum run_mode mode; bool local; enum policy_action in, out; } rule[] = {
		{ MODE_ENFORCE, false, ACTION_TEMPFAIL, ACTION_TEMPFAIL },
		{ MODE_ENFORCE, false, ACTION_REJECT, ACTION_REJECT },
		{ MODE_ENFORCE, false, ACTION_HOLD, ACTION_HOLD },
		{ MODE_ENFORCE, false, ACTION_TAG, ACTION_TAG },
		{ MODE_ENFORCE, false, ACTION_NONE, ACTION_NONE },
		{ MODE_ENFORCE, true, ACTION_TEMPFAIL, ACTION_HOLD },
		{ MODE_ENFORCE, true, ACTION_REJECT, ACTION_HOLD },
		{ MODE_ENFORCE, true, ACTION_HOLD, ACTION_HOLD },
		{ MODE_ENFORCE, true, ACTION_TAG, ACTION_TAG },
		{ MODE_ENFORCE, true, ACTION_NONE, ACTION_NONE },
		{ MODE_MONITOR, false, ACTION_TEMPFAIL, ACTION_TAG },
		{ MODE_MONITOR, false, ACTION_REJECT, ACTION_TAG },
		{ MODE_MONITOR, false, ACTION_HOLD, ACTION_TAG },
		{ MODE_MONITOR, false, ACTION_TAG, ACTION_TAG },
		{ MODE_MONITOR, false, ACTION_NONE, ACTION_NONE },
		{ MODE_MONITOR, true, ACTION_TEMPFAIL, ACTION_TAG },
		{ MODE_MONITOR, true, ACTION_REJECT, ACTION_TAG },
		{ MODE_MONITOR, true, ACTION_HOLD, ACTION_TAG },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rule) / sizeof(rule[0]); i++) {
		struct verdict_scope s = { .mode = rule[i].mode, .local_submission = rule[i].local };
		assert_string_equal(policy_action_name(verdict_effective_action(&s, rule[i].in)),
				    policy_action_name(rule[i].out));
	}
}

static void our_authserv_id_is_recognised_as_rfc_8601_reads_it(void **state)
{
	(void)state;
	assert_true(header_facts_ar_is_ours(" mx.test.example; spf=pass", "mx.test.example"));
	assert_true(header_facts_ar_is_ours(" MX.Test.Example;", "mx.test.example"));
	assert_true(header_facts_ar_is_ours(" (a (nested) comment) mx.test.example; x", "mx.test.example"));
	assert_true(header_facts_ar_is_ours(" \"mx.test.example\"; spf=pass", "mx.test.example"));
	assert_false(header_facts_ar_is_ours(" other.example; spf=pass", "mx.test.example"));
	assert_false(header_facts_ar_is_ours(" mx.test.example.evil; spf=pass", "mx.test.example"));
	assert_false(header_facts_ar_is_ours(" (open comment mx.test.example;", "mx.test.example"));
}

/* ---- whole transactions beyond the matrix -------------------------------- */

static void one_store_round_trip_at_mail_and_one_per_recipient(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(OUTBOUND, "over_tag");
	assert_int_equal(th_mail(OUTBOUND, "over_tag"), VERDICT_CONTINUE);
	assert_int_equal(th_store.charges, 1);
	for (unsigned i = 1; i <= 5; i++) {
		assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
		assert_int_equal(th_store.charges, 1 + i);
	}
	assert_int_equal(th_content(th_plain_headers, &res), VERDICT_CONTINUE);
	th_end(VERDICT_CONTINUE);
	assert_int_equal(th_store.charges, 6);
	assert_int_equal(th_store.refunds, 0);
	th_disconnect();
	th_assert_logged("QID1: direction=outbound class=over_tag account=over_tag client=198.51.100.7 "
		      "sasl=over_tag from=<alice@example.com> decision=accept rcpts=5 bulk=no signed=no "
		      "spf=- egress=- aligned=yes");
}

static void local_submission_charges_its_recipients_once_at_end_of_message(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(LOCAL, "over_tag");
	assert_int_equal(th_mail(LOCAL, "over_tag"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_store.charges, 1);
	assert_int_equal(th_content(th_plain_headers, &res), VERDICT_CONTINUE);
	assert_int_equal(th_store.charges, 2);
	th_end(VERDICT_CONTINUE);
	th_disconnect();
	th_assert_logged("QID1: direction=outbound class=over_tag account=over_tag@local.example "
		      "client=127.0.0.1 sasl=- from=<over_tag@local.example> decision=accept rcpts=2");
}

static void destination_rate_defers_only_its_recipients_naming_the_domain(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(OUTBOUND, "over_tempfail");
	assert_int_equal(th_mail(OUTBOUND, "over_tempfail"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt_to("<a@Gmail.Test>"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt_to("<b@gmail.test>"), VERDICT_TEMPFAIL);
	assert_string_equal(th_t.reply.code, "451");
	assert_string_equal(th_t.reply.text,
			    "Sending rate to gmail.test exceeded for over_tempfail, try again later");
	/* the others go on: the account's 2/1h has one left */
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_TEMPFAIL);
	assert_string_equal(th_t.reply.text, "Sending rate limit exceeded for over_tempfail, try again later");
	assert_int_equal(th_content(th_plain_headers, &res), VERDICT_CONTINUE);
	th_end(VERDICT_CONTINUE);
	th_disconnect();
	th_assert_logged("QID1: account=over_tempfail over recipients 1/day: 451 4.7.1 (recipient)");
}

static void local_submission_charges_destination_rates_at_end_and_refunds_them(void **state)
{
	(void)state;
	th_connect(LOCAL, "over_tag");
	assert_int_equal(th_mail(LOCAL, "over_tag"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt_to("<a@gmail.test>"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_store.charges, 1);
	th_log_capture(true);
	assert_int_equal(transaction_charge_recipients(&th_t, th_t.msg.rcpts), VERDICT_CONTINUE);
	th_log_capture(false);
	/* the destination window took the one gmail.test recipient, the 2/1h both */
	unsigned long window = 0, rcpts = 0;
	for (size_t i = 0; i < th_store.buckets; i++) {
		if (strstr(th_store.bucket[i].key, ":r:1/day:to:") != NULL)
			window += th_store.bucket[i].used;
		if (strstr(th_store.bucket[i].key, ":r:2/3600000") != NULL)
			rcpts += th_store.bucket[i].used;
	}
	assert_int_equal(window, 1);
	assert_int_equal(rcpts, 2);
	th_log_capture(true);
	transaction_abort(&th_t);
	th_log_capture(false);
	/* ... and the abort gave it all back, to the window it was taken from */
	for (size_t i = 0; i < th_store.buckets; i++)
		assert_int_equal(th_store.bucket[i].used, 0);
	th_disconnect();
}

static void aborted_message_is_refunded_and_logged(void **state)
{
	(void)state;
	th_connect(OUTBOUND, "over_tag");
	assert_int_equal(th_mail(OUTBOUND, "over_tag"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	th_log_capture(true);
	transaction_abort(&th_t);
	th_log_capture(false);
	assert_int_equal(th_store.refunds, 1);
	for (size_t i = 0; i < th_store.buckets; i++)
		assert_int_equal(th_store.bucket[i].used, 0);
	th_disconnect();
	th_assert_logged("QID1: direction=outbound class=over_tag account=over_tag client=198.51.100.7 "
		      "decision=aborted rcpts=1 refunded=yes");
}

static void message_refused_at_end_or_failing_its_edits_is_refunded(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(OUTBOUND, "over_tag");
	assert_int_equal(th_mail(OUTBOUND, "over_tag"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_content(th_plain_headers, &res), VERDICT_CONTINUE);
	th_end(VERDICT_TEMPFAIL);	/* an edit failed */
	assert_int_equal(th_store.refunds, 1);
	th_disconnect();
	th_assert_logged("decision=tempfail rcpts=1");
}

static void forged_headers_are_removed_highest_index_first(void **state)
{
	static const char *const headers[] = {
		"X-Bulk-Class", " forged",
		"Authentication-Results", " mx.test.example; spf=pass",
		"From", " Alice <alice@example.com>",
		"Authentication-Results", " other.example; spf=pass",
		"x-bulk-class", " forged too",
		"Authentication-Results", " (forged) \"MX.test.example\"; dkim=pass",
		NULL,
	};
	static const struct th_edit want[] = {
		{ EDIT_REMOVE, "X-Bulk-Class", NULL, 2, 2 },
		{ EDIT_REMOVE, "Authentication-Results", NULL, 3, 1 },
		{ EDIT_REMOVE, "Authentication-Results", NULL, 1, 1 },
		TH_AR("pass"),
	};
	const struct transaction_result *res;
	(void)state;
	th_connect(INBOUND, "spf_none");
	assert_int_equal(th_mail(INBOUND, "spf_none"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	assert_int_equal(th_content(headers, &res), VERDICT_CONTINUE);
	th_assert_edits(want, sizeof(want) / sizeof(want[0]), NULL, res);
	th_end(VERDICT_CONTINUE);
	th_disconnect();
}

static void more_forged_auth_results_than_we_can_remove_get_550(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(INBOUND, "spf_none");
	assert_int_equal(th_mail(INBOUND, "spf_none"), VERDICT_CONTINUE);
	assert_int_equal(th_rcpt(), VERDICT_CONTINUE);
	for (int i = 0; i <= HEADER_FACTS_FORGED_AR_MAX; i++)
		th_header("Authentication-Results", " mx.test.example; spf=pass");
	assert_int_equal(th_content(th_plain_headers, &res), VERDICT_REJECT);
	assert_string_equal(th_t.reply.code, "550");
	assert_string_equal(th_t.reply.xcode, "5.7.1");
	assert_string_equal(th_t.reply.text, "Too many Authentication-Results headers");
	th_end(VERDICT_REJECT);
	th_disconnect();
	th_assert_logged("decision=reject rcpts=1");
}

static void unusual_envelope_sender_is_kept_and_an_unusable_one_gets_553(void **state)
{
	char huge[ADDRESS_MAX + 8];
	(void)state;
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	th_connect(INBOUND, "spf_none");
	th_log_capture(true);
	assert_int_equal(transaction_mail(&th_t, "<odd sender>", NULL, NULL), VERDICT_CONTINUE);
	transaction_abort(&th_t);
	assert_int_equal(transaction_mail(&th_t, huge, NULL, NULL), VERDICT_REJECT);
	th_log_capture(false);
	assert_string_equal(th_t.reply.code, "553");
	assert_string_equal(th_t.reply.xcode, "5.1.7");
	assert_string_equal(th_t.reply.text, "Unusable envelope sender address");
	th_assert_logged("NOQUEUE: unusual envelope sender <odd sender> from 192.0.2.9: kept as given");
	th_disconnect();
}

static void stages_outside_a_message_tempfail_without_a_text(void **state)
{
	const struct transaction_result *res;
	(void)state;
	th_connect(OUTBOUND, "over_tag");
	th_log_capture(true);
	assert_int_equal(transaction_rcpt(&th_t, NULL, NULL), VERDICT_TEMPFAIL);
	assert_null(th_t.reply.code);
	assert_int_equal(transaction_header(&th_t, "From", " a@b.example", NULL), VERDICT_TEMPFAIL);
	assert_int_equal(transaction_eoh(&th_t, NULL), VERDICT_TEMPFAIL);
	assert_int_equal(transaction_body(&th_t, (const unsigned char *)"x", 1), VERDICT_TEMPFAIL);
	assert_int_equal(transaction_eom(&th_t, NULL, &res), VERDICT_TEMPFAIL);
	assert_null(res);
	th_log_capture(false);
	th_disconnect();

	memset(&th_t, 0, sizeof(th_t));
	transaction_connect(&th_t, NULL, "client.example", NULL);	/* no configuration loaded */
	assert_int_equal(transaction_mail(&th_t, "<a@b.example>", NULL, NULL), VERDICT_TEMPFAIL);
	assert_null(th_t.reply.code);
	assert_null(transaction_close(&th_t));
}

/* What smfi_setreply gets: one line, and '%' doubled (it reads a format). */
static void reply_text_is_one_line_with_percent_doubled_and_cut_to_fit(void **state)
{
	struct transaction t = { 0 };
	char out[16], wide[64];
	(void)state;
	snprintf(t.reply.text, sizeof(t.reply.text), "50%% off\r\nX:\t\x7f!");
	transaction_reply_text(&t, wide, sizeof(wide));
	assert_string_equal(wide, "50%% off  X:  !");
	snprintf(t.reply.text, sizeof(t.reply.text), "%%%%%%%%%%%%%%%%%%%%");
	transaction_reply_text(&t, out, sizeof(out));
	assert_string_equal(out, "%%%%%%%%%%%%%%");
	snprintf(t.reply.text, sizeof(t.reply.text), "abcdefghijklmnopqrstuvwxyz");
	transaction_reply_text(&t, out, sizeof(out));
	assert_string_equal(out, "abcdefghijklm");
}

/* No configuration loaded: the connection opens, and MAIL FROM tempfails. */
static void connection_without_a_snapshot_tempfails_mail_from(void **state)
{
	struct transaction t = { 0 };
	(void)state;
	assert_null(snapshot_acquire());
	transaction_open(&t, "client.example", NULL);
	assert_int_equal(transaction_mail(&t, "<alice@example.com>", "alice", "QID1"), VERDICT_TEMPFAIL);
	assert_null(t.reply.code);
	transaction_release(&t);
	assert_null(t.snap);
}

int main(void)
{
	static const struct CMUnitTest rules[] = {
		cmocka_unit_test(direction_is_outbound_for_sasl_internal_or_local_submission),
		cmocka_unit_test(local_submission_is_localhost_127_0_0_1_port_0),
		cmocka_unit_test(monitor_tags_and_local_submission_holds),
		cmocka_unit_test(our_authserv_id_is_recognised_as_rfc_8601_reads_it),
		cmocka_unit_test(reply_text_is_one_line_with_percent_doubled_and_cut_to_fit),
		cmocka_unit_test(connection_without_a_snapshot_tempfails_mail_from),
	};
	static const struct CMUnitTest transactions[] = {
		cmocka_unit_test_setup_teardown(one_store_round_trip_at_mail_and_one_per_recipient,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(local_submission_charges_its_recipients_once_at_end_of_message,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(destination_rate_defers_only_its_recipients_naming_the_domain,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(local_submission_charges_destination_rates_at_end_and_refunds_them,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(aborted_message_is_refunded_and_logged, th_setup,
						th_teardown),
		cmocka_unit_test_setup_teardown(message_refused_at_end_or_failing_its_edits_is_refunded,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(forged_headers_are_removed_highest_index_first, th_setup,
						th_teardown),
		cmocka_unit_test_setup_teardown(more_forged_auth_results_than_we_can_remove_get_550,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(unusual_envelope_sender_is_kept_and_an_unusable_one_gets_553,
						th_setup, th_teardown),
		cmocka_unit_test_setup_teardown(stages_outside_a_message_tempfail_without_a_text, th_setup,
						th_teardown),
	};
	int failed = 0;

	failed += cmocka_run_group_tests(rules, NULL, NULL);
	failed += cmocka_run_group_tests(transactions, th_group_setup, th_group_teardown);
	return failed ? 1 : 0;
}
