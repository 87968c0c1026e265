/*
 * store_redis_url - reads where Redis is and how to log in: the Redis URL
 * (one server, a Sentinel set or a Cluster) and RedisPasswordFile.
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

/* The same, after "SCHEME: " ("redis://: bad port"). */
static int redis_url_error_in(char *err, size_t errlen, const char *scheme, const char *what)
{
	snprintf(err, errlen, "%s: %s", scheme, what);
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

/*
 * HOST[:PORT] or [IPv6][:PORT] between p and end; *port is left alone
 * when none is given.
 */
static int redis_parse_hostport(const char *scheme, const char *p, const char *end, char *hostbuf,
	size_t hostsize, int *portp, char *err, size_t errlen)
{
	const char *host = p, *host_end, *port = NULL;
	bool ipv6 = false;
	if (*p == '[') {
		ipv6 = true;
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(end - host));
		if (host_end == NULL)
			return redis_url_error_in(err, errlen, scheme, "missing ] after IPv6 address");
		if (host_end + 1 < end) {
			if (host_end[1] != ':')
				return redis_url_error_in(err, errlen, scheme, "junk after ]");
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
		return redis_url_error_in(err, errlen, scheme, "missing host");
	if (hlen >= hostsize)
		return redis_url_error_in(err, errlen, scheme, "host name too long");
	for (size_t i = 0; i < hlen; i++)
		if (!redis_host_char(host[i], ipv6))
			return redis_url_error_in(err, errlen, scheme, "bad character in host");
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';

	if (port != NULL) {
		long v = 0;
		if (port == end || end - port > 5)
			return redis_url_error_in(err, errlen, scheme, "bad port");
		for (const char *s = port; s < end; s++) {
			if (*s < '0' || *s > '9')
				return redis_url_error_in(err, errlen, scheme, "bad port");
			v = v * 10 + (*s - '0');
		}
		if (v < 1 || v > 65535)
			return redis_url_error_in(err, errlen, scheme, "port out of range");
		*portp = (int)v;
	}

	return 0;
}

/*
 * [[USER]:PASS@] at p (the part before end): decoded into user and pass,
 * *rest set past it.
 */
static int redis_parse_userinfo(const char *scheme, const char *p, const char *end, char *user,
	size_t usize, char *pass, size_t psize, const char **rest, char *err, size_t errlen)
{
	const char *at = NULL;

	*rest = p;
	for (const char *s = p; s < end; s++)
		if (*s == '@')
			at = s;
	if (at == NULL)
		return 0;
	const char *colon = memchr(p, ':', (size_t)(at - p));
	if (colon == NULL)
		return redis_url_error_in(err, errlen, scheme, "before @ give :PASSWORD or USER:PASSWORD");
	if (redis_pct_decode(p, (size_t)(colon - p), user, usize) < 0
	    || redis_pct_decode(colon + 1, (size_t)(at - colon - 1), pass, psize) < 0)
		return redis_url_error_in(err, errlen, scheme, "bad %-escape or too long user or password");
	if (pass[0] == '\0')
		return redis_url_error_in(err, errlen, scheme, "empty password");
	*rest = at + 1;
	return 0;
}

static int redis_parse_tcp(const char *p, struct store_redis_url *out, char *err, size_t errlen)
{
	const char *end = p + strcspn(p, "/?#");

	if (redis_parse_userinfo("redis://", p, end, out->user, sizeof(out->user), out->password,
				 sizeof(out->password), &p, err, errlen) < 0)
		return -1;
	if (redis_parse_hostport("redis://", p, end, out->host, sizeof(out->host), &out->port,
				 err, errlen) < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "/") == 0)
		return 0;
	if (*end != '/' || redis_parse_db(end + 1, strlen(end + 1), &out->db) < 0)
		return redis_url_error(err, errlen, "after the host only /DB may follow");
	return 0;
}

/* HOST:PORT[,HOST:PORT...] between p and end into out->seeds. */
static int redis_parse_seeds(const char *scheme, const char *p, const char *end, int port,
	struct store_redis_url *out, char *err, size_t errlen)
{
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		if (out->nseeds == STORE_REDIS_SEEDS_MAX) {
			snprintf(err, errlen, "%s: more than %d addresses", scheme, STORE_REDIS_SEEDS_MAX);
			return -1;
		}
		struct store_redis_seed *sd = &out->seeds[out->nseeds++];
		sd->port = port;
		if (redis_parse_hostport(scheme, p, stop, sd->host, sizeof(sd->host), &sd->port,
					 err, errlen) < 0)
			return -1;
		p = comma ? comma + 1 : end;
		if (comma && p == end)
			return redis_url_error_in(err, errlen, scheme, "missing host after ,");
	}
	if (out->nseeds == 0)
		return redis_url_error_in(err, errlen, scheme, "missing host");
	return 0;
}

/*
 * sentinel://[[USER]:PASS@]HOST:PORT[,...]/MASTERNAME[?db=N]: the user
 * and password are the sentinels' (RedisPasswordFile is the data nodes').
 */
static int redis_parse_sentinel(const char *p, struct store_redis_url *out, char *err, size_t errlen)
{
	const char *end = p + strcspn(p, "/?#");

	out->topology = STORE_REDIS_SENTINEL;
	if (redis_parse_userinfo("sentinel://", p, end, out->sentinel_user, sizeof(out->sentinel_user),
				 out->sentinel_password, sizeof(out->sentinel_password), &p,
				 err, errlen) < 0
	    || redis_parse_seeds("sentinel://", p, end, STORE_REDIS_SENTINEL_PORT, out, err, errlen) < 0)
		return -1;
	if (*end != '/')
		return redis_url_error(err, errlen, "sentinel://: give /MASTERNAME after the sentinels");
	const char *name = end + 1, *q = strchr(name, '?');
	size_t len = q ? (size_t)(q - name) : strlen(name);
	if (len == 0 || len >= sizeof(out->master))
		return redis_url_error(err, errlen, "sentinel://: missing or too long master name");
	for (size_t i = 0; i < len; i++)
		if (!redis_host_char(name[i], false))
			return redis_url_error(err, errlen, "sentinel://: bad character in master name");
	memcpy(out->master, name, len);
	out->master[len] = '\0';
	if (q != NULL
	    && (strncmp(q + 1, "db=", 3) != 0 || redis_parse_db(q + 4, strlen(q + 4), &out->db) < 0))
		return redis_url_error(err, errlen, "sentinel://: the only option is ?db=NUMBER");
	return 0;
}

/* cluster://[[USER]:PASS@]HOST:PORT[,...]: database 0, the only one a cluster has. */
static int redis_parse_cluster(const char *p, struct store_redis_url *out, char *err, size_t errlen)
{
	const char *end = p + strcspn(p, "/?#");

	out->topology = STORE_REDIS_CLUSTER;
	if (redis_parse_userinfo("cluster://", p, end, out->user, sizeof(out->user), out->password,
				 sizeof(out->password), &p, err, errlen) < 0
	    || redis_parse_seeds("cluster://", p, end, STORE_REDIS_DEFAULT_PORT, out, err, errlen) < 0)
		return -1;
	if (*end != '\0' && strcmp(end, "/") != 0)
		return redis_url_error(err, errlen,
			"cluster://: nothing may follow the addresses (a cluster has only database 0)");
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
	else if (strncmp(url, "sentinel://", 11) == 0)
		rc = redis_parse_sentinel(url + 11, out, err, errlen);
	else if (strncmp(url, "cluster://", 10) == 0)
		rc = redis_parse_cluster(url + 10, out, err, errlen);
	else
		rc = redis_url_error(err, errlen,
			"the URL must start with redis:// or unix: (one server), sentinel:// or cluster://");
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
