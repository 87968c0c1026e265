/*
 * dns - the resolver under libspf2, of our own.
 *
 * What it does: asks one DNS server (the Resolver setting) each question
 * libspf2 has, over UDP with EDNS0 and over TCP when the answer is
 * truncated, waits a bounded time, and caches answers for their TTL.
 * What it does not: recursion (the server must be a recursive resolver),
 * DNSSEC validation, searching resolv.conf "search" domains (SPF names
 * are always absolute), or RFC 7208's limits on an evaluation's lookups
 * (spf_budget.c, the layer libspf2 calls, which asks us).
 *
 * Why not libspf2's resolv layer: it cannot choose the server, has no
 * timeout of its own (res_ninit's, from resolv.conf, per thread), and its
 * cache layer keeps compiled records without a bound we control. Queries
 * are built by hand (12-byte header, labels, OPT record) rather than with
 * res_mkquery, which would interpret backslash escapes in names that an
 * SPF macro put together from attacker text; answers are parsed with
 * libresolv's ns_initparse/ns_parserr, which check every length.
 *
 * Each query uses a fresh connected UDP socket, so the kernel picks a
 * random source port and only the server's packets reach us; with a
 * random ID and a matching question that is the usual defence against
 * spoofed answers. The UDP question is sent again once, half-way to the
 * deadline, in case a packet was lost.
 */
#include "config.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "dns_cache.h"
#include "log.h"

#define DNS_RESOLV_CONF "/etc/resolv.conf"
/* RFC 1035: 63 octets a label (and 253 characters of text: DNS_NAME_MAX). */
#define DNS_LABEL_MAX 63
/* The EDNS0 size of DNS Flag Day 2020: no IP fragmentation on usual paths. */
#define DNS_EDNS_PAYLOAD 1232
/* The TCP length prefix is 16 bits, so no DNS message is larger. */
#define DNS_MESSAGE_MAX 65535
/* Header 12 + name 255 + type/class 4 + OPT 11, rounded up. */
#define DNS_QUERY_MAX 300
#define DNS_HEADER_SIZE 12
#define DNS_TYPE_OPT 41
/* The OPT record at the end of each query: root, type, class, TTL, rdlen. */
#define DNS_OPT_SIZE 11

struct dns_resolver {
	SPF_dns_server_t source;	/* the answers' source (libspf2's field) */
	bool system;			/* follow /etc/resolv.conf */
	struct timespec conf_mtime;	/* of resolv.conf when last read */
	ino_t conf_ino;
	struct sockaddr_storage server;
	socklen_t server_len;
	long timeout_ms;		/* per query */
	struct dns_cache *cache;
	unsigned char *answer;		/* DNS_MESSAGE_MAX bytes, one at a time */
	struct dns_stats stats;
};

static void dns_error(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void dns_error(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

long long dns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *dns_type_name(ns_type type)
{
	switch (type) {
	case ns_t_a: return "A";
	case ns_t_aaaa: return "AAAA";
	case ns_t_mx: return "MX";
	case ns_t_txt: return "TXT";
	case ns_t_ptr: return "PTR";
	default: return "other";
	}
}

/* A numeric host and port into a socket address; 0 or -1. */
static int dns_numeric_address(const char *host, const char *port,
	struct sockaddr_storage *addr, socklen_t *addrlen)
{
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		return -1;
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static bool dns_valid_port(const char *port)
{
	char *end;
	long n;

	if (!isdigit((unsigned char)port[0]))
		return false;
	n = strtol(port, &end, 10);
	return *end == '\0' && n > 0 && n <= 65535;
}

int dns_resolv_conf_server(const char *path, struct sockaddr_storage *addr,
	socklen_t *addrlen, char *err, size_t len)
{
	FILE *fp = fopen(path, "re");
	char line[512];

	(void)err;
	(void)len;
	if (fp != NULL) {
		while (fgets(line, sizeof(line), fp) != NULL) {
			char *save = NULL;
			char *key = strtok_r(line, " \t\r\n", &save);
			char *value = strtok_r(NULL, " \t\r\n", &save);

			if (key == NULL || value == NULL || strcmp(key, "nameserver") != 0)
				continue;
			/* glibc skips a nameserver line it cannot parse. */
			if (dns_numeric_address(value, "53", addr, addrlen) == 0) {
				fclose(fp);
				return 0;
			}
		}
		fclose(fp);
	}
	/* No usable nameserver: glibc's default is the local host. */
	return dns_numeric_address("127.0.0.1", "53", addr, addrlen);
}

int dns_server_parse(const char *spec, struct sockaddr_storage *addr, socklen_t *addrlen,
	char *err, size_t len)
{
	char host[INET6_ADDRSTRLEN + 32];
	const char *port = "53", *colon;
	size_t hostlen;

	if (spec == NULL || strcasecmp(spec, "system") == 0)
		return dns_resolv_conf_server(DNS_RESOLV_CONF, addr, addrlen, err, len);
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			goto bad;
		hostlen = (size_t)(close - spec - 1);
		if (hostlen == 0 || hostlen >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, hostlen);
		if (close[1] == ':')
			port = close + 2;
	} else if ((colon = strchr(spec, ':')) != NULL && strchr(colon + 1, ':') == NULL) {
		hostlen = (size_t)(colon - spec);
		if (hostlen == 0 || hostlen >= sizeof(host))
			goto bad;
		memcpy(host, spec, hostlen);
		port = colon + 1;
	} else {
		/* A plain IPv4 address, or a bare IPv6 one (no port possible). */
		hostlen = strlen(spec);
		if (hostlen == 0 || hostlen >= sizeof(host))
			goto bad;
		memcpy(host, spec, hostlen);
	}
	host[hostlen] = '\0';
	if (dns_valid_port(port) && dns_numeric_address(host, port, addr, addrlen) == 0) {
		/* Brackets are for IPv6 only: "[192.0.2.1]" is a typo. */
		if (spec[0] != '[' || addr->ss_family == AF_INET6)
			return 0;
	}
bad:
	dns_error(err, len, "bad resolver \"%s\": expected system, IPv4[:PORT] or [IPv6][:PORT]",
		  spec);
	return -1;
}

void dns_resolver_refresh(struct dns_resolver *r)
{
	struct stat st;

	if (!r->system || stat(DNS_RESOLV_CONF, &st) != 0)
		return;
	if (st.st_ino == r->conf_ino && st.st_mtim.tv_sec == r->conf_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == r->conf_mtime.tv_nsec)
		return;
	r->conf_ino = st.st_ino;
	r->conf_mtime = st.st_mtim;
	dns_resolv_conf_server(DNS_RESOLV_CONF, &r->server, &r->server_len, NULL, 0);
}

int dns_name_normalize(const char *name, char out[DNS_NAME_MAX + 1])
{
	size_t len = strlen(name), label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (c <= ' ' || c == 0x7f || c == '\\' || ++label > DNS_LABEL_MAX) {
			return -1;
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0)
		return -1;
	out[len] = '\0';
	return 0;
}

static void dns_put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

/* A query for a normalized name, with RD and an EDNS0 OPT record. */
static size_t dns_build_query(unsigned char *q, uint16_t id, const char *name, ns_type type)
{
	size_t n = DNS_HEADER_SIZE;

	memset(q, 0, DNS_HEADER_SIZE);
	dns_put16(q, id);
	q[2] = 0x01;				/* RD */
	dns_put16(q + 4, 1);			/* QDCOUNT */
	dns_put16(q + 10, 1);			/* ARCOUNT: the OPT record */
	for (const char *label = name; *label != '\0'; ) {
		size_t l = strcspn(label, ".");
		q[n++] = (unsigned char)l;
		memcpy(q + n, label, l);
		n += l;
		label += l;
		if (*label == '.')
			label++;
	}
	q[n++] = 0;
	dns_put16(q + n, (unsigned)type);
	dns_put16(q + n + 2, ns_c_in);
	n += 4;
	q[n++] = 0;				/* OPT: root name */
	dns_put16(q + n, DNS_TYPE_OPT);
	dns_put16(q + n + 2, DNS_EDNS_PAYLOAD);
	memset(q + n + 4, 0, 6);		/* extended rcode, version, flags, rdlen */
	return n + DNS_OPT_SIZE - 1;
}

enum dns_packet { DNS_PACKET_NOISE, DNS_PACKET_ANSWER, DNS_PACKET_BROKEN };

/*
 * Whether msg answers query q: our ID, the QR bit, and the same single
 * question, compared on the wire (as text, names with characters such
 * as '@' would come back escaped), ignoring ASCII case (resolvers may
 * randomize it). Another ID or question is noise, stray or spoofed, and
 * is ignored; our ID on a packet that does not parse is a broken
 * answer: a failure now rather than after the timeout.
 */
static enum dns_packet dns_classify(const unsigned char *msg, size_t len,
	const unsigned char *q, size_t question_end)
{
	ns_msg handle;

	if (len < DNS_HEADER_SIZE || ns_get16(msg) != ns_get16(q) || !(msg[2] & 0x80))
		return DNS_PACKET_NOISE;
	if (ns_initparse(msg, (int)len, &handle) < 0)
		return DNS_PACKET_BROKEN;
	if (ns_msg_count(handle, ns_s_qd) != 1 || len < question_end)
		return DNS_PACKET_NOISE;
	for (size_t i = DNS_HEADER_SIZE; i < question_end; i++)
		if (tolower(msg[i]) != tolower(q[i]))
			return DNS_PACKET_NOISE;
	return DNS_PACKET_ANSWER;
}

/* Waits until fd is ready for events or the deadline passes: 1, 0 or -1. */
static int dns_wait(int fd, short events, long long deadline_ms)
{
	for (;;) {
		long long left = deadline_ms - dns_now_ms();
		struct pollfd p = { .fd = fd, .events = events };
		int n;

		if (left <= 0)
			return 0;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		/* POLLERR/POLLHUP: the next read or write reports why. */
		return 1;
	}
}

/*
 * Asks over UDP. Returns the answer's length, 0 when the answer came
 * truncated (ask over TCP), -1 on timeout or a network error.
 */
static ssize_t dns_ask_udp(struct dns_resolver *r, const unsigned char *q, size_t qlen,
	long long deadline_ms)
{
	int fd = socket(r->server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	long long resend_ms = dns_now_ms() + (deadline_ms - dns_now_ms()) / 2;
	bool resent = false;
	ssize_t result = -1;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&r->server, r->server_len) < 0 ||
	    send(fd, q, qlen, MSG_NOSIGNAL) < 0)
		goto out;
	for (;;) {
		int ready = dns_wait(fd, POLLIN, resent ? deadline_ms : resend_ms);
		ssize_t n;

		if (ready < 0)
			goto out;
		if (ready == 0) {
			if (resent)
				goto out;
			resent = true;
			if (send(fd, q, qlen, MSG_NOSIGNAL) < 0)
				goto out;
			continue;
		}
		n = recv(fd, r->answer, DNS_MESSAGE_MAX, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)	/* ECONNREFUSED: nothing listens there */
			goto out;
		switch (dns_classify(r->answer, (size_t)n, q, qlen - DNS_OPT_SIZE)) {
		case DNS_PACKET_NOISE:
			continue;
		case DNS_PACKET_BROKEN:
			goto out;
		case DNS_PACKET_ANSWER:
			result = (r->answer[2] & 0x02) ? 0 : n;		/* TC */
			goto out;
		}
	}
out:
	close(fd);
	return result;
}

/* Reads or writes exactly len bytes before the deadline; 0 or -1. */
static int dns_tcp_io(int fd, unsigned char *buf, size_t len, bool writing, long long deadline_ms)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		if (dns_wait(fd, writing ? POLLOUT : POLLIN, deadline_ms) != 1)
			return -1;
		n = writing ? send(fd, buf + done, len - done, MSG_NOSIGNAL)
			    : recv(fd, buf + done, len - done, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* Asks over TCP (RFC 7766). Returns the answer's length or -1. */
static ssize_t dns_ask_tcp(struct dns_resolver *r, const unsigned char *q, size_t qlen,
	long long deadline_ms)
{
	int fd = socket(r->server.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unsigned char framed[DNS_QUERY_MAX + 2], prefix[2];
	int soerr = 0;
	socklen_t soerrlen = sizeof(soerr);
	ssize_t result = -1;
	size_t len;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&r->server, r->server_len) < 0) {
		if (errno != EINPROGRESS || dns_wait(fd, POLLOUT, deadline_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) < 0 || soerr != 0)
			goto out;
	}
	dns_put16(framed, (unsigned)qlen);
	memcpy(framed + 2, q, qlen);
	if (dns_tcp_io(fd, framed, qlen + 2, true, deadline_ms) < 0 ||
	    dns_tcp_io(fd, prefix, 2, false, deadline_ms) < 0)
		goto out;
	len = ns_get16(prefix);
	if (dns_tcp_io(fd, r->answer, len, false, deadline_ms) < 0)
		goto out;
	if (dns_classify(r->answer, len, q, qlen - DNS_OPT_SIZE) == DNS_PACKET_ANSWER &&
	    !(r->answer[2] & 0x02))
		result = (ssize_t)len;
out:
	close(fd);
	return result;
}

/* The negative-caching TTL of RFC 2308 from an SOA in the authority section. */
static long dns_negative_ttl(ns_msg *handle)
{
	ns_rr rr;

	for (int i = 0; i < ns_msg_count(*handle, ns_s_ns); i++) {
		if (ns_parserr(handle, ns_s_ns, i, &rr) < 0 || ns_rr_type(rr) != ns_t_soa)
			continue;
		/* SOA rdata ends with serial, refresh, retry, expire, minimum. */
		if (ns_rr_rdlen(rr) < 20)
			return -1;
		long minimum = (long)ns_get32(ns_rr_rdata(rr) + ns_rr_rdlen(rr) - 4);
		long ttl = (long)ns_rr_ttl(rr) < minimum ? (long)ns_rr_ttl(rr) : minimum;
		return ttl < DNS_NEGATIVE_TTL_MAX ? ttl : DNS_NEGATIVE_TTL_MAX;
	}
	return -1;
}

/* Adds one answer record of the asked type to out; 0, or -1 when malformed. */
static int dns_add_record(SPF_dns_rr_t *out, int idx, ns_msg *handle, ns_rr *rr)
{
	const unsigned char *rdata = ns_rr_rdata(*rr);
	size_t rdlen = ns_rr_rdlen(*rr);
	char name[NS_MAXDNAME];

	switch (ns_rr_type(*rr)) {
	case ns_t_a:
		if (rdlen != 4 || SPF_dns_rr_buf_realloc(out, idx, 4) != SPF_E_SUCCESS)
			return -1;
		memcpy(&out->rr[idx]->a, rdata, 4);
		return 0;
	case ns_t_aaaa:
		if (rdlen != 16 || SPF_dns_rr_buf_realloc(out, idx, 16) != SPF_E_SUCCESS)
			return -1;
		memcpy(&out->rr[idx]->aaaa, rdata, 16);
		return 0;
	case ns_t_txt: {
		/* Character-strings, each with a length byte, joined without spaces. */
		char *dst;
		size_t at = 0;

		if (SPF_dns_rr_buf_realloc(out, idx, rdlen + 1) != SPF_E_SUCCESS)
			return -1;
		dst = out->rr[idx]->txt;
		for (size_t i = 0; i < rdlen; ) {
			size_t l = rdata[i++];
			if (l > rdlen - i)
				return -1;
			memcpy(dst + at, rdata + i, l);
			at += l;
			i += l;
		}
		dst[at] = '\0';
		return 0;
	}
	case ns_t_mx:
	case ns_t_ptr: {
		size_t skip = ns_rr_type(*rr) == ns_t_mx ? 2 : 0;

		if (rdlen <= skip ||
		    dn_expand(ns_msg_base(*handle), ns_msg_end(*handle), rdata + skip,
			      name, sizeof(name)) < 0 ||
		    SPF_dns_rr_buf_realloc(out, idx, strlen(name) + 1) != SPF_E_SUCCESS)
			return -1;
		memcpy(out->rr[idx]->mx, name, strlen(name) + 1);
		return 0;
	}
	default:
		return -1;
	}
}

/*
 * The answer in libspf2's form, and in *ttl how long it may be cached
 * (-1: not at all). NULL only when out of memory.
 */
static SPF_dns_rr_t *dns_parse_answer(struct dns_resolver *r, size_t len, const char *name,
	ns_type type, long *ttl)
{
	SPF_dns_rr_t *out = SPF_dns_rr_new_init(&r->source, name, type, 0, TRY_AGAIN);
	ns_msg handle;
	ns_rr rr;
	long min_ttl = DNS_TTL_MAX;
	int count = 0;

	*ttl = -1;
	if (out == NULL || ns_initparse(r->answer, (int)len, &handle) < 0)
		return out;
	switch (ns_msg_getflag(handle, ns_f_rcode)) {
	case ns_r_noerror:
		break;
	case ns_r_nxdomain:
		out->herrno = HOST_NOT_FOUND;
		*ttl = dns_negative_ttl(&handle);
		out->ttl = *ttl > 0 ? *ttl : 0;
		return out;
	default:		/* SERVFAIL, REFUSED, ...: ask again later */
		return out;
	}
	for (int i = 0; i < ns_msg_count(handle, ns_s_an); i++) {
		if (ns_parserr(&handle, ns_s_an, i, &rr) < 0) {
			out->num_rr = 0;	/* TRY_AGAIN carries no records */
			return out;
		}
		if (ns_rr_type(rr) != type && ns_rr_type(rr) != ns_t_cname)
			continue;
		if ((long)ns_rr_ttl(rr) < min_ttl)
			min_ttl = (long)ns_rr_ttl(rr);
		if (ns_rr_type(rr) == ns_t_cname)
			continue;
		if (dns_add_record(out, count, &handle, &rr) < 0) {
			out->num_rr = 0;
			return out;
		}
		out->num_rr = ++count;
	}
	if (count == 0) {
		out->herrno = NO_DATA;
		*ttl = dns_negative_ttl(&handle);
		out->ttl = *ttl > 0 ? *ttl : 0;
		return out;
	}
	out->herrno = NETDB_SUCCESS;
	out->ttl = min_ttl;
	*ttl = min_ttl;
	return out;
}

static uint16_t dns_random_id(void)
{
	static uint16_t fallback;
	uint16_t id;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id))
		id = (uint16_t)(++fallback * 40503u ^ (unsigned)dns_now_ms());
	return id;
}

/*
 * One question to the server, waiting until deadline_ms at the latest
 * (0: none): the parsed answer, TRY_AGAIN on failure.
 */
static SPF_dns_rr_t *dns_query(struct dns_resolver *r, const char *name, ns_type type,
	long long deadline_ms)
{
	unsigned char q[DNS_QUERY_MAX];
	size_t qlen = dns_build_query(q, dns_random_id(), name, type);
	long long now = dns_now_ms(), deadline = now + r->timeout_ms;
	SPF_dns_rr_t *out;
	ssize_t n;
	long ttl = -1;

	if (deadline_ms != 0 && deadline_ms < deadline)
		deadline = deadline_ms;
	r->stats.queries++;
	n = dns_ask_udp(r, q, qlen, deadline);
	if (n == 0)
		n = dns_ask_tcp(r, q, qlen, deadline);
	if (n < 0) {
		log_debug("dns: %s/%s: no answer", name, dns_type_name(type));
		return SPF_dns_rr_new_init(&r->source, name, type, 0, TRY_AGAIN);
	}
	out = dns_parse_answer(r, (size_t)n, name, type, &ttl);
	if (out != NULL && ttl > 0) {
		now = dns_now_ms();
		dns_cache_put(r->cache, name, type, out, now, now + ttl * 1000);
	}
	return out;
}

SPF_dns_rr_t *dns_reply_parse(struct dns_resolver *r, const char *name, ns_type type,
	const unsigned char *msg, size_t len, long *ttl)
{
	char norm[DNS_NAME_MAX + 1];
	unsigned char q[DNS_QUERY_MAX];
	size_t qlen;

	*ttl = -1;
	if (dns_name_normalize(name, norm) < 0 || len < 2 || len > DNS_MESSAGE_MAX)
		return SPF_dns_rr_new_init(&r->source, name, type, 0, TRY_AGAIN);
	qlen = dns_build_query(q, ns_get16(msg), norm, type);
	if (dns_classify(msg, len, q, qlen - DNS_OPT_SIZE) != DNS_PACKET_ANSWER)
		return SPF_dns_rr_new_init(&r->source, norm, type, 0, TRY_AGAIN);
	memcpy(r->answer, msg, len);
	return dns_parse_answer(r, len, norm, type, ttl);
}

SPF_dns_rr_t *dns_lookup_until(struct dns_resolver *r, const char *name, ns_type type,
	long long deadline_ms)
{
	char norm[DNS_NAME_MAX + 1];
	SPF_dns_rr_t *out;

	if (type == ns_t_spf)
		return SPF_dns_rr_new_init(&r->source, name, type, 0, NO_DATA);
	r->stats.lookups++;
	if (dns_name_normalize(name, norm) < 0)
		return SPF_dns_rr_new_init(&r->source, name, type, 0, HOST_NOT_FOUND);
	out = dns_cache_get(r->cache, norm, type, dns_now_ms());
	if (out != NULL) {
		r->stats.cache_hits++;
		return out;
	}
	if (deadline_ms != 0 && dns_now_ms() >= deadline_ms)
		out = SPF_dns_rr_new_init(&r->source, norm, type, 0, TRY_AGAIN);
	else
		out = dns_query(r, norm, type, deadline_ms);
	if (out != NULL && out->herrno == TRY_AGAIN)
		r->stats.failures++;
	return out;
}

SPF_dns_rr_t *dns_lookup(struct dns_resolver *r, const char *name, ns_type type)
{
	return dns_lookup_until(r, name, type, 0);
}

struct dns_resolver *dns_resolver_new(const char *spec, long timeout_ms, char *err, size_t len)
{
	struct dns_resolver *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		dns_error(err, len, "out of memory");
		return NULL;
	}
	r->system = spec == NULL || strcasecmp(spec, "system") == 0;
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	r->cache = dns_cache_new(DNS_CACHE_MAX);
	r->answer = malloc(DNS_MESSAGE_MAX);
	if (r->cache == NULL || r->answer == NULL) {
		dns_error(err, len, "out of memory");
		dns_resolver_free(r);
		return NULL;
	}
	if (dns_server_parse(spec, &r->server, &r->server_len, err, len) < 0) {
		dns_resolver_free(r);
		return NULL;
	}
	dns_resolver_refresh(r);
	r->source.name = "bulkmilter";
	return r;
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	dns_cache_free(r->cache);
	free(r->answer);
	free(r);
}

void dns_stats_get(const struct dns_resolver *r, struct dns_stats *out)
{
	*out = r->stats;
}
