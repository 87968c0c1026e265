/*
 * ctl_safety - bulkmilterctl's account-safety commands.
 *
 *	bulkmilterctl [--json] suspend ACCOUNT [--for DURATION] [--reason TEXT]
 *	bulkmilterctl [--json] release ACCOUNT
 *	bulkmilterctl [--json] suspended
 *
 * A suspension is one Redis hash per account, "PREFIX{ACCOUNT}:susp"
 * (safety.h): since, until (0: until released), by ("ctl" or the rule
 * that tripped), reason, account; it expires at until. Every milter's
 * MAIL FROM script reads it, so a suspension made here holds on the
 * whole fleet with the next message, and release ends it as fast.
 * suspend and release send a "suspended" / "released" event to
 * NotifyURL (waiting up to CTL_EVENTS_WAIT_MS for it to be taken).
 *
 * suspended lists the keys with SCAN (never KEYS: a large Redis is not
 * blocked), so there is no index to keep in step with expiry.
 *
 * These commands speak to Redis with hiredis directly, on the Redis URL
 * and password of the configuration: they are not the mail path, and a
 * plain command per step reads better than a script. Accounts are the
 * outbound accounts (the SASL login or sender as usage shows them).
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl_safety.h"
#include "events.h"
#include "policy.h"
#include "safety.h"
#include "store.h"
#include "store_redis.h"

/* How long suspend/release wait for NotifyURL to take their event. */
#define CTL_EVENTS_WAIT_MS 3000
/* Suspensions suspended lists; more is refused, not cut silently. */
#define CTL_SUSPENDED_MAX 100000
/* --reason length. */
#define CTL_REASON_MAX 200

bool ctl_safety_command(const char *cmd)
{
	return strcmp(cmd, "suspend") == 0 || strcmp(cmd, "release") == 0
	       || strcmp(cmd, "suspended") == 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void rfc3339(long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A connection to the configured Redis, authenticated, on its db; NULL after printing why. */
static redisContext *ctl_connect(const struct settings *st)
{
	struct store_redis_url url;
	char err[256];
	redisContext *c = NULL;
	long ms = st->redis_timeout_ms > 0 ? st->redis_timeout_ms : 200;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (store_redis_parse_url(st->redis_url ? st->redis_url : STORE_DEFAULT_URL, &url, err,
				  sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: Redis: %s\n", err);
		return NULL;
	}
	if (st->redis_password_file
	    && store_redis_read_password(st->redis_password_file, url.password, sizeof(url.password),
					 err, sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: Redis: %s\n", err);
		goto out;
	}
	c = url.unix_socket ? redisConnectUnixWithTimeout(url.path, tv)
			    : redisConnectWithTimeout(url.host, url.port, tv);
	if (c == NULL || c->err) {
		fprintf(stderr, "bulkmilterctl: Redis: cannot connect: %s\n", c ? c->errstr : "out of memory");
		goto fail;
	}
	redisSetTimeout(c, tv);
	redisReply *r;
	if (url.password[0]) {
		r = url.user[0] ? redisCommand(c, "AUTH %s %s", url.user, url.password)
				: redisCommand(c, "AUTH %s", url.password);
		bool ok = r && r->type != REDIS_REPLY_ERROR;
		freeReplyObject(r);
		if (!ok) {
			fprintf(stderr, "bulkmilterctl: Redis: authentication refused\n");
			goto fail;
		}
	}
	r = redisCommand(c, "SELECT %d", url.db);
	bool ok = r && r->type != REDIS_REPLY_ERROR;
	freeReplyObject(r);
	if (ok)
		goto out;
	fprintf(stderr, "bulkmilterctl: Redis: SELECT %d failed\n", url.db);
fail:
	if (c)
		redisFree(c);
	c = NULL;
out:
	explicit_bzero(&url, sizeof(url));
	return c;
}

/* A reply that is an error or missing: print and true. */
static bool bad_reply(redisContext *c, redisReply *r)
{
	if (r == NULL) {
		fprintf(stderr, "bulkmilterctl: Redis: %s\n", c->errstr);
		return true;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "bulkmilterctl: Redis: %s\n", r->str);
		return true;
	}
	return false;
}

/* The Redis server clock in ms (the clock the scripts use). */
static long long redis_now_ms(redisContext *c)
{
	redisReply *r = redisCommand(c, "TIME");
	long long now = -1;

	if (!bad_reply(c, r) && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
		now = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
	freeReplyObject(r);
	return now;
}

static void send_event(const struct settings *st, const struct event *e)
{
	char err[128];

	if (st->notify_url == NULL)
		return;
	if (events_start(err, sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: %s\n", err);
		return;
	}
	events_set_url(st->notify_url);
	events_post(e);
	events_flush(CTL_EVENTS_WAIT_MS);
	events_stop();
}

static int cmd_suspend(struct snapshot *s, bool json, int argc, char **argv)
{
	const char *account = NULL, *reason = "";
	long for_ms = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
			if (settings_parse_duration_ms(argv[++i], &for_ms) != 0 || for_ms < 1000) {
				fprintf(stderr, "bulkmilterctl: suspend: --for: expected a duration of 1s or more, got %s\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
			reason = argv[++i];
			if (strlen(reason) > CTL_REASON_MAX) {
				fprintf(stderr, "bulkmilterctl: suspend: --reason longer than %d characters\n", CTL_REASON_MAX);
				return 2;
			}
		} else if (argv[i][0] != '-' && account == NULL) {
			account = argv[i];
		} else {
			fprintf(stderr, "usage: bulkmilterctl suspend ACCOUNT [--for DURATION] [--reason TEXT]\n");
			return 2;
		}
	}
	if (account == NULL || strlen(account) >= POLICY_ACCOUNT_MAX) {
		fprintf(stderr, "usage: bulkmilterctl suspend ACCOUNT [--for DURATION] [--reason TEXT]\n");
		return 2;
	}
	redisContext *c = ctl_connect(s->settings);
	if (c == NULL)
		return 1;
	long long now = redis_now_ms(c);
	if (now < 0) {
		redisFree(c);
		return 1;
	}
	long long until = for_ms ? now + for_ms : 0;
	const char *prefix = s->settings->redis_prefix ? s->settings->redis_prefix : STORE_DEFAULT_PREFIX;
	char key[POLICY_ACCOUNT_MAX + 64];
	snprintf(key, sizeof(key), "%s{%s}" SAFETY_SUSPENSION_SUFFIX, prefix, account);
	redisAppendCommand(c, "MULTI");
	redisAppendCommand(c, "DEL %s", key);
	redisAppendCommand(c, "HSET %s since %lld until %lld by ctl reason %s account %s", key, now,
			   until, reason, account);
	if (until)
		redisAppendCommand(c, "PEXPIREAT %s %lld", key, until);
	redisAppendCommand(c, "EXEC");
	int rc = 0;
	for (int i = 0; i < (until ? 5 : 4); i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || bad_reply(c, r))
			rc = 1;
		freeReplyObject(r);
		if (rc)
			break;
	}
	redisFree(c);
	if (rc)
		return rc;

	char when[40] = "";
	if (until)
		rfc3339(until, when, sizeof(when));
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"suspended\":true,\"until\":");
		if (until)
			json_str(when);
		else
			printf("null");
		printf(",\"reason\":");
		json_str(reason);
		printf("}\n");
	} else {
		printf("suspended %s %s%s%s%s\n", account, until ? "until " : "until released",
		       when, reason[0] ? ": " : "", reason);
	}
	struct event e = {
		.event = "suspended", .account = account, .time_ms = now, .reason = reason,
		.by = "ctl", .until_ms = until,
	};
	send_event(s->settings, &e);
	return 0;
}

static int cmd_release(struct snapshot *s, bool json, int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-' || strlen(argv[1]) >= POLICY_ACCOUNT_MAX) {
		fprintf(stderr, "usage: bulkmilterctl release ACCOUNT\n");
		return 2;
	}
	const char *account = argv[1];
	redisContext *c = ctl_connect(s->settings);
	if (c == NULL)
		return 1;
	const char *prefix = s->settings->redis_prefix ? s->settings->redis_prefix : STORE_DEFAULT_PREFIX;
	char key[POLICY_ACCOUNT_MAX + 64];
	snprintf(key, sizeof(key), "%s{%s}" SAFETY_SUSPENSION_SUFFIX, prefix, account);
	redisReply *r = redisCommand(c, "DEL %s", key);
	if (bad_reply(c, r)) {
		freeReplyObject(r);
		redisFree(c);
		return 1;
	}
	bool released = r->integer > 0;
	freeReplyObject(r);
	redisFree(c);
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"released\":%s}\n", released ? "true" : "false");
	} else {
		printf(released ? "released %s\n" : "%s was not suspended\n", account);
	}
	if (released) {
		struct event e = { .event = "released", .account = account, .by = "ctl" };
		send_event(s->settings, &e);
	}
	return 0;
}

struct suspension {
	char *account, *by, *reason;
	long long since, until;
};

static int by_account(const void *a, const void *b)
{
	return strcmp(((const struct suspension *)a)->account, ((const struct suspension *)b)->account);
}

/* The SCAN pattern of every suspension key: the prefix with its glob characters escaped. */
static void scan_pattern(const char *prefix, char *buf, size_t len)
{
	size_t n = 0;

	for (const char *p = prefix; *p && n + 2 < len; p++) {
		if (strchr("*?[]\\", *p))
			buf[n++] = '\\';
		buf[n++] = *p;
	}
	snprintf(buf + n, len - n, "{*}" SAFETY_SUSPENSION_SUFFIX);
}

static char *dup_str(const redisReply *r)
{
	return strdup(r && r->type == REDIS_REPLY_STRING ? r->str : "");
}

static int cmd_suspended(struct snapshot *s, bool json, int argc)
{
	if (argc != 1) {
		fprintf(stderr, "usage: bulkmilterctl suspended\n");
		return 2;
	}
	redisContext *c = ctl_connect(s->settings);
	if (c == NULL)
		return 1;
	const char *prefix = s->settings->redis_prefix ? s->settings->redis_prefix : STORE_DEFAULT_PREFIX;
	char pattern[512];
	scan_pattern(prefix, pattern, sizeof(pattern));

	struct suspension *list = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	char cursor[32] = "0";
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
		if (bad_reply(c, r) || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			freeReplyObject(r);
			rc = 1;
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		redisReply *keys = r->element[1];
		for (size_t i = 0; i < keys->elements && rc == 0; i++) {
			redisReply *h = redisCommand(c, "HMGET %s account since until by reason",
						     keys->element[i]->str);
			if (bad_reply(c, h) || h->type != REDIS_REPLY_ARRAY || h->elements != 5) {
				rc = 1;
			} else if (h->element[0]->type == REDIS_REPLY_STRING) {	/* not expired meanwhile */
				if (n == cap) {
					cap = cap ? 2 * cap : 64;
					struct suspension *grown = cap <= CTL_SUSPENDED_MAX
						? realloc(list, cap * sizeof(*list)) : NULL;
					if (grown == NULL) {
						fprintf(stderr, "bulkmilterctl: more than %d suspensions, or out of memory\n",
							CTL_SUSPENDED_MAX);
						rc = 1;
						freeReplyObject(h);
						break;
					}
					list = grown;
				}
				list[n++] = (struct suspension){
					dup_str(h->element[0]), dup_str(h->element[3]), dup_str(h->element[4]),
					h->element[1]->str ? atoll(h->element[1]->str) : 0,
					h->element[2]->str ? atoll(h->element[2]->str) : 0,
				};
			}
			freeReplyObject(h);
		}
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	redisFree(c);

	if (rc == 0) {
		qsort(list, n, sizeof(*list), by_account);
		if (json)
			printf("{\"suspended\":[");
		for (size_t i = 0; i < n; i++) {
			char since[40], until[40] = "";
			rfc3339(list[i].since, since, sizeof(since));
			if (list[i].until)
				rfc3339(list[i].until, until, sizeof(until));
			if (json) {
				printf("%s{\"account\":", i ? "," : "");
				json_str(list[i].account);
				printf(",\"since\":");
				json_str(since);
				printf(",\"until\":");
				if (until[0])
					json_str(until);
				else
					printf("null");
				printf(",\"by\":");
				json_str(list[i].by);
				printf(",\"reason\":");
				json_str(list[i].reason);
				printf("}");
			} else {
				printf("%s since %s until %s by %s%s%s\n", list[i].account, since,
				       until[0] ? until : "released", list[i].by,
				       list[i].reason[0] ? ": " : "", list[i].reason);
			}
		}
		if (json)
			printf("]}\n");
		else if (n == 0)
			printf("no account is suspended\n");
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].account);
		free(list[i].by);
		free(list[i].reason);
	}
	free(list);
	return rc;
}

int ctl_safety(struct snapshot *s, bool json, int argc, char **argv)
{
	if (strcmp(argv[0], "suspend") == 0)
		return cmd_suspend(s, json, argc, argv);
	if (strcmp(argv[0], "release") == 0)
		return cmd_release(s, json, argc, argv);
	return cmd_suspended(s, json, argc);
}
