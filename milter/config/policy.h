/*
 * NAME
 *	policy - the policy file: classes and assign rules
 * SYNOPSIS
 *	struct policy *policy_load(const char *path, struct diag *errs);
 *	void policy_free(struct policy *p);
 *	const struct policy_class *policy_lookup(const struct policy *p,
 *		const struct policy_facts *facts, const struct policy_assign **why);
 *	int policy_account(const struct policy_class *c,
 *		const struct policy_facts *facts, char *buf, size_t len);
 *	int policy_parse_rate(const char *text, struct policy_rate *out);
 * DESCRIPTION
 *	A policy is immutable once loaded; readers need no lock. Classes hold
 *	rates, the over-limit action, bulk conditions and the bulk-sender
 *	checks; assign rules map the facts of a transaction (direction, SASL
 *	login, envelope sender, its domain, client address) to a class.
 *	The first matching assign line wins; no match means no class: not
 *	rate-limited and not bulk. assign sender and assign domain lines
 *	match outbound mail only: the envelope sender of inbound mail is
 *	whatever the client wrote.
 *
 *	Values of assign lines are exact (case-insensitive), glob (* ? [..]),
 *	CIDR for ip, or file:PATH with "value class" lines kept in a hash
 *	table (lookup cost does not grow with the map). Every error is a
 *	FILE:LINE diagnostic; policy_load returns NULL when there was any.
 */
#ifndef BM_POLICY_H
#define BM_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "netaddr.h"

/* Limits of one class; a policy needing more is an error, not a surprise. */
#define POLICY_RATES_MAX 8		/* rates per messages/recipients line set */
#define POLICY_BULK_MAX 16		/* bulk lines per class */
#define POLICY_ACCOUNT_SOURCES_MAX 4
#define POLICY_TEXT_MAX 200		/* custom reply text */
#define POLICY_NAME_MAX 64		/* class name */
#define POLICY_ACCOUNT_MAX 320		/* an account: up to an address + prefix */

struct policy_rate {
	unsigned long count;		/* tokens the bucket holds */
	unsigned long period_ms;	/* refill time of the whole bucket */
	char text[32];			/* as written, e.g. "200/1h" (for logs, keys) */
};

enum policy_account_source { ACCOUNT_SASL, ACCOUNT_SENDER, ACCOUNT_DOMAIN, ACCOUNT_IP };

enum policy_action {
	ACTION_NONE = 0,		/* spf-fail none */
	ACTION_TEMPFAIL,
	ACTION_REJECT,
	ACTION_HOLD,
	ACTION_TAG,
};

enum policy_bulk_kind {
	BULK_ALWAYS, BULK_NEVER, BULK_RECIPIENTS, BULK_HEADER, BULK_PRECEDENCE, BULK_VOLUME,
};

struct policy_bulk_rule {
	enum policy_bulk_kind kind;
	unsigned long min;		/* recipients >= min */
	char *header;			/* header NAME */
	struct policy_rate volume;	/* volume >= count/period */
};

/* bulk-require checks, a bit set */
#define BULK_REQ_DKIM_ALIGNED	0x1u
#define BULK_REQ_SPF_ALIGNED	0x2u
#define BULK_REQ_LIST_UNSUB	0x4u
#define BULK_REQ_DMARC_RECORD	0x8u

struct policy_class {
	char name[POLICY_NAME_MAX];
	int line;				/* where it was defined */
	enum policy_account_source account[POLICY_ACCOUNT_SOURCES_MAX];
	size_t account_count;			/* default: sasl sender ip */
	struct policy_rate messages[POLICY_RATES_MAX];
	size_t messages_count;
	struct policy_rate recipients[POLICY_RATES_MAX];
	size_t recipients_count;
	enum policy_action over_limit;		/* default tempfail */
	char over_limit_text[POLICY_TEXT_MAX];	/* "" = default text */
	struct policy_bulk_rule bulk[POLICY_BULK_MAX];
	size_t bulk_count;
	unsigned bulk_require;			/* BULK_REQ_* */
	enum policy_action bulk_noncompliant;	/* default tag */
	char bulk_noncompliant_text[POLICY_TEXT_MAX];
	enum policy_action spf_fail;		/* default none */
	bool has_volume;			/* any bulk volume rule */
};

enum policy_direction { DIRECTION_INBOUND = 0, DIRECTION_OUTBOUND = 1 };

/* What is known of a transaction at MAIL FROM. NULL or "" = absent. */
struct policy_facts {
	enum policy_direction direction;
	const char *sasl;		/* {auth_authen} */
	const char *sender;		/* envelope sender without <>, "" for null */
	const struct netaddr *client;	/* NULL or family 0 = unknown */
};

enum policy_key { KEY_SASL, KEY_SENDER, KEY_DOMAIN, KEY_IP, KEY_OUTBOUND, KEY_INBOUND };

struct policy_assign;			/* one assign line (opaque) */
struct policy;				/* opaque */

struct policy *policy_load(const char *path, struct diag *errs);
void policy_free(struct policy *p);

/*
 * Finds the class of a transaction. why (may be NULL) receives the
 * assign line that matched, for explain and logs (policy_assign_describe).
 */
const struct policy_class *policy_lookup(const struct policy *p,
	const struct policy_facts *facts, const struct policy_assign **why);
/* "FILE:LINE assign sasl file:/x (matched alice)" style description. */
void policy_assign_describe(const struct policy_assign *a, char *buf, size_t len);
const struct policy_class *policy_class_find(const struct policy *p, const char *name);
size_t policy_class_count(const struct policy *p);
const struct policy_class *policy_class_at(const struct policy *p, size_t i);

/*
 * Writes the account of a transaction: the first source of the class's
 * account line that the message has, as its bare value: the SASL login
 * as given, the envelope sender or its domain in lower case, or the
 * client address. This is the name ops type in "bulkmilterctl usage" and
 * read in replies. It does not say the direction: the rate limits keep
 * the buckets of an inbound account apart from those of the outbound
 * account of the same name (ratelimit.h), so a forged sender spends no
 * local account's quota. Returns -1 when the message has none of the
 * sources.
 */
int policy_account(const struct policy_class *c, const struct policy_facts *facts,
	char *buf, size_t len);
/* "100/1h", "5/10s", "2000/d" (a missing N means 1). 0 or -1. */
int policy_parse_rate(const char *text, struct policy_rate *out);
const char *policy_action_name(enum policy_action a);

#endif
