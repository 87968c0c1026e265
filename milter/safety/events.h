/*
 * NAME
 *	events - account-safety events POSTed to NotifyURL, off the mail path
 * SYNOPSIS
 *	int events_start(char *err, size_t errlen);
 *	void events_set_url(const char *url);
 *	bool events_post(const struct event *e);
 *	void events_flush(long wait_ms);
 *	size_t events_pending(void);
 *	void events_stop(void);
 *	size_t events_format(const struct event *e, char *buf, size_t len);
 * DESCRIPTION
 *	An event (threshold, suspended, released, rule-tripped) is one JSON
 *	object POSTed to NotifyURL (SPEC.md, "Account safety"):
 *	{"event":..,"account":..,"class":..,"host":..,"time":RFC 3339, and
 *	what applies of "rate","used","limit","threshold","resets","rule",
 *	"reason","until"}.
 *
 *	events_post formats the event and puts it in a bounded in-memory
 *	queue (EVENTS_QUEUE_MAX); it never blocks on the network and takes
 *	one short lock, so a mail-path caller is never delayed. One thread
 *	of its own (events_start) sends the queue in order with libcurl:
 *	a POST that fails (no answer, a timeout of EVENTS_POST_TIMEOUT_MS, a
 *	status other than 2xx) is tried again after a back-off
 *	(EVENTS_BACKOFF_MIN_MS, doubling up to EVENTS_BACKOFF_MAX_MS) until
 *	it is delivered; the events behind it wait, and when the queue is
 *	full a new event is dropped (counted, logged). Without NotifyURL
 *	nothing is queued. events_set_url takes the URL of each installed
 *	configuration (NULL: none); an event already queued goes to the URL
 *	current when it is sent.
 *
 *	events_flush waits up to wait_ms for the queue to empty (for
 *	bulkmilterctl, which exits right after); events_pending says how
 *	many are still queued (or being sent); events_stop ends the
 *	thread (when one runs) and frees what is left. events_format writes the JSON of e
 *	into buf and returns its length (0: it did not fit).
 * DIAGNOSTICS
 *	events_start returns 0, or -1 with a reason in err (libcurl would
 *	not initialize, no thread). Metrics: bulkmilter_events_sent_total,
 *	bulkmilter_events_failed_total (POSTs that failed; each is retried),
 *	bulkmilter_events_dropped_total. Log lines: a failure of the
 *	receiver once when it starts ("events: POST to NotifyURL failed:
 *	REASON; retrying") and once when it recovers; the first drop of a
 *	run of drops (warning, naming the event and account), and how many
 *	more there were once an event is queued again. The URL itself is
 *	never logged: its userinfo or query may hold a token.
 */
#ifndef BM_EVENTS_H
#define BM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

/* Events waiting to be sent; a burst beyond this is dropped, not kept. */
#define EVENTS_QUEUE_MAX 1024
/* One POST, connection included: a hanging receiver holds a slot no longer. */
#define EVENTS_POST_TIMEOUT_MS 2000
/* Wait before retrying a failed POST: first, then doubled up to the cap. */
#define EVENTS_BACKOFF_MIN_MS 200
#define EVENTS_BACKOFF_MAX_MS 5000
/* The JSON of one event. */
#define EVENTS_BODY_MAX 2048

struct event {
	const char *event;		/* "threshold", "suspended", "released", "rule-tripped" */
	const char *account;
	const char *cls;		/* class name; NULL or "": none */
	long long time_ms;		/* 0: now */
	const char *rate;		/* threshold: "10/1h"; NULL: absent */
	const char *kind;		/* threshold: "messages" or "recipients" */
	long long used, limit;		/* threshold; limit 0: absent */
	unsigned threshold_pct;		/* threshold: 50 for 50% */
	long long resets_ms;		/* threshold: when the rate is full again; 0: absent */
	const char *rule;		/* rule-tripped, suspended by a rule: "distinct-ips > 3/1h" */
	long long figure;		/* rule-tripped: the count that tripped it */
	const char *reason;		/* suspended: the reason; NULL: absent */
	const char *by;			/* suspended, released: "ctl" or the rule */
	long long until_ms;		/* suspended: until when; 0: absent */
};

int events_start(char *err, size_t errlen);
void events_set_url(const char *url);
bool events_post(const struct event *e);
void events_flush(long wait_ms);
size_t events_pending(void);
void events_stop(void);
size_t events_format(const struct event *e, char *buf, size_t len);

#endif
