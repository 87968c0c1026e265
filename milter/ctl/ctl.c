/*
 * bulkmilterctl - what ops ask of bulkmilter without sending mail.
 *
 *	bulkmilterctl [-c FILE] [--json] check
 *	bulkmilterctl [-c FILE] [--json] explain [--sasl X] [--sender Y] [--ip Z] [--local] [--rcpts N]
 *		[--from ADDRESS-OR-DOMAIN]
 *	bulkmilterctl [-c FILE] [--json] usage [--inbound] ACCOUNT
 *	bulkmilterctl [-c FILE] [--json] reset [--inbound] [--scope account|domain|class|all] ACCOUNT
 *	bulkmilterctl [-c FILE] [--json] stats
 *	bulkmilterctl [-c FILE] [--json] suspend|release ACCOUNT, suspended (ctl_safety.c)
 *	bulkmilterctl [-c FILE] [--json] suppress add|del|list|import|export ... (ctl_suppress.c)
 *	bulkmilterctl [-c FILE] [--json] dkim check [DOMAIN]
 *	bulkmilterctl [--json] dkim keygen --algorithm rsa-2048|ed25519 DOMAIN SELECTOR DIR
 *
 * It reads the same config and policy as the daemon (a snapshot without
 * services), so what it says is what the daemon would do after a reload.
 * Only usage and reset talk to Redis; stats asks the running daemon
 * through MetricsListen.
 *
 * explain takes the direction the daemon would (direction.h): outbound
 * with --sasl, an --ip in InternalHosts or --local (local submission,
 * sendmail(1): client 127.0.0.1 unless --ip says otherwise), else
 * inbound; for local submission it shows the action an over-limit or
 * bulk-noncompliant tempfail or reject becomes (verdict.h). usage and reset reach the
 * buckets of the outbound account ACCOUNT; with --inbound, those of the
 * inbound account of that name, which are kept apart (ratelimit.h).
 * usage shows every bucket and calendar window in use in every scope,
 * and every bucket of the class the account would be assigned to (found
 * as explain finds it: the account as SASL login, else as sender), with
 * used 0 when full, with when it resets in its class's zone (RFC 3339
 * with --json); one round trip. reset takes the account's buckets (and
 * volume windows), or with --scope those of its domain (an account
 * without a domain: exit 1), of its classes' class scope, or all of
 * them; its JSON says the scope reset.
 * explain --from says whether that From may be signed for the login
 * (SigningAuthority). The dkim commands are ctl_dkim.c's.
 *
 * --json may also follow the command or sit among its arguments
 * ("usage --json ACCOUNT"), except as the value of an option that takes
 * one (--reason --json is a reason). A command given arguments it does
 * not take is a usage error: exit status 2.
 * DIAGNOSTICS
 *	Exit 0, 1 on an error (config, Redis, daemon), 2 on a usage error.
 *	Errors go to stderr; with --json, a command that fails without
 *	writing its own JSON also prints {"error":"MESSAGE"} on stdout (the
 *	output is held in temporary files until the command ends).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bulk.h"
#include "calendar.h"
#include "ctl_safety.h"
#include "ctl_suppress.h"
#include "ctl_dkim.h"
#include "direction.h"
#include "netaddr.h"
#include "policy.h"
#include "ratelimit.h"
#include "snapshot.h"
#include "verdict.h"

#define DEFAULT_CONFIG SYSCONFDIR "/bulkmilter/bulkmilter.conf"
#define USAGE_MAX 256	/* buckets one account can show */

static bool json;

static void usage(void)
{
	fprintf(stderr,
		"usage: bulkmilterctl [-c FILE] [--json] check\n"
		"       bulkmilterctl [-c FILE] [--json] explain [--sasl X] [--sender Y] [--ip Z] [--local] [--rcpts N] [--from F]\n"
		"       bulkmilterctl [-c FILE] [--json] usage [--inbound] ACCOUNT\n"
		"       bulkmilterctl [-c FILE] [--json] reset [--inbound] [--scope account|domain|class|all] ACCOUNT\n"
		"       bulkmilterctl [-c FILE] [--json] stats\n"
		"       bulkmilterctl [-c FILE] [--json] suspend ACCOUNT [--for DURATION] [--reason TEXT]\n"
		"       bulkmilterctl [-c FILE] [--json] release ACCOUNT\n"
		"       bulkmilterctl [-c FILE] [--json] suspended\n"
		"       bulkmilterctl [-c FILE] [--json] suppress add ACCOUNT ADDRESS [--for DURATION]\n"
		"       bulkmilterctl [-c FILE] [--json] suppress del ACCOUNT ADDRESS\n"
		"       bulkmilterctl [-c FILE] [--json] suppress list|export ACCOUNT\n"
		"       bulkmilterctl [-c FILE] [--json] suppress import ACCOUNT FILE [--for DURATION]\n"
		"       bulkmilterctl [-c FILE] [--json] dkim check [DOMAIN]\n"
		"       bulkmilterctl [--json] dkim keygen --algorithm rsa-2048|ed25519 DOMAIN SELECTOR DIR\n");
}

/* Prints s as a JSON string literal. */
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

static int cmd_check(struct snapshot *s, struct diag *errs)
{
	if (s == NULL) {
		if (json) {
			printf("{\"ok\":false,\"errors\":[");
			for (size_t i = 0; i < errs->count; i++) {
				if (i)
					putchar(',');
				json_str(errs->lines[i]);
			}
			printf("]}\n");
		} else {
			diag_print(errs, stdout);
		}
		return 1;
	}
	if (json)
		printf("{\"ok\":true}\n");
	else
		printf("config OK\n");
	return 0;
}

/*
 * One rate of a class as explain shows it: its window or bucket, its scope
 * (whose bucket: the account's, the account's domain's, the class's) and
 * its destinations.
 */
static void print_rates(const char *kind, const struct policy_class *c, const struct policy_rate *r,
			size_t n, const char *account, bool *first)
{
	for (size_t i = 0; i < n; i++) {
		const char *zone = calendar_zone_name(c->zone);
		const char *period = calendar_period_name(r[i].calendar);
		const char *at = account ? strrchr(account, '@') : NULL;
		char whose[POLICY_ACCOUNT_MAX + 64];
		switch (r[i].scope) {
		case SCOPE_DOMAIN:
			snprintf(whose, sizeof(whose), "domain %s", at && at[1] ? at + 1 : "(none: the account has no domain)");
			break;
		case SCOPE_CLASS:
			snprintf(whose, sizeof(whose), "class %s", c->name);
			break;
		default:
			snprintf(whose, sizeof(whose), "account %s", account ? account : "(none)");
			break;
		}
		if (json) {
			printf("%s{\"kind\":\"%s\",\"rate\":", *first ? "" : ",", kind);
			json_str(r[i].text);
			printf(",\"count\":%lu,", r[i].count);
			if (period) {
				printf("\"window\":\"%s\",\"timezone\":", period);
				json_str(zone);
			} else {
				printf("\"period_seconds\":%.3f", r[i].period_ms / 1000.0);
			}
			printf(",\"scope\":\"%s\",\"to\":[", policy_scope_name(r[i].scope));
			for (size_t j = 0; j < r[i].to_count; j++) {
				printf("%s", j ? "," : "");
				json_str(r[i].to[j]);
			}
			printf("]}");
		} else {
			char d[512];
			policy_rate_describe(&r[i], d, sizeof(d));
			if (period)
				printf("  %-10s %s (%lu per calendar %s from local midnight%s in %s; bucket of %s)\n",
				       kind, d, r[i].count, period,
				       r[i].calendar == CALENDAR_WEEK ? " on Monday" :
				       r[i].calendar == CALENDAR_MONTH ? " on the 1st" : "", zone, whose);
			else
				printf("  %-10s %s (%lu per %.0fs, refills one every %.3fs; bucket of %s)\n", kind, d,
				       r[i].count, r[i].period_ms / 1000.0,
				       (double)r[i].period_ms / 1000.0 / (double)r[i].count, whose);
			if (r[i].to_count)
				printf("  %-10s   only recipients at those domains; over it they get \"Sending rate to DOMAIN exceeded\"\n", "");
		}
		*first = false;
	}
}

static const char *check_names[] = { "dkim-aligned", "spf-aligned", "list-unsubscribe", "dmarc-record" };

/* Bulk rules that depend on the message itself, not on the facts given. */
static void describe_rule(const struct policy_bulk_rule *r, char *buf, size_t len)
{
	switch (r->kind) {
	case BULK_ALWAYS: snprintf(buf, len, "always"); break;
	case BULK_NEVER: snprintf(buf, len, "never"); break;
	case BULK_RECIPIENTS: snprintf(buf, len, "recipients >= %lu", r->min); break;
	case BULK_HEADER: snprintf(buf, len, "header %s", r->header); break;
	case BULK_PRECEDENCE: snprintf(buf, len, "precedence"); break;
	case BULK_VOLUME: snprintf(buf, len, "volume >= %s", r->volume.text); break;
	}
}

/* What action becomes on this message; note says how when it changed. */
static const char *effective(const struct verdict_scope *scope, enum policy_action action,
			     char *note, size_t len)
{
	enum policy_action eff = verdict_effective_action(scope, action);
	note[0] = '\0';
	if (eff != action)
		snprintf(note, len, "local submission: %s becomes %s", policy_action_name(action),
			 policy_action_name(eff));
	return policy_action_name(eff);
}

static int cmd_explain(struct snapshot *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sasl", required_argument, NULL, 's' }, { "sender", required_argument, NULL, 'f' },
		{ "ip", required_argument, NULL, 'i' }, { "rcpts", required_argument, NULL, 'r' },
		{ "local", no_argument, NULL, 'l' }, { "from", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sasl = "", *sender = "", *from = NULL;
	struct netaddr ip = { 0 };
	unsigned long rcpts = 1;
	bool local = false;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 's': sasl = optarg; break;
		case 'f': sender = optarg; break;
		case 'l': local = true; break;
		case 'F': from = optarg; break;
		case 'i':
			if (netaddr_parse(optarg, &ip) != 0) {
				fprintf(stderr, "explain: not an IP address: %s\n", optarg);
				return 2;
			}
			break;
		case 'r':
			errno = 0;
			rcpts = strtoul(optarg, &end, 10);
			/* strtoul takes "-1" as ULONG_MAX: digits only, and bounded */
			if (!isdigit((unsigned char)*optarg) || *end || errno || rcpts > 1000000000UL) {
				fprintf(stderr, "explain: --rcpts needs a number from 0 to 1000000000\n");
				return 2;
			}
			break;
		default:
			usage();
			return 2;
		}
	}
	if (local && ip.family == 0)
		netaddr_parse("127.0.0.1", &ip);	/* what Postfix's cleanup says for sendmail(1) */
	bool internal = ip.family && settings_is_internal(s->settings, &ip);
	struct policy_facts f = {
		.direction = direction_decide(sasl, internal, local),
		.sasl = sasl, .sender = sender, .client = ip.family ? &ip : NULL,
	};
	/* the daemon's rule for local submission, in Mode enforce */
	struct verdict_scope scope = { .mode = MODE_ENFORCE, .local_submission = local };
	const struct policy_assign *why = NULL;
	const struct policy_class *c = policy_lookup(s->policy, &f, &why);
	char matched[512], account[POLICY_ACCOUNT_MAX], bulk_why[128] = "";
	policy_assign_describe(why, matched, sizeof(matched));
	bool has_account = c && policy_account(c, &f, account, sizeof(account)) == 0;
	struct bulk_facts bf = { .recipients = rcpts };
	bool bulk = c && bulk_classify(c, &bf, bulk_why, sizeof(bulk_why));
	const char *dir = direction_name(f.direction);
	char over_note[96], bulk_note[96];
	const char *over = c ? effective(&scope, c->over_limit, over_note, sizeof(over_note)) : NULL;
	const char *noncompliant = c ? effective(&scope, c->bulk_noncompliant, bulk_note, sizeof(bulk_note))
				     : NULL;

	if (json) {
		printf("{\"direction\":\"%s\",\"class\":", dir);
		if (c) json_str(c->name); else printf("null");
		printf(",\"matched\":");
		json_str(matched);
		printf(",\"account\":");
		if (has_account) json_str(account); else printf("null");
		printf(",\"rates\":[");
		bool first = true;
		if (c) {
			print_rates("messages", c, c->messages, c->messages_count,
				    has_account ? account : NULL, &first);
			print_rates("recipients", c, c->recipients, c->recipients_count,
				    has_account ? account : NULL, &first);
		}
		printf("],\"over_limit\":");
		if (c) json_str(over); else printf("null");
		printf(",\"bulk\":%s,\"bulk_reason\":", bulk ? "true" : "false");
		json_str(bulk ? bulk_why : "");
		printf(",\"bulk_conditions\":[");
		for (size_t i = 0; c && i < c->bulk_count; i++) {
			char d[128];
			describe_rule(&c->bulk[i], d, sizeof(d));
			if (i) putchar(',');
			json_str(d);
		}
		printf("],\"bulk_require\":[");
		first = true;
		for (size_t i = 0; c && i < 4; i++) {
			if (c->bulk_require & (1u << i)) {
				printf("%s\"%s\"", first ? "" : ",", check_names[i]);
				first = false;
			}
		}
		printf("],\"bulk_noncompliant\":");
		if (c) json_str(noncompliant); else printf("null");
		printf(",\"local_submission\":%s", local ? "true" : "false");
		if (from)
			ctl_dkim_explain(s, f.direction == DIRECTION_OUTBOUND, sasl, from, true);
		if (c)
			ctl_safety_explain(c, true);
		printf("}\n");
		return 0;
	}
	printf("direction: %s\n", dir);
	if (from)
		ctl_dkim_explain(s, f.direction == DIRECTION_OUTBOUND, sasl, from, false);
	if (local)
		printf("local submission: recipients are charged at end of message\n");
	if (c == NULL) {
		printf("class: none (%s): not rate-limited, not bulk\n", matched);
		return 0;
	}
	printf("class: %s (%s)\n", c->name, matched);
	printf("account: %s\n", has_account ? account : "none (the message has none of the account sources: not rate-limited)");
	printf("rates:%s\n", c->messages_count + c->recipients_count ? "" : " none");
	bool first = true;
	print_rates("messages", c, c->messages, c->messages_count, has_account ? account : NULL, &first);
	print_rates("recipients", c, c->recipients, c->recipients_count, has_account ? account : NULL,
		    &first);
	if (c->messages_count + c->recipients_count)
		printf("over-limit: %s%s%s%s%s%s\n", over, c->over_limit_text[0] ? " " : "",
		       c->over_limit_text, over_note[0] ? " (" : "", over_note, over_note[0] ? ")" : "");
	printf("bulk: %s (%s, with %lu recipient%s)\n", bulk ? "yes" : "no", bulk_why, rcpts,
	       rcpts == 1 ? "" : "s");
	for (size_t i = 0; i < c->bulk_count; i++) {
		char d[128];
		describe_rule(&c->bulk[i], d, sizeof(d));
		printf("  bulk when: %s\n", d);
	}
	if (c->bulk_require) {
		printf("bulk-require:");
		for (size_t i = 0; i < 4; i++)
			if (c->bulk_require & (1u << i))
				printf(" %s", check_names[i]);
		printf(" (bulk-noncompliant %s%s%s)\n", noncompliant, bulk_note[0] ? "; " : "", bulk_note);
	}
	if (f.direction == DIRECTION_INBOUND)
		printf("spf-fail: %s\n", policy_action_name(c->spf_fail));
	ctl_safety_explain(c, false);
	return 0;
}

/* When a bucket is full again (a window: when it ends), in its class's zone. */
static void usage_resets(const struct ratelimit_usage *u, char *buf, size_t len)
{
	long long ms = u->resets_ms;
	/* a bucket refills to the millisecond; show the second it is full by */
	calendar_rfc3339(u->cls->zone, (ms + (u->rate->calendar ? 0 : 999)) / 1000, buf, len);
}

/*
 * The class account would be assigned to, found as explain finds it: the
 * account as the SASL login (outbound only), else as the envelope sender
 * (and as the client, when it is an address). A class counts only when
 * its account line gives back this account. Returns 1 with *out, or 0.
 */
static size_t usage_class(const struct snapshot *s, enum policy_direction dir, const char *account,
			  const struct policy_class **out)
{
	struct netaddr ip = { 0 };
	bool is_ip = netaddr_parse(account, &ip) == 0;
	const struct policy_facts tries[2] = {
		{ .direction = dir, .sasl = account, .sender = "" },
		{ .direction = dir, .sasl = "", .sender = account, .client = is_ip ? &ip : NULL },
	};

	for (size_t t = dir == DIRECTION_OUTBOUND ? 0 : 1; t < 2; t++) {
		char got[POLICY_ACCOUNT_MAX];
		const struct policy_class *c = policy_lookup(s->policy, &tries[t], NULL);
		if (c != NULL && policy_account(c, &tries[t], got, sizeof(got)) == 0
		    && strcasecmp(got, account) == 0) {
			*out = c;
			return 1;
		}
	}
	return 0;
}

static int cmd_usage(struct snapshot *s, enum policy_direction dir, const char *account)
{
	struct ratelimit_usage u[USAGE_MAX];
	const struct policy_class *home[1];
	size_t n = 0, nhome = usage_class(s, dir, account, home);
	char err[256] = "", resets[48];
	if (ratelimit_usage_in(s->store, s->policy, dir, account, home, nhome, u, USAGE_MAX, &n, err,
			       sizeof(err)) != 0) {
		fprintf(stderr, "usage: %s\n", err);
		return 1;
	}
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"direction\":\"%s\",\"buckets\":[", direction_name(dir));
		for (size_t i = 0; i < n; i++) {
			const char *period = calendar_period_name(u[i].rate->calendar);
			usage_resets(&u[i], resets, sizeof(resets));
			printf("%s{\"class\":", i ? "," : "");
			json_str(u[i].cls->name);
			printf(",\"kind\":\"%s\",\"rate\":", u[i].kind);
			json_str(u[i].rate->text);
			printf(",\"scope\":\"%s\",\"window\":", policy_scope_name(u[i].rate->scope));
			if (period)
				printf("\"%s\"", period);
			else
				printf("null");
			printf(",\"to\":[");
			for (size_t j = 0; j < u[i].rate->to_count; j++) {
				printf("%s", j ? "," : "");
				json_str(u[i].rate->to[j]);
			}
			printf("],\"used\":%.3f,\"left\":%.3f,\"full_in_seconds\":%.3f,\"resets\":\"%s\",\"timezone\":",
			       u[i].used, u[i].left, u[i].full_in_ms / 1000.0, resets);
			json_str(calendar_zone_name(u[i].cls->zone));
			printf("}");
		}
		printf("]}\n");
		return 0;
	}
	if (n == 0) {
		if (nhome)
			printf("%s%s: no buckets (class %s has no rates)\n", account,
			       dir == DIRECTION_INBOUND ? " (inbound)" : "", home[0]->name);
		else
			printf("%s%s: no buckets in use, and the account is assigned to no class\n", account,
			       dir == DIRECTION_INBOUND ? " (inbound)" : "");
		return 0;
	}
	printf("%-16s %-10s %-8s %-24s %10s %10s %12s  %s\n", "class", "kind", "scope", "rate", "used", "left",
	       "full in", "resets");
	for (size_t i = 0; i < n; i++) {
		char d[512];
		policy_rate_describe(u[i].rate, d, sizeof(d));
		/* the scope is its own column */
		char *by = strstr(d, " by ");
		if (by != NULL)
			memmove(by, by + 4 + strlen(policy_scope_name(u[i].rate->scope)),
				strlen(by + 4 + strlen(policy_scope_name(u[i].rate->scope))) + 1);
		usage_resets(&u[i], resets, sizeof(resets));
		printf("%-16s %-10s %-8s %-24s %10.2f %10.2f %11.1fs  %s%s\n", u[i].cls->name, u[i].kind,
		       policy_scope_name(u[i].rate->scope), d, u[i].used, u[i].left,
		       u[i].full_in_ms / 1000.0, resets, u[i].rate->calendar ? " (window ends)" : "");
	}
	return 0;
}

/* Fetches the daemon's counters from MetricsListen. */
static int cmd_stats(struct snapshot *s)
{
	const char *listen = s->settings->metrics_listen;
	if (listen == NULL) {
		fprintf(stderr, "stats: set MetricsListen in the config to read the daemon's counters\n");
		return 1;
	}
	char host[256], port[16];
	const char *colon = strrchr(listen, ':');
	size_t hl = (size_t)(colon - listen);
	if (hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
		return 1;
	memcpy(host, listen[0] == '[' ? listen + 1 : listen, listen[0] == '[' ? hl - 2 : hl);
	host[listen[0] == '[' ? hl - 2 : hl] = '\0';
	strcpy(port, colon + 1);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "stats: cannot resolve %s\n", listen);
		return 1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		fprintf(stderr, "stats: cannot connect to %s (is bulkmilter running?)\n", listen);
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return 1;
	}
	freeaddrinfo(ai);
	const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	if (write(fd, req, sizeof(req) - 1) < 0) {
		close(fd);
		return 1;
	}
	static char buf[65536 + 256];	/* metrics.c's METRICS_TEXT_MAX and headers */
	size_t used = 0;
	ssize_t n;
	while (used < sizeof(buf) - 1 && (n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0)
		used += (size_t)n;
	close(fd);
	buf[used] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (body == NULL) {
		fprintf(stderr, "stats: bad answer from %s\n", listen);
		return 1;
	}
	bool first = true;
	if (json)
		printf("{");
	for (char *line = strtok(body + 4, "\n"); line; line = strtok(NULL, "\n")) {
		char name[128];
		unsigned long value;
		if (line[0] == '#' || sscanf(line, "%127s %lu", name, &value) != 2)
			continue;
		const char *shown = strncmp(name, "bulkmilter_", 11) == 0 ? name + 11 : name;
		if (json) {	/* a labelled sample's name holds quotes */
			printf("%s", first ? "" : ",");
			json_str(shown);
			printf(":%lu", value);
		} else {
			printf("%-28s %lu\n", shown, value);
		}
		first = false;
	}
	if (json)
		printf("}\n");
	return 0;
}

static int cmd_reset(struct snapshot *s, enum policy_direction dir, const char *account,
		     unsigned scopes)
{
	char err[256] = "";
	const char *at = strrchr(account, '@');
	if (scopes == RATELIMIT_SCOPE(SCOPE_DOMAIN) && (at == NULL || at[1] == '\0')) {
		fprintf(stderr, "reset: %s has no domain\n", account);
		return 1;
	}
	if (ratelimit_reset(s->store, s->policy, dir, account, scopes, err, sizeof(err)) != 0) {
		fprintf(stderr, "reset: %s\n", err);
		return 1;
	}
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"direction\":\"%s\",\"scope\":\"%s\",\"reset\":true}\n", direction_name(dir),
		       scopes == RATELIMIT_SCOPES_ALL ? "all"
		       : scopes == RATELIMIT_SCOPE(SCOPE_DOMAIN) ? "domain"
		       : scopes == RATELIMIT_SCOPE(SCOPE_CLASS) ? "class" : "account");
	} else {
		printf("%s%s: every bucket reset%s\n", account, dir == DIRECTION_INBOUND ? " (inbound)" : "",
		       scopes == RATELIMIT_SCOPES_ALL ? " (every scope)"
		       : scopes == RATELIMIT_SCOPE(SCOPE_DOMAIN) ? " (scope domain)"
		       : scopes == RATELIMIT_SCOPE(SCOPE_CLASS) ? " (scope class)" : "");
	}
	return 0;
}

/* usage|reset [--inbound] [--scope S] ACCOUNT: argv[0] is the command. */
static int cmd_account(struct snapshot *s, int argc, char **argv)
{
	bool inbound = false, reset = argv[0][0] == 'r';
	unsigned scopes = RATELIMIT_SCOPE(SCOPE_ACCOUNT);
	const char *account = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--inbound") == 0) {
			inbound = true;
		} else if (reset && strcmp(argv[i], "--scope") == 0 && i + 1 < argc) {
			const char *sc = argv[++i];
			if (strcmp(sc, "account") == 0)
				scopes = RATELIMIT_SCOPE(SCOPE_ACCOUNT);
			else if (strcmp(sc, "domain") == 0)
				scopes = RATELIMIT_SCOPE(SCOPE_DOMAIN);
			else if (strcmp(sc, "class") == 0)
				scopes = RATELIMIT_SCOPE(SCOPE_CLASS);
			else if (strcmp(sc, "all") == 0)
				scopes = RATELIMIT_SCOPES_ALL;
			else {
				fprintf(stderr, "reset: --scope takes account, domain, class or all\n");
				return 2;
			}
		} else if (strncmp(argv[i], "--", 2) == 0 || account != NULL) {
			usage();
			return 2;
		} else {
			account = argv[i];
		}
	}
	if (account == NULL) {
		usage();
		return 2;
	}
	enum policy_direction dir = inbound ? DIRECTION_INBOUND : DIRECTION_OUTBOUND;
	return reset ? cmd_reset(s, dir, account, scopes) : cmd_usage(s, dir, account);
}

/* Options of the commands that take a value: "--json" after one is that value. */
static bool takes_value(const char *opt)
{
	static const char *const valued[] = { "-c", "--sasl", "--sender", "--ip", "--rcpts", "--from",
		"--scope", "--for", "--reason", "--algorithm" };
	for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
		if (strcmp(opt, valued[k]) == 0)
			return true;
	return false;
}

/* Takes every "--json" out of argv[first..argc), sets json; returns the new argc. */
static int take_json(int argc, char **argv, int first)
{
	int out = first;
	const char *prev = NULL;

	for (int k = first; k < argc; k++) {
		const char *arg = argv[k];
		bool value = prev != NULL && takes_value(prev);
		prev = arg;
		if (!value && strcmp(arg, "--json") == 0) {
			json = true;
			continue;
		}
		argv[out++] = argv[k];
	}
	argv[out] = NULL;
	return out;
}

/*
 * With --json, what a command writes goes to two temporary files until
 * it ends: a command that fails without writing to stdout then prints
 * its error there as {"error":"..."}, in this one place. What it wrote
 * to stderr still goes to stderr.
 */
struct capture {
	FILE *out, *err;
	int out_fd, err_fd;
};

static bool capture_start(struct capture *c)
{
	fflush(stdout);
	fflush(stderr);
	c->out = tmpfile();
	c->err = tmpfile();
	c->out_fd = c->out && c->err ? dup(STDOUT_FILENO) : -1;
	c->err_fd = c->out_fd >= 0 ? dup(STDERR_FILENO) : -1;
	if (c->err_fd < 0 || dup2(fileno(c->out), STDOUT_FILENO) < 0
	    || dup2(fileno(c->err), STDERR_FILENO) < 0) {
		if (c->out_fd >= 0)
			dup2(c->out_fd, STDOUT_FILENO), close(c->out_fd);
		if (c->err_fd >= 0)
			dup2(c->err_fd, STDERR_FILENO), close(c->err_fd);
		if (c->out)
			fclose(c->out);
		if (c->err)
			fclose(c->err);
		return false;	/* then errors stay plain text on stderr */
	}
	return true;
}

/* Copies f, from its start, to the stream to. */
static void capture_copy(FILE *f, FILE *to)
{
	char buf[8192];
	size_t n;

	rewind(f);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, to);
	fflush(to);
}

static void capture_end(struct capture *c, int rc)
{
	fflush(stdout);
	fflush(stderr);
	dup2(c->out_fd, STDOUT_FILENO);
	dup2(c->err_fd, STDERR_FILENO);
	close(c->out_fd);
	close(c->err_fd);
	capture_copy(c->err, stderr);
	if (rc != 0 && ftell(c->out) == 0) {
		char msg[4096];
		size_t len;
		rewind(c->err);
		len = fread(msg, 1, sizeof(msg) - 1, c->err);
		while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
			len--;
		msg[len] = '\0';
		printf("{\"error\":");
		json_str(len ? msg : "failed");
		printf("}\n");
		fflush(stdout);
	} else {
		capture_copy(c->out, stdout);
	}
	fclose(c->out);
	fclose(c->err);
}

static int run(int argc, char **argv, const char *config, int i);

int main(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG;
	bool bad = false;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			config = argv[++i];
		} else {
			bad = true;
			break;
		}
	}
	if (!bad && i < argc)
		argc = take_json(argc, argv, i + 1);

	struct capture cap;
	bool captured = json && capture_start(&cap);
	int rc;
	if (bad || i >= argc) {
		usage();
		rc = 2;
	} else {
		rc = run(argc, argv, config, i);
	}
	if (captured)
		capture_end(&cap, rc);
	return rc;
}

/* Runs the command argv[i] (take_json has been applied). */
static int run(int argc, char **argv, const char *config, int i)
{
	const char *cmd = argv[i];
	struct diag errs = { .count = 0 };

	if (strcmp(cmd, "check") == 0 && i + 1 != argc) {
		usage();
		return 2;
	}

	if (strcmp(cmd, "dkim") == 0)	/* keygen needs no config; check loads its own */
		return ctl_dkim(config, json, argc - i, argv + i);
	/* a write to a connection Redis closed must be an error, not a kill */
	signal(SIGPIPE, SIG_IGN);
	struct snapshot *s = snapshot_load(config, NULL, false, &errs);
	int rc;

	if (strcmp(cmd, "check") == 0) {
		rc = cmd_check(s, &errs);
	} else if (s == NULL) {
		diag_print(&errs, stderr);
		rc = 1;
	} else if (strcmp(cmd, "explain") == 0) {
		rc = cmd_explain(s, argc - i, argv + i);
	} else if (strcmp(cmd, "stats") == 0 && i + 1 == argc) {
		rc = cmd_stats(s);
	} else if (strcmp(cmd, "suppress") == 0) {
		rc = ctl_suppress(s, json, argc - i, argv + i);
	} else if (ctl_safety_command(cmd)) {
		rc = ctl_safety(s, json, argc - i, argv + i);
	} else if (strcmp(cmd, "usage") == 0 || strcmp(cmd, "reset") == 0) {
		rc = cmd_account(s, argc - i, argv + i);
	} else {
		usage();
		rc = 2;
	}
	diag_free(&errs);
	snapshot_release(s);
	return rc;
}
