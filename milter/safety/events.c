/*
 * events - the queue of account-safety events and the thread that POSTs
 * them to NotifyURL with libcurl.
 *
 * What it does: formats events as JSON, keeps them in a fixed ring, and
 * sends them one at a time, in order, from one thread.
 * What it does not: decide when an event happens (the store script
 * deduplicates thresholds across the fleet; safety.c and bulkmilterctl
 * post), or persist anything: a restart loses the queue (the state the
 * events describe lives in Redis; an event is a notice, not a record).
 *
 * Decisions:
 * - One sender thread and FIFO order: a receiver sees "suspended"
 *   before the "released" of the same account. The head of the queue is
 *   retried until delivered; while it waits, new events queue behind
 *   it and, once the ring is full, are dropped. Dropping the newest
 *   keeps what is queued in order and costs the mail path nothing.
 * - libcurl (the OpenSSL flavour, the TLS library the rest of
 *   bulkmilter links) rather than hand-written HTTP: redirects are not
 *   followed, no signal is used for timeouts (CURLOPT_NOSIGNAL: we are
 *   threaded), and any 2xx is success.
 * - A full queue logs its first drop and then, once there is room
 *   again, how many followed: an outage under load must not turn into
 *   a log line per message.
 * - The body is copied into the ring at post time: the caller's strings
 *   (a transaction's account) need not outlive the call.
 */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "metrics.h"

struct events_queue {
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* an event arrived, or stop */
	pthread_cond_t idle;		/* the queue became empty */
	char *body[EVENTS_QUEUE_MAX];
	size_t head, count;
	bool sending;			/* the thread holds the head outside the lock */
	char *url;			/* NULL: no NotifyURL */
	bool started, stop;
	bool dropping;			/* the last event was dropped: log no more */
	unsigned long dropped_quiet;	/* dropped since, not logged one by one */
	pthread_t thread;
	char host[256];
};

static struct events_queue q = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
};

/* ---- JSON ------------------------------------------------------------- */

struct jbuf {
	char *p;
	size_t len, used;
	bool full;
};

static void j_raw(struct jbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->full || b->used + n >= b->len) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->used, s, n + 1);
	b->used += n;
}

static void j_str(struct jbuf *b, const char *s)
{
	char esc[8];

	j_raw(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			snprintf(esc, sizeof(esc), "\\%c", *p);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
		} else {
			esc[0] = (char)*p;
			esc[1] = '\0';
		}
		j_raw(b, esc);
	}
	j_raw(b, "\"");
}

static void j_field_str(struct jbuf *b, const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	j_raw(b, ",");
	j_str(b, name);
	j_raw(b, ":");
	j_str(b, value);
}

static void j_field_num(struct jbuf *b, const char *name, long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	j_raw(b, ",");
	j_str(b, name);
	j_raw(b, ":");
	j_raw(b, num);
}

/* RFC 3339 in UTC, to the second. */
static void rfc3339(long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_init(void)
{
	if (gethostname(q.host, sizeof(q.host) - 1) != 0 || q.host[0] == '\0')
		snprintf(q.host, sizeof(q.host), "localhost");
}

size_t events_format(const struct event *e, char *buf, size_t len)
{
	struct jbuf b = { buf, len, 0, false };
	char when[40];

	pthread_once(&host_once, host_init);
	j_raw(&b, "{\"event\":");
	j_str(&b, e->event);
	j_field_str(&b, "account", e->account);
	j_field_str(&b, "class", e->cls);
	j_field_str(&b, "host", q.host);
	rfc3339(e->time_ms ? e->time_ms : now_ms(), when, sizeof(when));
	j_field_str(&b, "time", when);
	j_field_str(&b, "rate", e->rate);
	j_field_str(&b, "kind", e->kind);
	if (e->limit > 0) {
		j_field_num(&b, "used", e->used);
		j_field_num(&b, "limit", e->limit);
	}
	if (e->threshold_pct > 0) {
		char pct[16];
		snprintf(pct, sizeof(pct), "%u%%", e->threshold_pct);
		j_field_str(&b, "threshold", pct);
	}
	if (e->resets_ms > 0) {
		rfc3339(e->resets_ms, when, sizeof(when));
		j_field_str(&b, "resets", when);
	}
	j_field_str(&b, "rule", e->rule);
	if (e->rule && strcmp(e->event, "rule-tripped") == 0)
		j_field_num(&b, "figure", e->figure);
	j_field_str(&b, "reason", e->reason);
	j_field_str(&b, "by", e->by);
	if (e->until_ms > 0) {
		rfc3339(e->until_ms, when, sizeof(when));
		j_field_str(&b, "until", when);
	}
	j_raw(&b, "}");
	return b.full ? 0 : b.used;
}

/* ---- the queue ------------------------------------------------------ */

bool events_post(const struct event *e)
{
	char body[EVENTS_BODY_MAX];
	bool queued = false, first_drop = false;
	unsigned long quiet = 0;

	if (events_format(e, body, sizeof(body)) == 0) {
		log_warning("events: %s event for %s too large, dropped", e->event, e->account);
		metrics_inc(METRIC_EVENTS_DROPPED);
		return false;
	}
	pthread_mutex_lock(&q.lock);
	if (q.url == NULL) {
		pthread_mutex_unlock(&q.lock);
		return false;
	}
	if (q.count < EVENTS_QUEUE_MAX) {
		char *copy = strdup(body);
		if (copy != NULL) {
			q.body[(q.head + q.count) % EVENTS_QUEUE_MAX] = copy;
			q.count++;
			queued = true;
			pthread_cond_signal(&q.wake);
		}
	}
	if (queued && q.dropping) {
		quiet = q.dropped_quiet;
		q.dropping = false;
		q.dropped_quiet = 0;
	} else if (!queued) {
		first_drop = !q.dropping;
		q.dropped_quiet += !first_drop;
		q.dropping = true;
	}
	pthread_mutex_unlock(&q.lock);
	if (!queued)
		metrics_inc(METRIC_EVENTS_DROPPED);
	if (first_drop)
		log_warning("events: queue full (%d), %s event for %s dropped", EVENTS_QUEUE_MAX,
			    e->event, e->account);
	if (quiet)
		log_warning("events: %lu more events dropped while the queue was full", quiet);
	return queued;
}

void events_set_url(const char *url)
{
	char *copy = url && *url ? strdup(url) : NULL;

	pthread_mutex_lock(&q.lock);
	free(q.url);
	q.url = copy;
	pthread_cond_signal(&q.wake);	/* events kept while there was no URL go now */
	pthread_mutex_unlock(&q.lock);
}

/* ---- the sender ----------------------------------------------------- */

static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * n;
}

/* One POST; 0 on a 2xx answer, else -1 with why. */
static int post_one(CURL *curl, const char *url, const char *body, char *why, size_t len)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	long status = 0;

	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)EVENTS_POST_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	CURLcode rc = curl_easy_perform(curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		snprintf(why, len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		snprintf(why, len, "HTTP status %ld", status);
		return -1;
	}
	return 0;
}

/* Waits on the wake condition until deadline (CLOCK_REALTIME ms) or stop. */
static void wait_until(long long deadline)
{
	struct timespec ts = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000 };

	while (!q.stop && now_ms() < deadline)
		if (pthread_cond_timedwait(&q.wake, &q.lock, &ts) == ETIMEDOUT)
			break;
}

static void *sender(void *arg)
{
	CURL *curl = arg;
	long backoff = 0;
	bool failing = false;
	char why[CURL_ERROR_SIZE + 32];

	pthread_mutex_lock(&q.lock);
	for (;;) {
		while (!q.stop && (q.count == 0 || q.url == NULL))
			pthread_cond_wait(&q.wake, &q.lock);
		if (q.stop)
			break;
		char *body = q.body[q.head];
		char *url = strdup(q.url);
		q.sending = true;
		pthread_mutex_unlock(&q.lock);

		int rc = url ? post_one(curl, url, body, why, sizeof(why)) : -1;
		if (url == NULL)
			snprintf(why, sizeof(why), "out of memory");
		free(url);

		pthread_mutex_lock(&q.lock);
		q.sending = false;
		if (rc == 0) {
			metrics_inc(METRIC_EVENTS_SENT);
			free(body);
			q.head = (q.head + 1) % EVENTS_QUEUE_MAX;
			q.count--;
			if (q.count == 0)
				pthread_cond_broadcast(&q.idle);
			if (failing)
				log_info("events: NotifyURL answers again");
			failing = false;
			backoff = 0;
			continue;
		}
		metrics_inc(METRIC_EVENTS_FAILED);
		if (!failing)
			log_warning("events: POST to NotifyURL failed: %s; retrying", why);
		failing = true;
		backoff = backoff ? backoff * 2 : EVENTS_BACKOFF_MIN_MS;
		if (backoff > EVENTS_BACKOFF_MAX_MS)
			backoff = EVENTS_BACKOFF_MAX_MS;
		wait_until(now_ms() + backoff);
	}
	pthread_mutex_unlock(&q.lock);
	curl_easy_cleanup(curl);
	return NULL;
}

int events_start(char *err, size_t errlen)
{
	if (q.started)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "events: libcurl would not initialize");
		return -1;
	}
	CURL *curl = curl_easy_init();
	if (curl == NULL) {
		snprintf(err, errlen, "events: libcurl would not initialize");
		return -1;
	}
	q.stop = false;
	int rc = pthread_create(&q.thread, NULL, sender, curl);
	if (rc != 0) {
		curl_easy_cleanup(curl);
		snprintf(err, errlen, "events: no thread: %s", strerror(rc));
		return -1;
	}
	q.started = true;
	return 0;
}

void events_flush(long wait_ms)
{
	long long deadline = now_ms() + wait_ms;
	struct timespec ts = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000 };

	pthread_mutex_lock(&q.lock);
	while (q.started && (q.count > 0 || q.sending) && now_ms() < deadline)
		if (pthread_cond_timedwait(&q.idle, &q.lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&q.lock);
}

size_t events_pending(void)
{
	pthread_mutex_lock(&q.lock);
	size_t n = q.count;
	pthread_mutex_unlock(&q.lock);
	return n;
}

void events_stop(void)
{
	bool started = q.started;

	if (started) {
		pthread_mutex_lock(&q.lock);
		q.stop = true;
		pthread_cond_broadcast(&q.wake);
		pthread_mutex_unlock(&q.lock);
		pthread_join(q.thread, NULL);
		q.started = false;
	}
	for (; q.count > 0; q.count--) {
		free(q.body[q.head]);
		q.head = (q.head + 1) % EVENTS_QUEUE_MAX;
	}
	free(q.url);
	q.url = NULL;
	if (started)
		curl_global_cleanup();
}
