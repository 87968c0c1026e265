/*
 * transaction_eom - end of message: what bulkmilter decides once it has
 * seen the whole message, in this order: local-submission recipients,
 * signing authority (the class's from-unauthorized), the DKIM signature, outbound SPF and alignment, bulk classification
 * and the bulk-sender checks, then the header edits, and (in
 * transaction_end, once the milter layer made them) the one log line.
 *
 * Our headers are added after the signature was computed and none of
 * them is in the signed list, so they never break it; the signatures go
 * in last, at the top. The milter layer makes the edits; a failure of
 * any of them ends the message in tempfail (transaction_end).
 *
 * A message the signer will not sign (too many or too large headers, no
 * single From, no SigningTable entry) goes out unsigned with its
 * sign_reason logged; only a signing failure of ours answers 451 4.3.0,
 * because a retry of the same message could never get past the former.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "align.h"
#include "authority.h"
#include "bulk.h"
#include "direction.h"
#include "log.h"
#include "metrics.h"
#include "transaction.h"

/*
 * Keeps a value we add as the MTA takes it: with the leading space
 * SMFIP_HDR_LEADSPC asks for, no CR, and every LF a fold. NULL when the
 * values do not fit (they always do: see TRANSACTION_VALUES_MAX).
 */
static const char *keep_value(struct transaction_outcome *o, const char *value)
{
	char *v = o->values + o->values_used;
	size_t need = strnlen(value, TRANSACTION_VALUE_MAX - 1) + 2;	/* ' ', value, NUL */
	if (need > sizeof(o->values) - o->values_used)
		return NULL;
	snprintf(v, need, " %s", value);
	for (char *p = v; *p; p++)
		if (*p == '\r' || (*p == '\n' && p[1] != '\t' && p[1] != ' '))
			*p = ' ';
	o->values_used += strlen(v) + 1;
	return v;
}

static int edit(struct transaction_outcome *o, enum transaction_edit_op op, const char *name,
		const char *value, unsigned index, unsigned count)
{
	struct transaction_result *r = &o->result;
	if (r->edits == TRANSACTION_EDITS_MAX)
		return -1;
	if (value && (value = keep_value(o, value)) == NULL)
		return -1;
	r->edit[r->edits++] = (struct transaction_edit){ op, name, value, index, count };
	return 0;
}

static void outbound_spf(struct transaction *t, struct transaction_outcome *o)
{
	struct transaction_msg *m = &t->msg;
	const struct settings *s = t->snap->settings;
	const char *from = header_facts_from(&m->headers);
	const char *mf = m->sender[0] ? address_domain(m->sender) : NULL;
	const char *fd = from ? address_domain(from) : NULL;
	size_t used = 0;

	o->spf_pass_all_egress = s->egress_addresses_count > 0 && mf && t->spf_impl;
	o->mailfrom_aligned = mf && fd && align_relaxed(mf, fd);
	if (!mf || !t->spf_impl || s->egress_addresses_count == 0) {
		snprintf(o->egress, sizeof(o->egress), "%s",
			 s->egress_addresses_count ? "none(no-mailfrom)" : "-");
		return;
	}
	for (size_t i = 0; i < s->egress_addresses_count; i++) {
		char addr[NETADDR_TEXT_MAX];
		enum spf_outcome r = t->spf->check_egress(t->spf_impl, &s->egress_addresses[i], t->helo,
							  m->sender);
		if (r != SPF_OUTCOME_PASS)
			o->spf_pass_all_egress = false;
		netaddr_format(&s->egress_addresses[i], addr, sizeof(addr));
		int n = snprintf(o->egress + used, sizeof(o->egress) - used, "%s%s:%s", used ? "," : "",
				 addr, spf_outcome_name(r));
		if (n > 0 && (size_t)n < sizeof(o->egress) - used)
			used += (size_t)n;
	}
}

static void classify_and_check(struct transaction *t, struct transaction_outcome *o)
{
	struct transaction_msg *m = &t->msg;
	const struct header_facts *h = &m->headers;
	struct bulk_facts f = { .recipients = m->rcpts, .precedence_bulk = h->precedence_bulk,
				.volume_known = m->volume_known };
	memcpy(f.header_present, h->header_present, sizeof(f.header_present));
	memcpy(f.volume, m->volume, sizeof(f.volume));
	o->bulk = m->cls && bulk_classify(m->cls, &f, o->bulk_why, sizeof(o->bulk_why));
	if (!o->bulk || m->cls->bulk_require == 0)
		return;
	const char *domains[SIGNER_SIGNATURES_MAX];
	for (size_t i = 0; i < o->sigs.count; i++)
		domains[i] = o->sigs.sig[i].domain;
	const char *from = header_facts_from(h);
	const char *fd = from ? address_domain(from) : NULL;
	struct bulk_evidence e = {
		.from_domain = fd,
		.mailfrom_domain = m->sender[0] ? address_domain(m->sender) : NULL,
		.dkim_domains = domains, .dkim_count = o->signed_ok ? o->sigs.count : 0,
		.spf_pass_all_egress = o->spf_pass_all_egress,
		.list_unsub_https = h->list_unsub_https, .list_unsub_mailto = h->list_unsub_mailto,
		.list_unsub_one_click = h->one_click, .dmarc_published = -1,
	};
	if ((m->cls->bulk_require & BULK_REQ_DMARC_RECORD) && fd && t->spf_impl) {
		enum dmarc_record r = t->spf->dmarc_record(t->spf_impl, fd);
		if (r != DMARC_RECORD_TEMPERROR)
			e.dmarc_published = r == DMARC_RECORD_FOUND;
	}
	o->failed = bulk_check(m->cls, &e);
	bulk_failures_text(o->failed, o->failed_text, sizeof(o->failed_text));
}

/*
 * SigningAuthority: a SASL login's mail with a From domain the login may
 * not sign for goes unsigned, and gets the class's from-unauthorized.
 * The check needs the one From address; without it the message is not
 * signed anyway (transaction_eoh says why).
 */
static enum verdict authorize(struct transaction *t)
{
	struct transaction_msg *m = &t->msg;
	const struct header_facts *h = &m->headers;
	const char *from = header_facts_from(h);
	const char *fd = from && h->from_count == 1 && h->from_ok ? address_domain(from) : NULL;
	char why[512];

	if (t->snap->authority == NULL || m->direction != DIRECTION_OUTBOUND || fd == NULL ||
	    authority_allows(t->snap->authority, t->sasl, fd, why, sizeof(why)))
		return VERDICT_CONTINUE;
	m->sign_state = SIGNER_SKIP;
	snprintf(m->sign_why, sizeof(m->sign_why), "not authorized for %s", fd);
	log_info("%s: sasl=%s not authorized for %s: %s", transaction_qid(t), t->sasl, fd, why);
	if (m->cls == NULL)
		return VERDICT_CONTINUE;
	struct verdict_scope scope;
	struct verdict_hit hit = {
		.rule = RULE_FROM_UNAUTHORIZED, .action = m->cls->from_unauthorized,
		.text = m->cls->from_unauthorized_text, .account = t->sasl, .identity = fd,
	};
	transaction_scope(t, &scope);
	return verdict_apply(&scope, &hit, &t->reply, &m->marks);
}

/* Signs the message; VERDICT_TEMPFAIL (reply set) on a failure of ours. */
static enum verdict sign(struct transaction *t, struct transaction_outcome *o)
{
	struct transaction_msg *m = &t->msg;
	char why[160];
	int st = SIGNER_SKIP;

	if (m->sign_state == SIGNER_SIGN) {
		st = signer_eom(m->signer, &o->sigs, why, sizeof(why));
		if (st == SIGNER_SKIP)	/* not signing is never a reason to defer */
			snprintf(m->sign_why, sizeof(m->sign_why), "%s", why);
		o->signed_ok = st == SIGNER_SIGN && o->sigs.count > 0;
	} else if (m->sign_state == SIGNER_ERROR && m->direction == DIRECTION_OUTBOUND && t->snap->keys) {
		st = SIGNER_ERROR;
		snprintf(why, sizeof(why), "%s", m->sign_why);
	}
	if (st != SIGNER_ERROR)
		return VERDICT_CONTINUE;
	log_error("%s: signing failed: %s", transaction_qid(t), why);
	return verdict_reply_set(&t->reply, "451", "4.3.0", "Temporary signing failure, try again later");
}

/* The edits of an accepted message, in the order they are made. */
static int edits(struct transaction *t, struct transaction_outcome *o)
{
	const struct transaction_msg *m = &t->msg;
	const struct header_facts *h = &m->headers;
	const struct verdict_marks *k = &m->marks;
	const struct settings *s = t->snap->settings;
	int rc = 0;

	if (k->noncompliant[0])
		rc |= edit(o, EDIT_ADD, "X-Bulk-Noncompliant", k->noncompliant, 0, 0);
	/* highest index first, so earlier indexes stay valid */
	if (h->tag_headers)
		rc |= edit(o, EDIT_REMOVE, s->tag_header, NULL, h->tag_headers, h->tag_headers);
	for (unsigned i = h->forged_ar_count; i >= 1; i--)
		rc |= edit(o, EDIT_REMOVE, "Authentication-Results", NULL, h->forged_ar[i - 1], 1);
	if (m->spf_done) {
		char value[600];
		if (m->spf_identity[0])
			snprintf(value, sizeof(value), "%s;\n\tspf=%s smtp.%s=%s", s->authserv_id,
				 spf_outcome_name(m->spf), m->spf_helo ? "helo" : "mailfrom", m->spf_identity);
		else	/* nothing valid to check: RFC 8601 lets the property go */
			snprintf(value, sizeof(value), "%s;\n\tspf=%s", s->authserv_id, spf_outcome_name(m->spf));
		rc |= edit(o, EDIT_INSERT_TOP, "Authentication-Results", value, 0, 0);
	}
	if (k->spf_tag)
		rc |= edit(o, EDIT_ADD, "X-Bulk-SPF", "fail", 0, 0);
	if (o->bulk) {
		rc |= edit(o, EDIT_ADD, s->tag_header, m->cls->name, 0, 0);
		if (!h->has_precedence)
			rc |= edit(o, EDIT_ADD, "Precedence", "bulk", 0, 0);
	}
	if (k->over_tag[0])
		rc |= edit(o, EDIT_ADD, "X-Bulk-Over-Limit", k->over_tag, 0, 0);
	if (k->unchecked[0])
		rc |= edit(o, EDIT_ADD, "X-Bulk-Unchecked", k->unchecked, 0, 0);
	if (k->unauthorized[0])
		rc |= edit(o, EDIT_ADD, "X-Bulk-Unauthorized", k->unauthorized, 0, 0);
	if (k->suppressed[0])
		rc |= edit(o, EDIT_ADD, "X-Bulk-Suppressed", k->suppressed, 0, 0);
	if (m->feedback_id[0])	/* signed as " VALUE" (transaction_eoh); keep_value adds the space */
		rc |= edit(o, EDIT_ADD, "Feedback-ID", m->feedback_id + 1, 0, 0);
	o->result.sig = o->sigs.sig;
	o->result.sigs = o->sigs.count;
	o->result.hold_reason = k->hold_reason[0] ? k->hold_reason : NULL;
	return rc;
}

static enum verdict decide(struct transaction *t, struct transaction_outcome *o)
{
	struct transaction_msg *m = &t->msg;
	enum verdict v;

	if (m->headers.too_many_forged_ar)
		return verdict_reply_set(&t->reply, "550", "5.7.1", "Too many Authentication-Results headers");
	if (t->local_submission && m->cls && m->has_account && m->cls->recipients_count && m->rcpts &&
	    (v = transaction_charge_recipients(t, m->rcpts)) != VERDICT_CONTINUE)
		return v;
	/* suspended within the message (a recipient tripped a rule, or the
	   suspension began after MAIL FROM): the whole message gets the action */
	if (m->suspended) {
		struct verdict_scope scope;
		transaction_scope(t, &scope);
		v = verdict_suspended(&scope, m->cls, m->account, m->suspended_by, false, &t->reply,
				      &m->marks);
		if (v != VERDICT_CONTINUE)
			return v;
	}
	if ((v = authorize(t)) != VERDICT_CONTINUE || (v = sign(t, o)) != VERDICT_CONTINUE)
		return v;
	if (m->direction == DIRECTION_OUTBOUND)
		outbound_spf(t, o);
	classify_and_check(t, o);
	if (o->bulk && o->failed) {
		struct verdict_scope scope;
		struct verdict_hit hit = {
			.rule = RULE_BULK_NONCOMPLIANT, .action = m->cls->bulk_noncompliant,
			.text = m->cls->bulk_noncompliant_text, .reason = o->failed_text,
		};
		transaction_scope(t, &scope);
		if ((v = verdict_apply(&scope, &hit, &t->reply, &m->marks)) != VERDICT_CONTINUE)
			return v;
	}
	if (edits(t, o) != 0) {
		log_error("%s: too many header edits", transaction_qid(t));
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	return o->result.hold_reason ? VERDICT_HOLD : VERDICT_CONTINUE;
}

enum verdict transaction_eom(struct transaction *t, const char *queue_id,
			     const struct transaction_result **res)
{
	struct transaction_msg *m = &t->msg;
	struct transaction_outcome *o = &t->end;

	*res = NULL;
	if (!m->active) {
		t->reply.code = NULL;
		return VERDICT_TEMPFAIL;
	}
	/* the edits and their values are written before they are read */
	memset(o, 0, offsetof(struct transaction_outcome, result));
	o->result.edits = 0;
	o->values_used = 0;
	transaction_note_queue_id(t, queue_id);
	o->long_line = m->long_line && m->sign_state == SIGNER_SIGN;
	enum verdict v = decide(t, o);
	if (v == VERDICT_CONTINUE || v == VERDICT_HOLD) {
		*res = &o->result;
		/* a report is acted on once accepted; refused, it comes again */
		intake_finish(&m->intake, t->snap, transaction_qid(t));
	}
	return v;
}

/*
 * Appends ' key="text"' (logfmt) when text is not empty: free text goes
 * last and quoted, so every bare key=value field splits on spaces.
 */
static size_t log_text_field(char *buf, size_t len, size_t used, const char *key, const char *text)
{
	if (text == NULL || text[0] == '\0' || used >= len)
		return used;
	int n = snprintf(buf + used, len - used, " %s=\"", key);
	if (n < 0 || (size_t)n >= len - used)
		return used;
	used += (size_t)n;
	for (const char *p = text; *p && used + 2 < len; p++)
		buf[used++] = *p == '"' ? '\'' : *p;
	if (used + 1 < len)
		buf[used++] = '"';
	buf[used] = '\0';
	return used;
}

static void log_message(const struct transaction *t, enum verdict_decision decision)
{
	const struct transaction_msg *m = &t->msg;
	const struct transaction_outcome *o = &t->end;
	char sig[200] = "no", texts[1200] = "";
	if (o->signed_ok) {
		size_t used = 0;
		for (size_t i = 0; i < o->sigs.count && used < sizeof(sig); i++) {
			int n = snprintf(sig + used, sizeof(sig) - used, "%sd=%s,s=%s,a=%s", i ? ";" : "",
					 o->sigs.sig[i].domain, o->sigs.sig[i].selector, o->sigs.sig[i].algorithm);
			if (n < 0)
				break;
			used += (size_t)n;
		}
	}
	size_t n = 0;
	n = log_text_field(texts, sizeof(texts), n, "bulk_reason", o->bulk ? o->bulk_why : NULL);
	n = log_text_field(texts, sizeof(texts), n, "noncompliant", o->failed ? o->failed_text : NULL);
	n = log_text_field(texts, sizeof(texts), n, "sign_reason", o->signed_ok ? NULL : m->sign_why);
	n = log_text_field(texts, sizeof(texts), n, "spf_reason", m->spf_done ? m->spf_detail : NULL);
	n = log_text_field(texts, sizeof(texts), n, "long_line", o->long_line ?
			   "a body line over 998 octets: Postfix's smtp client will break it after signing" : NULL);
	log_text_field(texts, sizeof(texts), n, "hold", m->marks.hold_reason);
	log_info("%s: direction=%s class=%s account=%s client=%s sasl=%s from=<%s> decision=%s rcpts=%lu"
		 " bulk=%s signed=%s spf=%s egress=%s aligned=%s%s",
		 transaction_qid(t), direction_name(m->direction), m->cls ? m->cls->name : "-",
		 m->has_account ? m->account : "-", t->client_text, t->sasl[0] ? t->sasl : "-", m->sender,
		 verdict_decision_name(decision), m->rcpts, o->bulk ? "yes" : "no", sig,
		 m->spf_done ? spf_outcome_name(m->spf) : "-", o->egress[0] ? o->egress : "-",
		 m->direction == DIRECTION_OUTBOUND ? (o->mailfrom_aligned ? "yes" : "no") : "-", texts);
}

void transaction_end(struct transaction *t, enum verdict final)
{
	struct transaction_msg *m = &t->msg;
	const struct transaction_outcome *o = &t->end;
	bool accepted = final == VERDICT_CONTINUE || final == VERDICT_HOLD;
	enum verdict_decision d = accepted ? (m->marks.hold_reason[0] ? DECISION_HOLD : DECISION_ACCEPT)
				: final == VERDICT_REJECT ? DECISION_REJECT : DECISION_TEMPFAIL;

	if (!m->active)
		return;
	log_message(t, d);
	verdict_decision_count(d, m->cls ? m->cls->name : NULL);
	if (m->direction == DIRECTION_OUTBOUND && t->snap->keys)
		metrics_inc(o->signed_ok ? METRIC_SIGNED : METRIC_NOT_SIGNED);
	if (o->bulk)
		metrics_inc(METRIC_BULK);
	if (o->failed)
		metrics_inc(METRIC_NONCOMPLIANT);
	if (accepted)
		ratelimit_receipt_clear(&m->receipt);	/* accepted: the charge stands */
	transaction_reset(t);
}
