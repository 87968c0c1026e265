/*
 * report - reads DSNs (RFC 3464) and ARF reports (RFC 5965) out of a
 * message body: the MIME walk, the field groups, the quoted original.
 *
 * What it does not do: decide what a report means for an account (the
 * transaction core does, with the Feedback-ID), or verify anything. A
 * report from outside is a claim; it is read as written.
 *
 * Decisions:
 * - Every length is explicit: the body may hold NUL octets, bare LF,
 *   unterminated lines, a boundary that never closes. No str* function
 *   ever runs over input, only over our own bounded copies.
 * - Real reports are rarely as tidy as the RFCs' examples, so the parts
 *   are found by their content type wherever they sit (nesting bounded),
 *   not by their position, and report-type is not required.
 * - The quoted original is not walked into: a report quoting a report
 *   is one report.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "feedback.h"
#include "report.h"

/* A header or DSN field we read: longer values are cut (ours are short). */
#define REPORT_FIELD_MAX 1024
/* A field name we compare (longer names are not ours). */
#define REPORT_NAME_MAX 64
/* RFC 2046 allows 70; some MTAs exceed it. */
#define REPORT_BOUNDARY_MAX 200

struct span {
	const char *p;
	size_t n;
};

struct walk {
	struct report *r;
	size_t parts;			/* parts looked at */
	bool dsn_done, arf_done, orig_done;
	bool feedback_ours;		/* r->feedback_id is one of ours */
	char orig_to[ADDRESS_MAX];	/* the first quoted original's one To */
	char arf_rcpt[ADDRESS_MAX];	/* Original-Rcpt-To */
	char *decoded[REPORT_PARTS_MAX];	/* base64 buffers, freed at the end */
	size_t ndecoded;
};

/* ---- lines and fields ------------------------------------------------- */

/* Length of the line at s (without CR LF); *next is the offset after it. */
static size_t line_len(struct span s, size_t *next)
{
	const char *nl = memchr(s.p, '\n', s.n);
	size_t n = nl ? (size_t)(nl - s.p) : s.n;
	*next = nl ? n + 1 : s.n;
	if (n > 0 && s.p[n - 1] == '\r')
		n--;
	return n;
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_wsp(p[i]) && p[i] != '\r')
			return false;
	return true;
}

static void advance(struct span *s, size_t k)
{
	s->p += k;
	s->n -= k;
}

/* Appends n octets to a NUL-terminated buffer, cutting at its size; NULs become spaces. */
static void append(char *buf, size_t size, size_t *used, const char *p, size_t n)
{
	for (size_t i = 0; i < n && *used + 1 < size; i++)
		buf[(*used)++] = p[i] ? p[i] : ' ';
	buf[*used] = '\0';
}

/*
 * The next field of a header block or field group: its name and its
 * unfolded value, surrounding white space removed. Lines that are not
 * fields (no colon, a stray continuation) are skipped. false at the end.
 */
static bool field_next(struct span *s, char *name, size_t nsize, char *val, size_t vsize)
{
	while (s->n > 0) {
		size_t next, n = line_len(*s, &next);
		const char *line = s->p;
		advance(s, next);
		if (n == 0 || is_wsp(line[0]))
			continue;
		const char *colon = memchr(line, ':', n);
		if (colon == NULL)
			continue;
		size_t k = (size_t)(colon - line);
		while (k > 0 && is_wsp(line[k - 1]))
			k--;
		if (k == 0 || k >= nsize)
			continue;
		memcpy(name, line, k);
		name[k] = '\0';
		size_t used = 0;
		val[0] = '\0';
		append(val, vsize, &used, colon + 1, n - (size_t)(colon + 1 - line));
		while (s->n > 0 && is_wsp(s->p[0])) {
			size_t m = line_len(*s, &next);
			if (blank(s->p, m))
				break;
			append(val, vsize, &used, s->p, m);
			advance(s, next);
		}
		char *a = val, *e = val + used;
		while (a < e && isspace((unsigned char)*a))
			a++;
		while (e > a && isspace((unsigned char)e[-1]))
			e--;
		memmove(val, a, (size_t)(e - a));
		val[e - a] = '\0';
		return true;
	}
	return false;
}

/* The first field called name in a header block or field group. */
static bool field_get(struct span s, const char *name, char *val, size_t vsize)
{
	char n[REPORT_NAME_MAX];
	while (field_next(&s, n, sizeof(n), val, vsize))
		if (strcasecmp(n, name) == 0)
			return true;
	val[0] = '\0';
	return false;
}

/* Splits a message or part into its header block and its body (after the empty line). */
static void split_header(struct span in, struct span *head, struct span *body)
{
	struct span s = in;
	while (s.n > 0) {
		size_t next, n = line_len(s, &next);
		if (n == 0) {
			head->p = in.p;
			head->n = (size_t)(s.p - in.p);
			body->p = s.p + next;
			body->n = s.n - next;
			return;
		}
		advance(&s, next);
	}
	*head = in;
	body->p = in.p + in.n;
	body->n = 0;
}

/* ---- Content-Type -------------------------------------------------------- */

/*
 * Reads "type/subtype; name=value; ..." into type (lower case) and the
 * boundary parameter ("" when absent). Quoted values
 * may hold quoted-pairs; comments are not expected and read as junk.
 */
static void content_type(const char *v, char *type, size_t tsize, char *boundary, size_t bsize)
{
	size_t n = 0;
	type[0] = boundary[0] = '\0';
	if (v == NULL)
		return;
	while (isspace((unsigned char)*v))
		v++;
	while (*v && *v != ';' && !isspace((unsigned char)*v) && *v != '(') {
		if (n + 1 < tsize)
			type[n++] = (char)tolower((unsigned char)*v);
		v++;
	}
	type[n] = '\0';
	while ((v = strchr(v, ';')) != NULL) {
		v++;
		while (isspace((unsigned char)*v))
			v++;
		const char *name = v;
		while (*v && *v != '=' && *v != ';' && !isspace((unsigned char)*v))
			v++;
		size_t nlen = (size_t)(v - name);
		while (isspace((unsigned char)*v))
			v++;
		if (*v != '=')
			continue;
		v++;
		while (isspace((unsigned char)*v))
			v++;
		char val[REPORT_BOUNDARY_MAX + 1];
		size_t k = 0;
		if (*v == '"') {
			for (v++; *v && *v != '"'; v++) {
				if (*v == '\\' && v[1])
					v++;
				if (k < REPORT_BOUNDARY_MAX)
					val[k++] = *v;
			}
		} else {
			for (; *v && *v != ';' && !isspace((unsigned char)*v); v++)
				if (k < REPORT_BOUNDARY_MAX)
					val[k++] = *v;
		}
		val[k] = '\0';
		if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0 && boundary[0] == '\0' &&
		    k < bsize)
			memcpy(boundary, val, k + 1);
	}
}

static bool type_is(const char *type, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(type, *list) == 0)
			return true;
	return false;
}

static const char *const status_types[] = {
	"message/delivery-status", "message/global-delivery-status", NULL,
};
static const char *const original_types[] = {
	"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers",
	"message/global-headers", NULL,
};

bool report_maybe(const char *ct)
{
	if (ct == NULL)
		return false;
	while (isspace((unsigned char)*ct))
		ct++;
	return strncasecmp(ct, "multipart/report", 16) == 0 &&
	       (ct[16] == '\0' || ct[16] == ';' || isspace((unsigned char)ct[16]));
}

/* ---- base64 ------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes a base64 part (junk octets skipped, '=' ends it); false: no memory or no room. */
static bool b64_decode(struct walk *w, struct span in, struct span *out)
{
	if (w->ndecoded >= REPORT_PARTS_MAX)
		return false;
	char *buf = malloc(in.n / 4 * 3 + 3);
	if (buf == NULL)
		return false;
	size_t n = 0;
	unsigned acc = 0, bits = 0;
	for (size_t i = 0; i < in.n && in.p[i] != '='; i++) {
		int v = b64_value((unsigned char)in.p[i]);
		if (v < 0)
			continue;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (char)(acc >> bits & 0xff);
		}
	}
	w->decoded[w->ndecoded++] = buf;
	out->p = buf;
	out->n = n;
	return true;
}

/* ---- the report parts ----------------------------------------------------- */

/* The address of "TYPE; ADDRESS" (or a bare address); false when none. */
static bool recipient_address(const char *v, char *out, size_t size)
{
	const char *semi = strchr(v, ';');
	const char *a = semi ? semi + 1 : v;
	while (isspace((unsigned char)*a))
		a++;
	if (address_from_envelope(a, out, size) != 0 || strchr(out, '@') == NULL) {
		out[0] = '\0';
		return false;
	}
	return true;
}

/* The first word of v, lower-cased, cut to size. */
static void first_word(const char *v, char *out, size_t size)
{
	size_t n = 0;
	while (*v && !isspace((unsigned char)*v) && *v != '(' && *v != ';' && n + 1 < size)
		out[n++] = (char)tolower((unsigned char)*v++);
	out[n] = '\0';
}

/* A status code "C.S.D" (RFC 3463): class 2, 4 or 5, then digits. */
static bool status_ok(const char *s)
{
	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return false;
	s++;
	for (int part = 0; part < 2; part++) {
		if (*s++ != '.' || !isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

/* One field group of a delivery-status part. */
static void dsn_group(struct walk *w, struct span g)
{
	char final[REPORT_FIELD_MAX], orig[REPORT_FIELD_MAX], v[REPORT_FIELD_MAX];
	struct report_rcpt rc;
	memset(&rc, 0, sizeof(rc));
	bool has_final = field_get(g, "Final-Recipient", final, sizeof(final));
	bool has_orig = field_get(g, "Original-Recipient", orig, sizeof(orig));
	if (!has_final && !has_orig)
		return;			/* the per-message group */
	w->r->rcpts++;
	if (!(has_final && recipient_address(final, rc.address, sizeof(rc.address))) &&
	    !(has_orig && recipient_address(orig, rc.address, sizeof(rc.address))))
		return;
	if (field_get(g, "Action", v, sizeof(v)))
		first_word(v, rc.action, sizeof(rc.action));
	if (field_get(g, "Status", v, sizeof(v))) {
		first_word(v, rc.status, sizeof(rc.status));
		if (!status_ok(rc.status))
			rc.status[0] = '\0';
	}
	rc.hard = strcmp(rc.action, "failed") == 0 && rc.status[0] == '5';
	if (w->r->nrcpt < REPORT_RCPTS_MAX)
		w->r->rcpt[w->r->nrcpt++] = rc;
}

/* A delivery-status part: field groups apart by blank lines. */
static void dsn_read(struct walk *w, struct span s)
{
	w->dsn_done = true;
	w->r->kind = REPORT_DSN;
	while (s.n > 0) {
		size_t next, n = line_len(s, &next);
		if (blank(s.p, n)) {
			advance(&s, next);
			continue;
		}
		struct span g = { s.p, 0 };
		while (s.n > 0) {
			n = line_len(s, &next);
			if (blank(s.p, n))
				break;
			advance(&s, next);
		}
		g.n = (size_t)(s.p - g.p);
		dsn_group(w, g);
	}
}

static void arf_read(struct walk *w, struct span s)
{
	char v[REPORT_FIELD_MAX];
	static const char *const complaints[] = { "abuse", "fraud", "virus", "other", NULL };
	w->arf_done = true;
	w->r->kind = REPORT_ARF;
	if (field_get(s, "Feedback-Type", v, sizeof(v)))
		first_word(v, w->r->feedback_type, sizeof(w->r->feedback_type));
	w->r->complaint = type_is(w->r->feedback_type, complaints);
	if (field_get(s, "Original-Rcpt-To", v, sizeof(v)))
		recipient_address(v, w->arf_rcpt, sizeof(w->arf_rcpt));
}

/* Does a Feedback-ID value end in ":bulkmilter" (ours, feedback.h)? */
static bool feedback_id_ours(const char *v)
{
	size_t n = strlen(v), sl = strlen(FEEDBACK_SUFFIX);
	return n > sl && v[n - sl - 1] == ':' && strcasecmp(v + n - sl, FEEDBACK_SUFFIX) == 0;
}

/*
 * The headers of a quoted original: its To, and its Feedback-ID (ours
 * when it has several: a sender may set its own as well).
 */
static void original_read(struct walk *w, struct span s)
{
	struct span head, body;
	char name[REPORT_NAME_MAX], v[REPORT_FIELD_MAX];
	split_header(s, &head, &body);
	if (!w->orig_done) {
		w->orig_done = true;
		if (field_get(head, "To", v, sizeof(v)) &&
		    address_from_header(v, w->orig_to, sizeof(w->orig_to)) != 0)
			w->orig_to[0] = '\0';
	}
	if (w->feedback_ours)
		return;
	while (field_next(&head, name, sizeof(name), v, sizeof(v))) {
		size_t n = strlen(v);
		if (strcasecmp(name, "Feedback-ID") != 0 || n == 0 || n >= sizeof(w->r->feedback_id))
			continue;
		bool ours = feedback_id_ours(v);
		if (w->r->feedback_id[0] && !ours)
			continue;
		memcpy(w->r->feedback_id, v, n + 1);
		if ((w->feedback_ours = ours))
			return;
	}
}

/* ---- the MIME walk ---------------------------------------------------- */

static void walk_part(struct walk *w, const char *ct, struct span body, unsigned depth);

/* Is the line at s a delimiter of boundary b? *close: the closing one. */
static bool delimiter(struct span line, const char *b, size_t bl, bool *close)
{
	if (line.n < 2 + bl || line.p[0] != '-' || line.p[1] != '-' ||
	    memcmp(line.p + 2, b, bl) != 0)
		return false;
	const char *rest = line.p + 2 + bl;
	size_t rn = line.n - 2 - bl;
	*close = rn >= 2 && rest[0] == '-' && rest[1] == '-';
	if (*close) {
		rest += 2;
		rn -= 2;
	}
	return blank(rest, rn);
}

/* One part of a multipart, from its first octet to the line end before the next delimiter. */
static void take_part(struct walk *w, const char *start, const char *stop, unsigned depth)
{
	struct span part = { start, (size_t)(stop - start) }, head, body;
	char ct[REPORT_FIELD_MAX], cte[REPORT_NAME_MAX];
	if (w->parts >= REPORT_PARTS_MAX)
		return;
	w->parts++;
	split_header(part, &head, &body);
	if (!field_get(head, "Content-Type", ct, sizeof(ct)))
		snprintf(ct, sizeof(ct), "text/plain");
	if (field_get(head, "Content-Transfer-Encoding", cte, sizeof(cte)) &&
	    strcasecmp(cte, "base64") == 0 && !b64_decode(w, body, &body))
		return;
	walk_part(w, ct, body, depth + 1);
}

static void walk_multipart(struct walk *w, const char *boundary, struct span body, unsigned depth)
{
	size_t bl = strlen(boundary);
	struct span s = body;
	const char *start = NULL;	/* the current part's first octet */
	if (bl == 0 || depth >= REPORT_DEPTH_MAX)
		return;
	while (s.n > 0) {
		size_t next, n = line_len(s, &next);
		struct span line = { s.p, n };
		bool close = false;
		if (!delimiter(line, boundary, bl, &close)) {
			advance(&s, next);
			continue;
		}
		if (start) {
			/* the line end before a delimiter belongs to the delimiter */
			const char *stop = s.p;
			if (stop > start && stop[-1] == '\n')
				stop--;
			if (stop > start && stop[-1] == '\r')
				stop--;
			take_part(w, start, stop, depth);
		}
		if (close)
			return;
		advance(&s, next);
		start = s.p;
	}
	/* a boundary that never closes (a cut report): the last part runs to the end */
	if (start && start < s.p)
		take_part(w, start, s.p, depth);
}

/* Does s start with a header field ("Name: ...")? */
static bool opens_with_field(struct span s)
{
	size_t next, n = line_len(s, &next);
	const char *colon = memchr(s.p, ':', n);
	if (colon == NULL || colon == s.p)
		return false;
	for (const char *p = s.p; p < colon; p++)
		if (*p <= ' ' || *p > '~')
			return false;
	return true;
}

static void walk_part(struct walk *w, const char *ct, struct span body, unsigned depth)
{
	char type[REPORT_NAME_MAX], boundary[REPORT_BOUNDARY_MAX + 1];
	content_type(ct, type, sizeof(type), boundary, sizeof(boundary));
	if (strncmp(type, "multipart/", 10) == 0)
		walk_multipart(w, boundary, body, depth);
	else if (type_is(type, status_types) && !w->dsn_done && !w->arf_done)
		dsn_read(w, body);
	else if (strcmp(type, "message/feedback-report") == 0 && !w->arf_done && !w->dsn_done)
		arf_read(w, body);
	else if (type_is(type, original_types))
		original_read(w, body);
	else if (strncmp(type, "text/", 5) == 0 && depth > 0 && !w->feedback_ours && opens_with_field(body))
		original_read(w, body);	/* a quoted original sent as text */
}

enum report_kind report_parse(const char *ct, const char *body, size_t len, struct report *r)
{
	struct walk w;
	memset(r, 0, sizeof(*r));
	memset(&w, 0, sizeof(w));
	w.r = r;
	struct span s = { body ? body : "", body ? len : 0 };
	walk_part(&w, ct ? ct : "text/plain", s, 0);
	for (size_t i = 0; i < w.ndecoded; i++)
		free(w.decoded[i]);
	if (r->kind == REPORT_ARF) {
		const char *who = w.arf_rcpt[0] ? w.arf_rcpt : w.orig_to;
		r->rcpts = who[0] ? 1 : 0;
		if (who[0]) {
			snprintf(r->rcpt[0].address, sizeof(r->rcpt[0].address), "%s", who);
			r->nrcpt = 1;
		}
	}
	if (r->kind == REPORT_NONE)
		memset(r, 0, sizeof(*r));
	return r->kind;
}

enum report_kind report_parse_message(const char *msg, size_t len, struct report *r)
{
	struct span in = { msg ? msg : "", msg ? len : 0 }, head, body;
	char ct[REPORT_FIELD_MAX];
	split_header(in, &head, &body);
	if (!field_get(head, "Content-Type", ct, sizeof(ct)))
		snprintf(ct, sizeof(ct), "text/plain");
	return report_parse(ct, body.p, body.n, r);
}

const char *report_kind_name(enum report_kind k)
{
	switch (k) {
	case REPORT_DSN:
		return "dsn";
	case REPORT_ARF:
		return "arf";
	default:
		return "none";
	}
}
