/*
 * NAME
 *	keytable - OpenDKIM KeyTable and SigningTable, loaded once
 * SYNOPSIS
 *	struct keytable *keytable_load(const struct settings *s, struct diag *errs);
 *	void keytable_free(struct keytable *kt);
 * DESCRIPTION
 *	Reads KeyTable and SigningTable exactly as OpenDKIM does (plain and
 *	refile:), so an OpenDKIM setup works unchanged. Keys are parsed at
 *	load (start and SIGHUP), never per message; RequireSafeKeys refuses a
 *	key readable by group or others (the error names path and mode).
 *	Returns NULL with no error when KeyTable is not set (no signing).
 *	[owner: signer module; extend as needed, keep these calls]
 */
#ifndef BM_KEYTABLE_H
#define BM_KEYTABLE_H

#include "diag.h"
#include "settings.h"

struct keytable;

struct keytable *keytable_load(const struct settings *s, struct diag *errs);
void keytable_free(struct keytable *kt);

#endif
