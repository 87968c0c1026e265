/*
 * transaction - the stages of a connection up to end of message: who
 * the client is, the envelope (direction, class, account, SPF, rates),
 * the headers and the body on their way to the signer. End of message
 * is transaction_eom.c; the rules that turn an action into an answer
 * are verdict.c.
 *
 * What happens when:
 *   connect   client address; InternalHosts; local submission
 *   helo      HELO name (SPF of the null sender)
 *   mail      direction, class, account; inbound SPF; messages rates
 *   rcpt      recipients rates, one recipient at a time
 *   header    facts for bulk rules and compliance; headers to remove;
 *             headers held by the signer
 *   eoh       the signer picks its keys from the one From address
 *   body      straight into the signer (or skipped when not signing)
 *   abort     refund what the transaction was charged
 *   close     refund, give the snapshot back
 *
 * transaction_open and transaction_release are connect and close with the
 * daemon's running snapshot; transaction_reply_text is t->reply's text as
 * the milter layer hands it to the MTA.
 *
 * Local submission's recipients are counted here and charged at end of
 * message: Postfix cannot take a per-recipient reply for it.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "direction.h"
#include "log.h"
#include "metrics.h"
#include "safety.h"
#include "transaction.h"

static enum spf_outcome pool_check(void *impl, const struct netaddr *client, const char *helo,
				   const char *mail_from, char *detail, size_t len)
{
	return spf_check(impl, client, helo, mail_from, detail, len);
}

static enum spf_outcome pool_check_egress(void *impl, const struct netaddr *egress,
					  const char *helo, const char *mail_from)
{
	return spf_check_egress(impl, egress, helo, mail_from);
}

static enum dmarc_record pool_dmarc_record(void *impl, const char *domain)
{
	return spf_dmarc_record(impl, domain);
}

const struct transaction_spf transaction_spf_pool = {
	.check = pool_check, .check_egress = pool_check_egress, .dmarc_record = pool_dmarc_record,
};

const char *transaction_qid(const struct transaction *t)
{
	return t->msg.queue_id[0] ? t->msg.queue_id : "NOQUEUE";
}

bool transaction_wants_queue_id(const struct transaction *t)
{
	return t->msg.queue_id[0] == '\0';
}

void transaction_note_queue_id(struct transaction *t, const char *queue_id)
{
	if (queue_id && *queue_id && !t->msg.queue_id[0])
		snprintf(t->msg.queue_id, sizeof(t->msg.queue_id), "%s", queue_id);
}

void transaction_scope(const struct transaction *t, struct verdict_scope *s)
{
	s->mode = t->snap->settings->mode;
	s->on_store_failure = t->snap->settings->on_store_failure;
	s->local_submission = t->local_submission;
	s->qid = transaction_qid(t);
}

void transaction_reset(struct transaction *t)
{
	struct transaction_msg *m = &t->msg;
	if (m->receipt.events && t->snap)
		ratelimit_refund(t->snap->store, &m->receipt);
	ratelimit_receipt_clear(&m->receipt);
	free(m->receipt.charges);
	signer_free(m->signer);
	intake_reset(&m->intake);
	memset(m, 0, sizeof(*m));	/* sign_state SIGNER_SIGN until a stage says otherwise */
}

/* Refunds a transaction that ended before its end of message, and logs how. */
static void end_early(struct transaction *t, enum verdict_decision decision)
{
	struct transaction_msg *m = &t->msg;
	if (!m->active)
		return;
	verdict_decision_count(decision, m->cls ? m->cls->name : NULL);
	log_info("%s: direction=%s class=%s account=%s client=%s decision=%s rcpts=%lu refunded=%s",
		 transaction_qid(t), direction_name(m->direction), m->cls ? m->cls->name : "-",
		 m->has_account ? m->account : "-", t->client_text, verdict_decision_name(decision),
		 m->rcpts, m->receipt.events ? "yes" : "no");
	transaction_reset(t);
}

/* ---- connect, helo ---------------------------------------------------- */

void transaction_connect(struct transaction *t, struct snapshot *snap, const char *hostname,
			 const struct sockaddr *addr)
{
	t->snap = snap;
	t->spf = &transaction_spf_pool;
	t->spf_impl = snap ? snap->spf : NULL;
	if (snap == NULL)
		return;
	if (addr && netaddr_from_sockaddr(addr, &t->client) == 0) {
		netaddr_format(&t->client, t->client_text, sizeof(t->client_text));
		t->internal = settings_is_internal(snap->settings, &t->client);
		t->local_submission = direction_local_submission(hostname, addr);
	} else {
		snprintf(t->client_text, sizeof(t->client_text), "unknown");
	}
	log_debug("connect from %s [%s]%s%s", hostname ? hostname : "unknown", t->client_text,
		  t->internal ? " internal" : "", t->local_submission ? " local-submission" : "");
}

void transaction_use_spf(struct transaction *t, const struct transaction_spf *spf, void *impl)
{
	t->spf = spf;
	t->spf_impl = impl;
}

void transaction_helo(struct transaction *t, const char *helo)
{
	snprintf(t->helo, sizeof(t->helo), "%s", helo ? helo : "");
}

/* ---- mail --------------------------------------------------------------- */

/* The envelope sender; -1 when none can be used (the reply is set). */
static int take_sender(struct transaction *t, const char *arg)
{
	struct transaction_msg *m = &t->msg;
	if (arg && address_from_envelope(arg, m->sender, sizeof(m->sender)) == 0)
		return 0;
	/*
	 * Postfix accepted it, so keep it as it is: treating it as the null
	 * sender would make SPF check the client-chosen HELO name.
	 */
	const char *raw = arg ? arg : "?";
	size_t n = strlen(raw);
	if (n >= 2 && raw[0] == '<' && raw[n - 1] == '>') {
		raw++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(m->sender)) {
		verdict_reply_set(&t->reply, "553", "5.1.7", "Unusable envelope sender address");
		return -1;
	}
	memcpy(m->sender, raw, n);
	m->sender[n] = '\0';
	log_info("NOQUEUE: unusual envelope sender <%s> from %s: kept as given", m->sender,
		 t->client_text);
	return 0;
}

static enum verdict spf_inbound(struct transaction *t)
{
	struct transaction_msg *m = &t->msg;
	if (t->spf_impl == NULL || t->client.family == 0)
		return VERDICT_CONTINUE;
	m->spf_helo = spf_identity_domain(t->helo, m->sender, m->spf_identity,
					  sizeof(m->spf_identity)) == SPF_IDENTITY_HELO;
	m->spf = t->spf->check(t->spf_impl, &t->client, t->helo, m->sender, m->spf_detail,
			       sizeof(m->spf_detail));
	m->spf_done = true;
	metrics_inc(METRIC_SPF_CHECKS);
	if (m->spf == SPF_OUTCOME_TEMPERROR)
		metrics_inc(METRIC_SPF_TEMPERROR);
	if (m->spf == SPF_OUTCOME_FAIL)
		metrics_inc(METRIC_SPF_FAIL);
	if (m->spf != SPF_OUTCOME_FAIL || m->cls == NULL)
		return VERDICT_CONTINUE;
	struct verdict_scope scope;
	struct verdict_hit hit = {
		.rule = RULE_SPF_FAIL, .action = m->cls->spf_fail, .client = t->client_text,
		.identity = m->spf_identity, .reason = m->spf_detail,
	};
	transaction_scope(t, &scope);
	return verdict_apply(&scope, &hit, &t->reply, &m->marks);
}

static enum verdict charge(struct transaction *t, const struct ratelimit_rcpts *recipients,
			   bool per_recipient)
{
	struct transaction_msg *m = &t->msg;
	struct ratelimit_verdict v;
	struct verdict_scope scope;
	enum ratelimit_status st;

	memset(&v, 0, sizeof(v));
	if (recipients == NULL) {
		char client[NETADDR_TEXT_MAX + 4];
		safety_client_element(t->client.family ? &t->client : NULL, client, sizeof(client));
		st = ratelimit_check_message_from(t->snap->store, m->cls, m->direction, m->account,
						  client, &m->receipt, &v);
		if (st != RATELIMIT_STORE_FAILED) {
			memcpy(m->volume, v.volume, sizeof(m->volume));
			m->volume_known = true;
		}
	} else {
		st = ratelimit_check_rcpts(t->snap->store, m->cls, m->direction, m->account,
					   recipients, &m->receipt, &v);
	}
	safety_report(&v.safety, transaction_qid(t), m->cls, m->account);
	if (st == RATELIMIT_SUSPENDED) {
		m->suspended = true;
		snprintf(m->suspended_by, sizeof(m->suspended_by), "%s", v.safety.by);
	}
	if (st == RATELIMIT_OK)
		return VERDICT_CONTINUE;
	transaction_scope(t, &scope);
	return verdict_ratelimit(&scope, m->cls, m->account, st, &v, per_recipient, &t->reply,
				 &m->marks);
}

/* The local submission's recipients, all at once (end of message). */
enum verdict transaction_charge_recipients(struct transaction *t, unsigned long n)
{
	t->msg.local_rcpts.count = n;
	return charge(t, &t->msg.local_rcpts, false);
}

enum verdict transaction_mail(struct transaction *t, const char *arg, const char *auth_authen,
			      const char *queue_id)
{
	if (t->snap == NULL) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	transaction_reset(t);
	struct transaction_msg *m = &t->msg;
	m->active = true;
	if (auth_authen && *auth_authen)
		snprintf(t->sasl, sizeof(t->sasl), "%s", auth_authen);
	if (take_sender(t, arg) != 0)
		return VERDICT_REJECT;
	if (t->local_submission)
		transaction_note_queue_id(t, queue_id);	/* cleanup knows it already */
	m->direction = direction_decide(t->sasl, t->internal, t->local_submission);
	intake_begin(&m->intake, m->direction == DIRECTION_INBOUND || t->local_submission);
	struct policy_facts facts = {
		.direction = m->direction, .sasl = t->sasl, .sender = m->sender,
		.client = t->client.family ? &t->client : NULL,
	};
	m->cls = policy_lookup(t->snap->policy, &facts, NULL);
	if (m->cls)
		m->has_account = policy_account(m->cls, &facts, m->account, sizeof(m->account)) == 0;

	if (m->direction == DIRECTION_INBOUND) {
		enum verdict v = spf_inbound(t);
		if (v != VERDICT_CONTINUE) {
			end_early(t, v == VERDICT_REJECT ? DECISION_REJECT_SPF : DECISION_TEMPFAIL_SPF);
			return v;
		}
	}
	if (m->cls == NULL || !m->has_account
	    || (m->cls->messages_count == 0 && !m->cls->has_volume && !safety_wants_mail_event(m->cls)))
		return VERDICT_CONTINUE;
	enum verdict v = charge(t, NULL, false);
	if (v != VERDICT_CONTINUE && m->suspended)
		end_early(t, v == VERDICT_REJECT ? DECISION_REJECT_SUSPENDED : DECISION_TEMPFAIL_SUSPENDED);
	else if (v != VERDICT_CONTINUE)
		end_early(t, v == VERDICT_REJECT ? DECISION_REJECT_RATE : DECISION_TEMPFAIL_RATE);
	return v;
}

/* ---- rcpt --------------------------------------------------------------- */

/* The recipient's domain in lower case, "" when it has none. */
static void rcpt_domain(const char *rcpt, char *buf, size_t len)
{
	char addr[ADDRESS_MAX];
	const char *d = NULL;

	if (rcpt != NULL && address_from_envelope(rcpt, addr, sizeof(addr)) == 0)
		d = address_domain(addr);
	snprintf(buf, len, "%s", d ? d : "");
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

enum verdict transaction_rcpt(struct transaction *t, const char *rcpt, const char *queue_id)
{
	struct transaction_msg *m = &t->msg;
	if (!m->active) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	transaction_note_queue_id(t, queue_id);	/* Postfix has one from the first accepted RCPT on */
	/* local submission: charged at end of message, all recipients at once */
	if (m->cls == NULL || !m->has_account
	    || (m->cls->recipients_count == 0 && !safety_wants_rcpt_event(m->cls))) {
		m->rcpts++;
		return VERDICT_CONTINUE;
	}
	char domain[ADDRESS_MAX];
	rcpt_domain(rcpt, domain, sizeof(domain));
	if (t->local_submission) {
		struct ratelimit_rcpts before = m->local_rcpts;
		ratelimit_rcpts_add(&m->local_rcpts, m->cls, domain, 1);
		if (m->local_rcpts.domain != before.domain) {
			snprintf(m->local_domain, sizeof(m->local_domain), "%s", domain);
			m->local_rcpts.domain = m->local_domain;
		}
		m->rcpts++;
		return VERDICT_CONTINUE;
	}
	struct ratelimit_rcpts one = { 0 };
	char addr[ADDRESS_MAX];
	ratelimit_rcpts_add(&one, m->cls, domain, 1);
	if (rcpt != NULL && address_from_envelope(rcpt, addr, sizeof(addr)) == 0) {
		for (char *p = addr; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		one.rcpt = addr;	/* distinct-recipients counts it */
	}
	enum verdict v = charge(t, &one, true);
	if (v == VERDICT_CONTINUE)
		m->rcpts++;
	return v;
}

/* ---- headers, body ------------------------------------------------------- */

static void sign_fail(struct transaction_msg *m, int state, const char *why)
{
	m->sign_state = state;
	snprintf(m->sign_why, sizeof(m->sign_why), "%s", why);
}

static bool signing(const struct transaction *t)
{
	return t->msg.direction == DIRECTION_OUTBOUND && t->snap->keys &&
	       t->msg.sign_state == SIGNER_SIGN;
}

enum verdict transaction_header(struct transaction *t, const char *name, const char *value,
				const char *queue_id)
{
	struct transaction_msg *m = &t->msg;
	const struct settings *s;
	if (!m->active) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	if (name == NULL || value == NULL)
		return VERDICT_CONTINUE;
	s = t->snap->settings;
	bool removed = header_facts_note(&m->headers, name, value, m->cls, s->tag_header,
					 s->authserv_id);
	intake_header(&m->intake, name, value);
	if (removed || !signing(t))
		return VERDICT_CONTINUE;
	if (m->signer == NULL) {
		transaction_note_queue_id(t, queue_id);
		m->signer = signer_begin(t->snap->keys, s, transaction_qid(t));
	}
	/*
	 * Past the signer's header limits signer_header says SIGNER_SKIP and
	 * keeps nothing more: not an error (the facts above still come from
	 * every header); signer_eoh gives the why, and the message goes out
	 * unsigned.
	 */
	if (m->signer == NULL || signer_header(m->signer, name, value) == SIGNER_ERROR)
		sign_fail(m, SIGNER_ERROR, "cannot hold headers for signing");
	return VERDICT_CONTINUE;
}

/*
 * Our Feedback-ID, for outbound mail of a class whose reports are acted
 * on (intake_wants_feedback_id): made
 * here, before the signer picks its keys, so that it is signed. No key
 * (the fleet's secret unreadable just now): the message goes without.
 */
static void feedback_note(struct transaction *t)
{
	struct transaction_msg *m = &t->msg;
	const struct feedback_key *k;
	if (m->direction != DIRECTION_OUTBOUND || m->cls == NULL || !intake_wants_feedback_id(m->cls) ||
	    !m->has_account || (k = intake_feedback_key(t->snap)) == NULL)
		return;
	m->feedback_id[0] = ' ';
	if (feedback_make(k, m->cls->name, m->account, m->feedback_id + 1, sizeof(m->feedback_id) - 1) != 0) {
		log_warning("%s: no Feedback-ID: cannot make the token for account=%s", transaction_qid(t),
			    m->account);
		m->feedback_id[0] = '\0';
	}
}

/* The signer picks its keys now that the From header is known. */
enum verdict transaction_eoh(struct transaction *t, const char *queue_id)
{
	struct transaction_msg *m = &t->msg;
	const struct header_facts *h = &m->headers;
	if (!m->active) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	transaction_note_queue_id(t, queue_id);
	feedback_note(t);
	if (m->direction != DIRECTION_OUTBOUND || t->snap->keys == NULL) {
		sign_fail(m, SIGNER_SKIP, m->direction != DIRECTION_OUTBOUND ? "inbound" : "no KeyTable");
		return VERDICT_CONTINUE;
	}
	if (m->sign_state != SIGNER_SIGN)
		return VERDICT_CONTINUE;
	if (m->signer == NULL)	/* no headers at all */
		m->signer = signer_begin(t->snap->keys, t->snap->settings, transaction_qid(t));
	if (m->signer == NULL) {
		sign_fail(m, SIGNER_ERROR, "cannot start signer");
		return VERDICT_CONTINUE;
	}
	/* ours is added below every header (transaction_eom.c) and signed */
	if (m->feedback_id[0] && signer_header(m->signer, "Feedback-ID", m->feedback_id) == SIGNER_ERROR) {
		sign_fail(m, SIGNER_ERROR, "cannot hold headers for signing");
		return VERDICT_CONTINUE;
	}
	m->sign_state = signer_eoh(m->signer, header_facts_from(h), m->sign_why, sizeof(m->sign_why));
	if (h->from_count == 0)
		snprintf(m->sign_why, sizeof(m->sign_why), "no From header");
	else if (h->from_count > 1)
		snprintf(m->sign_why, sizeof(m->sign_why), "%u From headers", h->from_count);
	else if (!h->from_ok)
		snprintf(m->sign_why, sizeof(m->sign_why), "From header has no single valid address");
	return VERDICT_CONTINUE;
}

enum verdict transaction_body(struct transaction *t, const unsigned char *chunk, size_t len)
{
	struct transaction_msg *m = &t->msg;
	if (!m->active) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	intake_body(&m->intake, chunk, len);
	if (m->sign_state != SIGNER_SIGN)
		return intake_wants_body(&m->intake) ? VERDICT_CONTINUE : VERDICT_SKIP_BODY;
	/*
	 * Postfix's smtp client breaks lines over 998 octets after we signed
	 * (smtp_line_length_limit), which breaks the body hash: say so.
	 */
	for (const unsigned char *p = chunk, *end = chunk + len; p < end && !m->long_line;) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		m->line_len += (size_t)((nl ? nl : end) - p);
		if (m->line_len > TRANSACTION_LINE_MAX + 1)	/* + the CR */
			m->long_line = true;
		if (nl == NULL)
			break;
		m->line_len = 0;
		p = nl + 1;
	}
	if (signer_body(m->signer, chunk, len) != 0) {
		sign_fail(m, SIGNER_ERROR, "signer body error");
		return VERDICT_SKIP_BODY;
	}
	return VERDICT_CONTINUE;
}

/* ---- abort, close ------------------------------------------------------- */

void transaction_abort(struct transaction *t)
{
	end_early(t, DECISION_ABORTED);
}

struct snapshot *transaction_close(struct transaction *t)
{
	struct snapshot *snap = t->snap;
	end_early(t, DECISION_CONNECTION_CLOSED);
	transaction_reset(t);
	t->snap = NULL;
	return snap;
}

/* ---- the daemon's side: the running snapshot, reply text ---------------- */

void transaction_open(struct transaction *t, const char *hostname, const struct sockaddr *addr)
{
	/*
	 * Connect cannot always be answered (the MTA may not wait for a
	 * reply to it), so a missing snapshot is answered at MAIL FROM.
	 */
	struct snapshot *snap = snapshot_acquire();
	if (snap == NULL)
		log_error("connect: no configuration loaded");
	transaction_connect(t, snap, hostname, addr);
}

void transaction_release(struct transaction *t)
{
	snapshot_release(transaction_close(t));
}

void transaction_reply_text(const struct transaction *t, char *dst, size_t len)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)t->reply.text; *p && o + 3 < len; p++) {
		if (*p == '%') {
			dst[o++] = '%';
			dst[o++] = '%';
		} else {
			dst[o++] = (*p < ' ' || *p == 0x7f) ? ' ' : (char)*p;
		}
	}
	dst[o] = '\0';
}
