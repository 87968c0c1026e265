/*
 * NAME
 *	header_facts - what a message's headers say, gathered one header at
 *	a time, for bulk rules, compliance checks, signing and removals
 * SYNOPSIS
 *	bool header_facts_note(struct header_facts *f, const char *name,
 *		const char *value, const struct policy_class *cls,
 *		const char *tag_header, const char *authserv_id);
 *	const char *header_facts_from(const struct header_facts *f);
 *	bool header_facts_ar_is_ours(const char *value, const char *authserv_id);
 * DESCRIPTION
 *	A zeroed struct header_facts is a message with no headers yet.
 *	header_facts_note takes each header in arrival order (name without
 *	the colon, value as the MTA gives it) and returns true when the
 *	header is one we remove: a copy of TagHeader (tag_header) from the
 *	client, or an Authentication-Results header that claims our
 *	authserv-id (it would read as our own verdict downstream). Removed
 *	headers are named by their index among the headers of that name
 *	(1 = first), as smfi_chgheader takes them: tag_headers copies of
 *	TagHeader, and forged_ar[0 .. forged_ar_count - 1]. cls (may be
 *	NULL) gives the "bulk header NAME" rules whose presence is noted in
 *	header_present (same index as cls->bulk).
 *
 *	header_facts_from is the address of the one From header, or NULL
 *	when the message has none, more than one, or one without a single
 *	valid address.
 *
 *	header_facts_ar_is_ours is true when an Authentication-Results value
 *	claims authserv_id as RFC 8601 2.2 reads it: after white space and
 *	leading comments (nested, with quoted-pairs), a token or a
 *	quoted-string equal to it, ignoring case.
 * DIAGNOSTICS
 *	None: any header is a fact. More than HEADER_FACTS_FORGED_AR_MAX
 *	forged Authentication-Results set too_many_forged_ar (the message is
 *	refused: we could not remove them all).
 */
#ifndef BM_HEADER_FACTS_H
#define BM_HEADER_FACTS_H

#include <stdbool.h>

#include "address.h"
#include "policy.h"

/* Authentication-Results headers with our authserv-id we can remove. */
#define HEADER_FACTS_FORGED_AR_MAX 64

struct header_facts {
	unsigned from_count;
	bool from_ok;				/* the first From has one address */
	char from_addr[ADDRESS_MAX];
	bool has_precedence, precedence_bulk;
	bool list_unsub_https, list_unsub_mailto, one_click;
	bool header_present[POLICY_BULK_MAX];
	unsigned tag_headers;			/* client-supplied TagHeader copies */
	unsigned ar_headers;			/* Authentication-Results seen */
	unsigned forged_ar[HEADER_FACTS_FORGED_AR_MAX];	/* their indexes, ours */
	unsigned forged_ar_count;
	bool too_many_forged_ar;
};

bool header_facts_note(struct header_facts *f, const char *name, const char *value,
	const struct policy_class *cls, const char *tag_header, const char *authserv_id);
const char *header_facts_from(const struct header_facts *f);
bool header_facts_ar_is_ours(const char *value, const char *authserv_id);

#endif
