/*
 * test_spf_dnsmasq - a private dnsmasq for the SPF and DNS tests.
 *
 * The zone below is the whole world these tests see: one domain per SPF
 * outcome, records that need A, AAAA, MX and TCP, and DMARC records.
 * dnsmasq is started directly (fork/exec, no shell) and killed by pid.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_spf_dnsmasq.h"

/* Ports are derived from the pid in [PORT_LOW, PORT_HIGH), pairwise. */
#define PORT_LOW 12000
#define PORT_HIGH 30000
#define PORT_TRIES 20
#define START_WAIT_MS 5000
/* dnsmasq writes its log from its main loop: give it a moment. */
#define LOG_SETTLE_US 300000

/* A filler TXT string; seven of them overflow a 1232-byte UDP answer. */
#define FILLER "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz" \
	"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz" \
	"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"

/* Nine DNS terms; with includes, chain.test needs about 200 lookups. */
#define NINE_A " a:h1.test a:h2.test a:h3.test a:h4.test a:h5.test a:h6.test a:h7.test" \
	" a:h8.test a:h9.test"
#define CHAIN(n) "--txt-record=c" #n ".chain.test,v=spf1 include:d" #n ".chain.test" NINE_A " -all", \
	"--txt-record=d" #n ".chain.test,v=spf1" NINE_A " -all"

static const char *const zone[] = {
	"--txt-record=pass.test,v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/64 -all",
	"--txt-record=fail.test,v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:ffff::/48 -all",
	"--txt-record=softfail.test,v=spf1 ~all",
	"--txt-record=neutral.test,v=spf1 ?all",
	"--txt-record=nospf.test,just some text",
	"--txt-record=syntax.test,v=spf1 ip4:192.0.2.0/24 bogus:mechanism -all",
	"--txt-record=toomany.test,v=spf1 a:h1.test a:h2.test a:h3.test a:h4.test "
	"a:h5.test a:h6.test a:h7.test a:h8.test a:h9.test a:h10.test a:h11.test -all",
	"--txt-record=chain.test,v=spf1 include:c1.chain.test include:c2.chain.test "
	"include:c3.chain.test include:c4.chain.test include:c5.chain.test include:c6.chain.test "
	"include:c7.chain.test include:c8.chain.test include:c9.chain.test include:c10.chain.test -all",
	CHAIN(1), CHAIN(2), CHAIN(3), CHAIN(4), CHAIN(5),
	CHAIN(6), CHAIN(7), CHAIN(8), CHAIN(9), CHAIN(10),
	/* The hosts of those a: terms exist, so none of them is a void lookup. */
	"--host-record=h1.test,198.51.100.1", "--host-record=h2.test,198.51.100.2",
	"--host-record=h3.test,198.51.100.3", "--host-record=h4.test,198.51.100.4",
	"--host-record=h5.test,198.51.100.5", "--host-record=h6.test,198.51.100.6",
	"--host-record=h7.test,198.51.100.7", "--host-record=h8.test,198.51.100.8",
	"--host-record=h9.test,198.51.100.9", "--host-record=h10.test,198.51.100.10",
	"--host-record=h11.test,198.51.100.11",
	"--txt-record=a.test,v=spf1 a:host.a.test -all",
	/* Void lookups (RFC 7208 4.6.4): two are allowed, the third is not. */
	"--txt-record=void2.test,v=spf1 a:nx1.void.test mx:nx2.void.test ip4:192.0.2.0/24 -all",
	"--txt-record=void3.test,v=spf1 a:nx1.void.test mx:nx2.void.test exists:nx3.void.test "
	"ip4:192.0.2.0/24 -all",
	/* Three IPv4-only exchangers: no AAAA for an IPv6 client, not void lookups. */
	"--txt-record=v4mx.test,v=spf1 mx ip6:2001:db8::/64 -all",
	"--mx-host=v4mx.test,mx1.v4mx.test,10", "--mx-host=v4mx.test,mx2.v4mx.test,20",
	"--mx-host=v4mx.test,mx3.v4mx.test,30",
	"--host-record=mx1.v4mx.test,198.51.100.21", "--host-record=mx2.v4mx.test,198.51.100.22",
	"--host-record=mx3.v4mx.test,198.51.100.23",
	"--host-record=host.a.test,192.0.2.10,2001:db8::25",
	"--txt-record=mx.test,v=spf1 mx -all",
	"--mx-host=mx.test,mail.mx.test,10",
	"--host-record=mail.mx.test,192.0.2.10,2001:db8::25",
	"--txt-record=include.test,v=spf1 include:pass.test -all",
	"--txt-record=helo.test,v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 -all",
	"--txt-record=burst.test,v=spf1 ip4:192.0.2.0/24 -all",
	"--txt-record=split.test,v=spf1 ip4:192.0.2.10 ,-all",
	"--txt-record=big.test,v=spf1 ip4:192.0.2.10 -all",
	"--txt-record=big.test,a" FILLER, "--txt-record=big.test,b" FILLER,
	"--txt-record=big.test,c" FILLER, "--txt-record=big.test,d" FILLER,
	"--txt-record=big.test,e" FILLER, "--txt-record=big.test,f" FILLER,
	"--txt-record=big.test,g" FILLER,
	"--txt-record=_dmarc.dmarc.test,v=DMARC1; p=reject",
	"--host-record=sub.dmarc.test,192.0.2.1",
	"--txt-record=_dmarc.notdmarc.test,v=spf1 -all",
	"--txt-record=_dmarc.two.test,v=DMARC1; p=none",
	"--txt-record=_dmarc.two.test,v=DMARC1; p=reject",
	"--txt-record=_dmarc.spaced.test,v = DMARC1 ;p=none",
	"--txt-record=_dmarc.lower.test,v=dmarc1; p=none",
	/* The egress cache: a 1 s TTL deep in an evaluation, and records using the sender. */
	"--txt-record=shortttl.test,v=spf1 a:h.shortttl.test -all",
	"--host-record=h.shortttl.test,192.0.2.10,1",
	"--txt-record=local.test,v=spf1 exists:%{l}._spf.local.test -all",
	"--host-record=alice._spf.local.test,127.0.0.2",
	"--txt-record=local2.test,v=spf1 exists:%{Lr-}._spf.local.test -all",
	"--txt-record=viainclude.test,v=spf1 include:local.test -all",
	"--txt-record=helomacro.test,v=spf1 a:%{h} -all",
	"--txt-record=sender.test,v=spf1 ip4:192.0.2.0/24 exists:%{s}.sender.test -all",
	"--txt-record=literal.test,v=spf1 ip4:192.0.2.0/24 exists:100%%{l}.literal.test -all",
};

long long spf_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int open_blackhole(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static bool tcp_answers(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Runs dnsmasq on d->port; 0 once it accepts connections, -1 if it exited. */
static int run_dnsmasq(struct spf_dnsmasq *d)
{
	char port[32], logfac[128], slow[64];
	const char *argv[128];
	int argc = 0;
	long long until;

	snprintf(port, sizeof(port), "--port=%d", d->port);
	snprintf(logfac, sizeof(logfac), "--log-facility=%s", d->log);
	snprintf(slow, sizeof(slow), "--server=/slow.test/127.0.0.1#%d", d->blackhole_port);
	argv[argc++] = SPF_DNSMASQ_BIN;
	argv[argc++] = "--no-daemon";
	argv[argc++] = "--conf-file=/dev/null";
	argv[argc++] = "--no-resolv";
	argv[argc++] = "--no-hosts";
	argv[argc++] = "--listen-address=127.0.0.1";
	argv[argc++] = "--bind-interfaces";
	argv[argc++] = "--local=/test/";
	argv[argc++] = "--local-ttl=300";
	argv[argc++] = "--log-queries";
	argv[argc++] = "--pid-file=";
	argv[argc++] = port;
	argv[argc++] = logfac;
	argv[argc++] = slow;
	if (geteuid() == 0) {
		argv[argc++] = "-u";
		argv[argc++] = "root";
	}
	for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++)
		argv[argc++] = zone[i];
	argv[argc] = NULL;

	d->pid = fork();
	if (d->pid < 0) {
		d->pid = 0;
		return -1;
	}
	if (d->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execv(SPF_DNSMASQ_BIN, (char *const *)argv);
		_exit(127);
	}
	until = spf_test_now_ms() + START_WAIT_MS;
	while (spf_test_now_ms() < until) {
		int status;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return -1;
		}
		if (tcp_answers(d->port))
			return 0;
		usleep(20000);
	}
	spf_dnsmasq_stop(d);
	return -1;
}

int spf_dnsmasq_start(struct spf_dnsmasq *d)
{
	int base = PORT_LOW + (int)(getpid() % ((PORT_HIGH - PORT_LOW) / 2)) * 2;

	memset(d, 0, sizeof(*d));
	d->blackhole_fd = -1;
	if (access(SPF_DNSMASQ_BIN, X_OK) != 0)
		return 77;
	snprintf(d->dir, sizeof(d->dir), "/tmp/bm-spf-test.XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		return -1;
	snprintf(d->log, sizeof(d->log), "%s/dnsmasq.log", d->dir);
	for (int i = 0; i < PORT_TRIES; i++) {
		int p = PORT_LOW + (base - PORT_LOW + 2 * i) % (PORT_HIGH - PORT_LOW);
		d->blackhole_fd = open_blackhole(p + 1);
		if (d->blackhole_fd < 0)
			continue;
		d->blackhole_port = p + 1;
		d->port = p;
		if (run_dnsmasq(d) == 0)
			return 0;
		close(d->blackhole_fd);
		d->blackhole_fd = -1;
	}
	spf_dnsmasq_stop(d);
	return -1;
}

int spf_dnsmasq_start_or_skip(struct spf_dnsmasq *d)
{
	int rc = spf_dnsmasq_start(d);

	if (rc == 77) {
		fprintf(stderr, "dnsmasq not installed: skipping\n");
		exit(77);
	}
	return rc;
}

void spf_dnsmasq_stop(struct spf_dnsmasq *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->blackhole_fd >= 0) {
		close(d->blackhole_fd);
		d->blackhole_fd = -1;
	}
	if (d->log[0] != '\0') {
		unlink(d->log);
		rmdir(d->dir);
		d->log[0] = '\0';
	}
}

int spf_dnsmasq_count(const struct spf_dnsmasq *d, const char *type, const char *name)
{
	char needle[300], line[1024];
	FILE *fp;
	int count = 0;

	usleep(LOG_SETTLE_US);
	snprintf(needle, sizeof(needle), "query[%s] %s from ", type, name);
	fp = fopen(d->log, "r");
	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, needle) != NULL)
			count++;
	fclose(fp);
	return count;
}
