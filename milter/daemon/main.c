/*
 * bulkmilter - the daemon: command line, start-up, signals.
 *
 * Start-up order: load and check everything (as root, so keys readable
 * only by root can be read), daemonize, fork the SPF helpers' spawner
 * (spf_spawn.h: it stays root so that helpers run as SpfUserID), open the
 * milter socket, write the pid file, drop to UserID, then start the SPF
 * helpers and the metrics thread and hand the socket to libmilter.
 *
 * Files as root: the pid file and the socket live in directories UserID
 * may write to (it removes them at exit), so a name there may have been
 * made a link to a file of root's. The pid file is created afresh,
 * O_EXCL|O_NOFOLLOW after removing the old name, and the socket is
 * opened O_PATH|O_NOFOLLOW and changed only when it is a socket.
 *
 * Signals: libmilter's own signal thread treats SIGHUP as "stop", so
 * smfi_main runs in a thread of its own, which blocks SIGHUP, SIGTERM and
 * SIGINT for itself and every thread it starts, while the main thread
 * leaves them unblocked. Linux delivers a process-directed signal to the
 * thread-group leader first when it does not block it, so these signals
 * reach our handlers, which only write a byte to a pipe; the main thread
 * reads the pipe and does the work: reload on SIGHUP, and on SIGTERM or
 * SIGINT stop accepting and wait for the connections in progress.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "callbacks.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "shim.h"
#include "shim_libmilter.h"
#include "snapshot.h"
#include "spf.h"
#include "spf_spawn.h"

#define DEFAULT_CONFIG SYSCONFDIR "/bulkmilter/bulkmilter.conf"
/* Longest wait for connections in progress after SIGTERM. */
#define SHUTDOWN_GRACE_SECONDS 60
/* Events still queued at exit get this long to reach NotifyURL. */
#define SHUTDOWN_EVENTS_MS 500
/* Postfix's own milter timeouts are 30 s and 300 s; stay above them. */
#define MILTER_TIMEOUT_SECONDS 600

static int signal_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	ssize_t w = write(signal_pipe[1], &b, 1);
	(void)w;
}

static void usage(void)
{
	fprintf(stderr, "usage: bulkmilter -c FILE [-f] [-n] [-p SOCKET] [-v] [-V]\n");
}

static int check_only(const char *config, const char *sock)
{
	struct diag errs = { .count = 0 };
	struct snapshot *s = snapshot_load(config, sock, false, &errs);
	if (s == NULL || diag_errors(&errs)) {
		diag_print(&errs, stdout);
		diag_free(&errs);
		snapshot_release(s);
		return 1;
	}
	printf("config OK\n");
	snapshot_release(s);
	return 0;
}

static int daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return -1;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	return chdir("/");
}

/* Looks up "user[:group]"; 0 on success. */
static int lookup_user(const char *spec, uid_t *uid, gid_t *gid, char *name, size_t len)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n == 0 || n >= len)
		return -1;
	memcpy(name, spec, n);
	name[n] = '\0';
	struct passwd *pw = getpwnam(name);
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (colon) {
		struct group *gr = getgrnam(colon + 1);
		if (gr == NULL)
			return -1;
		*gid = gr->gr_gid;
	}
	return 0;
}

/*
 * Hands the unix socket to uid:gid (the MTA connects as its group): the
 * inode found at path, opened without following a link, and only when it
 * is a socket with one name (not a hard link to some other socket). 0,
 * or -1: 1 when something else took its place (never to be changed), 0
 * on another error (errno).
 */
static int chown_socket(const char *path, uid_t uid, gid_t gid, int *replaced)
{
	struct stat st;
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC), rc = -1;

	*replaced = 0;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
		goto done;
	if (!S_ISSOCK(st.st_mode) || st.st_nlink != 1) {
		*replaced = 1;
		goto done;
	}
	rc = fchownat(fd, "", uid, gid, AT_EMPTY_PATH);
done:
	close(fd);
	return rc;
}

static int drop_privileges(const struct settings *s, const char *socket_path)
{
	int replaced;

	uid_t uid;
	gid_t gid;
	char name[256];

	if (s->user_id == NULL)
		return 0;
	if (lookup_user(s->user_id, &uid, &gid, name, sizeof(name)) != 0) {
		log_error("UserID %s: no such user or group", s->user_id);
		return -1;
	}
	/* the MTA connects as the socket's group: hand the socket over */
	if (socket_path && chown_socket(socket_path, uid, gid, &replaced) != 0) {
		if (replaced) {
			log_error("Socket %s is no longer the socket bulkmilter made (a link or other file "
				  "took its name): not changing its owner, not starting", socket_path);
			return -1;
		}
		log_warning("cannot chown %s: %s", socket_path, strerror(errno));
	}
	if (getuid() != 0 && geteuid() != 0) {
		if (geteuid() == uid)
			return 0;
		log_error("UserID %s: not running as root, cannot switch user", s->user_id);
		return -1;
	}
	if (setgid(gid) != 0 || initgroups(name, gid) != 0 || setuid(uid) != 0) {
		log_error("cannot switch to %s: %s", s->user_id, strerror(errno));
		return -1;
	}
	log_info("running as %s", s->user_id);
	return 0;
}

/*
 * Writes our pid to path as a new file; 0, or -1 (logged). Whatever had
 * the name (a stale pid file, or a link someone made) is removed, not
 * written through, and O_EXCL refuses anything that appears in between.
 */
static int write_pid_file(const char *path)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid()), fd;

	if (unlink(path) != 0 && errno != ENOENT) {
		log_error("cannot remove the old PidFile %s: %s", path, strerror(errno));
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("cannot create PidFile %s: %s", path, strerror(errno));
		return -1;
	}
	if (write(fd, text, (size_t)n) != n) {
		log_error("cannot write PidFile %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) != 0) {
		log_error("cannot write PidFile %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* "unix:/path", "local:/path" or "/path" -> "/path"; NULL for inet. */
static const char *unix_socket_path(const char *sock)
{
	if (strncmp(sock, "unix:", 5) == 0)
		return sock + 5;
	if (strncmp(sock, "local:", 6) == 0)
		return sock + 6;
	return sock[0] == '/' ? sock : NULL;
}

/*
 * libmilter does not set TCP_NODELAY, and Nagle plus delayed ACKs stall
 * every milter reply on an inet socket. libmilter does not expose its
 * listening socket, so find it among our descriptors: the one listening
 * socket of family AF_INET/AF_INET6. Accepted sockets inherit the option.
 */
static void set_listen_nodelay(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		int listening = 0, one = 1;
		socklen_t len = sizeof(listening);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
			continue;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
			log_debug("TCP_NODELAY set on the milter socket");
	}
	closedir(d);
}

/*
 * libmilter's accept loop notices smfi_stop() only when its poll times out
 * (seconds). One connection to our own socket wakes it at once; libmilter
 * sees the connection close and then the stop flag.
 */
static void wake_listener(const char *spec)
{
	const char *path = unix_socket_path(spec);
	struct sockaddr_storage ss;
	socklen_t len = 0;
	memset(&ss, 0, sizeof(ss));
	if (path) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		if (strlen(path) >= sizeof(sun->sun_path))
			return;
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		len = sizeof(*sun);
	} else {
		/* inet:PORT@HOST or inet6:PORT@HOST */
		const char *colon = strchr(spec, ':'), *at = strchr(spec, '@');
		if (colon == NULL || at == NULL)
			return;
		int port = atoi(colon + 1);
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, at + 1, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			len = sizeof(*sin);
		} else if (inet_pton(AF_INET6, at + 1, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)port);
			len = sizeof(*sin6);
		} else {
			/* a host name or "any": loopback reaches a wildcard listener */
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			len = sizeof(*sin);
		}
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)!connect(fd, (struct sockaddr *)&ss, len);
	close(fd);
}

static void *stopper_thread(void *arg)
{
	(void)arg;
	smfi_stop();
	return NULL;
}

/*
 * smfi_stop() sets libmilter's stop flag and then waits for the accept
 * loop, which sees the flag only when its poll returns. So the stop runs
 * in a thread of its own while we poke the socket until smfi_main has
 * returned (the milter thread writes a 0 to the signal pipe).
 */
static void stop_milter(const char *listen_socket)
{
	pthread_t stopper;
	if (pthread_create(&stopper, NULL, stopper_thread, NULL) != 0) {
		smfi_stop();
		return;
	}
	pthread_detach(stopper);
	for (int i = 0; i < 200; i++) {
		struct pollfd pfd = { .fd = signal_pipe[0], .events = POLLIN };
		wake_listener(listen_socket);
		if (poll(&pfd, 1, 25) == 1) {
			unsigned char b;
			if (read(signal_pipe[0], &b, 1) == 1 && b == 0)
				return;
		}
	}
}

static void *milter_thread(void *arg)
{
	int *rc = arg;
	*rc = smfi_main() == MI_SUCCESS ? 0 : 1;
	/* wake the main thread, which may be waiting for a signal */
	on_signal(0);
	return NULL;
}

static void reload(const char *config, const char *sock)
{
	struct diag errs = { .count = 0 };
	struct snapshot *s = snapshot_load(config, sock, true, &errs);
	if (s == NULL) {
		diag_log(&errs);
		log_error("reload refused: %zu error(s); the running configuration stays", diag_errors(&errs));
		metrics_inc(METRIC_RELOADS_REFUSED);
		diag_free(&errs);
		return;
	}
	struct snapshot *old = snapshot_acquire();
	if (old && strcmp(old->settings->socket, s->settings->socket) != 0)
		log_warning("Socket changed: takes effect only after a restart");
	if (old && strcmp(old->settings->spf_user_id, s->settings->spf_user_id) != 0)
		log_warning("SpfUserID changed: takes effect only after a restart");
	snapshot_release(old);
	snapshot_install(s);
	log_set_level(s->settings->log_level);
	metrics_inc(METRIC_RELOADS);
	log_info("reloaded %s and %s (generation %lu)", config, s->settings->policy_path, s->generation);
}

int main(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG, *sock = NULL;
	bool foreground = false, check = false, verbose = false;
	int opt;

	if (argc > 1 && strcmp(argv[1], "--spf-helper") == 0)
		return spf_helper_main(argc, argv);
	while ((opt = getopt(argc, argv, "c:fnp:vV")) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'f': foreground = true; break;
		case 'n': check = true; break;
		case 'p': sock = optarg; break;
		case 'v': verbose = true; break;
		case 'V': printf("bulkmilter %s\n", PACKAGE_VERSION); return 0;
		default: usage(); return 2;
		}
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	if (check)
		return check_only(config, sock);

	log_open("bulkmilter", foreground);
	struct diag errs = { .count = 0 };
	struct snapshot *snap = snapshot_load(config, sock, false, &errs);
	if (snap == NULL) {
		diag_print(&errs, stderr);
		diag_log(&errs);
		diag_free(&errs);
		return 1;
	}
	const struct settings *s = snap->settings;
	log_set_level(verbose ? LOG_LEVEL_DEBUG : (enum log_level)s->log_level);
	if (!foreground && daemonize() != 0) {
		log_error("cannot daemonize: %s", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe(signal_pipe) != 0) {
		log_error("pipe: %s", strerror(errno));
		return 1;
	}
	fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);

	/* the first snapshot may be freed by a reload: keep what we need of it */
	char *listen_socket = strdup(s->socket);
	char err[256];
	if (listen_socket == NULL)
		return 1;
	/* before any thread, and while still root */
	if (spf_spawn_init(s->spf_user_id, foreground, err, sizeof(err)) != 0) {
		log_error("cannot start the SPF helper spawner: %s", err);
		return 1;
	}
	umask(s->umask);
	shim_libmilter_init(callbacks_desc.xxfi_close, MILTER_TIMEOUT_SECONDS);
	char shims[SHIM_LINE_MAX];
	if (shim_check(shims, sizeof(shims)) == SHIM_ALL)
		log_info("%s", shims);
	else
		log_warning("%s", shims);
	if (smfi_setconn(s->socket) != MI_SUCCESS || smfi_register(callbacks_desc) != MI_SUCCESS ||
	    smfi_settimeout(MILTER_TIMEOUT_SECONDS) != MI_SUCCESS || smfi_setbacklog(128) != MI_SUCCESS ||
	    smfi_opensocket(1) != MI_SUCCESS) {
		log_error("cannot open milter socket %s", s->socket);
		return 1;
	}
	if (unix_socket_path(s->socket) == NULL)
		set_listen_nodelay();
	if (s->pid_file && write_pid_file(s->pid_file) != 0)
		return 1;
	if (drop_privileges(s, unix_socket_path(s->socket)) != 0)
		return 1;
	if (s->user_id) {
		/* files readable by root only would make every later reload fail */
		struct snapshot *probe = snapshot_load(config, sock, false, &errs);
		if (probe == NULL) {
			diag_log(&errs);
			log_warning("configuration is not readable as UserID %s: reloads will fail", s->user_id);
			diag_free(&errs);
		}
		snapshot_release(probe);
	}
	if ((snap->spf = spf_pool_start(s, err, sizeof(err))) == NULL) {
		log_error("cannot start SPF helpers: %s", err);
		return 1;
	}
	snapshot_install(snap);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* the milter thread and its children must not take our signals */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	/* the events thread (NotifyURL) runs even without a URL: a reload may set one */
	if (events_start(err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 1;
	}
	if (s->metrics_listen && metrics_listen(s->metrics_listen, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 1;
	}
	pthread_t tid;
	int milter_rc = 0;
	if (pthread_create(&tid, NULL, milter_thread, &milter_rc) != 0) {
		log_error("cannot start the milter thread");
		return 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	log_info("bulkmilter %s started on %s (policy %s, mode %s)", PACKAGE_VERSION, s->socket,
		 s->policy_path, s->mode == MODE_MONITOR ? "monitor" : "enforce");

	for (;;) {
		unsigned char b;
		ssize_t n = read(signal_pipe[0], &b, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || b == 0) {
			log_error("milter loop ended unexpectedly");
			break;
		}
		if (b == SIGHUP) {
			reload(config, sock);
			continue;
		}
		log_info("signal %d: finishing connections in progress", (int)b);
		stop_milter(listen_socket);
		break;
	}
	pthread_join(tid, NULL);
	/* smfi_main returns when it stops accepting; sessions may still run */
	for (int i = 0; i < SHUTDOWN_GRACE_SECONDS * 10 && callbacks_connections() > 0; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	struct snapshot *cur = snapshot_acquire();
	const char *pid_file = cur && cur->settings->pid_file ? cur->settings->pid_file : NULL;
	if (pid_file)
		unlink(pid_file);
	snapshot_release(cur);
	events_flush(SHUTDOWN_EVENTS_MS);
	events_stop();
	log_info("bulkmilter stopped");
	free(listen_socket);
	return milter_rc;
}
