/*
 * header_facts - the facts a message's headers give, one header at a
 * time: no copy of a header is kept, only what the rules ask of it.
 *
 * The From address is parsed from the first From only; a second From
 * is counted, and makes the message unsignable, whatever it holds.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "bulk.h"
#include "header_facts.h"

static const char *skip_space(const char *v)
{
	while (isspace((unsigned char)*v))
		v++;
	return v;
}

/*
 * RFC 8601 2.2, as whoever reads the header after us reads it: after
 * comments (which nest), a token or a quoted-string, in any case.
 */
bool header_facts_ar_is_ours(const char *value, const char *authserv_id)
{
	const char *p = skip_space(value);
	while (*p == '(') {		/* leading comments */
		if ((p = address_skip_comment(p)) == NULL)
			return false;
		p = skip_space(p);
	}
	if (*p == '"') {
		const char *id = authserv_id;
		for (p++; *p != '"'; p++, id++) {
			if (*p == '\\' && p[1])
				p++;
			if (*p == '\0' || tolower((unsigned char)*p) != tolower((unsigned char)*id))
				return false;
		}
		return *id == '\0';
	}
	size_t n = strcspn(p, " \t\r\n;(");
	return n == strlen(authserv_id) && strncasecmp(p, authserv_id, n) == 0;
}

/* Notes an Authentication-Results header; true when it is ours to remove. */
static bool note_auth_results(struct header_facts *f, const char *value, const char *authserv_id)
{
	f->ar_headers++;
	if (!header_facts_ar_is_ours(value, authserv_id))
		return false;
	if (f->forged_ar_count == HEADER_FACTS_FORGED_AR_MAX) {
		f->too_many_forged_ar = true;
		return false;
	}
	f->forged_ar[f->forged_ar_count++] = f->ar_headers;
	return true;
}

bool header_facts_note(struct header_facts *f, const char *name, const char *value,
		       const struct policy_class *cls, const char *tag_header, const char *authserv_id)
{
	bool removed = false;

	if (strcasecmp(name, "From") == 0) {
		if (++f->from_count == 1)
			f->from_ok = address_from_header(value, f->from_addr, sizeof(f->from_addr)) == 0;
	} else if (strcasecmp(name, tag_header) == 0) {
		f->tag_headers++;
	} else if (strcasecmp(name, "Authentication-Results") == 0) {
		removed = note_auth_results(f, value, authserv_id);
	} else if (strcasecmp(name, "Precedence") == 0) {
		f->has_precedence = true;
		if (bulk_precedence_is_bulk(value))
			f->precedence_bulk = true;
	} else if (strcasecmp(name, "List-Unsubscribe") == 0) {
		bool https, mailto;
		bulk_list_unsubscribe_scan(value, &https, &mailto);
		f->list_unsub_https |= https;
		f->list_unsub_mailto |= mailto;
	} else if (strcasecmp(name, "List-Unsubscribe-Post") == 0) {
		f->one_click |= bulk_is_one_click(value);
	}
	for (size_t i = 0; cls && i < cls->bulk_count; i++)
		if (cls->bulk[i].kind == BULK_HEADER && strcasecmp(name, cls->bulk[i].header) == 0)
			f->header_present[i] = true;
	return removed || strcasecmp(name, tag_header) == 0;
}

const char *header_facts_from(const struct header_facts *f)
{
	return f->from_count == 1 && f->from_ok ? f->from_addr : NULL;
}
