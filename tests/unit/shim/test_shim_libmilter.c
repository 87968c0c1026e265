/*
 * Unit tests of the milter socket I/O that shim_libmilter.c gives
 * libmilter's engine: mi_rd_cmd and mi_wr_cmd keep libmilter's contract
 * (whole commands however the MTA splits them, error codes below
 * SMFIC_VALIDCMD, bounded sizes) over unix and TCP sockets.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "shim_libmilter.h"

char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name);
int mi_wr_cmd(int sd, struct timeval *timeout, int cmd, char *buf, size_t len);

#define SMFIC_VALIDCMD ' '

static struct timeval long_wait = { 5, 0 };

/* a milter command as the MTA puts it on the wire */
static size_t wire(char *out, char cmd, const char *data, size_t len)
{
	uint32_t n = htonl((uint32_t)len + 1);
	memcpy(out, &n, 4);
	out[4] = cmd;
	memcpy(out + 5, data, len);
	return len + 5;
}

struct pieces {
	int fd;
	const char *bytes;
	size_t len;
	size_t cut[4];		/* write boundaries, 0 = none */
	bool close_after;
};

/* writes the bytes in pieces, 5 ms apart, as a slow MTA would */
static void *write_pieces(void *arg)
{
	struct pieces *p = arg;
	size_t from = 0;
	for (int i = 0; i <= 4; i++) {
		size_t to = i < 4 && p->cut[i] ? p->cut[i] : p->len;
		if (to > from) {
			assert_int_equal(write(p->fd, p->bytes + from, to - from), (ssize_t)(to - from));
			from = to;
			struct timespec ts = { 0, 5 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (from == p->len)
			break;
	}
	if (p->close_after)
		close(p->fd);
	return NULL;
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void command_split_across_writes_is_read_whole(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char data[3000], bytes[3100];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	size_t n = wire(bytes, 'B', data, sizeof(data));
	struct pieces p = { .fd = sv[1], .bytes = bytes, .len = n, .cut = { 2, 5, 700, 2000 } };
	pthread_t t;
	pthread_create(&t, NULL, write_pieces, &p);
	char cmd = 0;
	size_t len = 0;
	char *buf = mi_rd_cmd(sv[0], &long_wait, &cmd, &len, "test");
	pthread_join(t, NULL);
	assert_non_null(buf);
	assert_int_equal(cmd, 'B');
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(buf, data, sizeof(data));
	assert_int_equal(buf[len], '\0');
	free(buf);
	close(sv[0]);
	close(sv[1]);
}

static void command_without_data_has_no_buffer(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char bytes[8];
	size_t n = wire(bytes, 'Q', "", 0);
	assert_int_equal(write(sv[1], bytes, n), (ssize_t)n);
	char cmd = 0;
	size_t len = 99;
	assert_null(mi_rd_cmd(sv[0], &long_wait, &cmd, &len, "test"));
	assert_int_equal(cmd, 'Q');
	assert_int_equal(len, 0);
	close(sv[0]);
	close(sv[1]);
}

static void eof_inside_a_command_is_an_error(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char bytes[200];
	wire(bytes, 'H', "0123456789012345678901234567890123456789", 40);
	struct pieces p = { .fd = sv[1], .bytes = bytes, .len = 20, .close_after = true };
	pthread_t t;
	pthread_create(&t, NULL, write_pieces, &p);
	char cmd = 'x';
	size_t len = 0;
	assert_null(mi_rd_cmd(sv[0], &long_wait, &cmd, &len, "test"));
	pthread_join(t, NULL);
	assert_true(cmd < SMFIC_VALIDCMD);
	assert_int_equal(len, 0);
	close(sv[0]);
}

static void oversized_command_is_refused_unread(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char bytes[5];
	uint32_t n = htonl(SHIM_LIBMILTER_DATA_MAX + 2);
	memcpy(bytes, &n, 4);
	bytes[4] = 'B';
	assert_int_equal(write(sv[1], bytes, 5), 5);
	char cmd = 0;
	size_t len = 0;
	assert_null(mi_rd_cmd(sv[0], &long_wait, &cmd, &len, "test"));
	assert_true(cmd < SMFIC_VALIDCMD);
	assert_int_equal(len, 0);
	close(sv[0]);
	close(sv[1]);
}

static void silent_mta_times_out(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char bytes[5];
	uint32_t n = htonl(11);
	memcpy(bytes, &n, 4);
	bytes[4] = 'H';
	assert_int_equal(write(sv[1], bytes, 5), 5);
	struct timeval short_wait = { 0, 50 * 1000 };
	char cmd = 0;
	size_t len = 0;
	assert_null(mi_rd_cmd(sv[0], &short_wait, &cmd, &len, "test"));
	assert_true(cmd < SMFIC_VALIDCMD);
	close(sv[0]);
	close(sv[1]);
}

struct drain {
	int fd;
	char *got;
	size_t want, have;
};

/* reads slowly until want bytes arrived */
static void *drain_slowly(void *arg)
{
	struct drain *d = arg;
	while (d->have < d->want) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
		size_t chunk = d->want - d->have < 4096 ? d->want - d->have : 4096;
		ssize_t n = read(d->fd, d->got + d->have, chunk);
		if (n <= 0)
			break;
		d->have += (size_t)n;
	}
	return NULL;
}

static void reply_larger_than_the_socket_buffer_is_written_whole(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	size_t len = 300 * 1024;
	char *data = malloc(len);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i * 7);
	struct drain d = { .fd = sv[1], .got = malloc(len + 5), .want = len + 5 };
	pthread_t t;
	pthread_create(&t, NULL, drain_slowly, &d);
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'h', data, len), MI_SUCCESS);
	pthread_join(t, NULL);
	assert_int_equal(d.have, len + 5);
	uint32_t n;
	memcpy(&n, d.got, 4);
	assert_int_equal(ntohl(n), len + 1);
	assert_int_equal(d.got[4], 'h');
	assert_memory_equal(d.got + 5, data, len);
	free(d.got);
	free(data);
	close(sv[0]);
	close(sv[1]);
}

static void reply_over_the_limit_or_to_a_closed_mta_fails(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	static char big[SHIM_LIBMILTER_DATA_MAX + 1];
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'h', big, sizeof(big)), MI_FAILURE);
	char c;
	assert_int_equal(recv(sv[1], &c, 1, MSG_DONTWAIT), -1);	/* nothing was written */
	close(sv[1]);
	/* no SIGPIPE: the test would die */
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'c', NULL, 0), MI_FAILURE);
	close(sv[0]);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* writes the pieces after 80 ms */
static void *write_later(void *arg)
{
	struct timespec delay = { 0, 80 * 1000 * 1000 };
	nanosleep(&delay, NULL);
	return write_pieces(arg);
}

/*
 * A final reply (here SMFIR_CONTINUE) ends our turn, so mi_wr_cmd returns
 * once the MTA's next command is there; an edit (SMFIR_ADDHEADER) is
 * followed by more of ours, so it returns at once.
 */
static void final_reply_returns_when_the_next_command_is_in(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	char bytes[8];
	size_t n = wire(bytes, 'Q', "", 0);
	struct pieces p = { .fd = sv[1], .bytes = bytes, .len = n };
	double t0 = now_ms();
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'h', "X\0y\0", 4), MI_SUCCESS);
	assert_true(now_ms() - t0 < 1000);
	pthread_t t;
	pthread_create(&t, NULL, write_later, &p);
	t0 = now_ms();
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'c', NULL, 0), MI_SUCCESS);
	assert_true(now_ms() - t0 >= 60);	/* it cannot return before the command */
	pthread_join(t, NULL);
	char cmd = 0;
	size_t len = 0;
	assert_null(mi_rd_cmd(sv[0], &long_wait, &cmd, &len, "test"));
	assert_int_equal(cmd, 'Q');
	close(sv[0]);
	close(sv[1]);
}

/* ... and after idle_seconds of silence it returns all the same. */
static void final_reply_to_a_silent_mta_returns_after_the_idle_time(void **state)
{
	(void)state;
	int sv[2];
	pair(sv);
	shim_libmilter_init(NULL, 1);
	double t0 = now_ms();
	assert_int_equal(mi_wr_cmd(sv[0], &long_wait, 'c', NULL, 0), MI_SUCCESS);
	double waited = now_ms() - t0;
	assert_true(waited >= 900 && waited < 10000);
	shim_libmilter_init(NULL, 600);
	close(sv[0]);
	close(sv[1]);
}

/* Postfix over TCP: Nagle on, a command in a 4096-byte piece and a tail */
static void command_split_over_tcp_is_read_whole(void **state)
{
	(void)state;
	int lst = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(lst, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lst, 1), 0);
	assert_int_equal(getsockname(lst, (struct sockaddr *)&sin, &sl), 0);
	int mta = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(mta, (struct sockaddr *)&sin, sizeof(sin)), 0);
	int milter = accept(lst, NULL, NULL);
	assert_true(milter >= 0);
	size_t body = 6000;
	char *data = malloc(body), *bytes = malloc(body + 5);
	memset(data, 'x', body);
	size_t n = wire(bytes, 'B', data, body);
	struct pieces p = { .fd = mta, .bytes = bytes, .len = n, .cut = { 4096 } };
	pthread_t t;
	pthread_create(&t, NULL, write_pieces, &p);
	char cmd = 0;
	size_t len = 0;
	char *buf = mi_rd_cmd(milter, &long_wait, &cmd, &len, "test");
	pthread_join(t, NULL);
	assert_non_null(buf);
	assert_int_equal(cmd, 'B');
	assert_int_equal(len, body);
	assert_memory_equal(buf, data, body);
	free(buf);
	free(data);
	free(bytes);
	close(milter);
	close(mta);
	close(lst);
}

int main(void)
{
	signal(SIGPIPE, SIG_DFL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(command_split_across_writes_is_read_whole),
		cmocka_unit_test(command_without_data_has_no_buffer),
		cmocka_unit_test(eof_inside_a_command_is_an_error),
		cmocka_unit_test(oversized_command_is_refused_unread),
		cmocka_unit_test(silent_mta_times_out),
		cmocka_unit_test(reply_larger_than_the_socket_buffer_is_written_whole),
		cmocka_unit_test(reply_over_the_limit_or_to_a_closed_mta_fails),
		cmocka_unit_test(command_split_over_tcp_is_read_whole),
		cmocka_unit_test(final_reply_returns_when_the_next_command_is_in),
		cmocka_unit_test(final_reply_to_a_silent_mta_returns_after_the_idle_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
