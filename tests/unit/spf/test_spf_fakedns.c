/*
 * test_spf_fakedns - a scripted DNS server on a loopback UDP port, run
 * by a thread, for answers dnsmasq will not give: spoofed, malformed,
 * with an SOA (test_spf_fakedns.h).
 */
#include "unit.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "test_spf_fakedns.h"

static const char *const fake_names[] = { "spoof.test", "negative.test", "nosoa.test",
					  "garbage.test", "servfail.test", "cname.test" };

static size_t put_rr_header(unsigned char *p, unsigned type, unsigned ttl, unsigned rdlen)
{
	p[0] = 0xc0;			/* name: pointer to the question's */
	p[1] = 12;
	p[2] = (unsigned char)(type >> 8), p[3] = (unsigned char)type;
	p[4] = 0, p[5] = 1;		/* IN */
	p[6] = (unsigned char)(ttl >> 24), p[7] = (unsigned char)(ttl >> 16);
	p[8] = (unsigned char)(ttl >> 8), p[9] = (unsigned char)ttl;
	p[10] = (unsigned char)(rdlen >> 8), p[11] = (unsigned char)rdlen;
	return 12;
}

static size_t put_txt(unsigned char *p, unsigned ttl, const char *text)
{
	size_t l = strlen(text), n = put_rr_header(p, ns_t_txt, ttl, (unsigned)l + 1);
	p[n++] = (unsigned char)l;
	memcpy(p + n, text, l);
	return n + l;
}

static void *fake_dns_run(void *arg)
{
	struct fake_dns *f = arg;
	unsigned char q[512], a[1024];
	struct sockaddr_storage peer;

	for (;;) {
		socklen_t plen = sizeof(peer);
		ssize_t n = recvfrom(f->fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &plen);
		size_t qend = 12, len;
		char name[256] = "";
		int which = -1;

		if (n <= 12)
			return NULL;	/* closed, or the stop packet */
		/* The question's name, as text, and where the question ends. */
		while (qend < (size_t)n && q[qend] != 0) {
			strncat(name, (char *)q + qend + 1, q[qend]);
			qend += q[qend] + 1;
			if (q[qend] != 0)
				strcat(name, ".");
		}
		qend += 5;
		for (size_t i = 0; i < sizeof(fake_names) / sizeof(fake_names[0]); i++)
			if (strcmp(name, fake_names[i]) == 0)
				which = (int)i;
		if (which < 0)
			continue;
		f->queries[which]++;
		memcpy(a, q, qend);
		a[2] = 0x81, a[3] = 0x80;			/* QR RD RA, NOERROR */
		a[6] = a[7] = a[8] = a[9] = a[10] = a[11] = 0;	/* no AN/NS/AR (no OPT back) */
		len = qend;
		switch (which) {
		case 0:	/* spoof.test: wrong ID first, then a wrong question, then the truth */
			a[0] ^= 0xff;
			len += put_txt(a + len, 300, "v=spf1 +all");
			a[7] = 1;
			sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
			a[0] ^= 0xff;
			a[qend - 3] ^= 0x01;			/* QTYPE TXT -> other */
			sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
			a[qend - 3] ^= 0x01;
			len = qend;
			len += put_txt(a + len, 300, "v=spf1 -all");
			break;
		case 1:	/* negative.test: NXDOMAIN, SOA TTL 600, minimum 120 */
			a[3] = 0x83;
			a[9] = 1;
			len += put_rr_header(a + len, ns_t_soa, 600, 22);
			memset(a + len, 0, 22);
			a[len + 20] = 0, a[len + 21] = 120;	/* minimum, last 4 bytes */
			len += 22;
			break;
		case 2:	/* nosoa.test: NODATA without SOA */
			break;
		case 3:	/* garbage.test: claims an answer that is not there */
			a[7] = 1;
			a[len++] = 0xc0;
			break;
		case 4:	/* servfail.test */
			a[3] = 0x82;
			break;
		case 5:	/* cname.test: CNAME (TTL 50) to a TXT (TTL 100) */
			a[7] = 2;
			len += put_rr_header(a + len, ns_t_cname, 50, 2);
			a[len++] = 0xc0, a[len++] = 12;
			len += put_txt(a + len, 100, "v=spf1 ?all");
			break;
		}
		sendto(f->fd, a, len, 0, (struct sockaddr *)&peer, plen);
	}
}

void fake_dns_start(struct fake_dns *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	/* Port 0: the kernel picks a free one, so it cannot collide. */
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_dns_run, f), 0);
}

void fake_dns_stop(struct fake_dns *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sendto(fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	pthread_join(f->thread, NULL);
	close(f->fd);
}
