/*
 * NAME
 *	metrics - counters, served as Prometheus text
 * SYNOPSIS
 *	void metrics_inc(enum metric m);
 *	void metrics_class_deferral(const char *cls);
 *	size_t metrics_format(char *buf, size_t len);
 *	int metrics_listen(const char *host_port, char *err, size_t len);
 * DESCRIPTION
 *	Counters are process-wide atomics: incrementing one on the hot path
 *	is one locked add, no lock and no allocation. metrics_listen starts a
 *	thread answering every HTTP request on HOST:PORT with the counters
 *	(GET /metrics); it is meant for loopback or a monitoring network. It
 *	returns 0, or -1 with a reason in err. The thread serves for as long
 *	as the process runs: a slow or silent client holds up nobody else,
 *	and after accept() fails (no descriptor left) it tries again.
 *
 *	Every counter is a Prometheus counter named bulkmilter_..._total.
 *	Adjacent counters of one name are one family told apart by a label
 *	(bulkmilter_deferrals_total{cause="rate"}): its HELP and TYPE are
 *	written once.
 *
 *	metrics_class_deferral counts a 4xx answer for policy class cls
 *	(NULL: no class) in bulkmilter_class_deferrals_total{class="NAME"},
 *	served after the fixed counters. The first 256 class names get a
 *	member each; beyond them, without a class, and for a class named
 *	"other", the count goes to class="other", which is always served.
 *	Finding a name already counted takes no lock; adding one takes a
 *	mutex the serving thread never takes.
 * DIAGNOSTICS
 *	An accept() failure is logged once when it starts, and once when
 *	connections are accepted again.
 */
#ifndef BM_METRICS_H
#define BM_METRICS_H

#include <stddef.h>

enum metric {
	METRIC_ACCEPTED, METRIC_TEMPFAILED, METRIC_REJECTED, METRIC_HELD,
	METRIC_OVER_LIMIT, METRIC_STORE_FAILURES, METRIC_SIGNED, METRIC_NOT_SIGNED,
	METRIC_BULK, METRIC_NONCOMPLIANT, METRIC_SPF_CHECKS, METRIC_SPF_FAIL,
	METRIC_SPF_TEMPERROR, METRIC_RELOADS, METRIC_RELOADS_REFUSED,
	METRIC_SUSPENDED, METRIC_SUSPENSIONS, METRIC_RULE_TRIPS,
	METRIC_EVENTS_SENT, METRIC_EVENTS_FAILED, METRIC_EVENTS_DROPPED,
	METRIC_SUPPRESSED, METRIC_REPORTS_READ, METRIC_REPORTS_UNVERIFIED, METRIC_REPORT_SUPPRESSIONS,
	/* one family, bulkmilter_deferrals_total{cause=...}: keep them together */
	METRIC_DEFERRED_RATE, METRIC_DEFERRED_SPF, METRIC_DEFERRED_SUSPENDED, METRIC_DEFERRED_OTHER,
	METRIC_COUNT
};

void metrics_inc(enum metric m);
void metrics_class_deferral(const char *cls);
/* Writes the Prometheus text; returns its length. */
size_t metrics_format(char *buf, size_t len);
int metrics_listen(const char *host_port, char *err, size_t len);

#endif
