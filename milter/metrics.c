/*
 * metrics - counters and a minimal HTTP endpoint for Prometheus.
 *
 * The endpoint answers each connection with the whole text and closes it;
 * it reads at most one request buffer and never parses further, so a
 * client cannot make it allocate or block other than one accept at a
 * time (a read timeout bounds a silent client).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define METRICS_TEXT_MAX 8192

static unsigned long metric_values[METRIC_COUNT];

static const struct {
	const char *name;
	const char *help;
} metric_info[METRIC_COUNT] = {
	[METRIC_ACCEPTED] = { "bulkmilter_messages_accepted_total", "Messages accepted" },
	[METRIC_TEMPFAILED] = { "bulkmilter_messages_tempfailed_total", "Messages or transactions answered 4xx" },
	[METRIC_REJECTED] = { "bulkmilter_messages_rejected_total", "Messages or transactions answered 5xx" },
	[METRIC_HELD] = { "bulkmilter_messages_held_total", "Messages put in the hold queue" },
	[METRIC_OVER_LIMIT] = { "bulkmilter_over_limit_total", "Events over a rate limit" },
	[METRIC_STORE_FAILURES] = { "bulkmilter_store_failures_total", "Rate-limit checks Redis did not answer" },
	[METRIC_SIGNED] = { "bulkmilter_messages_signed_total", "Outbound messages DKIM-signed" },
	[METRIC_NOT_SIGNED] = { "bulkmilter_messages_not_signed_total", "Outbound messages not signed" },
	[METRIC_BULK] = { "bulkmilter_messages_bulk_total", "Messages classified bulk" },
	[METRIC_NONCOMPLIANT] = { "bulkmilter_bulk_noncompliant_total", "Bulk messages failing bulk-require checks" },
	[METRIC_SPF_CHECKS] = { "bulkmilter_spf_checks_total", "Inbound SPF evaluations" },
	[METRIC_SPF_FAIL] = { "bulkmilter_spf_fail_total", "Inbound SPF results fail" },
	[METRIC_SPF_TEMPERROR] = { "bulkmilter_spf_temperror_total", "Inbound SPF results temperror" },
	[METRIC_RELOADS] = { "bulkmilter_reloads_total", "Configuration reloads installed" },
	[METRIC_RELOADS_REFUSED] = { "bulkmilter_reloads_refused_total", "Configuration reloads refused" },
};

void metrics_inc(enum metric m)
{
	__atomic_add_fetch(&metric_values[m], 1, __ATOMIC_RELAXED);
}

size_t metrics_format(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < METRIC_COUNT; i++) {
		int n = snprintf(buf + used, len - used, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n",
				 metric_info[i].name, metric_info[i].help, metric_info[i].name,
				 metric_info[i].name, __atomic_load_n(&metric_values[i], __ATOMIC_RELAXED));
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return used;
}

static void *metrics_serve(void *arg)
{
	int lfd = (int)(long)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			log_error("metrics: accept: %s", strerror(errno));
			return NULL;
		}
		struct timeval tv = { 2, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		char req[1024], body[METRICS_TEXT_MAX], head[128];
		ssize_t r = read(fd, req, sizeof(req));
		(void)r;
		size_t n = metrics_format(body, sizeof(body));
		int h = snprintf(head, sizeof(head),
				 "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n", n);
		if (send(fd, head, (size_t)h, MSG_NOSIGNAL) == h)
			(void)!send(fd, body, n, MSG_NOSIGNAL);
		close(fd);
	}
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
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
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
