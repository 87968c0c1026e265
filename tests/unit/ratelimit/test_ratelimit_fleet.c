/*
 * The fleet's pure parts, no server needed: Sentinel and Cluster URLs,
 * the Cluster slot of a key (values from the Redis Cluster
 * specification), MOVED/ASK, and the order of a charge over several
 * hash tags (store_redis_groups.c) with fake scripts: a later scope's
 * refusal or failure gives back what the earlier ones took.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store.h"
#include "store_redis.h"
#include "store_redis_conn.h"

static void sentinel_url_lists_sentinels_master_and_db(void **state)
{
	(void)state;
	struct store_redis_url u;
	char err[256] = "";

	assert_int_equal(store_redis_parse_url("sentinel://:spw@10.0.0.1,10.0.0.2:26380,[::1]:5/bm?db=3",
					       &u, err, sizeof(err)), 0);
	assert_int_equal(u.topology, STORE_REDIS_SENTINEL);
	assert_int_equal(u.nseeds, 3);
	assert_string_equal(u.seeds[0].host, "10.0.0.1");
	assert_int_equal(u.seeds[0].port, 26379);
	assert_int_equal(u.seeds[1].port, 26380);
	assert_string_equal(u.seeds[2].host, "::1");
	assert_string_equal(u.master, "bm");
	assert_int_equal(u.db, 3);
	assert_string_equal(u.sentinel_password, "spw");
	assert_string_equal(u.password, "");	/* the data nodes': RedisPasswordFile */
}

static void cluster_url_lists_nodes(void **state)
{
	(void)state;
	struct store_redis_url u;
	char err[256] = "";

	assert_int_equal(store_redis_parse_url("cluster://:pw@h1:7000,h2", &u, err, sizeof(err)), 0);
	assert_int_equal(u.topology, STORE_REDIS_CLUSTER);
	assert_int_equal(u.nseeds, 2);
	assert_int_equal(u.seeds[0].port, 7000);
	assert_int_equal(u.seeds[1].port, 6379);
	assert_string_equal(u.password, "pw");
}

static void bad_fleet_urls_say_why(void **state)
{
	(void)state;
	static const struct { const char *url, *want; } bad[] = {
		{ "sentinel://h:1", "give /MASTERNAME" },
		{ "sentinel://h:1/", "missing or too long master name" },
		{ "sentinel://h:1/bm?x=1", "only option is ?db=NUMBER" },
		{ "sentinel://h:1,/bm", "missing host" },
		{ "sentinel:///bm", "missing host" },
		{ "cluster://h:1/2", "nothing may follow" },
		{ "cluster://h:99999", "cluster://: port out of range" },
		{ "cluster://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 addresses" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct store_redis_url u;
		char err[256] = "";
		assert_int_equal(store_redis_parse_url(bad[i].url, &u, err, sizeof(err)), -1);
		if (strstr(err, bad[i].want) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].url, err, bad[i].want);
	}
}

static unsigned slot(const char *key)
{
	return redis_cluster_keyslot(key, strlen(key));
}

static void keyslot_is_crc16_of_the_hash_tag(void **state)
{
	(void)state;
	assert_int_equal(slot("123456789"), 0x31C3);	/* the CRC16 check value */
	assert_int_equal(slot("foo"), 12182);
	assert_int_equal(slot("somekey"), 11058);
	assert_int_equal(slot("{user1000}.following"), slot("user1000"));
	assert_int_equal(slot("foo{}{bar}"), 8363);		/* empty tag: whole key */
	assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
	assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
	assert_int_equal(slot("bm:out:{alice@x}:c:r:1/1"), slot("alice@x"));
}

static void moved_and_ask_are_read(void **state)
{
	(void)state;
	struct store_redis_seed to;
	unsigned s;
	bool ask;

	assert_int_equal(redis_cluster_redirect("MOVED 3999 127.0.0.1:6381", &ask, &s, &to), 0);
	assert_false(ask);
	assert_int_equal(s, 3999);
	assert_string_equal(to.host, "127.0.0.1");
	assert_int_equal(to.port, 6381);
	assert_int_equal(redis_cluster_redirect("ASK 1 ::1:7000", &ask, &s, &to), 0);
	assert_true(ask);
	assert_string_equal(to.host, "::1");
	assert_int_equal(redis_cluster_redirect("MOVED 16384 h:1", &ask, &s, &to), -1);
	assert_int_equal(redis_cluster_redirect("MOVED 1 h", &ask, &s, &to), -1);
	assert_int_equal(redis_cluster_redirect("TRYAGAIN x", &ask, &s, &to), -1);
}

/* ---- CLUSTER SLOTS, from a reply built by hand ---- */

static redisReply *r_int(long long v)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

static redisReply *r_str(const char *v)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_STRING;
	r->str = strdup(v);
	r->len = strlen(v);
	return r;
}

static redisReply *r_arr(size_t n, ...)
{
	redisReply *r = calloc(1, sizeof(*r));
	va_list ap;

	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = calloc(n, sizeof(*r->element));
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static void cluster_slots_give_masters_and_owners(void **state)
{
	(void)state;
	static uint8_t owner[REDIS_CLUSTER_SLOTS];
	struct store_redis_seed masters[4], asked = { "10.0.0.1", 7000 };
	size_t n;
	char err[128];
	redisReply *r = r_arr(3,
		r_arr(4, r_int(0), r_int(100), r_arr(3, r_str(""), r_int(7000), r_str("id1")),
		      r_arr(3, r_str("10.0.0.9"), r_int(7009), r_str("rep"))),
		r_arr(3, r_int(101), r_int(16000), r_arr(3, r_str("127.0.0.2"), r_int(7001), r_str("id2"))),
		r_arr(3, r_int(16001), r_int(16383), r_arr(3, r_str(""), r_int(7000), r_str("id1"))));

	assert_int_equal(redis_cluster_parse_slots(r, &asked, masters, 4, &n, owner, err, sizeof(err)), 0);
	assert_int_equal(n, 2);				/* the replica is no master */
	assert_string_equal(masters[0].host, "10.0.0.1");	/* "" = the node asked */
	assert_int_equal(masters[0].port, 7000);
	assert_string_equal(masters[1].host, "127.0.0.2");
	assert_int_equal(owner[0], 1);
	assert_int_equal(owner[100], 1);
	assert_int_equal(owner[101], 2);
	assert_int_equal(owner[16000], 2);
	assert_int_equal(owner[16383], 1);
	freeReplyObject(r);

	r = r_arr(1, r_arr(3, r_int(9), r_int(8), r_arr(3, r_str("h"), r_int(1), r_str("id"))));
	assert_int_equal(redis_cluster_parse_slots(r, &asked, masters, 4, &n, owner, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "malformed"));
	freeReplyObject(r);
	r = r_arr(1, r_arr(3, r_int(0), r_int(16384), r_arr(3, r_str("h"), r_int(1), r_str("id"))));
	assert_int_equal(redis_cluster_parse_slots(r, &asked, masters, 4, &n, owner, err, sizeof(err)), -1);
	freeReplyObject(r);
}

/* ---- a charge over several tags, with fake scripts ---- */

struct fake {
	size_t refuse_group;		/* this group refuses; SIZE_MAX none */
	size_t fail_group;		/* this group fails; SIZE_MAX none */
	char charged[8][64];		/* first key of each group charged */
	size_t ncharged;
	char refunded[8][64];		/* first key of each batch refunded */
	size_t nrefunded, refund_windows;
	long long refund_at;
};

static enum store_status fake_charge(void *ctx, size_t group, const struct store_bucket *b, size_t nb,
	const struct store_window *w, size_t nw, struct store_charge_result *res, char *err, size_t errlen)
{
	struct fake *f = ctx;
	(void)w;
	assert_true(nb > 0 || (group == 0 && nw > 0));	/* a lead group: windows alone */
	assert_int_equal(redis_tag_run(b, nb), nb);	/* one tag per group */
	assert_true(group == 0 || nw == 0);		/* windows ride with the account */
	if (group == f->fail_group) {
		snprintf(err, errlen, "down");
		return STORE_FAILED;
	}
	memset(res, 0, sizeof(*res));
	res->now_ms = 1000 + (long long)group;
	if (group == f->refuse_group) {
		res->over = 0;		/* the group's first bucket */
		res->retry_ms = 77;
		return STORE_OK;
	}
	snprintf(f->charged[f->ncharged++], 64, "%s", nb ? b[0].key : w[0].key);
	res->admitted = true;
	return STORE_OK;
}

static enum store_status fake_refund(void *ctx, struct store_batch *bt, size_t n, char *err, size_t errlen)
{
	struct fake *f = ctx;
	(void)err;
	(void)errlen;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(redis_tag_run(bt[i].buckets, bt[i].nb), bt[i].nb);
		snprintf(f->refunded[f->nrefunded++], 64, "%s", bt[i].nb ? bt[i].buckets[0].key : "-");
		f->refund_windows += bt[i].nw;
		for (size_t k = 0; k < bt[i].nw; k++)
			f->refund_at = bt[i].windows[k].at_ms;
		bt[i].now_ms = 5000 + (long long)i;
	}
	return STORE_OK;
}

static const struct store_bucket scoped[] = {
	{ .key = "out:{a@x}:c:r:1", .count = 10, .period_ms = 1000, .cost = 1 },
	{ .key = "out:{a@x}:c:r:2", .count = 10, .period_ms = 1000, .cost = 1 },
	{ .key = "out:{d:x}:c:r:1", .count = 10, .period_ms = 1000, .cost = 1 },
	{ .key = "out:{c:bulk}:c:r:1", .count = 10, .period_ms = 1000, .cost = 1 },
};
static const struct store_window vol[] = { { .key = "out:{a@x}:c:v:1", .period_ms = 1000 } };

static void later_scope_refusing_gives_back_the_earlier_ones(void **state)
{
	(void)state;
	struct fake f = { .refuse_group = 2, .fail_group = SIZE_MAX };
	struct store_charge_result res;
	char err[64];

	assert_int_equal(redis_groups_charge(&f, fake_charge, fake_refund, false, scoped, 4, vol, 1, &res,
					     err, sizeof(err)), STORE_OK);
	assert_false(res.admitted);
	assert_int_equal(res.over, 3);		/* group 2 starts at bucket 3 */
	assert_int_equal(res.retry_ms, 77);
	assert_int_equal(f.ncharged, 2);
	assert_int_equal(f.nrefunded, 2);
	assert_string_equal(f.refunded[0], "out:{a@x}:c:r:1");
	assert_string_equal(f.refunded[1], "out:{d:x}:c:r:1");
	assert_int_equal(f.refund_windows, 1);
	assert_int_equal(f.refund_at, 1000);	/* the account group's clock */
}

static void later_scope_failing_gives_back_and_fails(void **state)
{
	(void)state;
	struct fake f = { .refuse_group = SIZE_MAX, .fail_group = 1 };
	struct store_charge_result res;
	char err[64];

	assert_int_equal(redis_groups_charge(&f, fake_charge, fake_refund, false, scoped, 4, NULL, 0, &res,
					     err, sizeof(err)), STORE_FAILED);
	assert_string_equal(err, "down");
	assert_int_equal(f.nrefunded, 1);
	assert_string_equal(f.refunded[0], "out:{a@x}:c:r:1");
}

static void all_scopes_admitting_admit_and_account_refusing_charges_nothing(void **state)
{
	(void)state;
	struct fake f = { .refuse_group = SIZE_MAX, .fail_group = SIZE_MAX };
	struct store_charge_result res;
	char err[64];

	assert_int_equal(redis_groups_charge(&f, fake_charge, fake_refund, false, scoped, 4, vol, 1, &res,
					     err, sizeof(err)), STORE_OK);
	assert_true(res.admitted);
	assert_int_equal(f.ncharged, 3);
	assert_int_equal(f.nrefunded, 0);
	assert_int_equal(res.now_ms, 1000);

	struct fake g = { .refuse_group = 0, .fail_group = SIZE_MAX };
	assert_int_equal(redis_groups_charge(&g, fake_charge, fake_refund, false, scoped, 4, vol, 1, &res,
					     err, sizeof(err)), STORE_OK);
	assert_false(res.admitted);
	assert_int_equal(g.ncharged, 0);
	assert_int_equal(g.nrefunded, 0);
}

static void windows_under_another_tag_go_first_and_are_given_back(void **state)
{
	(void)state;
	struct fake f = { .refuse_group = 2, .fail_group = SIZE_MAX };
	struct store_charge_result res;
	char err[64];

	/* "by domain" and "by class" only: no account bucket, windows of the account. */
	assert_int_equal(redis_groups_charge(&f, fake_charge, fake_refund, true, scoped + 2, 2, vol, 1,
					     &res, err, sizeof(err)), STORE_OK);
	assert_false(res.admitted);
	assert_int_equal(res.over, 1);		/* the class bucket */
	assert_int_equal(f.ncharged, 2);
	assert_string_equal(f.charged[0], "out:{a@x}:c:v:1");
	assert_int_equal(f.nrefunded, 2);	/* the windows, then the domain */
	assert_string_equal(f.refunded[0], "-");
	assert_string_equal(f.refunded[1], "out:{d:x}:c:r:1");
	assert_int_equal(f.refund_windows, 1);
	assert_int_equal(f.refund_at, 1000);
}

static void refund_batches_are_split_by_tag(void **state)
{
	(void)state;
	struct fake f = { 0 };
	struct store_batch bt[2] = {
		{ scoped, 4, vol, 1, 0 },
		{ scoped + 3, 1, NULL, 0, 0 },
	};
	char err[64];

	assert_false(redis_batches_one_tag(bt, 2));
	assert_int_equal(redis_groups_refund(&f, fake_refund, bt, 2, err, sizeof(err)), STORE_OK);
	assert_int_equal(f.nrefunded, 4);
	assert_string_equal(f.refunded[2], "out:{c:bulk}:c:r:1");
	assert_int_equal(f.refund_windows, 1);
	assert_int_equal(bt[0].now_ms, 5000);
	assert_int_equal(bt[1].now_ms, 5003);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sentinel_url_lists_sentinels_master_and_db),
		cmocka_unit_test(cluster_url_lists_nodes),
		cmocka_unit_test(bad_fleet_urls_say_why),
		cmocka_unit_test(keyslot_is_crc16_of_the_hash_tag),
		cmocka_unit_test(moved_and_ask_are_read),
		cmocka_unit_test(cluster_slots_give_masters_and_owners),
		cmocka_unit_test(later_scope_refusing_gives_back_the_earlier_ones),
		cmocka_unit_test(later_scope_failing_gives_back_and_fails),
		cmocka_unit_test(all_scopes_admitting_admit_and_account_refusing_charges_nothing),
		cmocka_unit_test(windows_under_another_tag_go_first_and_are_given_back),
		cmocka_unit_test(refund_batches_are_split_by_tag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
