/*
 * metrics - counters and a minimal HTTP endpoint for Prometheus.
 *
 * The endpoint answers each connection with the whole text and closes it.
 * It reads at most METRICS_REQUEST_MAX bytes of a request and never
 * parses it, so a client cannot make it allocate more than one answer.
 *
 * Decisions:
 * - One thread serves every client with poll(), each non-blocking with
 *   its own deadline, so a silent or slow client holds only its own slot,
 *   never the others. At most METRICS_CLIENTS_MAX are served at once; a
 *   new connection beyond that takes the slot of the oldest, so a scrape
 *   is always answered however many idle connections pile up.
 * - An accept() that fails for lack of resources (descriptors, memory)
 *   is tried again after METRICS_ACCEPT_BACKOFF_MS, for ever: the
 *   endpoint comes back as soon as the process has descriptors again.
 *   One log line when that starts and one when it ends, not one per try.
 * - Mail never waits for it: the counters are atomics, and this thread
 *   takes no lock that a mail thread takes.
 * - Deferrals by class: a fixed table of METRICS_CLASSES_MAX names, filled
 *   as classes first defer mail and never emptied (a reload that renames
 *   a class keeps the old name's count). A mail thread finds its class by
 *   a lock-free scan of the published entries; only adding a name takes
 *   class_add_lock, so two threads never add one name twice. Beyond the
 *   table, and for a class named "other", the count goes to the one
 *   member class="other", always served.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

/* The fixed counters (some 4 KiB) and every class's deferrals. */
#define METRICS_TEXT_MAX 65536
/* Room for the status line and headers before the text. */
#define METRICS_HEAD_MAX 128
/* Bytes of a request read before answering; a GET needs far fewer. */
#define METRICS_REQUEST_MAX 1024
/* Connections served at once; Prometheus needs one. */
#define METRICS_CLIENTS_MAX 32
/* A client has this long to send its request and take the answer. */
#define METRICS_CLIENT_MS 2000
/* After accept() failed for lack of descriptors or memory. */
#define METRICS_ACCEPT_BACKOFF_MS 250

/* Class names deferrals are counted for; then class="other". */
#define METRICS_CLASSES_MAX 256
#define METRICS_CLASS_NAME_MAX 64

static unsigned long metric_values[METRIC_COUNT];

static struct {
	char name[METRICS_CLASS_NAME_MAX];
	unsigned long count;
} class_deferrals[METRICS_CLASSES_MAX];
static unsigned class_published;	/* entries whose name is written; release/acquire */
static unsigned long class_other;
static pthread_mutex_t class_add_lock = PTHREAD_MUTEX_INITIALIZER;

#define CLASS_DEFERRALS_NAME "bulkmilter_class_deferrals_total"
#define CLASS_DEFERRALS_HELP "Transactions answered 4xx, by the policy class of the mail (other: beyond 256 classes)"

#define DEFERRALS_HELP "Transactions answered 4xx, by cause: a rate, SPF, a suspended account, other"

/* label: NULL, or name="value" for a member of a labelled family */
static const struct {
	const char *name;
	const char *help;
	const char *label;
} metric_info[METRIC_COUNT] = {
	[METRIC_ACCEPTED] = { "bulkmilter_messages_accepted_total", "Messages accepted", NULL },
	[METRIC_TEMPFAILED] = { "bulkmilter_messages_tempfailed_total", "Messages or transactions answered 4xx", NULL },
	[METRIC_REJECTED] = { "bulkmilter_messages_rejected_total", "Messages or transactions answered 5xx", NULL },
	[METRIC_HELD] = { "bulkmilter_messages_held_total", "Messages put in the hold queue", NULL },
	[METRIC_OVER_LIMIT] = { "bulkmilter_over_limit_total", "Events over a rate limit", NULL },
	[METRIC_STORE_FAILURES] = { "bulkmilter_store_failures_total", "Rate-limit checks Redis did not answer", NULL },
	[METRIC_SIGNED] = { "bulkmilter_messages_signed_total", "Outbound messages DKIM-signed", NULL },
	[METRIC_NOT_SIGNED] = { "bulkmilter_messages_not_signed_total", "Outbound messages not signed", NULL },
	[METRIC_BULK] = { "bulkmilter_messages_bulk_total", "Messages classified bulk", NULL },
	[METRIC_NONCOMPLIANT] = { "bulkmilter_bulk_noncompliant_total", "Bulk messages failing bulk-require checks", NULL },
	[METRIC_SPF_CHECKS] = { "bulkmilter_spf_checks_total", "Inbound SPF evaluations", NULL },
	[METRIC_SPF_FAIL] = { "bulkmilter_spf_fail_total", "Inbound SPF results fail", NULL },
	[METRIC_SPF_TEMPERROR] = { "bulkmilter_spf_temperror_total", "Inbound SPF results temperror", NULL },
	[METRIC_RELOADS] = { "bulkmilter_reloads_total", "Configuration reloads installed", NULL },
	[METRIC_RELOADS_REFUSED] = { "bulkmilter_reloads_refused_total", "Configuration reloads refused", NULL },
	[METRIC_SUSPENDED] = { "bulkmilter_suspended_messages_total", "Messages and recipients of suspended accounts given the suspended action", NULL },
	[METRIC_SUSPENSIONS] = { "bulkmilter_suspensions_total", "Accounts suspended by a suspend-if rule this milter tripped", NULL },
	[METRIC_RULE_TRIPS] = { "bulkmilter_rule_trips_total", "suspend-if rules tripped", NULL },
	[METRIC_EVENTS_SENT] = { "bulkmilter_events_sent_total", "Events delivered to NotifyURL", NULL },
	[METRIC_EVENTS_FAILED] = { "bulkmilter_events_failed_total", "POSTs to NotifyURL that failed (each retried)", NULL },
	[METRIC_EVENTS_DROPPED] = { "bulkmilter_events_dropped_total", "Events dropped: queue full", NULL },
	[METRIC_SUPPRESSED] = { "bulkmilter_suppressed_recipients_total", "Recipients on their account's suppression list given the suppressed action", NULL },
	[METRIC_REPORTS_READ] = { "bulkmilter_reports_read_total", "Delivery and abuse reports read (DSN, ARF)", NULL },
	[METRIC_REPORTS_UNVERIFIED] = { "bulkmilter_reports_unverified_total", "Reports whose Feedback-ID did not verify (not ours, or forged)", NULL },
	[METRIC_REPORT_SUPPRESSIONS] = { "bulkmilter_report_suppressions_total", "Recipients put on a suppression list by a report", NULL },
	[METRIC_DEFERRED_RATE] = { "bulkmilter_deferrals_total", DEFERRALS_HELP, "cause=\"rate\"" },
	[METRIC_DEFERRED_SPF] = { "bulkmilter_deferrals_total", DEFERRALS_HELP, "cause=\"spf\"" },
	[METRIC_DEFERRED_SUSPENDED] = { "bulkmilter_deferrals_total", DEFERRALS_HELP, "cause=\"suspended\"" },
	[METRIC_DEFERRED_OTHER] = { "bulkmilter_deferrals_total", DEFERRALS_HELP, "cause=\"other\"" },
};

void metrics_inc(enum metric m)
{
	__atomic_add_fetch(&metric_values[m], 1, __ATOMIC_RELAXED);
}

/* The class's counter: a lock-free scan, or once per name an entry added under the lock. */
static unsigned long *metrics_class_counter(const char *cls)
{
	unsigned n = __atomic_load_n(&class_published, __ATOMIC_ACQUIRE);
	unsigned long *found = &class_other;

	if (cls == NULL || cls[0] == '\0' || strlen(cls) >= METRICS_CLASS_NAME_MAX ||
	    strcmp(cls, "other") == 0)
		return &class_other;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(class_deferrals[i].name, cls) == 0)
			return &class_deferrals[i].count;
	pthread_mutex_lock(&class_add_lock);
	n = __atomic_load_n(&class_published, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n && found == &class_other; i++)
		if (strcmp(class_deferrals[i].name, cls) == 0)
			found = &class_deferrals[i].count;
	if (found == &class_other && n < METRICS_CLASSES_MAX) {
		strcpy(class_deferrals[n].name, cls);
		found = &class_deferrals[n].count;
		__atomic_store_n(&class_published, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&class_add_lock);
	return found;
}

void metrics_class_deferral(const char *cls)
{
	__atomic_add_fetch(metrics_class_counter(cls), 1, __ATOMIC_RELAXED);
}

/* value as a Prometheus label value: backslash, quote and newline escaped. */
static void metrics_label_value(char *out, size_t len, const char *value)
{
	size_t o = 0;

	for (const char *p = value; *p && o + 3 < len; p++) {
		if (*p == '\\' || *p == '"' || *p == '\n')
			out[o++] = '\\';
		out[o++] = *p == '\n' ? 'n' : *p;
	}
	out[o] = '\0';
}

/* Appends the class family; returns the new length, or used when it does not fit. */
static size_t metrics_format_classes(char *buf, size_t len, size_t used)
{
	unsigned n = __atomic_load_n(&class_published, __ATOMIC_ACQUIRE);
	size_t at = used;
	int w;

	w = snprintf(buf + at, len - at, "# HELP %s %s\n# TYPE %s counter\n", CLASS_DEFERRALS_NAME,
		     CLASS_DEFERRALS_HELP, CLASS_DEFERRALS_NAME);
	if (w < 0 || (size_t)w >= len - at)
		goto full;
	at += (size_t)w;
	for (unsigned i = 0; i <= n; i++) {
		char value[2 * METRICS_CLASS_NAME_MAX];
		unsigned long count;

		if (i < n) {
			metrics_label_value(value, sizeof(value), class_deferrals[i].name);
			count = __atomic_load_n(&class_deferrals[i].count, __ATOMIC_RELAXED);
		} else {
			strcpy(value, "other");
			count = __atomic_load_n(&class_other, __ATOMIC_RELAXED);
		}
		w = snprintf(buf + at, len - at, "%s{class=\"%s\"} %lu\n", CLASS_DEFERRALS_NAME, value, count);
		if (w < 0 || (size_t)w >= len - at)
			goto full;
		at += (size_t)w;
	}
	return at;
full:
	buf[used] = '\0';
	return used;
}

size_t metrics_format(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < METRIC_COUNT; i++) {
		const char *name = metric_info[i].name, *label = metric_info[i].label;
		size_t room = len - used;
		int head = 0, sample;

		/* HELP and TYPE once per family: at its first member */
		if (i == 0 || strcmp(name, metric_info[i - 1].name) != 0)
			head = snprintf(buf + used, room, "# HELP %s %s\n# TYPE %s counter\n", name,
					metric_info[i].help, name);
		if (head < 0 || (size_t)head >= room)
			break;
		sample = snprintf(buf + used + head, room - (size_t)head, "%s%s%s%s %lu\n", name,
				  label ? "{" : "", label ? label : "", label ? "}" : "",
				  __atomic_load_n(&metric_values[i], __ATOMIC_RELAXED));
		if (sample < 0 || (size_t)sample >= room - (size_t)head)
			break;
		used += (size_t)head + (size_t)sample;
		if (i == METRIC_COUNT - 1)
			used = metrics_format_classes(buf, len, used);
	}
	return used;
}

/* A connection being served: reading its request, then writing the answer. */
struct metrics_client {
	int fd;				/* -1: a free slot */
	long long deadline_ms;		/* CLOCK_MONOTONIC */
	size_t got;			/* request bytes read */
	char *answer;			/* NULL while reading */
	size_t answer_len, sent;
	char request[METRICS_REQUEST_MAX];
};

static long long metrics_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void metrics_drop(struct metrics_client *c)
{
	close(c->fd);
	free(c->answer);
	c->fd = -1;
	c->answer = NULL;
}

/* The request is in when its header ends, the buffer is full, or the client stopped sending. */
static bool metrics_request_done(const struct metrics_client *c, bool eof)
{
	const char *end = c->request + c->got;

	if (eof || c->got == sizeof(c->request))
		return true;
	for (const char *p = c->request; p + 1 < end; p++)
		if ((p[0] == '\n' && p[1] == '\n') ||
		    (p[0] == '\n' && p[1] == '\r' && p + 2 < end && p[2] == '\n'))
			return true;
	return false;
}

/* The answer: headers and the counters as they are now; false without memory. */
static bool metrics_prepare(struct metrics_client *c)
{
	char body[METRICS_TEXT_MAX];
	size_t n = metrics_format(body, sizeof(body));
	int h;

	c->answer = malloc(METRICS_HEAD_MAX + n);
	if (c->answer == NULL)
		return false;
	h = snprintf(c->answer, METRICS_HEAD_MAX,
		     "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n", n);
	memcpy(c->answer + h, body, n);
	c->answer_len = (size_t)h + n;
	c->sent = 0;
	return true;
}

/* Reads or writes what the socket takes now; false when the client is done with. */
static bool metrics_progress(struct metrics_client *c)
{
	if (c->answer == NULL) {
		ssize_t n = recv(c->fd, c->request + c->got, sizeof(c->request) - c->got, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->got += (size_t)n;
		if (!metrics_request_done(c, n == 0))
			return true;
		if (!metrics_prepare(c))
			return false;
	}
	while (c->sent < c->answer_len) {
		ssize_t n = send(c->fd, c->answer + c->sent, c->answer_len - c->sent,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->sent += (size_t)n;
	}
	return false;
}

/* A free slot, else the oldest client's, which is dropped. */
static struct metrics_client *metrics_slot(struct metrics_client *clients)
{
	struct metrics_client *oldest = &clients[0];

	for (int i = 0; i < METRICS_CLIENTS_MAX; i++) {
		if (clients[i].fd < 0)
			return &clients[i];
		if (clients[i].deadline_ms < oldest->deadline_ms)
			oldest = &clients[i];
	}
	log_debug("metrics: %d connections open: dropping the oldest", METRICS_CLIENTS_MAX);
	metrics_drop(oldest);
	return oldest;
}

/*
 * Accepts what is waiting; returns when nothing is, or with
 * *retry_at_ms set when accept() failed for lack of resources.
 */
static void metrics_accept(int lfd, struct metrics_client *clients, bool *failing,
			   long long *retry_at_ms)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct metrics_client *c;

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (!*failing)
				log_error("metrics: accept: %s; trying again every %d ms", strerror(errno),
					  METRICS_ACCEPT_BACKOFF_MS);
			*failing = true;
			*retry_at_ms = metrics_now_ms() + METRICS_ACCEPT_BACKOFF_MS;
			return;
		}
		if (*failing)
			log_info("metrics: accepting connections again");
		*failing = false;
		c = metrics_slot(clients);
		c->fd = fd;
		c->deadline_ms = metrics_now_ms() + METRICS_CLIENT_MS;
		c->got = 0;
	}
}

static void *metrics_serve(void *arg)
{
	struct metrics_client clients[METRICS_CLIENTS_MAX];
	struct pollfd pfd[METRICS_CLIENTS_MAX + 1];
	struct metrics_client *polled[METRICS_CLIENTS_MAX + 1];
	int lfd = (int)(long)arg;
	long long retry_at_ms = 0;
	bool failing = false;

	for (int i = 0; i < METRICS_CLIENTS_MAX; i++) {
		clients[i].fd = -1;
		clients[i].answer = NULL;
	}
	for (;;) {
		long long now = metrics_now_ms(), wake = now >= retry_at_ms ? -1 : retry_at_ms;
		int n = 0, timeout, ready;

		if (now >= retry_at_ms) {
			pfd[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
			polled[n++] = NULL;
		}
		for (int i = 0; i < METRICS_CLIENTS_MAX; i++) {
			struct metrics_client *c = &clients[i];
			if (c->fd < 0)
				continue;
			if (now >= c->deadline_ms) {
				metrics_drop(c);
				continue;
			}
			pfd[n] = (struct pollfd){ .fd = c->fd,
						  .events = c->answer != NULL ? POLLOUT : POLLIN };
			polled[n++] = c;
			if (wake < 0 || c->deadline_ms < wake)
				wake = c->deadline_ms;
		}
		timeout = wake < 0 ? -1 : (int)(wake - now);
		ready = poll(pfd, (nfds_t)n, timeout);
		if (ready < 0 && errno != EINTR) {
			struct timespec pause = { 0, METRICS_ACCEPT_BACKOFF_MS * 1000000L };
			log_error("metrics: poll: %s", strerror(errno));
			nanosleep(&pause, NULL);
			continue;
		}
		for (int i = 0; ready > 0 && i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (polled[i] == NULL)
				metrics_accept(lfd, clients, &failing, &retry_at_ms);
			else if (polled[i]->fd >= 0 && !metrics_progress(polled[i]))
				metrics_drop(polled[i]);
		}
	}
	return NULL;
}

int metrics_listen(const char *host_port, char *err, size_t len)
{
	char host[256];
	const char *colon = strrchr(host_port, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai;
	size_t hl;

	if (colon == NULL || (hl = (size_t)(colon - host_port)) >= sizeof(host)) {
		snprintf(err, len, "MetricsListen: expected HOST:PORT");
		return -1;
	}
	memcpy(host, host_port, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[') {	/* [::1]:9100 */
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0) {
		snprintf(err, len, "MetricsListen %s: %s", host_port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
		snprintf(err, len, "MetricsListen %s: %s", host_port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	pthread_t tid;
	if (pthread_create(&tid, NULL, metrics_serve, (void *)(long)fd) != 0) {
		snprintf(err, len, "MetricsListen: cannot start thread");
		close(fd);
		return -1;
	}
	pthread_detach(tid);
	return 0;
}
