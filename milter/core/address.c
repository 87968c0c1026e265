/*
 * address - extract one addr-spec from an envelope argument or a From
 * header value.
 *
 * This is deliberately a small RFC 5322 tokenizer (comments, quoted
 * strings, angle brackets) rather than a full grammar: it must find the
 * single address a signer or an alignment check is about, and refuse
 * anything ambiguous (two addresses, a group, a broken bracket), because
 * signing for the wrong domain is worse than not signing.
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "address.h"

/*
 * Checks a bare address "local@domain" and copies it unchanged. The local
 * part may be a quoted string, which may hold anything printable ("a b",
 * "x@y"); unquoted, it holds none of RFC 5322's specials but '.'. The
 * domain may be a name or an address literal in brackets; ':' only in
 * the literal.
 */
static int address_store(const char *start, size_t n, char *buf, size_t len)
{
	while (n > 0 && isspace((unsigned char)*start)) {
		start++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)start[n - 1]))
		n--;
	if (n == 0 || n >= len || n >= ADDRESS_MAX)
		return -1;
	const char *end = start + n, *at = NULL;
	if (*start == '"') {
		const char *p = start + 1;
		for (; p < end && *p != '"'; p++) {
			if ((unsigned char)*p < ' ' || *p == 0x7f)
				return -1;
			if (*p == '\\' && p + 1 < end)
				p++;
		}
		if (p >= end || p + 1 >= end || p[1] != '@')
			return -1;
		at = p + 1;
	} else {
		for (const char *p = start; p < end; p++) {
			unsigned char c = (unsigned char)*p;
			if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' || c == '(' ||
			    c == ')' || c == '"')
				return -1;
			if (at == NULL && (c == ':' || c == ';' || c == '[' || c == ']' || c == '\\'))
				return -1;	/* specials of the local part */
			/* "a@b@c": which domain is meant depends on who reads it */
			if (c == '@' && at != NULL)
				return -1;
			if (c == '@')
				at = p;
		}
	}
	if (at == NULL || at == start || at == end - 1)
		return -1;
	/* ':' and brackets only in an address literal, "[IPv6:2001:db8::1]" */
	bool literal = at[1] == '[' && end[-1] == ']';
	for (const char *p = at + 1; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' || c == '(' ||
		    c == ')' || c == '"' || c == '@' || c == ';' || c == '\\')
			return -1;
		if (((c == ':' || c == '[' || c == ']') && !literal) || (c == '[' && p != at + 1) ||
		    (c == ']' && p != end - 1))
			return -1;
	}
	memcpy(buf, start, n);
	buf[n] = '\0';
	return 0;
}

int address_from_envelope(const char *arg, char *buf, size_t len)
{
	size_t n = strlen(arg);

	if (len == 0)
		return -1;
	if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>') {
		arg++;
		n -= 2;
	}
	if (n == 0) {
		buf[0] = '\0';
		return 0;
	}
	/* "<@a,@b:user@host>" source routes: keep the part after ':' */
	if (arg[0] == '@') {
		const char *colon = memchr(arg, ':', n);
		if (colon == NULL)
			return -1;
		n -= (size_t)(colon + 1 - arg);
		arg = colon + 1;
	}
	return address_store(arg, n, buf, len);
}

const char *address_skip_comment(const char *p)
{
	int depth = 0;
	for (; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/* Skips a quoted string starting at p ('"'); returns the char after it or NULL. */
static const char *skip_quoted(const char *p)
{
	for (p++; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

int address_from_header(const char *value, char *buf, size_t len)
{
	char bare[ADDRESS_MAX * 2];
	size_t bare_len = 0;
	const char *angle = NULL, *angle_end = NULL;
	const char *p = value;

	while (*p) {
		if (*p == '(') {
			if ((p = address_skip_comment(p)) == NULL)
				return -1;
			continue;
		}
		if (*p == '"' || *p == '[') {
			/* a quoted local part, or a domain literal (its ':' is no group) */
			const char *q = *p == '"' ? skip_quoted(p) : strchr(p, ']');
			if (q == NULL)
				return -1;
			if (*p == '[')
				q++;
			/* they belong to a bare address */
			if (angle == NULL) {
				size_t n = (size_t)(q - p);
				if (bare_len + n >= sizeof(bare))
					return -1;
				memcpy(bare + bare_len, p, n);
				bare_len += n;
			}
			p = q;
			continue;
		}
		if (*p == '<') {
			if (angle != NULL)
				return -1;	/* two addresses */
			angle = p + 1;
			angle_end = strchr(angle, '>');
			if (angle_end == NULL)
				return -1;
			p = angle_end + 1;
			continue;
		}
		if (*p == ',' || *p == ';' || *p == ':')
			return -1;	/* a list or a group: not one author */
		if (!isspace((unsigned char)*p)) {
			if (bare_len + 1 >= sizeof(bare))
				return -1;
			bare[bare_len++] = *p;
		}
		p++;
	}
	if (angle)
		return address_store(angle, (size_t)(angle_end - angle), buf, len);
	return address_store(bare, bare_len, buf, len);
}

const char *address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at && at[1] ? at + 1 : NULL;
}
