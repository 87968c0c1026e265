/*
 * NAME
 *	authority - which From domains a SASL login may get a signature for
 * SYNOPSIS
 *	struct authority *authority_load(const struct settings *s, struct diag *errs);
 *	bool authority_allows(const struct authority *a, const char *login,
 *		const char *from_domain, char *why, size_t len);
 *	const char *authority_describe(const struct authority *a);
 *	void authority_free(struct authority *a);
 * DESCRIPTION
 *	SigningAuthority (settings.h) as a loaded, immutable value of the
 *	snapshot. authority_load returns NULL without an error for
 *	SigningAuthority none (OpenDKIM's behaviour: no check), and NULL
 *	with FILE:LINE errors in errs when a file: map cannot be used.
 *
 *	sasl-domain: a login may sign for a From domain whose organizational
 *	domain (libpsl, as alignment, align.h) is that of the login's domain
 *	(the part after its last '@'); a login without a domain may sign for
 *	nothing.
 *
 *	file:PATH: lines "LOGIN-OR-GLOB DOMAIN..." (domains separated by
 *	spaces or commas, '#' to the end of a line a comment). A listed
 *	domain covers itself and its subdomains. A login is looked up
 *	exactly (ASCII case ignored) first, then against the globs ('*', '?',
 *	'[..]', case ignored) in file order; the first line that matches is
 *	the login's whole answer. A login on no line may sign for nothing.
 *	Errors: a bad domain, a line without domains, a login listed twice
 *	exactly, a line over AUTHORITY_LINE_MAX, an unreadable file.
 *
 *	authority_allows is a pure function of its arguments: true when
 *	login may get a signature for from_domain. A NULL or empty login
 *	(mail from InternalHosts or local submission) is always allowed,
 *	as is any login when a is NULL. why (may be NULL) gets one line
 *	saying which rule answered, for logs and bulkmilterctl explain.
 *	A From domain that is not a valid host name is never allowed.
 *
 *	authority_describe names the setting in force ("none",
 *	"sasl-domain", "file:PATH").
 * DIAGNOSTICS
 *	"PATH:LINE: bad domain \"X\"", "PATH:LINE: LOGIN: no domains",
 *	"PATH:LINE: LOGIN: already listed at line N", "PATH:LINE: line
 *	longer than N characters", "PATH: cannot open: REASON".
 */
#ifndef BM_AUTHORITY_H
#define BM_AUTHORITY_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "settings.h"

/* A map line; a few hundred domains of one customer fit. */
#define AUTHORITY_LINE_MAX 16384

struct authority;

struct authority *authority_load(const struct settings *s, struct diag *errs);
bool authority_allows(const struct authority *a, const char *login, const char *from_domain,
	char *why, size_t len);
const char *authority_describe(const struct authority *a);
void authority_free(struct authority *a);

#endif
