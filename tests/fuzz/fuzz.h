/*
 * NAME
 *	fuzz - what the libFuzzer targets in tests/fuzz share
 * SYNOPSIS
 *	#include "fuzz.h"
 *
 *	void fuzz_init(void);
 *	char *fuzz_string(const uint8_t *data, size_t size);
 *	size_t fuzz_lines(char *text, char *lines[], size_t max);
 *	const char *fuzz_path(const char *name);
 *	const char *fuzz_write(const char *name, const void *data, size_t size);
 *	const char *fuzz_write_text(const char *name, const char *text);
 *	const char *fuzz_key_pem(void);
 *	void fuzz_check(bool ok, const char *what);
 * DESCRIPTION
 *	Each target (fuzz_NAME.c) is one LLVMFuzzerTestOneInput calling
 *	the real parser from libbulk.a; everything here keeps them short.
 *
 *	fuzz_init runs once per process (every target calls it first): the
 *	daemon's log is off unless BM_FUZZ_LOG is set in the environment
 *	(then debug lines go to stderr), and a scratch directory is made
 *	in $BM_FUZZ_TMPDIR, else /dev/shm, else /tmp, and removed at exit.
 *
 *	fuzz_string returns a malloc'd NUL-terminated copy of the input
 *	(an embedded NUL ends the C string early, as it would in the
 *	daemon). fuzz_lines splits text in place at '\n' into at most max
 *	lines and returns how many (the last takes the rest).
 *
 *	Parsers that read files get the input written to a file of the
 *	scratch directory: fuzz_write (re)writes NAME there and returns its
 *	path, fuzz_path the path without writing. fuzz_key_pem is an
 *	Ed25519 private key (PEM) made at the first call, for targets that
 *	sign; nothing outside the process ever sees it.
 *
 *	fuzz_check(ok, what) is the targets' assertion: when a property a
 *	parser promises does not hold, it prints what and aborts, which
 *	libFuzzer reports as a crash with the input that caused it.
 */
#ifndef BM_FUZZ_H
#define BM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void fuzz_init(void);
char *fuzz_string(const uint8_t *data, size_t size);
size_t fuzz_lines(char *text, char *lines[], size_t max);
const char *fuzz_path(const char *name);
const char *fuzz_write(const char *name, const void *data, size_t size);
const char *fuzz_write_text(const char *name, const char *text);
const char *fuzz_key_pem(void);
void fuzz_check(bool ok, const char *what);

#endif
