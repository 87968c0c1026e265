/*
 * Unit tests of the Redis command builder (store_redis_cmd.c): what it
 * puts in a connection's output buffer is byte for byte what hiredis's
 * own formatter makes of the same arguments, also after the NOSCRIPT
 * fallback points the first two elsewhere, and with an arena that grows.
 */
#include "unit.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "decimal.h"
#include "store_redis_conn.h"

/* A context on one end of a socket pair: its output buffer is only read. */
static redisContext *context(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	redisContext *ctx = redisConnectFd(fds[0]);
	assert_non_null(ctx);
	assert_int_equal(ctx->err, 0);
	return ctx;
}

static void close_context(redisContext *ctx, int fds[2])
{
	redisFree(ctx);		/* closes fds[0] */
	close(fds[1]);
}

/* cmd appended alone must equal hiredis's formatting of argv. */
static void assert_same_bytes(const struct redis_cmd *cmd, int argc, const char **argv,
	const size_t *argvlen)
{
	int fds[2];
	redisContext *ctx = context(fds);
	char *want;
	int n = redisFormatCommandArgv(&want, argc, argv, argvlen);

	assert_true(n > 0);
	assert_int_equal(redis_cmd_append(ctx, cmd), REDIS_OK);
	assert_int_equal(sdslen(ctx->obuf), (size_t)n);
	assert_memory_equal(ctx->obuf, want, (size_t)n);
	free(want);
	close_context(ctx, fds);
}

static void command_is_sent_as_hiredis_formats_it(void **state)
{
	(void)state;
	struct redis_cmd cmd;
	redis_cmd_init(&cmd, 16);
	redis_cmd_str(&cmd, "EVALSHA");
	redis_cmd_str(&cmd, "0123456789abcdef0123456789abcdef01234567");
	redis_cmd_num(&cmd, 2);
	redis_cmd_put(&cmd, "bm:", 3, "{alice@x}:std:r:10/3600000", 26);
	redis_cmd_put(&cmd, "", 0, "", 0);		/* an empty argument */
	redis_cmd_num(&cmd, 0);
	redis_cmd_num(&cmd, 1764720000000ULL);
	redis_cmd_num(&cmd, UINT64_MAX);
	redis_cmd_put(&cmd, "a\r\nb", 4, "\0c", 2);	/* binary-safe */
	assert_false(cmd.nomem);
	redis_cmd_finish(&cmd);

	const char *argv[] = { "EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2",
			       "bm:{alice@x}:std:r:10/3600000", "", "0", "1764720000000",
			       "18446744073709551615", "a\r\nb\0c" };
	size_t argvlen[] = { 7, 40, 1, 29, 0, 1, 13, 20, 6 };
	assert_int_equal(cmd.argc, 9);
	for (int i = 0; i < 9; i++) {
		assert_int_equal(cmd.argvlen[i], argvlen[i]);
		assert_memory_equal(cmd.argv[i], argv[i], argvlen[i]);
	}
	assert_same_bytes(&cmd, 9, argv, argvlen);
	redis_cmd_free(&cmd);
}

static void replaced_head_is_sent_with_the_rest_as_built(void **state)
{
	(void)state;
	struct redis_cmd cmd;
	static const char body[] = "return {KEYS[1], ARGV[1]}";
	redis_cmd_init(&cmd, 8);
	redis_cmd_str(&cmd, "EVALSHA");
	redis_cmd_str(&cmd, "0123456789abcdef0123456789abcdef01234567");
	redis_cmd_num(&cmd, 1);
	redis_cmd_str(&cmd, "key");
	redis_cmd_num(&cmd, 42);
	redis_cmd_finish(&cmd);
	/* as the NOSCRIPT fallback does */
	cmd.argv[0] = "EVAL";
	cmd.argvlen[0] = 4;
	cmd.argv[1] = body;
	cmd.argvlen[1] = strlen(body);

	const char *argv[] = { "EVAL", body, "1", "key", "42" };
	size_t argvlen[] = { 4, strlen(body), 1, 3, 2 };
	assert_same_bytes(&cmd, 5, argv, argvlen);
	redis_cmd_free(&cmd);
}

static void arena_grows_past_its_first_size(void **state)
{
	(void)state;
	enum { N = 300 };
	struct redis_cmd cmd;
	static char big[5000];
	const char *argv[N + 2];
	size_t argvlen[N + 2];
	char digits[N][DECIMAL_MAX + 1];

	memset(big, 'x', sizeof(big));
	redis_cmd_init(&cmd, N + 2);
	redis_cmd_str(&cmd, "HELLO");
	argv[0] = "HELLO", argvlen[0] = 5;
	redis_cmd_put(&cmd, big, sizeof(big), "", 0);
	argv[1] = big, argvlen[1] = sizeof(big);
	for (int i = 0; i < N; i++) {
		unsigned long long v = 1ULL << (i % 64);
		redis_cmd_num(&cmd, v);
		snprintf(digits[i], sizeof(digits[i]), "%llu", v);
		argv[2 + i] = digits[i];
		argvlen[2 + i] = strlen(digits[i]);
	}
	assert_false(cmd.nomem);
	redis_cmd_finish(&cmd);
	assert_same_bytes(&cmd, N + 2, argv, argvlen);
	redis_cmd_free(&cmd);
}

static void more_arguments_than_room_is_refused(void **state)
{
	(void)state;
	struct redis_cmd cmd;
	redis_cmd_init(&cmd, 2);
	redis_cmd_str(&cmd, "GET");
	redis_cmd_str(&cmd, "a");
	assert_false(cmd.nomem);
	redis_cmd_num(&cmd, 7);
	assert_true(cmd.nomem);
	redis_cmd_free(&cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(command_is_sent_as_hiredis_formats_it),
		cmocka_unit_test(replaced_head_is_sent_with_the_rest_as_built),
		cmocka_unit_test(arena_grows_past_its_first_size),
		cmocka_unit_test(more_arguments_than_room_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
