/*
 * spf_spawn - the SPF helpers' spawner (and the plain fork of unit tests).
 *
 * What it does: starts SPF helper processes and ends them, either through
 * the spawner, a process forked while the daemon is still root, or, when
 * there is none, in the calling process. What it does not: talk to a
 * helper; spf.c does, over the socket it gets from here.
 *
 * Decisions:
 * - The spawner stays root, and is the only process that does after
 *   start-up. Helpers are exec'd by it as root and become SpfUserID first
 *   thing (spf_helper.c, which checks that setuid(0) fails afterwards).
 *   A spawner running as SpfUserID itself would need no root, but any
 *   subverted helper (same user) could kill it, and no helper would ever
 *   be started again.
 * - What the daemon can make it do is narrow: start a helper (argv is
 *   built here, the user is fixed by spf_spawn_init, resolver, timeout
 *   and log level are checked) and end a process only while that is one
 *   of its own unreaped children (waitid with WNOWAIT tells), at most
 *   SPF_SPAWN_CHILDREN_MAX of them. Anything else is refused.
 * - Requests and answers are one SOCK_SEQPACKET packet each, a kind byte
 *   and NUL-terminated fields; a new helper's socket travels back as
 *   SCM_RIGHTS. One request at a time (a mutex), answered in
 *   milliseconds (an end within the grace); past SPF_SPAWN_REPLY_MS the
 *   daemon closes the channel rather than ever take a late answer for
 *   the answer to a later request.
 *
 *	daemon -> spawner:	'H' resolver timeout_ms log_level
 *				'K' pid grace (0 or 1)
 *	spawner -> daemon:	'P' pid, with the milter's end of the socket
 *				'D' how it ended
 *				'E' why not
 *
 * - The spawner closes every descriptor it inherited but its socket and
 *   stdio (Redis connections, the signal pipe), so it holds nothing of
 *   the daemon's open.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "spf_spawn.h"
#include "spf_wire.h"

#define SPAWN_EXE "/proc/self/exe"
#define SPAWN_ARGV0 "bulkmilter-spf"
/* What ps shows as the spawner's command name (at most 15 bytes). */
#define SPAWN_COMM "bm-spf-spawner"
/* One request or answer; a resolver is an address and a port. */
#define SPAWN_PACKET_MAX 512
/* Where the spawner keeps its socket, every descriptor above it closed. */
#define SPAWN_FD 3
/* Where close_range is missing, descriptors are closed up to this. */
#define SPAWN_FD_SCAN_MAX 65536
/* DNSTimeout allows at most 10 s; a request asking more is not ours. */
#define SPAWN_TIMEOUT_MAX_MS 60000

#define SPAWN_START 'H'
#define SPAWN_END 'K'
#define SPAWN_STARTED 'P'
#define SPAWN_ENDED 'D'
#define SPAWN_REFUSED 'E'

/* The daemon's side; fd is -1 before spf_spawn_init and once the spawner is gone. */
static struct {
	pthread_mutex_t lock;		/* one round trip at a time */
	bool started;			/* spf_spawn_init succeeded */
	int fd;
	pid_t pid;
} spawner = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

/* The spawner's own count of helpers started and not yet reaped. */
static unsigned spawner_children;

static long long spawn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A decimal number from min to max, nothing else: 0, or -1. */
static int spawn_number(const char *text, long min, long max, long *value)
{
	char *end;
	long v;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	v = strtol(text, &end, 10);
	if (*end != '\0' || errno != 0 || v < min || v > max)
		return -1;
	*value = v;
	return 0;
}

/* "exited with status 1", "killed by signal 9": for log lines. */
static void spawn_describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "status %d", status);
}

/*
 * Forks and execs a helper on child_fd; its pid, or -1 with errno. The
 * program is this one, opened through /proc/self/exe before the fork and
 * exec'd from that descriptor (fexecve; O_PATH, so execute permission
 * is all it needs, as for exec of the path): the same file an upgrade cannot
 * swap underneath, and under valgrind (scripts/bench --instructions) the
 * milter rather than valgrind's own tool, which exec of the path names.
 */
static pid_t spawn_exec(int child_fd, const char *resolver, long timeout_ms, int level,
	const char *user)
{
	char arg0[] = SPAWN_ARGV0, arg1[] = SPF_HELPER_ARG;
	char fdarg[16], timeoutarg[24], levelarg[16];
	char *argv[SPF_HELPER_ARGC + 1] = { arg0, arg1, fdarg, (char *)resolver, timeoutarg,
					    (char *)user, levelarg, NULL };
	struct sigaction dfl;
	int exe_fd, saved;
	pid_t pid;

	exe_fd = open(SPAWN_EXE, O_PATH | O_CLOEXEC);
	if (exe_fd < 0)
		return -1;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	snprintf(fdarg, sizeof(fdarg), "%d", child_fd);
	snprintf(timeoutarg, sizeof(timeoutarg), "%ld", timeout_ms);
	snprintf(levelarg, sizeof(levelarg), "%d", level);
	pid = fork();
	if (pid == 0) {
		/*
		 * Only async-signal-safe calls from here to exec (the daemon
		 * is threaded). The spawner ignores these signals, and an
		 * ignored signal stays ignored across exec: a helper must not.
		 */
		sigaction(SIGHUP, &dfl, NULL);
		sigaction(SIGINT, &dfl, NULL);
		sigaction(SIGTERM, &dfl, NULL);
		if (fcntl(child_fd, F_SETFD, 0) == 0)
			fexecve(exe_fd, argv, environ);
		_exit(127);
	}
	saved = errno;
	close(exe_fd);
	errno = saved;
	return pid;
}

/* Starts a helper from this process; 0, or -1 with err. */
static int spawn_here(const char *resolver, long timeout_ms, int level, const char *user,
	int *fd, pid_t *pid, char *err, size_t len)
{
	int sv[2], saved;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, len, "socketpair: %s", strerror(errno));
		return -1;
	}
	*pid = spawn_exec(sv[1], resolver, timeout_ms, level, user);
	saved = errno;
	close(sv[1]);
	if (*pid < 0) {
		snprintf(err, len, "cannot start a helper (%s): %s", SPAWN_EXE, strerror(saved));
		close(sv[0]);
		return -1;
	}
	*fd = sv[0];
	return 0;
}

/*
 * Ends a child of this process and reaps it; with grace, it may first
 * exit on its own (a helper does once its socket is closed). Writes how
 * it ended to how; true when it was reaped.
 */
static bool spawn_end_here(pid_t pid, bool grace, char *how, size_t len)
{
	int status = 0;
	pid_t r = 0;

	if (grace) {
		long long until = spawn_now_ms() + SPF_SPAWN_GRACE_MS;
		while ((r = waitpid(pid, &status, WNOHANG)) == 0 && spawn_now_ms() < until)
			usleep(5000);
	}
	if (r == 0 && kill(pid, SIGKILL) < 0) {
		/* Not ours to kill (another user?): never block on it. */
		snprintf(how, len, "cannot be killed: %s", strerror(errno));
		r = waitpid(pid, &status, WNOHANG);
	} else if (r == 0) {
		while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
			;
		if (r < 0)
			snprintf(how, len, "not reaped: %s", strerror(errno));
	} else if (r < 0) {
		snprintf(how, len, "not reaped: %s", strerror(errno));
	}
	if (r == pid)
		spawn_describe_status(status, how, len);
	return r == pid;
}

/* ------------------------------------------------------------ the spawner */

/* One answer packet: kind, text, and with pass_fd >= 0 that descriptor. */
static void spawner_answer(int fd, char kind, const char *text, int pass_fd)
{
	char pkt[SPAWN_PACKET_MAX];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov;
	struct msghdr msg;
	int n = snprintf(pkt, sizeof(pkt), "%c%s", kind, text);

	if (n < 0 || n >= (int)sizeof(pkt))
		n = (int)sizeof(pkt) - 1;
	pkt[n] = '\0';
	iov.iov_base = pkt;
	iov.iov_len = (size_t)n + 1;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (pass_fd >= 0) {
		struct cmsghdr *c;
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0)
		log_warning("SPF spawner: cannot answer: %s", strerror(errno));
}

static void spawner_refuse(int fd, const char *why)
{
	log_warning("SPF spawner: request refused: %s", why);
	spawner_answer(fd, SPAWN_REFUSED, why, -1);
}

/* The NUL-terminated fields after a packet's kind byte: their count, or -1. */
static int spawner_fields(char *pkt, size_t n, char *fields[], int max)
{
	int count = 0;

	if (n < 2 || pkt[n - 1] != '\0')
		return -1;
	for (size_t at = 1; at < n; at += strlen(pkt + at) + 1) {
		if (count == max)
			return -1;
		fields[count++] = pkt + at;
	}
	return count;
}

/* A resolver as the daemon passes it: printable, no spaces, not empty. */
static bool spawner_resolver_ok(const char *text)
{
	if (*text == '\0')
		return false;
	for (; *text != '\0'; text++)
		if (!isgraph((unsigned char)*text))
			return false;
	return true;
}

static void spawner_start(int fd, char *fields[], int count, const char *user)
{
	long timeout_ms, level;
	char err[128], text[24];
	int helper_fd;
	pid_t pid;

	if (count != 3 || !spawner_resolver_ok(fields[0]) ||
	    spawn_number(fields[1], 1, SPAWN_TIMEOUT_MAX_MS, &timeout_ms) < 0 ||
	    spawn_number(fields[2], LOG_LEVEL_ERROR, LOG_LEVEL_DEBUG, &level) < 0) {
		spawner_refuse(fd, "malformed start request");
		return;
	}
	if (spawner_children >= SPF_SPAWN_CHILDREN_MAX) {
		spawner_refuse(fd, "too many SPF helpers running");
		return;
	}
	if (spawn_here(fields[0], timeout_ms, (int)level, user, &helper_fd, &pid, err,
		       sizeof(err)) < 0) {
		spawner_refuse(fd, err);
		return;
	}
	spawner_children++;
	snprintf(text, sizeof(text), "%d", (int)pid);
	spawner_answer(fd, SPAWN_STARTED, text, helper_fd);
	close(helper_fd);
}

static void spawner_end(int fd, char *fields[], int count)
{
	long pid, grace;
	siginfo_t info;
	char how[64];

	if (count != 2 || spawn_number(fields[0], 2, INT_MAX, &pid) < 0 ||
	    spawn_number(fields[1], 0, 1, &grace) < 0) {
		spawner_refuse(fd, "malformed end request");
		return;
	}
	/* Only a child not yet reaped: never a pid that was reused since. */
	memset(&info, 0, sizeof(info));
	if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
		spawner_refuse(fd, "not an SPF helper of this spawner");
		return;
	}
	if (spawn_end_here((pid_t)pid, grace != 0, how, sizeof(how)) && spawner_children > 0)
		spawner_children--;
	spawner_answer(fd, SPAWN_ENDED, how, -1);
}

/* Keeps fd (moved to SPAWN_FD) and stdio, closes every other descriptor. */
static int spawner_shed(int fd, bool log_to_stderr)
{
	if (!log_to_stderr)
		closelog();
	if (fd != SPAWN_FD) {
		if (dup2(fd, SPAWN_FD) < 0)
			_exit(1);
		close(fd);
		fd = SPAWN_FD;
	}
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		_exit(1);
	if (close_range(SPAWN_FD + 1, ~0U, 0) < 0)
		for (int i = SPAWN_FD + 1; i < SPAWN_FD_SCAN_MAX; i++)
			close(i);
	log_open("bulkmilter-spf", log_to_stderr);
	return fd;
}

static void spawner_main(int fd, const char *user, bool log_to_stderr)
	__attribute__((noreturn));

static void spawner_main(int fd, const char *user, bool log_to_stderr)
{
	char pkt[SPAWN_PACKET_MAX + 1], *fields[3];
	struct sigaction ign;
	sigset_t none;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &ign, NULL);
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGTERM, &ign, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_NAME, SPAWN_COMM, 0, 0, 0);
	fd = spawner_shed(fd, log_to_stderr);
	for (;;) {
		ssize_t n = recv(fd, pkt, SPAWN_PACKET_MAX, 0);
		int count;

		if (n == 0)
			_exit(0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("SPF spawner: receive: %s", strerror(errno));
			_exit(1);
		}
		count = spawner_fields(pkt, (size_t)n, fields, 3);
		if (count >= 0 && pkt[0] == SPAWN_START)
			spawner_start(fd, fields, count, user);
		else if (count >= 0 && pkt[0] == SPAWN_END)
			spawner_end(fd, fields, count);
		else
			spawner_refuse(fd, "malformed request");
	}
}

/* ------------------------------------------------------- the daemon's side */

/* The spawner stopped answering or exited: helpers can no longer start. */
static void spawn_gone(const char *why)
{
	int status;

	log_error("SPF helper spawner (pid %d) %s: no SPF helper can be started any more, "
		  "SPF checks answer temperror until bulkmilter is restarted",
		  (int)spawner.pid, why);
	close(spawner.fd);
	spawner.fd = -1;
	waitpid(spawner.pid, &status, WNOHANG);
}

/*
 * Waits for the spawner's answer until the deadline: its length, a
 * passed descriptor in *passed (else -1); 0 at EOF, -1 on an error or
 * timeout.
 */
static ssize_t spawn_receive(char *buf, size_t size, int *passed, const char **why)
{
	long long deadline = spawn_now_ms() + SPF_SPAWN_REPLY_MS;

	for (;;) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} control;
		struct pollfd p = { .fd = spawner.fd, .events = POLLIN };
		long long left = deadline - spawn_now_ms();
		struct iovec iov = { .iov_base = buf, .iov_len = size };
		struct msghdr msg;
		ssize_t n;
		int r;

		if (left <= 0) {
			*why = "did not answer in time";
			return -1;
		}
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno != EINTR) {
			*why = "cannot be reached";
			return -1;
		}
		if (r <= 0)
			continue;
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		n = recvmsg(spawner.fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c != NULL;
		     c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(passed, CMSG_DATA(c), sizeof(int));
		if (n <= 0)
			*why = n == 0 ? "exited" : "cannot be reached";
		return n;
	}
}

/*
 * One round trip: the answer (NUL-terminated) in answer, a descriptor
 * it passed in *passed (else -1); the answer's length, or -1 when the
 * spawner is gone.
 */
static ssize_t spawn_ask(const char *req, size_t n, char *answer, size_t size, int *passed)
{
	const char *why = "is gone";
	ssize_t got = -1;

	*passed = -1;
	pthread_mutex_lock(&spawner.lock);
	if (spawner.fd >= 0) {
		if (send(spawner.fd, req, n, MSG_NOSIGNAL) == (ssize_t)n)
			got = spawn_receive(answer, size - 1, passed, &why);
		else
			why = "cannot be reached";
		if (got <= 0) {
			spawn_gone(why);
			got = -1;
		}
	}
	pthread_mutex_unlock(&spawner.lock);
	if (got > 0)
		answer[got] = '\0';
	return got;
}

int spf_spawn_init(const char *user, bool log_to_stderr, char *err, size_t len)
{
	int sv[2];
	pid_t pid;

	if (spawner.started) {
		snprintf(err, len, "the SPF helper spawner runs already");
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, len, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, len, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		spawner_main(sv[1], user, log_to_stderr);
	}
	close(sv[1]);
	spawner.fd = sv[0];
	spawner.pid = pid;
	spawner.started = true;
	log_debug("SPF helper spawner started (pid %d)", (int)pid);
	if (geteuid() != 0)
		log_warning("not started as root: SPF helpers run as this process's user, not as "
			    "SpfUserID %s", user[0] != '\0' ? user : SPF_HELPER_DEFAULT_USER);
	return 0;
}

int spf_spawn_helper(const char *resolver, long timeout_ms, const char *user,
	int *fd, pid_t *pid, char *err, size_t len)
{
	char req[SPAWN_PACKET_MAX], answer[SPAWN_PACKET_MAX + 1];
	int n, passed;
	long value;

	if (!spawner.started)
		return spawn_here(resolver, timeout_ms, log_current_level, user, fd, pid, err, len);
	n = snprintf(req, sizeof(req), "%c%s%c%ld%c%d", SPAWN_START, resolver, 0, timeout_ms, 0,
		     log_current_level);
	if (n < 0 || n >= (int)sizeof(req)) {
		snprintf(err, len, "resolver too long");
		return -1;
	}
	if (spawn_ask(req, (size_t)n + 1, answer, sizeof(answer), &passed) < 0) {
		snprintf(err, len, "the SPF helper spawner is gone");
		return -1;
	}
	if (answer[0] == SPAWN_STARTED && passed >= 0 &&
	    spawn_number(answer + 1, 2, INT_MAX, &value) == 0) {
		*fd = passed;
		*pid = (pid_t)value;
		return 0;
	}
	if (passed >= 0)
		close(passed);
	snprintf(err, len, "%s", answer[0] == SPAWN_REFUSED ? answer + 1
			 : "bad answer from the SPF helper spawner");
	return -1;
}

void spf_spawn_end(pid_t pid, bool grace, char *how, size_t len)
{
	char req[64], answer[SPAWN_PACKET_MAX + 1];
	int n, passed;

	if (!spawner.started) {
		spawn_end_here(pid, grace, how, len);
		return;
	}
	n = snprintf(req, sizeof(req), "%c%d%c%d", SPAWN_END, (int)pid, 0, grace ? 1 : 0);
	if (spawn_ask(req, (size_t)n + 1, answer, sizeof(answer), &passed) < 0) {
		snprintf(how, len, "not ended: the SPF helper spawner is gone");
		return;
	}
	if (passed >= 0)
		close(passed);
	if (answer[0] == SPAWN_ENDED)
		snprintf(how, len, "%s", answer + 1);
	else
		snprintf(how, len, "not ended: %s",
			 answer[0] == SPAWN_REFUSED ? answer + 1 : "bad answer from the spawner");
}
