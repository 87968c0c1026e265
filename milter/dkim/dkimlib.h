/*
 * NAME
 *	dkimlib - the libopendkim library handle, and the memory it forgets
 * SYNOPSIS
 *	DKIM_LIB *dkimlib_open(const struct settings *s, char *why, size_t len);
 *	struct dkimlib_arena *dkimlib_arena_new(void);
 *	void dkimlib_arena_free(struct dkimlib_arena *a);
 *	void dkimlib_close(DKIM_LIB *lib);
 * DESCRIPTION
 *	dkimlib_open makes the DKIM_LIB every signer shares, with its
 *	options set once (they are not locked, so never after threads run):
 *	headers to sign are libopendkim's dkim_should_signhdrs plus
 *	List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) and
 *	Feedback-ID (ours must be signed: feedback.h), and
 *	s->oversign_headers are signed once more than they occur. It
 *	returns NULL with why when libopendkim refuses.
 *
 *	libopendkim allocates through the handle's functions, with the
 *	closure given to dkim_sign(). An arena, given as that closure, keeps
 *	every block libopendkim allocated for one message and has not freed;
 *	dkimlib_arena_free releases them, and must come after dkim_free() of
 *	every handle made with the arena. (libopendkim 2.11 leaves the
 *	signature buffer of every Ed25519 signature.) One arena belongs to
 *	one message: it is not locked.
 *
 *	dkimlib_close is dkim_close, after every handle is freed.
 */
#ifndef BM_DKIMLIB_H
#define BM_DKIMLIB_H

#include <stddef.h>

#include <dkim.h>

#include "settings.h"

struct dkimlib_arena;

DKIM_LIB *dkimlib_open(const struct settings *s, char *why, size_t len);
struct dkimlib_arena *dkimlib_arena_new(void);
void dkimlib_arena_free(struct dkimlib_arena *a);
void dkimlib_close(DKIM_LIB *lib);

#endif
