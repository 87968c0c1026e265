/*
 * NAME
 *	keytable - OpenDKIM KeyTable and SigningTable, loaded once
 * SYNOPSIS
 *	struct keytable *keytable_load(const struct settings *s, struct diag *errs);
 *	int keytable_lookup(const struct keytable *kt, const char *address,
 *		bool multiple, struct keytable_signing *out, size_t max,
 *		char *why, size_t len);
 *	DKIM_LIB *keytable_library(const struct keytable *kt);
 *	size_t keytable_count(const struct keytable *kt);
 *	void keytable_entries(const struct keytable *kt,
 *		void (*fn)(const struct keytable_entry_info *e, void *arg), void *arg);
 *	void keytable_free(struct keytable *kt);
 * DESCRIPTION
 *	keytable_load reads KeyTable and SigningTable exactly as OpenDKIM
 *	does, so an OpenDKIM setup works unchanged:
 *
 *	KeyTable (a PATH or file:PATH): "NAME DOMAIN:SELECTOR:KEY" lines, '#'
 *	to the end of a line is a comment. DOMAIN "%" is the From domain of
 *	the message. KEY starting with '/', "./" or "../" is a key file (as
 *	written, relative to the working directory, as in OpenDKIM), and a
 *	'%' in it is the From domain: such a file is read on first use for
 *	that domain and cached until the next load. Any other KEY is the key
 *	itself (base64 DER); RequireSafeKeys then applies to the KeyTable
 *	file: at every load, a KeyTable holding a key inline that group or
 *	others may read or write is an error at each such line ("key NAME:
 *	private key inline in PATH: mode 0644 is readable by group or others
 *	(RequireSafeKeys)"). Names are matched ignoring ASCII case (OpenDKIM
 *	matches them exactly; names are mostly domains, and a '%' name comes
 *	from a From header in any case); of two lines with one name the
 *	first counts (logged). Key files are read,
 *	checked (RequireSafeKeys) and parsed at load, once per file however
 *	many lines name it; a missing, unsafe or unparsable key is an error.
 *
 *	SigningTable, plain (PATH or file:PATH): "KEY NAME[:SIGNER]" lines.
 *	For From user@sub.example.com the keys tried, in this order, are
 *	user@sub.example.com, sub.example.com, user@.example.com,
 *	.example.com, user@.com, .com, user@*, * (OpenDKIM's order; ASCII
 *	case ignored; of two lines with one key the first counts).
 *
 *	SigningTable, refile:PATH: "PATTERN NAME[:SIGNER]" lines, where
 *	PATTERN is OpenDKIM's wildcard ('*' any text; other regex syntax
 *	passes through as OpenDKIM passes it to regcomp), matched against
 *	the whole address ignoring case; lines apply in file order. The
 *	common forms user@example.com, *@example.com and *@*.example.com are
 *	kept in hash tables with their line numbers, so a table of 100,000
 *	of them costs a few hash lookups per message, and the answer is still
 *	the first matching line(s) in file order.
 *
 *	Where '%' stands for the From domain, it is that domain in lower
 *	case. NAME "%" is the KeyTable entry named like the From domain. SIGNER
 *	becomes i= ('%' is the From domain); as in OpenDKIM it is left out
 *	when its domain is not d= or under it.
 *
 *	Every error is a FILE:LINE diagnostic in errs, including a
 *	SigningTable line naming a key the KeyTable lacks; keytable_load then
 *	returns NULL. It returns NULL without an error when KeyTable is not
 *	set (no signing). It also makes the DKIM_LIB all signers share
 *	(keytable_library; see dkimlib.h for its options). After load the
 *	keytable is read-only and shared by all threads.
 *
 *	keytable_lookup fills out[] with the signatures due for a From
 *	address: the first match, or with multiple every match up to max, in
 *	OpenDKIM's order. It returns how many (0: no entry), or -1 with why
 *	when a match cannot be used (a '%' key name or key file that does
 *	not exist for this domain, an unusable From domain).
 *
 *	keytable_entries calls fn for every KeyTable entry, in no particular
 *	order (bulkmilterctl dkim check sorts them by line).
 */
#ifndef BM_KEYTABLE_H
#define BM_KEYTABLE_H

#include <stdbool.h>
#include <stddef.h>

#include <dkim.h>

#include "address.h"
#include "diag.h"
#include "privkey.h"
#include "settings.h"

/* A domain name (d=). */
#define KEYTABLE_DOMAIN_MAX 253
/* A selector (s=): one DNS label is 63; selectors longer than that are
 * not in use and struct signer_signature holds 63. */
#define KEYTABLE_SELECTOR_MAX 63
/* A table line; inline RSA-8192 DER in base64 is under 7 KB. */
#define KEYTABLE_LINE_MAX 16384

/* One signature a message is due: what the tables say for its From. */
struct keytable_signing {
	char domain[KEYTABLE_DOMAIN_MAX + 1];	/* d= */
	char selector[KEYTABLE_SELECTOR_MAX + 1];	/* s= */
	char identity[ADDRESS_MAX + 1];		/* i=, "" for none */
	const struct privkey *key;
	const char *table;			/* the SigningTable file ... */
	int line;				/* ... and line that matched */
};

/* One KeyTable line, as keytable_entries shows it. */
struct keytable_entry_info {
	const char *name;
	const char *domain;			/* "%": the From domain */
	const char *selector;
	const struct privkey *key;		/* NULL when path_template is set */
	const char *path_template;		/* a key file path holding '%' */
	const char *table;			/* the KeyTable file ... */
	int line;				/* ... and its line */
};

struct keytable;

struct keytable *keytable_load(const struct settings *s, struct diag *errs);
int keytable_lookup(const struct keytable *kt, const char *address, bool multiple,
	struct keytable_signing *out, size_t max, char *why, size_t len);
DKIM_LIB *keytable_library(const struct keytable *kt);
/* KeyTable entries loaded (for logs and tests). */
size_t keytable_count(const struct keytable *kt);
void keytable_entries(const struct keytable *kt,
	void (*fn)(const struct keytable_entry_info *e, void *arg), void *arg);
void keytable_free(struct keytable *kt);

#endif
