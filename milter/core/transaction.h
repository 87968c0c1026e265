/*
 * NAME
 *	transaction - one SMTP connection and its messages, stage by stage,
 *	without libmilter
 * SYNOPSIS
 *	void transaction_connect(struct transaction *t, struct snapshot *snap,
 *		const char *hostname, const struct sockaddr *addr);
 *	void transaction_use_spf(struct transaction *t,
 *		const struct transaction_spf *spf, void *impl);
 *	void transaction_helo(struct transaction *t, const char *helo);
 *	enum verdict transaction_mail(struct transaction *t, const char *arg,
 *		const char *auth_authen, const char *queue_id);
 *	enum verdict transaction_rcpt(struct transaction *t, const char *rcpt,
 *		const char *queue_id);
 *	enum verdict transaction_header(struct transaction *t, const char *name,
 *		const char *value, const char *queue_id);
 *	enum verdict transaction_eoh(struct transaction *t, const char *queue_id);
 *	enum verdict transaction_body(struct transaction *t,
 *		const unsigned char *chunk, size_t len);
 *	enum verdict transaction_eom(struct transaction *t, const char *queue_id,
 *		const struct transaction_result **res);
 *	void transaction_end(struct transaction *t, enum verdict final);
 *	void transaction_abort(struct transaction *t);
 *	struct snapshot *transaction_close(struct transaction *t);
 *	void transaction_open(struct transaction *t, const char *hostname,
 *		const struct sockaddr *addr);
 *	void transaction_release(struct transaction *t);
 *	void transaction_reply_text(const struct transaction *t, char *dst,
 *		size_t len);
 *	bool transaction_wants_queue_id(const struct transaction *t);
 *	const char *transaction_qid(const struct transaction *t);
 *	extern const struct transaction_spf transaction_spf_pool;
 * DESCRIPTION
 *	Every per-message rule of bulkmilter, in the order the SMTP
 *	dialogue reaches it. The milter layer (callbacks.c) turns each
 *	libmilter event into one call here, and each answer into a reply:
 *	an enum verdict (verdict.h), with t->reply for tempfail and reject.
 *	The MTA's macros come in as plain values: auth_authen is
 *	{auth_authen}, queue_id the "i" macro (NULL when unknown; asked only
 *	while transaction_wants_queue_id).
 *
 *	A zeroed struct transaction is a connection not yet connected.
 *	transaction_connect borrows snap (NULL: none could be had, and MAIL
 *	FROM tempfails) until transaction_close gives it back; it notes the
 *	client address, InternalHosts and local submission (direction.h).
 *	SPF and DMARC questions go through t->spf (transaction_spf_pool: the
 *	snapshot's helpers, spf.h; no helpers, no SPF); transaction_use_spf
 *	puts another implementation in their place (the unit tests' double).
 *
 *	transaction_mail starts a message: envelope sender, direction,
 *	class and account, inbound SPF (the class's spf-fail), the messages
 *	rates and volume windows (one store round trip, which also checks
 *	the account's suspension and counts its suspend-if rules: safety.h;
 *	a suspended account gets the class's suspended action, then and, if
 *	the suspension began within the message, at end of message).
 *	transaction_rcpt charges one recipient (one round trip; rcpt is the
 *	RCPT TO argument, whose domain picks the destination rates); for
 *	local submission recipients are only counted (per destination rate
 *	too, in fixed memory), and charged all at once at end of message. transaction_header gathers header facts
 *	(header_facts.h) and hands outbound headers to the signer;
 *	transaction_eoh lets the signer pick its keys; transaction_body
 *	feeds it and answers VERDICT_SKIP_BODY when nothing more is wanted.
 *
 *	transaction_eom decides the message (see transaction_eom.c): reject,
 *	tempfail, or continue/hold with *res: the header edits to make in
 *	order, the DKIM-Signature values to insert at the top after them,
 *	and the hold reason. The caller makes them, then calls
 *	transaction_end with what the message got (VERDICT_TEMPFAIL when an
 *	edit failed), which logs the transaction's one line, counts it, and
 *	keeps the rate-limit charge only for an accepted message.
 *
 *	transaction_abort ends a message before its end (logged, refunded);
 *	transaction_close ends the connection and returns the snapshot for
 *	the caller to release.
 *
 *	The daemon uses transaction_open in place of transaction_connect:
 *	it borrows the running snapshot (snapshot_acquire; none loaded:
 *	logged, and MAIL FROM tempfails), and transaction_release ends the
 *	connection and gives it back. transaction_reply_text writes
 *	t->reply's text as an MTA takes it on a reply line: controls, CR
 *	and LF become spaces and '%' is doubled (libmilter's smfi_setreply
 *	reads it as a format), cut to fit len (at least 1) with its NUL.
 *
 *	Memory per connection is bounded: everything is fixed in size but
 *	the signer (bounded by its own limits) and the rate-limit receipt
 *	(an entry per class and account, not per recipient). Nothing is
 *	allocated or copied per recipient.
 * DIAGNOSTICS
 *	Every internal error answers tempfail; no path accepts and drops.
 *	A stage called outside a message answers VERDICT_TEMPFAIL with no
 *	reply text (t->reply.code NULL).
 */
#ifndef BM_TRANSACTION_H
#define BM_TRANSACTION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "address.h"
#include "feedback.h"
#include "header_facts.h"
#include "intake.h"
#include "netaddr.h"
#include "policy.h"
#include "ratelimit.h"
#include "signer.h"
#include "snapshot.h"
#include "spf.h"
#include "verdict.h"

/* Names kept from the SMTP dialogue; longer ones are cut for logs only. */
#define TRANSACTION_NAME_MAX 256
/* RFC 5321's line limit, without CRLF. */
#define TRANSACTION_LINE_MAX 998
/* Header edits of one message: removals of forged Authentication-Results,
 * one removal of every TagHeader copy, and the headers we add. */
#define TRANSACTION_EDITS_MAX (HEADER_FACTS_FORGED_AR_MAX + 11)
/* The values of the headers we add, as the MTA takes them: at most an
 * Authentication-Results (600), the class name, five short tags and a
 * Feedback-ID (FEEDBACK_VALUE_MAX). */
#define TRANSACTION_VALUES_MAX (2048 + FEEDBACK_VALUE_MAX)
/* One value we add is cut here (leading space included). */
#define TRANSACTION_VALUE_MAX 1023

/* What the transaction asks of SPF and DMARC (spf.h in the daemon). */
struct transaction_spf {
	enum spf_outcome (*check)(void *impl, const struct netaddr *client, const char *helo,
		const char *mail_from, char *detail, size_t len);
	enum spf_outcome (*check_egress)(void *impl, const struct netaddr *egress,
		const char *helo, const char *mail_from);
	enum dmarc_record (*dmarc_record)(void *impl, const char *domain);
};

extern const struct transaction_spf transaction_spf_pool;

enum transaction_edit_op {
	EDIT_REMOVE,			/* occurrences index, index - 1, ... (count of them) of name */
	EDIT_INSERT_TOP,		/* name: value above every header */
	EDIT_ADD,			/* name: value below every header */
};

struct transaction_edit {
	enum transaction_edit_op op;
	const char *name;
	const char *value;		/* insert, add: leading space, no CR, folds LF + white space */
	unsigned index, count;		/* remove: 1 = the first header of that name */
};

/* What an accepted message gets at end of message, in this order. */
struct transaction_result {
	struct transaction_edit edit[TRANSACTION_EDITS_MAX];
	size_t edits;
	const struct signer_signature *sig;	/* DKIM-Signature values, each inserted on top */
	size_t sigs;
	const char *hold_reason;		/* NULL: no hold */
};

/* One message, from MAIL FROM to end of message or abort. */
struct transaction_msg {
	bool active;
	enum policy_direction direction;
	const struct policy_class *cls;
	char account[POLICY_ACCOUNT_MAX];
	bool has_account;
	char sender[ADDRESS_MAX];		/* "" = null sender */
	char queue_id[64];
	struct ratelimit_receipt receipt;
	bool suspended;				/* the account is suspended (safety.h) */
	char suspended_by[STORE_SAFETY_TEXT_MAX];	/* ... by "ctl" or a suspend-if rule */
	unsigned long rcpts;			/* recipients we accepted */
	struct ratelimit_rcpts local_rcpts;	/* local submission: charged at end */
	char local_domain[ADDRESS_MAX];		/* ... the domain its reply would name */
	unsigned long volume[POLICY_BULK_MAX];
	bool volume_known;
	bool spf_done;				/* inbound SPF evaluated */
	enum spf_outcome spf;
	bool spf_helo;				/* evaluated the HELO identity */
	char spf_identity[TRANSACTION_NAME_MAX];
	char spf_detail[256];
	struct header_facts headers;
	struct verdict_marks marks;
	size_t line_len;			/* octets of the body line so far */
	bool long_line;				/* a line over TRANSACTION_LINE_MAX */
	struct signer *signer;
	int sign_state;				/* SIGNER_SIGN/SKIP/ERROR once decided */
	char sign_why[160];
	char feedback_id[FEEDBACK_VALUE_MAX + 1];	/* " CLASS:TOKEN:bulkmilter", as the MTA
						   takes it; "" none (feedback.h) */
	struct intake intake;			/* a report being read (intake.h) */
};

/* What end of message found, for its edits and its log line. */
struct transaction_outcome {
	bool bulk;
	char bulk_why[96];
	unsigned failed;			/* bulk-require checks failed */
	char failed_text[96];
	char egress[256];			/* per egress SPF results, for the log */
	bool spf_pass_all_egress;
	bool mailfrom_aligned;
	struct signer_result sigs;
	bool signed_ok;
	bool long_line;				/* a body line over 998 octets, signed */
	struct transaction_result result;
	char values[TRANSACTION_VALUES_MAX];
	size_t values_used;
};

struct transaction {
	struct snapshot *snap;
	const struct transaction_spf *spf;
	void *spf_impl;				/* NULL: no SPF */
	struct netaddr client;
	char client_text[NETADDR_TEXT_MAX];
	char helo[TRANSACTION_NAME_MAX];
	char sasl[TRANSACTION_NAME_MAX];	/* kept across messages: Postfix sends it at MAIL */
	bool internal;
	bool local_submission;
	struct transaction_msg msg;
	struct verdict_reply reply;		/* of the last tempfail or reject */
	struct transaction_outcome end;
};

void transaction_connect(struct transaction *t, struct snapshot *snap, const char *hostname,
	const struct sockaddr *addr);
void transaction_use_spf(struct transaction *t, const struct transaction_spf *spf, void *impl);
void transaction_helo(struct transaction *t, const char *helo);
enum verdict transaction_mail(struct transaction *t, const char *arg, const char *auth_authen,
	const char *queue_id);
enum verdict transaction_rcpt(struct transaction *t, const char *rcpt, const char *queue_id);
enum verdict transaction_header(struct transaction *t, const char *name, const char *value,
	const char *queue_id);
enum verdict transaction_eoh(struct transaction *t, const char *queue_id);
enum verdict transaction_body(struct transaction *t, const unsigned char *chunk, size_t len);
enum verdict transaction_eom(struct transaction *t, const char *queue_id,
	const struct transaction_result **res);
void transaction_end(struct transaction *t, enum verdict final);
void transaction_abort(struct transaction *t);
struct snapshot *transaction_close(struct transaction *t);
void transaction_open(struct transaction *t, const char *hostname, const struct sockaddr *addr);
void transaction_release(struct transaction *t);
void transaction_reply_text(const struct transaction *t, char *dst, size_t len);
bool transaction_wants_queue_id(const struct transaction *t);
const char *transaction_qid(const struct transaction *t);

/* Between transaction.c and transaction_eom.c only. */
void transaction_note_queue_id(struct transaction *t, const char *queue_id);
void transaction_scope(const struct transaction *t, struct verdict_scope *s);
void transaction_reset(struct transaction *t);
enum verdict transaction_charge_recipients(struct transaction *t, unsigned long n);

#endif
