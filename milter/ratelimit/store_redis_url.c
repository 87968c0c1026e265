/*
 * store_redis_url - reads where Redis is and how to log in: the Redis URL
 * and RedisPasswordFile.
 *
 * Strict on purpose: anything the grammar does not name (a query string,
 * a path that is not a database number, a port out of range) is an
 * error, not ignored, so a typo never silently points the fleet's quota
 * at another database. No message here ever echoes the URL or the
 * file's content: either may hold the password.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_redis.h"

static int redis_url_error(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -1;
}

static int redis_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes %XX escapes of a URL part into dst; -1 when bad or too long. */
static int redis_pct_decode(const char *src, size_t len, char *dst, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int ch = (unsigned char)src[i];
		if (ch == '%') {
			if (i + 2 >= len || redis_hex(src[i + 1]) < 0 || redis_hex(src[i + 2]) < 0)
				return -1;
			ch = redis_hex(src[i + 1]) * 16 + redis_hex(src[i + 2]);
			i += 2;
		}
		if (ch == 0 || n + 1 >= size)
			return -1;
		dst[n++] = (char)ch;
	}
	dst[n] = '\0';
	return 0;
}

/* A database number: 1 to 9 digits. */
static int redis_parse_db(const char *s, size_t len, int *db)
{
	int v = 0;

	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*db = v;
	return 0;
}

static bool redis_host_char(char ch, bool ipv6)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	if (ipv6)
		return ch == ':' || ch == '.' || ch == '%';
	return ch == '.' || ch == '-' || ch == '_';
}

static int redis_parse_unix(const char *p, struct store_redis_url *out, char *err, size_t errlen)
{
	if (strncmp(p, "//", 2) == 0)		/* unix:///path */
		p += 2;
	if (p[0] != '/')
		return redis_url_error(err, errlen, "unix: needs an absolute socket path");
	const char *q = strchr(p, '?');
	size_t len = q ? (size_t)(q - p) : strlen(p);
	if (len < 2)
		return redis_url_error(err, errlen, "unix: socket path is empty");
	if (len >= sizeof(out->path))
		return redis_url_error(err, errlen, "unix: socket path is too long");
	memcpy(out->path, p, len);
	out->path[len] = '\0';
	out->unix_socket = true;
	if (q == NULL)
		return 0;
	if (strncmp(q + 1, "db=", 3) != 0 || redis_parse_db(q + 4, strlen(q + 4), &out->db) < 0)
		return redis_url_error(err, errlen, "unix: the only option is ?db=NUMBER");
	return 0;
}

static int redis_parse_tcp(const char *p, struct store_redis_url *out, char *err, size_t errlen)
{
	const char *end = p + strcspn(p, "/?#");
	const char *at = NULL;

	for (const char *s = p; s < end; s++)
		if (*s == '@')
			at = s;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL)
			return redis_url_error(err, errlen,
				"redis://: before @ give :PASSWORD or USER:PASSWORD");
		if (redis_pct_decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) < 0
		    || redis_pct_decode(colon + 1, (size_t)(at - colon - 1), out->password,
					sizeof(out->password)) < 0)
			return redis_url_error(err, errlen,
				"redis://: bad %-escape or too long user or password");
		if (out->password[0] == '\0')
			return redis_url_error(err, errlen, "redis://: empty password");
		p = at + 1;
	}

	const char *host = p, *host_end, *port = NULL;
	bool ipv6 = false;
	if (*p == '[') {
		ipv6 = true;
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(end - host));
		if (host_end == NULL)
			return redis_url_error(err, errlen, "redis://: missing ] after IPv6 address");
		if (host_end + 1 < end) {
			if (host_end[1] != ':')
				return redis_url_error(err, errlen, "redis://: junk after ]");
			port = host_end + 2;
		}
	} else {
		host_end = memchr(host, ':', (size_t)(end - host));
		if (host_end != NULL)
			port = host_end + 1;
		else
			host_end = end;
	}
	size_t hlen = (size_t)(host_end - host);
	if (hlen == 0)
		return redis_url_error(err, errlen, "redis://: missing host");
	if (hlen >= sizeof(out->host))
		return redis_url_error(err, errlen, "redis://: host name too long");
	for (size_t i = 0; i < hlen; i++)
		if (!redis_host_char(host[i], ipv6))
			return redis_url_error(err, errlen, "redis://: bad character in host");
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';

	if (port != NULL) {
		long v = 0;
		if (port == end || end - port > 5)
			return redis_url_error(err, errlen, "redis://: bad port");
		for (const char *s = port; s < end; s++) {
			if (*s < '0' || *s > '9')
				return redis_url_error(err, errlen, "redis://: bad port");
			v = v * 10 + (*s - '0');
		}
		if (v < 1 || v > 65535)
			return redis_url_error(err, errlen, "redis://: port out of range");
		out->port = (int)v;
	}

	if (*end == '\0' || strcmp(end, "/") == 0)
		return 0;
	if (*end != '/' || redis_parse_db(end + 1, strlen(end + 1), &out->db) < 0)
		return redis_url_error(err, errlen, "redis://: after the host only /DB may follow");
	return 0;
}

int store_redis_parse_url(const char *url, struct store_redis_url *out, char *err, size_t errlen)
{
	int rc;

	memset(out, 0, sizeof(*out));
	out->port = STORE_REDIS_DEFAULT_PORT;
	if (strncmp(url, "unix:", 5) == 0)
		rc = redis_parse_unix(url + 5, out, err, errlen);
	else if (strncmp(url, "redis://", 8) == 0)
		rc = redis_parse_tcp(url + 8, out, err, errlen);
	else
		rc = redis_url_error(err, errlen, "the URL must start with redis:// or unix:");
	if (rc < 0)
		explicit_bzero(out, sizeof(*out));
	return rc;
}

/* First line of the file, without its line end. */
int store_redis_read_password(const char *path, char *buf, size_t size, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "re");
	if (fp == NULL) {
		snprintf(err, errlen, "RedisPasswordFile %s: %s", path, strerror(errno));
		return -1;
	}
	bool ok = fgets(buf, (int)size, fp) != NULL;
	bool whole = ok && (strchr(buf, '\n') != NULL || feof(fp));
	fclose(fp);
	if (ok && !whole) {
		explicit_bzero(buf, size);
		snprintf(err, errlen, "RedisPasswordFile %s: password longer than %zu bytes",
			 path, size - 2);
		return -1;
	}
	if (ok)
		buf[strcspn(buf, "\r\n")] = '\0';
	if (!ok || buf[0] == '\0') {
		snprintf(err, errlen, "RedisPasswordFile %s: no password in the file", path);
		return -1;
	}
	return 0;
}
