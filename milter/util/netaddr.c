/*
 * netaddr - address and CIDR parsing and matching.
 *
 * Addresses are kept as raw bytes so matching is a masked memcmp; text is
 * parsed once (config load, connect) and never on a lookup.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "netaddr.h"

static const unsigned char v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Stores an IPv4-mapped IPv6 address as plain IPv4. */
static void netaddr_unmap(struct netaddr *a)
{
	if (a->family == AF_INET6 && memcmp(a->bytes, v4mapped_prefix, 12) == 0) {
		memmove(a->bytes, a->bytes + 12, 4);
		memset(a->bytes + 4, 0, 12);
		a->family = AF_INET;
	}
}

int netaddr_parse(const char *text, struct netaddr *out)
{
	char buf[NETADDR_TEXT_MAX];
	size_t len;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(text, "IPv6:", 5) == 0)
		text += 5;
	len = strlen(text);
	if (len == 0 || len >= sizeof(buf))
		return -1;
	/* "[2001:db8::1]" as Postfix writes literals */
	if (text[0] == '[' && text[len - 1] == ']') {
		memcpy(buf, text + 1, len - 2);
		buf[len - 2] = '\0';
	} else {
		memcpy(buf, text, len + 1);
	}
	if (inet_pton(AF_INET, buf, out->bytes) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
		out->family = AF_INET6;
		netaddr_unmap(out);
		return 0;
	}
	return -1;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		out->family = AF_INET;
		memcpy(out->bytes, &sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		out->family = AF_INET6;
		memcpy(out->bytes, &sin6->sin6_addr, 16);
		netaddr_unmap(out);
		return 0;
	}
	return -1;
}

void netaddr_format(const struct netaddr *a, char *buf, size_t len)
{
	if (a->family == 0 || inet_ntop(a->family, a->bytes, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "unknown");
}

void netaddr_mask(struct netaddr *a, int prefix)
{
	int bits = netaddr_bits(a->family);

	for (int i = 0; i < bits / 8; i++) {
		int keep = prefix - i * 8;
		if (keep >= 8)
			continue;
		a->bytes[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
	}
}

int cidr_parse(const char *text, struct cidr *out)
{
	char buf[NETADDR_TEXT_MAX];
	const char *slash = strchr(text, '/');
	size_t addrlen = slash ? (size_t)(slash - text) : strlen(text);

	if (addrlen == 0 || addrlen >= sizeof(buf))
		return -1;
	memcpy(buf, text, addrlen);
	buf[addrlen] = '\0';
	int mapped_v6 = strchr(buf, ':') != NULL;
	if (netaddr_parse(buf, &out->net) != 0)
		return -1;
	int bits = netaddr_bits(out->net.family);
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || p < 0)
			return -1;
		/* ::ffff:10.0.0.0/104 became IPv4: shift the prefix with it */
		if (mapped_v6 && out->net.family == AF_INET)
			p -= 96;
		if (p < 0 || p > bits)
			return -1;
		out->prefix = (int)p;
	} else {
		out->prefix = bits;
	}
	netaddr_mask(&out->net, out->prefix);
	return 0;
}

bool cidr_match(const struct cidr *block, const struct netaddr *a)
{
	if (block->net.family != a->family)
		return false;
	int full = block->prefix / 8, rest = block->prefix % 8;
	if (memcmp(block->net.bytes, a->bytes, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char m = (unsigned char)(0xff << (8 - rest));
	return (a->bytes[full] & m) == block->net.bytes[full];
}
