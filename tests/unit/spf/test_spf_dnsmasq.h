/*
 * NAME
 *	test_spf_dnsmasq - a private dnsmasq serving the SPF tests' zone
 * SYNOPSIS
 *	int spf_dnsmasq_start(struct spf_dnsmasq *d);
 *	int spf_dnsmasq_start_or_skip(struct spf_dnsmasq *d);
 *	void spf_dnsmasq_stop(struct spf_dnsmasq *d);
 *	int spf_dnsmasq_count(const struct spf_dnsmasq *d, const char *type,
 *		const char *name);
 *	long long spf_test_now_ms(void);
 * DESCRIPTION
 *	spf_dnsmasq_start runs dnsmasq on 127.0.0.1 at a port below 32768
 *	derived from our pid, answering the zone in test_spf_dnsmasq.c
 *	(names under .test; anything else is REFUSED) with TTL 300 and
 *	logging every query to a file. Names under slow.test are forwarded
 *	to d->blackhole_port, a UDP socket of ours that never answers, so
 *	lookups there time out. It returns 0, 77 when dnsmasq is not
 *	installed (the test should skip), or -1. spf_dnsmasq_start_or_skip,
 *	for a test group's setup, returns 0 or -1, and without dnsmasq says
 *	so and exits 77 (automake's skip). spf_dnsmasq_stop kills it by
 *	pid, closes the black hole and removes the files; it may be called
 *	twice. spf_dnsmasq_count counts log lines "query[TYPE] NAME from".
 */
#ifndef TEST_SPF_DNSMASQ_H
#define TEST_SPF_DNSMASQ_H

#include <sys/types.h>

#define SPF_DNSMASQ_BIN "/usr/sbin/dnsmasq"

struct spf_dnsmasq {
	pid_t pid;			/* 0 when not running */
	int port;			/* DNS on 127.0.0.1 */
	int blackhole_fd;
	int blackhole_port;		/* UDP on 127.0.0.1, never answers */
	char dir[64];
	char log[96];
};

int spf_dnsmasq_start(struct spf_dnsmasq *d);
int spf_dnsmasq_start_or_skip(struct spf_dnsmasq *d);
void spf_dnsmasq_stop(struct spf_dnsmasq *d);
int spf_dnsmasq_count(const struct spf_dnsmasq *d, const char *type, const char *name);
long long spf_test_now_ms(void);

#endif
