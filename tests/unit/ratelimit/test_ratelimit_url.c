/*
 * Where the store finds Redis: the Redis URL, RedisPasswordFile, and the
 * FILE: diagnostics store_open gives for them. No server needed. The
 * password must never appear in any message.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <fcntl.h>

#include "store.h"
#include "store_redis.h"

#define SECRET "S3cretPW"

static void parse_ok(const char *url, struct store_redis_url *u)
{
	char err[256] = "";
	if (store_redis_parse_url(url, u, err, sizeof(err)) != 0)
		fail_msg("%s: %s", url, err);
}

static void parse_bad(const char *url, const char *want)
{
	struct store_redis_url u;
	char err[256] = "";
	assert_int_equal(store_redis_parse_url(url, &u, err, sizeof(err)), -1);
	if (strstr(err, want) == NULL)
		fail_msg("%s: got \"%s\", want \"%s\"", url, err, want);
	assert_null(strstr(err, SECRET));
	assert_string_equal(u.password, "");		/* wiped */
}

static void tcp_url_with_password_port_and_db(void **state)
{
	(void)state;
	struct store_redis_url u;
	parse_ok("redis://:pw@127.0.0.1:6380/2", &u);
	assert_false(u.unix_socket);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.user, "");
	assert_string_equal(u.password, "pw");
}

static void tcp_url_defaults_and_variants(void **state)
{
	(void)state;
	struct store_redis_url u;
	parse_ok("redis://127.0.0.1", &u);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.password, "");
	parse_ok("redis://redis-1.example.net/", &u);
	assert_string_equal(u.host, "redis-1.example.net");
	assert_int_equal(u.port, 6379);
	parse_ok("redis://app:p%40ss%2F1@[::1]:7000/15", &u);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 15);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.password, "p@ss/1");
}

static void unix_url_with_and_without_db(void **state)
{
	(void)state;
	struct store_redis_url u;
	parse_ok("unix:/path?db=3", &u);
	assert_true(u.unix_socket);
	assert_string_equal(u.path, "/path");
	assert_int_equal(u.db, 3);
	parse_ok("unix:/run/redis/redis-server.sock", &u);
	assert_string_equal(u.path, "/run/redis/redis-server.sock");
	assert_int_equal(u.db, 0);
	parse_ok("unix:///var/run/redis.sock", &u);
	assert_string_equal(u.path, "/var/run/redis.sock");
}

static void bad_urls_are_refused_with_a_reason(void **state)
{
	(void)state;
	char longpath[200];
	snprintf(longpath, sizeof(longpath), "unix:/%0150d", 0);

	parse_bad("http://127.0.0.1", "must start with redis:// or unix:");
	parse_bad("redis://", "missing host");
	parse_bad("redis://:" SECRET "@", "missing host");
	parse_bad("redis://h:0", "port out of range");
	parse_bad("redis://:" SECRET "@h:65536", "port out of range");
	parse_bad("redis://h:abc", "bad port");
	parse_bad("redis://h:", "bad port");
	parse_bad("redis://h:123456", "bad port");
	parse_bad("redis://h/abc", "only /DB may follow");
	parse_bad("redis://h/1/2", "only /DB may follow");
	parse_bad("redis://h?db=1", "only /DB may follow");
	parse_bad("redis://" SECRET "@h", "before @ give :PASSWORD");
	parse_bad("redis://:@h", "empty password");
	parse_bad("redis://:" SECRET "%zz@h", "bad %-escape");
	parse_bad("redis://:" SECRET "%00@h", "bad %-escape");
	parse_bad("redis://[::1", "missing ]");
	parse_bad("redis://[::1]x", "junk after ]");
	parse_bad("redis://ho st", "bad character in host");
	parse_bad("unix:relative.sock", "absolute socket path");
	parse_bad("unix:/", "socket path is empty");
	parse_bad("unix:/x?db=abc", "only option is ?db=NUMBER");
	parse_bad("unix:/x?timeout=1", "only option is ?db=NUMBER");
	parse_bad(longpath, "socket path is too long");
}

static struct store *open_with(const char *url, const char *password_file, struct diag *d)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.path = (char *)"test.conf";
	s.redis_url = (char *)url;
	s.redis_password_file = (char *)password_file;
	s.redis_timeout_ms = 200;
	s.redis_prefix = (char *)"bm:";
	return store_open(&s, d);
}

static void assert_one_error(const struct diag *d, const char *want)
{
	assert_int_equal(d->count, 1);
	if (strncmp(d->lines[0], want, strlen(want)) != 0)
		fail_msg("got \"%s\", want \"%s...\"", d->lines[0], want);
	assert_null(strstr(d->lines[0], SECRET));
}

static void store_open_reports_bad_settings_as_file_diagnostics(void **state)
{
	(void)state;
	struct diag d = { 0 };

	assert_null(open_with("redis://:" SECRET "@h:99999", NULL, &d));
	assert_one_error(&d, "test.conf: Redis: redis://: port out of range");
	diag_free(&d);
	assert_null(open_with("sentinel://h:26379", NULL, &d));
	assert_one_error(&d, "test.conf: Redis: sentinel://: give /MASTERNAME");
	diag_free(&d);
	assert_null(open_with("rediss://:" SECRET "@h", NULL, &d));
	assert_one_error(&d, "test.conf: Redis: unknown URL scheme");
	diag_free(&d);
	assert_null(open_with("redis://h", "/nonexistent/bm-password", &d));
	assert_one_error(&d, "test.conf: RedisPasswordFile /nonexistent/bm-password: No such file");
	diag_free(&d);
}

static void password_file_gives_the_first_line(void **state)
{
	(void)state;
	char path[] = "/tmp/bm-rl-pw-XXXXXX", buf[STORE_REDIS_SECRET_MAX], err[256];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, SECRET "\r\nsecond line\n", 23), 23);
	close(fd);
	assert_int_equal(store_redis_read_password(path, buf, sizeof(buf), err, sizeof(err)), 0);
	assert_string_equal(buf, SECRET);

	/* a store opens with it and without touching the network */
	struct diag d = { 0 };
	struct store *st = open_with("unix:/nonexistent/redis.sock", path, &d);
	assert_non_null(st);
	assert_int_equal(d.count, 0);
	store_close(st);

	/* but not with a password in the URL as well */
	assert_null(open_with("redis://:" SECRET "@h", path, &d));
	assert_one_error(&d, "test.conf: Redis: password both in the URL and in RedisPasswordFile");
	diag_free(&d);

	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(store_redis_read_password(path, buf, sizeof(buf), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no password in the file"));

	char big[STORE_REDIS_SECRET_MAX + 10];
	memset(big, 'x', sizeof(big));
	fd = open(path, O_WRONLY);
	assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	close(fd);
	assert_int_equal(store_redis_read_password(path, buf, sizeof(buf), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "password longer than"));
	assert_null(strstr(err, "xxxx"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tcp_url_with_password_port_and_db),
		cmocka_unit_test(tcp_url_defaults_and_variants),
		cmocka_unit_test(unix_url_with_and_without_db),
		cmocka_unit_test(bad_urls_are_refused_with_a_reason),
		cmocka_unit_test(store_open_reports_bad_settings_as_file_diagnostics),
		cmocka_unit_test(password_file_gives_the_first_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
