/*
 * spf_dispatch - the SPF helper processes and the queue in front of them.
 *
 * What it does: keeps SPF_POOL_SIZE helpers (spf_helper.c) running,
 * hands each request to one of them, and turns every way a helper can
 * fail (crash, hang, garbage, refusal to start) into a temperror within
 * a fixed time. What it does not: know what is asked (spf.c packs the
 * questions and reads the outcomes) or touch DNS.
 *
 * Decisions:
 * - One thread per pool, the dispatcher, owns the helpers: it spawns
 *   them, sends each its request, reads every answer and sees every
 *   death, polling all their sockets at once. A caller queues its
 *   request and sleeps on a condition variable of its own; it never
 *   touches a helper, so no caller's impatience can cost a helper or
 *   another caller anything. (Before, callers took a helper's mutex in
 *   turn, the wait for it counted against their deadline, and the one
 *   that ran out killed the helper and restarted it with the few
 *   milliseconds left: four sessions on a black-holed zone turned every
 *   other domain routed to that helper into temperror.)
 * - Two clocks per request, each W long: one for a helper to be free (in
 *   the queue), one for the answer, started when the request is sent.
 *   The helper's own budget starts when it reads the request, so time
 *   in the queue is never charged to an evaluation. A caller whose
 *   answer is late gives up and leaves the helper at work; the answer
 *   is read and dropped (the sequence number says whose it was). Only a
 *   helper silent for SPF_HUNG_WAITS * W is hung, and killed.
 * - Routing: a request goes to the helper its key (organizational
 *   domain) hashes to when that one is idle, so a burst from one domain
 *   meets a warm DNS cache, else to the next idle one. A key has at
 *   most one request in the helpers at a time; its others wait in the
 *   queue while other keys' requests pass them. A slow or hostile zone
 *   thus holds one helper, never the pool, and a domain that hashes to
 *   the same helper is served by another. (Slow zones under as many
 *   organizational domains as there are helpers still fill the pool:
 *   then everyone waits in the queue, at most W, and then gets a full W
 *   of its own.)
 * - Spawning: a helper that died is spawned again by the dispatcher as
 *   soon as a request waits, with SPF_START_WAIT_MS of its own to say
 *   ready, whatever time the request has left; meanwhile requests go to
 *   the other helpers. A failed start is tried again after
 *   SPF_RESTART_BACKOFF_MS; while no helper runs or starts at all,
 *   requests fail at once rather than wait.
 * - Locking: one mutex guards the queue, the jobs in it and each
 *   helper's pointer to its caller's job; it is never held across a
 *   wait (only for list work, a send to an idle helper, or handing over
 *   an answer). Everything else about a helper belongs to the dispatcher
 *   thread alone.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "align.h"
#include "fnv.h"
#include "log.h"
#include "spf_dispatch.h"
#include "spf_spawn.h"
#include "spf_wire.h"

enum spf_helper_state {
	SPF_HELPER_DOWN,		/* no process; started when a request waits */
	SPF_HELPER_STARTING,		/* spawned; its 'R' is due */
	SPF_HELPER_IDLE,
	SPF_HELPER_BUSY,		/* a request in flight */
	SPF_HELPER_LOST,		/* found dead while idle; to be ended */
};

/* A helper. The dispatcher's alone, but for job (dispatch lock). */
struct spf_helper {
	unsigned index;			/* for log lines */
	enum spf_helper_state state;
	pid_t pid;			/* 0 when DOWN */
	int fd;				/* our end of its socket; -1 when DOWN */
	long long since_ms;		/* STARTING: spawned; BUSY: request sent */
	long long retry_after_ms;	/* DOWN after a failed start */
	unsigned seq;			/* of the request in flight */
	char kind;			/* of the request in flight */
	char key[ALIGN_NAME_MAX + 1];	/* routing key of the request in flight */
	struct spf_job *job;		/* its caller; NULL once that gave up */
};

enum spf_job_state { SPF_JOB_QUEUED, SPF_JOB_SENT, SPF_JOB_DONE };

/*
 * A request, on its caller's stack while spf_dispatch_ask runs. Once queued,
 * state, next, until_ms, helper, pid and the answer's fields are
 * under the dispatch lock: the dispatcher fills them in.
 */
struct spf_job {
	struct spf_job *next;		/* in the queue */
	enum spf_job_state state;
	const char *key;		/* routing key */
	char kind;			/* SPF_WIRE_CHECK or _DMARC */
	unsigned seq;
	char pkt[SPF_WIRE_MAX];
	int pktlen;
	long long until_ms;		/* QUEUED: give up; SENT: answer due */
	unsigned helper;		/* SENT: to this one (for log lines) */
	int pid;
	pthread_cond_t done;		/* signalled when DONE */
	int code;			/* answered; SPF_DISPATCH_FAILED */
	char *detail;			/* the caller's */
	size_t len;
	struct spf_reuse *reuse;	/* the caller's, for an 'S' */
};

struct spf_dispatch {
	char *resolver;
	char *user;
	long timeout_ms;		/* per DNS query */
	long wait_ms;			/* W: for a helper; then for its answer */
	atomic_ulong requests;		/* sent to helpers */
	atomic_uint seq;		/* of the last request */
	pthread_mutex_t lock;		/* the queue, queued jobs, helpers' job, stopping */
	struct spf_job *queue;		/* oldest first */
	bool stopping;
	int wake;			/* eventfd: a request was queued, or stop */
	bool dispatching;		/* the dispatcher thread runs */
	pthread_t dispatcher;
	struct spf_helper helpers[SPF_POOL_SIZE];
};

enum spf_receive { SPF_RECEIVE_TIMEOUT = -2, SPF_RECEIVE_ERROR = -1, SPF_RECEIVE_EOF = 0 };

long long spf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void spf_set_detail(char *detail, size_t len, const char *text)
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

int spf_dispatch_unpack(char *buf, ssize_t n, unsigned seq, int *answer, char *detail,
	size_t len, struct spf_reuse *reuse)
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
	    code < 0 || code > SPF_WIRE_CODE_MAX(reuse != NULL ? SPF_WIRE_CHECK : SPF_WIRE_DMARC))
		return -1;
	if (reuse != NULL && (spf_parse_ttl(fields[3], &ttl) < 0 ||
			      (strcmp(fields[4], "0") != 0 && strcmp(fields[4], "1") != 0)))
		return -1;
	*answer = (int)code;
	spf_set_detail(detail, len, fields[2]);
	if (reuse != NULL) {
		reuse->ttl = ttl;
		reuse->sender_specific = fields[4][0] == '1';
	}
	return 0;
}

/* Gives a job its answer and wakes its caller; dispatch lock held. */
static void spf_job_finish(struct spf_job *job, int code, const char *detail,
	const struct spf_reuse *reuse)
{
	job->code = code;
	spf_set_detail(job->detail, job->len, detail);
	if (job->reuse != NULL && reuse != NULL)
		*job->reuse = *reuse;
	job->state = SPF_JOB_DONE;
	pthread_cond_signal(&job->done);
}

/*
 * Ends a helper's process and reaps it; with grace, it may first exit
 * on its own (it does when its socket closes). Writes how it ended to
 * how. The helper is DOWN, to be started again when a request waits.
 */
static void spf_helper_end(struct spf_helper *h, bool grace, char *how, size_t len)
{
	close(h->fd);
	h->fd = -1;
	spf_spawn_end(h->pid, grace, how, len);
	h->pid = 0;
	h->state = SPF_HELPER_DOWN;
	h->retry_after_ms = 0;
}

/* A busy helper ended: its caller, if it still waits, gets temperror with detail. */
static void spf_helper_lost_job(struct spf_dispatch *d, struct spf_helper *h, const char *detail)
{
	pthread_mutex_lock(&d->lock);
	if (h->job != NULL)
		spf_job_finish(h->job, SPF_DISPATCH_FAILED, detail, NULL);
	h->job = NULL;
	pthread_mutex_unlock(&d->lock);
}

/* Spawns helper h (DOWN): STARTING, or DOWN until the backoff is over. */
static void spf_helper_spawn(struct spf_dispatch *d, struct spf_helper *h)
{
	char err[128];
	pid_t pid;
	int fd;

	if (spf_spawn_helper(d->resolver, d->timeout_ms, d->user, &fd, &pid, err,
			     sizeof(err)) < 0) {
		log_error("SPF helper %u: cannot start: %s", h->index, err);
		h->retry_after_ms = spf_now_ms() + SPF_RESTART_BACKOFF_MS;
		return;
	}
	h->pid = pid;
	h->fd = fd;
	h->state = SPF_HELPER_STARTING;
	h->since_ms = spf_now_ms();
}

/*
 * A STARTING helper's first packet, n as spf_receive returns it (buf
 * holds SPF_WIRE_MAX + 1 bytes): IDLE when it said ready, else ended and
 * DOWN until the backoff is over.
 */
static void spf_helper_started(struct spf_helper *h, char *buf, ssize_t n)
{
	char how[64] = "";
	int pid = (int)h->pid;

	if (n >= 1 && buf[0] == SPF_WIRE_READY) {
		h->state = SPF_HELPER_IDLE;
		log_debug("SPF helper %u started (pid %d)", h->index, pid);
		return;
	}
	if (n >= 1 && buf[0] == SPF_WIRE_FAILED) {
		buf[n] = '\0';
		log_error("SPF helper %u (pid %d) cannot start: %s", h->index, pid, buf + 1);
	}
	spf_helper_end(h, false, how, sizeof(how));
	h->retry_after_ms = spf_now_ms() + SPF_RESTART_BACKOFF_MS;
	log_warning("SPF helper %u (pid %d) did not start: %s", h->index, pid,
		    n == SPF_RECEIVE_TIMEOUT ? "not ready in time" : how);
}

/* A BUSY helper's answer (n as recv returns it): IDLE, or ended when it is not one. */
static void spf_helper_answered(struct spf_dispatch *d, struct spf_helper *h, char *buf, ssize_t n)
{
	struct spf_reuse reuse = { .ttl = 0, .sender_specific = true };
	char detail[SPF_DETAIL_MAX], how[64] = "";
	int code, pid = (int)h->pid;

	if (n > 0 && spf_dispatch_unpack(buf, n, h->seq, &code, detail, sizeof(detail),
				h->kind == SPF_WIRE_CHECK ? &reuse : NULL) == 0) {
		pthread_mutex_lock(&d->lock);
		if (h->job != NULL)
			spf_job_finish(h->job, code, detail, &reuse);
		h->job = NULL;
		pthread_mutex_unlock(&d->lock);
		h->state = SPF_HELPER_IDLE;
		return;
	}
	spf_helper_end(h, false, how, sizeof(how));
	spf_helper_lost_job(d, h, "SPF helper failed");
	log_warning("SPF helper %u (pid %d) failed during a request: %s", h->index, pid,
		    n > 0 ? "bad answer" : how);
}

/* Reads what a helper's socket has: a start, an answer, or a death. */
static void spf_helper_readable(struct spf_dispatch *d, struct spf_helper *h)
{
	char buf[SPF_WIRE_MAX + 1], how[64] = "";
	ssize_t n = recv(h->fd, buf, SPF_WIRE_MAX, MSG_DONTWAIT);
	int pid = (int)h->pid;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0)
		n = SPF_RECEIVE_ERROR;
	if (h->state == SPF_HELPER_STARTING) {
		spf_helper_started(h, buf, n);
	} else if (h->state == SPF_HELPER_BUSY) {
		spf_helper_answered(d, h, buf, n);
	} else {
		/* Idle: a hang-up, or words nobody asked for. */
		spf_helper_end(h, false, how, sizeof(how));
		log_warning("SPF helper %u (pid %d) ended while idle: %s; starting it again",
			    h->index, pid, n > 0 ? "unexpected data" : how);
	}
}

/* Ends a helper that overran: too slow to start, or hung on a request. */
static void spf_helper_check_time(struct spf_dispatch *d, struct spf_helper *h, long long now)
{
	long hung_ms = SPF_HUNG_WAITS * d->wait_ms;
	char how[64] = "";
	int pid = (int)h->pid;

	if (h->state == SPF_HELPER_STARTING && now >= h->since_ms + SPF_START_WAIT_MS) {
		spf_helper_started(h, NULL, SPF_RECEIVE_TIMEOUT);
	} else if (h->state == SPF_HELPER_BUSY && now >= h->since_ms + hung_ms) {
		spf_helper_end(h, false, how, sizeof(how));
		spf_helper_lost_job(d, h, "SPF evaluation timed out");
		log_warning("SPF helper %u (pid %d) hung: no answer within %ld ms; %s", h->index,
			    pid, hung_ms, how);
	}
}

/* True when an idle helper's socket shows neither hang-up nor stray data. */
static bool spf_helper_idle_ok(const struct spf_helper *h)
{
	struct pollfd p = { .fd = h->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/* Whether a request for key is in a helper now. */
static bool spf_key_busy(const struct spf_dispatch *d, const char *key)
{
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++)
		if (d->helpers[i].state == SPF_HELPER_BUSY &&
		    strcmp(d->helpers[i].key, key) == 0)
			return true;
	return false;
}

/* The helper for key: its own when idle, else the next idle one; NULL when none is. */
static struct spf_helper *spf_pick(struct spf_dispatch *d, const char *key)
{
	unsigned home = spf_route(key);

	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		struct spf_helper *h = &d->helpers[(home + i) % SPF_POOL_SIZE];
		if (h->state == SPF_HELPER_IDLE)
			return h;
	}
	return NULL;
}

/*
 * Sends queued requests to idle helpers, oldest first, skipping those
 * whose routing key already has one in a helper; dispatch lock held. A
 * helper found dead on the way becomes LOST (ended by the caller once
 * the lock is released) and the request tries the next one.
 */
static void spf_dispatch_queue(struct spf_dispatch *d)
{
	struct spf_job **pp = &d->queue;

	while (*pp != NULL) {
		struct spf_job *job = *pp;
		struct spf_helper *h;

		if (spf_key_busy(d, job->key)) {
			pp = &job->next;
			continue;
		}
		if ((h = spf_pick(d, job->key)) == NULL)
			break;
		if (!spf_helper_idle_ok(h) ||
		    send(h->fd, job->pkt, (size_t)job->pktlen, MSG_NOSIGNAL) < 0) {
			h->state = SPF_HELPER_LOST;
			continue;
		}
		*pp = job->next;
		h->state = SPF_HELPER_BUSY;
		h->since_ms = spf_now_ms();
		h->seq = job->seq;
		h->kind = job->kind;
		snprintf(h->key, sizeof(h->key), "%s", job->key);
		h->job = job;
		job->state = SPF_JOB_SENT;
		job->until_ms = h->since_ms + d->wait_ms;
		job->helper = h->index;
		job->pid = (int)h->pid;
		atomic_fetch_add_explicit(&d->requests, 1, memory_order_relaxed);
	}
	/* No helper runs or starts (all failed to start): fail now rather than wait. */
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++)
		if (d->helpers[i].state != SPF_HELPER_DOWN)
			return;
	while (d->queue != NULL) {
		struct spf_job *job = d->queue;
		d->queue = job->next;
		spf_job_finish(job, SPF_DISPATCH_FAILED, "SPF helper unavailable", NULL);
	}
}

/* The poll timeout until the earliest of the helpers' deadlines. */
static int spf_next_timeout(const struct spf_dispatch *d, bool waiting)
{
	long long next = LLONG_MAX, left;

	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		const struct spf_helper *h = &d->helpers[i];
		long long at = LLONG_MAX;
		if (h->state == SPF_HELPER_STARTING)
			at = h->since_ms + SPF_START_WAIT_MS;
		else if (h->state == SPF_HELPER_BUSY)
			at = h->since_ms + SPF_HUNG_WAITS * d->wait_ms;
		else if (h->state == SPF_HELPER_DOWN && waiting)
			at = h->retry_after_ms;
		if (at < next)
			next = at;
	}
	if (next == LLONG_MAX)
		return -1;
	left = next - spf_now_ms();
	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* The dispatcher thread (see the decisions at the top). */
static void *spf_dispatcher(void *arg)
{
	struct spf_dispatch *d = arg;
	struct pollfd p[SPF_POOL_SIZE + 1];
	struct spf_helper *polled[SPF_POOL_SIZE + 1];

	for (;;) {
		long long now = spf_now_ms();
		bool waiting, stopping;
		char how[64];
		int n = 0;

		pthread_mutex_lock(&d->lock);
		waiting = d->queue != NULL;
		stopping = d->stopping;
		pthread_mutex_unlock(&d->lock);
		if (stopping)
			break;
		for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
			struct spf_helper *h = &d->helpers[i];
			spf_helper_check_time(d, h, now);
			if (h->state == SPF_HELPER_DOWN && waiting && now >= h->retry_after_ms)
				spf_helper_spawn(d, h);
		}
		pthread_mutex_lock(&d->lock);
		spf_dispatch_queue(d);
		waiting = d->queue != NULL;
		pthread_mutex_unlock(&d->lock);

		p[n++] = (struct pollfd){ .fd = d->wake, .events = POLLIN };
		for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
			struct spf_helper *h = &d->helpers[i];
			if (h->state == SPF_HELPER_LOST) {
				int pid = (int)h->pid;
				spf_helper_end(h, false, how, sizeof(how));
				log_warning("SPF helper %u (pid %d) ended while idle: %s; "
					    "starting it again", h->index, pid, how);
			}
			if (h->state == SPF_HELPER_DOWN)
				continue;
			polled[n] = h;
			p[n++] = (struct pollfd){ .fd = h->fd, .events = POLLIN };
		}
		if (poll(p, (nfds_t)n, spf_next_timeout(d, waiting)) < 0) {
			if (errno != EINTR) {
				log_error("SPF dispatcher: poll: %s", strerror(errno));
				usleep(10000);
			}
			continue;
		}
		if (p[0].revents != 0) {
			uint64_t count;
			if (read(d->wake, &count, sizeof(count)) < 0 && errno != EAGAIN)
				log_error("SPF dispatcher: wake-up: %s", strerror(errno));
		}
		for (int k = 1; k < n; k++)
			if (p[k].revents != 0)
				spf_helper_readable(d, polled[k]);
	}
	return NULL;
}

static void spf_wake(struct spf_dispatch *d)
{
	uint64_t one = 1;

	/* A full counter (EAGAIN) has a wake-up pending already. */
	if (write(d->wake, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("SPF: cannot wake the dispatcher: %s", strerror(errno));
}

/*
 * A caller gives up on its job (its time ran out); dispatch lock held. A
 * queued job leaves the queue; a sent one leaves its helper at work,
 * whose answer the dispatcher will read and drop.
 */
static void spf_job_abandon(struct spf_dispatch *d, struct spf_job *job)
{
	if (job->state == SPF_JOB_QUEUED) {
		struct spf_job **pp = &d->queue;
		while (*pp != job)
			pp = &(*pp)->next;
		*pp = job->next;
		spf_set_detail(job->detail, job->len, "SPF helpers busy");
	} else {
		d->helpers[job->helper].job = NULL;
		spf_set_detail(job->detail, job->len, "SPF evaluation timed out");
	}
	job->state = SPF_JOB_DONE;
}

int spf_dispatch_ask(struct spf_dispatch *d, const char *key, char kind,
	const char *const fields[], int nfields, char *detail, size_t len,
	struct spf_reuse *reuse)
{
	struct spf_job job = { .state = SPF_JOB_QUEUED, .key = key, .kind = kind,
			       .code = SPF_DISPATCH_FAILED, .detail = detail, .len = len,
			       .reuse = reuse };
	pthread_condattr_t attr;
	bool late = false;

	if (reuse != NULL)
		*reuse = (struct spf_reuse){ .ttl = 0, .sender_specific = true };
	job.seq = atomic_fetch_add_explicit(&d->seq, 1, memory_order_relaxed) + 1;
	job.pktlen = spf_pack(job.pkt, sizeof(job.pkt), kind, job.seq, fields, nfields);
	if (job.pktlen < 0) {
		spf_set_detail(detail, len, "SPF request too long");
		return SPF_DISPATCH_FAILED;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&job.done, &attr);
	pthread_condattr_destroy(&attr);

	pthread_mutex_lock(&d->lock);
	job.until_ms = spf_now_ms() + d->wait_ms;
	struct spf_job **pp = &d->queue;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = &job;
	spf_wake(d);
	while (job.state != SPF_JOB_DONE) {
		struct timespec until = { .tv_sec = job.until_ms / 1000,
					  .tv_nsec = (job.until_ms % 1000) * 1000000 };
		if (spf_now_ms() >= job.until_ms) {
			late = job.state == SPF_JOB_SENT;
			spf_job_abandon(d, &job);
			break;
		}
		pthread_cond_timedwait(&job.done, &d->lock, &until);
	}
	pthread_mutex_unlock(&d->lock);
	pthread_cond_destroy(&job.done);
	if (late)
		log_warning("SPF helper %u (pid %d) gave no answer within %ld ms; "
			    "its answer will be dropped", job.helper, job.pid, d->wait_ms);
	return job.code;
}

unsigned long spf_dispatch_requests(struct spf_dispatch *d)
{
	return atomic_load_explicit(&d->requests, memory_order_relaxed);
}

/* Frees d, whose helpers are down and whose thread is not running. */
static void spf_dispatch_free(struct spf_dispatch *d)
{
	if (d->wake >= 0)
		close(d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d->resolver);
	free(d->user);
	free(d);
}

struct spf_dispatch *spf_dispatch_start(const char *resolver, const char *user,
	long timeout_ms, char *err, size_t len)
{
	struct spf_dispatch *d = calloc(1, sizeof(*d));
	sigset_t all, old;
	unsigned started = 0;

	if (d == NULL) {
		spf_set_detail(err, len, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	atomic_init(&d->requests, 0);
	atomic_init(&d->seq, 0);
	d->resolver = strdup(resolver);
	d->user = strdup(user);
	d->timeout_ms = timeout_ms;
	d->wait_ms = SPF_BUDGET_TIMEOUTS * timeout_ms + SPF_REPLY_MARGIN_MS;
	d->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->resolver == NULL || d->user == NULL || d->wake < 0) {
		spf_set_detail(err, len, d->wake < 0 ? "cannot create an eventfd"
						     : "out of memory");
		spf_dispatch_free(d);
		return NULL;
	}
	/* All spawned at once, then each waited for. */
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		d->helpers[i].index = i;
		d->helpers[i].fd = -1;
		spf_helper_spawn(d, &d->helpers[i]);
	}
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		struct spf_helper *h = &d->helpers[i];
		char buf[SPF_WIRE_MAX + 1];
		if (h->state != SPF_HELPER_STARTING)
			continue;
		spf_helper_started(h, buf, spf_receive(h->fd, buf, SPF_WIRE_MAX,
						       h->since_ms + SPF_START_WAIT_MS));
		if (h->state == SPF_HELPER_IDLE)
			started++;
	}
	if (started == 0) {
		spf_set_detail(err, len, "no SPF helper process started (see the log)");
		spf_dispatch_stop(d);
		return NULL;
	}
	/* Signals are for the daemon's main thread, never the dispatcher. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	d->dispatching = pthread_create(&d->dispatcher, NULL, spf_dispatcher, d) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!d->dispatching) {
		spf_set_detail(err, len, "cannot start the SPF dispatcher thread");
		spf_dispatch_stop(d);
		return NULL;
	}
	return d;
}

void spf_dispatch_stop(struct spf_dispatch *d)
{
	char how[64];

	if (d == NULL)
		return;
	if (d->dispatching) {
		pthread_mutex_lock(&d->lock);
		d->stopping = true;
		spf_wake(d);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->dispatcher, NULL);
	}
	for (unsigned i = 0; i < SPF_POOL_SIZE; i++) {
		struct spf_helper *h = &d->helpers[i];
		bool ready = h->state == SPF_HELPER_IDLE || h->state == SPF_HELPER_BUSY;
		int pid = (int)h->pid;
		if (h->state == SPF_HELPER_DOWN)
			continue;
		spf_helper_end(h, true, how, sizeof(how));
		/* One still starting may find its socket closed before it says ready. */
		if (ready && strcmp(how, "exited with status 0") != 0)
			log_warning("SPF helper %u (pid %d) did not stop cleanly: %s", i, pid, how);
	}
	spf_dispatch_free(d);
}
