/*
 * NAME
 *	settings - bulkmilter.conf: parsed, validated, immutable
 * SYNOPSIS
 *	struct settings *settings_load(const char *path, struct diag *errs);
 *	struct settings *settings_read(const char *path, struct diag *errs);
 *	void settings_free(struct settings *s);
 *	int settings_parse_duration_ms(const char *text, long *ms);
 *	int settings_line(const struct settings *s, const char *name);
 *	int settings_set_socket(struct settings *s, const char *socket, const char *origin,
 *				struct diag *errs);
 * DESCRIPTION
 *	One setting a line, "Name value", '#' starts a comment, names are
 *	case-insensitive (OpenDKIM's style). Every unknown name, bad value or
 *	repeated name is a FILE:LINE error in errs; settings_load returns
 *	NULL when there was any error, so a half-valid file is never used.
 *	settings_read is the same but returns what it read despite errors
 *	(NULL only when the file cannot be read): for reporting the errors of
 *	the files the settings name too, never for running.
 *	settings_line gives the line that set a setting, so the modules that
 *	check a value later (the Redis URL, the password and key files) still
 *	report FILE:LINE.
 *	Settings not in the file take the defaults of SPEC.md. Paths are kept
 *	as written; files they name (policy, keys, password) are read by the
 *	modules that own them. UserID and SpfUserID name users and groups
 *	that must exist; SpfUserID (default "nobody") may be neither root
 *	nor share UserID's user or group, as the SPF helpers must not read
 *	what the daemon can.
 *
 *	(The file is called settings.h because autoconf owns config.h.)
 */
#ifndef BM_SETTINGS_H
#define BM_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "diag.h"
#include "netaddr.h"

enum store_failure_action { STORE_FAILURE_ACCEPT, STORE_FAILURE_TEMPFAIL };
enum run_mode { MODE_ENFORCE, MODE_MONITOR };
/* SigningAuthority: who may get a signature for a From domain (authority.h). */
enum signing_authority_mode {
	SIGNING_AUTHORITY_NONE,		/* OpenDKIM's behaviour: whatever the SigningTable matches */
	SIGNING_AUTHORITY_SASL_DOMAIN,	/* the login's organizational domain */
	SIGNING_AUTHORITY_FILE,		/* file:PATH, "LOGIN-OR-GLOB DOMAIN..." lines */
};

/* Upper bound on list settings (InternalHosts, EgressAddresses, ...). */
#define SETTINGS_LIST_MAX 4096
/* SpfUserID when the file does not set it (SPEC.md). */
#define SETTINGS_SPF_USER_DEFAULT "nobody"
/* Room for the line of every setting name (settings.c checks the count). */
#define SETTINGS_NAMES_MAX 48

struct settings {
	char *path;			/* the file this came from */
	char *socket;			/* unix:PATH, inet:PORT@HOST, inet6:PORT@HOST */
	char *user_id;			/* "user[:group]" or NULL */
	char *spf_user_id;		/* "user[:group]" of the SPF helpers */
	char *pid_file;			/* or NULL */
	mode_t umask;
	int log_level;			/* enum log_level */
	char *policy_path;

	char *redis_url;		/* may hold a password: never log it */
	char *redis_password_file;	/* or NULL */
	long redis_timeout_ms;
	char *redis_prefix;
	enum store_failure_action on_store_failure;
	enum run_mode mode;

	struct cidr *internal_hosts;
	size_t internal_hosts_count;

	char *key_table;		/* or NULL: no signing */
	char *signing_table;		/* "PATH" or "refile:PATH", or NULL */
	bool multiple_signatures;
	bool canon_header_relaxed;	/* Canonicalization header/body */
	bool canon_body_relaxed;
	char **oversign_headers;	/* NULL-terminated, lower case */
	bool require_safe_keys;

	char *authserv_id;
	struct netaddr *egress_addresses;
	size_t egress_addresses_count;
	char *resolver;			/* "system" or "HOST[:PORT]" */
	long dns_timeout_ms;		/* per DNS query */
	char *tag_header;
	char *metrics_listen;		/* "HOST:PORT" or NULL */
	char *timezone;			/* TimeZone (calendar.h), NULL: UTC */
	char *notify_url;		/* NotifyURL (events.h) or NULL */
	char *feedback_key_file;	/* FeedbackKeyFile (feedback.h) or NULL: the secret in Redis */
	enum signing_authority_mode signing_authority;
	char *signing_authority_file;	/* SIGNING_AUTHORITY_FILE: the PATH */
	int lines[SETTINGS_NAMES_MAX];	/* settings_line(): where each was set */
};

struct settings *settings_load(const char *path, struct diag *errs);
struct settings *settings_read(const char *path, struct diag *errs);
void settings_free(struct settings *s);
/* "200ms", "2s", "5m", "1h", "1d"; a bare number is seconds. 0 or -1. */
int settings_parse_duration_ms(const char *text, long *ms);
/* True when the address is in InternalHosts. */
bool settings_is_internal(const struct settings *s, const struct netaddr *a);
/* Socket from elsewhere (bulkmilter -p), checked as the setting; errors name origin. */
int settings_set_socket(struct settings *s, const char *socket, const char *origin, struct diag *errs);
/* The line of the file that set NAME, 0 when it kept its default. */
int settings_line(const struct settings *s, const char *name);

#endif
