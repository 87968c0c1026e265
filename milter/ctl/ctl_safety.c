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
 * NotifyURL (waiting up to CTL_EVENTS_WAIT_MS for it to be taken); its
 * "class" is the class the policy gives the account's outbound mail (as
 * a SASL login, else as the sender), absent when no assign line does.
 *
 * suspended lists the keys with SCAN (never KEYS: a large Redis is not
 * blocked), so there is no index to keep in step with expiry; in a
 * cluster it scans every master (store_masters).
 *
 * They reach Redis through the store (safety_store_*, safety.h), so
 * sentinel:// and cluster:// work as for the daemon. Accounts are the
 * outbound accounts (the SASL login or sender as usage shows them).
 */
#include "config.h"

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

/* How long suspend/release wait for NotifyURL to take their event. */
#define CTL_EVENTS_WAIT_MS 3000
/* --reason length: what a listing shows whole (STORE_EVAL_VALUE_MAX). */
#define CTL_REASON_MAX (STORE_EVAL_VALUE_MAX - 1)

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
	if (events_pending() > 0)
		fprintf(stderr, "bulkmilterctl: NotifyURL did not take the %s event within %d s: "
			"not sent\n", e->event, CTL_EVENTS_WAIT_MS / 1000);
	events_stop();
}

/*
 * The class an account's outbound mail gets, for the event's "class"
 * (SPEC: every event names it): the account as a SASL login, else as the
 * envelope sender. NULL when no assign line takes either.
 */
static const char *account_class(const struct snapshot *s, const char *account)
{
	struct policy_facts f = { .direction = DIRECTION_OUTBOUND, .sasl = account };
	const struct policy_class *c = s->policy ? policy_lookup(s->policy, &f, NULL) : NULL;
	if (c == NULL && s->policy) {
		f.sasl = NULL;
		f.sender = account;
		c = policy_lookup(s->policy, &f, NULL);
	}
	return c ? c->name : NULL;
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
	char err[256];
	long long now, until;
	if (safety_store_suspend(s->store, DIRECTION_OUTBOUND, account, (unsigned long)for_ms, "ctl",
				 reason, &now, &until, err, sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: suspend: %s\n", err);
		return 1;
	}

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
		.event = "suspended", .account = account, .cls = account_class(s, account),
		.time_ms = now, .reason = reason, .by = "ctl", .until_ms = until,
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
	char err[256];
	bool released;
	if (safety_store_release(s->store, DIRECTION_OUTBOUND, account, &released, err,
				 sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: release: %s\n", err);
		return 1;
	}
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"released\":%s}\n", released ? "true" : "false");
	} else {
		printf(released ? "released %s\n" : "%s was not suspended\n", account);
	}
	if (released) {
		struct event e = { .event = "released", .account = account,
				   .cls = account_class(s, account), .by = "ctl" };
		send_event(s->settings, &e);
	}
	return 0;
}

static int by_account(const void *a, const void *b)
{
	return strcmp(((const struct safety_suspension *)a)->account,
		      ((const struct safety_suspension *)b)->account);
}

static int cmd_suspended(struct snapshot *s, bool json, int argc)
{
	if (argc != 1) {
		fprintf(stderr, "usage: bulkmilterctl suspended\n");
		return 2;
	}
	const char *prefix = s->settings->redis_prefix ? s->settings->redis_prefix : STORE_DEFAULT_PREFIX;
	struct safety_suspension *list;
	size_t n;
	char err[256];
	if (safety_store_list(s->store, prefix, &list, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "bulkmilterctl: suspended: %s\n", err);
		return 1;
	}
	qsort(list, n, sizeof(*list), by_account);
	if (json)
		printf("{\"suspended\":[");
	for (size_t i = 0; i < n; i++) {
		char since[40], until[40] = "";
		rfc3339(list[i].since_ms, since, sizeof(since));
		if (list[i].until_ms)
			rfc3339(list[i].until_ms, until, sizeof(until));
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
			       until[0] ? until : "released", list[i].by, list[i].reason[0] ? ": " : "",
			       list[i].reason);
		}
	}
	if (json)
		printf("]}\n");
	else if (n == 0)
		printf("no account is suspended\n");
	free(list);
	return 0;
}

int ctl_safety(struct snapshot *s, bool json, int argc, char **argv)
{
	if (strcmp(argv[0], "suspend") == 0)
		return cmd_suspend(s, json, argc, argv);
	if (strcmp(argv[0], "release") == 0)
		return cmd_release(s, json, argc, argv);
	return cmd_suspended(s, json, argc);
}

void ctl_safety_explain(const struct policy_class *c, bool json)
{
	if (json) {
		printf(",\"notify\":[");
		for (size_t i = 0; i < c->notify_count; i++)
			printf("%s%u", i ? "," : "", c->notify_pct[i]);
		printf("],\"suspended\":\"%s\",\"suspend_if\":[", policy_action_name(c->suspended));
		for (size_t i = 0; i < c->suspend_if_count; i++) {
			printf("%s", i ? "," : "");
			json_str(c->suspend_if[i].text);
		}
		printf("],\"suspend_for_seconds\":%lu", c->suspend_for_ms / 1000);
		return;
	}
	if (c->notify_count) {
		printf("notify:");
		for (size_t i = 0; i < c->notify_count; i++)
			printf(" %u%%", c->notify_pct[i]);
		printf(" of each of the account's rates (an event to NotifyURL)\n");
	}
	printf("suspended: %s%s%s\n", policy_action_name(c->suspended), c->suspended_text[0] ? " " : "",
	       c->suspended_text);
	for (size_t i = 0; i < c->suspend_if_count; i++)
		printf("suspend-if: %s\n", c->suspend_if[i].text);
	if (c->suspend_if_count)
		printf("suspend-for: %lus\n", c->suspend_for_ms / 1000);
}
