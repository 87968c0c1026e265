/*
 * NAME
 *	diag - collected "FILE:LINE: message" diagnostics
 * SYNOPSIS
 *	void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...);
 *	int diag_fail(struct diag *d, const char *file, int line, const char *fmt, ...);
 *	void diag_print(const struct diag *d, FILE *fp);
 *	void diag_free(struct diag *d);
 * DESCRIPTION
 *	Loaders (config, policy, keys) report every error they find rather
 *	than stopping at the first, so "bulkmilter -n" shows an admin the
 *	whole list at once. line 0 means "the file as a whole" and prints
 *	as FILE: message. diag_fail is diag_add returning -1, for parsers
 *	that "return diag_fail(...)". At most DIAG_MAX lines are kept; the rest are
 *	counted and summarised, which bounds memory on a garbage file.
 */
#ifndef BM_DIAG_H
#define BM_DIAG_H

#include <stddef.h>
#include <stdio.h>

#define DIAG_MAX 200

struct diag {
	char *lines[DIAG_MAX];
	size_t count;		/* lines kept */
	size_t dropped;		/* lines beyond DIAG_MAX */
};

void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int diag_fail(struct diag *d, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline size_t diag_errors(const struct diag *d) { return d->count + d->dropped; }
void diag_print(const struct diag *d, FILE *fp);
/* Logs every line at error level (used on a refused reload). */
void diag_log(const struct diag *d);
void diag_free(struct diag *d);

#endif
