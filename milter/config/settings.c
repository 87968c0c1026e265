/*
 * settings - bulkmilter.conf.
 *
 * A table maps each setting name to a parser for its value; the parser
 * either stores the value or reports why not, so every bad line of the
 * file is reported in one pass. A setting given twice is an error rather
 * than "last one wins": in a file ops edit by hand, a duplicate is almost
 * always a mistake that would otherwise silently change behaviour.
 *
 * This module checks syntax and ranges only. Files the settings name
 * (policy, keys, password) are read by the modules that own them.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "calendar.h"
#include "dns.h"
#include "log.h"
#include "settings.h"

/* A config line longer than this is refused (no setting needs more). */
#define SETTINGS_LINE_MAX 8192

struct settings_ctx {
	struct settings *s;
	struct diag *errs;
	const char *file;
	int line;
};

typedef int (*settings_parser)(struct settings_ctx *c, const char *value);

/* Reports an error at the current line; returns -1. */
#define SETTINGS_ERR(c, ...) diag_fail((c)->errs, (c)->file, (c)->line, __VA_ARGS__)

int settings_parse_duration_ms(const char *text, long *ms)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (end == text || errno || v < 0)
		return -1;
	double mult;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60e3;
	else if (strcmp(end, "h") == 0)
		mult = 3600e3;
	else if (strcmp(end, "d") == 0)
		mult = 86400e3;
	else
		return -1;
	double r = v * mult;
	if (r > (double)LONG_MAX / 2)
		return -1;
	*ms = (long)(r + 0.5);
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int set_string(struct settings_ctx *c, char **slot, const char *v)
{
	char *copy = strdup(v);
	if (copy == NULL)
		return SETTINGS_ERR(c, "out of memory");
	free(*slot);
	*slot = copy;
	return 0;
}

/* Checks "PORT@HOST" of inet sockets; HOST may be empty (any). */
static int valid_port_at_host(const char *v)
{
	char *end;
	long port = strtol(v, &end, 10);
	return end != v && *end == '@' && port > 0 && port <= 65535;
}

static int p_socket(struct settings_ctx *c, const char *v)
{
	if (strncmp(v, "unix:", 5) == 0 || strncmp(v, "local:", 6) == 0) {
		const char *path = strchr(v, ':') + 1;
		if (*path != '/')
			return SETTINGS_ERR(c, "Socket: unix socket path must be absolute: %s", v);
	} else if (strncmp(v, "inet:", 5) == 0 || strncmp(v, "inet6:", 6) == 0) {
		if (!valid_port_at_host(strchr(v, ':') + 1))
			return SETTINGS_ERR(c, "Socket: expected inet:PORT@HOST, got %s", v);
	} else if (v[0] != '/') {
		return SETTINGS_ERR(c, "Socket: expected unix:PATH, inet:PORT@HOST or inet6:PORT@HOST, got %s", v);
	}
	return set_string(c, &c->s->socket, v);
}

/*
 * The uid and gid "user[:group]" names (the user's own group without
 * ":group"); 0, or -1 with the error reported as setting's.
 */
static int lookup_user_spec(struct settings_ctx *c, const char *setting, const char *v,
			    uid_t *uid, gid_t *gid)
{
	char user[256];
	const char *colon = strchr(v, ':');
	size_t n = colon ? (size_t)(colon - v) : strlen(v);
	struct passwd *pw;
	struct group *gr;

	if (n == 0 || n >= sizeof(user))
		return SETTINGS_ERR(c, "%s: expected user[:group], got %s", setting, v);
	memcpy(user, v, n);
	user[n] = '\0';
	if ((pw = getpwnam(user)) == NULL)
		return SETTINGS_ERR(c, "%s: no such user: %s", setting, user);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (colon) {
		if ((gr = getgrnam(colon + 1)) == NULL)
			return SETTINGS_ERR(c, "%s: no such group: %s", setting, colon + 1);
		*gid = gr->gr_gid;
	}
	return 0;
}

static int p_user_id(struct settings_ctx *c, const char *v)
{
	uid_t uid;
	gid_t gid;

	if (lookup_user_spec(c, "UserID", v, &uid, &gid) != 0)
		return -1;
	return set_string(c, &c->s->user_id, v);
}

static int p_spf_user_id(struct settings_ctx *c, const char *v)
{
	uid_t uid;
	gid_t gid;

	if (lookup_user_spec(c, "SpfUserID", v, &uid, &gid) != 0)
		return -1;
	if (uid == 0 || gid == 0)
		return SETTINGS_ERR(c, "SpfUserID: the SPF helpers must not run as root or group root: %s", v);
	return set_string(c, &c->s->spf_user_id, v);
}

static int p_pid_file(struct settings_ctx *c, const char *v)
{
	if (v[0] != '/')
		return SETTINGS_ERR(c, "PidFile: path must be absolute: %s", v);
	return set_string(c, &c->s->pid_file, v);
}

static int p_umask(struct settings_ctx *c, const char *v)
{
	char *end;
	long m = strtol(v, &end, 8);
	if (*v == '\0' || *end != '\0' || m < 0 || m > 0777)
		return SETTINGS_ERR(c, "Umask: expected an octal mode such as 007, got %s", v);
	c->s->umask = (mode_t)m;
	return 0;
}

static int p_log_level(struct settings_ctx *c, const char *v)
{
	int level = log_level_parse(v);
	if (level < 0)
		return SETTINGS_ERR(c, "LogLevel: expected error, warning, info or debug, got %s", v);
	c->s->log_level = level;
	return 0;
}

static int p_policy(struct settings_ctx *c, const char *v)
{
	return set_string(c, &c->s->policy_path, v);
}

static int p_redis(struct settings_ctx *c, const char *v)
{
	/* The URL may carry a password: never echo it in an error. */
	if (strncmp(v, "redis://", 8) != 0 && strncmp(v, "unix:/", 6) != 0
	    && strncmp(v, "sentinel://", 11) != 0 && strncmp(v, "cluster://", 10) != 0)
		return SETTINGS_ERR(c, "Redis: expected redis://[:PASS@]HOST:PORT/DB, unix:/PATH[?db=N], "
				    "sentinel://HOST:PORT[,...]/MASTER[?db=N] or cluster://HOST:PORT[,...]");
	return set_string(c, &c->s->redis_url, v);
}

static int p_redis_password_file(struct settings_ctx *c, const char *v)
{
	return set_string(c, &c->s->redis_password_file, v);
}

static int p_redis_timeout(struct settings_ctx *c, const char *v)
{
	long ms;
	/* Postfix waits 30 s for a milter command; a store must answer well inside. */
	if (settings_parse_duration_ms(v, &ms) != 0 || ms < 1 || ms > 10000)
		return SETTINGS_ERR(c, "RedisTimeout: expected a duration from 1ms to 10s, got %s", v);
	c->s->redis_timeout_ms = ms;
	return 0;
}

static int p_redis_prefix(struct settings_ctx *c, const char *v)
{
	for (const char *p = v; *p; p++)
		if (!isgraph((unsigned char)*p) || *p == '{' || *p == '}')
			return SETTINGS_ERR(c, "RedisPrefix: no spaces or braces allowed: %s", v);
	return set_string(c, &c->s->redis_prefix, v);
}

static int p_on_store_failure(struct settings_ctx *c, const char *v)
{
	if (strcasecmp(v, "accept") == 0)
		c->s->on_store_failure = STORE_FAILURE_ACCEPT;
	else if (strcasecmp(v, "tempfail") == 0)
		c->s->on_store_failure = STORE_FAILURE_TEMPFAIL;
	else
		return SETTINGS_ERR(c, "OnStoreFailure: expected accept or tempfail, got %s", v);
	return 0;
}

static int p_mode(struct settings_ctx *c, const char *v)
{
	if (strcasecmp(v, "enforce") == 0)
		c->s->mode = MODE_ENFORCE;
	else if (strcasecmp(v, "monitor") == 0)
		c->s->mode = MODE_MONITOR;
	else
		return SETTINGS_ERR(c, "Mode: expected enforce or monitor, got %s", v);
	return 0;
}

/*
 * Splits a comma/space separated list, calling fn on each item. With
 * "file:PATH", items are the file's lines (comments allowed), and errors
 * name that file and line.
 */
static int for_each_item(struct settings_ctx *c, const char *v,
			 int (*fn)(struct settings_ctx *, const char *, void *), void *arg)
{
	int rc = 0;
	if (strncmp(v, "file:", 5) == 0) {
		FILE *fp = fopen(v + 5, "r");
		if (fp == NULL)
			return SETTINGS_ERR(c, "cannot open %s: %s", v + 5, strerror(errno));
		struct settings_ctx sub = *c;
		char line[SETTINGS_LINE_MAX];
		sub.file = v + 5;
		sub.line = 0;
		while (fgets(line, sizeof(line), fp)) {
			sub.line++;
			char *hash = strchr(line, '#');
			if (hash)
				*hash = '\0';
			for (char *tok = strtok(line, ", \t\r\n"); tok; tok = strtok(NULL, ", \t\r\n"))
				if (fn(&sub, tok, arg) != 0)
					rc = -1;
		}
		fclose(fp);
		return rc;
	}
	char *copy = strdup(v), *save = NULL;
	if (copy == NULL)
		return SETTINGS_ERR(c, "out of memory");
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
		if (fn(c, tok, arg) != 0)
			rc = -1;
	free(copy);
	return rc;
}

/*
 * Room for one more entry of size bytes in a list setting (InternalHosts,
 * EgressAddresses): the grown list, or NULL with the error recorded (the
 * old list stays valid either way).
 */
static void *grow_list(struct settings_ctx *c, const char *setting, void *list, size_t count,
		       size_t size)
{
	if (count >= SETTINGS_LIST_MAX) {
		SETTINGS_ERR(c, "%s: more than %d entries", setting, SETTINGS_LIST_MAX);
		return NULL;
	}
	void *grown = realloc(list, (count + 1) * size);
	if (grown == NULL)
		SETTINGS_ERR(c, "out of memory");
	return grown;
}

static int add_internal_host(struct settings_ctx *c, const char *item, void *arg)
{
	(void)arg;
	struct settings *s = c->s;
	struct cidr block;
	if (cidr_parse(item, &block) != 0)
		return SETTINGS_ERR(c, "InternalHosts: not an address or CIDR block: %s", item);
	struct cidr *n = grow_list(c, "InternalHosts", s->internal_hosts, s->internal_hosts_count, sizeof(*n));
	if (n == NULL)
		return -1;
	n[s->internal_hosts_count++] = block;
	s->internal_hosts = n;
	return 0;
}

static int p_internal_hosts(struct settings_ctx *c, const char *v)
{
	c->s->internal_hosts_count = 0;
	return for_each_item(c, v, add_internal_host, NULL);
}

static int add_egress(struct settings_ctx *c, const char *item, void *arg)
{
	(void)arg;
	struct settings *s = c->s;
	struct netaddr a;
	if (netaddr_parse(item, &a) != 0)
		return SETTINGS_ERR(c, "EgressAddresses: not an IP address: %s", item);
	struct netaddr *n = grow_list(c, "EgressAddresses", s->egress_addresses, s->egress_addresses_count,
				      sizeof(*n));
	if (n == NULL)
		return -1;
	n[s->egress_addresses_count++] = a;
	s->egress_addresses = n;
	return 0;
}

static int p_egress(struct settings_ctx *c, const char *v)
{
	return for_each_item(c, v, add_egress, NULL);
}

static int p_key_table(struct settings_ctx *c, const char *v)
{
	return set_string(c, &c->s->key_table, v);
}

static int p_signing_table(struct settings_ctx *c, const char *v)
{
	return set_string(c, &c->s->signing_table, v);
}

static int p_bool(struct settings_ctx *c, const char *name, const char *v, bool *out)
{
	if (parse_bool(v, out) != 0)
		return SETTINGS_ERR(c, "%s: expected yes or no, got %s", name, v);
	return 0;
}

static int p_multiple_signatures(struct settings_ctx *c, const char *v)
{
	return p_bool(c, "MultipleSignatures", v, &c->s->multiple_signatures);
}

static int p_require_safe_keys(struct settings_ctx *c, const char *v)
{
	return p_bool(c, "RequireSafeKeys", v, &c->s->require_safe_keys);
}

static int parse_canon(const char *v, size_t n, bool *relaxed)
{
	if (n == 6 && strncasecmp(v, "simple", 6) == 0)
		*relaxed = false;
	else if (n == 7 && strncasecmp(v, "relaxed", 7) == 0)
		*relaxed = true;
	else
		return -1;
	return 0;
}

static int p_canonicalization(struct settings_ctx *c, const char *v)
{
	/* OpenDKIM: "header/body"; a lone word sets the header, body stays simple */
	const char *slash = strchr(v, '/');
	size_t hn = slash ? (size_t)(slash - v) : strlen(v);
	bool body = false;
	if (parse_canon(v, hn, &c->s->canon_header_relaxed) != 0 ||
	    (slash && parse_canon(slash + 1, strlen(slash + 1), &body) != 0))
		return SETTINGS_ERR(c, "Canonicalization: expected relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple, got %s", v);
	c->s->canon_body_relaxed = body;
	return 0;
}

static bool valid_header_name(const char *name)
{
	if (*name == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return false;
	return true;
}

static int add_oversign(struct settings_ctx *c, const char *item, void *arg)
{
	size_t *count = arg;
	if (!valid_header_name(item))
		return SETTINGS_ERR(c, "OversignHeaders: not a header name: %s", item);
	char **n = realloc(c->s->oversign_headers, (*count + 2) * sizeof(*n));
	if (n == NULL)
		return SETTINGS_ERR(c, "out of memory");
	c->s->oversign_headers = n;
	if ((n[*count] = strdup(item)) == NULL)
		return SETTINGS_ERR(c, "out of memory");
	for (char *p = n[*count]; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	n[++*count] = NULL;
	return 0;
}

static void free_list(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}

static int p_oversign(struct settings_ctx *c, const char *v)
{
	size_t count = 0;
	free_list(c->s->oversign_headers);
	c->s->oversign_headers = NULL;
	int rc = for_each_item(c, v, add_oversign, &count);
	if (c->s->oversign_headers == NULL)	/* an empty list means none */
		c->s->oversign_headers = calloc(1, sizeof(char *));
	return rc;
}

static int p_authserv_id(struct settings_ctx *c, const char *v)
{
	for (const char *p = v; *p; p++)
		if (!isgraph((unsigned char)*p) || *p == ';' || *p == '(' || *p == ')' || *p == '"')
			return SETTINGS_ERR(c, "AuthservID: not a valid authserv-id: %s", v);
	return set_string(c, &c->s->authserv_id, v);
}

/* "HOST:PORT" or "[IPv6]:PORT"; returns 0 if valid. */
static int valid_host_port(const char *v)
{
	const char *colon = strrchr(v, ':');
	char *end;
	if (colon == NULL || colon == v || (v[0] == '[' && colon[-1] != ']'))
		return -1;
	if (v[0] != '[' && memchr(v, ':', (size_t)(colon - v)))
		return -1;	/* a bare IPv6 address needs brackets */
	long port = strtol(colon + 1, &end, 10);
	return colon[1] && *end == '\0' && port > 0 && port <= 65535 ? 0 : -1;
}

static int p_resolver(struct settings_ctx *c, const char *v)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char why[256];
	/* the DNS layer's own parser, so what loads is what runs */
	if (strcasecmp(v, "system") != 0 && dns_server_parse(v, &ss, &sl, why, sizeof(why)) != 0)
		return SETTINGS_ERR(c, "Resolver: expected system or an address with optional :PORT (IPv6 as [ADDR]:PORT), got %s", v);
	return set_string(c, &c->s->resolver, v);
}

static int p_dns_timeout(struct settings_ctx *c, const char *v)
{
	long ms;
	if (settings_parse_duration_ms(v, &ms) != 0 || ms < 10 || ms > 10000)
		return SETTINGS_ERR(c, "DNSTimeout: expected a duration from 10ms to 10s, got %s", v);
	c->s->dns_timeout_ms = ms;
	return 0;
}

static int p_tag_header(struct settings_ctx *c, const char *v)
{
	if (!valid_header_name(v))
		return SETTINGS_ERR(c, "TagHeader: not a header name: %s", v);
	return set_string(c, &c->s->tag_header, v);
}

/* An IANA zone from the system's zone data: loaded once here to check it. */
static int p_timezone(struct settings_ctx *c, const char *v)
{
	char err[256];
	struct calendar_zone *z = calendar_zone_load(v, err, sizeof(err));
	if (z == NULL)
		return SETTINGS_ERR(c, "TimeZone: %s", err);
	calendar_zone_free(z);
	return set_string(c, &c->s->timezone, v);
}

static int p_metrics_listen(struct settings_ctx *c, const char *v)
{
	if (valid_host_port(v) != 0)
		return SETTINGS_ERR(c, "MetricsListen: expected HOST:PORT, got %s", v);
	return set_string(c, &c->s->metrics_listen, v);
}

/* http://HOST[:PORT]/PATH or https://...; events.c POSTs there. */
static int p_notify_url(struct settings_ctx *c, const char *v)
{
	size_t scheme = strncasecmp(v, "http://", 7) == 0 ? 7 : strncasecmp(v, "https://", 8) == 0 ? 8 : 0;
	bool ok = scheme > 0 && v[scheme] != '\0' && v[scheme] != '/' && strlen(v) < 1024;
	for (const char *p = v; ok && *p; p++)
		ok = (unsigned char)*p > ' ' && *p != 0x7f;
	if (!ok)
		return SETTINGS_ERR(c, "NotifyURL: expected http://HOST[:PORT]/PATH, got %s", v);
	return set_string(c, &c->s->notify_url, v);
}

/* The secret of Feedback-ID tokens; read (and checked) with the snapshot, feedback.h. */
static int p_feedback_key_file(struct settings_ctx *c, const char *v)
{
	return set_string(c, &c->s->feedback_key_file, v);
}

/* "none", "sasl-domain" or "file:PATH"; the file is read by authority.c. */
static int p_signing_authority(struct settings_ctx *c, const char *v)
{
	if (strcasecmp(v, "none") == 0) {
		c->s->signing_authority = SIGNING_AUTHORITY_NONE;
		return 0;
	}
	if (strcasecmp(v, "sasl-domain") == 0) {
		c->s->signing_authority = SIGNING_AUTHORITY_SASL_DOMAIN;
		return 0;
	}
	if (strncmp(v, "file:", 5) == 0 && v[5] != '\0') {
		c->s->signing_authority = SIGNING_AUTHORITY_FILE;
		return set_string(c, &c->s->signing_authority_file, v + 5);
	}
	return SETTINGS_ERR(c, "SigningAuthority: expected none, sasl-domain or file:PATH, got %s", v);
}

static const struct {
	const char *name;
	settings_parser parse;
} settings_table[] = {
	{ "Socket", p_socket },
	{ "UserID", p_user_id },
	{ "SpfUserID", p_spf_user_id },
	{ "PidFile", p_pid_file },
	{ "Umask", p_umask },
	{ "LogLevel", p_log_level },
	{ "Policy", p_policy },
	{ "Redis", p_redis },
	{ "RedisPasswordFile", p_redis_password_file },
	{ "RedisTimeout", p_redis_timeout },
	{ "RedisPrefix", p_redis_prefix },
	{ "OnStoreFailure", p_on_store_failure },
	{ "Mode", p_mode },
	{ "InternalHosts", p_internal_hosts },
	{ "KeyTable", p_key_table },
	{ "SigningTable", p_signing_table },
	{ "MultipleSignatures", p_multiple_signatures },
	{ "Canonicalization", p_canonicalization },
	{ "OversignHeaders", p_oversign },
	{ "RequireSafeKeys", p_require_safe_keys },
	{ "AuthservID", p_authserv_id },
	{ "EgressAddresses", p_egress },
	{ "Resolver", p_resolver },
	{ "DNSTimeout", p_dns_timeout },
	{ "TagHeader", p_tag_header },
	{ "MetricsListen", p_metrics_listen },
	{ "TimeZone", p_timezone },
	{ "SigningAuthority", p_signing_authority },
	{ "NotifyURL", p_notify_url },
	{ "FeedbackKeyFile", p_feedback_key_file },
};
#define SETTINGS_COUNT (sizeof(settings_table) / sizeof(settings_table[0]))
_Static_assert(SETTINGS_COUNT <= SETTINGS_NAMES_MAX, "raise SETTINGS_NAMES_MAX");

static int settings_defaults(struct settings *s)
{
	char host[256];
	struct settings_ctx c = { .s = s };

	s->umask = 007;
	s->log_level = LOG_LEVEL_INFO;
	s->redis_timeout_ms = 200;
	s->on_store_failure = STORE_FAILURE_ACCEPT;
	s->mode = MODE_ENFORCE;
	s->canon_header_relaxed = true;
	s->canon_body_relaxed = true;
	s->require_safe_keys = true;
	s->dns_timeout_ms = 2000;
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	s->socket = strdup("unix:/run/bulkmilter/bulkmilter.sock");
	s->policy_path = strdup(SYSCONFDIR "/bulkmilter/bulkmilter.policy");
	s->redis_url = strdup("redis://127.0.0.1:6379/0");
	s->redis_prefix = strdup("bm:");
	s->authserv_id = strdup(host);
	s->resolver = strdup("system");
	s->tag_header = strdup("X-Bulk-Class");
	s->oversign_headers = calloc(2, sizeof(char *));
	if (!s->socket || !s->policy_path || !s->redis_url || !s->redis_prefix ||
	    !s->authserv_id || !s->resolver || !s->tag_header || !s->oversign_headers ||
	    !(s->oversign_headers[0] = strdup("from")))
		return -1;
	struct diag scratch = { .count = 0 };
	c.errs = &scratch;
	int rc = for_each_item(&c, "127.0.0.0/8, ::1", add_internal_host, NULL);
	diag_free(&scratch);
	return rc;
}

static size_t settings_index(const char *name)
{
	size_t i;

	for (i = 0; i < SETTINGS_COUNT; i++)
		if (strcasecmp(name, settings_table[i].name) == 0)
			break;
	return i;
}

/*
 * SpfUserID (its default too) must exist and share neither user nor
 * group with UserID: a helper could then read the daemon's keys and
 * signal it. Reported at SpfUserID's line, or at UserID's when
 * SpfUserID is the default.
 */
static void check_spf_user(struct settings_ctx *c, const int seen[])
{
	int spf_line = seen[settings_index("SpfUserID")], user_line = seen[settings_index("UserID")];
	struct settings *s = c->s;
	uid_t uid, spf_uid;
	gid_t gid, spf_gid;

	if (s->spf_user_id == NULL) {
		/* not set, or refused with its error already reported */
		if ((s->spf_user_id = strdup(SETTINGS_SPF_USER_DEFAULT)) == NULL)
			SETTINGS_ERR(c, "out of memory");
		if (s->spf_user_id == NULL || spf_line != 0)
			return;
	}
	c->line = spf_line;
	if (lookup_user_spec(c, "SpfUserID", s->spf_user_id, &spf_uid, &spf_gid) != 0 ||
	    s->user_id == NULL)
		return;
	c->line = user_line;
	if (lookup_user_spec(c, "UserID", s->user_id, &uid, &gid) != 0)
		return;
	c->line = spf_line != 0 ? spf_line : user_line;
	if (spf_uid == uid || spf_gid == gid)
		SETTINGS_ERR(c, "SpfUserID %s shares %s with UserID %s: the SPF helpers must run as a user and group of their own",
			     s->spf_user_id, spf_uid == uid ? "its user" : "its group", s->user_id);
}

/* Splits "Name value # comment" in place; returns 0 for a blank line. */
static int split_line(char *line, char **name, char **value)
{
	char *p = line;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	*name = p;
	while (*p && !isspace((unsigned char)*p))
		p++;
	if (*p)
		*p++ = '\0';
	while (isspace((unsigned char)*p))
		p++;
	*value = p;
	/* a '#' after white space starts a comment; inside a word it is data */
	for (char *q = p; *q; q++) {
		if (*q == '#' && (q == p || isspace((unsigned char)q[-1]))) {
			*q = '\0';
			break;
		}
	}
	char *end = p + strlen(p);
	while (end > p && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return 1;
}

struct settings *settings_read(const char *path, struct diag *errs)
{
	struct settings *s = calloc(1, sizeof(*s));
	int seen[SETTINGS_COUNT] = { 0 };
	char line[SETTINGS_LINE_MAX + 2];

	if (s == NULL || (s->path = strdup(path)) == NULL || settings_defaults(s) != 0) {
		diag_add(errs, path, 0, "out of memory");
		settings_free(s);
		return NULL;
	}
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		diag_add(errs, path, 0, "cannot open: %s", strerror(errno));
		settings_free(s);
		return NULL;
	}
	struct settings_ctx c = { .s = s, .errs = errs, .file = path, .line = 0 };
	while (fgets(line, sizeof(line), fp)) {
		char *name, *value;
		c.line++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			SETTINGS_ERR(&c, "line longer than %d characters", SETTINGS_LINE_MAX);
			int ch;
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		if (split_line(line, &name, &value) == 0)
			continue;
		size_t i = settings_index(name);
		if (i == SETTINGS_COUNT) {
			SETTINGS_ERR(&c, "unknown setting %s", name);
			continue;
		}
		if (*value == '\0') {
			SETTINGS_ERR(&c, "%s: missing value", settings_table[i].name);
			continue;
		}
		if (seen[i]) {
			SETTINGS_ERR(&c, "%s: already set at line %d", settings_table[i].name, seen[i]);
			continue;
		}
		seen[i] = c.line;
		s->lines[i] = c.line;
		settings_table[i].parse(&c, value);
	}
	fclose(fp);
	check_spf_user(&c, seen);
	return s;
}

struct settings *settings_load(const char *path, struct diag *errs)
{
	size_t before = diag_errors(errs);
	struct settings *s = settings_read(path, errs);
	if (s != NULL && diag_errors(errs) != before) {
		settings_free(s);
		return NULL;
	}
	return s;
}

bool settings_is_internal(const struct settings *s, const struct netaddr *a)
{
	for (size_t i = 0; i < s->internal_hosts_count; i++)
		if (cidr_match(&s->internal_hosts[i], a))
			return true;
	return false;
}

int settings_set_socket(struct settings *s, const char *socket, const char *origin, struct diag *errs)
{
	struct settings_ctx c = { .s = s, .errs = errs, .file = origin, .line = 0 };
	return p_socket(&c, socket);
}

int settings_line(const struct settings *s, const char *name)
{
	size_t i = settings_index(name);
	return s != NULL && i < SETTINGS_COUNT ? s->lines[i] : 0;
}

void settings_free(struct settings *s)
{
	if (s == NULL)
		return;
	free(s->path);
	free(s->socket);
	free(s->user_id);
	free(s->spf_user_id);
	free(s->pid_file);
	free(s->policy_path);
	free(s->redis_url);
	free(s->redis_password_file);
	free(s->redis_prefix);
	free(s->internal_hosts);
	free(s->key_table);
	free(s->signing_table);
	free_list(s->oversign_headers);
	free(s->authserv_id);
	free(s->egress_addresses);
	free(s->resolver);
	free(s->tag_header);
	free(s->metrics_listen);
	free(s->timezone);
	free(s->notify_url);
	free(s->feedback_key_file);
	free(s->signing_authority_file);
	free(s);
}
