/*
 * NAME
 *	spf_spawn - where SPF helper processes come from
 * SYNOPSIS
 *	int spf_spawn_init(const char *user, bool log_to_stderr, char *err, size_t len);
 *	int spf_spawn_helper(const char *resolver, long timeout_ms, const char *user,
 *		int *fd, pid_t *pid, char *err, size_t len);
 *	void spf_spawn_end(pid_t pid, bool grace, char *how, size_t len);
 * DESCRIPTION
 *	SPF helpers run as SpfUserID, a user of their own that can read
 *	none of the daemon's secrets (DKIM keys, the Redis password) and
 *	cannot signal the daemon. Only root can start a process as another
 *	user, yet the daemon gives up root after start-up while helpers are
 *	started for as long as it runs (a helper that died, every pool a
 *	reload builds). So the daemon, still root, calls spf_spawn_init,
 *	which forks the spawner: a small process that stays root and, on
 *	the daemon's request, starts a helper or ends one of its helpers.
 *	It runs nothing else and reads no file.
 *
 *	spf_spawn_init must be called while the process is still single-
 *	threaded and before it drops privileges. The spawner's helpers
 *	become user ("user[:group]", "" = SPF_HELPER_DEFAULT_USER) whatever
 *	a request says; without root they run as the caller's user, which is
 *	logged once as a warning. log_to_stderr says where the spawner logs
 *	(log.h). The spawner exits when the calling process's end of their
 *	socket closes (the daemon exited); it ignores SIGHUP, SIGINT and
 *	SIGTERM, so the daemon can finish its connections first. It returns
 *	0, or -1 with a reason in err.
 *
 *	spf_spawn_helper starts a helper as spf_wire.h says (resolver,
 *	timeout_ms, the current log level) and sets *fd to the milter's end
 *	of its socket (close-on-exec) and *pid; 0, or -1 with a reason in
 *	err. spf_spawn_end ends helper pid (with grace it may exit on its own
 *	for SPF_SPAWN_GRACE_MS first), reaps it, and writes how it ended
 *	("exited with status 0", "killed by signal 9", ...) to how. Both are
 *	thread-safe; with a spawner each is one round trip to it, bounded by
 *	SPF_SPAWN_REPLY_MS, after which the spawner counts as gone (logged;
 *	helpers can then no longer be started, and SPF answers temperror).
 *	Without spf_spawn_init (unit tests), they fork, signal and reap in
 *	the calling process, and a helper started as root becomes user
 *	itself.
 * DIAGNOSTICS
 *	The spawner logs requests it refuses; the daemon logs a spawner
 *	that is gone, once.
 *	[owner: SPF module]
 */
#ifndef BM_SPF_SPAWN_H
#define BM_SPF_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A stopping helper gets this long to exit on its own before SIGKILL. */
#define SPF_SPAWN_GRACE_MS 200
/* The longest the daemon waits for the spawner's answer (it takes ms). */
#define SPF_SPAWN_REPLY_MS 5000
/*
 * Helpers one spawner keeps at most: SPF_POOL_SIZE per pool, and a
 * pool lives as long as connections use its configuration, so a few
 * reloads in a row overlap. It bounds what a subverted daemon could
 * make the root spawner fork.
 */
#define SPF_SPAWN_CHILDREN_MAX 256

int spf_spawn_init(const char *user, bool log_to_stderr, char *err, size_t len);
int spf_spawn_helper(const char *resolver, long timeout_ms, const char *user,
	int *fd, pid_t *pid, char *err, size_t len);
void spf_spawn_end(pid_t pid, bool grace, char *how, size_t len);

#endif
