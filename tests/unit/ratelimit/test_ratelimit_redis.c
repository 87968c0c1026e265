/*
 * test_ratelimit_redis - a private redis-server for the rate-limit tests.
 *
 * The server listens on a unix socket in its own temp dir (and, when
 * asked, on a loopback port), never persists anything, and is killed by
 * its PID; PR_SET_PDEATHSIG kills it too if the test itself crashes, so
 * no stray server outlives a failed run.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_ratelimit_redis.h"

/* How long a fresh server may take to answer PING. */
#define TRL_START_MS 5000

static void trl_die(const char *what)
{
	fprintf(stderr, "test_ratelimit_redis: %s\n", what);
	exit(1);
}

long long trl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void trl_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool trl_in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (path == NULL)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
		if (access(buf, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

int trl_free_port(int salt)
{
	for (int i = 0; i < 200; i++) {
		int port = 20000 + (int)((getpid() * 7 + salt * 131 + i * 17) % 12000);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return port;
	}
	trl_die("no free loopback port");
	return 0;
}

static void trl_spawn(struct trl_redis *r)
{
	char port[16], log[128];
	snprintf(port, sizeof(port), "%d", r->port);
	snprintf(log, sizeof(log), "%s/redis.log", r->dir);
	const char *argv[24];
	int n = 0;
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	if (r->port > 0) {
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
	}
	argv[n++] = "--unixsocket";
	argv[n++] = r->sock;
	argv[n++] = "--unixsocketperm";
	argv[n++] = "700";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = r->dir;
	if (r->password[0]) {
		argv[n++] = "--requirepass";
		argv[n++] = r->password;
	}
	argv[n] = NULL;

	pid_t ppid = getpid();
	r->pid = fork();
	if (r->pid < 0)
		trl_die("fork failed");
	if (r->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != ppid)
			_exit(1);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}

	long long until = trl_now_ms() + TRL_START_MS;
	while (trl_now_ms() < until) {
		int status;
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			r->pid = 0;
			fprintf(stderr, "redis-server exited at start; see %s\n", log);
			trl_die("redis-server did not start");
		}
		struct timeval tv = { 0, 200000 };
		redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
		if (c != NULL && !c->err) {
			redisReply *rep = r->password[0] ? redisCommand(c, "AUTH %s", r->password) : NULL;
			if (rep)
				freeReplyObject(rep);
			rep = redisCommand(c, "PING");
			bool up = rep != NULL && rep->type == REDIS_REPLY_STATUS;
			if (rep)
				freeReplyObject(rep);
			redisFree(c);
			if (up)
				return;
		} else if (c != NULL) {
			redisFree(c);
		}
		trl_sleep_ms(10);
	}
	trl_die("redis-server did not answer PING in time");
}

void trl_redis_start(struct trl_redis *r, int port, const char *password)
{
	if (!trl_in_path("redis-server")) {
		fprintf(stderr, "redis-server not installed: skipping\n");
		exit(TRL_SKIP);
	}
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/bm-rl-XXXXXX");
	if (mkdtemp(r->dir) == NULL)
		trl_die("mkdtemp failed");
	snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
	snprintf(r->url, sizeof(r->url), "unix:%s", r->sock);
	snprintf(r->password, sizeof(r->password), "%s", password ? password : "");
	r->port = port;
	trl_spawn(r);
}

void trl_redis_stop(struct trl_redis *r)
{
	if (r->pid <= 0)
		return;
	kill(r->pid, SIGCONT);		/* in case a test stopped it */
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	r->pid = 0;
	unlink(r->sock);
}

void trl_redis_restart(struct trl_redis *r)
{
	trl_redis_stop(r);
	trl_spawn(r);
}

void trl_redis_cleanup(struct trl_redis *r)
{
	char path[160];

	trl_redis_stop(r);
	snprintf(path, sizeof(path), "%s/redis.log", r->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/dump.rdb", r->dir);
	unlink(path);
	rmdir(r->dir);
}

redisContext *trl_redis_raw(const struct trl_redis *r)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
	if (c == NULL || c->err)
		trl_die("raw connection failed");
	if (r->password[0]) {
		redisReply *rep = redisCommand(c, "AUTH %s", r->password);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
			trl_die("raw AUTH failed");
		freeReplyObject(rep);
	}
	return c;
}

void trl_settings(struct settings *s, const struct trl_redis *r, long timeout_ms)
{
	memset(s, 0, sizeof(*s));
	s->path = (char *)"test.conf";
	s->redis_url = (char *)r->url;
	s->redis_timeout_ms = timeout_ms;
	s->redis_prefix = (char *)"bm:";
}

struct store *trl_store_open(const struct trl_redis *r, long timeout_ms)
{
	struct settings s;
	struct diag d = { 0 };
	trl_settings(&s, r, timeout_ms);
	struct store *st = store_open(&s, &d);
	diag_print(&d, stderr);
	diag_free(&d);
	return st;
}

struct policy_rate trl_rate(unsigned long count, unsigned long period_ms)
{
	struct policy_rate rate = { .count = count, .period_ms = period_ms };
	snprintf(rate.text, sizeof(rate.text), "%lu/%lums", count, period_ms);
	return rate;
}

void trl_class(struct policy_class *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->over_limit = ACTION_TEMPFAIL;
}

void trl_add_volume(struct policy_class *c, unsigned long count, unsigned long period_ms)
{
	struct policy_bulk_rule *b = &c->bulk[c->bulk_count++];
	b->kind = BULK_VOLUME;
	b->volume = trl_rate(count, period_ms);
	c->has_volume = true;
}
