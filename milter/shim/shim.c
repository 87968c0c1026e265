/*
 * shim - runs each interposition's start-up check and makes the one log
 * line of what is active and what fell back.
 *
 * The checks themselves live with the definitions they prove
 * (shim_libmilter_check, shim_openssl_check), which know the library's
 * internals; this file only knows the list. Adding a shim is a line in
 * shims[] and a bit in shim.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "shim.h"
#include "shim_libmilter.h"
#include "shim_openssl.h"

/* what a check writes: a version, or how it fell back and why */
#define SHIM_WHAT_MAX 200

static const struct {
	unsigned bit;
	const char *name;
	bool (*check)(char *what, size_t len);
} shims[] = {
	{ SHIM_LIBMILTER, "libmilter", shim_libmilter_check },
	{ SHIM_OPENSSL, "openssl", shim_openssl_check },
};

/* Appends to line at at; returns where the text now ends (truncated at len). */
__attribute__((format(printf, 4, 5)))
static size_t append(char *line, size_t len, size_t at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + at, len - at, fmt, ap);
	va_end(ap);
	return n < 0 ? at : at + (size_t)n < len ? at + (size_t)n : len - 1;
}

unsigned shim_check(char *line, size_t len)
{
	unsigned active = 0;
	size_t at = append(line, len, 0, "shims:");

	for (size_t i = 0; i < sizeof(shims) / sizeof(shims[0]); i++) {
		char what[SHIM_WHAT_MAX];
		bool ok = shims[i].check(what, sizeof(what));
		if (ok)
			active |= shims[i].bit;
		at = append(line, len, at, ok ? "%s %s active (%s)" : "%s %s fell back %s",
			    i > 0 ? ";" : "", shims[i].name, what);
	}
	return active;
}
