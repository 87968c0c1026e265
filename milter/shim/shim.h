/*
 * NAME
 *	shim - the library functions bulkmilter replaces with its own, and
 *	the start-up check that they are in place
 * SYNOPSIS
 *	unsigned shim_check(char *line, size_t len);
 * DESCRIPTION
 *	bulkmilter defines in its own binary a few functions that
 *	libraries it links call, so that the dynamic linker binds the
 *	libraries' calls to ours (symbol interposition). Each is a
 *	measured speed win that would be lost without a sound, so every one
 *	lives in a file of its own, named shim_LIBRARY.c, whose opening
 *	comment says what it replaces, why, what it assumes about the
 *	library, how that is checked and how it falls back:
 *
 *	SHIM_LIBMILTER	shim_libmilter.c: libmilter's worker pool and socket
 *			I/O (mi_pool_controller_init, mi_start_session,
 *			mi_rd_cmd, mi_wr_cmd), replaced by one thread per
 *			MTA connection.
 *	SHIM_OPENSSL	shim_openssl.c: OpenSSL's PEM_read_bio_PrivateKey,
 *			so libopendkim signs with keys parsed once
 *			(privkey.c).
 *
 *	shim_check proves, once at start-up and before smfi_main, that each
 *	is active in this process: that a call into the library reaches our
 *	definition and that the library is the version (and, for libmilter,
 *	the structure layout) it was written against. One that is not falls
 *	back to the library's own behaviour, which is correct and slower.
 *	It returns the SHIM_ bits of those active (SHIM_ALL when all are)
 *	and writes into line the one line to log, e.g.
 *
 *	shims: libmilter active (libmilter 1.0.1); openssl active
 *	(libopendkim 2.11.0)
 *
 *	or, for one that fell back, "libmilter fell back to libmilter's
 *	own worker pool: libmilter's calls to mi_rd_cmd do not reach ours".
 *	Call it once, from one thread, before smfi_main starts threads.
 * DIAGNOSTICS
 *	The caller logs line: at info level when all are active, as a
 *	warning otherwise.
 */
#ifndef BM_SHIM_H
#define BM_SHIM_H

#include <stddef.h>

#define SHIM_LIBMILTER 1u
#define SHIM_OPENSSL 2u
#define SHIM_ALL (SHIM_LIBMILTER | SHIM_OPENSSL)
/* room for the line with every shim fallen back and its reason */
#define SHIM_LINE_MAX 512

unsigned shim_check(char *line, size_t len);

#endif
