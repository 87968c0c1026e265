/*
 * NAME
 *	ratelimit - token buckets per account, checked and charged in Redis
 * SYNOPSIS
 *	enum ratelimit_status ratelimit_check_message(...);
 *	enum ratelimit_status ratelimit_check_recipients(...);
 *	void ratelimit_refund(struct store *st, struct ratelimit_receipt *r);
 * DESCRIPTION
 *	One event (a message at MAIL FROM, a recipient at RCPT TO, or n
 *	recipients at end of message for local submission) is one atomic
 *	script: every bucket of the event has room and all are charged, or
 *	none is. The receipt records what was charged, so a transaction that
 *	does not end accepted can be refunded exactly. The message event also
 *	counts the account's volume windows (bulk "volume >=" rules) in the
 *	same round trip. A class with no rates of the event's kind and no
 *	volume rule costs no round trip.
 *	[owner: rate-limit module; extend as needed, keep these calls]
 */
#ifndef BM_RATELIMIT_H
#define BM_RATELIMIT_H

#include <stddef.h>

#include "policy.h"
#include "store.h"

/* Charges one message can hold: its message event plus its recipients. */
#define RATELIMIT_RECEIPT_MAX 1100

enum ratelimit_status {
	RATELIMIT_OK = 0,		/* all buckets had room and were charged */
	RATELIMIT_OVER,			/* a bucket is empty; nothing was charged */
	RATELIMIT_STORE_FAILED,		/* Redis did not answer (or in back-off) */
};

struct ratelimit_receipt {
	size_t events;			/* charges recorded */
	struct ratelimit_charge *charges; /* owned; freed by refund/clear */
	size_t cap;
};

struct ratelimit_verdict {
	const struct policy_rate *rate;	/* RATELIMIT_OVER: the rate that was full */
	const char *kind;		/* "messages" or "recipients" */
	long retry_ms;			/* when a token is back */
	char reason[128];		/* RATELIMIT_STORE_FAILED: why (no secrets) */
	/* per bulk rule of the class (same index): messages of the account
	 * in the rule's window before this one; volume rules only */
	unsigned long volume[POLICY_BULK_MAX];
};

enum ratelimit_status ratelimit_check_message(struct store *st, const struct policy_class *c,
	const char *account, struct ratelimit_receipt *r, struct ratelimit_verdict *v);
enum ratelimit_status ratelimit_check_recipients(struct store *st, const struct policy_class *c,
	const char *account, unsigned long count, struct ratelimit_receipt *r,
	struct ratelimit_verdict *v);
/* Returns every token the receipt holds; the receipt is empty after. */
void ratelimit_refund(struct store *st, struct ratelimit_receipt *r);
/* Forgets the receipt without refunding (the message was accepted). */
void ratelimit_receipt_clear(struct ratelimit_receipt *r);

/* For bulkmilterctl usage. */
struct ratelimit_usage {
	const struct policy_class *cls;
	const struct policy_rate *rate;
	const char *kind;		/* "messages" or "recipients" */
	double used, left;
	long full_in_ms;		/* 0 = full */
};
int ratelimit_usage(struct store *st, const struct policy *p, const char *account,
	struct ratelimit_usage *out, size_t max, size_t *n, char *err, size_t errlen);
int ratelimit_reset(struct store *st, const struct policy *p, const char *account,
	char *err, size_t errlen);

#endif
