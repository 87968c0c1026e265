/*
 * fake_mta - libmilter's API as the fuzz targets' MTA (fake_mta.h).
 *
 * The targets link bulkmilter's callbacks (callbacks.c, and through it
 * the transaction in libbulk.a) without libmilter: every smfi_* function
 * the milter calls is defined here, on a SMFICTX of our own, so a whole
 * message costs function calls and no socket. The checks on what the milter asks for
 * are the ones Postfix makes or relies on (see fake_mta.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "callbacks.h"
#include "diag.h"
#include "fake_mta.h"
#include "fuzz.h"
#include "header_facts.h"
#include "snapshot.h"

/* Body chunks: what Postfix's cleanup hands a milter at a time. */
#define FAKE_MTA_CHUNK 4096

const char fake_mta_authserv_id[] = "mx.example.net";

struct smfi_str {
	void *priv;
	const struct fake_mta_message *msg;
	struct fake_mta_result *result;
};

static void fake_mta_edit(SMFICTX *ctx, char op, const char *name, int index)
{
	struct fake_mta_result *r = ctx->result;

	fuzz_check(r->edit_count < FAKE_MTA_EDITS_MAX, "more header edits than a message has headers");
	r->edits[r->edit_count].op = op;
	r->edits[r->edit_count].index = index;
	snprintf(r->edits[r->edit_count].name, sizeof(r->edits[0].name), "%s", name);
	r->edit_count++;
}

/* RFC 5322 field-name: printable ASCII but ':' and space. */
static void fake_mta_check_name(const char *name)
{
	fuzz_check(name != NULL && name[0] != '\0', "a header without a name");
	for (const char *p = name; *p; p++)
		fuzz_check(*p > ' ' && *p < 0x7f && *p != ':', "a header name with a bad character");
}

/* Every line break of a header value must be a fold: no header injection. */
static void fake_mta_check_value(const char *value)
{
	fuzz_check(value != NULL, "a header without a value");
	for (const char *p = value; *p; p++) {
		if (*p == '\r') {
			fuzz_check(p[1] == '\n', "a bare CR in a header value");
			continue;
		}
		if (*p == '\n')
			fuzz_check(p[1] == ' ' || p[1] == '\t', "a line break that is not a fold");
	}
}

char *smfi_getsymval(SMFICTX *ctx, char *name)
{
	if (strcmp(name, "i") == 0 || strcmp(name, "{i}") == 0)
		return "4XfZz10Bz3";
	if (strcmp(name, "{auth_authen}") == 0)
		return ctx->msg->outbound ? "news@example.com" : NULL;
	if (strcmp(name, "{auth_type}") == 0)
		return ctx->msg->outbound ? "PLAIN" : NULL;
	if (strcmp(name, "j") == 0)
		return (char *)fake_mta_authserv_id;
	return NULL;
}

int smfi_setreply(SMFICTX *ctx, char *rcode, char *xcode, char *message)
{
	(void)ctx;
	fuzz_check(rcode != NULL && strlen(rcode) == 3 && (rcode[0] == '4' || rcode[0] == '5') &&
		   isdigit((unsigned char)rcode[1]) && isdigit((unsigned char)rcode[2]),
		   "a reply code that is not 4xx or 5xx");
	fuzz_check(xcode == NULL || xcode[0] == rcode[0], "an enhanced code of another class");
	for (const char *p = message; p != NULL && *p; p++)
		fuzz_check((unsigned char)*p >= ' ' && *p != 0x7f, "a control character in a reply text");
	return MI_SUCCESS;
}

int smfi_setmlreply(SMFICTX *ctx, const char *rcode, const char *xcode, ...)
{
	(void)ctx;
	(void)rcode;
	(void)xcode;
	fuzz_check(false, "multi-line replies are not used");
	return MI_FAILURE;
}

int smfi_addheader(SMFICTX *ctx, char *name, char *value)
{
	fake_mta_check_name(name);
	fake_mta_check_value(value);
	fake_mta_edit(ctx, 'a', name, 0);
	return MI_SUCCESS;
}

int smfi_insheader(SMFICTX *ctx, int index, char *name, char *value)
{
	fake_mta_check_name(name);
	fake_mta_check_value(value);
	fake_mta_edit(ctx, 'i', name, index);
	return MI_SUCCESS;
}

int smfi_chgheader(SMFICTX *ctx, char *name, int index, char *value)
{
	const struct fake_mta_message *m = ctx->msg;
	int count = 0;

	fake_mta_check_name(name);
	fuzz_check(value == NULL, "bulkmilter only removes headers");
	for (size_t i = 0; i < m->header_count; i++)
		if (strcasecmp(m->names[i], name) == 0)
			count++;
	fuzz_check(index >= 1 && index <= count, "a removal of a header the message does not have");
	for (size_t i = 0; i < ctx->result->edit_count; i++)
		fuzz_check(!(ctx->result->edits[i].op == 'r' && ctx->result->edits[i].index == index &&
			     strcasecmp(ctx->result->edits[i].name, name) == 0), "a header removed twice");
	fake_mta_edit(ctx, 'r', name, index);
	return MI_SUCCESS;
}

int smfi_quarantine(SMFICTX *ctx, char *reason)
{
	fuzz_check(reason != NULL && reason[0] != '\0', "a hold without a reason");
	for (const char *p = reason; *p; p++)
		fuzz_check(*p != '\r' && *p != '\n', "a hold reason of two lines");
	ctx->result->held = true;
	return MI_SUCCESS;
}

int smfi_setsymlist(SMFICTX *ctx, int stage, char *macros)
{
	(void)ctx;
	(void)stage;
	(void)macros;
	return MI_SUCCESS;
}

int smfi_setpriv(SMFICTX *ctx, void *priv)
{
	ctx->priv = priv;
	return MI_SUCCESS;
}

void *smfi_getpriv(SMFICTX *ctx)
{
	return ctx->priv;
}

void fake_mta_start(void)
{
	static bool started;
	char conf[8192], keys[4096], signing[1024];
	struct diag errs = { 0 };
	struct snapshot *s;

	if (started)
		return;
	started = true;
	fuzz_init();
	fuzz_write_text("fake.policy",
		"class newsletter {\n"
		"    account sasl\n"
		"    bulk header List-Id\n"
		"    bulk precedence\n"
		"    bulk recipients >= 3\n"
		"    bulk-require dkim-aligned spf-aligned list-unsubscribe dmarc-record\n"
		"    bulk-noncompliant tag\n"
		"}\n"
		"class inbound {\n"
		"    spf-fail reject\n"
		"}\n"
		"assign outbound newsletter\n"
		"assign inbound inbound\n");
	snprintf(keys, sizeof(keys), "example.com example.com:fuzz:%s\nany %%:fuzz:%s\n",
		 fuzz_key_pem(), fuzz_key_pem());
	fuzz_write_text("fake.keytable", keys);
	snprintf(signing, sizeof(signing), "*@example.com example.com\n* any\n");
	fuzz_write_text("fake.signingtable", signing);
	snprintf(conf, sizeof(conf),
		 "Socket inet:8893@127.0.0.1\n"
		 "Policy %s\n"
		 "Redis redis://127.0.0.1:1/0\n"
		 "InternalHosts 127.0.0.0/8\n"
		 "KeyTable %s\n"
		 "SigningTable refile:%s\n"
		 "RequireSafeKeys no\n"
		 "OversignHeaders From\n"
		 "AuthservID %s\n"
		 "EgressAddresses 203.0.113.1\n"
		 "TagHeader X-Bulk-Class\n",
		 fuzz_path("fake.policy"), fuzz_path("fake.keytable"), fuzz_path("fake.signingtable"),
		 fake_mta_authserv_id);
	s = snapshot_load(fuzz_write_text("fake.conf", conf), NULL, false, &errs);
	if (s == NULL)
		diag_print(&errs, stderr);
	fuzz_check(s != NULL, "the fake MTA's configuration does not load");
	diag_free(&errs);
	snapshot_install(s);
}

/* Whether a stage's answer lets the transaction go on. */
static bool fake_mta_goes_on(sfsistat r)
{
	return r == SMFIS_CONTINUE || r == SMFIS_NOREPLY;
}

static sfsistat fake_mta_end(SMFICTX *ctx, struct fake_mta_result *r, const char *stage, sfsistat reply)
{
	snprintf(r->stage, sizeof(r->stage), "%s", stage);
	r->reply = reply;
	if (strcmp(stage, "eom") != 0)
		callbacks_desc.xxfi_abort(ctx);
	callbacks_desc.xxfi_close(ctx);
	fuzz_check(ctx->priv == NULL, "the connection's state outlived close");
	return reply;
}

/* The body as Postfix sends it: CRLF line ends, in chunks. */
static sfsistat fake_mta_body(SMFICTX *ctx, const char *body, size_t len)
{
	unsigned char chunk[FAKE_MTA_CHUNK + 1];
	size_t n = 0;
	sfsistat r = SMFIS_CONTINUE;

	for (size_t i = 0; i < len; i++) {
		if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r'))
			chunk[n++] = '\r';
		chunk[n++] = (unsigned char)body[i];
		if (n >= FAKE_MTA_CHUNK) {
			r = callbacks_desc.xxfi_body(ctx, chunk, n);
			n = 0;
			if (r != SMFIS_CONTINUE)
				return r;
		}
	}
	if (n > 0)
		r = callbacks_desc.xxfi_body(ctx, chunk, n);
	return r;
}

sfsistat fake_mta_run(const struct fake_mta_message *m, struct fake_mta_result *r)
{
	struct smfi_str ctx = { .msg = m, .result = r };
	struct sockaddr_in client = { .sin_family = AF_INET, .sin_port = htons(40000) };
	unsigned long f[4];
	char *argv[2] = { NULL, NULL };
	size_t accepted = 0;
	sfsistat s;

	memset(r, 0, sizeof(*r));
	inet_pton(AF_INET, m->outbound ? "203.0.113.9" : "198.51.100.25", &client.sin_addr);
	s = callbacks_desc.xxfi_negotiate(&ctx, SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE |
					  SMFIF_SETSYMLIST | SMFIF_CHGBODY | SMFIF_ADDRCPT |
					  SMFIF_DELRCPT | SMFIF_CHGFROM,
					  SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR | SMFIP_NR_HELO |
					  SMFIP_NR_CONN | SMFIP_NR_EOH | SMFIP_NOUNKNOWN | SMFIP_NODATA |
					  SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_BODY | SMFIP_RCPT_REJ,
					  0, 0, &f[0], &f[1], &f[2], &f[3]);
	fuzz_check(s == SMFIS_CONTINUE, "negotiation failed");
	s = callbacks_desc.xxfi_connect(&ctx, "client.example", (struct sockaddr *)&client);
	if (!fake_mta_goes_on(s))
		return fake_mta_end(&ctx, r, "connect", s);
	s = callbacks_desc.xxfi_helo(&ctx, (char *)m->helo);
	if (!fake_mta_goes_on(s))
		return fake_mta_end(&ctx, r, "helo", s);
	argv[0] = (char *)m->mail_from;
	s = callbacks_desc.xxfi_envfrom(&ctx, argv);
	if (!fake_mta_goes_on(s))
		return fake_mta_end(&ctx, r, "envfrom", s);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		argv[0] = (char *)m->rcpts[i];
		if (fake_mta_goes_on(callbacks_desc.xxfi_envrcpt(&ctx, argv)))
			accepted++;
	}
	if (accepted == 0)
		return fake_mta_end(&ctx, r, "envrcpt", SMFIS_REJECT);
	for (size_t i = 0; i < m->header_count; i++) {
		s = callbacks_desc.xxfi_header(&ctx, (char *)m->names[i], (char *)m->values[i]);
		if (!fake_mta_goes_on(s))
			return fake_mta_end(&ctx, r, "header", s);
	}
	s = callbacks_desc.xxfi_eoh(&ctx);
	if (!fake_mta_goes_on(s))
		return fake_mta_end(&ctx, r, "eoh", s);
	s = fake_mta_body(&ctx, m->body != NULL ? m->body : "", m->body_len);
	if (!fake_mta_goes_on(s) && s != SMFIS_SKIP)
		return fake_mta_end(&ctx, r, "body", s);
	return fake_mta_end(&ctx, r, "eom", callbacks_desc.xxfi_eom(&ctx));
}

/* A header line: NAME ':' with a non-empty printable name; the colon or NULL. */
static const char *fake_mta_colon(const char *line, size_t len)
{
	const char *p = line;

	while (p < line + len && *p > ' ' && *p < 0x7f && *p != ':')
		p++;
	return p > line && p < line + len && *p == ':' ? p : NULL;
}

size_t fake_mta_parse(const char *text, char *arena, struct fake_mta_message *m)
{
	const char *p = text, *colon;
	char *out = arena;
	bool in_header = false;

	m->header_count = 0;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		const char *next = eol != NULL ? eol + 1 : p + len;

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0) {			/* the empty line: the body follows */
			p = next;
			break;
		}
		if ((p[0] == ' ' || p[0] == '\t') && in_header) {
			/* a fold: the value goes on, joined with "\n" as Postfix does */
			out[-1] = '\n';
			memcpy(out, p, len);
			out += len;
			*out++ = '\0';
		} else if ((colon = fake_mta_colon(p, len)) != NULL &&
			   m->header_count < FAKE_MTA_HEADERS_MAX) {
			size_t name_len = (size_t)(colon - p), value_len = len - name_len - 1;
			m->names[m->header_count] = out;
			memcpy(out, p, name_len);
			out += name_len;
			*out++ = '\0';
			m->values[m->header_count] = out;
			memcpy(out, colon + 1, value_len);
			out += value_len;
			*out++ = '\0';
			m->header_count++;
			in_header = true;
		} else {
			break;
		}
		p = next;
	}
	m->body = p;
	m->body_len = strlen(p);
	return m->header_count;
}

/* Skips CFWS (RFC 5322 3.2.2): white space and comments, nested, with quoted-pairs. */
static const char *fake_mta_cfws(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '(')
			return p;
		for (int depth = 0; ; p++) {
			if (*p == '\0')
				return NULL;	/* an open comment: not a valid value */
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
}

bool fake_mta_ar_claims(const char *value, const char *authserv_id)
{
	char id[1024];
	size_t n = 0;
	const char *p = fake_mta_cfws(value);

	if (p == NULL)
		return false;
	if (*p == '"') {			/* quoted-string */
		for (p++; *p != '"'; p++) {
			if (*p == '\0' || n + 1 >= sizeof(id))
				return false;
			if (*p == '\\' && p[1] != '\0')
				p++;
			id[n++] = *p;
		}
	} else {				/* token: up to FWS, a comment or ';' */
		for (; *p != '\0' && strchr(" \t\r\n;(", *p) == NULL; p++) {
			if (n + 1 >= sizeof(id))
				return false;
			id[n++] = *p;
		}
	}
	id[n] = '\0';
	return strcasecmp(id, authserv_id) == 0;
}

static bool fake_mta_removed(const struct fake_mta_result *r, const char *name, int index)
{
	for (size_t i = 0; i < r->edit_count; i++)
		if (r->edits[i].op == 'r' && r->edits[i].index == index &&
		    strcasecmp(r->edits[i].name, name) == 0)
			return true;
	return false;
}

void fake_mta_check_removals(const struct fake_mta_message *m, const struct fake_mta_result *r)
{
	static const char ar[] = "Authentication-Results", tag[] = "X-Bulk-Class";
	int ars = 0, tags = 0, claims = 0;

	if (strcmp(r->stage, "eom") != 0)
		return;
	for (size_t i = 0; i < m->header_count; i++)
		if (strcasecmp(m->names[i], ar) == 0 && fake_mta_ar_claims(m->values[i], fake_mta_authserv_id))
			claims++;
	if (claims > HEADER_FACTS_FORGED_AR_MAX) {
		fuzz_check(r->reply == SMFIS_REJECT,
			   "a message with more forged Authentication-Results than kept track of was not refused");
		return;
	}
	if (r->reply != SMFIS_CONTINUE)
		return;
	for (size_t i = 0; i < m->header_count; i++) {
		if (strcasecmp(m->names[i], ar) == 0) {
			bool claim = fake_mta_ar_claims(m->values[i], fake_mta_authserv_id);
			ars++;
			if (claim != fake_mta_removed(r, ar, ars))
				fprintf(stderr, "fake_mta: %s %d%s: \"%s\"\n", ar, ars,
					claim ? " claims our authserv-id" : "", m->values[i]);
			fuzz_check(!claim || fake_mta_removed(r, ar, ars),
				   "an Authentication-Results header claiming our authserv-id was kept");
			fuzz_check(claim || !fake_mta_removed(r, ar, ars),
				   "an Authentication-Results header of another authserv-id was removed");
		} else if (strcasecmp(m->names[i], tag) == 0) {
			fuzz_check(fake_mta_removed(r, tag, ++tags), "a client's TagHeader was kept");
		}
	}
}
