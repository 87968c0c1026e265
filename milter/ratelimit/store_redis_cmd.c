/*
 * store_redis_cmd - argument vectors for hiredis, built as the RESP bytes
 * that go to Redis (store_redis_conn.h describes struct redis_cmd).
 *
 * What it does: appends arguments, copying them, so the caller's
 * strings need not outlive the call; redis_cmd_finish turns the offsets
 * into pointers once the arena stops moving; redis_cmd_append puts the
 * command in a connection's output buffer.
 * What it does not: know any command.
 *
 * Decisions:
 * - The arena holds each argument already in RESP ("$LEN\r\nBYTES\r\n"),
 *   so sending is one copy of the arena into hiredis's buffer: a charge
 *   has ten numbers or so per bucket, and formatting them again per send
 *   (as redisAppendCommandArgv does, with its printf-like sdscatfmt),
 *   then copying twice, was a visible share of a recipient's CPU.
 * - The first two arguments are sent from argv, not from the arena: the
 *   NOSCRIPT fallback replaces them (EVALSHA SHA becomes EVAL BODY).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "store_redis_conn.h"

/* The most a RESP header ("$LEN\r\n" or "*N\r\n") takes. */
#define RESP_HEADER_MAX (1 + DECIMAL_MAX + 2)
/* Bytes of the command's head (its first two arguments) kept on the stack. */
#define RESP_HEAD_STACK 256

void redis_cmd_init(struct redis_cmd *c, int cap)
{
	memset(c, 0, sizeof(*c));
	c->cap = cap;
	c->slot = -1;
	/* argv, argvlen and off in one block */
	size_t n = cap > 0 ? (size_t)cap : 1;
	c->argv = malloc(n * (sizeof(*c->argv) + sizeof(*c->argvlen) + sizeof(*c->off)));
	if (c->argv != NULL) {
		c->argvlen = (size_t *)(c->argv + n);
		c->off = c->argvlen + n;
	}
	c->size = 1024;
	c->arena = malloc(c->size);
	c->nomem = !c->argv || !c->arena;
}

void redis_cmd_free(struct redis_cmd *c)
{
	free(c->argv);
	free(c->arena);
}

/* Writes the RESP header MARK N\r\n at p; returns its length. */
static size_t resp_header(char *p, char mark, unsigned long long n)
{
	p[0] = mark;
	size_t len = 1 + decimal_put(p + 1, n);
	p[len++] = '\r';
	p[len++] = '\n';
	return len;
}

/* Room for one more argument of len bytes; false (nomem set) if none. */
static inline bool redis_cmd_room(struct redis_cmd *c, size_t len)
{
	if (c->nomem || c->argc >= c->cap || len > SIZE_MAX / 4) {
		c->nomem = true;
		return false;
	}
	size_t need = c->used + RESP_HEADER_MAX + len + 2;
	if (need > c->size) {
		char *p = realloc(c->arena, 2 * need);
		if (p == NULL) {
			c->nomem = true;
			return false;
		}
		c->arena = p;
		c->size = 2 * need;
	}
	if (c->argc == 2)
		c->tail = c->used;
	return true;
}

/* Records the argument whose RESP header is h bytes and data len bytes. */
static inline void redis_cmd_took(struct redis_cmd *c, size_t h, size_t len)
{
	c->arena[c->used + h + len] = '\r';
	c->arena[c->used + h + len + 1] = '\n';
	c->off[c->argc] = c->used + h;
	c->argvlen[c->argc++] = len;
	c->used += h + len + 2;
}

/* Appends one argument made of a then b. */
void redis_cmd_put(struct redis_cmd *c, const char *a, size_t alen, const char *b, size_t blen)
{
	if (blen > SIZE_MAX / 4 || !redis_cmd_room(c, alen + blen))
		return;
	char *p = c->arena + c->used;
	size_t h = resp_header(p, '$', alen + blen);
	memcpy(p + h, a, alen);
	memcpy(p + h + alen, b, blen);
	redis_cmd_took(c, h, alen + blen);
}

void redis_cmd_str(struct redis_cmd *c, const char *s)
{
	redis_cmd_put(c, s, strlen(s), "", 0);
}

/* Numbers are most of a charge's arguments: written in place, no copy. */
void redis_cmd_num(struct redis_cmd *c, unsigned long long v)
{
	size_t n = decimal_len(v), h = 2;

	if (!redis_cmd_room(c, n))
		return;
	char *p = c->arena + c->used;
	p[0] = '$';
	if (n < 10) {
		p[1] = (char)('0' + n);
	} else {
		p[1] = (char)('0' + n / 10);
		p[2] = (char)('0' + n % 10);
		h = 3;
	}
	p[h++] = '\r';
	p[h++] = '\n';
	decimal_write(p + h, n, v);
	redis_cmd_took(c, h, n);
}

int redis_cmd_append(redisContext *ctx, const struct redis_cmd *c)
{
	int nhead = c->argc < 2 ? c->argc : 2;
	size_t total = RESP_HEADER_MAX;

	if (c->argc < 0)
		return REDIS_ERR;
	for (int i = 0; i < nhead; i++) {
		if (c->argvlen[i] > SIZE_MAX / 2 - total - 64)
			return REDIS_ERR;
		total += RESP_HEADER_MAX + c->argvlen[i] + 2;
	}
	char stack[RESP_HEAD_STACK], *buf = total <= sizeof(stack) ? stack : malloc(total), *p = buf;
	if (buf == NULL)
		return REDIS_ERR;
	p += resp_header(p, '*', (unsigned long long)c->argc);
	for (int i = 0; i < nhead; i++) {
		p += resp_header(p, '$', c->argvlen[i]);
		memcpy(p, c->argv[i], c->argvlen[i]);
		p += c->argvlen[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	int rc = redisAppendFormattedCommand(ctx, buf, (size_t)(p - buf));
	if (buf != stack)
		free(buf);
	if (rc == REDIS_OK && c->argc > 2)
		rc = redisAppendFormattedCommand(ctx, c->arena + c->tail, c->used - c->tail);
	return rc;
}

void redis_cmd_finish(struct redis_cmd *c)
{
	for (int i = 0; i < c->argc; i++)
		c->argv[i] = c->arena + c->off[i];
}
