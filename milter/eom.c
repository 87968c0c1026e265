/*
 * eom - end of message: what bulkmilter decides once it has seen the
 * whole message, in this order: local-submission recipients, the DKIM
 * signature, outbound SPF and alignment, bulk classification and the
 * bulk-sender checks, then the header edits, and the one log line.
 *
 * Our headers are added after the signature was computed and none of
 * them is in the signed list, so they never break it; the signature goes
 * in last, at the top. A failure of any edit answers tempfail.
 *
 * A message the signer will not sign (too many or too large headers, no
 * single From, no SigningTable entry) goes out unsigned with its
 * sign_reason logged; only a signing failure of ours answers 451 4.3.0,
 * because a retry of the same message could never get past the former.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "bulk.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

/* Adds a header, with the leading space SMFIP_HDR_LEADSPC asks for. */
static int add_header(SMFICTX *ctx, const struct conn *c, const char *name, const char *value, bool on_top)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), " %s", value);
	for (char *p = buf; *p; p++)
		if (*p == '\r' || (*p == '\n' && p[1] != '\t' && p[1] != ' '))
			*p = ' ';
	int rc = on_top ? smfi_insheader(ctx, 0, (char *)name, buf)
			: smfi_addheader(ctx, (char *)name, buf);
	if (rc != MI_SUCCESS)
		log_error("%s: cannot add header %s", session_qid(&c->msg), name);
	return rc == MI_SUCCESS ? 0 : -1;
}

struct eom_outcome {
	bool bulk;
	char bulk_why[96];
	unsigned failed;		/* bulk-require checks failed */
	char failed_text[96];
	char egress[256];		/* per egress SPF results for the log */
	bool spf_pass_all_egress;
	bool mailfrom_aligned;
	int dmarc;			/* -2 not checked */
	struct signer_result sigs;
	bool signed_ok;
	bool long_line;			/* a body line over 998 octets */
	sfsistat reply;
	const char *decision;
};

static void outbound_spf(struct conn *c, struct eom_outcome *o)
{
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;
	const char *mf = m->sender[0] ? address_domain(m->sender) : NULL;
	const char *fd = m->from_ok && m->from_count == 1 ? address_domain(m->from_addr) : NULL;
	size_t used = 0;

	o->spf_pass_all_egress = s->egress_addresses_count > 0 && mf && c->snap->spf;
	o->mailfrom_aligned = mf && fd && align_relaxed(mf, fd);
	if (!mf || !c->snap->spf || s->egress_addresses_count == 0) {
		session_copy(o->egress, sizeof(o->egress), s->egress_addresses_count ? "none(no-mailfrom)" : "-");
		return;
	}
	for (size_t i = 0; i < s->egress_addresses_count; i++) {
		char addr[NETADDR_TEXT_MAX];
		enum spf_outcome r = spf_check_egress(c->snap->spf, &s->egress_addresses[i], c->helo,
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

static void classify_and_check(struct conn *c, struct eom_outcome *o)
{
	struct msg *m = &c->msg;
	struct bulk_facts f = { .recipients = m->rcpts, .precedence_bulk = m->precedence_bulk,
				.volume_known = m->volume_known };
	memcpy(f.header_present, m->header_present, sizeof(f.header_present));
	memcpy(f.volume, m->volume, sizeof(f.volume));
	o->bulk = m->cls && bulk_classify(m->cls, &f, o->bulk_why, sizeof(o->bulk_why));
	if (!o->bulk || m->cls->bulk_require == 0)
		return;
	const char *domains[SIGNER_SIGNATURES_MAX];
	for (size_t i = 0; i < o->sigs.count; i++)
		domains[i] = o->sigs.sig[i].domain;
	const char *fd = m->from_ok && m->from_count == 1 ? address_domain(m->from_addr) : NULL;
	struct bulk_evidence e = {
		.from_domain = fd,
		.mailfrom_domain = m->sender[0] ? address_domain(m->sender) : NULL,
		.dkim_domains = domains, .dkim_count = o->signed_ok ? o->sigs.count : 0,
		.spf_pass_all_egress = o->spf_pass_all_egress,
		.list_unsub_https = m->list_unsub_https, .list_unsub_mailto = m->list_unsub_mailto,
		.list_unsub_one_click = m->one_click, .dmarc_published = -1,
	};
	if ((m->cls->bulk_require & BULK_REQ_DMARC_RECORD) && fd && c->snap->spf) {
		enum dmarc_record r = spf_dmarc_record(c->snap->spf, fd);
		if (r != DMARC_RECORD_TEMPERROR)
			e.dmarc_published = r == DMARC_RECORD_FOUND;
	}
	o->dmarc = e.dmarc_published;
	o->failed = bulk_check(m->cls, &e);
	bulk_failures_text(o->failed, o->failed_text, sizeof(o->failed_text));
}

/* Applies bulk-noncompliant; returns the reply or SMFIS_CONTINUE. */
static sfsistat noncompliant(SMFICTX *ctx, struct conn *c, struct eom_outcome *o)
{
	struct msg *m = &c->msg;
	char text[TEXT_BUF];
	enum policy_action action = m->cls->bulk_noncompliant;

	if (c->snap->settings->mode == MODE_MONITOR && action != ACTION_TAG)
		log_info("%s: monitor: bulk non-compliant (%s): would %s", session_qid(m), o->failed_text,
			 policy_action_name(action));
	action = session_effective_action(c, action);
	if (m->cls->bulk_noncompliant_text[0])
		session_copy(text, sizeof(text), m->cls->bulk_noncompliant_text);
	else
		snprintf(text, sizeof(text), "Bulk mail does not meet bulk sender requirements: %s",
			 o->failed_text);
	switch (action) {
	case ACTION_TEMPFAIL:
		return session_reply(ctx, "451", "4.7.1", text);
	case ACTION_REJECT:
		return session_reply(ctx, "550", "5.7.1", text);
	case ACTION_HOLD:
		if (!m->hold_reason[0])
			snprintf(m->hold_reason, sizeof(m->hold_reason), "bulkmilter: bulk non-compliant: %s",
				 o->failed_text);
		return SMFIS_CONTINUE;
	default:
		return add_header(ctx, c, "X-Bulk-Noncompliant", o->failed_text, false) == 0 ? SMFIS_CONTINUE
											 : SMFIS_TEMPFAIL;
	}
}

static int remove_headers(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	/* highest index first, so earlier indexes stay valid */
	for (unsigned i = m->tag_headers; i >= 1; i--)
		if (smfi_chgheader(ctx, c->snap->settings->tag_header, (int)i, NULL) != MI_SUCCESS)
			return -1;
	for (unsigned i = m->forged_ar_count; i >= 1; i--)
		if (smfi_chgheader(ctx, "Authentication-Results", (int)m->forged_ar[i - 1], NULL) != MI_SUCCESS)
			return -1;
	return 0;
}

static int add_auth_results(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	char value[600];
	if (!m->spf_done)
		return 0;
	if (m->spf_identity[0])
		snprintf(value, sizeof(value), "%s;\n\tspf=%s smtp.%s=%s", c->snap->settings->authserv_id,
			 spf_outcome_name(m->spf), m->spf_helo ? "helo" : "mailfrom", m->spf_identity);
	else	/* nothing valid to check: RFC 8601 lets the property go */
		snprintf(value, sizeof(value), "%s;\n\tspf=%s", c->snap->settings->authserv_id,
			 spf_outcome_name(m->spf));
	return add_header(ctx, c, "Authentication-Results", value, true);
}

static int local_submission_recipients(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	if (!c->local_submission || m->cls == NULL || !m->has_account || m->cls->recipients_count == 0 ||
	    m->rcpts == 0)
		return 0;
	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_recipients(c->snap->store, m->cls, m->direction,
							      m->account, m->rcpts, &m->receipt, &v);
	if (st == RATELIMIT_OVER)
		return session_over_limit(ctx, c, &v, false) == SMFIS_CONTINUE ? 0 : -1;
	if (st == RATELIMIT_STORE_FAILED)
		return session_store_failed(ctx, c, &v) == SMFIS_CONTINUE ? 0 : -1;
	return 0;
}

static sfsistat eom_apply(SMFICTX *ctx, struct conn *c, struct eom_outcome *o)
{
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;

	if (m->too_many_forged_ar)
		return session_reply(ctx, "550", "5.7.1", "Too many Authentication-Results headers");
	if (local_submission_recipients(ctx, c) != 0)
		return SMFIS_TEMPFAIL;
	if (m->sign_state == SIGNER_ERROR && m->direction == DIRECTION_OUTBOUND && c->snap->keys) {
		log_error("%s: signing failed: %s", session_qid(m), m->sign_why);
		return session_reply(ctx, "451", "4.3.0", "Temporary signing failure, try again later");
	}
	if (m->sign_state == SIGNER_SIGN) {
		char why[160];
		int st = signer_eom(m->signer, &o->sigs, why, sizeof(why));
		if (st == SIGNER_ERROR) {
			log_error("%s: signing failed: %s", session_qid(m), why);
			return session_reply(ctx, "451", "4.3.0", "Temporary signing failure, try again later");
		}
		if (st == SIGNER_SKIP)	/* not signing is never a reason to defer */
			session_copy(m->sign_why, sizeof(m->sign_why), why);
		o->signed_ok = o->sigs.count > 0;
	}
	if (m->direction == DIRECTION_OUTBOUND)
		outbound_spf(c, o);
	classify_and_check(c, o);
	if (o->bulk && o->failed) {
		sfsistat r = noncompliant(ctx, c, o);
		if (r != SMFIS_CONTINUE)
			return r;
	}
	if (remove_headers(ctx, c) != 0 || add_auth_results(ctx, c) != 0)
		return SMFIS_TEMPFAIL;
	if (m->spf_tag && add_header(ctx, c, "X-Bulk-SPF", "fail", false) != 0)
		return SMFIS_TEMPFAIL;
	if (o->bulk) {
		if (add_header(ctx, c, s->tag_header, m->cls->name, false) != 0 ||
		    (!m->has_precedence && add_header(ctx, c, "Precedence", "bulk", false) != 0))
			return SMFIS_TEMPFAIL;
	}
	if (m->over_tag[0] && add_header(ctx, c, "X-Bulk-Over-Limit", m->over_tag, false) != 0)
		return SMFIS_TEMPFAIL;
	if (m->unchecked[0] && add_header(ctx, c, "X-Bulk-Unchecked", m->unchecked, false) != 0)
		return SMFIS_TEMPFAIL;
	/* signatures last and on top, above everything we added */
	for (size_t i = 0; i < o->sigs.count; i++) {
		const char *v = o->sigs.sig[i].header_value;
		if (smfi_insheader(ctx, 0, "DKIM-Signature", (char *)v) != MI_SUCCESS) {
			log_error("%s: cannot insert DKIM-Signature", session_qid(m));
			return SMFIS_TEMPFAIL;
		}
	}
	if (m->hold_reason[0] && smfi_quarantine(ctx, m->hold_reason) != MI_SUCCESS) {
		log_error("%s: cannot hold message", session_qid(m));
		return SMFIS_TEMPFAIL;
	}
	return SMFIS_CONTINUE;
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

static void log_message(struct conn *c, const struct eom_outcome *o, const char *decision)
{
	const struct msg *m = &c->msg;
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
	size_t t = 0;
	t = log_text_field(texts, sizeof(texts), t, "bulk_reason", o->bulk ? o->bulk_why : NULL);
	t = log_text_field(texts, sizeof(texts), t, "noncompliant", o->failed ? o->failed_text : NULL);
	t = log_text_field(texts, sizeof(texts), t, "sign_reason", o->signed_ok ? NULL : m->sign_why);
	t = log_text_field(texts, sizeof(texts), t, "spf_reason", m->spf_done ? m->spf_detail : NULL);
	t = log_text_field(texts, sizeof(texts), t, "long_line", o->long_line ?
			   "a body line over 998 octets: Postfix's smtp client will break it after signing" : NULL);
	log_text_field(texts, sizeof(texts), t, "hold", m->hold_reason);
	log_info("%s: direction=%s class=%s account=%s client=%s sasl=%s from=<%s> decision=%s rcpts=%lu"
		 " bulk=%s signed=%s spf=%s egress=%s aligned=%s%s",
		 session_qid(m), m->direction == DIRECTION_OUTBOUND ? "outbound" : "inbound",
		 m->cls ? m->cls->name : "-", m->has_account ? m->account : "-", c->client_text,
		 c->sasl[0] ? c->sasl : "-", m->sender, decision, m->rcpts, o->bulk ? "yes" : "no", sig,
		 m->spf_done ? spf_outcome_name(m->spf) : "-", o->egress[0] ? o->egress : "-",
		 m->direction == DIRECTION_OUTBOUND ? (o->mailfrom_aligned ? "yes" : "no") : "-", texts);
}

static void count_outcome(const struct conn *c, const struct eom_outcome *o, sfsistat r)
{
	const struct msg *m = &c->msg;
	metrics_inc(r == SMFIS_CONTINUE ? (m->hold_reason[0] ? METRIC_HELD : METRIC_ACCEPTED)
		    : r == SMFIS_REJECT ? METRIC_REJECTED : METRIC_TEMPFAILED);
	if (m->direction == DIRECTION_OUTBOUND && c->snap->keys)
		metrics_inc(o->signed_ok ? METRIC_SIGNED : METRIC_NOT_SIGNED);
	if (o->bulk)
		metrics_inc(METRIC_BULK);
	if (o->failed)
		metrics_inc(METRIC_NONCOMPLIANT);
}

sfsistat eom_finish(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	struct eom_outcome o;
	memset(&o, 0, sizeof(o));
	o.dmarc = -2;
	session_queue_id(ctx, m);
	o.long_line = m->long_line && m->sign_state == SIGNER_SIGN;

	sfsistat r = eom_apply(ctx, c, &o);
	const char *decision = r == SMFIS_CONTINUE ? (m->hold_reason[0] ? "hold" : "accept")
			     : r == SMFIS_REJECT ? "reject" : "tempfail";
	log_message(c, &o, decision);
	count_outcome(c, &o, r);
	if (r == SMFIS_CONTINUE)
		ratelimit_receipt_clear(&m->receipt);	/* accepted: the charge stands */
	session_reset(c);
	return r;
}
