/*
 * spf_budget - RFC 7208's bounds on the DNS work of one SPF evaluation.
 *
 * What it does: stands between libspf2 and the resolver, counts what an
 * evaluation asks (lookups, void answers, time) and refuses what goes
 * beyond, and shows each answer to an observer. What it does not: ask
 * the DNS, cache or parse (dns.c does), or decide what a blown budget
 * means for the result (the helper, spf_helper.c: permerror for
 * lookups and void lookups, temperror for time).
 *
 * Why here and not in libspf2: libspf2 1.2.10 counts DNS terms per
 * record, not across include: (so a hostile chain of includes is
 * bounded only by a count of all lookups), has no void-lookup limit
 * and no time limit. Every question it asks passes through this layer,
 * which is where all three can be counted.
 *
 * Void lookups and MX/PTR targets: the address questions for the hosts
 * an MX or PTR answer named are not void lookups of their own (RFC 7208
 * 4.6.4 counts the term's question), or an IPv6 client would see a
 * permerror for any domain with three IPv4-only mail exchangers. The
 * targets are remembered as hashes of their normalized names; a
 * collision can only spare a void lookup.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "spf_budget.h"

/*
 * MX and PTR targets an evaluation remembers: libspf2 looks at 10 per
 * term, and the lookup budget bounds the terms.
 */
#define SPF_BUDGET_TARGETS_MAX 128

struct spf_budget {
	SPF_dns_server_t layer;		/* what libspf2 calls; hook = this */
	struct dns_resolver *dns;	/* the caller's */
	long long deadline_ms;		/* of the evaluation (dns_now_ms); 0 = none */
	unsigned max_lookups;		/* of the evaluation; 0 = no limit */
	unsigned lookups;		/* in this evaluation */
	unsigned max_void;		/* of the evaluation; 0 = no limit */
	unsigned voids;			/* in this evaluation */
	/* hashes of the MX and PTR targets named in this evaluation */
	uint32_t targets[SPF_BUDGET_TARGETS_MAX];
	unsigned target_count;
	unsigned exceeded;		/* SPF_BUDGET_OVER_* */
	spf_budget_observer *observer;	/* sees each answer; NULL = none */
	void *observer_arg;
};

static uint32_t spf_budget_name_hash(const char *norm)
{
	return fnv1a32(FNV1A32_OFFSET, norm, strlen(norm));
}

/* Remembers the exchanges of an MX answer and the names of a PTR answer. */
static void spf_budget_note_targets(struct spf_budget *b, const SPF_dns_rr_t *out,
	ns_type type)
{
	char norm[DNS_NAME_MAX + 1];

	if ((type != ns_t_mx && type != ns_t_ptr) || out == NULL || out->herrno != NETDB_SUCCESS)
		return;
	for (int i = 0; i < out->num_rr && b->target_count < SPF_BUDGET_TARGETS_MAX; i++)
		if (dns_name_normalize(out->rr[i]->mx, norm) == 0)
			b->targets[b->target_count++] = spf_budget_name_hash(norm);
}

static bool spf_budget_is_target(const struct spf_budget *b, const char *norm)
{
	uint32_t h = spf_budget_name_hash(norm);

	for (unsigned i = 0; i < b->target_count; i++)
		if (b->targets[i] == h)
			return true;
	return false;
}

/*
 * Counts a void answer to the question of a term: a, mx, ptr or exists.
 * TXT questions do not count: they fetch the records of the domain
 * checked, of include: and redirect=, whose absence RFC 7208 already
 * makes "none" or a permerror, and exp=, whose failure is ignored.
 * norm is NULL for a name that cannot exist (never a target).
 */
static void spf_budget_count_void(struct spf_budget *b, const SPF_dns_rr_t *out, ns_type type,
	const char *norm)
{
	if (type == ns_t_txt || out == NULL ||
	    (out->herrno != HOST_NOT_FOUND && out->herrno != NO_DATA))
		return;
	if ((type == ns_t_a || type == ns_t_aaaa) && norm != NULL && spf_budget_is_target(b, norm))
		return;
	if (++b->voids > b->max_void && b->max_void != 0)
		b->exceeded |= SPF_BUDGET_OVER_VOID;
}

/* A normalized name's lookup within the budget: refused, or the resolver's answer. */
static SPF_dns_rr_t *spf_budget_ask(struct spf_budget *b, const char *norm, ns_type type)
{
	SPF_dns_rr_t *out;

	if (b->exceeded & SPF_BUDGET_OVER_VOID)
		return SPF_dns_rr_new_init(&b->layer, norm, type, 0, TRY_AGAIN);
	if (b->max_lookups != 0 && b->lookups >= b->max_lookups) {
		b->exceeded |= SPF_BUDGET_OVER_LOOKUPS;
		return SPF_dns_rr_new_init(&b->layer, norm, type, 0, TRY_AGAIN);
	}
	b->lookups++;
	out = dns_lookup_until(b->dns, norm, type, b->deadline_ms);
	if (out != NULL && out->herrno == TRY_AGAIN && b->deadline_ms != 0 &&
	    dns_now_ms() >= b->deadline_ms)
		b->exceeded |= SPF_BUDGET_OVER_TIME;
	return out;
}

SPF_dns_rr_t *spf_budget_lookup(struct spf_budget *b, const char *name, ns_type type)
{
	char norm[DNS_NAME_MAX + 1];
	SPF_dns_rr_t *out;

	/* Answered without a question: no lookup, nothing to show. */
	if (type == ns_t_spf)
		return dns_lookup(b->dns, name, type);
	if (dns_name_normalize(name, norm) < 0) {
		out = dns_lookup(b->dns, name, type);
		spf_budget_count_void(b, out, type, NULL);
		return out;
	}
	out = spf_budget_ask(b, norm, type);
	spf_budget_count_void(b, out, type, norm);
	spf_budget_note_targets(b, out, type);
	if (b->observer != NULL)
		b->observer(b->observer_arg, out,
			    out == NULL || out->herrno == TRY_AGAIN ? 0 : (long)out->ttl);
	return out;
}

/* libspf2's entry point; should_cache is ignored: the resolver caches everything. */
static SPF_dns_rr_t *spf_budget_layer_lookup(SPF_dns_server_t *layer, const char *domain,
	ns_type type, int should_cache)
{
	(void)should_cache;
	return spf_budget_lookup(layer->hook, domain, type);
}

struct spf_budget *spf_budget_new(struct dns_resolver *dns)
{
	struct spf_budget *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->dns = dns;
	/* destroy stays NULL: libspf2 must not free what we own. */
	b->layer.lookup = spf_budget_layer_lookup;
	b->layer.name = "bulkmilter";
	b->layer.hook = b;
	return b;
}

void spf_budget_free(struct spf_budget *b)
{
	free(b);
}

SPF_dns_server_t *spf_budget_layer(struct spf_budget *b)
{
	return &b->layer;
}

void spf_budget_start(struct spf_budget *b, long budget_ms, unsigned max_lookups,
	unsigned max_void)
{
	b->deadline_ms = budget_ms > 0 ? dns_now_ms() + budget_ms : 0;
	b->max_lookups = max_lookups;
	b->lookups = 0;
	b->max_void = max_void;
	b->voids = 0;
	b->target_count = 0;
	b->exceeded = 0;
}

unsigned spf_budget_exceeded(const struct spf_budget *b)
{
	return b->exceeded;
}

void spf_budget_observe(struct spf_budget *b, spf_budget_observer *fn, void *arg)
{
	b->observer = fn;
	b->observer_arg = arg;
}
