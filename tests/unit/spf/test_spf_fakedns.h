/*
 * NAME
 *	test_spf_fakedns - a scripted DNS server for the DNS and SPF budget
 *	tests: the answers dnsmasq will not give
 * SYNOPSIS
 *	void fake_dns_start(struct fake_dns *f);
 *	void fake_dns_stop(struct fake_dns *f);
 * DESCRIPTION
 *	fake_dns_start runs a thread answering UDP questions on a loopback
 *	port the kernel picks (f->port), for these names only:
 *
 *	FAKE_SPOOF	spoof.test: an answer with a wrong ID, then one
 *			to a wrong question, then "v=spf1 -all" (TTL 300)
 *	FAKE_NEGATIVE	negative.test: NXDOMAIN, SOA TTL 600, minimum 120
 *	FAKE_NOSOA	nosoa.test: NODATA without an SOA
 *	FAKE_GARBAGE	garbage.test: claims an answer that is not there
 *	FAKE_SERVFAIL	servfail.test: SERVFAIL
 *	FAKE_CNAME	cname.test: a CNAME (TTL 50) to "v=spf1 ?all" (TTL 100)
 *
 *	f->queries[FAKE_...] counts the questions for each. Other names get
 *	no answer. fake_dns_stop stops the thread and closes the socket.
 */
#ifndef TEST_SPF_FAKEDNS_H
#define TEST_SPF_FAKEDNS_H

#include <pthread.h>

enum { FAKE_SPOOF, FAKE_NEGATIVE, FAKE_NOSOA, FAKE_GARBAGE, FAKE_SERVFAIL, FAKE_CNAME };

struct fake_dns {
	int fd, port;
	pthread_t thread;
	int queries[8];			/* per scripted name, FAKE_* */
};

void fake_dns_start(struct fake_dns *f);
void fake_dns_stop(struct fake_dns *f);

#endif
