/*
 * policy - the policy file: classes, assign rules, and lookup.
 *
 * Parsing is line-oriented: a line is split into words (a "quoted text"
 * is one word, '#' starts a comment, '{' and '}' are words of their own),
 * so "class x { }" and a block spread over lines read the same. Every
 * error is reported with FILE:LINE and parsing goes on, so an admin sees
 * all mistakes at once; a policy with any error is never used.
 *
 * Lookup walks the assign lines in order (first match wins). Exact and
 * glob values are compared directly; file: maps (policy_map.c) are hash
 * tables built at load, so a 100,000-account map costs one hash probe.
 * The rate lines (COUNT/PERIOD, calendar windows, by and to) are read by
 * policy_rate.c, the safety lines by policy_safety.c.
 *
 * The envelope sender of inbound mail proves nothing (anyone can write
 * any MAIL FROM), so assign sender and assign domain lines, of every
 * kind, look at outbound mail only: a stranger cannot forge his way out
 * of the inbound class nor into a local account's class. An inbound
 * class may still take its account from the sender; ratelimit keeps
 * inbound buckets apart from the outbound ones of the same name.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "policy.h"
#include "policy_map.h"
#include "policy_rate.h"
#include "strmap.h"

#define POLICY_LINE_MAX 8192	/* longer lines are refused */
#define POLICY_WORDS_MAX 64	/* words on one line */
#define POLICY_ASSIGN_MAX 100000	/* assign lines (maps hold the bulk) */

enum assign_match { MATCH_ANY, MATCH_EXACT, MATCH_GLOB, MATCH_CIDR, MATCH_MAP };

struct policy_assign {
	int line;
	enum policy_key key;
	enum assign_match match;
	char *value;				/* exact/glob text, or map path */
	struct cidr cidr;
	struct policy_map *map;			/* MATCH_MAP */
	const struct policy_class *cls;		/* NULL for maps */
};

struct policy {
	char *path;
	struct policy_class *classes;
	size_t class_count;
	struct strmap *class_by_name;		/* name -> index + 1 */
	struct policy_assign *assigns;
	size_t assign_count;
	struct calendar_zone **zones;		/* every zone a class uses, once */
	size_t zone_count;
};

struct parse_ctx {
	struct policy *p;
	struct diag *errs;
	const char *file;
	int line;
	struct policy_class *open;		/* the class being defined */
	/* assign lines name classes that may be defined later: resolve at end */
	char **pending_class;			/* per assign, the class name */
};

/* Reports an error at the current line; returns -1. */
#define perr(c, ...) diag_fail((c)->errs, (c)->file, (c)->line, __VA_ARGS__)

static const char *const key_names[] = { "sasl", "sender", "domain", "ip", "outbound", "inbound" };
static const char *const account_names[] = { "sasl", "sender", "domain", "ip" };
static const char *const action_names[] = { "none", "tempfail", "reject", "hold", "tag" };

const char *policy_action_name(enum policy_action a)
{
	return (size_t)a < sizeof(action_names) / sizeof(action_names[0]) ? action_names[a] : "?";
}

/*
 * Splits a line into words, copied into store (at least twice the line's
 * length plus one). Returns the count, or -1 after reporting an error
 * (unterminated quote, too many words).
 */
static int split_words(struct parse_ctx *c, const char *line, char *store, char **words, bool *quoted)
{
	int n = 0;
	const char *p = line;
	char *out = store;

	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == '#')
			return n;
		if (n == POLICY_WORDS_MAX)
			return perr(c, "more than %d words on one line", POLICY_WORDS_MAX);
		words[n] = out;
		quoted[n] = *p == '"';
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				*out++ = *p;
			}
			if (*p != '"')
				return perr(c, "unterminated quoted text");
			p++;
		} else if (*p == '{' || *p == '}') {
			*out++ = *p++;
		} else {
			while (*p && !isspace((unsigned char)*p) && *p != '{' && *p != '}' && *p != '#')
				*out++ = *p++;
		}
		*out++ = '\0';
		n++;
	}
}

static int parse_action(struct parse_ctx *c, const char *directive, char **w, bool *quoted, int n,
			unsigned allowed, enum policy_action *action, char *text, size_t textlen)
{
	if (n < 2 || n > 3)
		return perr(c, "%s: expected an action%s", directive, text ? " and an optional \"text\"" : "");
	for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++) {
		if ((allowed & (1u << i)) && strcasecmp(w[1], action_names[i]) == 0) {
			*action = (enum policy_action)i;
			if (n == 3) {
				if (text == NULL || !quoted[2])
					return perr(c, "%s: unexpected %s", directive, w[2]);
				if (strlen(w[2]) >= textlen)
					return perr(c, "%s: text longer than %zu characters", directive, textlen - 1);
				for (const char *p = w[2]; *p; p++)
					if ((unsigned char)*p < ' ' || *p == 0x7f)
						return perr(c, "%s: control characters in text", directive);
				strcpy(text, w[2]);
			}
			return 0;
		}
	}
	char list[128] = "";
	for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++) {
		if (allowed & (1u << i)) {
			if (list[0])
				strcat(list, ", ");
			strcat(list, action_names[i]);
		}
	}
	return perr(c, "%s: unknown action %s (expected %s)", directive, w[1], list);
}

static int parse_bulk(struct parse_ctx *c, char **w, int n)
{
	struct policy_class *k = c->open;
	struct policy_bulk_rule r = { 0 };

	if (n < 2)
		return perr(c, "bulk: expected a condition (always, never, recipients >= N, header NAME, precedence, volume >= N/PERIOD)");
	if (k->bulk_count >= POLICY_BULK_MAX)
		return perr(c, "bulk: more than %d bulk lines in class %s", POLICY_BULK_MAX, k->name);
	if (strcasecmp(w[1], "always") == 0 && n == 2) {
		r.kind = BULK_ALWAYS;
	} else if (strcasecmp(w[1], "never") == 0 && n == 2) {
		r.kind = BULK_NEVER;
	} else if (strcasecmp(w[1], "precedence") == 0 && n == 2) {
		r.kind = BULK_PRECEDENCE;
	} else if (strcasecmp(w[1], "header") == 0) {
		if (n != 3 || strchr(w[2], ':'))
			return perr(c, "bulk header: expected one header NAME");
		r.kind = BULK_HEADER;
		if ((r.header = strdup(w[2])) == NULL)
			return perr(c, "out of memory");
	} else if (strcasecmp(w[1], "recipients") == 0 || strcasecmp(w[1], "volume") == 0) {
		bool volume = strcasecmp(w[1], "volume") == 0;
		if (n != 4 || strcmp(w[2], ">=") != 0)
			return perr(c, "bulk %s: expected %s >= %s", w[1], w[1], volume ? "N/PERIOD" : "N");
		if (volume) {
			r.kind = BULK_VOLUME;
			if (policy_parse_rate(w[3], &r.volume) != 0 || r.volume.calendar != CALENDAR_NONE)
				return perr(c, "bulk volume: bad rate %s (expected N/PERIOD such as 5000/1d; no calendar periods)", w[3]);
			k->has_volume = true;
		} else {
			char *end;
			errno = 0;
			r.kind = BULK_RECIPIENTS;
			r.min = strtoul(w[3], &end, 10);
			if (!isdigit((unsigned char)w[3][0]) || *end || errno || r.min == 0)
				return perr(c, "bulk recipients: expected a positive number, got %s", w[3]);
		}
	} else {
		return perr(c, "bulk: unknown condition %s (expected always, never, recipients >= N, header NAME, precedence, volume >= N/PERIOD)", w[1]);
	}
	/* "never" beside a rule that can hold would be silently meaningless */
	for (size_t i = 0; i < k->bulk_count; i++) {
		if ((r.kind == BULK_NEVER) != (k->bulk[i].kind == BULK_NEVER)) {
			free(r.header);
			return perr(c, "bulk never cannot be combined with other bulk lines in class %s", k->name);
		}
	}
	k->bulk[k->bulk_count++] = r;
	return 0;
}

static int parse_bulk_require(struct parse_ctx *c, char **w, int n)
{
	static const struct { const char *name; unsigned bit; } checks[] = {
		{ "dkim-aligned", BULK_REQ_DKIM_ALIGNED }, { "spf-aligned", BULK_REQ_SPF_ALIGNED },
		{ "list-unsubscribe", BULK_REQ_LIST_UNSUB }, { "dmarc-record", BULK_REQ_DMARC_RECORD },
	};
	int rc = 0;
	if (n < 2)
		return perr(c, "bulk-require: expected dkim-aligned, spf-aligned, list-unsubscribe or dmarc-record");
	for (int i = 1; i < n; i++) {
		size_t j;
		for (j = 0; j < sizeof(checks) / sizeof(checks[0]); j++)
			if (strcasecmp(w[i], checks[j].name) == 0)
				break;
		if (j == sizeof(checks) / sizeof(checks[0]))
			rc = perr(c, "bulk-require: unknown check %s (expected dkim-aligned, spf-aligned, list-unsubscribe or dmarc-record)", w[i]);
		else
			c->open->bulk_require |= checks[j].bit;
	}
	return rc;
}

static int parse_account(struct parse_ctx *c, char **w, int n)
{
	struct policy_class *k = c->open;
	if (n < 2 || n - 1 > POLICY_ACCOUNT_SOURCES_MAX)
		return perr(c, "account: expected 1 to %d of sasl, sender, domain, ip", POLICY_ACCOUNT_SOURCES_MAX);
	k->account_count = 0;
	for (int i = 1; i < n; i++) {
		size_t j;
		for (j = 0; j < sizeof(account_names) / sizeof(account_names[0]); j++)
			if (strcasecmp(w[i], account_names[j]) == 0)
				break;
		if (j == sizeof(account_names) / sizeof(account_names[0]))
			return perr(c, "account: unknown source %s (expected sasl, sender, domain or ip)", w[i]);
		k->account[k->account_count++] = (enum policy_account_source)j;
	}
	return 0;
}

/* A zone the policy loaded already, or loads now; NULL after an error. */
static const struct calendar_zone *policy_zone(struct parse_ctx *c, const char *name, bool report)
{
	struct policy *p = c->p;
	char err[256];

	for (size_t i = 0; i < p->zone_count; i++)
		if (strcmp(calendar_zone_name(p->zones[i]), name) == 0)
			return p->zones[i];
	struct calendar_zone **grown = realloc(p->zones, (p->zone_count + 1) * sizeof(*grown));
	if (grown == NULL) {
		perr(c, "out of memory");
		return NULL;
	}
	p->zones = grown;
	struct calendar_zone *z = calendar_zone_load(name, err, sizeof(err));
	if (z == NULL) {
		if (report)
			perr(c, "timezone: %s", err);
		return NULL;
	}
	p->zones[p->zone_count++] = z;
	return z;
}

static int parse_timezone(struct parse_ctx *c, char **w, int n)
{
	struct policy_class *k = c->open;

	if (k->timezone_line)
		return perr(c, "timezone: already set for class %s at line %d", k->name, k->timezone_line);
	if (n != 2)
		return perr(c, "timezone: expected one IANA zone name such as Europe/Paris");
	k->timezone_line = c->line;
	if ((k->zone = policy_zone(c, w[1], true)) == NULL)
		return -1;
	return 0;
}

/* Directives a class gives at most once: parse_directive's once[]. */
#define POLICY_ONCE_COUNT 5

/* Bits of parse_action's "allowed" argument. */
#define ALLOW(a) (1u << (a))

/* "suppress hard-bounce complaint": what reports put on the suppression list. */
static int parse_suppress(struct parse_ctx *c, char **w, int n)
{
	struct policy_class *k = c->open;
	if (k->suppress_line)
		return perr(c, "suppress: already set for class %s at line %d", k->name, k->suppress_line);
	if (n < 2)
		return perr(c, "suppress: expected hard-bounce, complaint or both");
	for (int i = 1; i < n; i++) {
		if (strcasecmp(w[i], "hard-bounce") == 0)
			k->suppress |= POLICY_SUPPRESS_HARD_BOUNCE;
		else if (strcasecmp(w[i], "complaint") == 0)
			k->suppress |= POLICY_SUPPRESS_COMPLAINT;
		else
			return perr(c, "suppress: unknown kind %s (expected hard-bounce, complaint)", w[i]);
	}
	k->suppress_line = c->line;
	return 0;
}

static int parse_directive(struct parse_ctx *c, char **w, bool *quoted, int n, int *seen)
{
	struct policy_class *k = c->open;
	static const char *const once[] = { "account", "over-limit", "bulk-noncompliant", "spf-fail",
					    "from-unauthorized" };

	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
		if (strcasecmp(w[0], once[i]) == 0) {
			if (seen[i])
				return perr(c, "%s: already set for class %s at line %d", once[i], k->name, seen[i]);
			seen[i] = c->line;
		}
	}
	if (strcasecmp(w[0], "account") == 0)
		return parse_account(c, w, n);
	if (strcasecmp(w[0], "messages") == 0)
		return policy_rate_line(c->errs, c->file, c->line, c->open, "messages", w, n, k->messages, &k->messages_count);
	if (strcasecmp(w[0], "recipients") == 0)
		return policy_rate_line(c->errs, c->file, c->line, c->open, "recipients", w, n, k->recipients, &k->recipients_count);
	if (strcasecmp(w[0], "timezone") == 0)
		return parse_timezone(c, w, n);
	if (strcasecmp(w[0], "over-limit") == 0)
		return parse_action(c, "over-limit", w, quoted, n,
				    ALLOW(ACTION_TEMPFAIL) | ALLOW(ACTION_REJECT) | ALLOW(ACTION_HOLD) | ALLOW(ACTION_TAG),
				    &k->over_limit, k->over_limit_text, sizeof(k->over_limit_text));
	if (strcasecmp(w[0], "bulk") == 0)
		return parse_bulk(c, w, n);
	if (strcasecmp(w[0], "bulk-require") == 0)
		return parse_bulk_require(c, w, n);
	if (strcasecmp(w[0], "bulk-noncompliant") == 0)
		return parse_action(c, "bulk-noncompliant", w, quoted, n,
				    ALLOW(ACTION_TEMPFAIL) | ALLOW(ACTION_REJECT) | ALLOW(ACTION_HOLD) | ALLOW(ACTION_TAG),
				    &k->bulk_noncompliant, k->bulk_noncompliant_text,
				    sizeof(k->bulk_noncompliant_text));
	if (strcasecmp(w[0], "spf-fail") == 0)
		return parse_action(c, "spf-fail", w, quoted, n,
				    ALLOW(ACTION_NONE) | ALLOW(ACTION_TEMPFAIL) | ALLOW(ACTION_REJECT) | ALLOW(ACTION_TAG),
				    &k->spf_fail, NULL, 0);
	if (strcasecmp(w[0], "from-unauthorized") == 0)
		return parse_action(c, "from-unauthorized", w, quoted, n,
				    ALLOW(ACTION_NONE) | ALLOW(ACTION_TAG) | ALLOW(ACTION_HOLD) | ALLOW(ACTION_REJECT),
				    &k->from_unauthorized, k->from_unauthorized_text,
				    sizeof(k->from_unauthorized_text));
	if (strcasecmp(w[0], "suspended") == 0) {
		if (k->suspended_line)
			return perr(c, "suspended: already set for class %s at line %d", k->name, k->suspended_line);
		k->suspended_line = c->line;
		return parse_action(c, "suspended", w, quoted, n,
				    ALLOW(ACTION_TEMPFAIL) | ALLOW(ACTION_REJECT) | ALLOW(ACTION_HOLD),
				    &k->suspended, k->suspended_text, sizeof(k->suspended_text));
	}
	if (strcasecmp(w[0], "suppress") == 0)
		return parse_suppress(c, w, n);
	if (strcasecmp(w[0], "suppressed") == 0) {
		if (k->suppressed_line)
			return perr(c, "suppressed: already set for class %s at line %d", k->name, k->suppressed_line);
		k->suppressed_line = c->line;
		return parse_action(c, "suppressed", w, quoted, n,
				    ALLOW(ACTION_NONE) | ALLOW(ACTION_TEMPFAIL) | ALLOW(ACTION_REJECT) | ALLOW(ACTION_TAG),
				    &k->suppressed, NULL, 0);
	}
	if (policy_safety_directive(w[0])) {
		char err[256];
		if (strcasecmp(w[0], "suspend-for") == 0 && k->suspend_for_line)
			return perr(c, "suspend-for: already set for class %s at line %d", k->name, k->suspend_for_line);
		if (policy_safety_parse(k, w, n, err, sizeof(err)) != 0)
			return perr(c, "%s", err);
		if (strcasecmp(w[0], "suspend-for") == 0)
			k->suspend_for_line = c->line;
		return 0;
	}
	return perr(c, "unknown directive %s in class %s (expected account, messages, recipients, over-limit, bulk, bulk-require, bulk-noncompliant, spf-fail, from-unauthorized, notify, suspended, suspend-if, suspend-for, suppress, suppressed, timezone)",
		    w[0], k->name);
}

static bool valid_class_name(const char *name)
{
	if (*name == '\0' || strlen(name) >= POLICY_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

static int open_class(struct parse_ctx *c, char **w, int n)
{
	struct policy *p = c->p;
	if (n < 3 || strcmp(w[2], "{") != 0)
		return perr(c, "class: expected class NAME {");
	if (!valid_class_name(w[1]))
		return perr(c, "class: bad name %s (letters, digits, '-', '_', '.'; at most %d)", w[1],
			    POLICY_NAME_MAX - 1);
	void *prev = strmap_get(p->class_by_name, w[1]);
	if (prev) {
		const struct policy_class *old = &p->classes[(size_t)prev - 1];
		return perr(c, "class %s: already defined at line %d", w[1], old->line);
	}
	struct policy_class *grown = realloc(p->classes, (p->class_count + 1) * sizeof(*grown));
	if (grown == NULL)
		return perr(c, "out of memory");
	p->classes = grown;
	struct policy_class *k = &p->classes[p->class_count];
	memset(k, 0, sizeof(*k));
	strcpy(k->name, w[1]);
	k->line = c->line;
	k->over_limit = ACTION_TEMPFAIL;
	k->bulk_noncompliant = ACTION_TAG;
	k->spf_fail = ACTION_NONE;
	k->suspended = ACTION_HOLD;
	k->suppressed = ACTION_REJECT;
	k->suspend_for_ms = POLICY_SUSPEND_FOR_DEFAULT_MS;
	k->account[0] = ACCOUNT_SASL;
	k->account[1] = ACCOUNT_SENDER;
	k->account[2] = ACCOUNT_IP;
	k->account_count = 3;
	p->class_count++;
	if (strmap_put(p->class_by_name, w[1], (void *)(size_t)p->class_count) < 0)
		return perr(c, "out of memory");
	c->open = k;
	return 0;
}

/* Resolves a map path relative to the policy file's directory. */
static char *map_path(const char *policy_path, const char *path)
{
	char *out = NULL;
	if (path[0] == '/')
		return strdup(path);
	char *copy = strdup(policy_path);
	if (copy == NULL)
		return NULL;
	if (asprintf(&out, "%s/%s", dirname(copy), path) < 0)
		out = NULL;
	free(copy);
	return out;
}

/* Class names of a map's lines resolve against the classes defined so far. */
static const struct policy_class *resolve_class(void *arg, const char *name)
{
	return policy_class_find(arg, name);
}

static int parse_assign(struct parse_ctx *c, char **w, int n)
{
	struct policy *p = c->p;
	struct policy_assign a = { .line = c->line };
	const char *class_name = NULL;
	size_t k;

	if (n < 2)
		return perr(c, "assign: expected assign KEY VALUE CLASS, assign outbound|inbound CLASS, or assign KEY file:PATH");
	for (k = 0; k < sizeof(key_names) / sizeof(key_names[0]); k++)
		if (strcasecmp(w[1], key_names[k]) == 0)
			break;
	if (k == sizeof(key_names) / sizeof(key_names[0]))
		return perr(c, "assign: unknown key %s (expected sasl, sender, domain, ip, outbound, inbound)", w[1]);
	a.key = (enum policy_key)k;
	if (p->assign_count >= POLICY_ASSIGN_MAX)
		return perr(c, "assign: more than %d assign lines (use a file: map)", POLICY_ASSIGN_MAX);

	if (a.key == KEY_OUTBOUND || a.key == KEY_INBOUND) {
		if (n != 3)
			return perr(c, "assign %s: expected assign %s CLASS", key_names[k], key_names[k]);
		a.match = MATCH_ANY;
		class_name = w[2];
	} else if (n == 3 && strncmp(w[2], "file:", 5) == 0) {
		char err[512];
		a.match = MATCH_MAP;
		if (w[2][5] == '\0')
			return perr(c, "assign %s: file: needs a path", key_names[k]);
		if ((a.value = map_path(c->file, w[2] + 5)) == NULL)
			return perr(c, "out of memory");
		a.map = policy_map_load(a.value, a.key == KEY_IP, resolve_class, c->p, c->errs, err, sizeof(err));
		if (a.map == NULL) {
			free(a.value);
			return perr(c, "assign %s: %s", key_names[k], err);
		}
	} else if (n == 4 && strncmp(w[2], "file:", 5) == 0) {
		/* not a login named "file:...": a map names its classes itself */
		return perr(c, "assign %s: file:PATH takes no class (each line of the map names its class)",
			    key_names[k]);
	} else if (n == 4) {
		class_name = w[3];
		if (a.key == KEY_IP) {
			a.match = MATCH_CIDR;
			if (cidr_parse(w[2], &a.cidr) != 0)
				return perr(c, "assign ip: not an IP address or CIDR block: %s", w[2]);
		} else {
			a.match = strpbrk(w[2], "*?[") ? MATCH_GLOB : MATCH_EXACT;
		}
		a.value = strdup(w[2]);
	} else {
		return perr(c, "assign %s: expected assign %s VALUE CLASS or assign %s file:PATH",
			    key_names[k], key_names[k], key_names[k]);
	}
	if (a.match != MATCH_ANY && a.value == NULL) {
		policy_map_free(a.map);
		return perr(c, "out of memory");
	}
	struct policy_assign *grown = realloc(p->assigns, (p->assign_count + 1) * sizeof(*grown));
	char **pend = realloc(c->pending_class, (p->assign_count + 1) * sizeof(*pend));
	if (grown)
		p->assigns = grown;
	if (pend)
		c->pending_class = pend;
	if (!grown || !pend) {
		free(a.value);
		policy_map_free(a.map);
		return perr(c, "out of memory");
	}
	c->pending_class[p->assign_count] = class_name ? strdup(class_name) : NULL;
	p->assigns[p->assign_count++] = a;
	return 0;
}

/* Class names of assign lines may be defined below them: resolve at the end. */
static void resolve_assign_classes(struct parse_ctx *c)
{
	struct policy *p = c->p;
	for (size_t i = 0; i < p->assign_count; i++) {
		const char *name = c->pending_class[i];
		if (name == NULL)
			continue;
		void *idx = strmap_get(p->class_by_name, name);
		c->line = p->assigns[i].line;
		if (idx == NULL)
			perr(c, "assign: unknown class %s", name);
		else
			p->assigns[i].cls = &p->classes[(size_t)idx - 1];
	}
}

static void parse_line(struct parse_ctx *c, char **w, bool *quoted, int n, int *seen)
{
	int start = 0;
	while (start < n) {
		/* a line may hold "class x {", directives, and "}" */
		if (c->open == NULL) {
			if (strcasecmp(w[start], "class") == 0) {
				int end = start + 1;
				while (end < n && strcmp(w[end], "{") != 0)
					end++;
				if (end < n)
					end++;
				if (open_class(c, w + start, end - start) != 0) {
					/* skip the rest of a broken class header */
					return;
				}
				memset(seen, 0, POLICY_ONCE_COUNT * sizeof(int));
				start = end;
				continue;
			}
			if (strcasecmp(w[start], "assign") == 0) {
				parse_assign(c, w + start, n - start);
				return;
			}
			if (strcmp(w[start], "}") == 0)
				perr(c, "'}' without an open class");
			else
				perr(c, "unknown statement %s (expected class or assign)", w[start]);
			return;
		}
		if (strcmp(w[start], "}") == 0) {
			c->open = NULL;
			start++;
			continue;
		}
		if (strcasecmp(w[start], "class") == 0 || strcasecmp(w[start], "assign") == 0) {
			perr(c, "%s inside class %s (missing '}'?)", w[start], c->open->name);
			c->open = NULL;
			continue;
		}
		int end = start;
		while (end < n && strcmp(w[end], "}") != 0 && strcmp(w[end], "{") != 0)
			end++;
		if (end < n && strcmp(w[end], "{") == 0) {
			perr(c, "unexpected '{' in class %s", c->open->name);
			return;
		}
		parse_directive(c, w + start, quoted + start, end - start, seen);
		start = end;
	}
}

struct policy *policy_load(const char *path, struct diag *errs)
{
	return policy_load_zone(path, "UTC", errs);
}

struct policy *policy_load_zone(const char *path, const char *zone, struct diag *errs)
{
	struct policy *p = calloc(1, sizeof(*p));
	struct parse_ctx c = { .p = p, .errs = errs, .file = path };
	char line[POLICY_LINE_MAX + 2], store[2 * POLICY_LINE_MAX + 8];
	int seen[POLICY_ONCE_COUNT] = { 0 };
	size_t before = diag_errors(errs);
	FILE *fp;

	if (p == NULL || (p->path = strdup(path)) == NULL ||
	    (p->class_by_name = strmap_new(64, false)) == NULL) {
		diag_add(errs, path, 0, "out of memory");
		policy_free(p);
		return NULL;
	}
	if ((fp = fopen(path, "r")) == NULL) {
		diag_add(errs, path, 0, "cannot open: %s", strerror(errno));
		policy_free(p);
		return NULL;
	}
	while (fgets(line, sizeof(line), fp)) {
		char *w[POLICY_WORDS_MAX];
		bool quoted[POLICY_WORDS_MAX];
		c.line++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			perr(&c, "line longer than %d characters", POLICY_LINE_MAX);
			int ch;
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		int n = split_words(&c, line, store, w, quoted);
		if (n > 0)
			parse_line(&c, w, quoted, n, seen);
	}
	fclose(fp);
	if (c.open) {
		c.line = c.open->line;
		perr(&c, "class %s: missing '}'", c.open->name);
	}
	resolve_assign_classes(&c);
	/* TimeZone was checked with the settings: no second error here */
	const struct calendar_zone *fallback = policy_zone(&c, zone ? zone : "UTC", false);
	if (fallback == NULL)
		fallback = policy_zone(&c, "UTC", false);
	for (size_t i = 0; i < p->class_count; i++)
		if (p->classes[i].zone == NULL)
			p->classes[i].zone = fallback;
	for (size_t i = 0; i < p->assign_count; i++)
		free(c.pending_class[i]);
	free(c.pending_class);
	if (diag_errors(errs) != before) {
		policy_free(p);
		return NULL;
	}
	return p;
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->assign_count; i++) {
		free(p->assigns[i].value);
		policy_map_free(p->assigns[i].map);
	}
	for (size_t i = 0; i < p->class_count; i++) {
		struct policy_class *k = &p->classes[i];
		for (size_t j = 0; j < k->bulk_count; j++)
			free(k->bulk[j].header);
		for (size_t j = 0; j < k->messages_count; j++)
			policy_rate_free_to(k->messages[j].to, k->messages[j].to_count);
		for (size_t j = 0; j < k->recipients_count; j++)
			policy_rate_free_to(k->recipients[j].to, k->recipients[j].to_count);
	}
	for (size_t i = 0; i < p->zone_count; i++)
		calendar_zone_free(p->zones[i]);
	free(p->zones);
	free(p->assigns);
	free(p->classes);
	strmap_free(p->class_by_name, NULL);
	free(p->path);
	free(p);
}

static const struct policy_class *assign_match(const struct policy_assign *a, const struct policy_facts *f)
{
	const char *subject = NULL;

	switch (a->key) {
	case KEY_OUTBOUND:
		return f->direction == DIRECTION_OUTBOUND ? a->cls : NULL;
	case KEY_INBOUND:
		return f->direction == DIRECTION_INBOUND ? a->cls : NULL;
	case KEY_IP:
		if (f->client == NULL || f->client->family == 0)
			return NULL;
		if (a->match == MATCH_MAP)
			return policy_map_lookup_ip(a->map, f->client);
		return cidr_match(&a->cidr, f->client) ? a->cls : NULL;
	case KEY_SASL:
		subject = f->sasl;
		break;
	case KEY_SENDER:
		subject = f->direction == DIRECTION_OUTBOUND ? f->sender : NULL;
		break;
	case KEY_DOMAIN:
		subject = f->direction == DIRECTION_OUTBOUND && f->sender ? address_domain(f->sender) : NULL;
		break;
	}
	if (subject == NULL || *subject == '\0')
		return NULL;
	switch (a->match) {
	case MATCH_EXACT:
		return strcasecmp(a->value, subject) == 0 ? a->cls : NULL;
	case MATCH_GLOB:
		return fnmatch(a->value, subject, FNM_CASEFOLD) == 0 ? a->cls : NULL;
	case MATCH_MAP:
		return policy_map_lookup(a->map, subject);
	default:
		return NULL;
	}
}

const struct policy_class *policy_lookup(const struct policy *p, const struct policy_facts *facts,
					 const struct policy_assign **why)
{
	for (size_t i = 0; i < p->assign_count; i++) {
		const struct policy_class *cls = assign_match(&p->assigns[i], facts);
		if (cls) {
			if (why)
				*why = &p->assigns[i];
			return cls;
		}
	}
	if (why)
		*why = NULL;
	return NULL;
}

void policy_assign_describe(const struct policy_assign *a, char *buf, size_t len)
{
	if (a == NULL) {
		snprintf(buf, len, "no assign line matched");
		return;
	}
	if (a->match == MATCH_ANY)
		snprintf(buf, len, "line %d: assign %s %s", a->line, key_names[a->key], a->cls->name);
	else if (a->match == MATCH_MAP)
		snprintf(buf, len, "line %d: assign %s file:%s", a->line, key_names[a->key], a->value);
	else
		snprintf(buf, len, "line %d: assign %s %s %s", a->line, key_names[a->key], a->value,
			 a->cls->name);
}

const struct policy_class *policy_class_find(const struct policy *p, const char *name)
{
	void *idx = strmap_get(p->class_by_name, name);
	return idx ? &p->classes[(size_t)idx - 1] : NULL;
}

size_t policy_class_count(const struct policy *p)
{
	return p->class_count;
}

const struct policy_class *policy_class_at(const struct policy *p, size_t i)
{
	return i < p->class_count ? &p->classes[i] : NULL;
}

static int copy_lower(char *buf, size_t len, const char *v, bool lower)
{
	size_t n = strlen(v);
	if (n == 0 || n >= len)
		return -1;
	for (size_t i = 0; i <= n; i++)
		buf[i] = lower ? (char)tolower((unsigned char)v[i]) : v[i];
	return 0;
}

int policy_account(const struct policy_class *c, const struct policy_facts *f, char *buf, size_t len)
{
	for (size_t i = 0; i < c->account_count; i++) {
		switch (c->account[i]) {
		case ACCOUNT_SASL:
			if (f->sasl && *f->sasl && copy_lower(buf, len, f->sasl, false) == 0)
				return 0;
			break;
		case ACCOUNT_SENDER:
			if (f->sender && *f->sender && copy_lower(buf, len, f->sender, true) == 0)
				return 0;
			break;
		case ACCOUNT_DOMAIN: {
			const char *d = f->sender ? address_domain(f->sender) : NULL;
			if (d && copy_lower(buf, len, d, true) == 0)
				return 0;
			break;
		}
		case ACCOUNT_IP:
			if (f->client && f->client->family != 0) {
				netaddr_format(f->client, buf, len);
				return 0;
			}
			break;
		}
	}
	return -1;
}
