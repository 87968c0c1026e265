/*
 * callbacks - the milter conversation.
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
 *             edits; signatures; hold; the one log line of the message
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
#include "align.h"
#include "bulk.h"
#include "callbacks.h"
#include "log.h"
#include "metrics.h"
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
	struct snapshot *snap;
	struct netaddr client;
	char client_text[NETADDR_TEXT_MAX];
	char helo[CONN_NAME_MAX];
	char sasl[CONN_NAME_MAX];	/* kept across messages: Postfix sends it at MAIL */
	bool internal;
	bool local_submission;
	struct msg msg;
};

static int connections_open;

int callbacks_connections(void)
{
	return __atomic_load_n(&connections_open, __ATOMIC_SEQ_CST);
}

static struct conn *conn_of(SMFICTX *ctx)
{
	return (struct conn *)smfi_getpriv(ctx);
}

/* Copies src into dst, cutting it to fit (for log and header texts). */
static void copy_str(char *dst, size_t len, const char *src)
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

static sfsistat set_reply(SMFICTX *ctx, const char *code, const char *xcode, const char *text)
{
	char safe[REPLY_TEXT_MAX];
	reply_text(safe, sizeof(safe), text);
	if (smfi_setreply(ctx, (char *)code, (char *)xcode, safe) != MI_SUCCESS)
		log_warning("cannot set reply %s %s", code, xcode);
	return code[0] == '5' ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

static const char *msg_qid(const struct msg *m)
{
	return m->queue_id[0] ? m->queue_id : "NOQUEUE";
}

static void msg_reset(struct conn *c)
{
	struct msg *m = &c->msg;
	if (m->receipt.events && c->snap)
		ratelimit_refund(c->snap->store, &m->receipt);
	ratelimit_receipt_clear(&m->receipt);
	free(m->receipt.charges);
	signer_free(m->signer);
	memset(m, 0, sizeof(*m));
}

/* Refunds the transaction and logs how it ended before end of message. */
static void msg_end_early(struct conn *c, const char *decision)
{
	struct msg *m = &c->msg;
	if (!m->active)
		return;
	if (strncmp(decision, "reject", 6) == 0)
		metrics_inc(METRIC_REJECTED);
	else if (strncmp(decision, "tempfail", 8) == 0)
		metrics_inc(METRIC_TEMPFAILED);
	log_info("%s: direction=%s class=%s account=%s client=%s decision=%s rcpts=%lu refunded=%s",
		 msg_qid(m), m->direction == DIRECTION_OUTBOUND ? "outbound" : "inbound",
		 m->cls ? m->cls->name : "-", m->has_account ? m->account : "-", c->client_text,
		 decision, m->rcpts, m->receipt.events ? "yes" : "no");
	msg_reset(c);
}

static const char *queue_id_now(SMFICTX *ctx, struct msg *m)
{
	const char *qid = smfi_getsymval(ctx, "i");
	if (qid && *qid && !m->queue_id[0])
		copy_str(m->queue_id, sizeof(m->queue_id), qid);
	return msg_qid(m);
}

/* ---- connect, helo ---------------------------------------------------- */

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_error("connect: out of memory");
		return SMFIS_TEMPFAIL;
	}
	c->snap = snapshot_acquire();
	if (c->snap == NULL) {
		free(c);
		return SMFIS_TEMPFAIL;
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
		copy_str(c->client_text, sizeof(c->client_text), "unknown");
	}
	if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
		snapshot_release(c->snap);
		free(c);
		return SMFIS_TEMPFAIL;
	}
	__atomic_add_fetch(&connections_open, 1, __ATOMIC_SEQ_CST);
	log_debug("connect from %s [%s]%s%s", hostname ? hostname : "unknown", c->client_text,
		  c->internal ? " internal" : "", c->local_submission ? " local-submission" : "");
	return SMFIS_CONTINUE;
}

static sfsistat cb_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	copy_str(c->helo, sizeof(c->helo), helo);
	return SMFIS_NOREPLY;
}

/* ---- rate limits -------------------------------------------------------- */

static void default_over_text(const struct msg *m, bool temporary, char *buf, size_t len)
{
	if (m->cls->over_limit_text[0])
		copy_str(buf, len, m->cls->over_limit_text);
	else
		snprintf(buf, len, "Sending rate limit exceeded for %s%s", m->account,
			 temporary ? ", try again later" : "");
}

/*
 * Applies the class's over-limit action. Returns SMFIS_CONTINUE when the
 * message (or recipient) goes on, or the reply to give.
 */
static sfsistat over_limit(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v,
			   bool per_recipient)
{
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;
	enum policy_action action = m->cls->over_limit;
	char text[TEXT_BUF];
	const char *rate = v->rate ? v->rate->text : "?";

	metrics_inc(METRIC_OVER_LIMIT);
	if (s->mode == MODE_MONITOR) {
		log_info("%s: monitor: account=%s over %s %s: would %s", queue_id_now(ctx, m),
			 m->account, v->kind, rate, policy_action_name(action));
		action = ACTION_TAG;
	} else if (c->local_submission && (action == ACTION_TEMPFAIL || action == ACTION_REJECT)) {
		/* sendmail(1) has nobody to retry: hold it for ops instead */
		action = ACTION_HOLD;
	}
	switch (action) {
	case ACTION_TEMPFAIL:
		default_over_text(m, true, text, sizeof(text));
		log_info("%s: account=%s over %s %s: 451 4.7.1%s", queue_id_now(ctx, m), m->account,
			 v->kind, rate, per_recipient ? " (recipient)" : "");
		return set_reply(ctx, "451", "4.7.1", text);
	case ACTION_REJECT:
		default_over_text(m, false, text, sizeof(text));
		log_info("%s: account=%s over %s %s: 550 5.7.1%s", queue_id_now(ctx, m), m->account,
			 v->kind, rate, per_recipient ? " (recipient)" : "");
		return set_reply(ctx, "550", "5.7.1", text);
	case ACTION_HOLD:
		if (!m->hold_reason[0]) {
			if (m->cls->over_limit_text[0])
				copy_str(m->hold_reason, sizeof(m->hold_reason), m->cls->over_limit_text);
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

static sfsistat store_failed(SMFICTX *ctx, struct conn *c, const struct ratelimit_verdict *v)
{
	struct msg *m = &c->msg;
	metrics_inc(METRIC_STORE_FAILURES);
	log_warning("%s: account=%s rate limit not checked: %s", queue_id_now(ctx, m), m->account,
		    v->reason);
	if (c->snap->settings->on_store_failure == STORE_FAILURE_TEMPFAIL &&
	    c->snap->settings->mode == MODE_ENFORCE)
		return set_reply(ctx, "451", "4.3.0", "Rate limit service unavailable, try again later");
	if (!m->unchecked[0])
		copy_str(m->unchecked, sizeof(m->unchecked), v->brief ? v->brief : "unavailable");
	return SMFIS_CONTINUE;
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
	if (c->snap->settings->mode == MODE_MONITOR && (action == ACTION_REJECT || action == ACTION_TEMPFAIL)) {
		log_info("NOQUEUE: monitor: spf=fail from %s: would %s", c->client_text,
			 policy_action_name(action));
		action = ACTION_TAG;
	}
	switch (action) {
	case ACTION_REJECT:
		return set_reply(ctx, "550", "5.7.23", text);
	case ACTION_TEMPFAIL:
		return set_reply(ctx, "451", "4.7.23", text);
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
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	msg_reset(c);
	struct msg *m = &c->msg;
	m->active = true;

	const char *auth = smfi_getsymval(ctx, "{auth_authen}");
	if (auth && *auth)
		copy_str(c->sasl, sizeof(c->sasl), auth);
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
			return set_reply(ctx, "553", "5.1.7", "Unusable envelope sender address");
		memcpy(m->sender, raw, n);
		m->sender[n] = '\0';
		log_info("NOQUEUE: unusual envelope sender <%s> from %s: kept as given", m->sender,
			 c->client_text);
	}
	if (c->local_submission)
		queue_id_now(ctx, m);	/* cleanup knows it already */
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
			msg_end_early(c, r == SMFIS_REJECT ? "reject-spf" : "tempfail-spf");
			return r;
		}
	}
	if (m->cls == NULL || !m->has_account)
		return SMFIS_CONTINUE;
	if (m->cls->messages_count == 0 && !m->cls->has_volume)
		return SMFIS_CONTINUE;

	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_message(c->snap->store, m->cls, m->account,
							   &m->receipt, &v);
	sfsistat r = SMFIS_CONTINUE;
	if (st == RATELIMIT_OK) {
		memcpy(m->volume, v.volume, sizeof(m->volume));
		m->volume_known = true;
	} else if (st == RATELIMIT_OVER) {
		memcpy(m->volume, v.volume, sizeof(m->volume));
		m->volume_known = true;
		r = over_limit(ctx, c, &v, false);
	} else {
		r = store_failed(ctx, c, &v);
	}
	if (r != SMFIS_CONTINUE)
		msg_end_early(c, r == SMFIS_REJECT ? "reject-rate" : "tempfail-rate");
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
	queue_id_now(ctx, m);	/* Postfix has one from the first accepted RCPT on */
	/* local submission: charged at end of message, all recipients at once */
	if (c->local_submission || m->cls == NULL || !m->has_account || m->cls->recipients_count == 0) {
		m->rcpts++;
		return SMFIS_CONTINUE;
	}
	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_recipients(c->snap->store, m->cls, m->account, 1,
							      &m->receipt, &v);
	sfsistat r = SMFIS_CONTINUE;
	if (st == RATELIMIT_OVER)
		r = over_limit(ctx, c, &v, true);
	else if (st == RATELIMIT_STORE_FAILED)
		r = store_failed(ctx, c, &v);
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

/* True when an Authentication-Results value starts with our authserv-id. */
static bool ar_is_ours(const char *value, const char *authserv_id)
{
	const char *p = skip_space(value);
	while (*p == '(') {		/* a leading comment */
		const char *close = strchr(p, ')');
		if (close == NULL)
			return false;
		p = skip_space(close + 1);
	}
	size_t n = strcspn(p, " \t\r\n;(");
	return n == strlen(authserv_id) && strncasecmp(p, authserv_id, n) == 0;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;

	if (name == NULL || value == NULL)
		return SMFIS_NOREPLY;
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
			m->signer = signer_begin(c->snap->keys, s, queue_id_now(ctx, m));
		if (m->signer == NULL || signer_header(m->signer, name, value) != 0) {
			m->sign_state = SIGNER_ERROR;
			copy_str(m->sign_why, sizeof(m->sign_why), "cannot hold headers for signing");
		}
	}
	return SMFIS_NOREPLY;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	queue_id_now(ctx, m);
	if (m->direction != DIRECTION_OUTBOUND || c->snap->keys == NULL) {
		m->sign_state = SIGNER_SKIP;
		copy_str(m->sign_why, sizeof(m->sign_why),
			 m->direction != DIRECTION_OUTBOUND ? "inbound" : "no KeyTable");
		return SMFIS_CONTINUE;
	}
	if (m->sign_state != SIGNER_SIGN)
		return SMFIS_CONTINUE;
	if (m->signer == NULL)	/* no headers at all */
		m->signer = signer_begin(c->snap->keys, c->snap->settings, msg_qid(m));
	if (m->signer == NULL) {
		m->sign_state = SIGNER_ERROR;
		copy_str(m->sign_why, sizeof(m->sign_why), "cannot start signer");
		return SMFIS_CONTINUE;
	}
	const char *from = m->from_count == 1 && m->from_ok ? m->from_addr : NULL;
	m->sign_state = signer_eoh(m->signer, from, m->sign_why, sizeof(m->sign_why));
	if (m->from_count == 0)
		copy_str(m->sign_why, sizeof(m->sign_why), "no From header");
	else if (m->from_count > 1)
		snprintf(m->sign_why, sizeof(m->sign_why), "%u From headers", m->from_count);
	else if (!m->from_ok)
		copy_str(m->sign_why, sizeof(m->sign_why), "From header has no single valid address");
	return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	if (m->sign_state != SIGNER_SIGN)
		return SMFIS_SKIP;
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
		copy_str(m->sign_why, sizeof(m->sign_why), "signer body error");
		return SMFIS_SKIP;
	}
	return SMFIS_CONTINUE;
}

/* ---- end of message ----------------------------------------------------- */

/* Adds a header, with the leading space SMFIP_HDR_LEADSPC asks for. */
static int add_header(SMFICTX *ctx, const char *name, const char *value, bool on_top)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), " %s", value);
	for (char *p = buf; *p; p++)
		if (*p == '\r' || (*p == '\n' && p[1] != '\t' && p[1] != ' '))
			*p = ' ';
	int rc = on_top ? smfi_insheader(ctx, 0, (char *)name, buf)
			: smfi_addheader(ctx, (char *)name, buf);
	if (rc != MI_SUCCESS)
		log_error("%s: cannot add header %s", msg_qid(&((struct conn *)smfi_getpriv(ctx))->msg), name);
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
		copy_str(o->egress, sizeof(o->egress), s->egress_addresses_count ? "none(no-mailfrom)" : "-");
		return;
	}
	for (size_t i = 0; i < s->egress_addresses_count; i++) {
		char addr[NETADDR_TEXT_MAX], detail[96];
		enum spf_outcome r = spf_check(c->snap->spf, &s->egress_addresses[i], c->helo, m->sender,
					       detail, sizeof(detail));
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
		bool published = false;
		e.dmarc_published = spf_dmarc_record(c->snap->spf, fd, &published) == 0 ? published : -1;
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

	if (c->snap->settings->mode == MODE_MONITOR && action != ACTION_TAG) {
		log_info("%s: monitor: bulk non-compliant (%s): would %s", msg_qid(m), o->failed_text,
			 policy_action_name(action));
		action = ACTION_TAG;
	}
	if (c->local_submission && (action == ACTION_TEMPFAIL || action == ACTION_REJECT))
		action = ACTION_HOLD;
	if (m->cls->bulk_noncompliant_text[0])
		copy_str(text, sizeof(text), m->cls->bulk_noncompliant_text);
	else
		snprintf(text, sizeof(text), "Bulk mail does not meet bulk sender requirements: %s",
			 o->failed_text);
	switch (action) {
	case ACTION_TEMPFAIL:
		return set_reply(ctx, "451", "4.7.1", text);
	case ACTION_REJECT:
		return set_reply(ctx, "550", "5.7.1", text);
	case ACTION_HOLD:
		if (!m->hold_reason[0])
			snprintf(m->hold_reason, sizeof(m->hold_reason), "bulkmilter: bulk non-compliant: %s",
				 o->failed_text);
		return SMFIS_CONTINUE;
	default:
		return add_header(ctx, "X-Bulk-Noncompliant", o->failed_text, false) == 0 ? SMFIS_CONTINUE
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
	return add_header(ctx, "Authentication-Results", value, true);
}

static int local_submission_recipients(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	if (!c->local_submission || m->cls == NULL || !m->has_account || m->cls->recipients_count == 0 ||
	    m->rcpts == 0)
		return 0;
	struct ratelimit_verdict v;
	memset(&v, 0, sizeof(v));
	enum ratelimit_status st = ratelimit_check_recipients(c->snap->store, m->cls, m->account, m->rcpts,
							      &m->receipt, &v);
	if (st == RATELIMIT_OVER)
		return over_limit(ctx, c, &v, false) == SMFIS_CONTINUE ? 0 : -1;
	if (st == RATELIMIT_STORE_FAILED)
		return store_failed(ctx, c, &v) == SMFIS_CONTINUE ? 0 : -1;
	return 0;
}

static sfsistat eom_apply(SMFICTX *ctx, struct conn *c, struct eom_outcome *o)
{
	struct msg *m = &c->msg;
	const struct settings *s = c->snap->settings;

	if (m->too_many_forged_ar)
		return set_reply(ctx, "550", "5.7.1", "Too many Authentication-Results headers");
	if (local_submission_recipients(ctx, c) != 0)
		return SMFIS_TEMPFAIL;
	if (m->sign_state == SIGNER_ERROR && m->direction == DIRECTION_OUTBOUND && c->snap->keys) {
		log_error("%s: signing failed: %s", msg_qid(m), m->sign_why);
		return set_reply(ctx, "451", "4.3.0", "Temporary signing failure, try again later");
	}
	if (m->sign_state == SIGNER_SIGN) {
		char why[160];
		if (signer_eom(m->signer, &o->sigs, why, sizeof(why)) != 0) {
			log_error("%s: signing failed: %s", msg_qid(m), why);
			return set_reply(ctx, "451", "4.3.0", "Temporary signing failure, try again later");
		}
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
	if (m->spf_tag && add_header(ctx, "X-Bulk-SPF", "fail", false) != 0)
		return SMFIS_TEMPFAIL;
	if (o->bulk) {
		if (add_header(ctx, s->tag_header, m->cls->name, false) != 0 ||
		    (!m->has_precedence && add_header(ctx, "Precedence", "bulk", false) != 0))
			return SMFIS_TEMPFAIL;
	}
	if (m->over_tag[0] && add_header(ctx, "X-Bulk-Over-Limit", m->over_tag, false) != 0)
		return SMFIS_TEMPFAIL;
	if (m->unchecked[0] && add_header(ctx, "X-Bulk-Unchecked", m->unchecked, false) != 0)
		return SMFIS_TEMPFAIL;
	/* signatures last and on top, above everything we added */
	for (size_t i = 0; i < o->sigs.count; i++) {
		const char *v = o->sigs.sig[i].header_value;
		if (smfi_insheader(ctx, 0, "DKIM-Signature", (char *)v) != MI_SUCCESS) {
			log_error("%s: cannot insert DKIM-Signature", msg_qid(m));
			return SMFIS_TEMPFAIL;
		}
	}
	if (m->hold_reason[0] && smfi_quarantine(ctx, m->hold_reason) != MI_SUCCESS) {
		log_error("%s: cannot hold message", msg_qid(m));
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
		 msg_qid(m), m->direction == DIRECTION_OUTBOUND ? "outbound" : "inbound",
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

static sfsistat cb_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL || !c->msg.active)
		return SMFIS_TEMPFAIL;
	struct msg *m = &c->msg;
	struct eom_outcome o;
	memset(&o, 0, sizeof(o));
	o.dmarc = -2;
	queue_id_now(ctx, m);
	o.long_line = m->long_line && m->sign_state == SIGNER_SIGN;

	sfsistat r = eom_apply(ctx, c, &o);
	const char *decision = r == SMFIS_CONTINUE ? (m->hold_reason[0] ? "hold" : "accept")
			     : r == SMFIS_REJECT ? "reject" : "tempfail";
	log_message(c, &o, decision);
	count_outcome(c, &o, r);
	if (r == SMFIS_CONTINUE)
		ratelimit_receipt_clear(&m->receipt);	/* accepted: the charge stands */
	msg_reset(c);
	return r;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c != NULL)
		msg_end_early(c, "aborted");
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	if (c == NULL)
		return SMFIS_CONTINUE;
	msg_end_early(c, "connection-closed");
	msg_reset(c);
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
				     SMFIP_NOUNKNOWN | SMFIP_NODATA;
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
