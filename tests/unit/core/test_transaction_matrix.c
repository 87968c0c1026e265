/*
 * Every policy action through whole transactions (transaction.h), as a
 * table: over-limit at MAIL FROM and at RCPT TO, bulk-noncompliant,
 * spf-fail and OnStoreFailure, each action under Mode enforce and
 * monitor, for inbound, outbound and locally submitted mail. Each row
 * says what every stage answers, the reply (code, enhanced code, text),
 * the header edits in order (operation, name, value, index), the hold
 * reason, the decision logged and the log line the rule gives; a row
 * whose log is not a monitor line also asserts that monitor logged
 * nothing. The store and SPF are transaction_harness.h's doubles.
 */
#include "unit.h"

#include "transaction_harness.h"

enum scenario {
	MESSAGES_FULL,			/* the account's messages bucket is empty */
	THIRD_RECIPIENT_OVER,		/* three recipients against recipients 2/1h */
	NONCOMPLIANT,			/* bulk without List-Unsubscribe */
	SPF_FAIL,			/* the client's SPF says fail */
	STORE_DOWN,			/* Redis does not answer */
};

struct tcase {
	const char *cls;
	enum th_way way;
	enum run_mode mode;
	enum scenario sc;
	enum verdict mail;		/* MAIL FROM; a refusal ends the case */
	enum verdict rcpt3;		/* the third recipient (THIRD_RECIPIENT_OVER) */
	enum verdict eom;
	const char *code, *xcode, *text;	/* of the refusal */
	struct th_edit edit[5];	/* in order; name NULL ends */
	const char *hold;
	const char *decision;
	const char *log;		/* a line the log has; NULL: no monitor line either */
	enum store_failure_action on_store_failure;
};

#define OVER_M TH_ADD("X-Bulk-Over-Limit", " 1/1h messages")
#define OVER_R TH_ADD("X-Bulk-Over-Limit", " 2/1h recipients")
#define NONCOMPLIANT_TAG TH_ADD("X-Bulk-Noncompliant", " list-unsubscribe")
#define BULK(cls) TH_ADD("X-Bulk-Class", " " cls), TH_ADD("Precedence", " bulk")
#define TEMP_TEXT(acct) "Sending rate limit exceeded for " acct ", try again later"
#define PERM_TEXT(acct) "Sending rate limit exceeded for " acct
#define BULK_TEXT "Bulk mail does not meet bulk sender requirements: list-unsubscribe"
#define SPF_TEXT(ip) "SPF check failed for example.net from " ip ": not permitted"

static const struct tcase cases[] = {
	/* over-limit at MAIL FROM, Mode enforce */
	{ "over_tempfail", OUTBOUND, MODE_ENFORCE, MESSAGES_FULL, VERDICT_TEMPFAIL, 0, 0,
	  "451", "4.7.1", TEMP_TEXT("over_tempfail"), {{0}}, NULL, "tempfail-rate",
	  "NOQUEUE: account=over_tempfail over messages 1/1h: 451 4.7.1\n", 0 },
	{ "over_tempfail", INBOUND, MODE_ENFORCE, MESSAGES_FULL, VERDICT_TEMPFAIL, 0, 0,
	  "451", "4.7.1", TEMP_TEXT("bob@example.net"), {{0}}, NULL, "tempfail-rate", NULL, 0 },
	{ "over_tempfail", LOCAL, MODE_ENFORCE, MESSAGES_FULL, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_tempfail@local.example over messages rate 1/1h", "hold", NULL, 0 },
	{ "over_reject", OUTBOUND, MODE_ENFORCE, MESSAGES_FULL, VERDICT_REJECT, 0, 0,
	  "550", "5.7.1", PERM_TEXT("over_reject"), {{0}}, NULL, "reject-rate",
	  "NOQUEUE: account=over_reject over messages 1/1h: 550 5.7.1\n", 0 },
	{ "over_reject", INBOUND, MODE_ENFORCE, MESSAGES_FULL, VERDICT_REJECT, 0, 0,
	  "550", "5.7.1", PERM_TEXT("bob@example.net"), {{0}}, NULL, "reject-rate", NULL, 0 },
	{ "over_reject", LOCAL, MODE_ENFORCE, MESSAGES_FULL, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_reject@local.example over messages rate 1/1h", "hold", NULL, 0 },
	{ "over_hold", OUTBOUND, MODE_ENFORCE, MESSAGES_FULL, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_hold over messages rate 1/1h", "hold", NULL, 0 },
	{ "over_hold", INBOUND, MODE_ENFORCE, MESSAGES_FULL, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { TH_AR("pass") }, "bulkmilter: bob@example.net over messages rate 1/1h", "hold", NULL, 0 },
	{ "over_hold", LOCAL, MODE_ENFORCE, MESSAGES_FULL, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_hold@local.example over messages rate 1/1h", "hold", NULL, 0 },
	{ "over_tag", OUTBOUND, MODE_ENFORCE, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept", NULL, 0 },
	{ "over_tag", INBOUND, MODE_ENFORCE, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_M }, NULL, "accept", NULL, 0 },
	{ "over_tag", LOCAL, MODE_ENFORCE, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept", NULL, 0 },
	/* over-limit at MAIL FROM, Mode monitor: a tag, and what enforce would do */
	{ "over_tempfail", OUTBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=over_tempfail over messages 1/1h: would tempfail\n", 0 },
	{ "over_tempfail", INBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=bob@example.net over messages 1/1h: would tempfail\n", 0 },
	{ "over_tempfail", LOCAL, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "QID1: monitor: account=over_tempfail@local.example over messages 1/1h: would tempfail\n", 0 },
	{ "over_reject", OUTBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=over_reject over messages 1/1h: would reject\n", 0 },
	{ "over_reject", INBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=bob@example.net over messages 1/1h: would reject\n", 0 },
	{ "over_reject", LOCAL, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "QID1: monitor: account=over_reject@local.example over messages 1/1h: would reject\n", 0 },
	{ "over_hold", OUTBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=over_hold over messages 1/1h: would hold\n", 0 },
	{ "over_hold", INBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_M }, NULL, "accept",
	  "NOQUEUE: monitor: account=bob@example.net over messages 1/1h: would hold\n", 0 },
	{ "over_hold", LOCAL, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept",
	  "QID1: monitor: account=over_hold@local.example over messages 1/1h: would hold\n", 0 },
	{ "over_tag", OUTBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept", NULL, 0 },
	{ "over_tag", INBOUND, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_M }, NULL, "accept", NULL, 0 },
	{ "over_tag", LOCAL, MODE_MONITOR, MESSAGES_FULL, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_M }, NULL, "accept", NULL, 0 },
	/* over-limit per recipient: only the third gets the reply (local: all at end of message) */
	{ "over_tempfail", OUTBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, VERDICT_TEMPFAIL, 0,
	  "451", "4.7.1", TEMP_TEXT("over_tempfail"), {{0}}, NULL, "accept",
	  "QID1: account=over_tempfail over recipients 2/1h: 451 4.7.1 (recipient)\n", 0 },
	{ "over_tempfail", INBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, VERDICT_TEMPFAIL, 0,
	  "451", "4.7.1", TEMP_TEXT("bob@example.net"), { TH_AR("pass") }, NULL, "accept",
	  "QID1: account=bob@example.net over recipients 2/1h: 451 4.7.1 (recipient)\n", 0 },
	{ "over_tempfail", LOCAL, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_tempfail@local.example over recipients rate 2/1h", "hold", NULL, 0 },
	{ "over_reject", OUTBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, VERDICT_REJECT, 0,
	  "550", "5.7.1", PERM_TEXT("over_reject"), {{0}}, NULL, "accept",
	  "QID1: account=over_reject over recipients 2/1h: 550 5.7.1 (recipient)\n", 0 },
	{ "over_reject", INBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, VERDICT_REJECT, 0,
	  "550", "5.7.1", PERM_TEXT("bob@example.net"), { TH_AR("pass") }, NULL, "accept", NULL, 0 },
	{ "over_reject", LOCAL, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_reject@local.example over recipients rate 2/1h", "hold", NULL, 0 },
	{ "over_hold", OUTBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_hold over recipients rate 2/1h", "hold", NULL, 0 },
	{ "over_hold", INBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { TH_AR("pass") }, "bulkmilter: bob@example.net over recipients rate 2/1h", "hold", NULL, 0 },
	{ "over_hold", LOCAL, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  {{0}}, "bulkmilter: over_hold@local.example over recipients rate 2/1h", "hold", NULL, 0 },
	{ "over_tag", OUTBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept", NULL, 0 },
	{ "over_tag", INBOUND, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_R }, NULL, "accept", NULL, 0 },
	{ "over_tag", LOCAL, MODE_ENFORCE, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept", NULL, 0 },
	{ "over_tempfail", OUTBOUND, MODE_MONITOR, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept",
	  "QID1: monitor: account=over_tempfail over recipients 2/1h: would tempfail\n", 0 },
	{ "over_reject", INBOUND, MODE_MONITOR, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), OVER_R }, NULL, "accept",
	  "QID1: monitor: account=bob@example.net over recipients 2/1h: would reject\n", 0 },
	{ "over_reject", LOCAL, MODE_MONITOR, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept",
	  "QID1: monitor: account=over_reject@local.example over recipients 2/1h: would reject\n", 0 },
	{ "over_hold", OUTBOUND, MODE_MONITOR, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept",
	  "QID1: monitor: account=over_hold over recipients 2/1h: would hold\n", 0 },
	{ "over_tag", LOCAL, MODE_MONITOR, THIRD_RECIPIENT_OVER, 0, 0, 0, NULL, NULL, NULL,
	  { OVER_R }, NULL, "accept", NULL, 0 },
	/* bulk-noncompliant, Mode enforce */
	{ "bulk_tempfail", OUTBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_TEMPFAIL,
	  "451", "4.7.1", BULK_TEXT, {{0}}, NULL, "tempfail", NULL, 0 },
	{ "bulk_tempfail", INBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_TEMPFAIL,
	  "451", "4.7.1", BULK_TEXT, {{0}}, NULL, "tempfail", NULL, 0 },
	{ "bulk_tempfail", LOCAL, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { BULK("bulk_tempfail") }, "bulkmilter: bulk non-compliant: list-unsubscribe", "hold", NULL, 0 },
	{ "bulk_reject", OUTBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_REJECT,
	  "550", "5.7.1", BULK_TEXT, {{0}}, NULL, "reject", NULL, 0 },
	{ "bulk_reject", INBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_REJECT,
	  "550", "5.7.1", BULK_TEXT, {{0}}, NULL, "reject", NULL, 0 },
	{ "bulk_reject", LOCAL, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { BULK("bulk_reject") }, "bulkmilter: bulk non-compliant: list-unsubscribe", "hold", NULL, 0 },
	{ "bulk_hold", OUTBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { BULK("bulk_hold") }, "bulkmilter: bulk non-compliant: list-unsubscribe", "hold", NULL, 0 },
	{ "bulk_hold", INBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { TH_AR("pass"), BULK("bulk_hold") }, "bulkmilter: bulk non-compliant: list-unsubscribe", "hold",
	  NULL, 0 },
	{ "bulk_hold", LOCAL, MODE_ENFORCE, NONCOMPLIANT, 0, 0, VERDICT_HOLD, NULL, NULL, NULL,
	  { BULK("bulk_hold") }, "bulkmilter: bulk non-compliant: list-unsubscribe", "hold", NULL, 0 },
	{ "bulk_tag", OUTBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	{ "bulk_tag", INBOUND, MODE_ENFORCE, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, TH_AR("pass"), BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	{ "bulk_tag", LOCAL, MODE_ENFORCE, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	/* bulk-noncompliant, Mode monitor */
	{ "bulk_tempfail", OUTBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tempfail") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would tempfail\n", 0 },
	{ "bulk_tempfail", INBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, TH_AR("pass"), BULK("bulk_tempfail") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would tempfail\n", 0 },
	{ "bulk_tempfail", LOCAL, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tempfail") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would tempfail\n", 0 },
	{ "bulk_reject", OUTBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_reject") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would reject\n", 0 },
	{ "bulk_reject", INBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, TH_AR("pass"), BULK("bulk_reject") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would reject\n", 0 },
	{ "bulk_reject", LOCAL, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_reject") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would reject\n", 0 },
	{ "bulk_hold", OUTBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_hold") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would hold\n", 0 },
	{ "bulk_hold", INBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, TH_AR("pass"), BULK("bulk_hold") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would hold\n", 0 },
	{ "bulk_hold", LOCAL, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_hold") }, NULL, "accept",
	  "QID1: monitor: bulk non-compliant (list-unsubscribe): would hold\n", 0 },
	{ "bulk_tag", OUTBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	{ "bulk_tag", INBOUND, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, TH_AR("pass"), BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	{ "bulk_tag", LOCAL, MODE_MONITOR, NONCOMPLIANT, 0, 0, 0, NULL, NULL, NULL,
	  { NONCOMPLIANT_TAG, BULK("bulk_tag") }, NULL, "accept", NULL, 0 },
	/* th_spf-fail: inbound mail only; outbound and local mail is not checked */
	{ "spf_none", INBOUND, MODE_ENFORCE, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail") }, NULL, "accept", NULL, 0 },
	{ "spf_tag", INBOUND, MODE_ENFORCE, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail"), TH_ADD("X-Bulk-SPF", " fail") }, NULL, "accept", NULL, 0 },
	{ "spf_tempfail", INBOUND, MODE_ENFORCE, SPF_FAIL, VERDICT_TEMPFAIL, 0, 0,
	  "451", "4.7.23", SPF_TEXT("192.0.2.11"), {{0}}, NULL, "tempfail-spf", NULL, 0 },
	{ "spf_reject", INBOUND, MODE_ENFORCE, SPF_FAIL, VERDICT_REJECT, 0, 0,
	  "550", "5.7.23", SPF_TEXT("192.0.2.12"), {{0}}, NULL, "reject-spf", NULL, 0 },
	{ "spf_none", INBOUND, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail") }, NULL, "accept", NULL, 0 },
	{ "spf_tag", INBOUND, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail"), TH_ADD("X-Bulk-SPF", " fail") }, NULL, "accept", NULL, 0 },
	{ "spf_tempfail", INBOUND, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail"), TH_ADD("X-Bulk-SPF", " fail") }, NULL, "accept",
	  "NOQUEUE: monitor: spf=fail from 192.0.2.11: would tempfail\n", 0 },
	{ "spf_reject", INBOUND, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("fail"), TH_ADD("X-Bulk-SPF", " fail") }, NULL, "accept",
	  "NOQUEUE: monitor: spf=fail from 192.0.2.12: would reject\n", 0 },
	{ "spf_reject", OUTBOUND, MODE_ENFORCE, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  {{0}}, NULL, "accept", NULL, 0 },
	{ "spf_reject", LOCAL, MODE_ENFORCE, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  {{0}}, NULL, "accept", NULL, 0 },
	{ "spf_tempfail", OUTBOUND, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  {{0}}, NULL, "accept", NULL, 0 },
	{ "spf_tag", LOCAL, MODE_MONITOR, SPF_FAIL, 0, 0, 0, NULL, NULL, NULL,
	  {{0}}, NULL, "accept", NULL, 0 },
	/* OnStoreFailure */
	{ "over_tag", OUTBOUND, MODE_ENFORCE, STORE_DOWN, 0, 0, 0, NULL, NULL, NULL,
	  { TH_ADD("X-Bulk-Unchecked", " unavailable") }, NULL, "accept",
	  "NOQUEUE: account=over_tag rate limit not checked: redis unavailable: connection refused\n",
	  STORE_FAILURE_ACCEPT },
	{ "over_tag", OUTBOUND, MODE_ENFORCE, STORE_DOWN, VERDICT_TEMPFAIL, 0, 0,
	  "451", "4.3.0", "Rate limit service unavailable, try again later", {{0}}, NULL, "tempfail-rate",
	  NULL, STORE_FAILURE_TEMPFAIL },
	{ "over_tag", LOCAL, MODE_ENFORCE, STORE_DOWN, VERDICT_TEMPFAIL, 0, 0,
	  "451", "4.3.0", "Rate limit service unavailable, try again later", {{0}}, NULL, "tempfail-rate",
	  NULL, STORE_FAILURE_TEMPFAIL },
	{ "over_tag", INBOUND, MODE_MONITOR, STORE_DOWN, 0, 0, 0, NULL, NULL, NULL,
	  { TH_AR("pass"), TH_ADD("X-Bulk-Unchecked", " unavailable") }, NULL, "accept", NULL,
	  STORE_FAILURE_ACCEPT },
	{ "over_tag", OUTBOUND, MODE_MONITOR, STORE_DOWN, 0, 0, 0, NULL, NULL, NULL,
	  { TH_ADD("X-Bulk-Unchecked", " unavailable") }, NULL, "accept",
	  "NOQUEUE: monitor: account=over_tag rate limit not checked: would tempfail\n",
	  STORE_FAILURE_TEMPFAIL },
};

static void assert_reply(const struct tcase *c)
{
	assert_non_null(th_t.reply.code);
	assert_string_equal(th_t.reply.code, c->code);
	assert_string_equal(th_t.reply.xcode, c->xcode);
	assert_string_equal(th_t.reply.text, c->text);
}

static void run_case(void **state)
{
	const struct tcase *c = *state;
	const struct transaction_result *res = NULL;
	char decision[64];
	int rcpts = c->sc == THIRD_RECIPIENT_OVER ? 3 : 2;

	th_snap.settings->mode = c->mode;
	th_snap.settings->on_store_failure = c->on_store_failure;
	th_store.full = c->sc == MESSAGES_FULL ? ":m:" : NULL;
	th_store.down = c->sc == STORE_DOWN;
	if (c->sc == SPF_FAIL)
		th_spf = (struct th_spf){ .inbound = SPF_OUTCOME_FAIL, .detail = "not permitted" };

	th_connect(c->way, c->cls);
	enum verdict v = th_mail(c->way, c->cls);
	assert_string_equal(verdict_name(v), verdict_name(c->mail));
	if (v != VERDICT_CONTINUE) {
		assert_reply(c);
	} else {
		for (int i = 1; i <= rcpts; i++) {
			v = th_rcpt();
			assert_string_equal(verdict_name(v), verdict_name(i == 3 ? c->rcpt3 : VERDICT_CONTINUE));
			if (v != VERDICT_CONTINUE)
				assert_reply(c);
		}
		v = th_content(th_plain_headers, &res);
		assert_string_equal(verdict_name(v), verdict_name(c->eom));
		if (v == VERDICT_TEMPFAIL || v == VERDICT_REJECT) {
			assert_null(res);
			assert_reply(c);
		} else {
			th_assert_edits(c->edit, sizeof(c->edit) / sizeof(c->edit[0]), c->hold, res);
		}
		th_end(v);
	}
	th_disconnect();
	snprintf(decision, sizeof(decision), " decision=%s ", c->decision);
	th_assert_logged(decision);
	if (c->log)
		th_assert_logged(c->log);
	if (c->log == NULL || !strstr(c->log, "monitor:"))
		assert_false(th_logged("monitor:"));
	assert_int_equal(th_spf.checks, c->way == INBOUND ? 1 : 0);
}

int main(void)
{
	static const char *const ways[] = { "inbound", "outbound", "local" };
	static const char *const scenarios[] = {
		"messages bucket empty", "third recipient over", "bulk non-compliant", "spf fail",
		"store down",
	};
	static char names[sizeof(cases) / sizeof(cases[0])][160];
	struct CMUnitTest matrix[sizeof(cases) / sizeof(cases[0])];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		snprintf(names[i], sizeof(names[i]), "%s %s %s%s, %s: %s", c->cls, ways[c->way],
			 c->mode == MODE_MONITOR ? "monitor" : "enforce",
			 c->sc == STORE_DOWN ? (c->on_store_failure ? " OnStoreFailure tempfail"
									 : " OnStoreFailure accept") : "",
			 scenarios[c->sc], c->decision);
		matrix[i] = (struct CMUnitTest){ names[i], run_case, th_setup, th_teardown, (void *)c };
	}
	return _cmocka_run_group_tests("matrix", matrix, sizeof(matrix) / sizeof(matrix[0]),
				       th_group_setup, th_group_teardown);
}
