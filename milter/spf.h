/*
 * NAME
 *	spf - SPF evaluation in isolated helper processes
 * SYNOPSIS
 *	struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len);
 *	void spf_pool_stop(struct spf_pool *pool);
 *	enum spf_outcome spf_check(struct spf_pool *pool, const struct netaddr *client,
 *		const char *helo, const char *mail_from, char *detail, size_t len);
 *	int spf_dmarc_record(struct spf_pool *pool, const char *domain, bool *published);
 *	int spf_helper_main(int argc, char **argv);
 * DESCRIPTION
 *	libspf2 runs in a small pool of unprivileged helper processes (it
 *	abort()s on internal errors and has an unpatched CVE reachable from
 *	DNS answers); the milter talks to them over socket pairs. A helper
 *	that dies costs the request in flight a temperror and is restarted.
 *	DNS goes through our own layer: Resolver, a per-query timeout, and a
 *	TTL cache. spf_check and spf_dmarc_record are thread-safe and return
 *	within a bounded time. mail_from "" means the null sender (HELO is
 *	then checked). spf_helper_main is the helper process's entry point.
 *	[owner: SPF module; extend as needed, keep these calls]
 */
#ifndef BM_SPF_H
#define BM_SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"
#include "settings.h"

enum spf_outcome {
	SPF_OUTCOME_NONE = 0, SPF_OUTCOME_NEUTRAL, SPF_OUTCOME_PASS, SPF_OUTCOME_FAIL,
	SPF_OUTCOME_SOFTFAIL, SPF_OUTCOME_TEMPERROR, SPF_OUTCOME_PERMERROR,
};

struct spf_pool;

struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len);
void spf_pool_stop(struct spf_pool *pool);
/* "pass", "fail", ... as RFC 8601 spells them */
const char *spf_outcome_name(enum spf_outcome o);
enum spf_outcome spf_check(struct spf_pool *pool, const struct netaddr *client,
	const char *helo, const char *mail_from, char *detail, size_t len);
/* 0 with *published set, or -1 on a DNS failure */
int spf_dmarc_record(struct spf_pool *pool, const char *domain, bool *published);
int spf_helper_main(int argc, char **argv);

#endif
