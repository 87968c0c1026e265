/*
 * NAME
 *	policy_rate - rate lines of the policy file (internal to the policy
 *	reader)
 * SYNOPSIS
 *	int policy_rate_line(struct diag *errs, const char *file, int line,
 *		const struct policy_class *k, const char *directive, char **w,
 *		int n, struct policy_rate *rates, size_t *count);
 *	void policy_rate_free_to(char **to, size_t n);
 * DESCRIPTION
 *	policy_rate_line reads the words w[0..n) of a "messages" or
 *	"recipients" line of class k ("by" and "to" apply to every rate of
 *	the line) and appends its rates to rates[*count], at most
 *	POLICY_RATES_MAX. policy_rate_free_to frees a rate's "to" list.
 * DIAGNOSTICS
 *	policy_rate_line returns 0, or -1 after reporting each error to
 *	errs as FILE:LINE: message (a bad rate, by/to given twice, "to" on
 *	messages, "by domain" for client-address accounts, a bad domain).
 */
#ifndef BM_POLICY_RATE_H
#define BM_POLICY_RATE_H

#include <stddef.h>

#include "diag.h"
#include "policy.h"

int policy_rate_line(struct diag *errs, const char *file, int line, const struct policy_class *k,
		     const char *directive, char **w, int n, struct policy_rate *rates, size_t *count);
void policy_rate_free_to(char **to, size_t n);

#endif
