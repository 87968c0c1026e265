/*
 * NAME
 *	safety - account safety on the mail path: suspension, suspend-if
 *	rules and notify thresholds, as part of a rate-limit charge
 * SYNOPSIS
 *	bool safety_wants_mail_event(const struct policy_class *c);
 *	bool safety_wants_rcpt_event(const struct policy_class *c);
 *	int safety_block_build(struct safety_block *b,
 *		const struct policy_class *c, enum policy_direction dir,
 *		const char *account, bool message, const char *element,
 *		const struct store_bucket *buckets,
 *		const struct policy_rate *const *rates, const bool *bmessage,
 *		size_t nb);
 *	void safety_block_free(struct safety_block *b);
 *	void safety_block_outcome(const struct safety_block *b,
 *		const struct store_safety_result *r, struct safety_outcome *out);
 *	void safety_report(const struct safety_outcome *o, const char *qid,
 *		const struct policy_class *c, const char *account);
 *	int safety_suspend(struct store *st, const struct policy_class *c,
 *		enum policy_direction dir, const char *account,
 *		const struct policy_suspend_rule *rule, long long figure,
 *		const char *reason, const char *qid, char *err, size_t errlen);
 *	int safety_store_suspend(struct store *st, enum policy_direction dir,
 *		const char *account, unsigned long for_ms, const char *by,
 *		const char *reason, long long *since_ms, long long *until_ms,
 *		char *err, size_t errlen);
 *	int safety_store_release(struct store *st, enum policy_direction dir,
 *		const char *account, bool *released, char *err, size_t errlen);
 *	int safety_store_list(struct store *st, const char *prefix,
 *		struct safety_suspension **list, size_t *n, char *err,
 *		size_t errlen);
 *	void safety_client_element(const struct netaddr *a, char *buf,
 *		size_t len);
 *	unsigned long safety_rate_period_ms(const struct policy_suspend_rule *r);
 *	int safety_rate_keys(const struct policy_class *c, const char *account,
 *		const struct policy_suspend_rule *r, char *sent, char *events,
 *		size_t len);
 * DESCRIPTION
 *	Every rate-limit charge of a classed account carries a safety part
 *	(struct store_safety, store.h) in its one script: the account's
 *	suspension is checked, its suspend-if counts are kept and its
 *	notify thresholds fire there, so none of it costs a round trip.
 *	Keys, under the account's hash tag like its buckets:
 *
 *	    {ACCOUNT}:susp                          the suspension (a hash:
 *	                                            since, until, by, reason,
 *	                                            account; expires at until)
 *	    {ACCOUNT}:CLASS:si:KIND:LIMIT/PERIODMS  a suspend-if count
 *	                                            (HyperLogLog or counter)
 *	    {ACCOUNT}:CLASS:n:m|r:COUNT/PERIOD:PCT  a threshold already sent
 *
 *	("in{ACCOUNT}" for inbound accounts, as ratelimit.h.) bulkmilterctl
 *	suspend/release/suspended work on the same hash.
 *
 *	safety_wants_mail_event: a message event must reach the store for
 *	this class even without messages rates (it has suspend-if rules or
 *	a suspended line). A class with recipients rates only is checked at
 *	RCPT TO; a class with no rates and no safety lines is never checked
 *	(class unlimited { } stays free). safety_wants_rcpt_event: a
 *	recipient event must reach the store even when no recipients rate
 *	covers it (the class counts distinct-recipients, or looks recipients
 *	up in the account's suppression list: "suppress" or "suppressed"
 *	and not "suppressed none"). An outbound recipient event of such a
 *	class carries the list's key and the recipient (store.h).
 *
 *	safety_block_build fills b for one event: message (MAIL FROM;
 *	element = the client, safety_client_element) or recipients (RCPT
 *	TO; element = the recipient address, NULL when the event has no
 *	single recipient). distinct-ips counts message events,
 *	distinct-recipients recipient events, deferred every refused one.
 *	The notify entries are the class's thresholds for each of the
 *	charge's buckets that belong to the account (not its domain's or
 *	class's). -1: out of memory (b is empty).
 *
 *	safety_block_outcome turns the store's answer into policy terms
 *	(the rule that tripped, the rate of each threshold that fired);
 *	safety_report logs, counts and posts the events of an outcome: a
 *	trip logs one line "QID: account=A class=C suspended by suspend-if
 *	RULE (FIGURE)" and sends rule-tripped and suspended; each fired
 *	threshold sends threshold.
 *
 *	safety_suspend is a trip found outside a charge (bounce-rate and
 *	complaint-rate, evaluated when a report is read): it suspends
 *	account for the class's suspend-for by rule (one round trip,
 *	store_eval; safe to run twice), then logs, counts and sends the
 *	events as a trip in a charge does; reason is what the suspension
 *	and the log show ("bounce-rate > 5% min 200/1d (14 of 210)"),
 *	figure the rule-tripped event's figure. qid names the report in the
 *	log line. 0, or -1 with err (Redis did not answer: nothing was
 *	suspended, nothing sent).
 *
 *	bounce-rate and complaint-rate (SPEC "Bounces, complaints and
 *	suppression"): each admitted outbound recipient of the class counts
 *	as sent, in the recipient's script, in the sliding window of the
 *	rule's min period (a rolling day without one); the hard bounces and
 *	complaints are counted, and the rule evaluated, when a report is
 *	read (intake.h). safety_rate_keys names both counts:
 *
 *	    {ACCOUNT}:CLASS:si:sent:PERIODMS
 *	    {ACCOUNT}:CLASS:si:bounce-rate|complaint-rate:PERIODMS
 *
 *	safety_store_suspend, safety_store_release and safety_store_list are
 *	the suspension hash off the mail path (bulkmilterctl; safety_suspend),
 *	each through store_eval, so they reach the master behind sentinels
 *	and the account's node in a cluster like the mail path does.
 *	safety_store_suspend (re)writes the account's suspension for for_ms
 *	(0: until released), by and reason, and gives the store clock's
 *	since and until (0: until released). safety_store_release deletes it
 *	(*released: there was one). safety_store_list pages through the
 *	suspensions of prefix (RedisPrefix) with SCAN, never KEYS (a large
 *	Redis is not blocked), into *list (free it); its texts are cut at
 *	STORE_EVAL_VALUE_MAX - 1 octets. In a cluster it scans every master
 *	in turn (store_masters), so it lists the suspensions of every slot.
 *	All three return 0, or -1 with err.
 *
 *	safety_client_element writes the client's text for distinct-ips:
 *	an IPv4 address as it is, an IPv6 address as its /64
 *	("2001:db8:1:2::/64"), so one host's many addresses count once.
 * DIAGNOSTICS
 *	Metrics: bulkmilter_rule_trips_total and bulkmilter_suspensions_total
 *	per trip this milter saw; events.h for the events.
 */
#ifndef BM_SAFETY_H
#define BM_SAFETY_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"
#include "policy.h"
#include "store.h"

#define SAFETY_SUSPENSION_SUFFIX ":susp"

struct safety_block {
	struct store_safety sf;
	struct store_safety_count counts[STORE_SAFETY_COUNTS_MAX];
	const struct policy_suspend_rule *rule[STORE_SAFETY_COUNTS_MAX];
	struct store_safety_notify notify[STORE_SAFETY_NOTIFY_MAX];
	const struct policy_rate *nrate[STORE_SAFETY_NOTIFY_MAX];
	bool nmessage[STORE_SAFETY_NOTIFY_MAX];
	char *owned[2 + STORE_SAFETY_COUNTS_MAX + STORE_SAFETY_NOTIFY_MAX];	/* the keys */
	size_t nowned;
};

/* A suspension as safety_store_list reads it. */
struct safety_suspension {
	char account[STORE_EVAL_VALUE_MAX];
	char by[STORE_EVAL_VALUE_MAX];
	char reason[STORE_EVAL_VALUE_MAX];
	long long since_ms, until_ms;		/* until 0: until released */
};

struct safety_outcome {
	enum store_suspension suspended;
	char by[STORE_SAFETY_TEXT_MAX];
	char reason[STORE_SAFETY_TEXT_MAX];
	long long until_ms;
	const struct policy_suspend_rule *tripped;	/* SUSPENDED_NOW */
	long long figure;
	size_t nfired;
	struct {
		const struct policy_rate *rate;
		const char *kind;		/* "messages" or "recipients" */
		unsigned pct;
		long long used, resets_ms;
	} fired[STORE_SAFETY_NOTIFY_MAX];
};

/* bounce-rate, complaint-rate without "min N/PERIOD": a rolling day. */
#define SAFETY_RATE_PERIOD_DEFAULT_MS (24UL * 3600 * 1000)

bool safety_wants_mail_event(const struct policy_class *c);
unsigned long safety_rate_period_ms(const struct policy_suspend_rule *r);
int safety_rate_keys(const struct policy_class *c, const char *account,
	const struct policy_suspend_rule *r, char *sent, char *events, size_t len);
bool safety_wants_rcpt_event(const struct policy_class *c);
int safety_block_build(struct safety_block *b, const struct policy_class *c,
	enum policy_direction dir, const char *account, bool message, const char *element,
	const struct store_bucket *buckets, const struct policy_rate *const *rates,
	const bool *bmessage, size_t nb);
void safety_block_free(struct safety_block *b);
void safety_block_outcome(const struct safety_block *b, const struct store_safety_result *r,
	struct safety_outcome *out);
void safety_report(const struct safety_outcome *o, const char *qid,
	const struct policy_class *c, const char *account);
int safety_suspend(struct store *st, const struct policy_class *c, enum policy_direction dir,
	const char *account, const struct policy_suspend_rule *rule, long long figure,
	const char *reason, const char *qid, char *err, size_t errlen);
int safety_store_suspend(struct store *st, enum policy_direction dir, const char *account,
	unsigned long for_ms, const char *by, const char *reason, long long *since_ms,
	long long *until_ms, char *err, size_t errlen);
int safety_store_release(struct store *st, enum policy_direction dir, const char *account,
	bool *released, char *err, size_t errlen);
int safety_store_list(struct store *st, const char *prefix, struct safety_suspension **list,
	size_t *n, char *err, size_t errlen);
void safety_client_element(const struct netaddr *a, char *buf, size_t len);

#endif
