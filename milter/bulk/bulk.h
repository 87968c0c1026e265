/*
 * NAME
 *	bulk - is a message bulk, and does it meet the bulk-sender rules
 * SYNOPSIS
 *	bool bulk_classify(const struct policy_class *c, const struct bulk_facts *f,
 *		char *why, size_t len);
 *	unsigned bulk_check(const struct policy_class *c, const struct bulk_evidence *e);
 *	void bulk_failures_text(unsigned failed, char *buf, size_t len);
 *	void bulk_list_unsubscribe_scan(const char *value, bool *https, bool *mailto);
 *	bool bulk_is_one_click(const char *value);
 *	bool bulk_precedence_is_bulk(const char *value);
 * DESCRIPTION
 *	Pure functions over facts the milter gathered: no I/O, no libmilter,
 *	so every rule is unit-testable. bulk_classify returns true when any
 *	bulk line of the class holds, and names the first that did in why.
 *	bulk_check returns the BULK_REQ_* bits of the class's bulk-require
 *	checks that failed (0 = compliant).
 */
#ifndef BM_BULK_H
#define BM_BULK_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

struct bulk_facts {
	unsigned long recipients;		/* accepted for this message */
	bool precedence_bulk;			/* Precedence: bulk|list|junk */
	bool header_present[POLICY_BULK_MAX];	/* per bulk rule: its header seen */
	unsigned long volume[POLICY_BULK_MAX];	/* per bulk rule: account volume */
	bool volume_known;			/* false when the store failed */
};

struct bulk_evidence {
	const char *from_domain;		/* From header's domain, or NULL */
	const char *mailfrom_domain;		/* envelope sender's domain, or NULL */
	const char *const *dkim_domains;	/* d= of our signatures */
	size_t dkim_count;
	bool spf_pass_all_egress;		/* SPF passes for every EgressAddresses */
	bool list_unsub_https, list_unsub_mailto, list_unsub_one_click;
	int dmarc_published;			/* 1 yes, 0 no, -1 lookup failed */
};

bool bulk_classify(const struct policy_class *c, const struct bulk_facts *f, char *why, size_t len);
unsigned bulk_check(const struct policy_class *c, const struct bulk_evidence *e);
/* "dkim-aligned spf-aligned" for the failed bits */
void bulk_failures_text(unsigned failed, char *buf, size_t len);
/* Looks at the <URI>s of a List-Unsubscribe value. */
void bulk_list_unsubscribe_scan(const char *value, bool *https, bool *mailto);
/* List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058) */
bool bulk_is_one_click(const char *value);
bool bulk_precedence_is_bulk(const char *value);

#endif
