/*
 * NAME
 *	intake - reading the reports that pass through the milter, and
 *	acting on them (suppression; counters of suspend-if rates)
 * SYNOPSIS
 *	void intake_begin(struct intake *in, bool reading);
 *	void intake_header(struct intake *in, const char *name,
 *		const char *value);
 *	bool intake_wants_body(const struct intake *in);
 *	void intake_body(struct intake *in, const unsigned char *chunk,
 *		size_t len);
 *	void intake_finish(struct intake *in, struct snapshot *snap,
 *		const char *qid);
 *	void intake_reset(struct intake *in);
 *	const struct feedback_key *intake_feedback_key(struct snapshot *snap);
 *	bool intake_wants_feedback_id(const struct policy_class *c);
 * DESCRIPTION
 *	The transaction core calls these beside its own stages. A zeroed
 *	struct intake reads nothing. intake_begin starts a message; reading
 *	is true for the mail whose reports we act on: inbound mail (reports
 *	from outside) and local submission (Postfix's own bounces, with
 *	internal_mail_filter_classes = bounce). Mail of authenticated
 *	clients is never read as a report.
 *
 *	intake_header notes the top-level Content-Type; intake_wants_body is
 *	true while the body of a multipart/report is being kept (at most
 *	REPORT_BODY_MAX octets: the report parts come first, the quoted
 *	original last), so the caller keeps asking for the body.
 *
 *	intake_finish, at end of message, reads the report (report.h) and,
 *	when the Feedback-ID it quotes verifies (feedback.h) and names a
 *	class of the current policy with "suppress", puts the class's kinds
 *	of recipients on the account's suppression list (suppress.h): hard
 *	bounces of a DSN, the complaining recipient of an ARF report. That
 *	costs one store round trip, for reports only. The message itself
 *	is never touched: whatever happens here, it is delivered as usual.
 *	One log line per report read: queue ID, kind, class, account, the
 *	recipients and what was done.
 *
 *	The class's bounce-rate and complaint-rate rules are evaluated then
 *	too (with or without "suppress"): the report's hard bounces (DSN) or
 *	its complaint (ARF) are counted for the account over the rule's
 *	period and compared with the recipients it sent in that period (the
 *	RCPT script counts them, safety.h); past the share, once at least
 *	min were sent, the account is suspended from that moment
 *	(safety_suspend: log line, rule-tripped and suspended events) and
 *	both counts start afresh. One more store round trip per rule, for
 *	reports only. Each recipient counts once a day per rule (a report
 *	is a claim anyone holding the account's Feedback-ID can repeat): a
 *	recipient already counted adds nothing ("N of M reported
 *	recipients already counted today"), a complaint naming none counts
 *	as the empty address.
 *
 *	intake_wants_feedback_id: the class's outbound mail carries our
 *	Feedback-ID, because its reports are acted on: it has "suppress" or
 *	a bounce-rate or complaint-rate rule.
 *
 *	intake_feedback_key is the key of Feedback-ID tokens: the snapshot's
 *	(FeedbackKeyFile), else the fleet's secret in Redis, made once by
 *	whichever milter asks first (SET NX) and kept by each process, so
 *	it costs one round trip per process, not per message. NULL while
 *	Redis cannot be asked (tried again after INTAKE_SECRET_RETRY_MS).
 * DIAGNOSTICS
 *	Store failures and unverifiable reports are logged; nothing is
 *	returned, since nothing here may change the message's fate.
 */
#ifndef BM_INTAKE_H
#define BM_INTAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "feedback.h"
#include "snapshot.h"

#define INTAKE_CT_MAX 512
/* Redis key (under RedisPrefix) of the fleet's Feedback-ID secret. */
#define INTAKE_SECRET_KEY "feedback-secret"
#define INTAKE_SECRET_RETRY_MS 10000

struct intake {
	bool reading;
	bool ct_seen;
	char ct[INTAKE_CT_MAX];
	char *body;			/* kept body, owned */
	size_t len, cap;
	bool full;			/* REPORT_BODY_MAX reached or no memory */
};

void intake_begin(struct intake *in, bool reading);
void intake_header(struct intake *in, const char *name, const char *value);
bool intake_wants_body(const struct intake *in);
void intake_body(struct intake *in, const unsigned char *chunk, size_t len);
void intake_finish(struct intake *in, struct snapshot *snap, const char *qid);
void intake_reset(struct intake *in);
const struct feedback_key *intake_feedback_key(struct snapshot *snap);
bool intake_wants_feedback_id(const struct policy_class *c);

#endif
