#!/bin/bash
#
# Files bulkmilter handles as root are never followed through a link
# (SPEC.md "Always"). The directories of the PidFile and the socket are
# writable by UserID (the daemon removes the pid file at exit as that
# user), so UserID could have made a name there a link to a file of
# root's:
# - PidFile: a link to a root-owned file is replaced by a fresh regular
#   file holding the daemon's pid; the file it pointed at keeps its
#   content and owner; at exit the pid file is removed (as UserID).
# - Socket: libmilter creates the socket as root, then bulkmilter hands
#   it to UserID. A link that takes the socket's name in between (made
#   here by an LD_PRELOAD wrapper of bind(), right after the real bind)
#   is not followed: bulkmilter says so in its log and exits 1, and the
#   file the link points at keeps its owner.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

chmod 755 "$H_TMP"
h_policy 'class standard { account sasl sender }' 'assign outbound standard'
chmod 644 "$H_TMP/bulkmilter.policy"

# -- PidFile
rundir=$H_TMP/run
mkdir -m 755 "$rundir"
chown postfix:postfix "$rundir"
precious=$H_TMP/precious
printf 'root data\n' >"$precious"
chmod 644 "$precious"
ln -s "$precious" "$rundir/bulkmilter.pid"
h_conf "UserID postfix:postfix" "PidFile $rundir/bulkmilter.pid"
chmod 644 "$H_TMP/bulkmilter.conf"
h_log_mark "$H_MILTER_LOG"
h_milter_start
h_wait_log "$H_MILTER_LOG" 'info: bulkmilter .* started on' 20	# SIGTERM handled from then on

h_assert_eq "root data" "$(cat "$precious")" "PidFile: the file the link pointed at keeps its content"
h_assert_eq "root:root regular file" "$(stat -c '%U:%G %F' "$precious")" \
	"PidFile: the file the link pointed at keeps its owner"
h_assert_eq "regular file" "$(stat -c %F "$rundir/bulkmilter.pid")" "PidFile: a regular file now, not a link"
h_assert_eq "$H_MILTER_PID" "$(cat "$rundir/bulkmilter.pid")" "PidFile: holds the daemon's pid"
h_milter_stop
h_assert_eq 0 "$H_MILTER_STATUS" "PidFile: the milter stops cleanly"
h_ok "PidFile: removed at exit by the daemon, running as postfix" test ! -e "$rundir/bulkmilter.pid"

# -- Socket: a link takes the socket's name between bind() and the chown
cat >"$H_TMP/bindswap.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* After the real bind() of BM_SWAP_SOCKET, its name becomes a link to BM_SWAP_TARGET. */
int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int (*real)(int, const struct sockaddr *, socklen_t) =
		(int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	const char *path = getenv("BM_SWAP_SOCKET"), *target = getenv("BM_SWAP_TARGET");
	int rc = real(fd, sa, len);

	if (rc == 0 && path != NULL && target != NULL && sa->sa_family == AF_UNIX &&
	    strcmp(((const struct sockaddr_un *)sa)->sun_path, path) == 0 &&
	    (unlink(path) != 0 || symlink(target, path) != 0))
		abort();
	return rc;
}
EOF
cc -shared -fPIC -o "$H_TMP/bindswap.so" "$H_TMP/bindswap.c" -ldl ||
	h_fatal "cannot build the bind() wrapper"

sock=$rundir/swap.sock
h_conf "UserID postfix:postfix" "PidFile $rundir/bulkmilter.pid" "Socket unix:$sock"
h_log_mark "$H_MILTER_LOG"
ASAN_OPTIONS="$(h__milter_asan):verify_asan_link_order=0" LD_PRELOAD="$H_TMP/bindswap.so" \
	BM_SWAP_SOCKET="$sock" BM_SWAP_TARGET="$precious" \
	"$H_BULKMILTER" -f -c "$H_TMP/bulkmilter.conf" >>"$H_MILTER_LOG" 2>&1 </dev/null &
swapped=$!
h_ok "Socket: the wrapper replaced the socket with a link" h__wait_for 10 test -L "$sock"
if ! h__wait_for 10 eval '! h__alive '"$swapped"; then
	h_diag "the milter still runs 10 s after its socket was replaced"
fi
h__stop "$swapped" 5
h_assert_eq 1 "$H__STATUS" "Socket: the milter does not start"
h_ok "Socket: it says why" h_wait_log "$H_MILTER_LOG" \
	"error: Socket $sock is no longer the socket bulkmilter made \\(a link or other file took its name\\): not changing its owner, not starting" 2
h_assert_eq "root:root root data" "$(stat -c '%U:%G' "$precious") $(cat "$precious")" \
	"Socket: the file the link points at keeps its owner and content"
