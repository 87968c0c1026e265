/*
 * callbacks - the milter conversation: the only file that speaks
 * libmilter. Each event becomes one call on the transaction
 * (transaction.h), with the macros it needs as plain values; each
 * verdict becomes an SMFIS_* answer and smfi_setreply, and at end of
 * message the edits, signatures and hold become smfi_* calls. Nothing
 * here decides anything about mail.
 *
 * Reply texts go through transaction_reply_text (libmilter reads them
 * as a format). A step negotiated as "no reply" (SMFIP_NR_*) answers
 * SMFIS_NOREPLY even to a failure: the message is not active any more,
 * and end of message tempfails it.
 */
#include "config.h"

#include <stdlib.h>

#include "callbacks.h"
#include "log.h"
#include "transaction.h"

/* A reply text is cut here: SMTP reply lines are at most 512 octets. */
#define REPLY_TEXT_MAX 400
/* What we ask the MTA to let us do. */
#define ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST)

struct conn {
	struct transaction t;
	unsigned long protocol;		/* SMFIP_* the MTA granted (NR_* replies) */
};

static int connections_open;

int callbacks_connections(void)
{
	return __atomic_load_n(&connections_open, __ATOMIC_SEQ_CST);
}

/* The connection's state: made at negotiation, or at connect if the MTA skipped it. */
static struct conn *conn_get(SMFICTX *ctx, const char *stage)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c != NULL)
		return c;
	if ((c = calloc(1, sizeof(*c))) == NULL || smfi_setpriv(ctx, c) != MI_SUCCESS) {
		free(c);
		log_error("%s: out of memory", stage);
		return NULL;
	}
	__atomic_add_fetch(&connections_open, 1, __ATOMIC_SEQ_CST);
	return c;
}

/* The queue ID while the transaction has none yet (it asks only then). */
static const char *queue_id(SMFICTX *ctx, const struct conn *c)
{
	return transaction_wants_queue_id(&c->t) ? smfi_getsymval(ctx, "i") : NULL;
}

/*
 * The answer for a verdict, at a step the MTA may have granted "no
 * reply" (nr, an SMFIP_NR_* flag; 0: none). The rest of the body is
 * skipped where the MTA understands SKIP; one that does not would take
 * it for a protocol error, so it gets "continue" and sends the rest.
 */
static sfsistat answer(SMFICTX *ctx, const struct conn *c, enum verdict v, unsigned long nr)
{
	const struct verdict_reply *r = &c->t.reply;
	char safe[REPLY_TEXT_MAX];

	if (c->protocol & nr)
		return SMFIS_NOREPLY;
	if (v == VERDICT_CONTINUE || v == VERDICT_HOLD)
		return SMFIS_CONTINUE;
	if (v == VERDICT_SKIP_BODY)
		return c->protocol & SMFIP_SKIP ? SMFIS_SKIP : SMFIS_CONTINUE;
	if (r->code) {
		transaction_reply_text(&c->t, safe, sizeof(safe));
		if (smfi_setreply(ctx, (char *)r->code, (char *)r->xcode, safe) != MI_SUCCESS)
			log_warning("cannot set reply %s %s", r->code, r->xcode);
	}
	return v == VERDICT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

/* Makes the end-of-message edits, signatures and hold; -1 when one failed. */
static int apply(SMFICTX *ctx, const struct conn *c, const struct transaction_result *res)
{
	const char *qid = transaction_qid(&c->t);

	for (size_t i = 0; i < res->edits; i++) {
		const struct transaction_edit *e = &res->edit[i];
		int rc = MI_SUCCESS;
		for (unsigned k = 0; e->op == EDIT_REMOVE && k < e->count && rc == MI_SUCCESS; k++)
			rc = smfi_chgheader(ctx, (char *)e->name, (int)(e->index - k), NULL);
		if (e->op != EDIT_REMOVE)
			rc = e->op == EDIT_INSERT_TOP ? smfi_insheader(ctx, 0, (char *)e->name, (char *)e->value)
						      : smfi_addheader(ctx, (char *)e->name, (char *)e->value);
		if (rc != MI_SUCCESS) {
			log_error("%s: cannot %s header %s", qid, e->op == EDIT_REMOVE ? "remove" : "add", e->name);
			return -1;
		}
	}
	for (size_t i = 0; i < res->sigs; i++)
		if (smfi_insheader(ctx, 0, "DKIM-Signature", res->sig[i].header_value) != MI_SUCCESS) {
			log_error("%s: cannot insert DKIM-Signature", qid);
			return -1;
		}
	if (res->hold_reason && smfi_quarantine(ctx, (char *)res->hold_reason) != MI_SUCCESS) {
		log_error("%s: cannot hold message", qid);
		return -1;
	}
	return 0;
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	struct conn *c = conn_get(ctx, "connect");
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	transaction_open(&c->t, hostname, hostaddr);
	return answer(ctx, c, VERDICT_CONTINUE, SMFIP_NR_CONN);
}

static sfsistat cb_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	transaction_helo(&c->t, helo);
	return answer(ctx, c, VERDICT_CONTINUE, SMFIP_NR_HELO);
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	return c ? answer(ctx, c, transaction_mail(&c->t, argv[0], smfi_getsymval(ctx, "{auth_authen}"),
						   smfi_getsymval(ctx, "i")), 0)
		 : SMFIS_TEMPFAIL;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	return c ? answer(ctx, c, transaction_rcpt(&c->t, argv ? argv[0] : NULL, queue_id(ctx, c)), 0)
		 : SMFIS_TEMPFAIL;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = smfi_getpriv(ctx);
	return c ? answer(ctx, c, transaction_header(&c->t, name, value, queue_id(ctx, c)), SMFIP_NR_HDR)
		 : SMFIS_TEMPFAIL;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	return c ? answer(ctx, c, transaction_eoh(&c->t, queue_id(ctx, c)), SMFIP_NR_EOH) : SMFIS_TEMPFAIL;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct conn *c = smfi_getpriv(ctx);
	return c ? answer(ctx, c, transaction_body(&c->t, chunk, len), 0) : SMFIS_TEMPFAIL;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	const struct transaction_result *res;
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	enum verdict v = transaction_eom(&c->t, queue_id(ctx, c), &res);
	if (res && apply(ctx, c, res) != 0) {
		v = VERDICT_TEMPFAIL;
		c->t.reply.code = NULL;
	}
	transaction_end(&c->t, v);
	return answer(ctx, c, v, 0);
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c != NULL)
		transaction_abort(&c->t);
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c == NULL)
		return SMFIS_CONTINUE;
	transaction_release(&c->t);
	free(c);
	smfi_setpriv(ctx, NULL);
	__atomic_sub_fetch(&connections_open, 1, __ATOMIC_SEQ_CST);
	return SMFIS_CONTINUE;
}

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			     unsigned long *pf2, unsigned long *pf3)
{
	/* every step we do not need is one round trip Postfix does not make */
	const unsigned long wanted = SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR | SMFIP_NR_HELO |
				     SMFIP_NR_CONN | SMFIP_NR_EOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
	(void)f2;
	(void)f3;
	if ((f0 & ACTIONS) != ACTIONS) {
		log_error("MTA does not offer the actions bulkmilter needs (add/change headers, quarantine, macro lists)");
		return SMFIS_REJECT;
	}
	*pf0 = ACTIONS;
	*pf1 = f1 & wanted;
	if (!(*pf1 & SMFIP_HDR_LEADSPC))
		log_warning("MTA does not offer SMFIP_HDR_LEADSPC: c=simple header signatures may not verify");
	*pf2 = 0;
	*pf3 = 0;
	struct conn *c = conn_get(ctx, "negotiate");
	if (c == NULL)
		return SMFIS_TEMPFAIL;
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
	.xxfi_flags = ACTIONS,
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
	.xxfi_negotiate = cb_negotiate,
};
