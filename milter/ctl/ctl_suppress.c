/*
 * ctl_suppress - bulkmilterctl's suppression-list commands.
 *
 *	bulkmilterctl [--json] suppress add ACCOUNT ADDRESS [--for DURATION]
 *	bulkmilterctl [--json] suppress del ACCOUNT ADDRESS
 *	bulkmilterctl [--json] suppress list ACCOUNT
 *	bulkmilterctl [--json] suppress import ACCOUNT FILE [--for DURATION]
 *	bulkmilterctl [--json] suppress export ACCOUNT
 *
 * The list is the account's sorted set of suppress.h, changed with the
 * same scripts the milter runs, on the Redis clock, through the store of
 * the configuration (so RedisPrefix, the password and Sentinel/Cluster
 * apply as for the milter). Every milter's RCPT TO script reads it, so
 * a change holds fleet-wide with the next recipient.
 *
 * --for defaults to 180 days, as for a bounce. import reads one address
 * a line (blank lines and "#" comments skipped; <angle brackets> taken
 * off), checks every line before it changes anything (a bad line is
 * FILE:LINE: message and exit 1), and adds them IMPORT_BATCH at a time.
 * export writes the live entries one a line, which import reads back.
 * list and export page through the set, LIST_PAGE entries a call.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "ctl_suppress.h"
#include "settings.h"
#include "suppress.h"

#define IMPORT_BATCH 500
#define LIST_PAGE 500

static const char list_page_script[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT',"
	" ARGV[1], ARGV[2])\n";

static void rfc3339(long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A JSON string of s (addresses and accounts: printable, but quote anyway). */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The address as the list keeps it; -1 when it is no address. */
static int take_address(const char *in, char *out, size_t len)
{
	char bare[ADDRESS_MAX];
	if (address_from_envelope(in, bare, sizeof(bare)) != 0 || strchr(bare, '@') == NULL)
		return -1;
	suppress_address(bare, out, len);
	return 0;
}

static int store_failed(const char *what, const char *err)
{
	fprintf(stderr, "bulkmilterctl: suppress %s: %s\n", what, err);
	return 1;
}

static int run(struct snapshot *s, const char *script, const char *account, const char *const *args,
	       size_t na, char (*out)[STORE_EVAL_VALUE_MAX], size_t nout, size_t *got, char *err,
	       size_t errlen)
{
	char key[512];
	const char *keys[1] = { key };
	if (suppress_key(account, key, sizeof(key)) != 0) {
		snprintf(err, errlen, "account too long");
		return -1;
	}
	return store_eval(s->store, script, keys, 1, args, na, out, nout, got, err, errlen) == STORE_OK
		       ? 0 : -1;
}

static int cmd_add(struct snapshot *s, bool json, const char *account, const char *address, long long for_ms)
{
	char addr[ADDRESS_MAX], ttl[32], err[256], out[1][STORE_EVAL_VALUE_MAX];
	size_t got;
	if (take_address(address, addr, sizeof(addr)) != 0) {
		fprintf(stderr, "bulkmilterctl: suppress add: not an address: %s\n", address);
		return 2;
	}
	snprintf(ttl, sizeof(ttl), "%lld", for_ms);
	const char *args[2] = { ttl, addr };
	if (run(s, suppress_add_script, account, args, 2, out, 1, &got, err, sizeof(err)) != 0)
		return store_failed("add", err);
	bool fresh = got == 1 && strcmp(out[0], "1") == 0;
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"address\":");
		json_str(addr);
		printf(",\"for_ms\":%lld,\"new\":%s}\n", for_ms, fresh ? "true" : "false");
	} else {
		printf("%s suppressed for %s for %llds%s\n", addr, account, for_ms / 1000,
		       fresh ? "" : " (was already: expiry renewed)");
	}
	return 0;
}

static int cmd_del(struct snapshot *s, bool json, const char *account, const char *address)
{
	char addr[ADDRESS_MAX], err[256], out[1][STORE_EVAL_VALUE_MAX];
	size_t got;
	if (take_address(address, addr, sizeof(addr)) != 0) {
		fprintf(stderr, "bulkmilterctl: suppress del: not an address: %s\n", address);
		return 2;
	}
	const char *args[1] = { addr };
	if (run(s, suppress_del_script, account, args, 1, out, 1, &got, err, sizeof(err)) != 0)
		return store_failed("del", err);
	bool was = got == 1 && strcmp(out[0], "1") == 0;
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"address\":");
		json_str(addr);
		printf(",\"removed\":%s}\n", was ? "true" : "false");
	} else {
		printf(was ? "%s no longer suppressed for %s\n" : "%s was not suppressed for %s\n", addr,
		       account);
	}
	return 0;
}

/* list (with expiry) or export (addresses only), a page at a time. */
static int cmd_list(struct snapshot *s, bool json, const char *account, bool export)
{
	static char out[2 * LIST_PAGE][STORE_EVAL_VALUE_MAX];
	char offset[32], count[32], err[256], until[32];
	size_t got, total = 0;
	const char *args[2] = { offset, count };
	if (json)
		printf("[");
	for (;;) {
		snprintf(offset, sizeof(offset), "%zu", total);
		snprintf(count, sizeof(count), "%d", LIST_PAGE);
		if (run(s, list_page_script, account, args, 2, out, 2 * LIST_PAGE, &got, err,
			sizeof(err)) != 0) {
			if (json)
				printf("]\n");
			return store_failed(export ? "export" : "list", err);
		}
		for (size_t i = 0; i + 1 < got; i += 2) {
			rfc3339(strtoll(out[i + 1], NULL, 10), until, sizeof(until));
			if (json) {
				printf("%s", total + i / 2 ? "," : "");
				if (export) {
					json_str(out[i]);
				} else {
					printf("{\"address\":");
					json_str(out[i]);
					printf(",\"until\":\"%s\"}", until);
				}
			} else if (export) {
				printf("%s\n", out[i]);
			} else {
				printf("%s until %s\n", out[i], until);
			}
		}
		total += got / 2;
		if (got < 2 * LIST_PAGE)
			break;
	}
	if (json)
		printf("]\n");
	return 0;
}

static int cmd_import(struct snapshot *s, bool json, const char *account, const char *path,
		      long long for_ms)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "bulkmilterctl: suppress import: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char line[1024], (*addrs)[ADDRESS_MAX] = NULL;
	size_t n = 0, cap = 0;
	int lineno = 0, bad = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *p = line, *e;
		while (*p == ' ' || *p == '\t')
			p++;
		for (e = p + strlen(p); e > p && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 1024;
			void *g = realloc(addrs, nc * sizeof(*addrs));
			if (g == NULL) {
				fprintf(stderr, "bulkmilterctl: suppress import: out of memory\n");
				bad = 1;
				break;
			}
			addrs = g;
			cap = nc;
		}
		if (take_address(p, addrs[n], sizeof(addrs[n])) != 0) {
			fprintf(stderr, "%s:%d: not an address: %s\n", path, lineno, p);
			bad = 1;
			continue;
		}
		n++;
	}
	if (f != stdin)
		fclose(f);
	if (bad) {
		free(addrs);
		return 1;
	}
	long added = 0;
	char err[256];
	for (size_t i = 0; i < n; i += IMPORT_BATCH) {
		size_t k = n - i < IMPORT_BATCH ? n - i : IMPORT_BATCH;
		const char *ptr[IMPORT_BATCH];
		long a;
		for (size_t j = 0; j < k; j++)
			ptr[j] = addrs[i + j];
		if (suppress_add(s->store, account, ptr, k, for_ms, &a, err, sizeof(err)) != STORE_OK) {
			free(addrs);
			fprintf(stderr, "bulkmilterctl: suppress import: %zu of %zu imported: %s\n", i, n, err);
			return 1;
		}
		added += a;
	}
	free(addrs);
	if (json) {
		printf("{\"account\":");
		json_str(account);
		printf(",\"imported\":%zu,\"new\":%ld}\n", n, added);
	} else {
		printf("imported %zu addresses for %s (%ld new)\n", n, account, added);
	}
	return 0;
}

static int usage_error(void)
{
	fprintf(stderr, "usage: bulkmilterctl [--json] suppress add ACCOUNT ADDRESS [--for DURATION]\n"
			"       bulkmilterctl [--json] suppress del ACCOUNT ADDRESS\n"
			"       bulkmilterctl [--json] suppress list|export ACCOUNT\n"
			"       bulkmilterctl [--json] suppress import ACCOUNT FILE [--for DURATION]\n");
	return 2;
}

int ctl_suppress(struct snapshot *s, bool json, int argc, char **argv)
{
	long long for_ms = SUPPRESS_DEFAULT_MS;
	char *pos[4];
	int np = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
			long ms;
			if (settings_parse_duration_ms(argv[++i], &ms) != 0 || ms < 1000) {
				fprintf(stderr, "bulkmilterctl: suppress: --for: expected a duration of 1s or more, got %s\n",
					argv[i]);
				return 2;
			}
			for_ms = ms;
		} else if (np < 4) {
			pos[np++] = argv[i];
		} else {
			return usage_error();
		}
	}
	if (np < 2)
		return usage_error();
	const char *sub = pos[0], *account = pos[1];
	if (strcmp(sub, "add") == 0 && np == 3)
		return cmd_add(s, json, account, pos[2], for_ms);
	if (strcmp(sub, "del") == 0 && np == 3)
		return cmd_del(s, json, account, pos[2]);
	if (strcmp(sub, "list") == 0 && np == 2)
		return cmd_list(s, json, account, false);
	if (strcmp(sub, "export") == 0 && np == 2)
		return cmd_list(s, json, account, true);
	if (strcmp(sub, "import") == 0 && np == 3)
		return cmd_import(s, json, account, pos[2], for_ms);
	return usage_error();
}
