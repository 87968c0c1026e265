/*
 * NAME
 *	spf_dispatch - the SPF helper processes and the queue in front of
 *	them; private to the SPF module (spf.c)
 * SYNOPSIS
 *	struct spf_dispatch *spf_dispatch_start(const char *resolver, const char *user,
 *		long timeout_ms, char *err, size_t len);
 *	void spf_dispatch_stop(struct spf_dispatch *d);
 *	int spf_dispatch_ask(struct spf_dispatch *d, const char *key, char kind,
 *		const char *const fields[], int nfields, char *detail, size_t len,
 *		struct spf_reuse *reuse);
 *	unsigned long spf_dispatch_requests(struct spf_dispatch *d);
 *	int spf_dispatch_unpack(char *buf, ssize_t n, unsigned seq, int *answer,
 *		char *detail, size_t len, struct spf_reuse *reuse);
 *	long long spf_now_ms(void);
 *	void spf_set_detail(char *detail, size_t len, const char *text);
 * DESCRIPTION
 *	spf_dispatch_start spawns SPF_POOL_SIZE helpers (spf_spawn.h) for
 *	resolver, user and timeout_ms (per DNS query), waits for each to say
 *	ready (SPF_START_WAIT_MS at most), and starts the dispatcher thread,
 *	which takes no signals. It returns NULL with a reason in err when no
 *	helper started or the thread could not. spf_dispatch_stop stops the
 *	thread and the helpers; no spf_dispatch_ask may be running.
 *
 *	spf_dispatch_ask sends one request (kind and fields as spf_wire.h
 *	says; the sequence number is its own) to a helper and returns the
 *	code it answered (for an 'S' an enum spf_outcome, for a 'D' an enum
 *	dmarc_record) with the detail, cut to len - 1 bytes, and for an 'S'
 *	what the helper said about reusing it in *reuse (ttl 0 and sender
 *	specific on any failure). key is the request's routing key, its
 *	organizational domain. Every failure is SPF_DISPATCH_FAILED with
 *	the reason in detail: "SPF helpers busy" (no helper was free for
 *	key within W), "SPF evaluation timed out" (no answer within W of
 *	sending it), "SPF helper failed" (it died or answered garbage),
 *	"SPF helper unavailable" (none runs or starts), "SPF request too
 *	long". W is SPF_BUDGET_TIMEOUTS * timeout_ms + SPF_REPLY_MARGIN_MS,
 *	so it returns within 2 * W. Thread-safe.
 *
 *	How requests meet helpers: a request goes to the helper key hashes
 *	to when that one is idle, else to the next idle one; a key has at
 *	most one request in the helpers at a time, and its others wait in
 *	the queue while later requests for other keys pass them. A caller
 *	that gives up leaves its helper at work: the late answer is dropped,
 *	and only a helper silent for SPF_HUNG_WAITS * W is killed. A helper
 *	that died is spawned again when a request waits, with
 *	SPF_START_WAIT_MS of its own to say ready; one that failed to start,
 *	not before SPF_RESTART_BACKOFF_MS.
 *
 *	spf_dispatch_requests counts the requests sent to helpers.
 *	spf_dispatch_unpack reads a helper's answer packet of n bytes (also
 *	for tests and fuzzing): it checks that it is an 'A' for seq and
 *	takes its code (0 to SPF_WIRE_CODE_MAX) and detail, and with reuse
 *	(an answer to an 'S') its ttl and sender_specific too; 0, or -1 when
 *	any field is missing, extra or malformed.
 *	spf_now_ms reads CLOCK_MONOTONIC in milliseconds. spf_set_detail
 *	copies text into detail as far as len allows (nothing with detail
 *	NULL or len 0).
 * DIAGNOSTICS
 *	Warnings name the helper and its pid: did not start, ended while
 *	idle, failed during a request, gave no answer within W (its caller
 *	gave up), hung (killed).
 *	[owner: SPF module]
 */
#ifndef BM_SPF_DISPATCH_H
#define BM_SPF_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "spf.h"

/* A helper that is not ready by then is broken (it only parses argv). */
#define SPF_START_WAIT_MS 2000
/* After a helper failed to start, it is not spawned again for this long. */
#define SPF_RESTART_BACKOFF_MS 1000

/* spf_dispatch_ask's answer when the helper gave none (see detail). */
#define SPF_DISPATCH_FAILED (-1)

/* What an answer to a check says beyond the outcome (spf_wire.h). */
struct spf_reuse {
	long ttl;			/* seconds the outcome holds; 0 = do not reuse */
	bool sender_specific;
};

struct spf_dispatch;

struct spf_dispatch *spf_dispatch_start(const char *resolver, const char *user,
	long timeout_ms, char *err, size_t len);
void spf_dispatch_stop(struct spf_dispatch *d);
int spf_dispatch_ask(struct spf_dispatch *d, const char *key, char kind,
	const char *const fields[], int nfields, char *detail, size_t len,
	struct spf_reuse *reuse);
unsigned long spf_dispatch_requests(struct spf_dispatch *d);
int spf_dispatch_unpack(char *buf, ssize_t n, unsigned seq, int *answer, char *detail,
	size_t len, struct spf_reuse *reuse);
long long spf_now_ms(void);
void spf_set_detail(char *detail, size_t len, const char *text);

#endif
