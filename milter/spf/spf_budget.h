/*
 * NAME
 *	spf_budget - the DNS of one SPF evaluation: RFC 7208's limits on
 *	its lookups, over the resolver (dns.h); the layer libspf2 calls
 * SYNOPSIS
 *	struct spf_budget *spf_budget_new(struct dns_resolver *dns);
 *	void spf_budget_free(struct spf_budget *b);
 *	SPF_dns_server_t *spf_budget_layer(struct spf_budget *b);
 *	void spf_budget_start(struct spf_budget *b, long budget_ms,
 *		unsigned max_lookups, unsigned max_void);
 *	SPF_dns_rr_t *spf_budget_lookup(struct spf_budget *b, const char *name,
 *		ns_type type);
 *	unsigned spf_budget_exceeded(const struct spf_budget *b);
 *	void spf_budget_observe(struct spf_budget *b, spf_budget_observer *fn,
 *		void *arg);
 * DESCRIPTION
 *	spf_budget_new makes a budget that asks dns, which stays the
 *	caller's (free the budget first, or at the same time); NULL when out
 *	of memory. Until the first spf_budget_start, nothing is limited.
 *	spf_budget_layer is the SPF_dns_server_t to hand to
 *	SPF_server_new_dns(): libspf2's lookups become spf_budget_lookup.
 *	It stays owned by the budget (libspf2 does not free it), so free
 *	the SPF server first, then the budget.
 *
 *	spf_budget_start opens an evaluation: from then on, a lookup after
 *	budget_ms (<= 0: no deadline), beyond max_lookups (0: no limit;
 *	cache hits count) or after more than max_void void answers (0: no
 *	limit) is answered TRY_AGAIN without a query, and
 *	spf_budget_exceeded says which bounds were hit:
 *	SPF_BUDGET_OVER_TIME, SPF_BUDGET_OVER_LOOKUPS, SPF_BUDGET_OVER_VOID
 *	(a bit each; 0 while none was). A void answer (RFC 7208 4.6.4) is
 *	NXDOMAIN or NO_DATA to a question of a term: A, AAAA, MX or PTR.
 *	TXT questions do not count, nor the address questions for a host
 *	that an MX or PTR answer of the same evaluation named: they belong
 *	to the mx or ptr term, whose own question is what counts. The
 *	answer that makes one void too many is given as it is. The
 *	deadline also cuts a query short (dns_lookup_until); a lookup
 *	answered TRY_AGAIN once it has passed is over time.
 *
 *	spf_budget_lookup is dns_lookup (dns.h) within the budget: the
 *	same answers, never NULL except when out of memory. Type SPF and
 *	names that cannot exist are answered by the resolver without a
 *	question (NO_DATA, HOST_NOT_FOUND): they are not lookups, though a
 *	HOST_NOT_FOUND may be a void one.
 *
 *	spf_budget_observe has spf_budget_lookup show every answer it gives
 *	to fn(arg, answer, ttl), before returning it: asked, cached, or
 *	refused by the budget. ttl is how many seconds the answer may still
 *	be relied on: its ttl, and 0 for a failure (TRY_AGAIN; answer NULL
 *	when out of memory). The answers made without a question, for type
 *	SPF and for names that cannot exist, are not shown: they never
 *	change. fn NULL stops it. This is how the SPF helper learns how
 *	long an evaluation's result stays true.
 *
 *	Not thread-safe: one budget per (single-threaded) SPF helper.
 */
#ifndef BM_SPF_BUDGET_H
#define BM_SPF_BUDGET_H

#include "dns.h"		/* and libspf2's spf2/spf_dns.h */

#define SPF_BUDGET_OVER_TIME 1u
#define SPF_BUDGET_OVER_LOOKUPS 2u
#define SPF_BUDGET_OVER_VOID 4u

struct spf_budget;

typedef void spf_budget_observer(void *arg, const SPF_dns_rr_t *answer, long ttl);

struct spf_budget *spf_budget_new(struct dns_resolver *dns);
void spf_budget_free(struct spf_budget *b);
SPF_dns_server_t *spf_budget_layer(struct spf_budget *b);
void spf_budget_start(struct spf_budget *b, long budget_ms, unsigned max_lookups,
	unsigned max_void);
SPF_dns_rr_t *spf_budget_lookup(struct spf_budget *b, const char *name, ns_type type);
unsigned spf_budget_exceeded(const struct spf_budget *b);
void spf_budget_observe(struct spf_budget *b, spf_budget_observer *fn, void *arg);

#endif
