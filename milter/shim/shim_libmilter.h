/*
 * NAME
 *	shim_libmilter - one thread per MTA connection instead of
 *	libmilter's worker pool, and leaner socket I/O for libmilter's
 *	engine (an interposition: see shim.h)
 * SYNOPSIS
 *	void shim_libmilter_init(sfsistat (*on_idle_close)(SMFICTX *),
 *		int idle_seconds);
 *	bool shim_libmilter_check(char *what, size_t len);
 *	bool shim_libmilter_fall_back(void);
 * DESCRIPTION
 *	Debian's libmilter is built with its worker pool: a controller
 *	thread polls every idle MTA connection and, for each command that
 *	arrives, wakes or creates a worker thread, which hands the
 *	connection back through a pipe when the command is done. That
 *	costs ~20 context switches and ~1.5 thread creations per message,
 *	more CPU than all of bulkmilter's own work but the RSA signature
 *	(README "Performance").
 *
 *	This module replaces four of libmilter's private functions by
 *	defining them in our binary: the two through which its accept loop
 *	uses the pool (mi_pool_controller_init, mi_start_session) and the
 *	two with which its engine reads and writes the milter socket
 *	(mi_rd_cmd, mi_wr_cmd). The dynamic linker binds libmilter's calls
 *	to ours. Each accepted connection gets a thread of its own that
 *	blocks on its socket and runs libmilter's protocol engine,
 *	mi_engine(), whenever a command arrives, until the MTA ends the
 *	session; a thread whose session ended waits a while for the next
 *	connection. Reads and writes skip the poll() libmilter makes before
 *	each one when the socket is ready; after a final reply (continue,
 *	accept, reject, ...) the write returns only once the MTA's next
 *	command is in, instead of letting libmilter's engine sleep on a
 *	1 ms timer and wake for nothing; on TCP, what arrived is
 *	acknowledged before waiting, which removes a ~40 ms delayed-ACK
 *	stall per message on inet: sockets. The milter protocol itself
 *	stays libmilter's.
 *
 *	shim_libmilter_init must come before smfi_main. on_idle_close is
 *	the filter's close callback, called (as libmilter's pool does) for
 *	a connection on which the MTA sent nothing for idle_seconds, before
 *	the connection is closed.
 *
 *	shim_libmilter_check, called before smfi_main, proves that this
 *	process's libmilter uses the definitions here: its version is the
 *	1.0.x (sendmail 8.14 to 8.18) they were written against
 *	(smfi_version); each of the four names resolves to ours in the
 *	global scope, where libmilter's calls look (dlsym); and a real call
 *	into libmilter, smfi_progress() on a probe context, reaches our
 *	mi_wr_cmd with the socket we stored where we assume struct
 *	smfi_str keeps it, so libmilter and this file agree on that field.
 *	It returns true with what = "libmilter 1.0.1"; or falls back
 *	(below) and returns false with what saying why and how.
 *
 *	shim_libmilter_fall_back makes each of the four functions call
 *	libmilter's own from then on (looked up past our binary,
 *	dlsym(RTLD_NEXT)): libmilter's worker pool and I/O, exactly as if
 *	this file were not linked; it returns true. When libmilter's own
 *	cannot be found (a static libmilter whose pool our definitions
 *	displaced) it returns false and our threads keep serving, but
 *	without reading the context's socket, which a layout we do not
 *	know makes unsafe: each thread then runs the engine, whose reads
 *	wait on the socket libmilter passes them. Call it before smfi_main.
 *
 *	While the threads are in place, mi_pool_controller_init logs
 *	"serving each MTA connection on a thread of its own" at info level
 *	when smfi_main's accept loop starts.
 * DIAGNOSTICS
 *	A thread that cannot be created makes libmilter close that one
 *	connection (the MTA applies its milter_default_action, our
 *	documented tempfail) and log it. A command longer than
 *	SHIM_LIBMILTER_DATA_MAX, a read error or EOF in the middle of a
 *	command ends the session the way libmilter does (abort and close
 *	callbacks); read errors and oversized commands are logged. A
 *	context whose socket field is not a socket is logged once, and
 *	served without it.
 */
#ifndef BM_SHIM_LIBMILTER_H
#define BM_SHIM_LIBMILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <libmilter/mfapi.h>

/* Stack of a connection thread. Our deepest path (end of message with
 * libopendkim, OpenSSL and the log line) uses well under 100 KB; the
 * rest is room for library code we do not control. Only touched pages
 * take memory. */
#define SHIM_LIBMILTER_STACK_BYTES (1024 * 1024)
/* A thread whose connection ended waits this long for the next one; at
 * most SHIM_LIBMILTER_PARKED_MAX wait at once (the rest exit). */
#define SHIM_LIBMILTER_PARK_SECONDS 30
#define SHIM_LIBMILTER_PARKED_MAX 64
/* Largest command or reply data on the milter socket: libmilter's own
 * ceiling, 1 MB, which an MTA may negotiate (SMFIP_MDS_1M); Postfix
 * sends at most 64 KB. */
#define SHIM_LIBMILTER_DATA_MAX ((1024 * 1024) - 1)

void shim_libmilter_init(sfsistat (*on_idle_close)(SMFICTX *), int idle_seconds);
bool shim_libmilter_check(char *what, size_t len);
bool shim_libmilter_fall_back(void);

#endif
