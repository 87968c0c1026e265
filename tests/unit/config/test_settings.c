/*
 * Unit tests of bulkmilter.conf parsing (settings.c).
 */
#include "unit.h"

#include "log.h"
#include "settings.h"
#include "snapshot.h"

static void defaults_match_the_spec(void **state)
{
	(void)state;
	struct diag d = { 0 };
	struct settings *s = settings_load(unit_file("# nothing set\n\n"), &d);
	assert_non_null(s);
	assert_string_equal(s->socket, "unix:/run/bulkmilter/bulkmilter.sock");
	assert_int_equal(s->umask, 007);
	assert_int_equal(s->log_level, LOG_LEVEL_INFO);
	assert_string_equal(s->redis_url, "redis://127.0.0.1:6379/0");
	assert_int_equal(s->redis_timeout_ms, 200);
	assert_string_equal(s->redis_prefix, "bm:");
	assert_int_equal(s->on_store_failure, STORE_FAILURE_ACCEPT);
	assert_int_equal(s->mode, MODE_ENFORCE);
	assert_true(s->canon_header_relaxed && s->canon_body_relaxed);
	assert_string_equal(s->oversign_headers[0], "from");
	assert_null(s->oversign_headers[1]);
	assert_true(s->require_safe_keys);
	assert_false(s->multiple_signatures);
	assert_string_equal(s->resolver, "system");
	assert_string_equal(s->tag_header, "X-Bulk-Class");
	assert_null(s->key_table);
	assert_null(s->user_id);
	assert_string_equal(s->spf_user_id, "nobody");
	struct netaddr a;
	assert_int_equal(netaddr_parse("127.0.0.5", &a), 0);
	assert_true(settings_is_internal(s, &a));
	assert_int_equal(netaddr_parse("::1", &a), 0);
	assert_true(settings_is_internal(s, &a));
	assert_int_equal(netaddr_parse("192.0.2.1", &a), 0);
	assert_false(settings_is_internal(s, &a));
	settings_free(s);
}

static void every_setting_parses(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file(
		"Socket inet:8891@127.0.0.1\n"
		"userid root:root   # comment after a value\n"
		"SpfUserID nobody:nogroup\n"
		"PidFile /run/bm.pid\n"
		"Umask 027\n"
		"LogLevel debug\n"
		"Policy /etc/bm/p.policy\n"
		"Redis redis://:secret@10.0.0.1:6380/2\n"
		"RedisPasswordFile /etc/bm/redis.pw\n"
		"RedisTimeout 500ms\n"
		"RedisPrefix fleet1:\n"
		"OnStoreFailure tempfail\n"
		"Mode monitor\n"
		"InternalHosts 10.0.0.0/8, 2001:db8::/32 192.168.1.1\n"
		"KeyTable /etc/dkim/KeyTable\n"
		"SigningTable refile:/etc/dkim/SigningTable\n"
		"MultipleSignatures yes\n"
		"Canonicalization simple/relaxed\n"
		"OversignHeaders From, Subject,To\n"
		"RequireSafeKeys no\n"
		"AuthservID mx.example.com\n"
		"EgressAddresses 203.0.113.20 2001:db8::20\n"
		"Resolver 127.0.0.1:5353\n"
		"DNSTimeout 1s\n"
		"TagHeader X-Mail-Class\n"
		"MetricsListen 127.0.0.1:9100\n");
	struct settings *s = settings_load(path, &d);
	diag_print(&d, stderr);
	assert_non_null(s);
	assert_string_equal(s->socket, "inet:8891@127.0.0.1");
	assert_string_equal(s->user_id, "root:root");
	assert_string_equal(s->spf_user_id, "nobody:nogroup");
	assert_int_equal(s->umask, 027);
	assert_int_equal(s->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(s->redis_timeout_ms, 500);
	assert_string_equal(s->redis_prefix, "fleet1:");
	assert_int_equal(s->on_store_failure, STORE_FAILURE_TEMPFAIL);
	assert_int_equal(s->mode, MODE_MONITOR);
	assert_int_equal(s->internal_hosts_count, 3);
	assert_string_equal(s->signing_table, "refile:/etc/dkim/SigningTable");
	assert_true(s->multiple_signatures);
	assert_false(s->canon_header_relaxed);
	assert_true(s->canon_body_relaxed);
	assert_string_equal(s->oversign_headers[1], "subject");
	assert_string_equal(s->oversign_headers[2], "to");
	assert_null(s->oversign_headers[3]);
	assert_false(s->require_safe_keys);
	assert_int_equal(s->egress_addresses_count, 2);
	assert_int_equal(s->dns_timeout_ms, 1000);
	assert_string_equal(s->tag_header, "X-Mail-Class");
	struct netaddr a;
	netaddr_parse("10.9.8.7", &a);
	assert_true(settings_is_internal(s, &a));
	netaddr_parse("127.0.0.1", &a);
	assert_false(settings_is_internal(s, &a));	/* replaced the default */
	settings_free(s);
}

static void errors_name_file_and_line(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file(
		"Socket unix:/tmp/x.sock\n"
		"NoSuchSetting 1\n"
		"Umask 999\n"
		"LogLevel loud\n"
		"RedisTimeout forever\n"
		"OnStoreFailure drop\n"
		"Mode lax\n"
		"InternalHosts 10.0.0.0/33\n"
		"MultipleSignatures maybe\n"
		"Canonicalization fuzzy\n"
		"Resolver dns.example.com\n"
		"TagHeader Bad:Name\n"
		"Socket unix:/tmp/y.sock\n"
		"EgressAddresses 300.1.1.1\n"
		"Redis http://x\n"
		"UserID no-such-user-bm\n"
		"Policy\n");
	struct settings *s = settings_load(path, &d);
	assert_null(s);
	assert_true(unit_has_error(&d, path, 2, "unknown setting NoSuchSetting"));
	assert_true(unit_has_error(&d, path, 3, "Umask:"));
	assert_true(unit_has_error(&d, path, 4, "LogLevel:"));
	assert_true(unit_has_error(&d, path, 5, "RedisTimeout:"));
	assert_true(unit_has_error(&d, path, 6, "OnStoreFailure:"));
	assert_true(unit_has_error(&d, path, 7, "Mode:"));
	assert_true(unit_has_error(&d, path, 8, "InternalHosts: not an address or CIDR block: 10.0.0.0/33"));
	assert_true(unit_has_error(&d, path, 9, "MultipleSignatures:"));
	assert_true(unit_has_error(&d, path, 10, "Canonicalization:"));
	assert_true(unit_has_error(&d, path, 11, "Resolver:"));
	assert_true(unit_has_error(&d, path, 12, "TagHeader:"));
	assert_true(unit_has_error(&d, path, 13, "Socket: already set at line 1"));
	assert_true(unit_has_error(&d, path, 14, "EgressAddresses:"));
	assert_true(unit_has_error(&d, path, 15, "Redis:"));
	assert_true(unit_has_error(&d, path, 16, "UserID: no such user"));
	assert_true(unit_has_error(&d, path, 17, "Policy: missing value"));
	assert_int_equal(diag_errors(&d), 16);
	diag_free(&d);
}

/* Values checked after parsing (the Redis URL, the password and feedback
 * key files) still name the line that set them, not just the file; -p
 * SOCKET is checked as Socket is. */
static void later_checks_name_the_line(void **state)
{
	(void)state;
	char text[512];
	const char *policy = unit_file("class c { }\nassign outbound c\n");
	static const struct {
		const char *line, *msg;
	} cases[] = {
		{ "Redis redis://127.0.0.1:99999/0", "Redis: " },
		{ "Redis redis://127.0.0.1:6379/x", "Redis: " },
		{ "RedisPasswordFile /nonexistent/bm-pw", "RedisPasswordFile /nonexistent/bm-pw: " },
		{ "FeedbackKeyFile /nonexistent/bm-key", "FeedbackKeyFile /nonexistent/bm-key: " },
		{ "KeyTable /nonexistent/kt", "KeyTable is set but SigningTable is not" },
		{ "SigningTable /nonexistent/st", "SigningTable is set but KeyTable is not" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct diag d = { 0 };
		snprintf(text, sizeof(text), "# line 1\nPolicy %s\n%s\n", policy, cases[i].line);
		const char *path = unit_file(text);
		assert_null(snapshot_load(path, NULL, false, &d));
		assert_true(unit_has_error(&d, path, 3, cases[i].msg));
		assert_int_equal(diag_errors(&d), 1);
		diag_free(&d);
	}
	/* bulkmilter -p SOCKET is checked as Socket is */
	struct diag d = { 0 };
	snprintf(text, sizeof(text), "Policy %s\n", policy);
	const char *conf = unit_file(text);
	assert_null(snapshot_load(conf, "inet:99999@127.0.0.1", false, &d));
	assert_true(unit_has_error(&d, "-p", 0, "Socket: expected inet:PORT@HOST, got inet:99999@127.0.0.1"));
	assert_int_equal(diag_errors(&d), 1);
	diag_free(&d);
	struct snapshot *snap = snapshot_load(conf, "unix:/tmp/bm-p.sock", false, &d);
	assert_non_null(snap);
	assert_string_equal(snap->settings->socket, "unix:/tmp/bm-p.sock");
	snapshot_release(snap);

	struct settings *s = settings_load(unit_file("# one\n\nredis unix:/tmp/x.sock\n"), &d);
	assert_non_null(s);
	assert_int_equal(settings_line(s, "Redis"), 3);
	assert_int_equal(settings_line(s, "redisprefix"), 0);
	assert_int_equal(settings_line(s, "NoSuchSetting"), 0);
	settings_free(s);
}

/* The SPF helpers' user: never root, never UserID's user or group. */
static void spf_user_is_a_user_of_its_own(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file("SpfUserID root\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "SpfUserID: the SPF helpers must not run as root or group root: root"));
	assert_int_equal(diag_errors(&d), 1);
	diag_free(&d);

	path = unit_file("SpfUserID nobody:root\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "SpfUserID: the SPF helpers must not run as root or group root"));
	diag_free(&d);

	path = unit_file("SpfUserID no-such-user-bm\nSpfUserID nobody\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "SpfUserID: no such user: no-such-user-bm"));
	assert_true(unit_has_error(&d, path, 2, "SpfUserID: already set at line 1"));
	assert_int_equal(diag_errors(&d), 2);
	diag_free(&d);

	path = unit_file("UserID postfix\nSpfUserID postfix:nogroup\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 2, "SpfUserID postfix:nogroup shares its user with UserID postfix: "
						 "the SPF helpers must run as a user and group of their own"));
	assert_int_equal(diag_errors(&d), 1);
	diag_free(&d);

	path = unit_file("SpfUserID nobody:postfix\nUserID postfix\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 1, "SpfUserID nobody:postfix shares its group with UserID postfix"));
	diag_free(&d);

	/* the default, nobody, is UserID: reported at UserID's line */
	path = unit_file("# the daemon as nobody\nUserID nobody\n");
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, path, 2, "SpfUserID nobody shares its user with UserID nobody"));
	diag_free(&d);

	path = unit_file("UserID postfix:postfix\nSpfUserID nobody:nogroup\n");
	struct settings *s = settings_load(path, &d);
	assert_non_null(s);
	assert_int_equal(diag_errors(&d), 0);
	settings_free(s);
}

static void redis_password_never_in_errors(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file("Redis rediss://:hunter2@10.0.0.1/0\n");
	assert_null(settings_load(path, &d));
	assert_int_equal(d.count, 1);
	assert_null(strstr(d.lines[0], "hunter2"));
	diag_free(&d);
}

static void internal_hosts_from_file(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *list = unit_file("# our networks\n198.51.100.0/24\n2001:db8:1::/48 # v6\nbogus\n");
	char conf[256];
	snprintf(conf, sizeof(conf), "InternalHosts file:%s\n", list);
	const char *path = unit_file(conf);
	assert_null(settings_load(path, &d));
	assert_true(unit_has_error(&d, list, 4, "InternalHosts: not an address or CIDR block: bogus"));
	diag_free(&d);
}

static void durations(void **state)
{
	(void)state;
	long ms;
	assert_int_equal(settings_parse_duration_ms("200ms", &ms), 0);
	assert_int_equal(ms, 200);
	assert_int_equal(settings_parse_duration_ms("2", &ms), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(settings_parse_duration_ms("1.5s", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(settings_parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(settings_parse_duration_ms("1d", &ms), 0);
	assert_int_equal(ms, 86400000);
	assert_int_equal(settings_parse_duration_ms("1w", &ms), -1);
	assert_int_equal(settings_parse_duration_ms("", &ms), -1);
	assert_int_equal(settings_parse_duration_ms("-1s", &ms), -1);
}

static void missing_file_is_an_error(void **state)
{
	(void)state;
	struct diag d = { 0 };
	assert_null(settings_load("/nonexistent/bm.conf", &d));
	assert_true(unit_has_error(&d, "/nonexistent/bm.conf", 0, "cannot open"));
	diag_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_match_the_spec),
		cmocka_unit_test(every_setting_parses),
		cmocka_unit_test(errors_name_file_and_line),
		cmocka_unit_test(later_checks_name_the_line),
		cmocka_unit_test(spf_user_is_a_user_of_its_own),
		cmocka_unit_test(redis_password_never_in_errors),
		cmocka_unit_test(internal_hosts_from_file),
		cmocka_unit_test(durations),
		cmocka_unit_test(missing_file_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
