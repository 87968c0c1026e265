/*
 * NAME
 *	ratelimit - token buckets per account, checked and charged in Redis
 * SYNOPSIS
 *	enum ratelimit_status ratelimit_check_message(struct store *st,
 *		const struct policy_class *c, enum policy_direction dir,
 *		const char *account, struct ratelimit_receipt *r,
 *		struct ratelimit_verdict *v);
 *	enum ratelimit_status ratelimit_check_message_from(struct store *st,
 *		const struct policy_class *c, enum policy_direction dir,
 *		const char *account, const char *client,
 *		struct ratelimit_receipt *r, struct ratelimit_verdict *v);
 *	enum ratelimit_status ratelimit_check_recipients(struct store *st,
 *		const struct policy_class *c, enum policy_direction dir,
 *		const char *account, const char *domain, unsigned long count,
 *		struct ratelimit_receipt *r, struct ratelimit_verdict *v);
 *	void ratelimit_rcpts_add(struct ratelimit_rcpts *rc,
 *		const struct policy_class *c, const char *domain,
 *		unsigned long n);
 *	enum ratelimit_status ratelimit_check_rcpts(struct store *st,
 *		const struct policy_class *c, enum policy_direction dir,
 *		const char *account, const struct ratelimit_rcpts *rc,
 *		struct ratelimit_receipt *r, struct ratelimit_verdict *v);
 *	void ratelimit_refund(struct store *st, struct ratelimit_receipt *r);
 *	void ratelimit_receipt_clear(struct ratelimit_receipt *r);
 *	int ratelimit_usage(struct store *st, const struct policy *p,
 *		enum policy_direction dir, const char *account,
 *		struct ratelimit_usage *out, size_t max, size_t *n,
 *		char *err, size_t errlen);
 *	int ratelimit_usage_in(struct store *st, const struct policy *p,
 *		enum policy_direction dir, const char *account,
 *		const struct policy_class *const *assigned, size_t nassigned,
 *		struct ratelimit_usage *out, size_t max, size_t *n,
 *		char *err, size_t errlen);
 *	int ratelimit_reset(struct store *st, const struct policy *p,
 *		enum policy_direction dir, const char *account, unsigned scopes,
 *		char *err, size_t errlen);
 * DESCRIPTION
 *	Every rate COUNT/PERIOD of a class is a token bucket per account: it
 *	holds COUNT tokens and refills evenly over PERIOD, on the Redis
 *	server's clock, shared by every bulkmilter using the same Redis and
 *	RedisPrefix. Keys ("PREFIX{ACCOUNT}:CLASS:m:COUNT/PERIODMS", ":r:"
 *	for recipients, ":v:PERIODMS" for volume windows) carry the class
 *	and the rate, so a plan change or an edited rate starts with a full
 *	bucket. A bucket that is full again expires: idle accounts cost no
 *	memory.
 *
 *	A rate COUNT/day, /week or /month is a calendar window: it holds
 *	COUNT from local midnight (Monday's, the 1st's) in the class's zone
 *	(c->zone, calendar.h) to the next one; the boundaries are computed
 *	here from the zone data, the counting and the clock check are the
 *	store's (store.h). Its key ends in "COUNT/day" (".../week",
 *	".../month") and expires with its window.
 *
 *	Scopes: a rate "by domain" is one bucket for every account of the
 *	account's domain (the part after its last '@', lower case; an account
 *	without one has no such bucket), key "PREFIX{d:DOMAIN}:CLASS:d:r:...";
 *	"by class" one bucket for the whole class, "PREFIX{c:CLASS}:CLASS:c:
 *	r:...". Each scope has its own hash tag; one event's buckets go to
 *	the store grouped by tag (account, domain, class; store.h). A
 *	recipients rate "to DOMAIN..." is charged only for recipients at
 *	those domains; its key ends in ":to:HASH" (FNV-1a of its domains),
 *	so it is apart from the class's other rates.
 *
 *	An account is a direction and a name: the buckets of inbound mail
 *	("PREFIXin{ACCOUNT}:...") are apart from those of the outbound
 *	account of the same name, so a stranger who forges a local sender
 *	can never spend that account's quota. Outbound keys are named as
 *	they were before inbound ones were marked.
 *
 *	One event (a message at MAIL FROM, one recipient at RCPT TO, or n
 *	recipients at end of message for local submission) is one atomic
 *	script and one round trip: every bucket of the event has room and
 *	all are charged (RATELIMIT_OK), or none is (RATELIMIT_OVER, with
 *	v->rate the first full rate in class order, v->kind "messages" or
 *	"recipients" and v->retry_ms the wait until the event would fit;
 *	-1 when it never can, count larger than a bucket; a full destination
 *	rate also sets v->domain, the first of the recipients' domains it
 *	covers, for the reply). Under any number
 *	of concurrent checks a bucket never admits more than it holds, and
 *	a check or refund that the store retries (a lost connection) is
 *	charged or refunded once (store.h).
 *	A class with no rates of the event's kind (and, for messages, no
 *	volume rule) costs no round trip and returns RATELIMIT_OK.
 *
 *	Every event also carries the account-safety part (safety.h) in its
 *	one script: a suspended account's event is not charged and answers
 *	RATELIMIT_SUSPENDED (v->safety: by whom, until when), as does the
 *	event that trips a suspend-if rule (v->safety.tripped); v->safety
 *	also lists the notify thresholds the event reached. The caller
 *	reports them (safety_report). ratelimit_check_message_from names
 *	the client (safety_client_element) for distinct-ips; rc->rcpt the
 *	recipient for distinct-recipients. A class with safety lines makes
 *	the event even without rates of its kind (safety_wants_*_event).
 *	An outbound recipient event of a class with "suppress" or
 *	"suppressed" also looks rc->rcpt up in the account's suppression
 *	list (suppress.h), in the same script: a listed recipient is not
 *	charged and answers RATELIMIT_SUPPRESSED (v->safety.until_ms: when
 *	the entry expires); in a class with "suppressed tag" it is charged
 *	as any recipient (so every recipient counts) and, once admitted,
 *	answers RATELIMIT_SUPPRESSED too.
 *
 *	ratelimit_check_message also reads the account's volume windows, one
 *	per bulk "volume >= N/PERIOD" rule: v->volume[i] (i = index of the
 *	rule in c->bulk) is the number of messages the account sent in that
 *	period before this one; a message counts once admitted. A burst of
 *	six messages against "volume >= 5/1m" sees 0, 1, 2, 3, 4, 5.
 *
 *	The receipt records what was charged. A zeroed receipt is empty.
 *	Its memory does not grow with the events: the recipient events of
 *	one class and account share one entry (their tokens add up), and a
 *	message event, one per transaction, has its own.
 *	ratelimit_refund gives every charge back (never beyond a full bucket)
 *	and uncounts the messages from their volume windows, in one round
 *	trip per account (one for a transaction), then empties the receipt;
 *	an empty receipt costs nothing. ratelimit_receipt_clear forgets the
 *	charges (the message was accepted). The receipt is owned by one
 *	transaction at a time; the classes it points to must outlive it
 *	(they do: a transaction keeps its configuration snapshot).
 *
 *	ratelimit_check_recipients charges count recipients at domain
 *	(NULL: unknown, then no destination rate is charged): each rate
 *	takes one token per recipient it applies to. A set of recipients at
 *	several domains (local submission, charged at end of message) is
 *	summed up with ratelimit_rcpts_add, one recipient or domain at a
 *	time, into a struct ratelimit_rcpts of fixed size (zeroed first), and
 *	charged with ratelimit_check_rcpts.
 *
 *	ratelimit_usage lists, for every class of p with rates, the buckets
 *	and windows of account, in every scope, that are in use (used > 0),
 *	with when each is full again (resets_ms, store clock): the account's
 *	own, its domain's, and the class buckets of the classes in which the
 *	account has a bucket of its own or of its domain in use; *n = 0 is
 *	not an error. ratelimit_usage_in lists the same and, with used 0
 *	when full, every bucket (every scope) of the nassigned classes in
 *	assigned: those the account would be assigned to. ratelimit_reset deletes every bucket of account in the
 *	scopes given (RATELIMIT_SCOPE bits; the volume windows and the
 *	notify flags, safety.h, go with the account scope) for every class
 *	of p. Both are one round trip.
 * DIAGNOSTICS
 *	RATELIMIT_STORE_FAILED: Redis did not answer, answered an error, or
 *	is in back-off (v->reason says which, without secrets). Also for a
 *	missing or over-long account, and for no memory. Nothing was
 *	charged. Never for the number of events: a transaction may charge
 *	any number of recipients.
 *	ratelimit_usage and ratelimit_reset return 0, or -1 with err.
 *	A failed refund is logged; the tokens come back by refilling.
 */
#ifndef BM_RATELIMIT_H
#define BM_RATELIMIT_H

#include <stddef.h>

#include "policy.h"
#include "safety.h"
#include "store.h"

enum ratelimit_status {
	RATELIMIT_OK = 0,		/* all buckets had room and were charged */
	RATELIMIT_OVER,			/* a bucket is empty; nothing was charged */
	RATELIMIT_STORE_FAILED,		/* Redis did not answer (or in back-off) */
	RATELIMIT_SUSPENDED,		/* the account is suspended (v->safety says
					   by whom); nothing was charged */
	RATELIMIT_SUPPRESSED,		/* the recipient is on the account's
					   suppression list; nothing was charged
					   (suppressed tag: charged as usual) */
};

struct ratelimit_charge;		/* one entry of a receipt (ratelimit.c) */

struct ratelimit_receipt {
	size_t events;			/* events charged and recorded */
	struct ratelimit_charge *charges; /* owned; freed by refund/clear */
	size_t cap;			/* entries allocated */
	size_t n;			/* entries used; recipient events of one
					   class and account share an entry */
};

struct ratelimit_verdict {
	const struct policy_rate *rate;	/* RATELIMIT_OVER: the rate that was full */
	const char *kind;		/* "messages" or "recipients" */
	long retry_ms;			/* when the event fits; -1 never */
	const char *domain;		/* RATELIMIT_OVER of a destination rate: the
					   recipient's domain (the caller's string) */
	const char *recipient;		/* RATELIMIT_SUPPRESSED: the address (rc->rcpt) */
	char reason[128];		/* RATELIMIT_STORE_FAILED: why (no secrets; for logs) */
	const char *brief;		/* ... and in one word, safe to show in mail:
					 * "backoff", "timeout" or "unavailable" */
	/* per bulk rule of the class (same index): messages of the account
	 * in the rule's window before this one; volume rules only */
	unsigned long volume[POLICY_BULK_MAX];
	/* account safety: the suspension, a rule this event tripped, the
	   thresholds it reached (safety.h; safety_report tells the world) */
	struct safety_outcome safety;
};

enum ratelimit_status ratelimit_check_message(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, struct ratelimit_receipt *r,
	struct ratelimit_verdict *v);
/* ratelimit_check_message with the client for distinct-ips (safety_client_element). */
enum ratelimit_status ratelimit_check_message_from(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const char *client,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v);
enum ratelimit_status ratelimit_check_recipients(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const char *domain, unsigned long count,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v);

/* Recipients of one event: how many, and how many each destination rate covers. */
struct ratelimit_rcpts {
	unsigned long count;
	unsigned long to[POLICY_RATES_MAX];	/* per recipients rate of the class */
	const char *domain;		/* the last domain a destination rate covered */
	const char *rcpt;		/* one recipient's address (distinct-recipients), or NULL */
};
void ratelimit_rcpts_add(struct ratelimit_rcpts *rc, const struct policy_class *c,
	const char *domain, unsigned long n);
enum ratelimit_status ratelimit_check_rcpts(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const struct ratelimit_rcpts *rc,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v);
/* Returns every token the receipt holds; the receipt is empty after. */
void ratelimit_refund(struct store *st, struct ratelimit_receipt *r);
/* Forgets the receipt without refunding (the message was accepted). */
void ratelimit_receipt_clear(struct ratelimit_receipt *r);

/* For bulkmilterctl usage. */
struct ratelimit_usage {
	const struct policy_class *cls;
	const struct policy_rate *rate;
	const char *kind;		/* "messages" or "recipients" */
	double used, left;		/* tokens; fractions while refilling */
	long full_in_ms;		/* 0 = full; a calendar window: until it ends */
	long long resets_ms;		/* store clock when full again (window: its end) */
};
/* -1 with err also when more than max buckets are in use. */
int ratelimit_usage(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, struct ratelimit_usage *out, size_t max, size_t *n, char *err,
	size_t errlen);
/* Also every bucket of the assigned classes, used or not (bulkmilterctl usage). */
int ratelimit_usage_in(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, const struct policy_class *const *assigned, size_t nassigned,
	struct ratelimit_usage *out, size_t max, size_t *n, char *err, size_t errlen);
/* Bits of ratelimit_reset's scopes. */
#define RATELIMIT_SCOPE(s) (1u << (s))
#define RATELIMIT_SCOPES_ALL (RATELIMIT_SCOPE(SCOPE_ACCOUNT) | RATELIMIT_SCOPE(SCOPE_DOMAIN) \
			      | RATELIMIT_SCOPE(SCOPE_CLASS))
int ratelimit_reset(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, unsigned scopes, char *err, size_t errlen);

#endif
