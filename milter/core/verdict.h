/*
 * NAME
 *	verdict - what a transaction answers, and the rules that turn a
 *	class's action or a rate-limit result into that answer
 * SYNOPSIS
 *	enum policy_action verdict_effective_action(const struct verdict_scope *s,
 *		enum policy_action action);
 *	enum verdict verdict_apply(const struct verdict_scope *s,
 *		const struct verdict_hit *hit, struct verdict_reply *reply,
 *		struct verdict_marks *marks);
 *	enum verdict verdict_ratelimit(const struct verdict_scope *s,
 *		const struct policy_class *cls, const char *account,
 *		enum ratelimit_status st, const struct ratelimit_verdict *v,
 *		bool per_recipient, struct verdict_reply *reply,
 *		struct verdict_marks *marks);
 *	enum verdict verdict_suspended(const struct verdict_scope *s,
 *		const struct policy_class *cls, const char *account,
 *		const char *by, bool per_recipient, struct verdict_reply *reply,
 *		struct verdict_marks *marks);
 *	enum verdict verdict_reply_set(struct verdict_reply *reply,
 *		const char *code, const char *xcode, const char *text);
 *	const char *verdict_name(enum verdict v);
 *	const char *verdict_rule_name(enum verdict_rule r);
 *	const char *verdict_decision_name(enum verdict_decision d);
 *	void verdict_decision_count(enum verdict_decision d, const char *cls);
 * DESCRIPTION
 *	Pure rules over values, no libmilter: a stage of a transaction
 *	answers an enum verdict; tempfail and reject carry a struct
 *	verdict_reply (SMTP code, enhanced code, text; code NULL: no text of
 *	ours, the MTA's default reply). Hold, tags and the hold reason are
 *	marks left on the message (struct verdict_marks) and take effect at
 *	end of message, when the message is accepted.
 *
 *	verdict_effective_action is the one rule for what a class's action
 *	(over-limit, spf-fail, bulk-noncompliant, from-unauthorized) does on
 *	this transaction:
 *	in Mode monitor nothing is deferred, rejected or held, so tempfail,
 *	reject and hold become tag; otherwise, for local submission
 *	(sendmail(1): nobody to read a reply, no per-recipient reply
 *	possible) tempfail and reject become hold. tag and none stay.
 *
 *	verdict_apply applies a rule's hit: the effective action, and when
 *	monitor mode changed it, the log line "QID: monitor: WHAT: would
 *	ACTION". tempfail is 451 and reject 550 with the rule's enhanced
 *	code (4.7.1/5.7.1; spf-fail 4.7.23/5.7.23) and the class's text or
 *	the rule's own; hold records the first hold reason of the message;
 *	tag records the rule's tag (X-Bulk-Over-Limit: RATE KIND, X-Bulk-SPF:
 *	fail, X-Bulk-Noncompliant: CHECKS, X-Bulk-Unauthorized: DOMAIN);
 *	none does nothing. from-unauthorized's reject is "550 5.7.1 Not
 *	authorized to send as DOMAIN". The
 *	over-limit rule also logs each reply it gives (a refused recipient
 *	leaves no other trace).
 *
 *	verdict_ratelimit maps a rate-limit result to a verdict: OK goes
 *	on; SUSPENDED is verdict_suspended; OVER is the class's over-limit hit (counted in
 *	bulkmilter_over_limit_total); STORE_FAILED is OnStoreFailure
 *	(logged, counted): tempfail is 451 4.3.0 in Mode enforce (monitor
 *	logs that it would), accept tags X-Bulk-Unchecked with v->brief.
 *
 *	verdict_suspended is the class's suspended action for a suspended
 *	account (counted in bulkmilter_suspended_messages_total): tempfail
 *	"451 4.7.1 Account ACCOUNT is suspended", reject the same as 550
 *	5.7.1, or the class's text; hold's reason "bulkmilter: account
 *	ACCOUNT is suspended (by BY)". It is logged as over-limit is.
 *
 *	verdict_reply_set fills a reply and returns VERDICT_REJECT for a 5xx
 *	code, else VERDICT_TEMPFAIL. The text is kept as given (cut to
 *	VERDICT_TEXT_MAX); making it safe for the MTA is the milter layer's
 *	job.
 *
 *	A transaction ends with one enum verdict_decision: its name is the
 *	decision= of the transaction's log line; verdict_decision_count
 *	counts it in the metrics (accepted, held, rejected, tempfailed, and
 *	a tempfail by its cause: rate, spf, suspended or other, and by its
 *	policy class cls, NULL when it had none; aborted and
 *	connection-closed count nowhere).
 * DIAGNOSTICS
 *	Log lines: "QID: monitor: WHAT: would ACTION" (info) for what
 *	monitor held back; "QID: account=A over KIND RATE: CODE XCODE" (info)
 *	for each over-limit reply; "QID: account=A rate limit not checked:
 *	REASON" (warning) for a store failure. An action no rule knows
 *	answers 451 4.3.0 (never reached: policy.c admits only the enum).
 */
#ifndef BM_VERDICT_H
#define BM_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"
#include "ratelimit.h"
#include "settings.h"

/* Room to compose a reply text; smfi_setreply's line is cut shorter. */
#define VERDICT_TEXT_MAX 1024

enum verdict {
	VERDICT_CONTINUE = 0,		/* go on (at end of message: accept) */
	VERDICT_SKIP_BODY,		/* go on, the rest of the body is not wanted */
	VERDICT_HOLD,			/* end of message only: accept into the hold queue */
	VERDICT_TEMPFAIL,		/* 4xx: struct verdict_reply */
	VERDICT_REJECT,			/* 5xx: struct verdict_reply */
};

/* The rules whose action a class chooses. */
enum verdict_rule {
	RULE_OVER_LIMIT, RULE_SPF_FAIL, RULE_BULK_NONCOMPLIANT, RULE_FROM_UNAUTHORIZED, RULE_SUSPENDED,
	RULE_SUPPRESSED,
};

enum verdict_decision {
	DECISION_ACCEPT, DECISION_HOLD, DECISION_REJECT, DECISION_TEMPFAIL,
	DECISION_REJECT_RATE, DECISION_TEMPFAIL_RATE, DECISION_REJECT_SPF, DECISION_TEMPFAIL_SPF,
	DECISION_REJECT_SUSPENDED, DECISION_TEMPFAIL_SUSPENDED,
	DECISION_ABORTED, DECISION_CONNECTION_CLOSED,
};

struct verdict_reply {
	const char *code;		/* "451", "550", ...; NULL: the MTA's default */
	const char *xcode;		/* "4.7.1", ... */
	char text[VERDICT_TEXT_MAX];
};

/* What a message carries once accepted, set by the rules on the way. */
struct verdict_marks {
	char hold_reason[512];		/* "" = no hold; the first reason stays */
	char over_tag[128];		/* X-Bulk-Over-Limit value, "" = none */
	bool spf_tag;			/* X-Bulk-SPF: fail */
	char noncompliant[96];		/* X-Bulk-Noncompliant value, "" = none */
	char unchecked[160];		/* X-Bulk-Unchecked value, "" = checked */
	char unauthorized[254];		/* X-Bulk-Unauthorized value (a domain), "" = none */
	char suppressed[512];		/* X-Bulk-Suppressed value: the suppressed
					   recipients accepted (tag), ", "-separated */
};

/* Where a rule fires. */
struct verdict_scope {
	enum run_mode mode;
	enum store_failure_action on_store_failure;
	bool local_submission;
	const char *qid;		/* for log lines: queue ID or "NOQUEUE" */
};

/* One rule's hit, with the facts its texts name. */
struct verdict_hit {
	enum verdict_rule rule;
	enum policy_action action;	/* the class's action for the rule */
	const char *text;		/* the class's own text; "" or NULL: the rule's */
	const char *account;		/* over-limit; from-unauthorized: the SASL login */
	const char *kind;		/* over-limit: "messages" or "recipients" */
	const char *rate;		/* over-limit: the full rate, "2/1h" */
	bool per_recipient;		/* over-limit at RCPT TO */
	const char *destination;	/* over-limit of a "to" rate: the recipient's domain */
	const char *client;		/* spf-fail: the client address */
	const char *identity;		/* spf-fail: the domain checked; from-unauthorized: the From domain */
	const char *reason;		/* spf-fail: why; bulk-noncompliant: the failed checks;
					   suspended: by whom ("ctl" or the rule) */
};

enum policy_action verdict_effective_action(const struct verdict_scope *s, enum policy_action action);
enum verdict verdict_apply(const struct verdict_scope *s, const struct verdict_hit *hit,
	struct verdict_reply *reply, struct verdict_marks *marks);
enum verdict verdict_suspended(const struct verdict_scope *s, const struct policy_class *cls,
	const char *account, const char *by, bool per_recipient, struct verdict_reply *reply,
	struct verdict_marks *marks);
enum verdict verdict_ratelimit(const struct verdict_scope *s, const struct policy_class *cls,
	const char *account, enum ratelimit_status st, const struct ratelimit_verdict *v,
	bool per_recipient, struct verdict_reply *reply, struct verdict_marks *marks);
enum verdict verdict_reply_set(struct verdict_reply *reply, const char *code, const char *xcode,
	const char *text);
const char *verdict_name(enum verdict v);
const char *verdict_rule_name(enum verdict_rule r);
const char *verdict_decision_name(enum verdict_decision d);
void verdict_decision_count(enum verdict_decision d, const char *cls);

#endif
