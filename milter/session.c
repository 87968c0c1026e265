/*
 * session - per-connection and per-message state, and the replies the
 * milter stages share: the over-limit action, OnStoreFailure, the log
 * line of a transaction that ended before its end of message.
 *
 * Replies go through session_reply, which strips CR/LF and doubles '%'
 * (libmilter treats the text as a format), so an account or a policy
 * text can never break the SMTP dialogue.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "session.h"

/* Copies src into dst, cutting it to fit (for log and header texts). */
void session_copy(char *dst, size_t len, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < len; i++)
		dst[i] = src[i];
	dst[i] = '\0';
}

/* Makes text safe for smfi_setreply: no CR/LF/controls, '%' doubled. */
static void reply_text(char *dst, size_t len, const char *src)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)src; *p && o + 3 < len; p++) {
		if (*p == '%') {
			dst[o++] = '%';
			dst[o++] = '%';
		} else {
			dst[o++] = (*p < ' ' || *p == 0x7f) ? ' ' : (char)*p;
		}
	}
	dst[o] = '\0';
}

sfsistat session_reply(SMFICTX *ctx, const char *code, const char *xcode, const char *text)
{
	char safe[REPLY_TEXT_MAX];
	reply_text(safe, sizeof(safe), text);
	if (smfi_setreply(ctx, (char *)code, (char *)xcode, safe) != MI_SUCCESS)
		log_warning("cannot set reply %s %s", code, xcode);
	return code[0] == '5' ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

const char *session_qid(const struct msg *m)
{
	return m->queue_id[0] ? m->queue_id : "NOQUEUE";
}

void session_reset(struct conn *c)
{
	struct msg *m = &c->msg;
	if (m->receipt.events && c->snap)
		ratelimit_refund(c->snap->store, &m->receipt);
	ratelimit_receipt_clear(&m->receipt);
	free(m->receipt.charges);
	signer_free(m->signer);
	memset(m, 0, sizeof(*m));
	m->sign_state = SIGNER_SIGN;	/* until a header or end of headers says otherwise */
}

/* Refunds the transaction and logs how it ended before end of message. */
void session_end_early(struct conn *c, const char *decision)
{
	struct msg *m = &c->msg;
	if (!m->active)
		return;
	if (strncmp(decision, "reject", 6) == 0)
		metrics_inc(METRIC_REJECTED);
	else if (strncmp(decision, "tempfail", 8) == 0)
		metrics_inc(METRIC_TEMPFAILED);
	log_info("%s: direction=%s class=%s account=%s client=%s decision=%s rcpts=%lu refunded=%s",
		 session_qid(m), m->direction == DIRECTION_OUTBOUND ? "outbound" : "inbound",
		 m->cls ? m->cls->name : "-", m->has_account ? m->account : "-", c->client_text,
		 decision, m->rcpts, m->receipt.events ? "yes" : "no");
	session_reset(c);
}

const char *session_queue_id(SMFICTX *ctx, struct msg *m)
{
	const char *qid = smfi_getsymval(ctx, "i");
	if (qid && *qid && !m->queue_id[0])
		session_copy(m->queue_id, sizeof(m->queue_id), qid);
	return session_qid(m);
}


static void default_over_text(const struct msg *m, bool temporary, char *buf, size_t len)
{
	if (m->cls->over_limit_text[0])
		session_copy(buf, len, m->cls->over_limit_text);
	else
		snprintf(buf, len, "Sending rate limit exceeded for %s%s", m->account,
			 temporary ? ", try again later" : "");
}

enum policy_action session_effective_action(const struct conn *c, enum policy_action action)
{
	if (c->snap->settings->mode == MODE_MONITOR)
		return action == ACTION_NONE ? ACTION_NONE : ACTION_TAG;
	if (c->local_submission && (action == ACTION_TEMPFAIL || action == ACTION_REJECT))
		return ACTION_HOLD;
	return action;
}

/*
 * Applies the class's over-limit action. Returns SMFIS_CONTINUE when the
 * message (or recipient) goes on, or the reply to give.
 */
sfsistat session_over_limit(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v,
			   bool per_recipient)
{
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;
	enum policy_action action = m->cls->over_limit;
	char text[TEXT_BUF];
	const char *rate = v->rate ? v->rate->text : "?";

	metrics_inc(METRIC_OVER_LIMIT);
	if (s->mode == MODE_MONITOR)
		log_info("%s: monitor: account=%s over %s %s: would %s", session_queue_id(ctx, m),
			 m->account, v->kind, rate, policy_action_name(action));
	switch (session_effective_action(c, action)) {
	case ACTION_TEMPFAIL:
		default_over_text(m, true, text, sizeof(text));
		log_info("%s: account=%s over %s %s: 451 4.7.1%s", session_queue_id(ctx, m), m->account,
			 v->kind, rate, per_recipient ? " (recipient)" : "");
		return session_reply(ctx, "451", "4.7.1", text);
	case ACTION_REJECT:
		default_over_text(m, false, text, sizeof(text));
		log_info("%s: account=%s over %s %s: 550 5.7.1%s", session_queue_id(ctx, m), m->account,
			 v->kind, rate, per_recipient ? " (recipient)" : "");
		return session_reply(ctx, "550", "5.7.1", text);
	case ACTION_HOLD:
		if (!m->hold_reason[0]) {
			if (m->cls->over_limit_text[0])
				session_copy(m->hold_reason, sizeof(m->hold_reason), m->cls->over_limit_text);
			else
				snprintf(m->hold_reason, sizeof(m->hold_reason),
					 "bulkmilter: %s over %s rate %s", m->account, v->kind, rate);
		}
		return SMFIS_CONTINUE;
	case ACTION_TAG:
	case ACTION_NONE:
		if (!m->over_tag[0])
			snprintf(m->over_tag, sizeof(m->over_tag), "%s %s", rate, v->kind);
		return SMFIS_CONTINUE;
	}
	return SMFIS_TEMPFAIL;
}

sfsistat session_store_failed(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v)
{
	struct msg *m = &c->msg;
	metrics_inc(METRIC_STORE_FAILURES);
	log_warning("%s: account=%s rate limit not checked: %s", session_queue_id(ctx, m), m->account,
		    v->reason);
	if (c->snap->settings->on_store_failure == STORE_FAILURE_TEMPFAIL &&
	    c->snap->settings->mode == MODE_ENFORCE)
		return session_reply(ctx, "451", "4.3.0", "Rate limit service unavailable, try again later");
	if (!m->unchecked[0])
		session_copy(m->unchecked, sizeof(m->unchecked), v->brief ? v->brief : "unavailable");
	return SMFIS_CONTINUE;
}
