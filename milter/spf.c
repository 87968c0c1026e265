/*
 * spf - the milter's side of SPF: a pool of helper processes.
 *
 * What it does: starts SPF_POOL_SIZE helpers (spf_helper.c), routes each
 * question to one of them by its organizational domain, and turns every
 * way a helper can fail (crash, hang, garbage, refusal to start) into a
 * temperror within a fixed time. What it does not: evaluate SPF or touch
 * DNS; this process never calls libspf2.
 *
 * Decisions:
 * - Helpers are separate processes because libspf2 abort()s on internal
 *   errors and carries an unpatched CVE reachable from DNS data. They are
 *   started by fork and an immediate exec of /proc/self/exe: after fork
 *   in a threaded process only async-signal-safe calls are allowed, so
 *   the child does nothing but clear close-on-exec on its socket and
 *   exec (argv is prepared before the fork). /proc/self/exe still runs
 *   the right program after a package upgrade replaced the file.
 * - One mutex per helper: a helper evaluates one request at a time, and
 *   a caller holds the helper for its whole request. The wait for the
 *   mutex counts against the same deadline as the request, so a hung
 *   helper delays its queue by at most one deadline, and the one caller
 *   whose request overran kills it.
 * - A dead helper is noticed when its socket hangs up and is started
 *   again by the next request that needs it; a request not yet sent when
 *   the helper turned out dead is sent to the new one, so only a request
 *   in flight ever pays for a crash. Children are reaped by pid right
 *   away (SIGKILL first, so a half-dead helper cannot block us).
 * - Routing by organizational domain sends every message of a burst to
 *   the same helper, whose DNS cache then answers all but the first.
 * - Outbound mail asks the same question for every message: does our
 *   egress address pass for this MAIL FROM domain? spf_check_egress keeps
 *   those answers here, so a message costs no round trip at all, for as
 *   long as the helper says the answer holds (the least DNS TTL, and
 *   never when a record looks at the local part or the HELO name).
 *   Inbound checks are not cached here: their client addresses are many,
 *   and the helpers' DNS cache already makes them cheap.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "align.h"
#include "dns.h"
#include "fnv.h"
#include "log.h"
#include "lru.h"
#include "spf.h"
#include "spf_wire.h"

#define SPF_HELPER_EXE "/proc/self/exe"
#define SPF_HELPER_ARGV0 "bulkmilter-spf"
/* A helper that is not ready by then is broken (it only parses argv). */
#define SPF_START_WAIT_MS 2000
/* After a helper failed to start, requests for it fail fast this long. */
#define SPF_RESTART_BACKOFF_MS 1000
/* A stopping helper gets this long to exit on its own before SIGKILL. */
#define SPF_STOP_GRACE_MS 200
/* dns_timeout_ms when the settings have none (SPEC: 2 s). */
#define SPF_DEFAULT_TIMEOUT_MS 2000
/* RFC 5321 4.5.3.1: a local part of 64 and a domain of 255 octets. */
#define SPF_MAIL_FROM_MAX 320

struct spf_helper {
	pthread_mutex_t lock;		/* held for a whole request */
	unsigned index;			/* for log lines */
	pid_t pid;			/* 0 when not running */
	int fd;				/* our end of the socket pair */
	unsigned seq;			/* of the last request */
	long long retry_after_ms;	/* after a failed start */
};

/*
 * The egress cache: outcomes of spf_check_egress by (egress address,
 * MAIL FROM domain). A chained hash table of SPF_EGRESS_CACHE_MAX
 * buckets (load factor <= 1) and a recency list (lru.h), as in
 * dns_cache.c. One mutex guards it all, and is never held
 * during a round trip to a helper. A full cache drops what has expired,
 * found by a sweep of the list; sweep_after_ms (at most the earliest
 * expiry) keeps that sweep from running when nothing can have expired,
 * and when nothing has, the least recently used entry goes.
 */
struct spf_egress_entry {
	struct spf_egress_entry *chain;		/* next in the same bucket */
	struct lru_link recency;
	uint32_t hash;
	struct netaddr egress;
	enum spf_outcome outcome;
	long long expires_ms;			/* CLOCK_MONOTONIC */
	char domain[];				/* lower case, no trailing dot */
};

struct spf_egress_cache {
	pthread_mutex_t lock;
	struct spf_egress_entry *buckets[SPF_EGRESS_CACHE_MAX];
	struct lru recency;
	size_t count;
	long long sweep_after_ms;		/* no entry expires before */
	unsigned long hits;
};

struct spf_pool {
	char *resolver;
	char *user;
	long timeout_ms;		/* per DNS query */
	long wait_ms;			/* per request, all included */
	atomic_ulong requests;		/* sent to helpers */
	struct spf_helper helpers[SPF_POOL_SIZE];
	struct spf_egress_cache egress;
};

/* What an answer to a check says beyond the outcome (spf_wire.h). */
struct spf_reuse {
	long ttl;			/* seconds the outcome holds; 0 = do not reuse */
	bool sender_specific;
};

enum spf_receive { SPF_RECEIVE_TIMEOUT = -2, SPF_RECEIVE_ERROR = -1, SPF_RECEIVE_EOF = 0 };

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

static long long spf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void spf_set_detail(char *detail, size_t len, const char *text)
{
	if (detail != NULL && len > 0)
		snprintf(detail, len, "%s", text);
}

/*
 * Waits for one packet until the deadline: its length, or
 * SPF_RECEIVE_EOF / _ERROR / _TIMEOUT.
 */
static ssize_t spf_receive(int fd, char *buf, size_t size, long long deadline_ms)
{
	for (;;) {
		long long left = deadline_ms - spf_now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (left <= 0)
			return SPF_RECEIVE_TIMEOUT;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno != EINTR)
			return SPF_RECEIVE_ERROR;
		if (n <= 0)
			continue;
		n = recv(fd, buf, size, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		return n < 0 ? SPF_RECEIVE_ERROR : n;
	}
}

/* "exited with status 1", "killed by signal 9": for log lines. */
static void spf_describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "status %d", status);
}

/*
 * Ends a helper and reaps it; with grace, it may first exit on its own
 * (it does when its socket closes). Writes how it ended to how.
 */
static void spf_helper_end(struct spf_helper *h, bool grace, char *how, size_t len)
{
	int status = 0;
	pid_t r = 0;

	close(h->fd);
	h->fd = -1;
	if (grace) {
		long long until = spf_now_ms() + SPF_STOP_GRACE_MS;
		while ((r = waitpid(h->pid, &status, WNOHANG)) == 0 && spf_now_ms() < until)
			usleep(5000);
	}
	if (r == 0 && kill(h->pid, SIGKILL) < 0) {
		/* Not ours to kill (another user?): never block on it. */
		snprintf(how, len, "cannot be killed: %s", strerror(errno));
		r = waitpid(h->pid, &status, WNOHANG);
	} else if (r == 0) {
		while ((r = waitpid(h->pid, &status, 0)) < 0 && errno == EINTR)
			;
		if (r < 0)
			snprintf(how, len, "not reaped: %s", strerror(errno));
	} else if (r < 0) {
		snprintf(how, len, "not reaped: %s", strerror(errno));
	}
	if (r == h->pid)
		spf_describe_status(status, how, len);
	h->pid = 0;
}

/* Starts helper h (its lock held, not running); 0 when it said ready. */
static int spf_helper_start(struct spf_pool *pool, struct spf_helper *h, long long deadline_ms)
{
	char arg0[] = SPF_HELPER_ARGV0, arg1[] = SPF_HELPER_ARG;
	char fdarg[16], timeoutarg[24], levelarg[16], buf[SPF_WIRE_MAX + 1], how[64];
	char *argv[SPF_HELPER_ARGC + 1] = { arg0, arg1, fdarg, pool->resolver, timeoutarg,
					    pool->user, levelarg, NULL };
	long long ready_by = spf_now_ms() + SPF_START_WAIT_MS;
	int sv[2];
	ssize_t n;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("SPF helper %u: socketpair: %s", h->index, strerror(errno));
		goto failed;
	}
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	snprintf(timeoutarg, sizeof(timeoutarg), "%ld", pool->timeout_ms);
	snprintf(levelarg, sizeof(levelarg), "%d", log_current_level);
	pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		if (fcntl(sv[1], F_SETFD, 0) == 0)
			execv(SPF_HELPER_EXE, argv);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0) {
		log_error("SPF helper %u: fork: %s", h->index, strerror(errno));
		close(sv[0]);
		goto failed;
	}
	h->pid = pid;
	h->fd = sv[0];
	n = spf_receive(h->fd, buf, SPF_WIRE_MAX, deadline_ms < ready_by ? deadline_ms : ready_by);
	if (n >= 1 && buf[0] == SPF_WIRE_READY) {
		log_debug("SPF helper %u started (pid %d)", h->index, (int)pid);
		return 0;
	}
	if (n >= 1 && buf[0] == SPF_WIRE_FAILED) {
		buf[n] = '\0';
		log_error("SPF helper %u (pid %d) cannot start: %s", h->index, (int)pid, buf + 1);
	}
	spf_helper_end(h, false, how, sizeof(how));
	log_warning("SPF helper %u (pid %d) did not start: %s", h->index, (int)pid, how);
failed:
	h->retry_after_ms = spf_now_ms() + SPF_RESTART_BACKOFF_MS;
	return -1;
}

/* True when an idle helper's socket shows neither hang-up nor stray data. */
static bool spf_helper_idle_ok(const struct spf_helper *h)
{
	struct pollfd p = { .fd = h->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/* The routing key to a helper index. */
static unsigned spf_route(const char *key)
{
	return fnv1a32(FNV1A32_OFFSET, key, strlen(key)) % SPF_POOL_SIZE;
}

/* kind, seq, then each field, each NUL-terminated; its length or -1. */
static int spf_pack(char *pkt, size_t size, char kind, unsigned seq,
	const char *const fields[], int nfields)
{
	int n = snprintf(pkt, size, "%c%u", kind, seq);

	if (n < 0 || (size_t)n >= size)
		return -1;
	n++;
	for (int i = 0; i < nfields; i++) {
		size_t l = strlen(fields[i]);
		if ((size_t)n + l + 1 > size)
			return -1;
		memcpy(pkt + n, fields[i], l + 1);
		n += (int)l + 1;
	}
	return n;
}

/* A ttl field: 1 to SPF_WIRE_TTL_DIGITS digits, at most SPF_WIRE_TTL_MAX; 0 or -1. */
static int spf_parse_ttl(const char *text, long *ttl)
{
	size_t len = strlen(text);
	long long value = 0;

	if (len == 0 || len > SPF_WIRE_TTL_DIGITS)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	if (value > SPF_WIRE_TTL_MAX)
		return -1;
	*ttl = (long)value;
	return 0;
}

/*
 * Checks an 'A' packet for seq and takes its outcome and detail, and with
 * reuse (an answer to an 'S') its ttl and sender_specific too; 0, or -1
 * when any field is missing, extra or malformed.
 */
static int spf_unpack(char *buf, ssize_t n, unsigned seq, enum spf_outcome *outcome,
	char *detail, size_t len, struct spf_reuse *reuse)
{
	char expect[16], *fields[5], *p = buf + 1, *end = buf + n;
	int nfields = reuse != NULL ? 5 : 3;
	char *stop;
	long code, ttl = 0;

	if (n < 1 || buf[0] != SPF_WIRE_ANSWER || buf[n - 1] != '\0')
		return -1;
	for (int i = 0; i < nfields; i++) {
		if (p >= end)
			return -1;
		fields[i] = p;
		p += strlen(p) + 1;
	}
	if (p != end)
		return -1;
	snprintf(expect, sizeof(expect), "%u", seq);
	code = strtol(fields[1], &stop, 10);
	if (strcmp(fields[0], expect) != 0 || *stop != '\0' || fields[1][0] == '\0' ||
	    code < SPF_OUTCOME_NONE || code > SPF_OUTCOME_PERMERROR)
		return -1;
	if (reuse != NULL && (spf_parse_ttl(fields[3], &ttl) < 0 ||
			      (strcmp(fields[4], "0") != 0 && strcmp(fields[4], "1") != 0)))
		return -1;
	*outcome = (enum spf_outcome)code;
	spf_set_detail(detail, len, fields[2]);
	if (reuse != NULL) {
		reuse->ttl = ttl;
		reuse->sender_specific = fields[4][0] == '1';
	}
	return 0;
}

/*
 * One request to the helper that owns key; every failure is a
 * temperror with a reason in detail. reuse, for an 'S', gets what the
 * helper said about reusing the outcome (not to be reused on failure).
 */
static enum spf_outcome spf_ask(struct spf_pool *pool, const char *key, char kind,
	const char *const fields[], int nfields, char *detail, size_t len,
	struct spf_reuse *reuse)
{
	long long deadline = spf_now_ms() + pool->wait_ms;
	struct spf_helper *h = &pool->helpers[spf_route(key)];
	struct timespec until = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
	enum spf_outcome outcome = SPF_OUTCOME_TEMPERROR;
	char pkt[SPF_WIRE_MAX], buf[SPF_WIRE_MAX + 1], how[64];
	int pktlen;
	ssize_t n;

	if (reuse != NULL)
		*reuse = (struct spf_reuse){ .ttl = 0, .sender_specific = true };
	if (pthread_mutex_clocklock(&h->lock, CLOCK_MONOTONIC, &until) != 0) {
		spf_set_detail(detail, len, "SPF helper busy");
		return SPF_OUTCOME_TEMPERROR;
	}
	spf_set_detail(detail, len, "SPF helper unavailable");
	/* A second attempt only when the first found the helper dead before sending. */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (h->pid == 0 && (spf_now_ms() < h->retry_after_ms ||
				    spf_helper_start(pool, h, deadline) < 0))
			break;
		pktlen = spf_pack(pkt, sizeof(pkt), kind, ++h->seq, fields, nfields);
		if (pktlen < 0) {
			spf_set_detail(detail, len, "SPF request too long");
			break;
		}
		if (!spf_helper_idle_ok(h) || send(h->fd, pkt, (size_t)pktlen, MSG_NOSIGNAL) < 0) {
			int pid = (int)h->pid;
			spf_helper_end(h, false, how, sizeof(how));
			log_warning("SPF helper %u (pid %d) ended while idle: %s; starting it again",
				    h->index, pid, how);
			continue;
		}
		atomic_fetch_add_explicit(&pool->requests, 1, memory_order_relaxed);
		n = spf_receive(h->fd, buf, SPF_WIRE_MAX, deadline);
		if (n > 0 && spf_unpack(buf, n, h->seq, &outcome, detail, len, reuse) == 0)
			break;
		int pid = (int)h->pid;
		spf_helper_end(h, false, how, sizeof(how));
		if (n == SPF_RECEIVE_TIMEOUT) {
			log_warning("SPF helper %u (pid %d) gave no answer within %ld ms; stopped it",
				    h->index, pid, pool->wait_ms);
			spf_set_detail(detail, len, "SPF evaluation timed out");
		} else {
			log_warning("SPF helper %u (pid %d) failed during a request: %s",
				    h->index, pid, n > 0 ? "bad answer" : how);
			spf_set_detail(detail, len, "SPF helper failed");
		}
		break;
	}
	pthread_mutex_unlock(&h->lock);
	return outcome;
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
	return spf_ask(pool, key, SPF_WIRE_CHECK, fields, 3, detail, len, reuse);
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

static struct spf_egress_entry *spf_egress_find(struct spf_egress_cache *c, uint32_t hash,
	const struct netaddr *egress, const char *domain)
{
	for (struct spf_egress_entry *e = c->buckets[hash % SPF_EGRESS_CACHE_MAX]; e != NULL;
	     e = e->chain)
		if (e->hash == hash && e->egress.family == egress->family &&
		    memcmp(e->egress.bytes, egress->bytes,
			   (size_t)netaddr_bits(egress->family) / 8) == 0 &&
		    strcmp(e->domain, domain) == 0)
			return e;
	return NULL;
}

#define SPF_EGRESS_ENTRY(link) LRU_ENTRY(link, struct spf_egress_entry, recency)

static void spf_egress_drop(struct spf_egress_cache *c, struct spf_egress_entry *e)
{
	struct spf_egress_entry **pp = &c->buckets[e->hash % SPF_EGRESS_CACHE_MAX];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	lru_remove(&c->recency, &e->recency);
	c->count--;
	free(e);
}

/* Makes room in a full cache: the expired entries go, else the least recently used. */
static void spf_egress_make_room(struct spf_egress_cache *c, long long now_ms)
{
	if (now_ms >= c->sweep_after_ms) {
		long long soonest = LLONG_MAX;
		for (struct spf_egress_entry *e = SPF_EGRESS_ENTRY(c->recency.oldest), *newer; e != NULL;
		     e = newer) {
			newer = SPF_EGRESS_ENTRY(e->recency.newer);
			if (e->expires_ms <= now_ms)
				spf_egress_drop(c, e);
			else if (e->expires_ms < soonest)
				soonest = e->expires_ms;
		}
		c->sweep_after_ms = soonest;
	}
	if (c->count >= SPF_EGRESS_CACHE_MAX)
		spf_egress_drop(c, SPF_EGRESS_ENTRY(c->recency.oldest));
}

/* The outcome cached for (egress, domain) at now_ms into *o: 0, or -1 when none. */
static int spf_egress_get(struct spf_egress_cache *c, const struct netaddr *egress,
	const char *domain, long long now_ms, enum spf_outcome *o)
{
	uint32_t hash = spf_egress_hash(egress, domain);
	struct spf_egress_entry *e;
	int rc = -1;

	pthread_mutex_lock(&c->lock);
	e = spf_egress_find(c, hash, egress, domain);
	if (e != NULL && e->expires_ms <= now_ms) {
		spf_egress_drop(c, e);
	} else if (e != NULL) {
		lru_remove(&c->recency, &e->recency);
		lru_make_newest(&c->recency, &e->recency);
		*o = e->outcome;
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
	size_t len = strlen(domain);
	long long now = spf_now_ms();
	struct spf_egress_entry *e, *old;

	if (expires_ms <= now || (e = malloc(sizeof(*e) + len + 1)) == NULL)
		return;
	e->hash = spf_egress_hash(egress, domain);
	e->egress = *egress;
	e->outcome = o;
	e->expires_ms = expires_ms;
	memcpy(e->domain, domain, len + 1);
	pthread_mutex_lock(&c->lock);
	if ((old = spf_egress_find(c, e->hash, egress, domain)) != NULL)
		spf_egress_drop(c, old);
	if (c->count >= SPF_EGRESS_CACHE_MAX)
		spf_egress_make_room(c, now);
	e->chain = c->buckets[e->hash % SPF_EGRESS_CACHE_MAX];
	c->buckets[e->hash % SPF_EGRESS_CACHE_MAX] = e;
	lru_make_newest(&c->recency, &e->recency);
	c->count++;
	if (expires_ms < c->sweep_after_ms)
		c->sweep_after_ms = expires_ms;
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
	*requests = atomic_load_explicit(&pool->requests, memory_order_relaxed);
	pthread_mutex_lock(&pool->egress.lock);
	*egress_cache_hits = pool->egress.hits;
	pthread_mutex_unlock(&pool->egress.lock);
}

int spf_dmarc_record(struct spf_pool *pool, const char *domain, bool *published)
{
	char name[ALIGN_NAME_MAX + 1], key[ALIGN_NAME_MAX + 1], detail[SPF_DETAIL_MAX];
	const char *fields[1] = { name };
	enum spf_outcome o;

	*published = false;
	if (pool == NULL)
		return -1;
	if (domain == NULL || align_normalize(domain, name, sizeof(name)) < 0)
		return 0;
	spf_route_key(name, key, sizeof(key));
	o = spf_ask(pool, key, SPF_WIRE_DMARC, fields, 1, detail, sizeof(detail), NULL);
	if (o == SPF_OUTCOME_TEMPERROR) {
		log_debug("DMARC record of %s: %s", name, detail);
		return -1;
	}
	*published = o == SPF_OUTCOME_PASS;
	return 0;
}

struct spf_pool *spf_pool_start(const struct settings *s, char *err, size_t len)
{
	struct spf_pool *pool = calloc(1, sizeof(*pool));
	struct sockaddr_storage server;
	socklen_t server_len;
	unsigned started = 0;

	if (pool == NULL) {
		spf_set_detail(err, len, "out of memory");
		return NULL;
	}
	/* Refuse a bad Resolver here rather than in every helper. */
	if (dns_server_parse(s->resolver, &server, &server_len, err, len) < 0) {
		free(pool);
		return NULL;
	}
	pool->resolver = strdup(s->resolver != NULL ? s->resolver : "system");
	pool->user = strdup(s->user_id != NULL ? s->user_id : "");
	pool->timeout_ms = s->dns_timeout_ms > 0 ? s->dns_timeout_ms : SPF_DEFAULT_TIMEOUT_MS;
	pool->wait_ms = SPF_BUDGET_TIMEOUTS * pool->timeout_ms + SPF_REPLY_MARGIN_MS;
	if (pool->resolver == NULL || pool->user == NULL) {
		spf_set_detail(err, len, "out of memory");
		free(pool->resolver);
		free(pool->user);
		free(pool);
		return NULL;
	}
	atomic_init(&pool->requests, 0);
	pthread_mutex_init(&pool->egress.lock, NULL);
	pool->egress.sweep_after_ms = LLONG_MAX;
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		struct spf_helper *h = &pool->helpers[i];
		pthread_mutex_init(&h->lock, NULL);
		h->index = i;
		h->fd = -1;
		if (spf_helper_start(pool, h, spf_now_ms() + SPF_START_WAIT_MS) == 0)
			started++;
	}
	if (started == 0) {
		spf_set_detail(err, len, "no SPF helper process started (see the log)");
		spf_pool_stop(pool);
		return NULL;
	}
	return pool;
}

void spf_pool_stop(struct spf_pool *pool)
{
	char how[64];

	if (pool == NULL)
		return;
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		struct spf_helper *h = &pool->helpers[i];
		pthread_mutex_lock(&h->lock);
		if (h->pid != 0) {
			int pid = (int)h->pid;
			spf_helper_end(h, true, how, sizeof(how));
			if (strcmp(how, "exited with status 0") != 0)
				log_warning("SPF helper %u (pid %d) did not stop cleanly: %s",
					    i, pid, how);
		}
		pthread_mutex_unlock(&h->lock);
		pthread_mutex_destroy(&h->lock);
	}
	while (pool->egress.recency.oldest != NULL)
		spf_egress_drop(&pool->egress, SPF_EGRESS_ENTRY(pool->egress.recency.oldest));
	pthread_mutex_destroy(&pool->egress.lock);
	free(pool->resolver);
	free(pool->user);
	free(pool);
}
