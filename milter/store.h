/*
 * NAME
 *	store - where rate-limit state lives (Redis for now)
 * SYNOPSIS
 *	struct store *store_open(const struct settings *s, struct diag *errs);
 *	void store_close(struct store *st);
 * DESCRIPTION
 *	store_open parses the Redis URL, reads RedisPasswordFile and
 *	prepares a connection pool; it does not connect, so "-n" and a
 *	reload never wait on the network. Errors (bad URL, unreadable
 *	password file) go to errs as FILE:LINE diagnostics; the password
 *	never appears in them or in any log line.
 *
 *	The store is shared by all worker threads; a backend is a table of
 *	functions (struct store_ops, store.c) so another backend is one file.
 *	[owner: rate-limit module; extend as needed, keep these two calls]
 */
#ifndef BM_STORE_H
#define BM_STORE_H

#include "diag.h"
#include "settings.h"

struct store;

struct store *store_open(const struct settings *s, struct diag *errs);
void store_close(struct store *st);

#endif
