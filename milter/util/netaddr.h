/*
 * NAME
 *	netaddr - IPv4/IPv6 addresses and CIDR blocks
 * SYNOPSIS
 *	int netaddr_parse(const char *text, struct netaddr *out);
 *	int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
 *	void netaddr_format(const struct netaddr *a, char *buf, size_t len);
 *	int cidr_parse(const char *text, struct cidr *out);
 *	bool cidr_match(const struct cidr *block, const struct netaddr *a);
 *	void netaddr_mask(struct netaddr *a, int prefix);
 * DESCRIPTION
 *	An IPv4-mapped IPv6 address (::ffff:192.0.2.1) is stored as the IPv4
 *	address it carries, so "10.0.0.0/8" matches a client that Postfix
 *	reports in mapped form. netaddr_parse accepts Postfix's "IPv6:"
 *	prefix. A CIDR without "/N" is a single host. Parse functions return
 *	0 on success and -1 on bad input, never a partial result.
 */
#ifndef BM_NETADDR_H
#define BM_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Enough for "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" and a NUL. */
#define NETADDR_TEXT_MAX 64

struct netaddr {
	int family;			/* AF_INET or AF_INET6; 0 = unknown */
	unsigned char bytes[16];	/* network order; AF_INET uses 4 */
};

struct cidr {
	struct netaddr net;		/* already masked to prefix */
	int prefix;			/* 0..32 or 0..128 */
};

int netaddr_parse(const char *text, struct netaddr *out);
int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
void netaddr_format(const struct netaddr *a, char *buf, size_t len);
static inline int netaddr_bits(int family) { return family == AF_INET ? 32 : 128; }
void netaddr_mask(struct netaddr *a, int prefix);
int cidr_parse(const char *text, struct cidr *out);
bool cidr_match(const struct cidr *block, const struct netaddr *a);

#endif
