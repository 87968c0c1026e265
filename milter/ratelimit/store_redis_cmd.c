/*
 * store_redis_cmd - argument vectors for hiredis built in one growing
 * arena (store_redis_conn.h describes struct redis_cmd).
 *
 * What it does: appends arguments, copying them, so the caller's
 * strings need not outlive the call; redis_cmd_finish turns the offsets
 * into pointers once the arena stops moving; redis_cmd_append writes a
 * vector to a connection's output buffer in RESP.
 * What it does not: know any command.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "store_redis_conn.h"

void redis_cmd_init(struct redis_cmd *c, int cap)
{
	memset(c, 0, sizeof(*c));
	c->cap = cap;
	c->slot = -1;
	c->argv = calloc((size_t)cap, sizeof(*c->argv));
	c->argvlen = calloc((size_t)cap, sizeof(*c->argvlen));
	c->off = calloc((size_t)cap, sizeof(*c->off));
	c->size = 1024;
	c->arena = malloc(c->size);
	c->nomem = !c->argv || !c->argvlen || !c->off || !c->arena;
}

void redis_cmd_free(struct redis_cmd *c)
{
	free(c->argv);
	free(c->argvlen);
	free(c->off);
	free(c->arena);
}

/* Appends one argument made of a then b. */
void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen, const char *b, size_t blen)
{
	if (c->nomem || c->argc >= c->cap) {
		c->nomem = true;
		return;
	}
	if (c->used + alen + blen > c->size) {
		size_t size = 2 * (c->used + alen + blen);
		char *p = realloc(c->arena, size);
		if (p == NULL) {
			c->nomem = true;
			return;
		}
		c->arena = p;
		c->size = size;
	}
	memcpy(c->arena + c->used, a, alen);
	memcpy(c->arena + c->used + alen, b, blen);
	c->off[c->argc] = c->used;
	c->argvlen[c->argc++] = alen + blen;
	c->used += alen + blen;
}

void redis_cmd_str(struct redis_cmd *c, const char *s)
{
	redis_cmd_put(c, s, strlen(s), "", 0);
}

void redis_cmd_num(struct redis_cmd *c, unsigned long long v)
{
	char buf[DECIMAL_MAX];

	redis_cmd_put(c, buf, decimal_put(buf, v), "", 0);
}

/*
 * hiredis's redisAppendCommandArgv formats each argument's header with
 * its printf-like sdscatfmt; this writes the same bytes with one
 * allocation and no format parsing.
 */
int redis_cmd_append(redisContext *ctx, int argc, const char **argv, const size_t *argvlen)
{
	size_t total = 1 + DECIMAL_MAX + 2;

	if (argc < 0)
		return REDIS_ERR;
	for (int i = 0; i < argc; i++) {
		if (argvlen[i] > SIZE_MAX / 2 - total - 64)
			return REDIS_ERR;
		total += 1 + DECIMAL_MAX + 2 + argvlen[i] + 2;
	}
	char *buf = malloc(total), *p = buf;
	if (buf == NULL)
		return REDIS_ERR;
	*p++ = '*';
	p += decimal_put(p, (unsigned long long)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (int i = 0; i < argc; i++) {
		*p++ = '$';
		p += decimal_put(p, argvlen[i]);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], argvlen[i]);
		p += argvlen[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	int rc = redisAppendFormattedCommand(ctx, buf, (size_t)(p - buf));
	free(buf);
	return rc;
}

void redis_cmd_finish(struct redis_cmd *c)
{
	for (int i = 0; i < c->argc; i++)
		c->argv[i] = c->arena + c->off[i];
}
