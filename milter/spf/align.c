/*
 * align - organizational domains and DMARC relaxed alignment.
 *
 * What it does: names the organizational domain of a DNS name (RFC 7489
 * 3.2) with libpsl's built-in Public Suffix List, private section
 * included (foo.github.io is its own organization, as OpenDMARC sees it),
 * and compares two names by it.
 *
 * What it does not: strict alignment (callers compare names themselves),
 * IDNA conversion (a U-label and its A-label are different names here),
 * or loading a newer list than the one the publicsuffix package ships.
 *
 * Decisions: libpsl matches byte-wise, so "MAIL.EXAMPLE.CO.UK" or a name
 * with a trailing dot gives a wrong answer; every name is normalized
 * (lower case, one trailing dot removed) and checked for the shape of a
 * host name before libpsl sees it. libpsl also answers "2.1" for
 * 192.0.2.1, so a name whose last label is all digits is refused.
 */
#include "config.h"

#include <ctype.h>
#include <libpsl.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"

/* RFC 1035: a label holds at most 63 octets. */
#define ALIGN_LABEL_MAX 63
/* Lower-casing passes a name gets to settle (two do for all we know of). */
#define ALIGN_LOWER_ROUNDS 3

/*
 * True when text looks like a host name: labels of letters, digits,
 * '-', '_' or UTF-8 bytes, none empty or too long, and a last label that
 * is not all digits (that would be an IPv4 address).
 */
static bool align_name_shape(const char *name)
{
	size_t label = 0;
	bool all_digits = true;

	for (const unsigned char *p = (const unsigned char *)name; ; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > ALIGN_LABEL_MAX)
				return false;
			if (*p == '\0')
				return !all_digits;
			label = 0;
			all_digits = true;
			continue;
		}
		if (!(isalnum(*p) || *p == '-' || *p == '_' || *p >= 0x80))
			return false;
		if (!isdigit(*p))
			all_digits = false;
		label++;
	}
}

/*
 * Well-formed UTF-8 (RFC 3629): no stray or missing continuation bytes,
 * overlong forms, surrogates or values past U+10FFFF. libpsl would turn
 * each bad byte into U+FFFD, so two different names would compare equal.
 */
static bool align_utf8(const unsigned char *p)
{
	static const unsigned long least[] = { 0, 0x80, 0x800, 0x10000 };

	while (*p != '\0') {
		unsigned c = *p++;
		int more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
			 : (c & 0xf8) == 0xf0 ? 3 : -1;
		unsigned long cp = c & (0x3fu >> (more > 0 ? more : 0));

		if (more < 0)
			return false;
		for (int i = 0; i < more; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p & 0x3fu);
		}
		if (cp < least[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/*
 * Writes the lower-cased name without its trailing dot to a malloc'ed
 * string; NULL when the name is empty, too long (before or after lower
 * casing, which may lengthen UTF-8), badly formed or not UTF-8.
 */
static char *align_normalize_dup(const char *domain)
{
	char copy[ALIGN_NAME_MAX + 2];
	char *lower = NULL;
	size_t len;

	if (domain == NULL)
		return NULL;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > ALIGN_NAME_MAX)
		return NULL;
	memcpy(copy, domain, len);
	copy[len] = '\0';
	if (!align_utf8((const unsigned char *)copy) ||
	    psl_str_to_utf8lower(copy, "utf-8", NULL, &lower) != PSL_SUCCESS)
		return NULL;
	/*
	 * libpsl lower-cases, then normalizes (NFKC), which can make capitals
	 * again (U+2145 comes out "D", U+03D4 as U+03AB): again until the name
	 * stays as it is; one that does not settle is no name.
	 */
	for (int round = 0; ; round++) {
		char *again = NULL;
		if (round == ALIGN_LOWER_ROUNDS ||
		    psl_str_to_utf8lower(lower, "utf-8", NULL, &again) != PSL_SUCCESS) {
			free(lower);
			return NULL;
		}
		if (strcmp(again, lower) == 0) {
			free(again);
			break;
		}
		free(lower);
		lower = again;
	}
	if (strlen(lower) > ALIGN_NAME_MAX || !align_name_shape(lower)) {
		free(lower);
		return NULL;
	}
	return lower;
}

int align_normalize(const char *domain, char *buf, size_t len)
{
	char *lower = align_normalize_dup(domain);
	int rc = -1;

	if (lower != NULL && strlen(lower) < len) {
		memcpy(buf, lower, strlen(lower) + 1);
		rc = 0;
	}
	free(lower);
	return rc;
}

int align_org_domain(const char *domain, char *buf, size_t len)
{
	char *lower = align_normalize_dup(domain);
	const char *org;
	int rc = -1;

	if (lower == NULL)
		return -1;
	org = psl_registrable_domain(psl_builtin(), lower);
	if (org != NULL && strlen(org) < len) {
		memcpy(buf, org, strlen(org) + 1);
		rc = 0;
	}
	free(lower);
	return rc;
}

bool align_relaxed(const char *a, const char *b)
{
	char org_a[ALIGN_NAME_MAX + 1], org_b[ALIGN_NAME_MAX + 1];
	char *norm_a = align_normalize_dup(a), *norm_b = align_normalize_dup(b);
	bool aligned = false;

	/* The same name is aligned even when it has no organizational
	 * domain (strict alignment implies relaxed). */
	if (norm_a != NULL && norm_b != NULL && strcmp(norm_a, norm_b) == 0)
		aligned = true;
	else if (norm_a != NULL && norm_b != NULL &&
		 align_org_domain(norm_a, org_a, sizeof(org_a)) == 0 &&
		 align_org_domain(norm_b, org_b, sizeof(org_b)) == 0)
		aligned = strcmp(org_a, org_b) == 0;
	free(norm_a);
	free(norm_b);
	return aligned;
}
