/*
 * keytable - OpenDKIM's KeyTable and SigningTable, read once per load and
 * then answered from hash tables.
 *
 * Does: parse both files with OpenDKIM's syntax and lookup order, load
 * every key file once (privkey), make the DKIM_LIB with our options.
 * Does not: sign (signer), parse From headers (address), or support
 * OpenDKIM's other dataset types (csl:, db:, ldap:, ...: a load error).
 *
 * Decisions a reader would ask about:
 * - refile tables are OpenDKIM's "first matching line wins" over regular
 *   expressions. Scanning 100,000 of them per message is what makes
 *   OpenDKIM slow, so the three forms nearly every table consists of
 *   (user@domain, *@domain, *@*.domain) go into hash tables: each rule
 *   keeps its line number, rules with the same hash key are chained in
 *   file order, and a lookup takes the lowest line numbers among the hash
 *   hits and the few remaining regex rules (scanned in file order, and
 *   only up to the best line found so far). Same answer as a scan.
 * - A SigningTable line naming a key the KeyTable lacks is a load error,
 *   not a per-message failure as in OpenDKIM: it can only ever fail.
 * - Key files named with '%' depend on the message's domain, so they are
 *   read on first use for a domain and cached under a mutex (the only
 *   state written after load). Failures are not cached: a key file an
 *   admin adds is found on the next message; the cache is bounded by the
 *   key files that exist.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dkimlib.h"
#include "keytable.h"
#include "log.h"
#include "strmap.h"

/* Rules one lookup can pick before handing out the first max of them. */
#define KEYTABLE_PICK_MAX 16

struct keytable_entry {		/* one KeyTable line */
	char *domain;			/* d=, or "%": the From domain */
	char *selector;
	const struct privkey *key;	/* NULL when path_template is set */
	char *path_template;		/* key file path holding '%' */
	int line;
};

struct keytable_rule {		/* one SigningTable line */
	int line;
	bool name_is_domain;		/* NAME "%" */
	const struct keytable_entry *entry;	/* unless name_is_domain */
	char *identity;			/* SIGNER ('%' = From domain) or NULL */
	regex_t *re;			/* refile pattern that is not indexed */
	struct keytable_rule *next;	/* next rule of the same hash key */
	struct keytable_rule *tail;	/* last rule of the chain (on the head) */
};

/* Keys read after load, for key paths with '%'. */
struct keytable_dynamic {
	pthread_mutex_t lock;
	struct strmap *keys;		/* resolved path -> privkey */
};

struct keytable {
	DKIM_LIB *lib;
	char *key_path;			/* KeyTable file, for diagnostics */
	char *sign_path;		/* SigningTable file */
	bool refile;
	bool require_safe;
	struct strmap *entries;		/* NAME -> entry */
	struct strmap *keys;		/* key path or inline text -> privkey */
	struct strmap *exact;		/* plain: every key; refile: literal patterns */
	struct strmap *domains;		/* refile "*@D": D */
	struct strmap *parents;		/* refile "*@*.D": D */
	struct keytable_rule **rules;	/* all rules, to free them */
	size_t nrules, rules_cap;
	struct keytable_rule **patterns;	/* refile regex rules, file order */
	size_t npatterns, patterns_cap;
	struct keytable_dynamic *dynamic;
};

/* One line of a table, split the OpenDKIM way. */
struct keytable_line {
	FILE *fp;
	const char *path;
	int number;
	char *buf;
	size_t cap;
	char *key;			/* first word */
	char *value;			/* the rest, trimmed; NULL when none */
};

static bool keytable_valid_domain(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n > KEYTABLE_DOMAIN_MAX || d[0] == '.' || strstr(d, "..") != NULL)
		return false;
	for (const char *p = d; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
			return false;
	return true;
}

static bool keytable_valid_selector(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > KEYTABLE_SELECTOR_MAX || s[0] == '.')
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
			return false;
	return true;
}

/*
 * Next line with content: '#' or the end of line ends it, blanks around
 * are trimmed, the first word is the key and everything after the blanks
 * that follow it is the value. Returns 1, 0 at end of file, -1 when a
 * line is too long (reported; the caller goes on).
 */
static int keytable_next_line(struct keytable_line *ln, struct diag *errs)
{
	ssize_t n;

	while ((n = getline(&ln->buf, &ln->cap, ln->fp)) >= 0) {
		ln->number++;
		if (n > KEYTABLE_LINE_MAX) {
			diag_add(errs, ln->path, ln->number, "line longer than %d bytes",
				KEYTABLE_LINE_MAX);
			return -1;
		}
		char *p = ln->buf;
		p[strcspn(p, "#\n")] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			continue;
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = '\0';
		ln->key = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		ln->value = NULL;
		if (*p) {
			*p++ = '\0';
			while (isspace((unsigned char)*p))
				p++;
			ln->value = p;
		}
		return 1;
	}
	return 0;
}

/* "refile:PATH", "file:PATH" or "PATH"; other dataset types are errors. */
static const char *keytable_dataset(const char *spec, bool *refile, const char *conf,
	int line, const char *setting, struct diag *errs)
{
	const char *colon = strchr(spec, ':');

	*refile = false;
	if (strncmp(spec, "refile:", 7) == 0) {
		*refile = true;
		return spec + 7;
	}
	if (strncmp(spec, "file:", 5) == 0)
		return spec + 5;
	if (colon != NULL && colon > spec && spec[0] != '/' && spec[0] != '.') {
		bool word = true;
		for (const char *p = spec; p < colon; p++)
			if (!isalpha((unsigned char)*p))
				word = false;
		if (word) {
			diag_add(errs, conf, line, "%s %s: only file: and refile: tables are supported",
				setting, spec);
			return NULL;
		}
	}
	return spec;
}

static FILE *keytable_open(const char *path, struct keytable_line *ln, struct diag *errs)
{
	memset(ln, 0, sizeof(*ln));
	ln->path = path;
	ln->fp = fopen(path, "re");
	if (ln->fp == NULL)
		diag_add(errs, path, 0, "%s", strerror(errno));
	return ln->fp;
}

static void keytable_close(struct keytable_line *ln)
{
	if (ln->fp)
		fclose(ln->fp);
	free(ln->buf);
}

static void keytable_entry_free(void *p)
{
	struct keytable_entry *e = p;

	free(e->domain);
	free(e->selector);
	free(e->path_template);
	free(e);
}

static void keytable_key_free(void *p)
{
	privkey_free(p);
}

/* The KEY field names a key file; anything else is the key itself. */
static bool keytable_is_path(const char *data)
{
	return data[0] == '/' || strncmp(data, "./", 2) == 0 || strncmp(data, "../", 3) == 0;
}

/* A key file (once per path) or inline key data (once per text). */
static const struct privkey *keytable_key(struct keytable *kt, const char *data,
	char *why, size_t len)
{
	struct privkey *k = strmap_get(kt->keys, data);

	if (k != NULL)
		return k;
	k = keytable_is_path(data) ? privkey_load_file(data, kt->require_safe, why, len)
				   : privkey_load_text(data, why, len);
	if (k != NULL && strmap_put(kt->keys, data, k) < 0) {
		privkey_free(k);
		snprintf(why, len, "out of memory");
		return NULL;
	}
	return k;
}

/*
 * RequireSafeKeys for keys written in the KeyTable itself: the mode of
 * the open file (fstat: what we check is what we read). Fills unsafe
 * with the why when such a key must be refused, else leaves it empty.
 */
static void keytable_check_mode(const struct keytable *kt, struct keytable_line *ln,
	char *unsafe, size_t len)
{
	struct stat st;

	unsafe[0] = '\0';
	if (!kt->require_safe)
		return;
	if (fstat(fileno(ln->fp), &st) != 0)
		snprintf(unsafe, len, "%s: %s", ln->path, strerror(errno));
	else
		privkey_mode_unsafe(ln->path, st.st_mode, unsafe, len);
}

static void keytable_read_keys(struct keytable *kt, struct diag *errs)
{
	struct keytable_line ln;
	char why[512], unsafe[PATH_MAX + 96];
	int r;

	if (keytable_open(kt->key_path, &ln, errs) == NULL)
		return;
	keytable_check_mode(kt, &ln, unsafe, sizeof(unsafe));
	while ((r = keytable_next_line(&ln, errs)) != 0) {
		if (r < 0)
			continue;
		char *c1 = ln.value ? strchr(ln.value, ':') : NULL;
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2 == NULL || c2[1] == '\0') {
			diag_add(errs, ln.path, ln.number,
				"key %s: DOMAIN:SELECTOR:KEY expected", ln.key);
			continue;
		}
		*c1 = *c2 = '\0';
		const char *domain = ln.value, *selector = c1 + 1, *data = c2 + 1;
		if (strcmp(domain, "%") != 0 && !keytable_valid_domain(domain)) {
			diag_add(errs, ln.path, ln.number, "key %s: bad domain \"%s\"", ln.key, domain);
			continue;
		}
		if (!keytable_valid_selector(selector)) {
			diag_add(errs, ln.path, ln.number, "key %s: bad selector \"%s\"",
				ln.key, selector);
			continue;
		}
		if (strmap_get(kt->entries, ln.key) != NULL) {
			log_warning("%s:%d: key %s named again; the first line counts (as in OpenDKIM)",
				ln.path, ln.number, ln.key);
			continue;
		}
		struct keytable_entry *e = calloc(1, sizeof(*e));
		if (e == NULL || (e->domain = strdup(domain)) == NULL ||
		    (e->selector = strdup(selector)) == NULL || strmap_put(kt->entries, ln.key, e) < 0) {
			if (e)
				keytable_entry_free(e);
			diag_add(errs, ln.path, ln.number, "out of memory");
			break;
		}
		e->line = ln.number;
		if (data[0] == '/' && strchr(data, '%') != NULL) {
			if ((e->path_template = strdup(data)) == NULL)
				diag_add(errs, ln.path, ln.number, "out of memory");
		} else if (!keytable_is_path(data) && unsafe[0] != '\0') {
			diag_add(errs, ln.path, ln.number, "key %s: private key inline in %s",
				ln.key, unsafe);
		} else if ((e->key = keytable_key(kt, data, why, sizeof(why))) == NULL) {
			diag_add(errs, ln.path, ln.number, "%s", why);
		}
	}
	keytable_close(&ln);
}

static bool keytable_literal(const char *s)
{
	return s[0] != '\0' && strpbrk(s, "*[]()?{}|^$\\") == NULL;
}

/* OpenDKIM's dkimf_mkregexp: '*' is ".*", '.' and '+' are literal. */
static regex_t *keytable_compile(const char *pattern, char *why, size_t len)
{
	size_t n = strlen(pattern);
	char *re_text = malloc(2 * n + 3);
	regex_t *re = malloc(sizeof(*re));
	char *q = re_text;

	if (re_text == NULL || re == NULL) {
		free(re_text);
		free(re);
		snprintf(why, len, "out of memory");
		return NULL;
	}
	*q++ = '^';
	for (const char *p = pattern; *p; p++) {
		if (*p == '*') {
			*q++ = '.';
			*q++ = '*';
		} else if (*p == '.' || *p == '+') {
			*q++ = '\\';
			*q++ = *p;
		} else {
			*q++ = *p;
		}
	}
	*q++ = '$';
	*q = '\0';
	int rc = regcomp(re, re_text, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	free(re_text);
	if (rc != 0) {
		char msg[128];
		regerror(rc, re, msg, sizeof(msg));
		snprintf(why, len, "pattern %s: %s", pattern, msg);
		free(re);
		return NULL;
	}
	return re;
}

/* Appends r to the chain under key, keeping file order. */
static int keytable_chain(struct strmap *m, const char *key, struct keytable_rule *r)
{
	struct keytable_rule *head = strmap_get(m, key);

	if (head != NULL) {
		head->tail->next = r;
		head->tail = r;
		return 0;
	}
	r->tail = r;
	return strmap_put(m, key, r) < 0 ? -1 : 0;
}

static int keytable_grow(struct keytable_rule ***v, size_t *n, size_t *cap)
{
	if (*n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 1024;
	struct keytable_rule **nv = realloc(*v, ncap * sizeof(**v));
	if (nv == NULL)
		return -1;
	*v = nv;
	*cap = ncap;
	return 0;
}

/* Files a refile rule under its hash key, or as a regex rule. */
static int keytable_index_pattern(struct keytable *kt, const char *pat, struct keytable_rule *r,
	char *why, size_t len)
{
	if (keytable_literal(pat))
		return keytable_chain(kt->exact, pat, r);
	if (strncmp(pat, "*@*.", 4) == 0 && keytable_literal(pat + 4) && !strchr(pat + 4, '@'))
		return keytable_chain(kt->parents, pat + 4, r);
	if (strncmp(pat, "*@", 2) == 0 && keytable_literal(pat + 2) && !strchr(pat + 2, '@'))
		return keytable_chain(kt->domains, pat + 2, r);
	if ((r->re = keytable_compile(pat, why, len)) == NULL)
		return -2;
	if (keytable_grow(&kt->patterns, &kt->npatterns, &kt->patterns_cap) < 0)
		return -1;
	kt->patterns[kt->npatterns++] = r;
	return 0;
}

static void keytable_read_signing(struct keytable *kt, struct diag *errs)
{
	struct keytable_line ln;
	char why[256];
	int r;

	if (keytable_open(kt->sign_path, &ln, errs) == NULL)
		return;
	while ((r = keytable_next_line(&ln, errs)) != 0) {
		if (r < 0)
			continue;
		if (ln.value == NULL) {
			diag_add(errs, ln.path, ln.number, "%s: no key name", ln.key);
			continue;
		}
		char *signer = strchr(ln.value, ':');
		if (signer != NULL)
			*signer++ = '\0';
		const char *name = ln.value;
		const struct keytable_entry *entry = NULL;
		if (strcmp(name, "%") != 0 && (entry = strmap_get(kt->entries, name)) == NULL) {
			diag_add(errs, ln.path, ln.number, "key name %s is not in the KeyTable %s",
				name, kt->key_path);
			continue;
		}
		if (!kt->refile && strmap_get(kt->exact, ln.key) != NULL) {
			log_warning("%s:%d: %s listed again; the first line counts (as in OpenDKIM)",
				ln.path, ln.number, ln.key);
			continue;
		}
		struct keytable_rule *rule = calloc(1, sizeof(*rule));
		if (rule == NULL || keytable_grow(&kt->rules, &kt->nrules, &kt->rules_cap) < 0) {
			free(rule);
			diag_add(errs, ln.path, ln.number, "out of memory");
			break;
		}
		kt->rules[kt->nrules++] = rule;
		rule->line = ln.number;
		rule->entry = entry;
		rule->name_is_domain = entry == NULL;
		if (signer != NULL && *signer != '\0' && (rule->identity = strdup(signer)) == NULL) {
			diag_add(errs, ln.path, ln.number, "out of memory");
			break;
		}
		int rc = kt->refile ? keytable_index_pattern(kt, ln.key, rule, why, sizeof(why))
				    : keytable_chain(kt->exact, ln.key, rule);
		if (rc == -2) {
			diag_add(errs, ln.path, ln.number, "%s", why);
		} else if (rc < 0) {
			diag_add(errs, ln.path, ln.number, "out of memory");
			break;
		}
	}
	keytable_close(&ln);
}

struct keytable *keytable_load(const struct settings *s, struct diag *errs)
{
	const char *conf = s->path ? s->path : "bulkmilter.conf";
	size_t before = diag_errors(errs);
	bool refile;

	if (s->key_table == NULL) {
		if (s->signing_table != NULL)
			diag_add(errs, conf, settings_line(s, "SigningTable"),
				 "SigningTable is set but KeyTable is not");
		return NULL;
	}
	if (s->signing_table == NULL) {
		diag_add(errs, conf, settings_line(s, "KeyTable"), "KeyTable is set but SigningTable is not");
		return NULL;
	}
	const char *key_path = keytable_dataset(s->key_table, &refile, conf,
		settings_line(s, "KeyTable"), "KeyTable", errs);
	if (key_path != NULL && refile) {
		diag_add(errs, conf, settings_line(s, "KeyTable"), "KeyTable %s: a KeyTable cannot be a refile",
			 s->key_table);
		key_path = NULL;
	}
	const char *sign_path = keytable_dataset(s->signing_table, &refile, conf,
		settings_line(s, "SigningTable"), "SigningTable", errs);
	if (key_path == NULL || sign_path == NULL)
		return NULL;

	struct keytable *kt = calloc(1, sizeof(*kt));
	if (kt == NULL || (kt->dynamic = calloc(1, sizeof(*kt->dynamic))) == NULL) {
		free(kt);
		diag_add(errs, conf, 0, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&kt->dynamic->lock, NULL);
	kt->refile = refile;
	kt->require_safe = s->require_safe_keys;
	kt->key_path = strdup(key_path);
	kt->sign_path = strdup(sign_path);
	kt->entries = strmap_new(1024, true);
	kt->keys = strmap_new(16, false);
	kt->exact = strmap_new(1024, true);
	kt->domains = strmap_new(1024, true);
	kt->parents = strmap_new(16, true);
	kt->dynamic->keys = strmap_new(16, false);
	if (!kt->key_path || !kt->sign_path || !kt->entries || !kt->keys || !kt->exact ||
	    !kt->domains || !kt->parents || !kt->dynamic->keys) {
		diag_add(errs, conf, 0, "out of memory");
		keytable_free(kt);
		return NULL;
	}
	char why[256];
	if ((kt->lib = dkimlib_open(s, why, sizeof(why))) == NULL)
		diag_add(errs, conf, 0, "%s", why);
	keytable_read_keys(kt, errs);
	keytable_read_signing(kt, errs);
	if (diag_errors(errs) > before) {
		keytable_free(kt);
		return NULL;
	}
	return kt;
}

/* The rules picked for one address, lowest line (refile) or lookup order first. */
struct keytable_pick {
	const struct keytable_rule *rule[KEYTABLE_PICK_MAX];
	size_t n, max;
};

static bool keytable_pick_full(const struct keytable_pick *p)
{
	return p->n == p->max;
}

/* Keeps the max lowest line numbers, sorted. */
static void keytable_pick_by_line(struct keytable_pick *p, const struct keytable_rule *r)
{
	size_t i = p->n;

	if (keytable_pick_full(p)) {
		if (r->line >= p->rule[p->max - 1]->line)
			return;
		i = p->max - 1;
	} else {
		p->n++;
	}
	while (i > 0 && p->rule[i - 1]->line > r->line) {
		p->rule[i] = p->rule[i - 1];
		i--;
	}
	p->rule[i] = r;
}

static void keytable_pick_chain(struct keytable_pick *p, const struct keytable_rule *r)
{
	for (; r != NULL; r = r->next) {
		if (keytable_pick_full(p) && r->line >= p->rule[p->max - 1]->line)
			return;
		keytable_pick_by_line(p, r);
	}
}

static void keytable_pick_refile(const struct keytable *kt, const char *address,
	const char *domain, struct keytable_pick *p)
{
	keytable_pick_chain(p, strmap_get(kt->exact, address));
	keytable_pick_chain(p, strmap_get(kt->domains, domain));
	for (const char *d = strchr(domain, '.'); d != NULL; d = strchr(d + 1, '.'))
		keytable_pick_chain(p, strmap_get(kt->parents, d + 1));
	for (size_t i = 0; i < kt->npatterns; i++) {
		const struct keytable_rule *r = kt->patterns[i];
		if (keytable_pick_full(p) && r->line >= p->rule[p->max - 1]->line)
			break;
		if (regexec(r->re, address, 0, NULL, 0) == 0)
			keytable_pick_by_line(p, r);
	}
}

/* One plain-table key: "user@rest", or "rest" when user is NULL. */
static void keytable_pick_key(const struct keytable *kt, struct keytable_pick *p,
	const char *user, const char *rest)
{
	char key[2 * ADDRESS_MAX + 8];

	if (keytable_pick_full(p))
		return;
	if (user != NULL)
		snprintf(key, sizeof(key), "%s@%s", user, rest);
	const struct keytable_rule *r = strmap_get(kt->exact, user != NULL ? key : rest);
	if (r != NULL)
		p->rule[p->n++] = r;
}

/* OpenDKIM's order for plain tables; each key gives at most one rule. */
static void keytable_pick_plain(const struct keytable *kt, const char *user, const char *domain,
	struct keytable_pick *p)
{
	keytable_pick_key(kt, p, user, domain);
	keytable_pick_key(kt, p, NULL, domain);
	for (const char *d = strchr(domain, '.'); d != NULL; d = strchr(d + 1, '.')) {
		keytable_pick_key(kt, p, user, d);
		keytable_pick_key(kt, p, NULL, d);
	}
	keytable_pick_key(kt, p, user, "*");
	keytable_pick_key(kt, p, NULL, "*");
}

static const struct privkey *keytable_dynamic_key(const struct keytable *kt,
	const struct keytable_entry *e, const char *domain, char *why, size_t len)
{
	char path[PATH_MAX];
	char inner[512];
	size_t n = 0;

	for (const char *p = e->path_template; *p; p++) {
		const char *piece = *p == '%' ? domain : p;
		size_t plen = *p == '%' ? strlen(domain) : 1;
		if (n + plen >= sizeof(path)) {
			snprintf(why, len, "%s:%d: key path too long for %s", kt->key_path, e->line,
				domain);
			return NULL;
		}
		memcpy(path + n, piece, plen);
		n += plen;
	}
	path[n] = '\0';

	struct keytable_dynamic *dyn = kt->dynamic;
	pthread_mutex_lock(&dyn->lock);
	struct privkey *k = strmap_get(dyn->keys, path);
	if (k == NULL) {
		k = privkey_load_file(path, kt->require_safe, inner, sizeof(inner));
		if (k != NULL && strmap_put(dyn->keys, path, k) < 0) {
			privkey_free(k);
			k = NULL;
			snprintf(inner, sizeof(inner), "out of memory");
		}
	}
	pthread_mutex_unlock(&dyn->lock);
	if (k == NULL)
		snprintf(why, len, "%s:%d: %s", kt->key_path, e->line, inner);
	return k;
}

/* i= only when its domain is d= or under it, as OpenDKIM documents. */
static void keytable_identity(const char *tmpl, const char *from_domain, const char *d,
	char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (const char *p = tmpl; *p; p++) {
		const char *piece = *p == '%' ? from_domain : p;
		size_t plen = *p == '%' ? strlen(from_domain) : 1;
		if (n + plen >= len) {
			out[0] = '\0';
			return;
		}
		memcpy(out + n, piece, plen);
		n += plen;
	}
	out[n] = '\0';
	const char *at = strrchr(out, '@');
	size_t dl = strlen(d), al = at ? strlen(at + 1) : 0;
	if (at == NULL || !(strcasecmp(at + 1, d) == 0 ||
			    (al > dl && at[al - dl] == '.' && strcasecmp(at + 1 + al - dl, d) == 0))) {
		log_debug("signer identity %s is not within d=%s: left out", out, d);
		out[0] = '\0';
	}
}

static void keytable_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int keytable_resolve(const struct keytable *kt, const struct keytable_rule *r,
	const char *domain, bool domain_ok, struct keytable_signing *out, char *why, size_t len)
{
	const struct keytable_entry *e = r->entry;

	if (r->name_is_domain) {
		if (!domain_ok || (e = strmap_get(kt->entries, domain)) == NULL) {
			snprintf(why, len, "%s:%d: no KeyTable entry named %s", kt->sign_path,
				r->line, domain);
			return -1;
		}
	}
	bool any_domain = strcmp(e->domain, "%") == 0;
	if ((any_domain || e->path_template) && !domain_ok) {
		snprintf(why, len, "%s:%d: From domain %s is not usable as d= or in a key path",
			kt->key_path, e->line, domain);
		return -1;
	}
	/* both were checked against these sizes (keytable_valid_domain/selector) */
	keytable_copy(out->domain, sizeof(out->domain), any_domain ? domain : e->domain);
	keytable_copy(out->selector, sizeof(out->selector), e->selector);
	out->key = e->path_template ? keytable_dynamic_key(kt, e, domain, why, len) : e->key;
	if (out->key == NULL)
		return -1;
	out->identity[0] = '\0';
	if (r->identity != NULL)
		keytable_identity(r->identity, domain, out->domain, out->identity,
			sizeof(out->identity));
	out->table = kt->sign_path;
	out->line = r->line;
	return 0;
}

int keytable_lookup(const struct keytable *kt, const char *address, bool multiple,
	struct keytable_signing *out, size_t max, char *why, size_t len)
{
	struct keytable_pick pick = { .n = 0 };
	char user[ADDRESS_MAX + 1], domain[ADDRESS_MAX + 1];
	const char *at = strrchr(address, '@');

	if (at == NULL || (size_t)(at - address) > ADDRESS_MAX || strlen(at + 1) > ADDRESS_MAX) {
		snprintf(why, len, "%s is not a mail address", address);
		return -1;
	}
	memcpy(user, address, (size_t)(at - address));
	user[at - address] = '\0';
	/* lower case: d= and key file names; every table lookup ignores case anyway */
	size_t i;
	for (i = 0; at[1 + i]; i++)
		domain[i] = (char)tolower((unsigned char)at[1 + i]);
	domain[i] = '\0';

	pick.max = multiple ? max : 1;
	if (pick.max > KEYTABLE_PICK_MAX)
		pick.max = KEYTABLE_PICK_MAX;
	if (pick.max == 0)
		return 0;
	if (kt->refile)
		keytable_pick_refile(kt, address, domain, &pick);
	else
		keytable_pick_plain(kt, user, domain, &pick);

	bool domain_ok = keytable_valid_domain(domain);
	for (i = 0; i < pick.n; i++)
		if (keytable_resolve(kt, pick.rule[i], domain, domain_ok, &out[i], why, len) < 0)
			return -1;
	return (int)pick.n;
}

DKIM_LIB *keytable_library(const struct keytable *kt)
{
	return kt->lib;
}

size_t keytable_count(const struct keytable *kt)
{
	return strmap_count(kt->entries);
}

struct keytable_walk {
	const struct keytable *kt;
	void (*fn)(const struct keytable_entry_info *e, void *arg);
	void *arg;
};

static void keytable_walk_one(const char *name, void *value, void *arg)
{
	const struct keytable_walk *w = arg;
	const struct keytable_entry *e = value;
	struct keytable_entry_info info = {
		.name = name, .domain = e->domain, .selector = e->selector, .key = e->key,
		.path_template = e->path_template, .table = w->kt->key_path, .line = e->line,
	};
	w->fn(&info, w->arg);
}

void keytable_entries(const struct keytable *kt,
		      void (*fn)(const struct keytable_entry_info *e, void *arg), void *arg)
{
	struct keytable_walk w = { kt, fn, arg };
	strmap_foreach(kt->entries, keytable_walk_one, &w);
}

void keytable_free(struct keytable *kt)
{
	if (kt == NULL)
		return;
	for (size_t i = 0; i < kt->nrules; i++) {
		struct keytable_rule *r = kt->rules[i];
		if (r->re) {
			regfree(r->re);
			free(r->re);
		}
		free(r->identity);
		free(r);
	}
	free(kt->rules);
	free(kt->patterns);
	strmap_free(kt->exact, NULL);
	strmap_free(kt->domains, NULL);
	strmap_free(kt->parents, NULL);
	strmap_free(kt->entries, keytable_entry_free);
	strmap_free(kt->keys, keytable_key_free);
	if (kt->dynamic) {
		strmap_free(kt->dynamic->keys, keytable_key_free);
		pthread_mutex_destroy(&kt->dynamic->lock);
		free(kt->dynamic);
	}
	dkimlib_close(kt->lib);
	free(kt->key_path);
	free(kt->sign_path);
	free(kt);
}
