/*
 * authority - SigningAuthority: may this SASL login get a signature for
 * this From domain?
 *
 * What it does: loads the file: map once per snapshot (a reload reads it
 * again) and answers the question for sasl-domain and file: alike.
 *
 * What it does not: decide what happens to an unauthorized message (the
 * class's from-unauthorized, verdict.c), or look at the SigningTable: a
 * login may be allowed a domain that has no key, and the answer is the
 * same whether or not the message would be signed.
 *
 * Decisions: exact logins sit in a hash table, so a map of 100,000
 * mailboxes costs one lookup; globs are tried in file order after them
 * (a customer's "*@cust.example" line, then the odd exception). Names
 * are compared normalized (align_normalize: lower case, no trailing
 * dot), so "Cust-A.Example." is cust-a.example.
 */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "authority.h"
#include "strmap.h"

struct authority_line {
	char *login;			/* as written: exact or glob */
	int line;
	char **domains;			/* normalized */
	size_t ndomains;
};

struct authority {
	enum signing_authority_mode mode;
	char *describe;			/* "sasl-domain", "file:PATH" */
	char *path;
	struct authority_line *lines;
	size_t nlines;
	struct strmap *exact;		/* login -> line index + 1 */
	size_t *globs;			/* line indexes, file order */
	size_t nglobs;
};

void authority_free(struct authority *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nlines; i++) {
		for (size_t j = 0; j < a->lines[i].ndomains; j++)
			free(a->lines[i].domains[j]);
		free(a->lines[i].domains);
		free(a->lines[i].login);
	}
	free(a->lines);
	free(a->globs);
	strmap_free(a->exact, NULL);
	free(a->describe);
	free(a->path);
	free(a);
}

const char *authority_describe(const struct authority *a)
{
	return a ? a->describe : "none";
}

static bool authority_is_glob(const char *login)
{
	return strpbrk(login, "*?[") != NULL;
}

/* Parses one line's words into a new map line; -1 on an error (reported). */
static int authority_add_line(struct authority *a, char *text, int number, struct diag *errs)
{
	static const char sep[] = " \t,\r\n";
	char *save = NULL, *login = strtok_r(text, sep, &save);
	if (login == NULL)
		return 0;	/* blank */
	struct authority_line *grown = realloc(a->lines, (a->nlines + 1) * sizeof(*grown));
	if (grown == NULL)
		return diag_fail(errs, a->path, number, "out of memory");
	a->lines = grown;
	struct authority_line *l = &a->lines[a->nlines];
	memset(l, 0, sizeof(*l));
	l->line = number;
	if ((l->login = strdup(login)) == NULL)
		return diag_fail(errs, a->path, number, "out of memory");
	a->nlines++;
	for (char *d; (d = strtok_r(NULL, sep, &save)) != NULL;) {
		char norm[ALIGN_NAME_MAX + 1];
		if (align_normalize(d, norm, sizeof(norm)) != 0)
			return diag_fail(errs, a->path, number, "bad domain \"%s\"", d);
		char **more = realloc(l->domains, (l->ndomains + 1) * sizeof(*more));
		if (more == NULL)
			return diag_fail(errs, a->path, number, "out of memory");
		l->domains = more;
		if ((l->domains[l->ndomains] = strdup(norm)) == NULL)
			return diag_fail(errs, a->path, number, "out of memory");
		l->ndomains++;
	}
	if (l->ndomains == 0)
		return diag_fail(errs, a->path, number, "%s: no domains", login);
	if (authority_is_glob(login)) {
		size_t *g = realloc(a->globs, (a->nglobs + 1) * sizeof(*g));
		if (g == NULL)
			return diag_fail(errs, a->path, number, "out of memory");
		a->globs = g;
		a->globs[a->nglobs++] = a->nlines - 1;
		return 0;
	}
	void *prev = strmap_get(a->exact, login);
	if (prev)
		return diag_fail(errs, a->path, number, "%s: already listed at line %d", login,
				 a->lines[(size_t)prev - 1].line);
	if (strmap_put(a->exact, login, (void *)a->nlines) < 0)
		return diag_fail(errs, a->path, number, "out of memory");
	return 0;
}

static void authority_read(struct authority *a, struct diag *errs)
{
	FILE *fp = fopen(a->path, "re");
	if (fp == NULL) {
		diag_add(errs, a->path, 0, "cannot open: %s", strerror(errno));
		return;
	}
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	for (int number = 1; (n = getline(&buf, &cap, fp)) >= 0; number++) {
		if (n > AUTHORITY_LINE_MAX) {
			diag_add(errs, a->path, number, "line longer than %d characters", AUTHORITY_LINE_MAX);
			continue;
		}
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		authority_add_line(a, buf, number, errs);
	}
	free(buf);
	fclose(fp);
}

struct authority *authority_load(const struct settings *s, struct diag *errs)
{
	if (s->signing_authority == SIGNING_AUTHORITY_NONE)
		return NULL;
	const char *conf = s->path ? s->path : "bulkmilter.conf";
	size_t before = diag_errors(errs);
	struct authority *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		diag_add(errs, conf, 0, "out of memory");
		return NULL;
	}
	a->mode = s->signing_authority;
	if (a->mode == SIGNING_AUTHORITY_SASL_DOMAIN) {
		if ((a->describe = strdup("sasl-domain")) == NULL)
			diag_add(errs, conf, 0, "out of memory");
	} else {
		size_t len = strlen(s->signing_authority_file) + 6;
		a->path = strdup(s->signing_authority_file);
		a->describe = malloc(len);
		a->exact = strmap_new(1024, true);
		if (a->path == NULL || a->describe == NULL || a->exact == NULL)
			diag_add(errs, conf, 0, "out of memory");
		else {
			snprintf(a->describe, len, "file:%s", a->path);
			authority_read(a, errs);
		}
	}
	if (diag_errors(errs) != before) {
		authority_free(a);
		return NULL;
	}
	return a;
}

/* True when domain is d or under it (both normalized). */
static bool authority_covers(const char *d, const char *domain)
{
	size_t dl = strlen(d), nl = strlen(domain);
	return strcmp(d, domain) == 0 ||
	       (nl > dl && domain[nl - dl - 1] == '.' && strcmp(domain + nl - dl, d) == 0);
}

static const struct authority_line *authority_find(const struct authority *a, const char *login)
{
	void *hit = strmap_get(a->exact, login);
	if (hit)
		return &a->lines[(size_t)hit - 1];
	for (size_t i = 0; i < a->nglobs; i++) {
		const struct authority_line *l = &a->lines[a->globs[i]];
		if (fnmatch(l->login, login, FNM_CASEFOLD) == 0)
			return l;
	}
	return NULL;
}

#define WHY(...) do { if (why) snprintf(why, len, __VA_ARGS__); } while (0)

static bool authority_file_allows(const struct authority *a, const char *login, const char *domain,
				  char *why, size_t len)
{
	const struct authority_line *l = authority_find(a, login);
	if (l == NULL) {
		WHY("login %s is not in %s", login, a->path);
		return false;
	}
	for (size_t i = 0; i < l->ndomains; i++) {
		if (authority_covers(l->domains[i], domain)) {
			WHY("%s:%d: %s may sign for %s", a->path, l->line, l->login, l->domains[i]);
			return true;
		}
	}
	WHY("%s:%d: %s may sign for %s%s, not %s", a->path, l->line, l->login, l->domains[0],
	    l->ndomains > 1 ? " and others" : "", domain);
	return false;
}

bool authority_allows(const struct authority *a, const char *login, const char *from_domain,
		      char *why, size_t len)
{
	char domain[ALIGN_NAME_MAX + 1];

	if (a == NULL) {
		WHY("SigningAuthority none: whatever the SigningTable matches is signed");
		return true;
	}
	if (login == NULL || login[0] == '\0') {
		WHY("no SASL login (InternalHosts or local submission): signed as before");
		return true;
	}
	if (from_domain == NULL || align_normalize(from_domain, domain, sizeof(domain)) != 0) {
		WHY("From domain \"%s\" is not a valid name", from_domain ? from_domain : "");
		return false;
	}
	if (a->mode == SIGNING_AUTHORITY_FILE)
		return authority_file_allows(a, login, domain, why, len);
	const char *at = strrchr(login, '@');
	if (at == NULL || at[1] == '\0') {
		WHY("sasl-domain: login %s has no domain", login);
		return false;
	}
	if (align_relaxed(at + 1, domain)) {
		WHY("sasl-domain: %s has the organizational domain of login %s", domain, login);
		return true;
	}
	WHY("sasl-domain: %s does not have the organizational domain of login %s", domain, login);
	return false;
}
