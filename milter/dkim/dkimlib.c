/*
 * dkimlib - makes the shared DKIM_LIB and gives libopendkim an allocator
 * that can clean up after it.
 *
 * Does: dkim_init with our allocator, the options every signature uses.
 * Does not: sign, or know keys and tables.
 *
 * Why an allocator: libopendkim 2.11's dkim_free() releases the crypto
 * state of RSA signatures only; each Ed25519 signature leaves its
 * signature buffer behind, a leak per message in a daemon that runs for
 * months. Its allocation hooks take a closure per DKIM handle, so every
 * block carries a small header linking it into the arena of its message
 * (or into none, for the library's own blocks, made with no closure);
 * freeing a block unlinks it, and what is still linked when the message
 * is done is what libopendkim forgot. This relies on libopendkim freeing
 * with its hooks what it allocated with them, which the sanitizer build
 * of the unit tests checks for every call the signer makes.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkimlib.h"

/*
 * Headers we add to dkim_should_signhdrs: RFC 8058 wants both
 * List-Unsubscribe headers signed; our Feedback-ID must be signed so a
 * report that quotes it is about mail we sent (feedback.h).
 */
static const char *const dkimlib_extra_signed[] = { "list-unsubscribe", "list-unsubscribe-post",
						    "feedback-id" };
#define DKIMLIB_EXTRA (sizeof(dkimlib_extra_signed) / sizeof(dkimlib_extra_signed[0]))
/* Room for libopendkim's list (20 in 2.11) and ours. */
#define DKIMLIB_SIGNED_MAX 64

struct dkimlib_block {
	struct dkimlib_block *prev, *next;
	struct dkimlib_arena *arena;	/* NULL: a block of the library itself */
	max_align_t data[];		/* what libopendkim gets */
};

struct dkimlib_arena {
	struct dkimlib_block *head;
};

static void *dkimlib_alloc(void *closure, size_t n)
{
	struct dkimlib_block *b = malloc(sizeof(*b) + n);

	if (b == NULL)
		return NULL;
	b->arena = closure;
	b->prev = NULL;
	b->next = NULL;
	if (b->arena != NULL) {
		b->next = b->arena->head;
		if (b->next != NULL)
			b->next->prev = b;
		b->arena->head = b;
	}
	return b->data;
}

static void dkimlib_release(void *closure, void *p)
{
	(void)closure;		/* the block knows its arena */
	if (p == NULL)
		return;
	struct dkimlib_block *b = (struct dkimlib_block *)((char *)p - offsetof(struct dkimlib_block, data));
	if (b->arena != NULL) {
		if (b->prev != NULL)
			b->prev->next = b->next;
		else
			b->arena->head = b->next;
		if (b->next != NULL)
			b->next->prev = b->prev;
	}
	free(b);
}

struct dkimlib_arena *dkimlib_arena_new(void)
{
	return calloc(1, sizeof(struct dkimlib_arena));
}

void dkimlib_arena_free(struct dkimlib_arena *a)
{
	if (a == NULL)
		return;
	while (a->head != NULL) {
		struct dkimlib_block *next = a->head->next;
		free(a->head);
		a->head = next;
	}
	free(a);
}

DKIM_LIB *dkimlib_open(const struct settings *s, char *why, size_t len)
{
	const char *sign[DKIMLIB_SIGNED_MAX + 1];
	size_t n = 0;
	DKIM_LIB *lib = dkim_init(dkimlib_alloc, dkimlib_release);

	if (lib == NULL) {
		snprintf(why, len, "libopendkim: dkim_init() failed");
		return NULL;
	}
	for (size_t i = 0; dkim_should_signhdrs[i] != NULL && n < DKIMLIB_SIGNED_MAX - DKIMLIB_EXTRA; i++)
		sign[n++] = (const char *)dkim_should_signhdrs[i];
	for (size_t j = 0; j < DKIMLIB_EXTRA; j++) {
		bool have = false;
		for (size_t i = 0; i < n; i++)
			have = have || strcasecmp(sign[i], dkimlib_extra_signed[j]) == 0;
		if (!have)
			sign[n++] = dkimlib_extra_signed[j];
	}
	sign[n] = NULL;
	/* list options take the array itself and len == sizeof(char **) */
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign, sizeof(char **))
	    != DKIM_STAT_OK) {
		snprintf(why, len, "libopendkim refused the list of headers to sign");
		dkim_close(lib);
		return NULL;
	}
	if (s->oversign_headers != NULL && s->oversign_headers[0] != NULL &&
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, s->oversign_headers,
		sizeof(char **)) != DKIM_STAT_OK) {
		snprintf(why, len, "libopendkim refused OversignHeaders");
		dkim_close(lib);
		return NULL;
	}
	return lib;
}

void dkimlib_close(DKIM_LIB *lib)
{
	if (lib != NULL)
		dkim_close(lib);
}
