/*
 * NAME
 *	session - the state of one milter connection and its message, and
 *	the replies they share (private to callbacks.c and eom.c)
 * SYNOPSIS
 *	void session_reset(struct conn *c);
 *	void session_end_early(struct conn *c, const char *decision);
 *	const char *session_queue_id(SMFICTX *ctx, struct msg *m);
 *	const char *session_qid(const struct msg *m);
 *	sfsistat session_reply(SMFICTX *ctx, const char *code, const char *xcode, const char *text);
 *	sfsistat session_over_limit(SMFICTX *ctx, struct conn *c,
 *		const struct ratelimit_verdict *v, bool per_recipient);
 *	sfsistat session_store_failed(SMFICTX *ctx, struct conn *c,
 *		const struct ratelimit_verdict *v);
 *	enum policy_action session_effective_action(const struct conn *c,
 *		enum policy_action action);
 *	void session_copy(char *dst, size_t len, const char *src);
 * DESCRIPTION
 *	A struct conn lives in smfi_setpriv from connect to close (never in
 *	a thread-local: libmilter moves a connection between worker
 *	threads); its struct msg from MAIL FROM to end of message or abort.
 *	Everything in them is fixed in size except the signer (bounded by
 *	its own limits) and the rate-limit receipt (an entry per class and
 *	account, not per recipient), so memory per connection is bounded.
 *	session_reset refunds whatever the message was charged.
 *	session_over_limit and session_store_failed apply the class's
 *	over-limit action and OnStoreFailure, returning SMFIS_CONTINUE when
 *	the message (or recipient) goes on, or the reply to give.
 *	session_effective_action is what a class's action (over-limit,
 *	spf-fail, bulk-noncompliant) does on this connection: in Mode
 *	monitor at most a tag (callers log what it would have done), and
 *	for local submission (sendmail(1): nobody to retry or to read a
 *	rejection) a hold instead of a tempfail or reject.
 */
#ifndef BM_SESSION_H
#define BM_SESSION_H

#include <libmilter/mfapi.h>
#include <stdbool.h>
#include <stddef.h>

#include "address.h"
#include "netaddr.h"
#include "policy.h"
#include "ratelimit.h"
#include "signer.h"
#include "snapshot.h"
#include "spf.h"

/* Authentication-Results headers with our authserv-id we can remove. */
#define MSG_FORGED_AR_MAX 64
/* Names kept from the SMTP dialogue; longer ones are cut for logs only. */
#define CONN_NAME_MAX 256
/* A reply text is cut here: SMTP reply lines are at most 512 octets. */
#define REPLY_TEXT_MAX 400
/* RFC 5321's line limit, without CRLF. */
#define SMTP_LINE_MAX 998
/* Room to compose a reply text before it is cut. */
#define TEXT_BUF 1024

struct msg {
	bool active;			/* between MAIL FROM and eom/abort */
	enum policy_direction direction;
	const struct policy_class *cls;
	char account[POLICY_ACCOUNT_MAX];
	bool has_account;
	char sender[ADDRESS_MAX];	/* "" = null sender */
	char queue_id[64];
	struct ratelimit_receipt receipt;
	unsigned long rcpts;		/* recipients we accepted */
	unsigned long rcpts_refused;
	char over_tag[128];		/* X-Bulk-Over-Limit value, "" = none */
	char hold_reason[512];		/* "" = no hold */
	char unchecked[160];		/* X-Bulk-Unchecked value, "" = checked */
	unsigned long volume[POLICY_BULK_MAX];
	bool volume_known;
	bool spf_done;
	enum spf_outcome spf;
	bool spf_helo;			/* evaluated the HELO identity */
	char spf_identity[CONN_NAME_MAX];
	char spf_detail[256];
	bool spf_tag;
	/* header facts */
	unsigned from_count;
	bool from_ok;
	char from_addr[ADDRESS_MAX];
	bool has_precedence, precedence_bulk;
	bool list_unsub_https, list_unsub_mailto, one_click;
	bool header_present[POLICY_BULK_MAX];
	unsigned tag_headers;		/* client-supplied TagHeader copies */
	unsigned ar_headers;		/* Authentication-Results seen */
	unsigned forged_ar[MSG_FORGED_AR_MAX];	/* their indexes, ours */
	unsigned forged_ar_count;
	bool too_many_forged_ar;
	/* signing */
	size_t line_len;		/* octets of the body line so far */
	bool long_line;			/* a line over SMTP_LINE_MAX */
	struct signer *signer;
	int sign_state;			/* SIGNER_SIGN/SKIP/ERROR once decided */
	char sign_why[160];
};

struct conn {
	struct snapshot *snap;		/* NULL: none could be had; MAIL FROM tempfails */
	unsigned long protocol;		/* SMFIP_* the MTA granted (NR_* replies) */
	struct netaddr client;
	char client_text[NETADDR_TEXT_MAX];
	char helo[CONN_NAME_MAX];
	char sasl[CONN_NAME_MAX];	/* kept across messages: Postfix sends it at MAIL */
	bool internal;
	bool local_submission;
	struct msg msg;
};

void session_copy(char *dst, size_t len, const char *src);
sfsistat session_reply(SMFICTX *ctx, const char *code, const char *xcode, const char *text);
const char *session_qid(const struct msg *m);
const char *session_queue_id(SMFICTX *ctx, struct msg *m);
void session_reset(struct conn *c);
void session_end_early(struct conn *c, const char *decision);
enum policy_action session_effective_action(const struct conn *c, enum policy_action action);
sfsistat session_over_limit(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v,
	bool per_recipient);
sfsistat session_store_failed(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v);

/* End of message: everything after the body (eom.c). */
sfsistat eom_finish(SMFICTX *ctx, struct conn *c);

#endif
