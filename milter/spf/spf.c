/*
 * spf - the milter's side of SPF: questions for a pool of helper processes.
 *
 * What it does: turns spf_check, spf_check_egress and spf_dmarc_record
 * into requests (spf_wire.h) for the helpers of spf_dispatch.c, each
 * with its routing key, and keeps the egress cache. What it does not:
 * evaluate SPF or touch DNS; this process never calls libspf2.
 *
 * Decisions:
 * - Helpers are separate processes because libspf2 abort()s on internal
 *   errors and carries an unpatched CVE reachable from DNS data. They are
 *   started by fork and an immediate exec of /proc/self/exe (which
 *   still runs the right program after a package upgrade replaced the
 *   file), in the daemon by the spawner of spf_spawn.c, a process that
 *   stays root so that every helper, restarted ones too, runs as
 *   SpfUserID; helpers are its children, and it kills and reaps them.
 * - The routing key is the organizational domain: the dispatcher sends
 *   a burst from one domain to the same helper, whose DNS cache then
 *   answers all but the first, and lets one domain hold only one
 *   helper at a time, so a slow zone cannot take the pool (see
 *   spf_dispatch.c for how requests wait, and for how long).
 * - Outbound mail asks the same question for every message: does our
 *   egress address pass for this MAIL FROM domain? spf_check_egress keeps
 *   those answers here, so a message costs no round trip at all, for as
 *   long as the helper says the answer holds (the least DNS TTL, and
 *   never when a record looks at the local part or the HELO name).
 *   Inbound checks are not cached here: their client addresses are many,
 *   and the helpers' DNS cache already makes them cheap.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "align.h"
#include "dns.h"
#include "fnv.h"
#include "log.h"
#include "spf.h"
#include "spf_dispatch.h"
#include "spf_wire.h"
#include "ttl_cache.h"

/* dns_timeout_ms when the settings have none (SPEC: 2 s). */
#define SPF_DEFAULT_TIMEOUT_MS 2000
/* RFC 5321 4.5.3.1: a local part of 64 and a domain of 255 octets. */
#define SPF_MAIL_FROM_MAX 320

/*
 * The egress cache: outcomes of spf_check_egress by (egress address,
 * MAIL FROM domain), in a ttl_cache of SPF_EGRESS_CACHE_MAX entries
 * (expired ones go first, then the least recently used). One mutex
 * guards it and the hit counter, and is never held during a round trip
 * to a helper.
 */
struct spf_egress_entry {
	struct ttl_cache_entry base;		/* hash, expiry (CLOCK_MONOTONIC) */
	struct netaddr egress;
	enum spf_outcome outcome;
	char domain[];				/* lower case, no trailing dot */
};

struct spf_egress_key {
	const struct netaddr *egress;
	const char *domain;
};

struct spf_egress_cache {
	pthread_mutex_t lock;
	struct ttl_cache *table;
	unsigned long hits;
};

struct spf_pool {
	struct spf_dispatch *dispatch;	/* the helpers */
	struct spf_egress_cache egress;
};

static const char *const spf_outcome_names[] = {
	[SPF_OUTCOME_NONE] = "none", [SPF_OUTCOME_NEUTRAL] = "neutral",
	[SPF_OUTCOME_PASS] = "pass", [SPF_OUTCOME_FAIL] = "fail",
	[SPF_OUTCOME_SOFTFAIL] = "softfail", [SPF_OUTCOME_TEMPERROR] = "temperror",
	[SPF_OUTCOME_PERMERROR] = "permerror",
};

const char *spf_outcome_name(enum spf_outcome o)
{
	if ((unsigned)o >= sizeof(spf_outcome_names) / sizeof(spf_outcome_names[0]))
		return "temperror";
	return spf_outcome_names[o];
}

/* The routing key: the organizational domain, else the name itself. */
static void spf_route_key(const char *domain, char *key, size_t len)
{
	if (align_org_domain(domain, key, len) < 0)
		snprintf(key, len, "%s", domain);
}

/* mail_from without angle brackets into buf; -1 when too long. */
static int spf_strip_path(const char *mail_from, char *buf, size_t size)
{
	size_t len = mail_from != NULL ? strlen(mail_from) : 0;

	if (len >= 2 && mail_from[0] == '<' && mail_from[len - 1] == '>') {
		mail_from++;
		len -= 2;
	}
	if (len >= size)
		return -1;
	if (len > 0)
		memcpy(buf, mail_from, len);
	buf[len] = '\0';
	return 0;
}

/* A domain SPF can check: host-name shaped and multi-label (RFC 7208 4.3). */
static bool spf_domain_ok(const char *name, char *buf, size_t len)
{
	return align_normalize(name, buf, len) == 0 && strchr(buf, '.') != NULL;
}

enum spf_identity spf_identity_domain(const char *helo, const char *mail_from,
	char *domain, size_t len)
{
	char path[SPF_MAIL_FROM_MAX + 1];
	const char *at;

	spf_set_detail(domain, len, "");
	if (spf_strip_path(mail_from, path, sizeof(path)) < 0)
		return SPF_IDENTITY_NONE;
	if (path[0] == '\0') {
		if (helo != NULL && spf_domain_ok(helo, domain, len))
			return SPF_IDENTITY_HELO;
		spf_set_detail(domain, len, "");	/* "localhost" normalized, but no identity */
		return SPF_IDENTITY_NONE;
	}
	at = strrchr(path, '@');
	if (spf_domain_ok(at != NULL ? at + 1 : path, domain, len))
		return SPF_IDENTITY_MAILFROM;
	spf_set_detail(domain, len, "");
	return SPF_IDENTITY_NONE;
}

/* spf_check, also saying whether the outcome may be reused. */
static enum spf_outcome spf_evaluate(struct spf_pool *pool, const struct netaddr *client,
	const char *helo, const char *mail_from, char *detail, size_t len, struct spf_reuse *reuse)
{
	char path[SPF_MAIL_FROM_MAX + 1], domain[ALIGN_NAME_MAX + 1], key[ALIGN_NAME_MAX + 1];
	char ip[NETADDR_TEXT_MAX];
	const char *fields[3];
	enum spf_identity identity;
	int code;

	if (pool == NULL) {
		spf_set_detail(detail, len, "SPF checks not available");
		return SPF_OUTCOME_TEMPERROR;
	}
	if (client == NULL || (client->family != AF_INET && client->family != AF_INET6)) {
		spf_set_detail(detail, len, "client address unknown");
		return SPF_OUTCOME_NONE;
	}
	identity = spf_identity_domain(helo, mail_from, domain, sizeof(domain));
	if (identity == SPF_IDENTITY_NONE || spf_strip_path(mail_from, path, sizeof(path)) < 0) {
		spf_set_detail(detail, len, mail_from != NULL && *mail_from != '\0' &&
				strcmp(mail_from, "<>") != 0 ? "MAIL FROM domain is not a valid domain name"
							     : "HELO name is not a valid domain name");
		return SPF_OUTCOME_NONE;
	}
	netaddr_format(client, ip, sizeof(ip));
	fields[0] = ip;
	/* libspf2 gets the HELO name for %{h} only when it is a plausible name. */
	fields[1] = helo != NULL && strlen(helo) <= ALIGN_NAME_MAX ? helo : "";
	fields[2] = path;
	spf_route_key(domain, key, sizeof(key));
	code = spf_dispatch_ask(pool->dispatch, key, SPF_WIRE_CHECK, fields, 3, detail, len,
				reuse);
	return code == SPF_DISPATCH_FAILED ? SPF_OUTCOME_TEMPERROR : (enum spf_outcome)code;
}

enum spf_outcome spf_check(struct spf_pool *pool, const struct netaddr *client,
	const char *helo, const char *mail_from, char *detail, size_t len)
{
	struct spf_reuse unused;

	return spf_evaluate(pool, client, helo, mail_from, detail, len, &unused);
}

static uint32_t spf_egress_hash(const struct netaddr *egress, const char *domain)
{
	uint32_t hash = fnv1a32(FNV1A32_OFFSET, &egress->family, sizeof(egress->family));

	hash = fnv1a32(hash, egress->bytes, (size_t)netaddr_bits(egress->family) / 8);
	return fnv1a32(hash, domain, strlen(domain));
}

#define SPF_EGRESS_ENTRY(e) TTL_CACHE_ENTRY(e, struct spf_egress_entry, base)

static bool spf_egress_match(const struct ttl_cache_entry *base, const void *key)
{
	const struct spf_egress_entry *e = SPF_EGRESS_ENTRY(base);
	const struct spf_egress_key *k = key;

	return e->egress.family == k->egress->family &&
	       memcmp(e->egress.bytes, k->egress->bytes,
		      (size_t)netaddr_bits(k->egress->family) / 8) == 0 &&
	       strcmp(e->domain, k->domain) == 0;
}

static void spf_egress_free(struct ttl_cache_entry *base)
{
	free(SPF_EGRESS_ENTRY(base));
}

static const struct ttl_cache_ops spf_egress_ops = {
	.match = spf_egress_match, .free = spf_egress_free,
};

/* The outcome cached for (egress, domain) at now_ms into *o: 0, or -1 when none. */
static int spf_egress_get(struct spf_egress_cache *c, const struct netaddr *egress,
	const char *domain, long long now_ms, enum spf_outcome *o)
{
	struct spf_egress_key key = { .egress = egress, .domain = domain };
	uint32_t hash = spf_egress_hash(egress, domain);
	struct ttl_cache_entry *hit;
	int rc = -1;

	pthread_mutex_lock(&c->lock);
	hit = ttl_cache_get(c->table, hash, &key, now_ms);
	if (hit != NULL) {
		*o = SPF_EGRESS_ENTRY(hit)->outcome;
		c->hits++;
		rc = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Caches o for (egress, domain) until expires_ms; out of memory means not cached. */
static void spf_egress_put(struct spf_egress_cache *c, const struct netaddr *egress,
	const char *domain, enum spf_outcome o, long long expires_ms)
{
	struct spf_egress_key key = { .egress = egress, .domain = domain };
	size_t len = strlen(domain);
	long long now = spf_now_ms();
	struct spf_egress_entry *e;

	if (expires_ms <= now || (e = malloc(sizeof(*e) + len + 1)) == NULL)
		return;
	e->base.hash = spf_egress_hash(egress, domain);
	e->base.expires_ms = expires_ms;
	e->egress = *egress;
	e->outcome = o;
	memcpy(e->domain, domain, len + 1);
	pthread_mutex_lock(&c->lock);
	ttl_cache_put(c->table, &e->base, &key, now);
	pthread_mutex_unlock(&c->lock);
}

enum spf_outcome spf_check_egress(struct spf_pool *pool, const struct netaddr *egress,
	const char *helo, const char *mail_from)
{
	char domain[ALIGN_NAME_MAX + 1];
	struct spf_reuse reuse;
	enum spf_outcome o;
	long long asked_ms;

	/* No pool, no address, the null sender, no valid domain: nothing to cache. */
	if (pool == NULL || egress == NULL ||
	    (egress->family != AF_INET && egress->family != AF_INET6) ||
	    spf_identity_domain(helo, mail_from, domain, sizeof(domain)) != SPF_IDENTITY_MAILFROM)
		return spf_check(pool, egress, helo, mail_from, NULL, 0);
	asked_ms = spf_now_ms();
	if (spf_egress_get(&pool->egress, egress, domain, asked_ms, &o) == 0)
		return o;
	o = spf_evaluate(pool, egress, helo, mail_from, NULL, 0, &reuse);
	if (o != SPF_OUTCOME_TEMPERROR && reuse.ttl > 0 && !reuse.sender_specific)
		spf_egress_put(&pool->egress, egress, domain, o, asked_ms + 1000LL *
			       (reuse.ttl < SPF_EGRESS_CACHE_TTL_MAX ? reuse.ttl
								     : SPF_EGRESS_CACHE_TTL_MAX));
	return o;
}

void spf_pool_stats(struct spf_pool *pool, unsigned long *requests,
	unsigned long *egress_cache_hits)
{
	*requests = 0;
	*egress_cache_hits = 0;
	if (pool == NULL)
		return;
	*requests = spf_dispatch_requests(pool->dispatch);
	pthread_mutex_lock(&pool->egress.lock);
	*egress_cache_hits = pool->egress.hits;
	pthread_mutex_unlock(&pool->egress.lock);
}

enum dmarc_record spf_dmarc_record(struct spf_pool *pool, const char *domain)
{
	char name[ALIGN_NAME_MAX + 1], key[ALIGN_NAME_MAX + 1], detail[SPF_DETAIL_MAX];
	const char *fields[1] = { name };
	int code;

	if (pool == NULL)
		return DMARC_RECORD_TEMPERROR;
	if (domain == NULL || align_normalize(domain, name, sizeof(name)) < 0)
		return DMARC_RECORD_NONE;
	spf_route_key(name, key, sizeof(key));
	code = spf_dispatch_ask(pool->dispatch, key, SPF_WIRE_DMARC, fields, 1, detail,
				sizeof(detail), NULL);
	if (code == SPF_DISPATCH_FAILED || code == DMARC_RECORD_TEMPERROR) {
		log_debug("DMARC record of %s: %s", name, detail);
		return DMARC_RECORD_TEMPERROR;
	}
	return (enum dmarc_record)code;
}

struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len)
{
	struct spf_pool *pool = calloc(1, sizeof(*pool));
	struct sockaddr_storage server;
	socklen_t server_len;

	if (pool == NULL) {
		spf_set_detail(err, len, "out of memory");
		return NULL;
	}
	/* Refuse a bad Resolver here rather than in every helper. */
	if (dns_server_parse(s->resolver, &server, &server_len, err, len) < 0) {
		free(pool);
		return NULL;
	}
	pool->egress.table = ttl_cache_new(SPF_EGRESS_CACHE_MAX, &spf_egress_ops);
	if (pool->egress.table == NULL) {
		spf_set_detail(err, len, "out of memory");
		free(pool);
		return NULL;
	}
	pool->dispatch = spf_dispatch_start(s->resolver != NULL ? s->resolver : "system",
					    s->spf_user_id != NULL ? s->spf_user_id : "",
					    s->dns_timeout_ms > 0 ? s->dns_timeout_ms
								  : SPF_DEFAULT_TIMEOUT_MS,
					    err, len);
	if (pool->dispatch == NULL) {
		ttl_cache_free(pool->egress.table);
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->egress.lock, NULL);
	return pool;
}

void spf_pool_stop(struct spf_pool *pool)
{
	if (pool == NULL)
		return;
	spf_dispatch_stop(pool->dispatch);
	ttl_cache_free(pool->egress.table);
	pthread_mutex_destroy(&pool->egress.lock);
	free(pool);
}
