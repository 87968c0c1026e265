/*
 * NAME
 *	conn_threads - one thread per MTA connection instead of libmilter's
 *	worker pool, and leaner socket I/O for libmilter's engine
 * SYNOPSIS
 *	void conn_threads_init(sfsistat (*on_idle_close)(SMFICTX *),
 *		int idle_seconds);
 * DESCRIPTION
 *	Debian's libmilter is built with its worker pool: a controller
 *	thread polls every idle MTA connection and, for each command that
 *	arrives, wakes or creates a worker thread, which hands the
 *	connection back through a pipe when the command is done. That
 *	costs ~20 context switches and ~1.5 thread creations per message,
 *	more CPU than all of bulkmilter's own work but the RSA signature
 *	(README "Performance").
 *
 *	This module defines in our binary the functions libmilter calls to
 *	use its pool (mi_pool_controller_init, mi_start_session) and to read
 *	and write the milter socket (mi_rd_cmd, mi_wr_cmd); the dynamic
 *	linker binds libmilter's calls to ours. Each accepted connection
 *	gets a thread of its own that blocks on its socket and runs
 *	libmilter's protocol engine, mi_engine(), whenever a command
 *	arrives, until the MTA ends the session; a thread whose session
 *	ended waits a while for the next connection. Reads and writes skip
 *	the poll() libmilter makes before each one when the socket is
 *	ready; after a final reply (continue, accept, reject, ...) the write
 *	returns only once the MTA's next command is in, instead of letting
 *	libmilter's engine sleep on a 1 ms timer and wake for nothing; on
 *	TCP, what arrived is acknowledged before waiting, which removes a
 *	~40 ms delayed-ACK stall per message on inet: sockets. The milter
 *	protocol itself stays libmilter's.
 *
 *	conn_threads_init must come before smfi_main. on_idle_close is the
 *	filter's close callback, called (as libmilter's pool does) for a
 *	connection on which the MTA sent nothing for idle_seconds, before
 *	the connection is closed.
 *
 *	When libmilter takes the replacement (once smfi_main's accept loop
 *	starts, on a libmilter built with the worker pool, as Debian's is)
 *	the daemon logs "serving each MTA connection on a thread of its
 *	own" at info level. Without that line libmilter serves connections
 *	its own way and only the socket I/O here runs (correct, slower).
 * DIAGNOSTICS
 *	A thread that cannot be created makes libmilter close that one
 *	connection (the MTA applies its milter_default_action, our
 *	documented tempfail) and log it. A command longer than
 *	CONN_THREADS_DATA_MAX, a read error or EOF in the middle of a
 *	command ends the session the way libmilter does (abort and close
 *	callbacks); read errors and oversized commands are logged.
 */
#ifndef BM_CONN_THREADS_H
#define BM_CONN_THREADS_H

#include <libmilter/mfapi.h>

/* Stack of a connection thread. Our deepest path (end of message with
 * libopendkim, OpenSSL and the log line) uses well under 100 KB; the
 * rest is room for library code we do not control. Only touched pages
 * take memory. */
#define CONN_THREADS_STACK_BYTES (1024 * 1024)
/* A thread whose connection ended waits this long for the next one; at
 * most CONN_THREADS_PARKED_MAX wait at once (the rest exit). */
#define CONN_THREADS_PARK_SECONDS 30
#define CONN_THREADS_PARKED_MAX 64
/* Largest command or reply data on the milter socket: libmilter's own
 * ceiling, 1 MB, which an MTA may negotiate (SMFIP_MDS_1M); Postfix
 * sends at most 64 KB. */
#define CONN_THREADS_DATA_MAX ((1024 * 1024) - 1)

void conn_threads_init(sfsistat (*on_idle_close)(SMFICTX *), int idle_seconds);

#endif
