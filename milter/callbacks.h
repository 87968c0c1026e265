/*
 * NAME
 *	callbacks - libmilter events turned into calls on bulkmilter's modules
 * SYNOPSIS
 *	extern struct smfiDesc callbacks_desc;
 *	int callbacks_connections(void);
 * DESCRIPTION
 *	The only module that knows libmilter's message callbacks. Each
 *	connection holds a snapshot (config, policy, keys, store) from
 *	connect to close; per-connection and per-message state lives only in
 *	smfi_setpriv, because Debian's libmilter runs one connection's
 *	callbacks on different worker threads. Every internal error answers
 *	tempfail; no path accepts and drops. callbacks_connections counts the
 *	connections open now, for a graceful stop.
 */
#ifndef BM_CALLBACKS_H
#define BM_CALLBACKS_H

#include <libmilter/mfapi.h>

extern struct smfiDesc callbacks_desc;
int callbacks_connections(void);

#endif
