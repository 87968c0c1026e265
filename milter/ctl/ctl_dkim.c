/*
 * ctl_dkim - bulkmilterctl's DKIM commands.
 *
 *	bulkmilterctl [-c FILE] [--json] dkim check [DOMAIN]
 *	bulkmilterctl [--json] dkim keygen --algorithm rsa-2048|ed25519 DOMAIN SELECTOR DIR
 *
 * check: for every KeyTable entry (of DOMAIN only, when given), the TXT
 * record SELECTOR._domainkey.DOMAIN, asked through the DNS layer the SPF
 * helpers use (dns.h, the Resolver setting), is read as a DKIM key
 * record (RFC 6376 3.6.1: v=DKIM1 first if present, k=, h=, s=, t=,
 * p=) and its public key compared with the private key's:
 *
 *	ok		one key record, its key is the private key's public half
 *	missing		no such name, or no key record under it
 *	mismatch	a key record for another key (or another key type)
 *	revoked		p= empty
 *	unusable (why)	a record verifiers refuse (bad v=, unknown k=, h=
 *			without sha256, s= without email, p= not a key, more
 *			than one key record), a DNS failure, or an entry we
 *			cannot check (a '%' domain without DOMAIN, an unreadable
 *			key file)
 *
 * t=y (testing) is reported alongside ok: verifiers then treat a failed
 * signature as none, which hides a broken setup.
 *
 * keygen makes the key a KeyTable can name: DIR/DOMAIN.SELECTOR.key, PEM
 * PKCS#8, mode 0600, created with O_EXCL (an existing file is never
 * overwritten) and prints the KeyTable line, the SigningTable line
 * (refile form "*@DOMAIN NAME", which MultipleSignatures can match
 * twice for one domain; the plain form in the comment) and the TXT record, RSA's split
 * into strings of at most 255 octets (RFC 1035 character-strings), as
 * a zone file wants it. Ed25519 records carry the raw 32-byte key (RFC
 * 8463).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "align.h"
#include "authority.h"
#include "ctl_dkim.h"
#include "dns.h"
#include "keytable.h"
#include "privkey.h"

/* RFC 1035 3.3: a character-string holds at most 255 octets. */
#define CTL_DKIM_TXT_STRING_MAX 255
/* A decoded p= larger than this is no DKIM key (RSA-8192 SPKI is ~1.1 KB). */
#define CTL_DKIM_PUBKEY_MAX 4096
/* KeyTable entries one check reports. */
#define CTL_DKIM_ENTRIES_MAX 100000

enum ctl_dkim_status { ST_OK, ST_MISSING, ST_MISMATCH, ST_REVOKED, ST_UNUSABLE };
static const char *const status_names[] = { "ok", "missing", "mismatch", "revoked", "unusable" };

/* Prints s as a JSON string literal. */
static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

/* ---- explain --from ----------------------------------------------------- */

void ctl_dkim_explain(const struct snapshot *s, bool outbound, const char *sasl, const char *from,
	bool json)
{
	const char *at = strrchr(from, '@');
	const char *domain = at ? at + 1 : from;
	char why[512];
	bool ok = outbound && authority_allows(s->authority, sasl, domain, why, sizeof(why));

	if (!outbound)
		snprintf(why, sizeof(why), "inbound mail is never signed");

	if (json) {
		printf(",\"signing_authority\":{\"setting\":");
		json_str(authority_describe(s->authority));
		printf(",\"from_domain\":");
		json_str(domain);
		printf(",\"may_sign\":%s,\"reason\":", ok ? "true" : "false");
		json_str(why);
		putchar('}');
		return;
	}
	printf("signing authority (%s): %s %s be signed for %s: %s\n", authority_describe(s->authority),
	       domain, ok ? "may" : "may not", sasl[0] ? sasl : "a client without SASL login", why);
}

/* ---- check -------------------------------------------------------------- */

struct ctl_dkim_entry {
	char *name, *domain, *selector;
	const struct privkey *key;
	char *path_template;
	int line;
};

struct ctl_dkim_list {
	struct ctl_dkim_entry *v;
	size_t n;
	const char *only;		/* DOMAIN, or NULL */
	bool full;
};

static void collect(const struct keytable_entry_info *e, void *arg)
{
	struct ctl_dkim_list *l = arg;
	if (l->only && strcmp(e->domain, "%") != 0 && strcasecmp(e->domain, l->only) != 0)
		return;
	if (l->n == CTL_DKIM_ENTRIES_MAX) {
		l->full = true;
		return;
	}
	struct ctl_dkim_entry *grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
	if (grown == NULL) {
		l->full = true;
		return;
	}
	l->v = grown;
	struct ctl_dkim_entry *c = &l->v[l->n++];
	c->name = strdup(e->name);
	c->domain = strdup(strcmp(e->domain, "%") == 0 && l->only ? l->only : e->domain);
	c->selector = strdup(e->selector);
	c->path_template = e->path_template ? strdup(e->path_template) : NULL;
	c->key = e->key;
	c->line = e->line;
}

static int by_line(const void *a, const void *b)
{
	return ((const struct ctl_dkim_entry *)a)->line - ((const struct ctl_dkim_entry *)b)->line;
}

/* The public half of key as a record's p= holds it: SPKI DER (RSA), raw 32 bytes (Ed25519). */
static int public_half(EVP_PKEY *key, unsigned char *out, size_t *len)
{
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519)
		return EVP_PKEY_get_raw_public_key(key, out, len) == 1 ? 0 : -1;
	int n = i2d_PUBKEY(key, NULL);
	if (n <= 0 || (size_t)n > *len)
		return -1;
	unsigned char *p = out;
	*len = (size_t)i2d_PUBKEY(key, &p);
	return 0;
}

/* Decodes base64 with white space in it; -1 when it is not base64. */
static int unbase64(const char *text, unsigned char *out, size_t cap, size_t *len)
{
	char clean[CTL_DKIM_PUBKEY_MAX * 2];
	size_t n = 0;
	for (const char *p = text; *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			continue;
		if (n + 1 >= sizeof(clean))
			return -1;
		clean[n++] = *p;
	}
	if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap)
		return -1;
	int got = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)n);
	if (got < 0)
		return -1;
	size_t pad = (clean[n - 1] == '=') + (clean[n - 2] == '=');
	*len = (size_t)got - pad;
	return 0;
}

/* The value of tag in a tag=value list, trimmed, in buf; NULL when absent. */
static const char *tag_value(const char *record, const char *tag, char *buf, size_t len, bool *first)
{
	size_t tl = strlen(tag);
	bool at_first = true;
	for (const char *p = record; p && *p; at_first = false) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *end = strchr(p, ';');
		size_t span = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', span);
		if (eq) {
			const char *name_end = eq;
			while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t'))
				name_end--;
			if ((size_t)(name_end - p) == tl && strncmp(p, tag, tl) == 0) {
				const char *v = eq + 1, *ve = p + span;
				while (v < ve && (*v == ' ' || *v == '\t'))
					v++;
				while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
					ve--;
				snprintf(buf, len, "%.*s", (int)(ve - v), v);
				if (first)
					*first = at_first;
				return buf;
			}
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

/* True when the colon-separated list holds want (or '*' with star_ok). */
static bool list_has(const char *list, const char *want, bool star_ok)
{
	char copy[256], *save = NULL;
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *w = strtok_r(copy, ": \t", &save); w; w = strtok_r(NULL, ": \t", &save))
		if (strcasecmp(w, want) == 0 || (star_ok && strcmp(w, "*") == 0))
			return true;
	return false;
}

/* True when der is an RSA SubjectPublicKeyInfo. */
static bool rsa_public_key(const unsigned char *der, size_t len)
{
	const unsigned char *q = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &q, (long)len);
	bool ok = k && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA;
	EVP_PKEY_free(k);
	return ok;
}

/* Judges one key record against key; why gets the detail. */
static enum ctl_dkim_status judge(const char *record, const struct privkey *key, char *why, size_t len,
				  bool *testing)
{
	char v[64], k[64], h[128], s[128], t[64], p[CTL_DKIM_PUBKEY_MAX * 2];
	bool first = false;
	bool ed = EVP_PKEY_get_base_id(key->pkey) == EVP_PKEY_ED25519;

	if (tag_value(record, "v", v, sizeof(v), &first) && (!first || strcmp(v, "DKIM1") != 0)) {
		snprintf(why, len, "v=%s%s", v, first ? " is not DKIM1" : " is not the first tag");
		return ST_UNUSABLE;
	}
	if (!tag_value(record, "k", k, sizeof(k), NULL))
		strcpy(k, "rsa");
	if (strcasecmp(k, "rsa") != 0 && strcasecmp(k, "ed25519") != 0) {
		snprintf(why, len, "unknown key type k=%s", k);
		return ST_UNUSABLE;
	}
	if (tag_value(record, "h", h, sizeof(h), NULL) && !list_has(h, "sha256", false)) {
		snprintf(why, len, "h=%s does not allow sha256", h);
		return ST_UNUSABLE;
	}
	if (tag_value(record, "s", s, sizeof(s), NULL) && !list_has(s, "email", true)) {
		snprintf(why, len, "s=%s is not for email", s);
		return ST_UNUSABLE;
	}
	*testing = tag_value(record, "t", t, sizeof(t), NULL) && list_has(t, "y", false);
	if (!tag_value(record, "p", p, sizeof(p), NULL)) {
		snprintf(why, len, "no p= tag");
		return ST_UNUSABLE;
	}
	if (p[0] == '\0') {
		snprintf(why, len, "p= is empty: the key is revoked");
		return ST_REVOKED;
	}
	if ((strcasecmp(k, "ed25519") == 0) != ed) {
		snprintf(why, len, "the record is k=%s, the private key is %s", k, ed ? "Ed25519" : "RSA");
		return ST_MISMATCH;
	}
	unsigned char pub[CTL_DKIM_PUBKEY_MAX], mine[CTL_DKIM_PUBKEY_MAX];
	size_t publen = 0, minelen = sizeof(mine);
	if (unbase64(p, pub, sizeof(pub), &publen) != 0) {
		snprintf(why, len, "p= is not base64");
		return ST_UNUSABLE;
	}
	if (ed ? publen != 32 : !rsa_public_key(pub, publen)) {
		snprintf(why, len, "p= is not an %s public key", ed ? "Ed25519" : "RSA");
		return ST_UNUSABLE;
	}
	if (public_half(key->pkey, mine, &minelen) != 0) {
		snprintf(why, len, "cannot read the private key's public half");
		return ST_UNUSABLE;
	}
	if (publen != minelen || memcmp(pub, mine, publen) != 0) {
		snprintf(why, len, "the record's key is not this private key's");
		return ST_MISMATCH;
	}
	if (ed)
		snprintf(why, len, "ed25519");
	else
		snprintf(why, len, "rsa-%d", key->bits);
	return ST_OK;
}

/* True when a TXT string is a DKIM key record (v=DKIM1 first, or a p= tag). */
static bool is_key_record(const char *txt)
{
	char v[64], p[8];
	bool first = false;
	if (tag_value(txt, "v", v, sizeof(v), &first))
		return true;
	return tag_value(txt, "p", p, sizeof(p), NULL) != NULL;
}

static enum ctl_dkim_status check_one(struct dns_resolver *r, const struct ctl_dkim_entry *e,
				      bool require_safe, char *name, size_t namelen, char *why, size_t len,
				      bool *testing)
{
	const struct privkey *key = e->key;
	struct privkey *loaded = NULL;
	enum ctl_dkim_status st;

	snprintf(name, namelen, "%s._domainkey.%s", e->selector, e->domain);
	if (strcmp(e->domain, "%") == 0) {
		snprintf(why, len, "domain %% is the From domain: give a DOMAIN to check");
		return ST_UNUSABLE;
	}
	if (e->path_template) {
		char path[PATH_MAX];
		size_t o = 0;
		for (const char *p = e->path_template; *p && o + 1 < sizeof(path); p++) {
			if (*p == '%')
				o += (size_t)snprintf(path + o, sizeof(path) - o, "%s", e->domain);
			else
				path[o++] = *p;
			if (o >= sizeof(path))
				o = sizeof(path) - 1;
		}
		path[o] = '\0';
		if ((loaded = privkey_load_file(path, require_safe, why, len)) == NULL)
			return ST_UNUSABLE;
		key = loaded;
	}
	SPF_dns_rr_t *rr = dns_lookup(r, name, ns_t_txt);
	if (rr == NULL) {
		snprintf(why, len, "out of memory");
		st = ST_UNUSABLE;
	} else if (rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA) {
		snprintf(why, len, "no TXT record");
		st = ST_MISSING;
	} else if (rr->herrno != NETDB_SUCCESS) {
		snprintf(why, len, "DNS lookup failed (timeout or server failure)");
		st = ST_UNUSABLE;
	} else {
		int found = 0, at = -1;
		for (int i = 0; i < rr->num_rr; i++)
			if (is_key_record(rr->rr[i]->txt)) {
				found++;
				at = i;
			}
		if (found == 0) {
			snprintf(why, len, "no DKIM key record among %d TXT record%s", rr->num_rr,
				 rr->num_rr == 1 ? "" : "s");
			st = ST_MISSING;
		} else if (found > 1) {
			snprintf(why, len, "%d key records: verifiers may take any", found);
			st = ST_UNUSABLE;
		} else {
			st = judge(rr->rr[at]->txt, key, why, len, testing);
		}
	}
	SPF_dns_rr_free(rr);
	privkey_free(loaded);
	return st;
}

static int check(const char *config, bool json, const char *only)
{
	struct diag errs = { .count = 0 };
	struct snapshot *s = snapshot_load(config, NULL, false, &errs);
	if (s == NULL) {
		diag_print(&errs, stderr);
		diag_free(&errs);
		return 1;
	}
	diag_free(&errs);
	if (s->keys == NULL) {
		fprintf(stderr, "dkim check: no KeyTable in %s\n", config);
		snapshot_release(s);
		return 1;
	}
	char err[256];
	struct dns_resolver *r = dns_resolver_new(s->settings->resolver, s->settings->dns_timeout_ms,
						  err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "dkim check: resolver %s: %s\n", s->settings->resolver, err);
		snapshot_release(s);
		return 1;
	}
	struct ctl_dkim_list l = { .only = only };
	keytable_entries(s->keys, collect, &l);
	if (l.n > 0)
		qsort(l.v, l.n, sizeof(*l.v), by_line);
	int bad = l.full;
	if (json)
		printf("{\"entries\":[");
	for (size_t i = 0; i < l.n; i++) {
		struct ctl_dkim_entry *e = &l.v[i];
		char name[KEYTABLE_SELECTOR_MAX + KEYTABLE_DOMAIN_MAX + 16], why[512] = "";
		bool testing = false;
		enum ctl_dkim_status st = e->name && e->domain && e->selector
			? check_one(r, e, s->settings->require_safe_keys, name, sizeof(name), why,
				    sizeof(why), &testing)
			: (snprintf(why, sizeof(why), "out of memory"), ST_UNUSABLE);
		bad |= st != ST_OK;
		if (json) {
			printf("%s{\"key\":", i ? "," : "");
			json_str(e->name);
			printf(",\"domain\":");
			json_str(e->domain);
			printf(",\"selector\":");
			json_str(e->selector);
			printf(",\"record\":");
			json_str(name);
			printf(",\"status\":\"%s\",\"reason\":", status_names[st]);
			json_str(why);
			printf(",\"testing\":%s}", testing ? "true" : "false");
		} else {
			printf("%s %s: %s (%s)%s\n", e->name, name, status_names[st], why,
			       testing ? " t=y: testing, verifiers ignore failures" : "");
		}
		free(e->name);
		free(e->domain);
		free(e->selector);
		free(e->path_template);
	}
	if (json)
		printf("],\"ok\":%s}\n", bad || l.n == 0 ? "false" : "true");
	if (l.n == 0)
		fprintf(stderr, "dkim check: no KeyTable entry%s%s\n", only ? " for " : "", only ? only : "");
	if (l.full)
		fprintf(stderr, "dkim check: not every entry was checked (memory or over %d)\n",
			CTL_DKIM_ENTRIES_MAX);
	free(l.v);
	dns_resolver_free(r);
	snapshot_release(s);
	return bad || l.n == 0 ? 1 : 0;
}

/* ---- keygen ------------------------------------------------------------- */

static bool valid_selector(const char *s)
{
	if (*s == '\0' || strlen(s) > KEYTABLE_SELECTOR_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
		    *p != '-' && *p != '_' && *p != '.')
			return false;
	return s[0] != '.' && s[0] != '-';
}

/* The record's p= value in base64 (malloc'd), or NULL. */
static char *public_base64(EVP_PKEY *key)
{
	unsigned char pub[CTL_DKIM_PUBKEY_MAX];
	size_t len = sizeof(pub);
	if (public_half(key, pub, &len) != 0)
		return NULL;
	char *b64 = malloc(len / 3 * 4 + 8);
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, pub, (int)len);
	return b64;
}

static int keygen(bool json, int argc, char **argv)
{
	const char *alg = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--algorithm") == 0 && i + 1 < argc)
			alg = argv[++i];
		else if (strncmp(argv[i], "--algorithm=", 12) == 0)
			alg = argv[i] + 12;
		else
			break;
	}
	if (alg == NULL || argc - i != 3) {
		fprintf(stderr, "usage: bulkmilterctl dkim keygen --algorithm rsa-2048|ed25519 DOMAIN SELECTOR DIR\n");
		return 2;
	}
	bool ed = strcmp(alg, "ed25519") == 0;
	if (!ed && strcmp(alg, "rsa-2048") != 0) {
		fprintf(stderr, "dkim keygen: unknown algorithm %s (rsa-2048 or ed25519)\n", alg);
		return 2;
	}
	char domain[ALIGN_NAME_MAX + 1], dir[PATH_MAX], path[PATH_MAX + 2 * ALIGN_NAME_MAX];
	const char *selector = argv[i + 1];
	if (align_normalize(argv[i], domain, sizeof(domain)) != 0) {
		fprintf(stderr, "dkim keygen: not a domain: %s\n", argv[i]);
		return 2;
	}
	if (!valid_selector(selector)) {
		fprintf(stderr, "dkim keygen: not a selector: %s\n", selector);
		return 2;
	}
	if (realpath(argv[i + 2], dir) == NULL) {
		fprintf(stderr, "dkim keygen: %s: %s\n", argv[i + 2], strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s.%s.key", dir, domain, selector);

	EVP_PKEY *key = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
			   : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	char *p64 = key ? public_base64(key) : NULL;
	if (p64 == NULL) {
		fprintf(stderr, "dkim keygen: cannot make an %s key\n", alg);
		EVP_PKEY_free(key);
		return 1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "dkim keygen: %s: %s%s\n", path, strerror(errno),
			errno == EEXIST ? " (refusing to overwrite a key)" : "");
		free(p64);
		EVP_PKEY_free(key);
		return 1;
	}
	FILE *fp = fdopen(fd, "w");
	bool written = fp && fchmod(fd, 0600) == 0 &&
		       PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1;
	if ((fp ? fclose(fp) : close(fd)) != 0)
		written = false;
	EVP_PKEY_free(key);
	if (!written) {
		fprintf(stderr, "dkim keygen: cannot write %s\n", path);
		unlink(path);
		free(p64);
		return 1;
	}

	char name[KEYTABLE_SELECTOR_MAX + ALIGN_NAME_MAX + 16];
	snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
	size_t rlen = strlen(p64) + 64;
	char *record = malloc(rlen);
	if (record == NULL) {
		free(p64);
		return 1;
	}
	snprintf(record, rlen, "v=DKIM1; k=%s; p=%s", ed ? "ed25519" : "rsa", p64);
	free(p64);
	size_t total = strlen(record);
	if (json) {
		printf("{\"key_file\":");
		json_str(path);
		printf(",\"algorithm\":\"%s\",\"key_table\":\"%s %s:%s:", alg, name, domain, selector);
		printf("%s\",\"signing_table\":\"*@%s %s\",\"signing_table_plain\":\"%s %s\",\"dns_name\":\"%s.\",\"txt\":",
		       path, domain, name, domain, name, name);
		json_str(record);
		printf(",\"txt_strings\":[");
		for (size_t o = 0; o < total; o += CTL_DKIM_TXT_STRING_MAX)
			printf("%s\"%.*s\"", o ? "," : "", CTL_DKIM_TXT_STRING_MAX, record + o);
		printf("]}\n");
	} else {
		printf("# %s key written to %s (mode 0600)\n", alg, path);
		printf("# KeyTable line:\n%s %s:%s:%s\n", name, domain, selector, path);
		printf("# SigningTable line (SigningTable refile:PATH; a plain table takes \"%s %s\"):\n*@%s %s\n",
		       domain, name, domain, name);
		printf("# DNS record to publish:\n%s. IN TXT (", name);
		for (size_t o = 0; o < total; o += CTL_DKIM_TXT_STRING_MAX)
			printf(" \"%.*s\"", CTL_DKIM_TXT_STRING_MAX, record + o);
		printf(" )\n");
	}
	free(record);
	return 0;
}

int ctl_dkim(const char *config, bool json, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0 && argc <= 3)
		return check(config, json, argc == 3 ? argv[2] : NULL);
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen(json, argc - 1, argv + 1);
	fprintf(stderr, "usage: bulkmilterctl [-c FILE] [--json] dkim check [DOMAIN]\n"
			"       bulkmilterctl [--json] dkim keygen --algorithm rsa-2048|ed25519 DOMAIN SELECTOR DIR\n");
	return 2;
}
