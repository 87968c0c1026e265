/*
 * policy_rate - the rate grammar of the policy file: "COUNT/PERIOD"
 * (a token bucket), "COUNT/day|week|month" (a calendar window), and the
 * rate lines of a class, "messages|recipients RATE... [by SCOPE]
 * [to DOMAIN...]"; what a rate says (describe) and to which recipients it
 * applies. policy.c reads the file and calls policy_rate_line for the
 * rate lines; the public functions are declared in policy.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "policy_rate.h"

/* Reports an error at the line being read; returns -1. */
#define perr(...) diag_fail(errs, file, line, __VA_ARGS__)

const char *policy_scope_name(enum policy_scope s)
{
	static const char *const names[] = { "account", "domain", "class" };
	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void policy_rate_describe(const struct policy_rate *r, char *buf, size_t len)
{
	size_t used = (size_t)snprintf(buf, len, "%s", r->text);

	if (r->scope != SCOPE_ACCOUNT && used < len)
		used += (size_t)snprintf(buf + used, len - used, " by %s", policy_scope_name(r->scope));
	for (size_t i = 0; i < r->to_count && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : " to ", r->to[i]);
}

bool policy_rate_applies(const struct policy_rate *r, const char *domain)
{
	if (r->to_count == 0)
		return true;
	if (domain == NULL)
		return false;
	size_t dl = strlen(domain);
	for (size_t i = 0; i < r->to_count; i++) {
		const char *t = r->to[i];
		if (strncmp(t, "*.", 2) == 0) {
			size_t tl = strlen(t + 1);	/* ".example" */
			if (dl > tl && strcasecmp(domain + dl - tl, t + 1) == 0)
				return true;
		} else if (strcasecmp(domain, t) == 0) {
			return true;
		}
	}
	return false;
}

int policy_parse_rate(const char *text, struct policy_rate *out)
{
	char *end;
	const char *slash = strchr(text, '/');
	memset(out, 0, sizeof(*out));
	if (slash == NULL || !isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	unsigned long count = strtoul(text, &end, 10);
	if (end != slash || errno || count == 0 || count > 1000000000UL)
		return -1;
	const char *q = slash + 1;
	unsigned long n = 1;
	static const char *const calendars[] = { NULL, "day", "week", "month" };
	for (int i = CALENDAR_DAY; i <= CALENDAR_MONTH; i++) {
		/* a calendar window has no N: 2000/2day would be neither */
		if (strcmp(q, calendars[i]) != 0)
			continue;
		if (strlen(text) >= sizeof(out->text))
			return -1;
		out->count = count;
		out->calendar = (enum calendar_period)i;
		strcpy(out->text, text);
		return 0;
	}
	if (isdigit((unsigned char)*q)) {
		n = strtoul(q, &end, 10);
		if (errno || n == 0 || n > 1000000UL)
			return -1;
		q = end;
	}
	unsigned long unit;
	if (strcmp(q, "s") == 0)
		unit = 1000UL;
	else if (strcmp(q, "m") == 0)
		unit = 60000UL;
	else if (strcmp(q, "h") == 0)
		unit = 3600000UL;
	else if (strcmp(q, "d") == 0)
		unit = 86400000UL;
	else
		return -1;
	if (n > ULONG_MAX / unit || strlen(text) >= sizeof(out->text))
		return -1;
	/*
	 * The bucket script counts exactly in units of lcm(count, period_ms),
	 * which must stay below 2^53 to be exact in Lua's doubles.
	 */
	unsigned long a = count, b = n * unit;
	while (b) {
		unsigned long t = a % b;
		a = b;
		b = t;
	}
	if (count / a > (1UL << 53) / (n * unit))
		return -1;
	out->count = count;
	out->period_ms = n * unit;
	strcpy(out->text, text);
	return 0;
}

/* A destination of "to": a domain name, or "*." and one (its subdomains). */
static bool valid_to_domain(const char *d)
{
	const char *p = strncmp(d, "*.", 2) == 0 ? d + 2 : d;
	if (*p == '\0' || *p == '.' || strlen(d) > 253 || strstr(p, ".."))
		return false;
	for (; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return false;
	return d[strlen(d) - 1] != '.';
}

void policy_rate_free_to(char **to, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(to[i]);
	free(to);
}

/*
 * "messages|recipients RATE... [by account|domain|class] [to DOMAIN...]":
 * by and to apply to every rate of the line.
 */
int policy_rate_line(struct diag *errs, const char *file, int line, const struct policy_class *k,
		     const char *directive, char **w, int n, struct policy_rate *rates, size_t *count)
{
	bool message = strcmp(directive, "messages") == 0;
	enum policy_scope scope = SCOPE_ACCOUNT;
	int rc = 0, nrates = 1, by = 0, to_first = 0, to_n = 0;

	while (nrates < n && strcasecmp(w[nrates], "by") != 0 && strcasecmp(w[nrates], "to") != 0)
		nrates++;
	for (int i = nrates; i < n; i++) {
		if (strcasecmp(w[i], "by") == 0) {
			if (by)
				return perr("%s: \"by\" given twice", directive);
			if (i + 1 >= n)
				return perr("%s: by: expected account, domain or class", directive);
			by = ++i;
			if (strcasecmp(w[i], "account") == 0)
				scope = SCOPE_ACCOUNT;
			else if (strcasecmp(w[i], "domain") == 0)
				scope = SCOPE_DOMAIN;
			else if (strcasecmp(w[i], "class") == 0)
				scope = SCOPE_CLASS;
			else
				return perr("%s: by: unknown scope %s (expected account, domain or class)",
					    directive, w[i]);
		} else if (strcasecmp(w[i], "to") == 0) {
			if (to_first)
				return perr("%s: \"to\" given twice", directive);
			if (message)
				return perr("messages: \"to\" limits recipients; a message has no one destination (use a recipients rate)");
			int j = i + 1;
			while (j < n && strcasecmp(w[j], "by") != 0)
				j++;
			if (j == i + 1)
				return perr("%s: to: expected one or more DOMAIN", directive);
			for (int k = i + 1; k < j; k++) {
				for (char *p = w[k]; *p; p++)
					*p = (char)tolower((unsigned char)*p);
				if (!valid_to_domain(w[k]))
					return perr("%s: to: bad domain %s (expected a domain, or *.DOMAIN for its subdomains)",
						    directive, w[k]);
			}
			to_first = i + 1;
			to_n = j - i - 1;
			i = j - 1;
		} else {
			return perr("%s: unexpected %s after by/to (rates come first)", directive, w[i]);
		}
	}
	if (nrates < 2)
		return perr("%s: expected at least one rate COUNT/PERIOD", directive);
	if (scope == SCOPE_DOMAIN) {
		bool any = false;
		for (size_t i = 0; i < k->account_count; i++)
			any |= k->account[i] != ACCOUNT_IP;
		if (!any)
			return perr("%s: by domain: the accounts of class %s are client addresses, which have no domain",
				    directive, k->name);
	}
	for (int i = 1; i < nrates; i++) {
		struct policy_rate r;
		if (policy_parse_rate(w[i], &r) != 0) {
			rc = perr("%s: bad rate %s (expected COUNT/PERIOD such as 100/1h, 5/10s, 2000/d, "
				  "or a calendar window COUNT/day, COUNT/week, COUNT/month)", directive, w[i]);
			continue;
		}
		if (*count >= POLICY_RATES_MAX) {
			rc = perr("%s: more than %d rates", directive, POLICY_RATES_MAX);
			break;
		}
		r.scope = scope;
		if (to_n > 0) {
			if ((r.to = calloc((size_t)to_n, sizeof(*r.to))) == NULL)
				return perr("out of memory");
			for (int k = 0; k < to_n; k++)
				if ((r.to[r.to_count++] = strdup(w[to_first + k])) == NULL) {
					policy_rate_free_to(r.to, r.to_count);
					return perr("out of memory");
				}
		}
		rates[(*count)++] = r;
	}
	return rc;
}
