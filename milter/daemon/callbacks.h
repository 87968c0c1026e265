/*
 * NAME
 *	callbacks - libmilter events turned into calls on the transaction
 * SYNOPSIS
 *	extern struct smfiDesc callbacks_desc;
 *	int callbacks_connections(void);
 * DESCRIPTION
 *	The only module that speaks libmilter. Each connection's state (a
 *	struct transaction, transaction.h, and the protocol steps the MTA
 *	granted) lives only in smfi_setpriv, from negotiation or connect to
 *	close, because Debian's libmilter runs one connection's callbacks on
 *	different worker threads. The snapshot (config, policy, keys, store)
 *	is acquired at connect and released at close (transaction_open,
 *	transaction_release). Every internal error answers tempfail; no path
 *	accepts and drops. callbacks_connections counts the connections
 *	open now (libmilter contexts holding our state), for a graceful stop.
 */
#ifndef BM_CALLBACKS_H
#define BM_CALLBACKS_H

#include <libmilter/mfapi.h>

extern struct smfiDesc callbacks_desc;
int callbacks_connections(void);

#endif
