/*
 * NAME
 *	spf - SPF evaluation in isolated helper processes
 * SYNOPSIS
 *	struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len);
 *	void spf_pool_stop(struct spf_pool *pool);
 *	enum spf_outcome spf_check(struct spf_pool *pool, const struct netaddr *client,
 *		const char *helo, const char *mail_from, char *detail, size_t len);
 *	enum spf_outcome spf_check_egress(struct spf_pool *pool, const struct netaddr *egress,
 *		const char *helo, const char *mail_from);
 *	enum dmarc_record spf_dmarc_record(struct spf_pool *pool, const char *domain);
 *	enum spf_identity spf_identity_domain(const char *helo, const char *mail_from,
 *		char *domain, size_t len);
 *	const char *spf_outcome_name(enum spf_outcome o);
 *	void spf_pool_stats(struct spf_pool *pool, unsigned long *requests,
 *		unsigned long *egress_cache_hits);
 *	int spf_helper_main(int argc, char **argv);
 * DESCRIPTION
 *	libspf2 runs in a pool of SPF_POOL_SIZE unprivileged helper
 *	processes (it abort()s on internal errors and has an unpatched CVE
 *	reachable from DNS answers); the milter talks to them over socket
 *	pairs. Helpers are started by spf_pool_start, each as a fork and an
 *	immediate exec of /proc/self/exe with argv[1] "--spf-helper"; the
 *	program's main() must then call spf_helper_main(argc, argv) and exit
 *	with its return value. A helper started as root becomes the
 *	SpfUserID user (settings spf_user_id, "nobody" when NULL). Helpers
 *	come from spf_spawn.h: in the daemon, from the spawner it forked as
 *	root, so they run as SpfUserID even after the daemon dropped to
 *	UserID; without a spawner, from this process.
 *
 *	spf_pool_start reads resolver, dns_timeout_ms and spf_user_id from
 *	s (it copies them; s may be freed afterwards) and returns NULL with
 *	a reason in err when the Resolver is invalid or no helper starts.
 *	Start the pool in the process that will call spf_check, i.e. after
 *	any fork into the background: each pool runs a thread of its own
 *	(the dispatcher, which blocks every signal). Without a spawner,
 *	helpers are its children and are reaped by pid (do not reap with
 *	waitpid(-1), nor set SIGCHLD to SIG_IGN).
 *	spf_pool_stop ends the helpers and frees the pool; no spf_check may
 *	be running on it. With pool NULL, spf_check answers temperror and
 *	spf_dmarc_record DMARC_RECORD_TEMPERROR.
 *
 *	spf_check is check_host() (RFC 7208) for the client address and the
 *	MAIL FROM domain; mail_from "" (or "<>") is the null sender, and then
 *	the HELO name is checked as postmaster@helo. mail_from may carry
 *	its angle brackets. detail gets a short reason for logs and reply
 *	texts: printable ASCII, no '%', never more than len - 1 bytes.
 *	permerror covers record syntax errors, more than 10 DNS terms
 *	in one record (more than SPF_LOOKUPS_MAX lookups in all) and more
 *	than SPF_VOID_LOOKUPS_MAX void lookups (RFC 7208 4.6.4); temperror
 *	covers DNS failures, a helper that died or overran its time, and
 *	no helper free for the domain in time. none is also the answer
 *	when there is no client address or no valid domain to check (RFC
 *	7208 4.3).
 *
 *	spf_check_egress is spf_check for one of our own egress addresses
 *	(outbound mail), without the detail, and remembers its outcomes: an
 *	outcome for (egress address, lower-case MAIL FROM domain) is reused
 *	when the evaluation that produced it was not a temperror, every DNS
 *	answer it used had a TTL (ttl > 0), and no SPF record it fetched used
 *	%{l}, %{s} or %{h} (spf_wire.h). It is reused for the least of those
 *	TTLs, at most SPF_EGRESS_CACHE_TTL_MAX seconds, counted from when
 *	the question was sent (CLOCK_MONOTONIC). The null sender is never
 *	cached (the identity is then the HELO name, which is not in the
 *	key). The cache holds at most SPF_EGRESS_CACHE_MAX outcomes; a new
 *	one in a full cache first drops the expired ones, else the least
 *	recently used. Callers that miss at the same time each ask a helper
 *	(whose DNS cache makes the second one cheap). The cache lives and
 *	dies with the pool, so a configuration reload starts it empty.
 *
 *	spf_pool_stats reads two counters: requests sent to helpers (checks
 *	and DMARC lookups) and spf_check_egress answers taken from the cache.
 *	With pool NULL both are 0.
 *
 *	spf_dmarc_record says whether the domain, or else its organizational
 *	domain, publishes DMARC: DMARC_RECORD_FOUND when it has exactly one
 *	TXT record at _dmarc.<name> that starts with "v=DMARC1" (RFC 7489
 *	6.6.3), DMARC_RECORD_NONE when not (an invalid domain too), and
 *	DMARC_RECORD_TEMPERROR on a DNS failure.
 *
 *	These calls are thread-safe. Let W be SPF_BUDGET_TIMEOUTS *
 *	dns_timeout_ms + SPF_REPLY_MARGIN_MS: a request waits at most W for
 *	a helper to be free, and then at most W for its answer, counted
 *	from when the helper got it, so the calls return within 2 * W. One
 *	organizational domain has at most one request in the helpers at a
 *	time, on the helper it hashes to when that is idle (so a burst
 *	shares its DNS cache), else on another idle one: a slow or hostile
 *	zone delays its own requests, and holds one helper, never the pool.
 *	A caller that gives up leaves the helper at work (the late answer
 *	is dropped); a helper silent for SPF_HUNG_WAITS * W is killed. A
 *	helper that dies costs at most the request in flight (temperror)
 *	and is started again, with time of its own to start, as soon as a
 *	request waits.
 *
 *	spf_identity_domain writes the domain spf_check evaluates (lower
 *	case), for Authentication-Results: SPF_IDENTITY_MAILFROM
 *	(smtp.mailfrom), SPF_IDENTITY_HELO (smtp.helo, null sender) or
 *	SPF_IDENTITY_NONE (nothing valid to check; domain is "").
 *
 *	spf_helper_main is the helper process's entry point; it returns only
 *	when the milter closes its socket (0) or the helper cannot start (1).
 * DIAGNOSTICS
 *	A helper that dies or fails to start, whose answer came too late
 *	for its caller, or that hung and was killed is logged at warning
 *	level with its pid; the helpers log libspf2's own complaints.
 *	[owner: SPF module]
 */
#ifndef BM_SPF_H
#define BM_SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"
#include "settings.h"

/* Helpers per pool: the number of SPF evaluations that run at once. */
#define SPF_POOL_SIZE 4
/*
 * An evaluation may spend this many per-query DNS timeouts in all (the
 * helper's budget); the milter waits that plus SPF_REPLY_MARGIN_MS.
 */
#define SPF_BUDGET_TIMEOUTS 2
/* What the milter waits beyond a helper's own time budget. */
#define SPF_REPLY_MARGIN_MS 500
/* A helper silent this many waits (W) after a request is hung: killed. */
#define SPF_HUNG_WAITS 2
/*
 * Egress outcomes remembered per pool: our egress addresses times the
 * MAIL FROM domains we send for, a few hundred bytes each (about 1 MB).
 */
#define SPF_EGRESS_CACHE_MAX 4096
/* However long the DNS says, an egress outcome is asked again after an hour. */
#define SPF_EGRESS_CACHE_TTL_MAX 3600

enum spf_outcome {
	SPF_OUTCOME_NONE = 0, SPF_OUTCOME_NEUTRAL, SPF_OUTCOME_PASS, SPF_OUTCOME_FAIL,
	SPF_OUTCOME_SOFTFAIL, SPF_OUTCOME_TEMPERROR, SPF_OUTCOME_PERMERROR,
};

enum spf_identity { SPF_IDENTITY_NONE = 0, SPF_IDENTITY_MAILFROM, SPF_IDENTITY_HELO };

/* What spf_dmarc_record found: a DMARC lookup's answer, not an SPF result. */
enum dmarc_record { DMARC_RECORD_NONE = 0, DMARC_RECORD_FOUND, DMARC_RECORD_TEMPERROR };

struct spf_pool;

struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len);
void spf_pool_stop(struct spf_pool *pool);
/* "pass", "fail", ... as RFC 8601 spells them */
const char *spf_outcome_name(enum spf_outcome o);
enum spf_outcome spf_check(struct spf_pool *pool, const struct netaddr *client,
	const char *helo, const char *mail_from, char *detail, size_t len);
/* spf_check for our egress address, reusing outcomes while DNS says they hold */
enum spf_outcome spf_check_egress(struct spf_pool *pool, const struct netaddr *egress,
	const char *helo, const char *mail_from);
void spf_pool_stats(struct spf_pool *pool, unsigned long *requests,
	unsigned long *egress_cache_hits);
enum dmarc_record spf_dmarc_record(struct spf_pool *pool, const char *domain);
enum spf_identity spf_identity_domain(const char *helo, const char *mail_from,
	char *domain, size_t len);
int spf_helper_main(int argc, char **argv);

#endif
