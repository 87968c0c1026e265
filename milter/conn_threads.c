/*
 * conn_threads - serve each MTA connection on a thread of its own.
 *
 * libmilter's accept loop (mi_listener) calls mi_pool_controller_init()
 * once and mi_start_session(ctx) for every connection it accepts; its
 * engine reads and writes the socket with mi_rd_cmd() and mi_wr_cmd().
 * All four are exported by libmilter.so and called through its PLT, so
 * the definitions below, in the executable, are the ones bound: the
 * same interposition privkey.c relies on. Nothing else of the pool
 * runs: its controller thread, pipe and worker threads are never
 * created. The protocol (state machine, negotiation, macros, replies)
 * stays libmilter's.
 *
 * What we rely on from libmilter (8.14 to 8.18, checked against
 * Debian 12's 8.17.1 build, whose engine is compiled for the pool):
 *  - mi_engine(ctx) reads and answers commands while the socket has
 *    data and returns MI_CONTINUE (1) when it has none; any other value
 *    ends the session, after libmilter has called the abort and close
 *    callbacks as needed. mi_clr_ctx(ctx) then closes the socket and
 *    frees the context: what the pool does.
 *  - mi_rd_cmd and mi_wr_cmd keep the signatures and the contract
 *    they have had since 8.13 (see each below).
 *  - the socket descriptor is the second member of the context
 *    (struct smfi_str: ctx_id, a pthread_t, then ctx_sd). It is only
 *    used to wait for the next command, and it is checked to be a
 *    socket first; if it is not, the thread polls the engine every
 *    millisecond instead, which is slower but still serves the mail.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfdef.h>

#include "conn_threads.h"
#include "log.h"

/* libmilter internals (libmilter/libmilter.h, not installed) */
#define MI_CONTINUE 1
#define SMFIC_TIMEOUT 1		/* error codes mi_rd_cmd returns in *cmd */
#define SMFIC_MALLOC 3
#define SMFIC_RECVERR 4
#define SMFIC_EOF 5
#define SMFIC_TOOBIG 7
int mi_engine(SMFICTX *ctx);
void mi_clr_ctx(SMFICTX *ctx);
int mi_pool_controller_init(void);
int mi_start_session(SMFICTX *ctx);
char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name);
int mi_wr_cmd(int sd, struct timeval *timeout, int cmd, char *buf, size_t len);

/* how long the engine is polled when the socket cannot be found */
#define FALLBACK_POLL_NS (1000 * 1000)

static sfsistat (*idle_close)(SMFICTX *);
static int idle_ms = 600 * 1000;
static atomic_bool layout_warned;
/* whether this thread's connection is TCP (see ack_pending) */
static _Thread_local bool conn_is_tcp;
/* the MTA sent nothing for idle_ms after our last reply (see mi_wr_cmd) */
static _Thread_local bool conn_silent;

void conn_threads_init(sfsistat (*on_idle_close)(SMFICTX *), int idle_seconds)
{
	idle_close = on_idle_close;
	idle_ms = idle_seconds * 1000;
}

int mi_pool_controller_init(void)
{
	log_info("serving each MTA connection on a thread of its own");
	return MI_SUCCESS;
}

/* ctx_sd, if it is a socket; -1 otherwise */
static int ctx_socket(SMFICTX *ctx)
{
	struct ctx_head {
		pthread_t id;
		int sd;
	};
	int sd = ((const struct ctx_head *)(const void *)ctx)->sd;
	struct stat st;
	if (sd >= 0 && fstat(sd, &st) == 0 && S_ISSOCK(st.st_mode))
		return sd;
	if (!atomic_exchange(&layout_warned, true))
		log_error("libmilter's connection context is not laid out as expected; "
			  "polling connections instead of waiting on them (slower)");
	return -1;
}

/*
 * On TCP, acknowledge what arrived before we wait for more. Postfix
 * buffers what needs no reply (headers, body) and writes it in 4096-byte
 * pieces with Nagle on, so a piece waits for our ACK of the one before,
 * and the kernel delays that ACK (up to 40 ms) in the hope of sending it
 * with a reply that cannot come before the command is in. TCP_QUICKACK
 * sends a pending ACK at once. We need it only before waiting: when a
 * command is cut (mi_rd_cmd) or a piece ended between commands (serve);
 * a reply carries its own ACK. Unix sockets have no ACKs.
 */
static void ack_pending(int sd)
{
	int one = 1;
	if (conn_is_tcp)
		(void)setsockopt(sd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static bool is_tcp(int sd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	return sd >= 0 && getsockname(sd, (struct sockaddr *)&ss, &len) == 0 &&
	       (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

/*
 * poll() for input for up to idle_ms, again after a signal: > 0 ready, 0
 * silence, < 0 an error (for the engine's read to see).
 */
static int poll_idle(int sd)
{
	struct pollfd pfd = { .fd = sd, .events = POLLIN };
	int n;

	while ((n = poll(&pfd, 1, idle_ms)) < 0 && errno == EINTR)
		;
	return n;
}

/*
 * Waits until the MTA sends something: 1, or 0 after idle_ms of silence.
 * A wait that already timed out after the last reply (see mi_wr_cmd)
 * counts as silence.
 */
static int wait_for_command(int sd)
{
	if (conn_silent) {
		conn_silent = false;
		return 0;
	}
	if (sd < 0) {
		struct timespec ts = { 0, FALLBACK_POLL_NS };
		nanosleep(&ts, NULL);
		return 1;
	}
	ack_pending(sd);
	return poll_idle(sd) != 0;
}

/*
 * Socket I/O. libmilter reads a command as poll, read of the 5-byte
 * head, poll, read of the data, and writes a reply as poll, writev. The
 * socket is almost always ready (we were woken because it was), so we
 * read and write first and wait only when the kernel says EAGAIN.
 */
static int wait_ready(int sd, short events, const struct timeval *timeout)
{
	struct pollfd pfd = { .fd = sd, .events = events };
	long ms = timeout ? timeout->tv_sec * 1000L + timeout->tv_usec / 1000 : -1;
	if (events == POLLIN)
		ack_pending(sd);
	for (;;) {
		int n = poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return SMFIC_TIMEOUT;
		if (errno != EINTR)
			return SMFIC_RECVERR;
	}
}

/* Reads exactly len bytes: 0, or an SMFIC_ error code. */
static int read_exactly(int sd, char *buf, size_t len, const struct timeval *timeout)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(sd, buf + got, len - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			return SMFIC_EOF;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return SMFIC_RECVERR;
		int rc = wait_ready(sd, POLLIN, timeout);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/*
 * libmilter's contract: the command's data in a malloc()ed buffer (NULL
 * when it has none) with *cmd and *rlen set; or NULL with *cmd set to
 * an error code below SMFIC_VALIDCMD.
 */
char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name)
{
	unsigned char head[MILTER_LEN_BYTES + 1];
	*cmd = '\0';
	*rlen = 0;
	int rc = read_exactly(sd, (char *)head, sizeof(head), timeout);
	if (rc != 0) {
		if (rc == SMFIC_RECVERR)
			log_warning("%s: reading from the MTA: %s", name, strerror(errno));
		*cmd = (char)rc;
		return NULL;
	}
	uint32_t wire_len;
	memcpy(&wire_len, head, MILTER_LEN_BYTES);
	wire_len = ntohl(wire_len);
	*cmd = (char)head[MILTER_LEN_BYTES];
	if (wire_len <= 1)
		return NULL;
	size_t len = wire_len - 1;
	if (len > CONN_THREADS_DATA_MAX) {
		log_warning("%s: MTA command of %zu bytes refused (limit %d)", name, len,
			    CONN_THREADS_DATA_MAX);
		*cmd = SMFIC_TOOBIG;
		return NULL;
	}
	char *buf = malloc(len + 1);
	if (buf == NULL) {
		*cmd = SMFIC_MALLOC;
		return NULL;
	}
	rc = read_exactly(sd, buf, len, timeout);
	if (rc != 0) {
		if (rc == SMFIC_RECVERR)
			log_warning("%s: reading from the MTA: %s", name, strerror(errno));
		free(buf);
		*cmd = (char)rc;
		return NULL;
	}
	buf[len] = '\0';
	*rlen = len;
	return buf;
}

/* A reply that ends our turn: the MTA's next command is all that can follow. */
static bool is_final_reply(int cmd)
{
	switch (cmd) {
	case SMFIC_OPTNEG:
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_SKIP:
	case SMFIR_TEMPFAIL:
	case SMFIR_REPLYCODE:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
		return true;
	default:
		return false;	/* header edits, quarantine, progress: more follows */
	}
}

/*
 * After a final reply, wait here for the MTA's next command. libmilter's
 * engine would otherwise poll for it with a 1 ms timeout, and when the
 * MTA takes longer (it always does under load) sleep on a timer, wake,
 * return to serve() and poll again: a wasted wake-up per round trip.
 */
static void wait_after_reply(int sd)
{
	if (poll_idle(sd) == 0)
		conn_silent = true;
}

/*
 * libmilter's contract: MI_SUCCESS once the whole command is written.
 * After a final reply it returns once the MTA has sent more (or closed,
 * or was silent for idle_ms): see wait_after_reply.
 */
int mi_wr_cmd(int sd, struct timeval *timeout, int cmd, char *buf, size_t len)
{
	if (len > CONN_THREADS_DATA_MAX || (len > 0 && buf == NULL))
		return MI_FAILURE;
	unsigned char head[MILTER_LEN_BYTES + 1];
	uint32_t wire_len = htonl((uint32_t)len + 1);
	memcpy(head, &wire_len, MILTER_LEN_BYTES);
	head[MILTER_LEN_BYTES] = (unsigned char)cmd;
	struct iovec iov[2] = { { head, sizeof(head) }, { buf, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len > 0 ? 2 : 1 };
	while (msg.msg_iovlen > 0) {
		ssize_t n = sendmsg(sd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno != EAGAIN && errno != EWOULDBLOCK) || wait_ready(sd, POLLOUT, timeout) != 0)
				return MI_FAILURE;
			continue;
		}
		size_t done = (size_t)n;
		while (msg.msg_iovlen > 0 && done >= msg.msg_iov[0].iov_len) {
			done -= msg.msg_iov[0].iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen > 0) {
			msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + done;
			msg.msg_iov[0].iov_len -= done;
		}
	}
	if (is_final_reply(cmd))
		wait_after_reply(sd);
	return MI_SUCCESS;
}

/* Serves one connection: the MTA's session, until it ends. */
static void serve(SMFICTX *ctx)
{
	int sd = ctx_socket(ctx);
	conn_is_tcp = is_tcp(sd);
	conn_silent = false;
	for (;;) {
		if (!wait_for_command(sd)) {
			log_info("MTA connection idle for %d s: closed", idle_ms / 1000);
			if (idle_close != NULL)
				(void)idle_close(ctx);
			break;
		}
		if (mi_engine(ctx) != MI_CONTINUE)
			break;
	}
	mi_clr_ctx(ctx);
}

/*
 * A connection thread, when its session ends, waits up to PARK_SECONDS
 * for the next connection instead of exiting: Postfix opens a milter
 * connection per SMTP session, and creating a thread for each costs more
 * than handing it to one that is parked. handoff holds connections given
 * to parked threads and not yet taken; there are never more of them
 * than parked threads.
 */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static unsigned parked;
static SMFICTX *handoff[CONN_THREADS_PARKED_MAX];
static unsigned handoff_count;

/* The next connection for a thread whose session ended, or NULL: exit. */
static SMFICTX *park(void)
{
	SMFICTX *next = NULL;
	pthread_mutex_lock(&park_lock);
	if (parked < CONN_THREADS_PARKED_MAX) {
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += CONN_THREADS_PARK_SECONDS;
		parked++;
		while (handoff_count == 0 &&
		       pthread_cond_timedwait(&park_cond, &park_lock, &deadline) != ETIMEDOUT)
			;
		if (handoff_count > 0)
			next = handoff[--handoff_count];
		parked--;
	}
	pthread_mutex_unlock(&park_lock);
	return next;
}

static void *connection_thread(void *arg)
{
	for (SMFICTX *ctx = arg; ctx != NULL; ctx = park())
		serve(ctx);
	return NULL;
}

int mi_start_session(SMFICTX *ctx)
{
	pthread_mutex_lock(&park_lock);
	if (parked > handoff_count) {
		handoff[handoff_count++] = ctx;
		pthread_cond_signal(&park_cond);
		pthread_mutex_unlock(&park_lock);
		return MI_SUCCESS;
	}
	pthread_mutex_unlock(&park_lock);

	pthread_attr_t attr;
	pthread_t tid;
	if (pthread_attr_init(&attr) != 0)
		return MI_FAILURE;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, CONN_THREADS_STACK_BYTES);
	int rc = pthread_create(&tid, &attr, connection_thread, ctx);
	pthread_attr_destroy(&attr);
	return rc == 0 ? MI_SUCCESS : MI_FAILURE;
}
