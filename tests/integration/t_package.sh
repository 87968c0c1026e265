#!/bin/bash
#
# The Debian package, as a new admin meets it: scripts/package builds
# bulkmilter_*.deb from a clean tree (git archive HEAD: what is
# committed) with no lintian error; "apt-get install ./bulkmilter_*.deb"
# installs the daemon, bulkmilterctl, man pages, /etc/bulkmilter/ with
# the default config and policy as conffiles, the system user bulkmilter,
# the socket directory in Postfix's chroot, a hardened systemd unit and
# the Postfix snippets. The admin points the default configuration at a
# Redis (here a private one); the daemon starts under systemd when
# systemd runs here, otherwise (a container) with the installed unit's
# own ExecStartPre and ExecStart command lines, after making its
# RuntimeDirectory. It runs as bulkmilter, reloads with the unit's
# ExecReload (SIGHUP), and an authenticated message goes through a
# private Postfix attached to the default socket, charging a bucket in
# Redis. At the end the package is purged, so the tests run after this
# one see the machine as before (unless it was installed before the test:
# then it stays). Runs in the plain build only: the package builds its
# own binaries, so in the sanitizer build (BM_BUILDDIR's bulkmilter links
# libasan) it is skipped.

# shellcheck source=../lib/harness.sh disable=SC2034
. "$(dirname "$0")/../lib/harness.sh"

if [ -n "${BM_BUILDDIR:-}" ] && ldd "$BM_BUILDDIR/milter/bulkmilter" 2>/dev/null | grep -q libasan; then
	h_skip "the Debian package" "sanitizer build (the package builds its own binaries: tested in the plain build)"
	exit 0
fi

unit=/lib/systemd/system/bulkmilter.service
conf=/etc/bulkmilter/bulkmilter.conf
sock=/var/spool/postfix/bulkmilter/bulkmilter.sock
use_systemd=0
[ -d /run/systemd/system ] && use_systemd=1

was_installed=0
dpkg-query -W -f='${Status}' bulkmilter 2>/dev/null | grep -q ' installed$' && was_installed=1
purged=0
# apt waits for a lock another apt-get holds instead of failing at once
apt_wait="-o DPkg::Lock::Timeout=120"
pkg_cleanup() {
	[ "$use_systemd" = 1 ] && systemctl stop bulkmilter 2>/dev/null
	if [ "$was_installed" = 0 ] && [ "$purged" = 0 ]; then
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $apt_wait bulkmilter >/dev/null 2>&1
		[ "$use_systemd" = 1 ] || rm -rf /run/bulkmilter
	fi
}
# shellcheck disable=SC2154
trap 'rc=$?; pkg_cleanup; (exit $rc); h__exit' EXIT

# ---- build
# Every Debian package configure.ac names for a library it needs is a
# Build-Depends of scripts/debian/control (a clean builder has only those).
needed=$(sed -n 's/^BM_NEED_PKG(\[[A-Z0-9]*\], \[[^]]*\], \[\([^]]*\)\])$/\1/p' "$H_SRCDIR/configure.ac")
needed="$needed $(grep -o 'install the Debian package [a-z0-9.+-]*' "$H_SRCDIR/configure.ac" |
	awk '{print $NF}' | grep -- '-dev$' | grep -v cmocka | sort -u)"
missing=
for p in $needed; do
	grep -Eq "^(Build-Depends:)? +$p(,|$)" "$H_SRCDIR/scripts/debian/control" || missing="$missing $p"
done
h_assert_eq "" "$missing" "every library package configure.ac needs is in Build-Depends"
"$H_SRCDIR/scripts/package" "$H_TMP/pkg" >"$H_TMP/package.out" 2>&1
pkg_rc=$?
deb=$(ls "$H_TMP"/pkg/bulkmilter_*.deb 2>/dev/null | head -n 1)
h_ok "scripts/package builds bulkmilter_*.deb" test "$pkg_rc" = 0 -a -f "$deb"
[ -f "$deb" ] || { h_diag "$(tail -n 30 "$H_TMP/package.out")"; h_fatal "no package"; }
h_assert_no_grep "$H_TMP/package.out" '^E: ' "lintian reports no error"

# ---- install, as an admin would
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $apt_wait --no-install-recommends "$deb" \
	>"$H_TMP/install.out" 2>&1
h_ok "apt-get install ./$(basename "$deb")" test $? = 0
h_ok "bulkmilter is installed" \
	bash -c "dpkg-query -W -f='\${Status}' bulkmilter | grep -q ' installed$'"
files=$(dpkg -L bulkmilter)
for f in /usr/sbin/bulkmilter /usr/sbin/bulkmilterctl /usr/share/man/man8/bulkmilter.8.gz \
	 /usr/share/man/man5/bulkmilter.conf.5.gz /usr/share/man/man5/bulkmilter.policy.5.gz \
	 "$unit" /usr/share/doc/bulkmilter/postfix/main.cf /usr/share/doc/bulkmilter/postfix/master.cf \
	 /usr/share/doc/bulkmilter/postfix/bulk_routes /usr/share/doc/bulkmilter/grafana/bulkmilter.json; do
	h_ok "the package installs $f" grep -qxF "$f" <<<"$files"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' bulkmilter)
for f in "$conf" /etc/bulkmilter/bulkmilter.policy; do
	h_ok "$f is a conffile" grep -q "^ $f " <<<"$conffiles"
done
h_ok "system user bulkmilter (uid < 1000, no login shell)" \
	bash -c 'IFS=: read -r _ _ uid _ _ _ shell < <(getent passwd bulkmilter) &&
		 [ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ]'
h_assert_eq "bulkmilter:postfix 750" "$(stat -c '%U:%G %a' "$(dirname "$sock")" 2>&1)" \
	"socket directory in Postfix's chroot: bulkmilter:postfix 750"
for line in ProtectSystem=strict NoNewPrivileges=yes RuntimeDirectory=bulkmilter \
	    'CapabilityBoundingSet=CAP_' 'ExecReload=/bin/kill -HUP $MAINPID'; do
	h_ok "unit has $line" grep -q "^$line" "$unit"
done
h_ok "systemd-analyze verify accepts the unit" systemd-analyze verify --man=no "$unit"

# ---- configure: the default config, with the admin's Redis
h_redis_start
sed -i "s|^Redis .*|Redis               unix:$H_REDIS_SOCK|" "$conf"
h_ok "config points at the private Redis" grep -q "^Redis *unix:$H_REDIS_SOCK" "$conf"

# unit_cmd KEY: the installed unit's command line for KEY (ExecStart,
# ExecStartPre, ExecReload), without systemd's prefixes (- @ + ! :).
unit_cmd() {
	sed -n "s/^$1=[-@+!:]*//p" "$unit" | head -n 1
}
read -r -a pre_cmd <<<"$(unit_cmd ExecStartPre)"
read -r -a start_cmd <<<"$(unit_cmd ExecStart)"

# ---- start
if [ "$use_systemd" = 1 ]; then
	h_diag "systemd runs here: systemctl restart bulkmilter"
	systemctl daemon-reload
	h_ok "systemctl restart bulkmilter" systemctl restart bulkmilter
	H_MILTER_LOG_CMD="journalctl -u bulkmilter --no-pager -o cat"
	h__wait_for 20 test -S "$sock"
	main_pid=$(systemctl show -p MainPID --value bulkmilter)
else
	h_diag "no systemd here: running the unit's command lines directly"
	install -d -m 0755 /run/bulkmilter	# RuntimeDirectory=bulkmilter
	h_ok "ExecStartPre (${pre_cmd[*]}) passes" "${pre_cmd[@]}"
	"${start_cmd[@]}" >>"$H_MILTER_LOG" 2>&1 </dev/null &
	H_MILTER_PID=$!
	H_MILTER_EVER=1
	main_pid=$H_MILTER_PID
	h__wait_for 20 test -S "$sock" ||
		{ h_diag "$(tail -n 20 "$H_MILTER_LOG")"; h_fatal "${start_cmd[*]} did not open $sock"; }
fi
milter_log() {
	if [ "$use_systemd" = 1 ]; then $H_MILTER_LOG_CMD; else cat "$H_MILTER_LOG"; fi
}
h_ok "the daemon opened $sock" test -S "$sock"
h_assert_eq "bulkmilter" "$(stat -c %U "/proc/$main_pid" 2>&1)" "the daemon runs as bulkmilter"
h_assert_eq "$main_pid" "$(cat /run/bulkmilter/bulkmilter.pid 2>&1)" "PidFile in the RuntimeDirectory"

# ---- reload: the unit's ExecReload
read -r -a reload_cmd <<<"$(unit_cmd ExecReload)"
reload_cmd=("${reload_cmd[@]//\$MAINPID/$main_pid}")
if [ "$use_systemd" = 1 ]; then
	h_ok "systemctl reload bulkmilter" systemctl reload bulkmilter
else
	h_ok "ExecReload (${reload_cmd[*]})" "${reload_cmd[@]}"
fi
h_ok "the daemon logs the reload" \
	h__wait_for 10 bash -c "$(declare -f milter_log); use_systemd=$use_systemd H_MILTER_LOG_CMD='${H_MILTER_LOG_CMD:-}' H_MILTER_LOG=$H_MILTER_LOG milter_log | grep -q 'reloaded $conf'"

# ---- one message through a private Postfix attached to the default socket
H_MILTER_SOCKET=unix:$sock
h_sasl_user alice@example.com wonderland
h_postfix_start
h_send --sasl alice@example.com wonderland --from alice@example.com --to bob@example.net \
	--header "Message-Id: <package-1@example.com>"
qid=$H_QID
h_ok "the message is accepted (250 queued as ID)" test -n "$qid"
h_ok "the message arrives at the sink" h_wait_sink main 1 20
h_ok "the daemon logged decision=accept for $qid" \
	h__wait_for 10 bash -c "$(declare -f milter_log); use_systemd=$use_systemd H_MILTER_LOG_CMD='${H_MILTER_LOG_CMD:-}' H_MILTER_LOG=$H_MILTER_LOG milter_log | grep -q '$qid: .*direction=outbound .*decision=accept'"
h_ok "the default policy charged a bucket in Redis (RedisPrefix bm:)" \
	test -n "$(h_redis --scan --pattern 'bm:*' | head -n 1)"

# ---- stop and purge
h_postfix_stop
if [ "$use_systemd" = 1 ]; then
	h_ok "systemctl stop bulkmilter" systemctl stop bulkmilter
else
	h_milter_stop
	h_assert_eq 0 "$H_MILTER_STATUS" "the daemon exits 0 on SIGTERM"
fi
if [ "$was_installed" = 0 ]; then
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $apt_wait bulkmilter >"$H_TMP/purge.out" 2>&1
	h_ok "apt-get purge bulkmilter" test $? = 0
	purged=1
	[ "$use_systemd" = 1 ] || rm -rf /run/bulkmilter
	h_ok "purge removes /etc/bulkmilter, the daemon and the socket directory" \
		test ! -e /etc/bulkmilter -a ! -e /usr/sbin/bulkmilter -a ! -e "$(dirname "$sock")"
else
	h_diag "bulkmilter was installed before this test: left installed (now the built version)"
fi
