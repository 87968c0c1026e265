/*
 * store_redis_node - opens a connection to one Redis server, ready for
 * the rate-limit script: connected within RedisTimeout, the command
 * timeout set, AUTH, SELECT, ROLE (sentinel: it must be the master) and
 * SCRIPT LOAD sent in one pipeline and every answer checked.
 *
 * What it does not: pool or retry (store_redis_conn.c).
 *
 * Decisions:
 * - hiredis 0.14: the connect timeout does not cover commands, so every
 *   new context gets redisSetTimeout.
 * - An error reply is shown by its first word only: some servers echo
 *   the arguments, and AUTH's are the password.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_redis.h"
#include "store_redis_conn.h"

/* The first word of an error reply ("WRONGPASS", "NOAUTH"): safe to show. */
static void redis_error_word(const redisReply *r, char *buf, size_t size)
{
	size_t n = r->str ? strcspn(r->str, " ") : 0;

	if (n >= size)
		n = size - 1;
	memcpy(buf, r->str ? r->str : "", n);
	buf[n] = '\0';
}

/*
 * A new connection, ready for the script: timeout set, AUTH and SELECT
 * done, the role checked (sentinel), the script loaded. All in one round
 * trip after the connect.
 */
redisContext *redis_connect(const struct store_redis_url *url, const struct store_redis_seed *addr,
	const char *where, struct timeval timeout, const char *sha, char *err, size_t errlen)
{
	redisContext *c = addr->port == 0
		? redisConnectUnixWithTimeout(url->path, timeout)
		: redisConnectWithTimeout(addr->host, addr->port, timeout);
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", where);
		return NULL;
	}
	if (c->err || redisSetTimeout(c, timeout) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: connect: %s", where,
			 c->err ? c->errstr : "cannot set timeout");
		redisFree(c);
		return NULL;
	}

	enum { AUTH, SELECT, ROLE, LOAD } what[4];
	int sent = 0;
	if (url->password[0] != '\0') {
		const char *argv[3] = { "AUTH" };
		int argc = 1;
		if (url->user[0] != '\0')
			argv[argc++] = url->user;
		argv[argc++] = url->password;
		redisAppendCommandArgv(c, argc, argv, NULL);
		what[sent++] = AUTH;
	}
	if (url->db != 0) {
		redisAppendCommand(c, "SELECT %d", url->db);
		what[sent++] = SELECT;
	}
	if (url->topology == STORE_REDIS_SENTINEL) {
		redisAppendCommand(c, "ROLE");
		what[sent++] = ROLE;
	}
	redisAppendCommand(c, "SCRIPT LOAD %s", store_redis_script);
	what[sent++] = LOAD;

	const char *failed = NULL;
	char word[32] = "";
	for (int i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK) {
			snprintf(err, errlen, "redis %s: %s", where, c->errstr);
			redisFree(c);
			return NULL;
		}
		if (failed != NULL) {
			freeReplyObject(r);
			continue;
		}
		static const char *const names[] = { "authentication refused", "SELECT failed",
			"ROLE failed", "SCRIPT LOAD failed" };
		if (r->type == REDIS_REPLY_ERROR) {
			redis_error_word(r, word, sizeof(word));
			failed = names[what[i]];
		} else if (what[i] == ROLE && (r->type != REDIS_REPLY_ARRAY || r->elements < 1
				|| r->element[0]->type != REDIS_REPLY_STRING
				|| strcmp(r->element[0]->str, "master") != 0)) {
			failed = "not a master (ROLE)";
		} else if (what[i] == LOAD && (r->type != REDIS_REPLY_STRING || strcmp(r->str, sha) != 0)) {
			failed = "SCRIPT LOAD returned an unexpected digest";
		}
		freeReplyObject(r);
	}
	if (failed != NULL) {
		/* Only the error's first word: some servers echo arguments. */
		snprintf(err, errlen, "redis %s: %s%s%s%s", where, failed,
			 word[0] ? " (" : "", word, word[0] ? ")" : "");
		redisFree(c);
		return NULL;
	}
	return c;
}
