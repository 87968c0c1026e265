/*
 * callbacks - the milter conversation.
 *
 * This file turns libmilter's events into calls on modules that know
 * nothing of libmilter; the state they share is in session.h.
 *
 * What happens when:
 *   connect   client address; InternalHosts; local submission detection
 *   helo      HELO name (SPF of the null sender)
 *   envfrom   direction, class, account; inbound SPF; messages rates
 *   envrcpt   recipients rates, one recipient at a time
 *   header    facts for bulk rules and compliance; headers to remove;
 *             headers held by the signer
 *   eoh       the signer picks its keys from the one From address
 *   body      straight into the signer (or skipped when not signing)
 *   eom       local-submission recipients; bulk; compliance; header
 *             edits; signatures; hold; the one log line (eom.c)
 *   abort     refund what the transaction was charged
 *   close     refund, release the snapshot
 *
 * Mail from sendmail(1) (non_smtpd_milters) is recognised by the connect
 * Postfix's cleanup emulates for it: "localhost", 127.0.0.1, port 0.
 * Postfix cannot take a per-recipient reply there, so its recipients are
 * charged at end of message and over-limit tempfail/reject become hold.
 */
#include "config.h"

#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "address.h"
#include "bulk.h"
#include "callbacks.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "policy.h"
#include "ratelimit.h"
#include "session.h"
#include "signer.h"
#include "snapshot.h"
#include "spf.h"

static int connections_open;

int callbacks_connections(void)
{
	return __atomic_load_n(&connections_open, __ATOMIC_SEQ_CST);
}

static struct conn *conn_of(SMFICTX *ctx)
{
	return (struct conn *)smfi_getpriv(ctx);
}

/* ---- connect, helo ---------------------------------------------------- */

/* The connection's state: made at negotiation, or here if the MTA skipped it. */
static struct conn *conn_new(SMFICTX *ctx)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
		free(c);
		return NULL;
	}
	__atomic_add_fetch(&connections_open, 1, __ATOMIC_SEQ_CST);
	return c;
}

/* SMFIS_NOREPLY where the MTA granted "no reply" for this step. */
static sfsistat no_reply(const struct conn *c, unsigned long flag)
{
	return c && (c->protocol & flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/*
 * A step with "no reply" negotiated cannot tempfail; a message broken at
 * that point is not active any more, and end of message tempfails it.
 */
static sfsistat fail_or_no_reply(const struct conn *c, unsigned long flag)
{
	return no_reply(c, flag) == SMFIS_NOREPLY ? SMFIS_NOREPLY : SMFIS_TEMPFAIL;
}

/*
 * The rest of the body is not wanted: SKIP where the MTA understands it;
 * one that does not would take it for a protocol error, so it gets
 * "continue" and sends the rest.
 */
static sfsistat skip_body(const struct conn *c)
{
	return c->protocol & SMFIP_SKIP ? SMFIS_SKIP : SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL && (c = conn_new(ctx)) == NULL) {
		log_error("connect: out of memory");
		return SMFIS_TEMPFAIL;
	}
	/*
	 * Failures here cannot always be answered (no reply is negotiated for
	 * connect), so they are answered at MAIL FROM: no snapshot, tempfail.
	 */
	c->snap = snapshot_acquire();
	if (c->snap == NULL) {
		log_error("connect: no configuration loaded");
		return no_reply(c, SMFIP_NR_CONN);
	}
	if (netaddr_from_sockaddr(hostaddr, &c->client) == 0) {
		netaddr_format(&c->client, c->client_text, sizeof(c->client_text));
		c->internal = settings_is_internal(c->snap->settings, &c->client);
		/* Postfix's cleanup pretends "localhost [127.0.0.1]" port 0 for sendmail(1) */
		if (hostaddr->sa_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)hostaddr;
			c->local_submission = sin->sin_port == 0 && hostname &&
					      strcmp(hostname, "localhost") == 0 &&
					      ntohl(sin->sin_addr.s_addr) == INADDR_LOOPBACK;
		}
	} else {
		session_copy(c->client_text, sizeof(c->client_text), "unknown");
	}
	log_debug("connect from %s [%s]%s%s", hostname ? hostname : "unknown", c->client_text,
		  c->internal ? " internal" : "", c->local_submission ? " local-submission" : "");
	return no_reply(c, SMFIP_NR_CONN);
}

static sfsistat cb_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	session_copy(c->helo, sizeof(c->helo), helo);
	return no_reply(c, SMFIP_NR_HELO);
}

/* ---- envfrom ------------------------------------------------------------ */

static sfsistat spf_inbound(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	if (c->snap->spf == NULL || c->client.family == 0)
		return SMFIS_CONTINUE;
	m->spf_helo = spf_identity_domain(c->helo, m->sender, m->spf_identity,
					  sizeof(m->spf_identity)) == SPF_IDENTITY_HELO;
	m->spf = spf_check(c->snap->spf, &c->client, c->helo, m->sender, m->spf_detail,
			   sizeof(m->spf_detail));
	m->spf_done = true;
	metrics_inc(METRIC_SPF_CHECKS);
	if (m->spf == SPF_OUTCOME_TEMPERROR)
		metrics_inc(METRIC_SPF_TEMPERROR);
	if (m->spf == SPF_OUTCOME_FAIL)
		metrics_inc(METRIC_SPF_FAIL);
	if (m->spf != SPF_OUTCOME_FAIL || m->cls == NULL)
		return SMFIS_CONTINUE;
	char text[TEXT_BUF];
	snprintf(text, sizeof(text), "SPF check failed for %s from %s: %s", m->spf_identity,
		 c->client_text, m->spf_detail[0] ? m->spf_detail : "not permitted");
	enum policy_action action = m->cls->spf_fail;
	if (c->snap->settings->mode == MODE_MONITOR && (action == ACTION_REJECT || action == ACTION_TEMPFAIL))
		log_info("NOQUEUE: monitor: spf=fail from %s: would %s", c->client_text,
			 policy_action_name(action));
	switch (session_effective_action(c, action)) {
	case ACTION_REJECT:
		return session_reply(ctx, "550", "5.7.23", text);
	case ACTION_TEMPFAIL:
		return session_reply(ctx, "451", "4.7.23", text);
	case ACTION_TAG:
		m->spf_tag = true;
		return SMFIS_CONTINUE;
	default:
		return SMFIS_CONTINUE;
	}
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || c->snap == NULL)
		return SMFIS_TEMPFAIL;
	session_reset(c);
	struct msg *m = &c->msg;
	m->active = true;

	const char *auth = smfi_getsymval(ctx, "{auth_authen}");
	if (auth && *auth)
		session_copy(c->sasl, sizeof(c->sasl), auth);
	if (argv[0] == NULL || address_from_envelope(argv[0], m->sender, sizeof(m->sender)) != 0) {
		/*
		 * Postfix accepted it, so keep it as it is: treating it as the
		 * null sender would make SPF check the client-chosen HELO name.
		 */
		const char *raw = argv[0] ? argv[0] : "?";
		size_t n = strlen(raw);
		if (n >= 2 && raw[0] == '<' && raw[n - 1] == '>') {
			raw++;
			n -= 2;
		}
		if (n == 0 || n >= sizeof(m->sender))
			return session_reply(ctx, "553", "5.1.7", "Unusable envelope sender address");
		memcpy(m->sender, raw, n);
		m->sender[n] = '\0';
		log_info("NOQUEUE: unusual envelope sender <%s> from %s: kept as given", m->sender,
			 c->client_text);
	}
	if (c->local_submission)
		session_queue_id(ctx, m);	/* cleanup knows it already */
	m->direction = (c->sasl[0] || c->internal || c->local_submission) ? DIRECTION_OUTBOUND
									  : DIRECTION_INBOUND;
	struct policy_facts facts = {
		.direction = m->direction, .sasl = c->sasl, .sender = m->sender,
		.client = c->client.family ? &c->client : NULL,
	};
	m->cls = policy_lookup(c->snap->policy, &facts, NULL);
	if (m->cls)
		m->has_account = policy_account(m->cls, &facts, m->account, sizeof(m->account)) == 0;

	if (m->direction == DIRECTION_INBOUND) {
		sfsistat r = spf_inbound(ctx, c);
		if (r != SMFIS_CONTINUE) {
			session_end_early(c, r == SMFIS_REJECT ? "reject-spf" : "tempfail-spf");
			return r;
		}
	}
	if (m->cls == NULL || !m->has_account)
		return SMFIS_CONTINUE;
	if (m->cls->messages_count == 0 && !m->cls->has_volume)
		return SMFIS_CONTINUE;

	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_message(c->snap->store, m->cls, m->direction,
							   m->account, &m->receipt, &v);
	sfsistat r = SMFIS_CONTINUE;
	if (st == RATELIMIT_OK) {
		memcpy(m->volume, v.volume, sizeof(m->volume));
		m->volume_known = true;
	} else if (st == RATELIMIT_OVER) {
		memcpy(m->volume, v.volume, sizeof(m->volume));
		m->volume_known = true;
		r = session_over_limit(ctx, c, &v, false);
	} else {
		r = session_store_failed(ctx, c, &v);
	}
	if (r != SMFIS_CONTINUE)
		session_end_early(c, r == SMFIS_REJECT ? "reject-rate" : "tempfail-rate");
	return r;
}

/* ---- envrcpt ------------------------------------------------------------ */

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	(void)argv;
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	session_queue_id(ctx, m);	/* Postfix has one from the first accepted RCPT on */
	/* local submission: charged at end of message, all recipients at once */
	if (c->local_submission || m->cls == NULL || !m->has_account || m->cls->recipients_count == 0) {
		m->rcpts++;
		return SMFIS_CONTINUE;
	}
	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_recipients(c->snap->store, m->cls, m->direction,
							      m->account, 1, &m->receipt, &v);
	sfsistat r = SMFIS_CONTINUE;
	if (st == RATELIMIT_OVER)
		r = session_over_limit(ctx, c, &v, true);
	else if (st == RATELIMIT_STORE_FAILED)
		r = session_store_failed(ctx, c, &v);
	if (r == SMFIS_CONTINUE)
		m->rcpts++;
	else
		m->rcpts_refused++;
	return r;
}

/* ---- headers ------------------------------------------------------------ */

static const char *skip_space(const char *v)
{
	while (isspace((unsigned char)*v))
		v++;
	return v;
}

/* Skips a comment at p ('('), nested and with quoted-pairs; NULL when open. */
static const char *skip_comment(const char *p)
{
	for (int depth = 0; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/*
 * True when an Authentication-Results value claims our authserv-id as
 * RFC 8601 2.2 reads it, and so whoever reads the header after us: after
 * comments (which nest), a token or a quoted-string, in any case.
 */
static bool ar_is_ours(const char *value, const char *authserv_id)
{
	const char *p = skip_space(value);
	while (*p == '(') {		/* leading comments */
		if ((p = skip_comment(p)) == NULL)
			return false;
		p = skip_space(p);
	}
	if (*p == '"') {
		const char *id = authserv_id;
		for (p++; *p != '"'; p++, id++) {
			if (*p == '\\' && p[1])
				p++;
			if (*p == '\0' || tolower((unsigned char)*p) != tolower((unsigned char)*id))
				return false;
		}
		return *id == '\0';
	}
	size_t n = strcspn(p, " \t\r\n;(");
	return n == strlen(authserv_id) && strncasecmp(p, authserv_id, n) == 0;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return fail_or_no_reply(c, SMFIP_NR_HDR);
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;

	if (name == NULL || value == NULL)
		return no_reply(c, SMFIP_NR_HDR);
	if (strcasecmp(name, "From") == 0) {
		if (++m->from_count == 1)
			m->from_ok = address_from_header(value, m->from_addr, sizeof(m->from_addr)) == 0;
	} else if (strcasecmp(name, s->tag_header) == 0) {
		m->tag_headers++;
	} else if (strcasecmp(name, "Authentication-Results") == 0) {
		m->ar_headers++;
		if (ar_is_ours(value, s->authserv_id)) {
			if (m->forged_ar_count < MSG_FORGED_AR_MAX)
				m->forged_ar[m->forged_ar_count++] = m->ar_headers;
			else
				m->too_many_forged_ar = true;
		}
	} else if (strcasecmp(name, "Precedence") == 0) {
		m->has_precedence = true;
		if (bulk_precedence_is_bulk(value))
			m->precedence_bulk = true;
	} else if (strcasecmp(name, "List-Unsubscribe") == 0) {
		bool https, mailto;
		bulk_list_unsubscribe_scan(value, &https, &mailto);
		m->list_unsub_https |= https;
		m->list_unsub_mailto |= mailto;
	} else if (strcasecmp(name, "List-Unsubscribe-Post") == 0) {
		m->one_click |= bulk_is_one_click(value);
	}
	if (m->cls) {
		for (size_t i = 0; i < m->cls->bulk_count; i++)
			if (m->cls->bulk[i].kind == BULK_HEADER && strcasecmp(name, m->cls->bulk[i].header) == 0)
				m->header_present[i] = true;
	}
	bool removed = strcasecmp(name, s->tag_header) == 0 ||
		       (m->forged_ar_count && m->forged_ar[m->forged_ar_count - 1] == m->ar_headers &&
			strcasecmp(name, "Authentication-Results") == 0);
	if (!removed && m->direction == DIRECTION_OUTBOUND && c->snap->keys && m->sign_state == SIGNER_SIGN) {
		if (m->signer == NULL)
			m->signer = signer_begin(c->snap->keys, s, session_queue_id(ctx, m));
		/*
		 * Past the signer's header limits signer_header says
		 * SIGNER_SKIP and keeps nothing more: not an error (the facts
		 * above still come from every header); signer_eoh gives the
		 * why, and the message goes out unsigned.
		 */
		if (m->signer == NULL || signer_header(m->signer, name, value) == SIGNER_ERROR) {
			m->sign_state = SIGNER_ERROR;
			session_copy(m->sign_why, sizeof(m->sign_why), "cannot hold headers for signing");
		}
	}
	return no_reply(c, SMFIP_NR_HDR);
}

/* The signer picks its keys now that the From header is known. */
static void eoh_start_signing(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	session_queue_id(ctx, m);
	if (m->direction != DIRECTION_OUTBOUND || c->snap->keys == NULL) {
		m->sign_state = SIGNER_SKIP;
		session_copy(m->sign_why, sizeof(m->sign_why),
			 m->direction != DIRECTION_OUTBOUND ? "inbound" : "no KeyTable");
		return;
	}
	if (m->sign_state != SIGNER_SIGN)
		return;
	if (m->signer == NULL)	/* no headers at all */
		m->signer = signer_begin(c->snap->keys, c->snap->settings, session_qid(m));
	if (m->signer == NULL) {
		m->sign_state = SIGNER_ERROR;
		session_copy(m->sign_why, sizeof(m->sign_why), "cannot start signer");
		return;
	}
	const char *from = m->from_count == 1 && m->from_ok ? m->from_addr : NULL;
	m->sign_state = signer_eoh(m->signer, from, m->sign_why, sizeof(m->sign_why));
	if (m->from_count == 0)
		session_copy(m->sign_why, sizeof(m->sign_why), "no From header");
	else if (m->from_count > 1)
		snprintf(m->sign_why, sizeof(m->sign_why), "%u From headers", m->from_count);
	else if (!m->from_ok)
		session_copy(m->sign_why, sizeof(m->sign_why), "From header has no single valid address");
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return fail_or_no_reply(c, SMFIP_NR_EOH);
	eoh_start_signing(ctx, c);
	return no_reply(c, SMFIP_NR_EOH);
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	if (m->sign_state != SIGNER_SIGN)
		return skip_body(c);
	/*
	 * Postfix's smtp client breaks lines over 998 octets after we signed
	 * (smtp_line_length_limit), which breaks the body hash: say so.
	 */
	for (const unsigned char *p = chunk, *end = chunk + len; p < end && !m->long_line;) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t run = (size_t)((nl ? nl : end) - p);
		m->line_len += run;
		if (m->line_len > SMTP_LINE_MAX + 1)	/* + the CR */
			m->long_line = true;
		if (nl == NULL)
			break;
		m->line_len = 0;
		p = nl + 1;
	}
	if (signer_body(m->signer, chunk, len) != 0) {
		m->sign_state = SIGNER_ERROR;
		session_copy(m->sign_why, sizeof(m->sign_why), "signer body error");
		return skip_body(c);
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	return eom_finish(ctx, c);
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c != NULL)
		session_end_early(c, "aborted");
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_CONTINUE;
	session_end_early(c, "connection-closed");
	session_reset(c);
	snapshot_release(c->snap);
	free(c);
	smfi_setpriv(ctx, NULL);
	__atomic_sub_fetch(&connections_open, 1, __ATOMIC_SEQ_CST);
	return SMFIS_CONTINUE;
}

/* ---- negotiation --------------------------------------------------------- */

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			     unsigned long *pf2, unsigned long *pf3)
{
	const unsigned long actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;
	/* every step we do not need is one round trip Postfix does not make */
	const unsigned long wanted = SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR | SMFIP_NR_HELO |
				     SMFIP_NR_CONN | SMFIP_NR_EOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
	(void)f2;
	(void)f3;
	if ((f0 & actions) != actions) {
		log_error("MTA does not offer the actions bulkmilter needs (add/change headers, quarantine, macro lists)");
		return SMFIS_REJECT;
	}
	*pf0 = actions;
	*pf1 = f1 & wanted;
	if (!(*pf1 & SMFIP_HDR_LEADSPC))
		log_warning("MTA does not offer SMFIP_HDR_LEADSPC: c=simple header signatures may not verify");
	*pf2 = 0;
	*pf3 = 0;
	struct conn *c = conn_of(ctx);
	if (c == NULL && (c = conn_new(ctx)) == NULL) {
		log_error("negotiate: out of memory");
		return SMFIS_TEMPFAIL;
	}
	c->protocol = *pf1;
	smfi_setsymlist(ctx, SMFIM_CONNECT, "j {daemon_name}");
	smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_authen} {auth_type}");
	smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
	smfi_setsymlist(ctx, SMFIM_EOH, "i");
	smfi_setsymlist(ctx, SMFIM_EOM, "i");
	return SMFIS_CONTINUE;
}

struct smfiDesc callbacks_desc = {
	.xxfi_name = "bulkmilter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
	.xxfi_connect = cb_connect,
	.xxfi_helo = cb_helo,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_unknown = NULL,
	.xxfi_data = NULL,
	.xxfi_negotiate = cb_negotiate,
};
