/*
 * Unit tests of the interpositions (milter/shim/shim.h), in a program linked
 * as the daemon is (libbulk.a, then libmilter, libopendkim and OpenSSL
 * as shared libraries): the start-up check finds every one active, so
 * if a change of link, flags or library makes one stop binding, this
 * test fails instead of the daemon silently running slower; and a
 * libmilter shim that fell back hands the socket I/O to libmilter's own.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "privkey.h"
#include "shim.h"
#include "shim_libmilter.h"

char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name);
int mi_wr_cmd(int sd, struct timeval *timeout, int cmd, char *buf, size_t len);

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void every_shim_is_active_in_a_binary_linked_like_the_daemon(void **state)
{
	(void)state;
	char line[SHIM_LINE_MAX];
	unsigned long lent0, parsed0, lent1, parsed1;

	privkey_stats(&lent0, &parsed0);
	unsigned active = shim_check(line, sizeof(line));
	privkey_stats(&lent1, &parsed1);
	print_message("%s\n", line);
	assert_int_equal(active & SHIM_LIBMILTER, SHIM_LIBMILTER);
	assert_int_equal(active & SHIM_OPENSSL, SHIM_OPENSSL);
	assert_int_equal(active, SHIM_ALL);
	assert_non_null(strstr(line, "shims: libmilter active (libmilter 1.0."));
	assert_non_null(strstr(line, "; openssl active (libopendkim 2.11."));
	assert_null(strstr(line, "fell back"));
	/* the probe's signature borrowed its key: libopendkim parsed none */
	assert_int_equal(lent1 - lent0, 1);
	assert_int_equal(parsed1 - parsed0, 0);
}

/*
 * After a fall-back our mi_wr_cmd is libmilter's: a final reply returns
 * at once, where ours would wait (here up to 2 s) for the MTA's next
 * command; and mi_rd_cmd reads the command as libmilter does. Runs after
 * the check: a fall-back lasts for the process.
 */
static void libmilter_fall_back_hands_the_io_to_libmilters_own(void **state)
{
	(void)state;
	int sv[2];
	struct timeval wait = { 5, 0 };

	shim_libmilter_init(NULL, 2);
	assert_true(shim_libmilter_fall_back());
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	double t0 = now_ms();
	assert_int_equal(mi_wr_cmd(sv[0], &wait, SMFIR_CONTINUE, NULL, 0), MI_SUCCESS);
	assert_true(now_ms() - t0 < 1000);
	unsigned char got[5];
	assert_int_equal(read(sv[1], got, sizeof(got)), 5);
	assert_int_equal(got[3], 1);
	assert_int_equal(got[4], SMFIR_CONTINUE);

	unsigned char quit[5] = { 0, 0, 0, 1, SMFIC_QUIT };
	assert_int_equal(write(sv[1], quit, sizeof(quit)), 5);
	char cmd = 0;
	size_t len = 99;
	assert_null(mi_rd_cmd(sv[0], &wait, &cmd, &len, "test"));
	assert_int_equal(cmd, SMFIC_QUIT);
	assert_int_equal(len, 0);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_shim_is_active_in_a_binary_linked_like_the_daemon),
		cmocka_unit_test(libmilter_fall_back_hands_the_io_to_libmilters_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
