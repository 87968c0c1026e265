/*
 * signer - signs one message with libopendkim: one DKIM handle per
 * signature, all fed the same headers and body.
 *
 * Does: hold the headers until the From address is known (bounded), pick
 * the keys with the keytable, turn the milter's header form back into
 * the bytes on the wire, collect the finished signature headers. Does
 * not: decide direction, parse From headers, talk to libmilter or log
 * decisions (the caller does, with the why strings given here).
 *
 * Decisions:
 * - Headers are held in one buffer, each already rebuilt as "Name:" +
 *   value with LF folds made CRLF, because the keys (and so the number of
 *   handles) are only known at end of headers. The body is never held.
 * - A value is used exactly as received: with SMFIP_HDR_LEADSPC it keeps
 *   its leading space; a value without one ("Name:value" on the wire) is
 *   fed without one. c=simple signatures depend on these exact bytes.
 * - Headers libopendkim refuses as malformed make the message unsigned
 *   (SIGNER_SKIP), not tempfailed: bad input from a client must not stop
 *   its mail; internal failures are SIGNER_ERROR for the caller to decide.
 * - Keys are attached (privkey_attach) just before dkim_eom, so a handle
 *   dropped earlier (skip, abort) never holds one.
 * - Two libopendkim 2.11 quirks are worked around where they bite: it
 *   refuses a body that does not end in CRLF (the MTA sends one, so we
 *   feed it), and its Ed25519 signatures break with c=simple headers when
 *   folded (so those are made unfolded).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkimlib.h"
#include "privkey.h"
#include "signer.h"

enum signer_state {
	SIGNER_STATE_HEADERS,	/* collecting headers */
	SIGNER_STATE_BODY,	/* handles made, taking the body */
	SIGNER_STATE_SKIPPED,	/* not signing this message */
	SIGNER_STATE_DONE,	/* signatures made */
	SIGNER_STATE_FAILED,
};

struct signer {
	const struct keytable *kt;
	dkim_canon_t header_canon;
	dkim_canon_t body_canon;
	bool multiple;
	enum signer_state state;
	bool body_fed;			/* any body bytes yet */
	unsigned char tail[2];		/* the last two of them */
	char *queue_id;			/* libopendkim keeps the pointer */

	char *headers;			/* "Name:value" records back to back */
	size_t headers_len, headers_cap;
	size_t *ends;			/* end offset of each record */
	size_t nheaders, ends_cap;
	char why[ADDRESS_MAX + 128];	/* why not signing (limits, skip) */

	struct dkimlib_arena *arena;	/* libopendkim's memory for this message */
	size_t count;
	DKIM *dkim[SIGNER_SIGNATURES_MAX];
	struct privkey_loan loan[SIGNER_SIGNATURES_MAX];
	struct keytable_signing plan[SIGNER_SIGNATURES_MAX];
	char *value[SIGNER_SIGNATURES_MAX];
};

struct signer *signer_begin(const struct keytable *kt, const struct settings *s,
	const char *queue_id)
{
	if (kt == NULL)
		return NULL;
	struct signer *sg = calloc(1, sizeof(*sg));
	if (sg == NULL)
		return NULL;
	sg->queue_id = strdup(queue_id ? queue_id : "");
	sg->arena = dkimlib_arena_new();
	if (sg->queue_id == NULL || sg->arena == NULL) {
		free(sg->queue_id);
		dkimlib_arena_free(sg->arena);
		free(sg);
		return NULL;
	}
	sg->kt = kt;
	sg->header_canon = s->canon_header_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	sg->body_canon = s->canon_body_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	sg->multiple = s->multiple_signatures;
	sg->state = SIGNER_STATE_HEADERS;
	return sg;
}

static void signer_drop_headers(struct signer *sg)
{
	free(sg->headers);
	free(sg->ends);
	sg->headers = NULL;
	sg->ends = NULL;
	sg->headers_len = sg->headers_cap = sg->nheaders = sg->ends_cap = 0;
}

/* Past a limit: the held headers go (memory stays bounded), the why stays. */
static int signer_over_limit(struct signer *sg, const char *fmt, int limit)
{
	snprintf(sg->why, sizeof(sg->why), fmt, limit);
	signer_drop_headers(sg);
	return SIGNER_SKIP;
}

int signer_header(struct signer *sg, const char *name, const char *value)
{
	size_t nlen = strlen(name), vlen = strlen(value), bare_lf = 0;

	if (sg->state != SIGNER_STATE_HEADERS)
		return SIGNER_ERROR;
	if (sg->why[0] != '\0')
		return SIGNER_SKIP;
	for (size_t i = 0; i < vlen; i++)
		if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r'))
			bare_lf++;
	if (sg->nheaders >= SIGNER_HEADERS_MAX)
		return signer_over_limit(sg, "more than %d header fields", SIGNER_HEADERS_MAX);
	size_t need = nlen + 1 + vlen + bare_lf;
	if (need > SIGNER_HEADER_BYTES_MAX - sg->headers_len)
		return signer_over_limit(sg, "headers larger than %d KB", SIGNER_HEADER_BYTES_MAX / 1024);

	if (sg->headers_len + need > sg->headers_cap) {
		size_t cap = sg->headers_cap ? sg->headers_cap : 4096;
		while (cap < sg->headers_len + need)
			cap *= 2;
		char *nb = realloc(sg->headers, cap);
		if (nb == NULL)
			return SIGNER_ERROR;
		sg->headers = nb;
		sg->headers_cap = cap;
	}
	if (sg->nheaders == sg->ends_cap) {
		size_t cap = sg->ends_cap ? sg->ends_cap * 2 : 64;
		size_t *ne = realloc(sg->ends, cap * sizeof(*ne));
		if (ne == NULL)
			return SIGNER_ERROR;
		sg->ends = ne;
		sg->ends_cap = cap;
	}
	char *p = sg->headers + sg->headers_len;
	memcpy(p, name, nlen);
	p += nlen;
	*p++ = ':';
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r'))
			*p++ = '\r';
		*p++ = value[i];
	}
	sg->headers_len += need;
	sg->ends[sg->nheaders++] = sg->headers_len;
	return 0;
}

static void signer_free_handles(struct signer *sg)
{
	for (size_t i = 0; i < sg->count; i++) {
		dkim_free(sg->dkim[i]);
		privkey_settle(&sg->loan[i]);
		sg->dkim[i] = NULL;
	}
	sg->count = 0;
}

static int signer_skip(struct signer *sg, char *why, size_t len)
{
	snprintf(why, len, "%s", sg->why);
	signer_free_handles(sg);
	signer_drop_headers(sg);
	sg->state = SIGNER_STATE_SKIPPED;
	return SIGNER_SKIP;
}

static int signer_fail(struct signer *sg)
{
	signer_free_handles(sg);
	signer_drop_headers(sg);
	sg->state = SIGNER_STATE_FAILED;
	return SIGNER_ERROR;
}

/* A libopendkim status after headers: malformed input skips, the rest fails. */
static int signer_refused(struct signer *sg, DKIM *d, DKIM_STAT st, const char *call,
	char *why, size_t len)
{
	const char *err = dkim_geterror(d);

	if (st == DKIM_STAT_SYNTAX) {
		snprintf(sg->why, sizeof(sg->why), "headers refused by libopendkim: %s",
			err ? err : dkim_getresultstr(st));
		return signer_skip(sg, why, len);
	}
	snprintf(why, len, "%s: %s", call, err ? err : dkim_getresultstr(st));
	return signer_fail(sg);
}

/* One handle per planned signature (keys are attached at the end). */
static int signer_make_handles(struct signer *sg, size_t n, char *why, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct keytable_signing *p = &sg->plan[i];
		DKIM_STAT st;
		DKIM *d = dkim_sign(keytable_library(sg->kt), (const unsigned char *)sg->queue_id,
			sg->arena, (dkim_sigkey_t)p->key->text, (const unsigned char *)p->selector,
			(const unsigned char *)p->domain, sg->header_canon, sg->body_canon,
			p->key->algorithm, -1, &st);
		if (d == NULL) {
			snprintf(why, len, "dkim_sign for d=%s s=%s: %s", p->domain, p->selector,
				dkim_getresultstr(st));
			return signer_fail(sg);
		}
		sg->dkim[sg->count++] = d;
		/* libopendkim 2.11 decides whether to fold before "b=" from the
		 * RSA signature length only: for Ed25519 the header it hashes
		 * and the one it returns fold differently, which c=simple
		 * headers do not survive. Unfolded, they are the same (the
		 * header stays well under 998 bytes with an 88-byte b=). */
		if (p->key->algorithm == DKIM_SIGN_ED25519SHA256 &&
		    sg->header_canon == DKIM_CANON_SIMPLE)
			dkim_set_margin(d, 0);
		if (p->identity[0] != '\0' &&
		    (st = dkim_set_signer(d, (const unsigned char *)p->identity)) != DKIM_STAT_OK) {
			snprintf(why, len, "dkim_set_signer %s: %s", p->identity,
				dkim_getresultstr(st));
			return signer_fail(sg);
		}
	}
	return SIGNER_SIGN;
}

int signer_eoh(struct signer *sg, const char *from_address, char *why, size_t len)
{
	if (sg->state != SIGNER_STATE_HEADERS) {
		snprintf(why, len, "end of headers out of order");
		return signer_fail(sg);
	}
	if (sg->why[0] != '\0')
		return signer_skip(sg, why, len);
	if (from_address == NULL) {
		snprintf(sg->why, sizeof(sg->why), "no usable From");
		return signer_skip(sg, why, len);
	}
	int n = keytable_lookup(sg->kt, from_address, sg->multiple, sg->plan,
		SIGNER_SIGNATURES_MAX, why, len);
	if (n < 0)
		return signer_fail(sg);
	if (n == 0) {
		snprintf(sg->why, sizeof(sg->why), "no signing table entry for %s", from_address);
		return signer_skip(sg, why, len);
	}
	if (signer_make_handles(sg, (size_t)n, why, len) != SIGNER_SIGN)
		return SIGNER_ERROR;

	size_t start = 0;
	for (size_t h = 0; h < sg->nheaders; h++) {
		for (size_t i = 0; i < sg->count; i++) {
			DKIM_STAT st = dkim_header(sg->dkim[i], (unsigned char *)sg->headers + start,
				sg->ends[h] - start);
			if (st != DKIM_STAT_OK)
				return signer_refused(sg, sg->dkim[i], st, "dkim_header", why, len);
		}
		start = sg->ends[h];
	}
	signer_drop_headers(sg);
	for (size_t i = 0; i < sg->count; i++) {
		DKIM_STAT st = dkim_eoh(sg->dkim[i]);
		if (st != DKIM_STAT_OK)
			return signer_refused(sg, sg->dkim[i], st, "dkim_eoh", why, len);
	}
	sg->state = SIGNER_STATE_BODY;
	return SIGNER_SIGN;
}

int signer_body(struct signer *sg, const unsigned char *data, size_t len)
{
	if (sg->state == SIGNER_STATE_SKIPPED)
		return SIGNER_SKIP;
	if (sg->state != SIGNER_STATE_BODY)
		return SIGNER_ERROR;
	if (len > 0)
		sg->body_fed = true;
	if (len >= 2) {
		sg->tail[0] = data[len - 2];
		sg->tail[1] = data[len - 1];
	} else if (len == 1) {
		sg->tail[0] = sg->tail[1];
		sg->tail[1] = data[0];
	}
	for (size_t i = 0; i < sg->count; i++) {
		if (dkim_body(sg->dkim[i], (unsigned char *)data, len) != DKIM_STAT_OK) {
			snprintf(sg->why, sizeof(sg->why), "dkim_body: %s",
				dkim_geterror(sg->dkim[i]) ? dkim_geterror(sg->dkim[i]) : "failed");
			signer_free_handles(sg);
			sg->state = SIGNER_STATE_FAILED;
			return SIGNER_ERROR;
		}
	}
	return 0;
}

/* libopendkim folds with CRLF-TAB; the milter protocol wants LF only. */
static char *signer_header_value(const unsigned char *sig, size_t n)
{
	char *v = malloc(n + 2);
	size_t o = 0;

	if (v == NULL)
		return NULL;
	if (n == 0 || sig[0] != ' ')
		v[o++] = ' ';
	for (size_t i = 0; i < n; i++)
		if (sig[i] != '\r')
			v[o++] = (char)sig[i];
	v[o] = '\0';
	return v;
}

int signer_eom(struct signer *sg, struct signer_result *res, char *why, size_t len)
{
	res->count = 0;
	if (sg->state == SIGNER_STATE_SKIPPED) {
		snprintf(why, len, "%s", sg->why);
		return SIGNER_SKIP;
	}
	if (sg->state != SIGNER_STATE_BODY) {
		snprintf(why, len, "%s", sg->why[0] ? sg->why : "end of message out of order");
		return SIGNER_ERROR;
	}
	/* SMTP ends the data with CRLF "." CRLF: a body that does not end in
	 * CRLF arrives with one, and libopendkim refuses to sign without it */
	if (sg->body_fed && (sg->tail[0] != '\r' || sg->tail[1] != '\n') &&
	    signer_body(sg, (const unsigned char *)"\r\n", 2) != 0) {
		snprintf(why, len, "%s", sg->why);
		return SIGNER_ERROR;
	}
	for (size_t i = 0; i < sg->count; i++) {
		unsigned char *sig = NULL;
		size_t n = 0;
		/* the parsed key goes in now: only a handle that reaches
		 * dkim_eom holds one (see privkey_settle) */
		DKIM_STAT st = privkey_attach(sg->plan[i].key, sg->dkim[i], &sg->loan[i]);
		if (st == DKIM_STAT_OK)
			st = dkim_eom(sg->dkim[i], NULL);
		if (st == DKIM_STAT_OK)
			st = dkim_getsighdr_d(sg->dkim[i], strlen(DKIM_SIGNHEADER) + 2, &sig, &n);
		if (st != DKIM_STAT_OK) {
			const char *err = dkim_geterror(sg->dkim[i]);
			snprintf(why, len, "signing for d=%s s=%s: %s", sg->plan[i].domain,
				sg->plan[i].selector, err ? err : dkim_getresultstr(st));
			return signer_fail(sg);
		}
		if ((sg->value[i] = signer_header_value(sig, n)) == NULL) {
			snprintf(why, len, "out of memory");
			return signer_fail(sg);
		}
		struct signer_signature *out = &res->sig[i];
		out->header_value = sg->value[i];
		snprintf(out->domain, sizeof(out->domain), "%s", sg->plan[i].domain);
		snprintf(out->selector, sizeof(out->selector), "%s", sg->plan[i].selector);
		out->algorithm = sg->plan[i].key->algorithm_name;
	}
	res->count = sg->count;
	sg->state = SIGNER_STATE_DONE;
	return SIGNER_SIGN;
}

void signer_free(struct signer *sg)
{
	if (sg == NULL)
		return;
	signer_free_handles(sg);
	signer_drop_headers(sg);
	for (size_t i = 0; i < SIGNER_SIGNATURES_MAX; i++)
		free(sg->value[i]);
	dkimlib_arena_free(sg->arena);
	free(sg->queue_id);
	free(sg);
}
