/*
 * ratelimit - turns a class's rates and volume rules into store buckets
 * and windows for one account, and keeps the receipt of what a
 * transaction was charged.
 *
 * What it does: names the keys (the layout in ratelimit.h), asks the
 * store for one atomic charge per event, maps the store's answer back to
 * the class's rates and bulk rules, and refunds receipts.
 * What it does not: any bucket arithmetic or Redis talk (store_redis*.c),
 * or decide the SMTP reply (callbacks.c).
 *
 * Decisions:
 * - A rate or volume period listed twice in one class is one bucket or
 *   window: the script would read a repeated key once and charge it
 *   once but refund it twice, and a window would count a message twice.
 * - Recipient events of the same class and account share one receipt
 *   entry whose cost grows: refunding n tokens at once is the same as n
 *   refunds of one, so a message with any number of recipients stays one
 *   entry, and there is no cap on events that could fail open (every
 *   recipient is counted). Message events keep their own entry: each
 *   names the volume slot (the store clock of its charge) that its
 *   refund uncounts, and a transaction has one.
 * - The receipt entry is made ready before the round trip, so a charge
 *   Redis accepted can always be recorded (no out-of-memory after it).
 * - A receipt entry keeps a cost per rate of its kind: a destination
 *   rate ("to") takes only the recipients at its domains, so the costs
 *   of one entry differ from rate to rate, and its refund gives each
 *   rate back exactly what it took.
 * - A recipients entry keeps the bucket keys of its rates, made for the
 *   transaction's first recipient and reused for the others: they
 *   depend only on the class, the direction and the account, and making
 *   them was, with the script's numbers, most of what a further bucket
 *   cost per recipient (a hosting plan has four). The class stays valid
 *   while the receipt does (the entry already points at it).
 * - Calendar windows: the boundaries are computed here, around the
 *   caller's view of the store clock (store_now_ms), and passed with the
 *   windows before and after; the script picks by the Redis clock. A
 *   refund names the window of the first charge (at_ms, the store clock
 *   the script ran at): if the transaction crossed midnight, that window
 *   is gone and nothing is given back (never too much).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "calendar.h"
#include "fnv.h"
#include "log.h"
#include "ratelimit.h"
#include "text.h"

_Static_assert(POLICY_BULK_MAX <= STORE_WINDOWS_MAX, "a window per bulk rule");

struct ratelimit_charge {
	const struct policy_class *cls;
	enum policy_direction dir;
	char *account;
	bool message;			/* message event (else recipients) */
	unsigned long cost[POLICY_RATES_MAX];	/* tokens taken, per rate of the kind */
	long long at_ms;		/* store clock of the (first) charge */
	char *key[POLICY_RATES_MAX];	/* recipients: bucket keys made so far (rl_keys) */
};

/*
 * The buckets and windows of one store call, with where each came from.
 * Keys are allocated; rl_set_free releases them.
 */
struct rl_set {
	bool borrowed;				/* keys belong to a key cache, not to the set */
	struct store_bucket *b;
	const struct policy_class **bcls;
	const struct policy_rate **brate;
	bool *bmessage;
	size_t nb, bcap;
	struct store_window *w;
	size_t nw, wcap;
	int rule_window[POLICY_BULK_MAX];	/* last class added: bulk rule -> window */
	bool failed;				/* out of memory */
};

static const char *rl_kind_name(bool message)
{
	return message ? "messages" : "recipients";
}

static void rl_set_init(struct rl_set *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < POLICY_BULK_MAX; i++)
		s->rule_window[i] = -1;
}

static void rl_set_free(struct rl_set *s)
{
	for (size_t i = 0; i < s->nb && !s->borrowed; i++)
		free((char *)s->b[i].key);
	for (size_t i = 0; i < s->nw; i++)
		free((char *)s->w[i].key);
	free(s->w);
	free(s->b);
	free(s->bcls);
	free(s->brate);
	free(s->bmessage);
}

static bool rl_grow(void **p, size_t elem, size_t cap)
{
	void *q = realloc(*p, elem * cap);
	if (q == NULL)
		return false;
	*p = q;
	return true;
}

/*
 * What a key puts before the account's hash tag: nothing for outbound
 * mail (the names buckets always had), "in" for inbound mail. Every
 * outbound key opens with the tag, so no account name, whatever it
 * holds, makes an inbound key equal an outbound one, and both keep the
 * account's hash tag (its slot).
 */
static const char *rl_side(enum policy_direction dir)
{
	return dir == DIRECTION_INBOUND ? "in" : "";
}

/* The domain part of an account (after its last '@'), or NULL. */
static const char *rl_account_domain(const char *account)
{
	const char *at = strrchr(account, '@');
	return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

/*
 * The key of one rate of a class for an account (layout in ratelimit.h),
 * or NULL with *none set when the rate has no bucket for this account (a
 * domain scope and an account without a domain).
 */
static char *rl_key(enum policy_direction dir, const char *account, const struct policy_class *c,
	const struct policy_rate *r, bool message, bool *none)
{
	char buf[POLICY_ACCOUNT_MAX + POLICY_NAME_MAX + 96];
	struct text t = TEXT_INIT(buf);
	const char *domain = NULL;

	*none = false;
	if (r->scope == SCOPE_DOMAIN && (domain = rl_account_domain(account)) == NULL) {
		*none = true;
		return NULL;
	}
	/* SIDE{TAG}:CLASS:SCOPE KIND:COUNT/PERIOD[:to:HASH] */
	text_str(&t, rl_side(dir));
	text_put(&t, "{", 1);
	switch (r->scope) {
	case SCOPE_DOMAIN: {
		size_t at = t.len;
		text_put(&t, "d:", 2);
		text_str(&t, domain);
		if (text_ok(&t))
			for (char *p = t.buf + at; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
		break;
	}
	case SCOPE_CLASS:
		text_put(&t, "c:", 2);
		text_str(&t, c->name);
		break;
	default:
		text_str(&t, account);
		break;
	}
	text_put(&t, "}:", 2);
	text_str(&t, c->name);
	text_put(&t, ":", 1);
	if (r->scope == SCOPE_DOMAIN)
		text_put(&t, "d:", 2);
	else if (r->scope == SCOPE_CLASS)
		text_put(&t, "c:", 2);
	text_put(&t, message ? "m:" : "r:", 2);
	text_num(&t, r->count);
	text_put(&t, "/", 1);
	if (r->calendar != CALENDAR_NONE)
		text_str(&t, calendar_period_name(r->calendar));
	else
		text_num(&t, r->period_ms);
	if (r->to_count > 0) {
		uint32_t h = FNV1A32_OFFSET;
		for (size_t i = 0; i < r->to_count; i++)
			h = fnv1a32(h, r->to[i], strlen(r->to[i]) + 1);
		text_put(&t, ":to:", 4);
		text_hex(&t, h, 8);
	}
	return text_dup(&t);
}

/* A key cache's mark of a rate without a bucket for the account. */
static char rl_no_key[] = "";

/* Frees a key cache (POLICY_RATES_MAX entries, NULL: not made yet). */
static void rl_keys_free(char **cache)
{
	for (size_t i = 0; i < POLICY_RATES_MAX; i++)
		if (cache[i] != rl_no_key)
			free(cache[i]);
	memset(cache, 0, POLICY_RATES_MAX * sizeof(*cache));
}

/*
 * The key of rate i from cache, made and kept there on first use; NULL
 * with *none set when the rate has no bucket for the account, NULL
 * alone when out of memory.
 */
static const char *rl_keys_get(char **cache, size_t i, enum policy_direction dir,
	const char *account, const struct policy_class *c, const struct policy_rate *r,
	bool message, bool *none)
{
	*none = false;
	if (cache[i] == NULL) {
		bool no;
		char *key = rl_key(dir, account, c, r, message, &no);
		if (key == NULL && !no)
			return NULL;
		cache[i] = no ? rl_no_key : key;
	}
	*none = cache[i] == rl_no_key;
	return *none ? NULL : cache[i];
}

/*
 * Store boundaries of the calendar window of r that holds at_ms, with
 * the windows before and after it (store.h).
 */
static void rl_bounds(const struct policy_class *c, const struct policy_rate *r, long long at_ms,
	long long bounds[4])
{
	long long t = at_ms >= 0 ? at_ms / 1000 : (at_ms - 999) / 1000;

	calendar_windows(c->zone, r->calendar, t, bounds);
	for (int i = 0; i < 4; i++)
		bounds[i] *= 1000;
}

static bool rl_set_room(struct rl_set *s)
{
	if (s->nb < s->bcap)
		return true;
	size_t cap = s->bcap ? 2 * s->bcap : 16;
	if (!rl_grow((void **)&s->b, sizeof(*s->b), cap)
	    || !rl_grow((void **)&s->bcls, sizeof(*s->bcls), cap)
	    || !rl_grow((void **)&s->brate, sizeof(*s->brate), cap)
	    || !rl_grow((void **)&s->bmessage, sizeof(*s->bmessage), cap))
		return false;
	s->bcap = cap;
	return true;
}

/*
 * The buckets of one kind of a class, once per distinct key, grouped by
 * scope (account, then domain, then class: store.h's hash-tag groups).
 * costs[i] is what rate i takes or gives back; a rate of cost 0 (a
 * destination rate the recipient is not for) has no bucket in the call.
 * costs NULL: every rate, cost 0 (usage, reset). at_ms places the
 * calendar windows. cache (POLICY_RATES_MAX entries) or NULL: where the
 * keys are taken from and kept (the set must then be borrowed, and may
 * not hold keys of another class or kind), else each key is the set's.
 */
static void rl_set_rates(struct rl_set *s, enum policy_direction dir, const char *account,
	const struct policy_class *c, bool message, const unsigned long *costs, long long at_ms,
	char **cache)
{
	const struct policy_rate *rates = message ? c->messages : c->recipients;
	size_t count = message ? c->messages_count : c->recipients_count;

	for (int scope = SCOPE_ACCOUNT; scope <= SCOPE_CLASS; scope++) {
		for (size_t i = 0; i < count && !s->failed; i++) {
			if ((int)rates[i].scope != scope || (costs != NULL && costs[i] == 0))
				continue;
			bool none;
			const char *key = cache != NULL
				? rl_keys_get(cache, i, dir, account, c, &rates[i], message, &none)
				: rl_key(dir, account, c, &rates[i], message, &none);
			if (none)
				continue;
			if (key == NULL || !rl_set_room(s)) {
				if (cache == NULL)
					free((char *)key);
				s->failed = true;
				return;
			}
			bool seen = false;
			for (size_t j = 0; j < s->nb && !seen; j++)
				seen = strcmp(s->b[j].key, key) == 0;
			if (seen) {
				if (cache == NULL)
					free((char *)key);
				continue;
			}
			s->b[s->nb] = (struct store_bucket){ key, rates[i].count, rates[i].period_ms,
							     costs ? costs[i] : 0, { 0 } };
			if (rates[i].calendar != CALENDAR_NONE)
				rl_bounds(c, &rates[i], at_ms, s->b[s->nb].bounds);
			s->bcls[s->nb] = c;
			s->brate[s->nb] = &rates[i];
			s->bmessage[s->nb] = message;
			s->nb++;
		}
	}
}

/*
 * The volume windows of a class, once per distinct period; rule_window
 * maps each volume rule of the class to its window (index from the
 * class's first window).
 */
static void rl_set_windows(struct rl_set *s, enum policy_direction dir, const char *account,
	const struct policy_class *c, long long at_ms)
{
	size_t first = s->nw;

	for (size_t i = 0; i < POLICY_BULK_MAX; i++)
		s->rule_window[i] = -1;
	for (size_t i = 0; i < c->bulk_count && i < POLICY_BULK_MAX && !s->failed; i++) {
		if (c->bulk[i].kind != BULK_VOLUME)
			continue;
		unsigned long period = c->bulk[i].volume.period_ms;
		for (size_t j = first; j < s->nw; j++)
			if (s->w[j].period_ms == period)
				s->rule_window[i] = (int)(j - first);
		if (s->rule_window[i] >= 0)
			continue;
		if (s->nw == s->wcap) {
			size_t cap = s->wcap ? 2 * s->wcap : POLICY_BULK_MAX;
			if (!rl_grow((void **)&s->w, sizeof(*s->w), cap)) {
				s->failed = true;
				return;
			}
			s->wcap = cap;
		}
		char *key;
		if (asprintf(&key, "%s{%s}:%s:v:%lu", rl_side(dir), account, c->name, period) < 0) {
			s->failed = true;
			return;
		}
		s->rule_window[i] = (int)(s->nw - first);
		s->w[s->nw++] = (struct store_window){ key, period, at_ms };
	}
}

static bool rl_account_ok(const char *account)
{
	return account != NULL && account[0] != '\0' && strlen(account) < POLICY_ACCOUNT_MAX;
}

static void rl_verdict_init(struct ratelimit_verdict *v, bool message)
{
	memset(v, 0, sizeof(*v));
	v->kind = rl_kind_name(message);
}

static enum ratelimit_status rl_failed(struct ratelimit_verdict *v, const char *why)
{
	snprintf(v->reason, sizeof(v->reason), "%s", why);
	/* the reason names the Redis host or path: mail gets only a word */
	if (strstr(why, "(backoff)"))
		v->brief = "backoff";
	else if (strstr(why, "temporarily unavailable") || strstr(why, "timed out"))
		v->brief = "timeout";
	else
		v->brief = "unavailable";
	return RATELIMIT_STORE_FAILED;
}

/* The entry a recipients charge of this class and account adds to, or NULL. */
static struct ratelimit_charge *rl_receipt_find(struct ratelimit_receipt *r,
	const struct policy_class *c, enum policy_direction dir, const char *account)
{
	for (size_t i = 0; i < r->n; i++)
		if (!r->charges[i].message && r->charges[i].cls == c && r->charges[i].dir == dir
		    && strcmp(r->charges[i].account, account) == 0)
			return &r->charges[i];
	return NULL;
}

/* Makes room for one more entry; false on no memory. */
static bool rl_receipt_reserve(struct ratelimit_receipt *r)
{
	if (r->n < r->cap)
		return true;
	size_t cap = r->cap ? 2 * r->cap : 4;
	if (!rl_grow((void **)&r->charges, sizeof(*r->charges), cap))
		return false;
	r->cap = cap;
	return true;
}

static enum ratelimit_status rl_check(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, bool message,
	const unsigned long costs[POLICY_RATES_MAX], const char *element,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	if (!rl_account_ok(account))
		return rl_failed(v, "no account, or an account too long to be a key");

	struct ratelimit_charge *merge = message ? NULL : rl_receipt_find(r, c, dir, account);
	char *copy = NULL;
	if (merge == NULL && (!rl_receipt_reserve(r) || (copy = strdup(account)) == NULL))
		return rl_failed(v, "out of memory");

	/* a recipients event takes its keys from its entry, or makes them for it */
	char *fresh[POLICY_RATES_MAX] = { NULL };
	char **keys = message ? NULL : merge != NULL ? merge->key : fresh;
	struct rl_set s;
	rl_set_init(&s);
	s.borrowed = keys != NULL;
	rl_set_rates(&s, dir, account, c, message, costs, store_now_ms(st), keys);
	if (message)
		rl_set_windows(&s, dir, account, c, 0);

	/* the account-safety part rides along in the same script */
	struct safety_block *sb = s.failed ? NULL : malloc(sizeof(*sb));
	struct store_safety_result *sr = malloc(sizeof(*sr));
	struct store_charge_result res;
	char err[sizeof(v->reason)];
	enum ratelimit_status status;
	if (sb == NULL || sr == NULL
	    || safety_block_build(sb, c, dir, account, message, element, s.b, s.brate, s.bmessage,
				  s.nb) != 0) {
		status = rl_failed(v, "out of memory");
		goto out;
	}
	if (store_charge_safe(st, s.b, s.nb, s.w, s.nw, &sb->sf, &res, sr, err, sizeof(err))
	    != STORE_OK) {
		safety_block_free(sb);
		status = rl_failed(v, err);
		goto out;
	}
	safety_block_outcome(sb, sr, &v->safety);
	safety_block_free(sb);
	/* suppressed tag: charged as usual, and said to be listed */
	bool noted = v->safety.suspended == STORE_SUPPRESSED && res.admitted;
	if (v->safety.suspended != STORE_NOT_SUSPENDED && !noted) {
		status = v->safety.suspended == STORE_SUPPRESSED ? RATELIMIT_SUPPRESSED
								 : RATELIMIT_SUSPENDED;
		goto out;
	}
	for (size_t i = 0; i < POLICY_BULK_MAX; i++)
		if (s.rule_window[i] >= 0)
			v->volume[i] = res.volume[s.rule_window[i]];
	if (!res.admitted) {
		v->rate = s.brate[res.over];
		v->retry_ms = res.retry_ms;
		status = RATELIMIT_OVER;
		goto out;
	}

	if (merge != NULL) {
		for (size_t i = 0; i < POLICY_RATES_MAX; i++)
			merge->cost[i] += costs[i];
	} else {
		struct ratelimit_charge *ch = &r->charges[r->n++];
		*ch = (struct ratelimit_charge){ c, dir, copy, message, { 0 }, res.now_ms, { NULL } };
		memcpy(ch->cost, costs, sizeof(ch->cost));
		memcpy(ch->key, fresh, sizeof(ch->key));	/* the entry keeps them */
		memset(fresh, 0, sizeof(fresh));
		copy = NULL;
	}
	r->events++;
	status = noted ? RATELIMIT_SUPPRESSED : RATELIMIT_OK;
out:
	free(sb);
	free(sr);
	rl_set_free(&s);
	rl_keys_free(fresh);
	free(copy);
	return status;
}

enum ratelimit_status ratelimit_check_message_from(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const char *client,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	unsigned long costs[POLICY_RATES_MAX] = { 0 };

	rl_verdict_init(v, true);
	if (c->messages_count == 0 && !c->has_volume && !safety_wants_mail_event(c))
		return RATELIMIT_OK;
	for (size_t i = 0; i < c->messages_count; i++)
		costs[i] = 1;
	return rl_check(st, c, dir, account, true, costs, client, r, v);
}

enum ratelimit_status ratelimit_check_message(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, struct ratelimit_receipt *r,
	struct ratelimit_verdict *v)
{
	return ratelimit_check_message_from(st, c, dir, account, NULL, r, v);
}

void ratelimit_rcpts_add(struct ratelimit_rcpts *rc, const struct policy_class *c,
	const char *domain, unsigned long n)
{
	rc->count += n;
	for (size_t i = 0; i < c->recipients_count && i < POLICY_RATES_MAX; i++)
		if (c->recipients[i].to_count > 0 && policy_rate_applies(&c->recipients[i], domain)) {
			rc->to[i] += n;
			rc->domain = domain;
		}
}

enum ratelimit_status ratelimit_check_rcpts(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const struct ratelimit_rcpts *rc,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	unsigned long costs[POLICY_RATES_MAX] = { 0 };
	bool any = false;

	rl_verdict_init(v, false);
	if (rc->count == 0)
		return RATELIMIT_OK;
	for (size_t i = 0; i < c->recipients_count; i++) {
		costs[i] = c->recipients[i].to_count == 0 ? rc->count : rc->to[i];
		any |= costs[i] > 0;
	}
	if (!any && !safety_wants_rcpt_event(c))
		return RATELIMIT_OK;
	enum ratelimit_status status = rl_check(st, c, dir, account, false, costs, rc->rcpt, r, v);
	if (status == RATELIMIT_SUPPRESSED)
		v->recipient = rc->rcpt;
	/* The reply of a destination rate names the recipient's domain (SPEC). */
	if (status == RATELIMIT_OVER && v->rate != NULL && v->rate->to_count > 0)
		v->domain = rc->domain;
	return status;
}

enum ratelimit_status ratelimit_check_recipients(struct store *st, const struct policy_class *c,
	enum policy_direction dir, const char *account, const char *domain, unsigned long count,
	struct ratelimit_receipt *r, struct ratelimit_verdict *v)
{
	struct ratelimit_rcpts rc = { 0 };

	ratelimit_rcpts_add(&rc, c, domain, count);
	return ratelimit_check_rcpts(st, c, dir, account, &rc, r, v);
}

void ratelimit_receipt_clear(struct ratelimit_receipt *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->charges[i].account);
		rl_keys_free(r->charges[i].key);
	}
	free(r->charges);
	memset(r, 0, sizeof(*r));
}

void ratelimit_refund(struct store *st, struct ratelimit_receipt *r)
{
	if (r->n == 0) {
		ratelimit_receipt_clear(r);
		return;
	}

	/*
	 * One atomic batch per account and direction; its buckets are grouped
	 * by hash tag (account, domain, class scope) as in the charge.
	 */
	struct rl_set *sets = calloc(r->n, sizeof(*sets));
	struct store_batch *batches = calloc(r->n, sizeof(*batches));
	bool *done = calloc(r->n, sizeof(*done));
	size_t nbatch = 0;
	bool failed = sets == NULL || batches == NULL || done == NULL;

	for (size_t i = 0; i < r->n && !failed; i++) {
		if (done[i])
			continue;
		struct rl_set *s = &sets[nbatch++];
		rl_set_init(s);
		for (size_t j = i; j < r->n; j++) {
			const struct ratelimit_charge *ch = &r->charges[j];
			if (done[j] || ch->dir != r->charges[i].dir
			    || strcmp(ch->account, r->charges[i].account) != 0)
				continue;
			done[j] = true;
			rl_set_rates(s, ch->dir, ch->account, ch->cls, ch->message, ch->cost, ch->at_ms, NULL);
			if (ch->message)
				rl_set_windows(s, ch->dir, ch->account, ch->cls, ch->at_ms);
		}
		failed |= s->failed;
		batches[nbatch - 1] = (struct store_batch){ s->b, s->nb, s->w, s->nw, 0 };
	}

	char err[256];
	if (failed)
		snprintf(err, sizeof(err), "out of memory");
	if (failed || store_refund(st, batches, nbatch, err, sizeof(err)) != STORE_OK)
		log_warning("rate-limit refund of %zu event(s) for %s failed: %s; the tokens come back "
			    "as the buckets refill", r->events, r->charges[0].account, err);
	for (size_t i = 0; i < nbatch; i++)
		rl_set_free(&sets[i]);
	free(sets);
	free(batches);
	free(done);
	ratelimit_receipt_clear(r);
}

int ratelimit_usage(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, struct ratelimit_usage *out, size_t max, size_t *n, char *err,
	size_t errlen)
{
	return ratelimit_usage_in(st, p, dir, account, NULL, 0, out, max, n, err, errlen);
}

int ratelimit_usage_in(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, const struct policy_class *const *assigned, size_t nassigned,
	struct ratelimit_usage *out, size_t max, size_t *n, char *err, size_t errlen)
{
	struct rl_set s;
	int rc = -1;

	*n = 0;
	if (!rl_account_ok(account)) {
		snprintf(err, errlen, "no account, or an account too long to be a key");
		return -1;
	}
	rl_set_init(&s);
	long long now_ms = store_now_ms(st);
	for (size_t i = 0; i < policy_class_count(p); i++) {
		const struct policy_class *c = policy_class_at(p, i);
		rl_set_rates(&s, dir, account, c, true, NULL, now_ms, NULL);
		rl_set_rates(&s, dir, account, c, false, NULL, now_ms, NULL);
	}
	struct store_level *lv = calloc(s.nb ? s.nb : 1, sizeof(*lv));
	if (s.failed || lv == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (store_peek(st, s.b, s.nb, lv, &now_ms, err, errlen) != STORE_OK)
		goto out;
	for (size_t i = 0; i < s.nb; i++) {
		/* the classes the account is assigned to: every bucket, even full */
		bool home = false;
		for (size_t k = 0; k < nassigned && !home; k++)
			home = assigned[k] == s.bcls[i];
		if (lv[i].used <= 0 && !home)
			continue;
		/*
		 * A class bucket is every account's: show it only beside a
		 * bucket of the account's own in that class, not for every
		 * account ops ask about.
		 */
		bool mine = home || s.brate[i]->scope != SCOPE_CLASS;
		for (size_t j = 0; j < s.nb && !mine; j++)
			mine = s.bcls[j] == s.bcls[i] && s.brate[j]->scope != SCOPE_CLASS && lv[j].used > 0;
		if (!mine)
			continue;
		if (*n == max) {
			snprintf(err, errlen, "more than %zu buckets in use", max);
			goto out;
		}
		out[(*n)++] = (struct ratelimit_usage){
			.cls = s.bcls[i], .rate = s.brate[i], .kind = rl_kind_name(s.bmessage[i]),
			.used = lv[i].used, .left = (double)s.brate[i]->count - lv[i].used,
			.full_in_ms = lv[i].full_in_ms, .resets_ms = now_ms + lv[i].full_in_ms,
		};
	}
	rc = 0;
out:
	free(lv);
	rl_set_free(&s);
	return rc;
}

int ratelimit_reset(struct store *st, const struct policy *p, enum policy_direction dir,
	const char *account, unsigned scopes, char *err, size_t errlen)
{
	if (!rl_account_ok(account)) {
		snprintf(err, errlen, "no account, or an account too long to be a key");
		return -1;
	}
	size_t nclass = policy_class_count(p);
	struct rl_set *sets = calloc(nclass ? nclass : 1, sizeof(*sets));
	/* the notify flags of the account's buckets go with them: an empty
	   bucket reaching a threshold again must send its event again */
	struct safety_block *flags = calloc(nclass ? nclass : 1, sizeof(*flags));
	const char **keys = NULL;
	size_t nkeys = 0, total = 0;
	int rc = -1;

	if (sets == NULL || flags == NULL)
		goto nomem;
	for (size_t i = 0; i < nclass; i++) {
		const struct policy_class *c = policy_class_at(p, i);
		rl_set_init(&sets[i]);
		rl_set_rates(&sets[i], dir, account, c, true, NULL, 0, NULL);
		rl_set_rates(&sets[i], dir, account, c, false, NULL, 0, NULL);
		if (scopes & RATELIMIT_SCOPE(SCOPE_ACCOUNT))
			rl_set_windows(&sets[i], dir, account, c, 0);
		if (sets[i].failed)
			goto nomem;
		if ((scopes & RATELIMIT_SCOPE(SCOPE_ACCOUNT))
		    && safety_block_build(&flags[i], c, dir, account, false, NULL, sets[i].b,
					  sets[i].brate, sets[i].bmessage, sets[i].nb) != 0)
			goto nomem;
		total += sets[i].nb + sets[i].nw + flags[i].sf.nnotify;
	}
	if ((keys = calloc(total ? total : 1, sizeof(*keys))) == NULL)
		goto nomem;
	for (size_t i = 0; i < nclass; i++) {
		for (size_t j = 0; j < sets[i].nb; j++)
			if (scopes & RATELIMIT_SCOPE(sets[i].brate[j]->scope))
				keys[nkeys++] = sets[i].b[j].key;
		for (size_t j = 0; j < sets[i].nw; j++)
			keys[nkeys++] = sets[i].w[j].key;
		for (size_t j = 0; j < flags[i].sf.nnotify; j++)
			keys[nkeys++] = flags[i].notify[j].key;
	}
	rc = store_forget(st, keys, nkeys, NULL, err, errlen) == STORE_OK ? 0 : -1;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (sets != NULL)
		for (size_t i = 0; i < nclass; i++)
			rl_set_free(&sets[i]);
	if (flags != NULL)
		for (size_t i = 0; i < nclass; i++)
			safety_block_free(&flags[i]);
	free(sets);
	free(flags);
	free(keys);
	return rc;
}
