/*
 * shim_libmilter - serve each MTA connection on a thread of its own, by
 * replacing four of libmilter's private functions.
 *
 * What it replaces. libmilter's accept loop (mi_listener) calls
 * mi_pool_controller_init() once and mi_start_session(ctx) for every
 * connection it accepts; its engine reads and writes the socket with
 * mi_rd_cmd() and mi_wr_cmd(). All four are exported by libmilter.so and
 * called through its PLT, so the definitions below, in the executable,
 * are the ones bound (ordinary symbol interposition, as in
 * shim_openssl.c). Nothing else of the pool runs: its controller thread,
 * pipe and worker threads are never created. The protocol (state
 * machine, negotiation, macros, replies) stays libmilter's.
 *
 * Why: libmilter's pool costs more CPU per message than all of our own
 * work but the RSA signature (shim_libmilter.h, README "Performance").
 *
 * What we assume of libmilter (1.0.x, i.e. sendmail 8.14 to 8.18;
 * checked against Debian 12's 8.17.1 build, whose engine is compiled
 * for the pool):
 *  - mi_engine(ctx) reads and answers commands while the socket has
 *    data and returns MI_CONTINUE (1) when it has none; any other value
 *    ends the session, after libmilter has called the abort and close
 *    callbacks as needed. mi_clr_ctx(ctx) then closes the socket and
 *    frees the context: what the pool does.
 *  - mi_rd_cmd and mi_wr_cmd keep the signatures and the contract
 *    they have had since 8.13 (see each below).
 *  - the socket descriptor is the second member of the context
 *    (struct smfi_str: ctx_id, a pthread_t, then ctx_sd; struct
 *    ctx_head below is that assumption, written once). It is only used
 *    to wait for the next command, and it is checked to be a socket
 *    first.
 *
 * How it is checked and how it falls back: shim_libmilter_check (the
 * three proofs are in shim_libmilter.h) runs before smfi_main; if one
 * fails, every function here calls libmilter's own instead
 * (shim_libmilter_fall_back), so the daemon runs on libmilter's pool,
 * slower and otherwise the same. If the interposition is lost without
 * the check (ours never called), libmilter simply runs its own.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfdef.h>

#include "shim_libmilter.h"
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

/*
 * Our one assumption about struct smfi_str (libmilter.h): its first two
 * members. ctx_socket reads ctx_sd through it; the check proves that
 * libmilter's own code finds ctx_sd where this says.
 */
struct ctx_head {
	pthread_t id;
	int sd;
};

/*
 * libmilter's own definitions of the four functions, used after a
 * fall-back. They and both flags are written before smfi_main starts
 * any thread and only read afterwards.
 */
static struct {
	int (*pool_controller_init)(void);
	int (*start_session)(SMFICTX *ctx);
	char *(*rd_cmd)(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name);
	int (*wr_cmd)(int sd, struct timeval *timeout, int cmd, char *buf, size_t len);
} own;
static bool use_own;		/* every call goes to libmilter's own */
static bool ctx_untrusted;	/* never read ctx_sd (see shim_libmilter_fall_back) */

/* The check's probe: mi_wr_cmd records the socket libmilter gave it. */
static _Thread_local struct {
	bool on, reached;
	int sd;
} probe;

static sfsistat (*idle_close)(SMFICTX *);
static int idle_ms = 600 * 1000;
static atomic_bool layout_warned;
/* whether this thread's connection is TCP (see ack_pending) */
static _Thread_local bool conn_is_tcp;
/* the MTA sent nothing for idle_ms after our last reply (see mi_wr_cmd) */
static _Thread_local bool conn_silent;

void shim_libmilter_init(sfsistat (*on_idle_close)(SMFICTX *), int idle_seconds)
{
	idle_close = on_idle_close;
	idle_ms = idle_seconds * 1000;
}

bool shim_libmilter_fall_back(void)
{
	ctx_untrusted = true;
	own.pool_controller_init = (int (*)(void))dlsym(RTLD_NEXT, "mi_pool_controller_init");
	own.start_session = (int (*)(SMFICTX *))dlsym(RTLD_NEXT, "mi_start_session");
	own.rd_cmd = (char *(*)(int, struct timeval *, char *, size_t *, char *))dlsym(RTLD_NEXT, "mi_rd_cmd");
	own.wr_cmd = (int (*)(int, struct timeval *, int, char *, size_t))dlsym(RTLD_NEXT, "mi_wr_cmd");
	use_own = own.pool_controller_init && own.start_session && own.rd_cmd && own.wr_cmd;
	return use_own;
}

/* The name of the first of the four that libmilter's calls would not reach here, or NULL. */
static const char *unbound_symbol(void)
{
	static const struct {
		const char *name;
		void *ours;
	} ours[] = {
		{ "mi_pool_controller_init", (void *)mi_pool_controller_init },
		{ "mi_start_session", (void *)mi_start_session },
		{ "mi_rd_cmd", (void *)mi_rd_cmd },
		{ "mi_wr_cmd", (void *)mi_wr_cmd },
	};
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (dlsym(RTLD_DEFAULT, ours[i].name) != ours[i].ours)
			return ours[i].name;
	return NULL;
}

/*
 * Calls libmilter's smfi_progress(), which sends SMFIR_PROGRESS with
 * mi_wr_cmd(ctx->ctx_sd, ...) and reads nothing else of the context but
 * ctx_timeout, on a zeroed context whose ctx_sd, as we lay it out, is a
 * socket of ours. With probe.on our mi_wr_cmd writes nothing and
 * records the socket it was given. (If libmilter calls its own instead,
 * it writes 5 bytes into our socket pair, or, with another layout, reads
 * 0 as both socket and timeout.) Returns NULL or what failed.
 */
static const char *probe_progress(void)
{
	union {
		struct ctx_head head;
		unsigned char bytes[4096];	/* more than any struct smfi_str */
	} ctx;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return "no socket pair for the probe";
	memset(&ctx, 0, sizeof(ctx));
	/* not 0: that is what a read elsewhere in the zeroed context finds */
	ctx.head.sd = sv[0] != 0 ? sv[0] : sv[1];
	probe.on = true;
	probe.reached = false;
	int rc = smfi_progress((SMFICTX *)(void *)&ctx);
	probe.on = false;
	close(sv[0]);
	close(sv[1]);
	if (!probe.reached || rc != MI_SUCCESS)
		return "smfi_progress did not reach our mi_wr_cmd";
	if (probe.sd != ctx.head.sd)
		return "struct smfi_str does not keep ctx_sd where we read it";
	return NULL;
}

bool shim_libmilter_check(char *what, size_t len)
{
	unsigned major = 0, minor = 0, patch = 0;
	char why[128];

	(void)smfi_version(&major, &minor, &patch);
	if (major != 1 || minor != 0) {
		snprintf(why, sizeof(why), "libmilter %u.%u.%u is not the 1.0.x this was written for",
			 major, minor, patch);
	} else {
		const char *unbound = unbound_symbol();
		const char *failed = unbound ? NULL : probe_progress();
		if (unbound == NULL && failed == NULL) {
			snprintf(what, len, "libmilter %u.%u.%u", major, minor, patch);
			return true;
		}
		if (unbound)
			snprintf(why, sizeof(why), "libmilter's calls to %s do not reach ours", unbound);
		else
			snprintf(why, sizeof(why), "%s", failed);
	}
	if (shim_libmilter_fall_back())
		snprintf(what, len, "to libmilter's own worker pool: %s", why);
	else
		snprintf(what, len, "to threads that do not read libmilter's context: %s", why);
	return false;
}

int mi_pool_controller_init(void)
{
	if (use_own)
		return own.pool_controller_init();
	log_info("serving each MTA connection on a thread of its own");
	return MI_SUCCESS;
}

/* ctx_sd, if it is a socket and the layout was not disproved; -1 otherwise */
static int ctx_socket(SMFICTX *ctx)
{
	if (ctx_untrusted)
		return -1;
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
	if (use_own)
		return own.rd_cmd(sd, timeout, cmd, rlen, name);
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
	if (len > SHIM_LIBMILTER_DATA_MAX) {
		log_warning("%s: MTA command of %zu bytes refused (limit %d)", name, len,
			    SHIM_LIBMILTER_DATA_MAX);
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
	if (use_own)
		return own.wr_cmd(sd, timeout, cmd, buf, len);
	if (probe.on) {
		probe.reached = true;
		probe.sd = sd;
		return MI_SUCCESS;
	}
	if (len > SHIM_LIBMILTER_DATA_MAX || (len > 0 && buf == NULL))
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
static SMFICTX *handoff[SHIM_LIBMILTER_PARKED_MAX];
static unsigned handoff_count;

/* The next connection for a thread whose session ended, or NULL: exit. */
static SMFICTX *park(void)
{
	SMFICTX *next = NULL;
	pthread_mutex_lock(&park_lock);
	if (parked < SHIM_LIBMILTER_PARKED_MAX) {
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += SHIM_LIBMILTER_PARK_SECONDS;
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
	if (use_own)
		return own.start_session(ctx);
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
	pthread_attr_setstacksize(&attr, SHIM_LIBMILTER_STACK_BYTES);
	int rc = pthread_create(&tid, &attr, connection_thread, ctx);
	pthread_attr_destroy(&attr);
	return rc == 0 ? MI_SUCCESS : MI_FAILURE;
}
