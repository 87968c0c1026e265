/*
 * safety - the account-safety part of a charge (keys, counts,
 * thresholds) and what the store's answer to it means: the log line,
 * the metrics and the events.
 *
 * What it does not: any counting (the store script does it atomically
 * for the fleet), decide the reply (verdict.c: the class's suspended
 * action), or send HTTP (events.c).
 *
 * Decisions:
 * - Counts run over a fixed window of the rule's period from the first
 *   count (a HyperLogLog cannot forget one element): "distinct-ips >
 *   5/1h" means more than five addresses within an hour of the first.
 * - A threshold belongs to a rate of the account's own buckets; the
 *   domain's and class's shared buckets (scopes) fire none, since no
 *   single account's notice would be right for them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "safety.h"
#include "suppress.h"
#include "text.h"

/* Room for any key made here: an account, a class name, a rule. */
#define SAFETY_KEY_MAX (POLICY_ACCOUNT_MAX + POLICY_NAME_MAX + 160)
_Static_assert(SAFETY_KEY_MAX >= 3 + POLICY_ACCOUNT_MAX + 2 + POLICY_NAME_MAX + 5
		       + sizeof(((struct policy_rate *)0)->text) + 2 * DECIMAL_MAX + 8,
	       "the longest key (a threshold's) fits");

_Static_assert(STORE_SAFETY_NOTIFY_MAX >= POLICY_NOTIFY_MAX * POLICY_RATES_MAX,
	       "every threshold of an event's own buckets fits");
_Static_assert(STORE_SAFETY_COUNTS_MAX >= POLICY_SUSPEND_IF_MAX, "every suspend-if rule fits");

static const char *side(enum policy_direction dir)
{
	return dir == DIRECTION_INBOUND ? "in" : "";
}

bool safety_wants_mail_event(const struct policy_class *c)
{
	return c->suspend_if_count > 0 || c->suspended_line > 0;
}

/* Whether RCPT TO looks the recipient up in the account's suppression list. */
static bool checks_suppression(const struct policy_class *c)
{
	return c->suppressed != ACTION_NONE && (c->suppress != 0 || c->suppressed_line > 0);
}

bool safety_wants_rcpt_event(const struct policy_class *c)
{
	if (checks_suppression(c))
		return true;
	for (size_t i = 0; i < c->suspend_if_count; i++)
		if (c->suspend_if[i].kind == SUSPEND_DISTINCT_RECIPIENTS
		    || c->suspend_if[i].kind == SUSPEND_BOUNCE_RATE
		    || c->suspend_if[i].kind == SUSPEND_COMPLAINT_RATE)
			return true;
	return false;
}

static char *own(struct safety_block *b, char *key)
{
	if (key != NULL)
		b->owned[b->nowned++] = key;
	return key;
}

static bool counts_event(enum policy_suspend_kind k, bool message)
{
	switch (k) {
	case SUSPEND_DISTINCT_IPS:
		return message;
	case SUSPEND_DISTINCT_RECIPIENTS:
		return !message;
	case SUSPEND_DEFERRED:
		return true;
	default:
		return false;		/* bounce and complaint rates: sent counts, below */
	}
}

unsigned long safety_rate_period_ms(const struct policy_suspend_rule *r)
{
	return r->min_period_ms ? r->min_period_ms : SAFETY_RATE_PERIOD_DEFAULT_MS;
}

/* "{ACCOUNT}:CLASS:si:WHAT:" into t: the start of a rate rule's keys. */
static void rate_key_start(struct text *t, const struct policy_class *c, const char *account,
	const char *what)
{
	text_put(t, "{", 1);
	text_str(t, account);
	text_put(t, "}:", 2);
	text_str(t, c->name);
	text_put(t, ":si:", 4);
	text_str(t, what);
	text_put(t, ":", 1);
}

int safety_rate_keys(const struct policy_class *c, const char *account,
	const struct policy_suspend_rule *r, char *sent, char *events, size_t len)
{
	unsigned long p = safety_rate_period_ms(r);
	struct text ts = { sent, len, 0, len == 0 }, te = { events, len, 0, len == 0 };

	rate_key_start(&ts, c, account, "sent");
	text_num(&ts, p);
	rate_key_start(&te, c, account, policy_suspend_kind_name(r->kind));
	text_num(&te, p);
	return text_ok(&ts) && text_ok(&te) ? 0 : -1;
}

int safety_block_build(struct safety_block *b, const struct policy_class *c,
	enum policy_direction dir, const char *account, bool message, const char *element,
	const struct store_bucket *buckets, const struct policy_rate *const *rates,
	const bool *bmessage, size_t nb)
{
	char *key, buf[SAFETY_KEY_MAX];
	struct text t = TEXT_INIT(buf);

	memset(b, 0, sizeof(*b));
	/* SIDE{ACCOUNT}: opens every key of the account's own */
	text_str(&t, side(dir));
	text_put(&t, "{", 1);
	text_str(&t, account);
	text_put(&t, "}", 1);
	size_t tag = t.len + 1;		/* and the ':' that every key puts next */
	text_str(&t, SAFETY_SUSPENSION_SUFFIX);
	if ((key = own(b, text_dup(&t))) == NULL)
		goto nomem;
	b->sf.suspension_key = key;
	b->sf.account = account;
	if (!message && element != NULL && dir == DIRECTION_OUTBOUND && checks_suppression(c)) {
		char sup[SAFETY_KEY_MAX];	/* buf keeps the tag for the keys below */
		struct text ts = TEXT_INIT(sup);
		text_put(&ts, "{", 1);
		text_str(&ts, account);
		text_put(&ts, "}" SUPPRESS_KEY_SUFFIX, 1 + strlen(SUPPRESS_KEY_SUFFIX));
		if ((key = own(b, text_dup(&ts))) == NULL)
			goto nomem;
		b->sf.suppression_key = key;
		b->sf.recipient = element;
		b->sf.suppression_note = c->suppressed == ACTION_TAG;	/* every recipient is counted */
	}
	b->sf.suspend_for_ms = c->suspend_for_ms;

	for (size_t i = 0; i < c->suspend_if_count && b->sf.ncounts < STORE_SAFETY_COUNTS_MAX; i++) {
		const struct policy_suspend_rule *r = &c->suspend_if[i];
		if (!counts_event(r->kind, message))
			continue;
		/* SIDE{ACCOUNT}:CLASS:si:KIND:LIMIT/PERIOD */
		t.len = tag;
		text_str(&t, c->name);
		text_put(&t, ":si:", 4);
		text_str(&t, policy_suspend_kind_name(r->kind));
		text_put(&t, ":", 1);
		text_num(&t, r->limit);
		text_put(&t, "/", 1);
		text_num(&t, r->period_ms);
		if ((key = own(b, text_dup(&t))) == NULL)
			goto nomem;
		size_t n = b->sf.ncounts++;
		b->counts[n] = (struct store_safety_count){
			.key = key,
			.kind = r->kind == SUSPEND_DEFERRED ? STORE_COUNT_REFUSED : STORE_COUNT_DISTINCT,
			.element = r->kind == SUSPEND_DEFERRED ? NULL : element,
			.limit = r->limit, .period_ms = r->period_ms, .rule = r->text,
		};
		b->rule[n] = r;
	}
	/* bounce-rate, complaint-rate: an outbound recipient counts as sent
	 * once admitted, one count per period however many rules share it */
	for (size_t i = 0; i < c->suspend_if_count && !message && dir == DIRECTION_OUTBOUND; i++) {
		const struct policy_suspend_rule *r = &c->suspend_if[i];
		char sent[SAFETY_KEY_MAX];
		bool have = false;
		if (r->kind != SUSPEND_BOUNCE_RATE && r->kind != SUSPEND_COMPLAINT_RATE)
			continue;
		struct text ts = TEXT_INIT(sent);
		rate_key_start(&ts, c, account, "sent");
		text_num(&ts, safety_rate_period_ms(r));
		if (!text_ok(&ts))
			continue;
		for (size_t j = 0; j < b->sf.ncounts; j++)
			have = have || strcmp(b->counts[j].key, sent) == 0;
		if (have || b->sf.ncounts >= STORE_SAFETY_COUNTS_MAX)
			continue;
		if ((key = own(b, text_dup(&ts))) == NULL)
			goto nomem;
		size_t n = b->sf.ncounts++;
		b->counts[n] = (struct store_safety_count){
			.key = key, .kind = STORE_COUNT_SENT, .period_ms = safety_rate_period_ms(r),
			.rule = r->text,
		};
		b->rule[n] = r;
	}
	b->sf.counts = b->counts;

	for (size_t i = 0; i < nb && c->notify_count > 0; i++) {
		if (strncmp(buckets[i].key, buf, tag) != 0)
			continue;
		for (size_t j = 0; j < c->notify_count && b->sf.nnotify < STORE_SAFETY_NOTIFY_MAX; j++) {
			/* SIDE{ACCOUNT}:CLASS:n:KIND:RATE:PCT */
			t.len = tag;
			text_str(&t, c->name);
			text_put(&t, bmessage[i] ? ":n:m:" : ":n:r:", 5);
			text_str(&t, rates[i]->text);
			text_put(&t, ":", 1);
			text_num(&t, c->notify_pct[j]);
			if ((key = own(b, text_dup(&t))) == NULL)
				goto nomem;
			size_t n = b->sf.nnotify++;
			b->notify[n] = (struct store_safety_notify){ key, i, c->notify_pct[j] };
			b->nrate[n] = rates[i];
			b->nmessage[n] = bmessage[i];
		}
	}
	b->sf.notify = b->notify;
	return 0;
nomem:
	safety_block_free(b);
	return -1;
}

void safety_block_free(struct safety_block *b)
{
	for (size_t i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	memset(b, 0, sizeof(*b));
}

void safety_block_outcome(const struct safety_block *b, const struct store_safety_result *r,
	struct safety_outcome *out)
{
	memset(out, 0, sizeof(*out));
	out->suspended = r->suspended;
	text_copy(out->by, sizeof(out->by), r->by);
	text_copy(out->reason, sizeof(out->reason), r->reason);
	out->until_ms = r->until_ms;
	if (r->suspended == STORE_SUSPENDED_NOW && r->tripped >= 1 && r->tripped <= b->sf.ncounts) {
		out->tripped = b->rule[r->tripped - 1];
		out->figure = r->figure;
	}
	for (size_t i = 0; i < r->nfired && i < STORE_SAFETY_NOTIFY_MAX; i++) {
		size_t n = r->fired[i].notify;
		if (n >= b->sf.nnotify)
			continue;
		out->fired[out->nfired].rate = b->nrate[n];
		out->fired[out->nfired].kind = b->nmessage[n] ? "messages" : "recipients";
		out->fired[out->nfired].pct = b->notify[n].pct;
		out->fired[out->nfired].used = r->fired[i].used;
		out->fired[out->nfired].resets_ms = r->fired[i].resets_ms;
		out->nfired++;
	}
}

/* A rule tripped: the log line, the counts and the two events. */
static void report_trip(const char *qid, const struct policy_class *c, const char *account,
	const char *rule, long long figure, const char *reason, long long until_ms)
{
	metrics_inc(METRIC_RULE_TRIPS);
	metrics_inc(METRIC_SUSPENSIONS);
	log_warning("%s: account=%s class=%s suspended by suspend-if %s", qid, account, c->name,
		    reason);
	struct event e = {
		.event = "rule-tripped", .account = account, .cls = c->name, .rule = rule,
		.figure = figure,
	};
	events_post(&e);
	e = (struct event){
		.event = "suspended", .account = account, .cls = c->name, .rule = rule,
		.reason = reason, .by = rule, .until_ms = until_ms,
	};
	events_post(&e);
}

void safety_report(const struct safety_outcome *o, const char *qid,
	const struct policy_class *c, const char *account)
{
	if (o->suspended == STORE_SUSPENDED_NOW && o->tripped != NULL)
		report_trip(qid, c, account, o->tripped->text, o->figure, o->reason, o->until_ms);
	for (size_t i = 0; i < o->nfired; i++) {
		log_info("%s: account=%s class=%s reached %u%% of %s %s (%lld used)", qid, account,
			 c->name, o->fired[i].pct, o->fired[i].kind, o->fired[i].rate->text, o->fired[i].used);
		struct event e = {
			.event = "threshold", .account = account, .cls = c->name,
			.rate = o->fired[i].rate->text, .kind = o->fired[i].kind,
			.used = o->fired[i].used, .limit = (long long)o->fired[i].rate->count,
			.threshold_pct = o->fired[i].pct, .resets_ms = o->fired[i].resets_ms,
		};
		events_post(&e);
	}
}

/*
 * The suspension a rule makes outside a charge (safety_suspend), as the
 * charge script makes it: the hash, and its expiry.
 */
static const char suspend_script[] =
	"local tm = redis.call('TIME')\n"
	"local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
	"local sfor = tonumber(ARGV[1])\n"
	"local untl = sfor > 0 and now + sfor or 0\n"
	"redis.call('DEL', KEYS[1])\n"
	"redis.call('HSET', KEYS[1], 'since', string.format('%.0f', now),"
	" 'until', string.format('%.0f', untl), 'by', ARGV[2], 'reason', ARGV[3], 'account', ARGV[4])\n"
	"if sfor > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
	"return {string.format('%.0f', now), string.format('%.0f', untl)}\n";

/* The suspension key of an account (without RedisPrefix); NULL: no memory. */
static char *suspension_key(enum policy_direction dir, const char *account)
{
	char *key;
	return asprintf(&key, "%s{%s}" SAFETY_SUSPENSION_SUFFIX, side(dir), account) < 0 ? NULL : key;
}

int safety_store_suspend(struct store *st, enum policy_direction dir, const char *account,
	unsigned long for_ms, const char *by, const char *reason, long long *since_ms,
	long long *until_ms, char *err, size_t errlen)
{
	char *key = suspension_key(dir, account), sfor[32], out[2][STORE_EVAL_VALUE_MAX];
	size_t got = 0;

	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(sfor, sizeof(sfor), "%lu", for_ms);
	const char *keys[1] = { key };
	const char *args[4] = { sfor, by, reason, account };
	enum store_status s = store_eval(st, suspend_script, keys, 1, args, 4, out, 2, &got, err,
					 errlen);
	free(key);
	if (s != STORE_OK)
		return -1;
	*since_ms = got == 2 ? atoll(out[0]) : 0;
	*until_ms = got == 2 ? atoll(out[1]) : 0;
	return 0;
}

int safety_store_release(struct store *st, enum policy_direction dir, const char *account,
	bool *released, char *err, size_t errlen)
{
	char *key = suspension_key(dir, account), out[1][STORE_EVAL_VALUE_MAX];
	size_t got = 0;

	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *keys[1] = { key };
	enum store_status s = store_eval(st, "return redis.call('DEL', KEYS[1])", keys, 1, NULL, 0,
					 out, 1, &got, err, errlen);
	free(key);
	if (s != STORE_OK)
		return -1;
	*released = got == 1 && atoll(out[0]) > 0;
	return 0;
}

/*
 * One SCAN page of suspension keys and their fields: {cursor, n, then
 * account, since, until, by, reason per key}. The keys come from SCAN,
 * not KEYS[]: a listing for ops, not the mail path.
 */
static const char list_script[] =
	"local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])\n"
	"local out = {r[1], 0}\n"
	"for _, k in ipairs(r[2]) do\n"
	"  local v = redis.call('HMGET', k, 'account', 'since', 'until', 'by', 'reason')\n"
	"  if v[1] then\n"
	"    out[2] = out[2] + 1\n"
	"    for i = 1, 5 do out[#out + 1] = v[i] or '' end\n"
	"  end\n"
	"end\n"
	"return out\n";

/* Keys one SCAN page asks for, and the most it may answer. */
#define SAFETY_LIST_COUNT "100"
#define SAFETY_LIST_PAGE_MAX 1000

int safety_store_list(struct store *st, const char *prefix, struct safety_suspension **list,
	size_t *n, char *err, size_t errlen)
{
	char pattern[256], cursor[STORE_EVAL_VALUE_MAX] = "0";
	size_t p = 0, cap = 0, got, nmasters, m = 0;
	unsigned masters[STORE_MASTERS_MAX];
	char (*out)[STORE_EVAL_VALUE_MAX] = calloc(2 + 5 * SAFETY_LIST_PAGE_MAX, sizeof(*out));
	int rc = -1;

	*list = NULL;
	*n = 0;
	if (out == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* the prefix with SCAN's glob characters escaped */
	for (const char *c = prefix; *c && p + 2 < sizeof(pattern) - 16; c++) {
		if (strchr("*?[]\\", *c))
			pattern[p++] = '\\';
		pattern[p++] = *c;
	}
	snprintf(pattern + p, sizeof(pattern) - p, "{*}" SAFETY_SUSPENSION_SUFFIX);
	/* every master in turn (a cluster's), each scanned to its end */
	if ((nmasters = store_masters(st, masters, STORE_MASTERS_MAX, err, errlen)) == 0)
		goto out;
	do {
		const char *args[3] = { cursor, pattern, SAFETY_LIST_COUNT };
		if (store_eval_at(st, masters[m], list_script, args, 3, out, 2 + 5 * SAFETY_LIST_PAGE_MAX,
				  &got, err, errlen) != STORE_OK)
			goto out;
		size_t page = got >= 2 ? (size_t)atoll(out[1]) : 0;
		if (got < 2 || page > SAFETY_LIST_PAGE_MAX || got != 2 + 5 * page) {
			snprintf(err, errlen, "suspensions: unexpected answer from Redis");
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", out[0]);
		if (*n + page > cap) {
			size_t grown = cap ? 2 * cap : 64;
			while (grown < *n + page)
				grown *= 2;
			struct safety_suspension *more = realloc(*list, grown * sizeof(**list));
			if (more == NULL) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			*list = more;
			cap = grown;
		}
		for (size_t i = 0; i < page; i++) {
			char (*f)[STORE_EVAL_VALUE_MAX] = out + 2 + 5 * i;
			struct safety_suspension *s = &(*list)[(*n)++];
			snprintf(s->account, sizeof(s->account), "%s", f[0]);
			s->since_ms = atoll(f[1]);
			s->until_ms = atoll(f[2]);
			snprintf(s->by, sizeof(s->by), "%s", f[3]);
			snprintf(s->reason, sizeof(s->reason), "%s", f[4]);
		}
	} while (strcmp(cursor, "0") != 0 || ++m < nmasters);
	rc = 0;
out:
	free(out);
	if (rc != 0) {
		free(*list);
		*list = NULL;
		*n = 0;
	}
	return rc;
}

int safety_suspend(struct store *st, const struct policy_class *c, enum policy_direction dir,
	const char *account, const struct policy_suspend_rule *rule, long long figure,
	const char *reason, const char *qid, char *err, size_t errlen)
{
	long long since, until;

	if (safety_store_suspend(st, dir, account, c->suspend_for_ms, rule->text, reason, &since,
				 &until, err, errlen) != 0)
		return -1;
	report_trip(qid, c, account, rule->text, figure, reason, until);
	return 0;
}

void safety_client_element(const struct netaddr *a, char *buf, size_t len)
{
	if (a == NULL || a->family == 0) {
		snprintf(buf, len, "%s", "");
		return;
	}
	struct netaddr copy = *a;
	if (copy.family == AF_INET6) {
		netaddr_mask(&copy, 64);
		char text[NETADDR_TEXT_MAX];
		netaddr_format(&copy, text, sizeof(text));
		snprintf(buf, len, "%s/64", text);
		return;
	}
	netaddr_format(&copy, buf, len);
}
