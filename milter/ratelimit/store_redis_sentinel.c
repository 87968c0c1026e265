/*
 * store_redis_sentinel - asks Redis Sentinel where the master is.
 *
 * What it does: tries the sentinels of the URL in turn, starting with
 * the one that answered last, and returns the first answer to SENTINEL
 * get-master-addr-by-name.
 * What it does not: trust the answer. A sentinel may be partitioned off
 * and name the old master; the connection layer confirms with ROLE on
 * every new connection (store_redis_conn.c) and asks again on a lost
 * connection, a timeout or -READONLY.
 *
 * Decisions:
 * - One short-lived connection per question: questions are rare (after
 *   a failure, at most one per REDIS_LOOKUP_INTERVAL_MS), and a pooled
 *   sentinel connection would need its own health tracking.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_redis.h"
#include "store_redis_conn.h"

/* One sentinel's answer; -1 with a reason when it has none. */
static int redis_sentinel_one(const struct store_redis_url *url, const struct store_redis_seed *s,
	struct timeval timeout, struct store_redis_seed *master, char *err, size_t errlen)
{
	redisContext *c = redisConnectWithTimeout(s->host, s->port, timeout);
	redisReply *r = NULL;
	int rc = -1;

	if (c == NULL || c->err || redisSetTimeout(c, timeout) != REDIS_OK) {
		snprintf(err, errlen, "sentinel %s:%d: %s", s->host, s->port,
			 c && c->err ? c->errstr : "cannot connect");
		goto out;
	}
	if (url->sentinel_password[0] != '\0') {
		const char *argv[3] = { "AUTH" };
		int argc = 1;
		if (url->sentinel_user[0] != '\0')
			argv[argc++] = url->sentinel_user;
		argv[argc++] = url->sentinel_password;
		r = redisCommandArgv(c, argc, argv, NULL);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "sentinel %s:%d: %s", s->host, s->port,
				 r == NULL ? c->errstr : "authentication refused");
			goto out;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", url->master);
	if (r == NULL) {
		snprintf(err, errlen, "sentinel %s:%d: %s", s->host, s->port, c->errstr);
		goto out;
	}
	if (r->type == REDIS_REPLY_NIL) {
		snprintf(err, errlen, "sentinel %s:%d: no master named %s", s->host, s->port, url->master);
		goto out;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
	    || r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING
	    || r->element[0]->len == 0 || r->element[0]->len >= sizeof(master->host)) {
		snprintf(err, errlen, "sentinel %s:%d: unexpected answer", s->host, s->port);
		goto out;
	}
	int port = atoi(r->element[1]->str);
	if (port < 1 || port > 65535) {
		snprintf(err, errlen, "sentinel %s:%d: bad port in answer", s->host, s->port);
		goto out;
	}
	memcpy(master->host, r->element[0]->str, r->element[0]->len + 1);
	master->port = port;
	rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	if (c != NULL)
		redisFree(c);
	return rc;
}

int redis_sentinel_master(const struct store_redis_url *url, struct timeval timeout, size_t *first,
	struct store_redis_seed *master, char *err, size_t errlen)
{
	char why[256] = "no sentinel";

	for (size_t k = 0; k < url->nseeds; k++) {
		size_t i = (*first + k) % url->nseeds;
		if (redis_sentinel_one(url, &url->seeds[i], timeout, master, why, sizeof(why)) == 0) {
			*first = i;
			return 0;
		}
	}
	snprintf(err, errlen, "redis sentinel %s: no sentinel named a master (last: %s)", url->master, why);
	return -1;
}
