/*
 * suppress - the suppression list's key, scripts and the add call the
 * milter makes when it reads a report (suppress.h). bulkmilterctl runs
 * the same scripts (ctl_suppress.c); the RCPT script reads the list.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suppress.h"

#define SUPPRESS_NOW \
	"local t = redis.call('TIME')\n" \
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
/* after a change: drop passed entries, expire the key with its last one */
#define SUPPRESS_TIDY \
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n" \
	"local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n" \
	"if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end\n"

const char suppress_add_script[] =
	SUPPRESS_NOW
	"local until_ms = string.format('%.0f', now + tonumber(ARGV[1]))\n"
	"local added = 0\n"
	"for i = 2, #ARGV do\n"
	"  added = added + redis.call('ZADD', KEYS[1], until_ms, ARGV[i])\n"
	"end\n"
	SUPPRESS_TIDY
	"return added\n";

const char suppress_del_script[] =
	SUPPRESS_NOW
	"local n = 0\n"
	"for i = 1, #ARGV do n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end\n"
	SUPPRESS_TIDY
	"return n\n";

const char suppress_list_script[] =
	SUPPRESS_NOW
	"return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')\n";

int suppress_key(const char *account, char *buf, size_t len)
{
	int n = snprintf(buf, len, "{%s}%s", account, SUPPRESS_KEY_SUFFIX);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

void suppress_address(const char *addr, char *buf, size_t len)
{
	size_t i = 0;
	for (; addr[i] && i + 1 < len; i++)
		buf[i] = (char)tolower((unsigned char)addr[i]);
	buf[i] = '\0';
}

enum store_status suppress_add(struct store *st, const char *account, const char *const *addrs,
			       size_t n, long long ttl_ms, long *added, char *err, size_t errlen)
{
	char key[512], ttl[32], out[1][STORE_EVAL_VALUE_MAX];
	const char *keys[1] = { key };
	size_t got = 0;
	*added = 0;
	if (n == 0)
		return STORE_OK;
	if (suppress_key(account, key, sizeof(key)) != 0) {
		snprintf(err, errlen, "account too long for a suppression list");
		return STORE_FAILED;
	}
	const char **args = malloc((n + 1) * sizeof(*args));
	if (args == NULL) {
		snprintf(err, errlen, "out of memory");
		return STORE_FAILED;
	}
	snprintf(ttl, sizeof(ttl), "%lld", ttl_ms);
	args[0] = ttl;
	memcpy(args + 1, addrs, n * sizeof(*args));
	enum store_status s = store_eval(st, suppress_add_script, keys, 1, args, n + 1, out, 1, &got,
					 err, errlen);
	free(args);
	if (s == STORE_OK && got == 1)
		*added = strtol(out[0], NULL, 10);
	return s;
}
