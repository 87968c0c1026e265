/*
 * NAME
 *	policy - the policy file: classes and assign rules
 * SYNOPSIS
 *	struct policy *policy_load(const char *path, struct diag *errs);
 *	struct policy *policy_load_zone(const char *path, const char *zone,
 *		struct diag *errs);
 *	void policy_free(struct policy *p);
 *	const struct policy_class *policy_lookup(const struct policy *p,
 *		const struct policy_facts *facts, const struct policy_assign **why);
 *	int policy_account(const struct policy_class *c,
 *		const struct policy_facts *facts, char *buf, size_t len);
 *	int policy_parse_rate(const char *text, struct policy_rate *out);
 *	void policy_rate_describe(const struct policy_rate *r, char *buf,
 *		size_t len);
 *	bool policy_rate_applies(const struct policy_rate *r, const char *domain);
 *	bool policy_safety_directive(const char *word);
 *	int policy_safety_parse(struct policy_class *c, char **w, int n,
 *		char *err, size_t errlen);
 *	const char *policy_suspend_kind_name(enum policy_suspend_kind k);
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
 *
 *	Rates: "messages|recipients RATE... [by account|domain|class] [to
 *	DOMAIN...]". A RATE is COUNT/[N]s|m|h|d (a rolling token bucket) or
 *	COUNT/day|week|month (a calendar window in the class's zone: its
 *	"timezone" line, else TimeZone, loaded from the system's zone data
 *	with the policy, so an unknown zone is a FILE:LINE error). "by"
 *	and "to" apply to every rate of their line; "to" only on recipients
 *	rates, "by domain" only where an account can have a domain.
 *
 *	Account safety (policy_safety.c): "notify P%..." (up to 4, ascending),
 *	"suspended hold|tempfail|reject [text]" (default hold), "suspend-if
 *	KIND > N/PERIOD" (distinct-ips, distinct-recipients, deferred) or
 *	"suspend-if KIND > P% [min N/PERIOD]" (bounce-rate, complaint-rate),
 *	one line per kind, and "suspend-for DURATION" (1s to 365d, default
 *	24h) fill the class's safety fields; suspended and suspend-for may
 *	appear once. What they do is safety.h's.
 */
#ifndef BM_POLICY_H
#define BM_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "calendar.h"
#include "diag.h"
#include "netaddr.h"

/* Limits of one class; a policy needing more is an error, not a surprise. */
#define POLICY_RATES_MAX 16		/* rates per messages/recipients line set */
#define POLICY_BULK_MAX 16		/* bulk lines per class */
#define POLICY_ACCOUNT_SOURCES_MAX 4
#define POLICY_TEXT_MAX 200		/* custom reply text */
#define POLICY_NAME_MAX 64		/* class name */
#define POLICY_ACCOUNT_MAX 320		/* an account: up to an address + prefix */

/* Whose bucket a rate is (SPEC "Quotas as hosting providers run them"). */
enum policy_scope {
	SCOPE_ACCOUNT = 0,		/* by account (default) */
	SCOPE_DOMAIN,			/* by domain: the account's domain part */
	SCOPE_CLASS,			/* by class: one bucket for the whole class */
};

struct policy_rate {
	unsigned long count;		/* tokens the bucket holds */
	unsigned long period_ms;	/* refill time of the whole bucket; 0 for
					   a calendar window */
	enum calendar_period calendar;	/* CALENDAR_NONE: a rolling token bucket */
	enum policy_scope scope;
	char **to;			/* recipients rates: only recipients at these
					   domains ("*.x": subdomains of x); owned */
	size_t to_count;		/* 0: every recipient */
	char text[32];			/* as written, e.g. "200/1h", "2000/day" */
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

/* Account safety (SPEC.md "Account safety"; policy_safety.c parses it). */
#define POLICY_NOTIFY_MAX 4		/* notify thresholds per class */
#define POLICY_SUSPEND_IF_MAX 8		/* suspend-if rules per class */
#define POLICY_SUSPEND_FOR_DEFAULT_MS (24UL * 3600 * 1000)

enum policy_suspend_kind {
	SUSPEND_DISTINCT_IPS,		/* client addresses (IPv6 by /64) of the account */
	SUSPEND_DISTINCT_RECIPIENTS,
	SUSPEND_DEFERRED,		/* the account's own over-limit answers */
	SUSPEND_BOUNCE_RATE,		/* share of hard bounces (read from reports) */
	SUSPEND_COMPLAINT_RATE,		/* share of complaints (read from reports) */
};

/* "suspend-if KIND > LIMIT/PERIOD" or "suspend-if KIND-rate > P% [min N/PERIOD]". */
struct policy_suspend_rule {
	enum policy_suspend_kind kind;
	unsigned long limit;		/* counts: trips when the count exceeds it */
	unsigned long period_ms;	/* counts: over this period */
	double share;			/* rates: trips above this share (0.05 for 5%) */
	unsigned long min;		/* rates: ... once at least min were sent */
	unsigned long min_period_ms;	/* rates: in this period (0: no min) */
	char text[64];			/* as written, "distinct-ips > 5/1h" (logs, events) */
};

/* suppress: what puts a recipient on the account's suppression list (report.h). */
#define POLICY_SUPPRESS_HARD_BOUNCE	0x1u
#define POLICY_SUPPRESS_COMPLAINT	0x2u

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
	enum policy_action from_unauthorized;	/* default none (authority.h) */
	char from_unauthorized_text[POLICY_TEXT_MAX];
	bool has_volume;			/* any bulk volume rule */
	const struct calendar_zone *zone;	/* calendar windows: timezone, else
						   TimeZone; owned by the policy */
	int timezone_line;			/* where timezone was set, 0: not */
	unsigned notify_pct[POLICY_NOTIFY_MAX];	/* notify: thresholds in percent, ascending */
	size_t notify_count;
	enum policy_action suspended;		/* default hold */
	char suspended_text[POLICY_TEXT_MAX];
	struct policy_suspend_rule suspend_if[POLICY_SUSPEND_IF_MAX];
	size_t suspend_if_count;
	unsigned long suspend_for_ms;		/* default POLICY_SUSPEND_FOR_DEFAULT_MS */
	int suspended_line, suspend_for_line;	/* where set (each once) */
	unsigned suppress;			/* POLICY_SUPPRESS_*; 0: no suppression, no Feedback-ID */
	enum policy_action suppressed;		/* default reject; none, tempfail, tag */
	int suppress_line, suppressed_line;	/* where set (each once) */
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
/*
 * policy_load with the zone of TimeZone for classes without their own
 * timezone line. The caller checks zone (settings.c); one that does not
 * load here leaves those classes in UTC without a second error.
 */
struct policy *policy_load_zone(const char *path, const char *zone, struct diag *errs);
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
/*
 * "100/1h", "5/10s", "2000/d" (a missing N means 1), or a calendar
 * window "2000/day", "/week", "/month". 0 or -1.
 */
int policy_parse_rate(const char *text, struct policy_rate *out);
/* "300/1h to gmail.com googlemail.com", "50000/day by domain" (explain, logs). */
void policy_rate_describe(const struct policy_rate *r, char *buf, size_t len);
/* Whether a recipients rate applies to a recipient at domain (lower case). */
bool policy_rate_applies(const struct policy_rate *r, const char *domain);
const char *policy_scope_name(enum policy_scope s);
const char *policy_action_name(enum policy_action a);
/*
 * policy_safety.c: true when word is one of notify, suspend-if,
 * suspend-for; policy_safety_parse parses such a line into c, or
 * returns -1 with the message in err.
 */
bool policy_safety_directive(const char *word);
int policy_safety_parse(struct policy_class *c, char **w, int n, char *err, size_t errlen);
const char *policy_suspend_kind_name(enum policy_suspend_kind k);

#endif
