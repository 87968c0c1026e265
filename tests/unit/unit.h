/*
 * unit.h - small helpers shared by the cmocka unit tests: temp files
 * and diagnostics lookups.
 */
#ifndef BM_UNIT_H
#define BM_UNIT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "diag.h"

#define UNIT_FILES_MAX 64
static char unit_paths[UNIT_FILES_MAX][64];
static int unit_next;

static inline void unit_cleanup(void)
{
	for (int i = 0; i < unit_next && i < UNIT_FILES_MAX; i++)
		unlink(unit_paths[i]);
}

/* Writes text to a new temp file, removed at exit, and returns its path. */
static inline const char *unit_file(const char *text)
{
	assert_true(unit_next < UNIT_FILES_MAX);
	if (unit_next == 0)
		atexit(unit_cleanup);
	char *p = unit_paths[unit_next++];
	snprintf(p, 64, "/tmp/bm-unit-XXXXXX");
	int fd = mkstemp(p);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
	return p;
}

/* True when some diagnostic equals "PATH:LINE: <message starting with msg>". */
static inline int unit_has_error(const struct diag *d, const char *path, int line, const char *msg)
{
	char want[512];
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", path, msg);
	for (size_t i = 0; i < d->count; i++)
		if (strncmp(d->lines[i], want, strlen(want)) == 0)
			return 1;
	for (size_t i = 0; i < d->count; i++)
		fprintf(stderr, "  have: %s\n", d->lines[i]);
	fprintf(stderr, "  want: %s...\n", want);
	return 0;
}

#endif
