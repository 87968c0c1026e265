/*
 * store_redis_cluster - what the Redis backend needs to know of Redis
 * Cluster's protocol: the slot of a key, the slot map of CLUSTER SLOTS,
 * and the MOVED and ASK redirections.
 *
 * What it does: pure functions over strings and replies, so the unit
 * tests check them against the values Redis documents, and the one
 * question that fetches the map (redis_cluster_slots, its own short
 * connection: the map is asked for rarely).
 * What it does not: route commands or keep the map (store_redis_conn.c).
 *
 * Decisions:
 * - The slot is CRC16 (XMODEM: polynomial 0x1021, initial value 0) of
 *   the key's hash tag modulo 16384, as the cluster specification says;
 *   computed bit by bit, as keys are short and a table is 512 bytes of
 *   constants to get wrong.
 * - A node the reply names with an empty host ("the one you asked") is
 *   the node the map was asked of.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_redis.h"
#include "store_redis_conn.h"

static uint16_t redis_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned redis_cluster_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL) {
		const char *after = open + 1;
		const char *close = memchr(after, '}', len - (size_t)(after - key));
		if (close != NULL && close > after)
			return redis_crc16(after, (size_t)(close - after)) % REDIS_CLUSTER_SLOTS;
	}
	return redis_crc16(key, len) % REDIS_CLUSTER_SLOTS;
}

/* "HOST:PORT" (HOST may be an IPv6 address, unbracketed); empty HOST allowed. */
static int redis_cluster_endpoint(const char *s, struct store_redis_seed *out)
{
	const char *colon = strrchr(s, ':');
	char *end;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(out->host))
		return -1;
	long port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || (*end != '\0' && *end != '@') || port < 1 || port > 65535)
		return -1;
	memcpy(out->host, s, (size_t)(colon - s));
	out->host[colon - s] = '\0';
	out->port = (int)port;
	return 0;
}

int redis_cluster_redirect(const char *msg, bool *ask, unsigned *slot, struct store_redis_seed *to)
{
	char word[8], endpoint[STORE_REDIS_HOST_MAX + 8];
	unsigned s;

	if (sscanf(msg, "%7s %u %263s", word, &s, endpoint) != 3 || s >= REDIS_CLUSTER_SLOTS)
		return -1;
	if (strcmp(word, "MOVED") != 0 && strcmp(word, "ASK") != 0)
		return -1;
	if (redis_cluster_endpoint(endpoint, to) < 0)
		return -1;
	*ask = word[0] == 'A';
	*slot = s;
	return 0;
}

/* The address of one node in a CLUSTER SLOTS entry: [host, port, id, ...]. */
static int redis_cluster_node_addr(const redisReply *n, const struct store_redis_seed *asked,
	struct store_redis_seed *out)
{
	if (n->type != REDIS_REPLY_ARRAY || n->elements < 2
	    || n->element[0]->type != REDIS_REPLY_STRING || n->element[1]->type != REDIS_REPLY_INTEGER
	    || n->element[1]->integer < 1 || n->element[1]->integer > 65535
	    || n->element[0]->len >= sizeof(out->host))
		return -1;
	if (n->element[0]->len == 0 || strcmp(n->element[0]->str, "?") == 0)
		snprintf(out->host, sizeof(out->host), "%s", asked->host);
	else
		memcpy(out->host, n->element[0]->str, n->element[0]->len + 1);
	out->port = (int)n->element[1]->integer;
	return 0;
}

int redis_cluster_parse_slots(const redisReply *r, const struct store_redis_seed *asked,
	struct store_redis_seed *masters, size_t max, size_t *nmasters, uint8_t *owner,
	char *err, size_t errlen)
{
	*nmasters = 0;
	memset(owner, 0, REDIS_CLUSTER_SLOTS);
	if (r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "CLUSTER SLOTS: not an array");
		return -1;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		struct store_redis_seed m;
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
		    || e->element[0]->type != REDIS_REPLY_INTEGER
		    || e->element[1]->type != REDIS_REPLY_INTEGER
		    || e->element[0]->integer < 0 || e->element[1]->integer >= REDIS_CLUSTER_SLOTS
		    || e->element[0]->integer > e->element[1]->integer
		    || redis_cluster_node_addr(e->element[2], asked, &m) < 0) {
			snprintf(err, errlen, "CLUSTER SLOTS: malformed entry %zu", i);
			return -1;
		}
		size_t k = 0;
		while (k < *nmasters && !(masters[k].port == m.port && strcmp(masters[k].host, m.host) == 0))
			k++;
		if (k == *nmasters) {
			if (k == max) {
				snprintf(err, errlen, "CLUSTER SLOTS: more than %zu masters", max);
				return -1;
			}
			masters[(*nmasters)++] = m;
		}
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			owner[s] = (uint8_t)(k + 1);
	}
	return 0;
}

int redis_cluster_slots(const struct store_redis_url *url, struct timeval timeout,
	const struct store_redis_seed *at, struct store_redis_seed *masters, size_t max,
	size_t *nmasters, uint8_t *owner, char *err, size_t errlen)
{
	redisReply *r = NULL;
	int rv = -1;
	char why[160];

	redisContext *c = redisConnectWithTimeout(at->host, at->port, timeout);
	if (c == NULL || c->err || redisSetTimeout(c, timeout) != REDIS_OK) {
		snprintf(err, errlen, "redis cluster %s:%d: %s", at->host, at->port,
			 c && c->err ? c->errstr : "cannot connect");
		goto out;
	}
	if (url->password[0] != '\0') {
		const char *argv[3] = { "AUTH" };
		int argc = 1;
		if (url->user[0] != '\0')
			argv[argc++] = url->user;
		argv[argc++] = url->password;
		r = redisCommandArgv(c, argc, argv, NULL);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis cluster %s:%d: %s", at->host, at->port,
				 r == NULL ? c->errstr : "authentication refused");
			goto out;
		}
		freeReplyObject(r);
	}
	if ((r = redisCommand(c, "CLUSTER SLOTS")) == NULL) {
		snprintf(err, errlen, "redis cluster %s:%d: %s", at->host, at->port, c->errstr);
		goto out;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis cluster %s:%d: CLUSTER SLOTS refused (%.*s)", at->host,
			 at->port, (int)strcspn(r->str, " "), r->str);
		goto out;
	}
	if (redis_cluster_parse_slots(r, at, masters, max, nmasters, owner, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "redis cluster %s:%d: %s", at->host, at->port, why);
		goto out;
	}
	rv = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	if (c != NULL)
		redisFree(c);
	return rv;
}
