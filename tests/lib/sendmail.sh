# shellcheck shell=bash disable=SC2034,SC2004
# (the harness's arrays and H_QID are set here for the tests to read)
#
# NAME
#	sendmail.sh - a private Sendmail 8.17 on loopback, for the
#	t_sendmail_* integration tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/sendmail.sh"
#
#	sm_need_debs
#	sm_snippet
#	sm_netns ADDR
#	sm_build ROOT --smtpd PORT --relay PORT --socket SOCKET [--sasl]
#		 [--mc 'LINE']...
#	sm_sasl_user ROOT USER PASS
#	sm_start ROOT; sm_stop ROOT; sm_sendmail ROOT ARGS...
#	sm_submit ROOT ARGS...
#	sm_queue_files QUEUE [PREFIX]
#	sm_sink_start NAME
#	sm_smtp [smtp_driver.py options...]; sm_send [h_send options...]
#
#	Variables: SM_DEBS, SM_ROOT (the harness's instance, $H_TMP/sendmail),
#	SM_ADDR (where Sendmail listens: 127.0.0.1, or sm_netns's ADDR).
# DESCRIPTION
#	Debian's sendmail-bin conflicts with postfix, so Sendmail is never
#	installed: scripts/deps only downloads its .debs (sendmail-bin,
#	sendmail-base, sendmail-cf and the two libraries it needs that
#	Postfix does not, liblockfile1 and libwrap0) into SM_DEBS
#	($BM_SENDMAIL_DEBS, default /var/cache/bulkmilter-tests/sendmail),
#	and sm_build unpacks them with dpkg-deb -x under ROOT/pkg. Nothing
#	outside ROOT is written, and no system file is read as Sendmail
#	configuration.
#
#	sm_need_debs skips the test (exit 0, "ok ... # SKIP") when the
#	.debs are not there (run scripts/deps).
#
#	sm_snippet prints the .mc lines of the README's "Attaching it to
#	Sendmail" section (its first indented block): the tests build their
#	Sendmail with exactly what the README tells admins to write.
#
#	sm_netns makes loopback clients that are not loopback addresses
#	(libspf2 passes every client in 127.0.0.0/8, and Sendmail has no
#	XCLIENT): a network namespace (the file $SM_ROOT/netns) whose lo
#	also carries ADDR/32. Sendmail (sm_start), the sinks of
#	sm_sink_start and the clients of sm_smtp then run in it, and
#	Sendmail listens on ADDR, so a client's address is ADDR; the milter
#	and DNS stay outside (the milter's socket is a unix socket). Call it
#	before sm_build. The exit trap unmounts it.
#
#	sm_build writes ROOT/etc/sendmail.mc: the test's own part (queue in
#	ROOT/queue, pid file, no aliases, no DNS: the service switch says
#	"hosts files", no interface probing, one listener on
#	$SM_ADDR:PORT and no MSA on 587, every message relayed to
#	[127.0.0.1]:--relay, any loopback client may relay), then the
#	README snippet with its S= socket replaced by SOCKET, then each
#	--mc line, then MAILER(smtp). Sendmail refuses a milter socket in a
#	world-writable directory path, and /tmp is one: the test's part
#	adds DontBlameSendmail TrustStickyBit (a sticky /tmp is safe). m4
#	with sendmail-cf makes ROOT/etc/sendmail.cf. --sasl offers AUTH
#	PLAIN and LOGIN. sm_build also makes ROOT/etc/submit.cf, the
#	submission program's configuration (FEATURE(msp), as Sendmail's own
#	submit.mc, its queue in ROOT/clientqueue, run as nobody: it refuses
#	to run as root), which hands mail to the MTA over SMTP at
#	$SM_ADDR:PORT.
#
#	sm_sasl_user adds USER to ROOT/sasl/sasldb2 and writes
#	ROOT/sasl/Sendmail.conf (auxprop sasldb on that file). Cyrus SASL
#	reads Sendmail.conf from /usr/lib/sasl2 only, so sm_start then also
#	gives Sendmail its own mount namespace in which ROOT/sasl is
#	mounted on /usr/lib/sasl2 (the machine's stays as it is).
#
#	sm_start runs "sendmail -bd -q1s" in its own UTS namespace (unshare
#	-u) whose host name is bm-sendmail.localdomain, with
#	confDOMAIN_NAME the same and the name in the hosts file it reads
#	(ROOT/etc/hosts): Sendmail then does not spend a minute trying to
#	resolve the machine's own name. It daemonizes; sm_start
#	waits until it listens. sm_stop sends its daemon SIGTERM (it stops
#	its children) and waits; after 10 s, SIGKILL. sm_sendmail runs
#	"sendmail -C ROOT/etc/sendmail.cf ARGS" the same way, in the
#	foreground (e.g. -qQ -qIQID -Q: release a quarantined message).
#	sm_submit is sendmail(1) as a local program calls it: "sendmail -C
#	ROOT/etc/submit.cf ARGS", the message on stdin.
#
#	Sendmail has no log here (no syslog daemon); the tests look at SMTP
#	replies, the sink, the queue files and the milter's log.
#
#	sm_queue_files lists the files of QUEUE (ROOT/queue, the MTA's, or
#	ROOT/clientqueue, the submission program's) whose names start with
#	PREFIX (default any): qf (queued), hf (quarantined, Sendmail's hold
#	queue: its "q" line is the reason), df (bodies).
#
#	sm_sink_start is h_sink_start in sm_netns's namespace (the
#	harness's h_sink_* helpers and cleanup work on it); without
#	sm_netns, h_sink_start itself.
#
#	sm_smtp is h_smtp against the private Sendmail (SM_ADDR,
#	H_SMTP_PORT, in sm_netns's namespace when there is one); sm_send
#	is h_send against it (not with sm_netns) and sets H_QID from
#	Sendmail's reply to the final dot ("250 2.0.0 QID Message accepted
#	for delivery").
#
#	The harness's cleanup does not know Sendmail: sourcing this file
#	chains sm_stop "$SM_ROOT" in front of it on EXIT.
# DIAGNOSTICS
#	sm_build and sm_start return 1 with the reason on stderr.

SM_DEBS=${BM_SENDMAIL_DEBS:-/var/cache/bulkmilter-tests/sendmail}
SM_PACKAGES="sendmail-bin sendmail-base sendmail-cf liblockfile1 libwrap0"
SM_HOSTNAME=bm-sendmail.localdomain
SM_ROOT=$H_TMP/sendmail
SM_ADDR=127.0.0.1
SM_NETNS=

# sm__run CMD...: CMD, in sm_netns's namespace when there is one.
sm__run() {
	if [ -n "$SM_NETNS" ]; then
		nsenter --net="$SM_NETNS" "$@"
	else
		"$@"
	fi
}

sm_netns() {
	mkdir -p "$SM_ROOT" && : >"$SM_ROOT/netns" || return 1
	unshare --net="$SM_ROOT/netns" true ||
		{ echo "sm_netns: unshare --net failed" >&2; return 1; }
	SM_NETNS=$SM_ROOT/netns
	if ! sm__run ip link set lo up || ! sm__run ip addr add "$1/32" dev lo; then
		echo "sm_netns: cannot put $1 on lo" >&2
		return 1
	fi
	SM_ADDR=$1
}

# sm__listening PORT: something listens on TCP PORT (in the namespace).
sm__listening() {
	sm__run cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v port="$(printf ':%04X' "$1")" '
			$4 == "0A" && toupper(substr($2, length($2) - 4)) == port {found = 1}
			END {exit !found}'
}

sm__deb() {
	local f
	for f in "$SM_DEBS/$1"_*.deb; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

sm_need_debs() {
	local p
	for p in $SM_PACKAGES; do
		if ! sm__deb "$p" >/dev/null; then
			h_skip "$H_TEST" "no $p .deb in $SM_DEBS (scripts/deps downloads it)"
			exit 0
		fi
	done
}

sm_snippet() {
	awk '/^Attaching it to Sendmail$/ {in_section = 1; next}
	     in_section && /^    / {in_block = 1; print substr($0, 5); next}
	     in_block {exit}' "$H_SRCDIR/README"
}

sm_build() {
	local root=$1 smtpd='' relay='' socket='' p cf line snippet
	local mc=()
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--smtpd) smtpd=$2; shift 2 ;;
		--relay) relay=$2; shift 2 ;;
		--socket) socket=$2; shift 2 ;;
		--sasl) mc+=("define(\`confAUTH_MECHANISMS', \`PLAIN LOGIN')dnl"
			     "TRUST_AUTH_MECH(\`PLAIN LOGIN')dnl"); shift ;;
		--mc) mc+=("$2"); shift 2 ;;
		*) echo "sm_build: unknown option $1" >&2; return 1 ;;
		esac
	done
	if [ -z "$smtpd" ] || [ -z "$relay" ] || [ -z "$socket" ]; then
		echo "sm_build: --smtpd, --relay and --socket are required" >&2
		return 1
	fi
	snippet=$(sm_snippet)
	case $snippet in
	*INPUT_MAIL_FILTER*) ;;
	*) echo "sm_build: no INPUT_MAIL_FILTER snippet in README" >&2; return 1 ;;
	esac
	mkdir -p "$root/pkg" "$root/etc" || return 1
	for p in $SM_PACKAGES; do
		dpkg-deb -x "$(sm__deb "$p")" "$root/pkg" ||
			{ echo "sm_build: dpkg-deb -x $p failed" >&2; return 1; }
	done
	install -d -m 700 "$root/queue" || return 1
	: >"$root/etc/aliases"
	printf 'hosts files\naliases files\n' >"$root/etc/service.switch"
	printf '127.0.0.1 localhost %s\n' "$SM_HOSTNAME" >"$root/etc/hosts"
	cf=$root/pkg/usr/share/sendmail/cf
	{
		cat <<EOF
divert(-1)
# Private instance made by tests/lib/sendmail.sh (sm_build).
divert(0)dnl
VERSIONID(\`bulkmilter tests')dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`$SM_HOSTNAME')dnl
define(\`QUEUE_DIR', \`$root/queue')dnl
define(\`confPID_FILE', \`$root/sendmail.pid')dnl
define(\`STATUS_FILE', \`$root/statistics')dnl
define(\`ALIAS_FILE', \`$root/etc/aliases')dnl
define(\`confSERVICE_SWITCH_FILE', \`$root/etc/service.switch')dnl
define(\`confHOSTS_FILE', \`$root/etc/hosts')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
define(\`confTO_QUEUERETURN', \`1h')dnl
define(\`confMIN_QUEUE_AGE', \`0')dnl
define(\`SMART_HOST', \`relay:[127.0.0.1]')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $relay')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`promiscuous_relay')dnl
DAEMON_OPTIONS(\`Port=$smtpd, Addr=$SM_ADDR, Name=MTA')dnl
EOF
		echo "dnl the README's snippet:"
		sed -E "s|S=[^,']*|S=$socket|" <<<"$snippet"
		if [ ${#mc[@]} -gt 0 ]; then printf '%s\n' "${mc[@]}"; fi
		echo "MAILER(\`smtp')dnl"
	} >"$root/etc/sendmail.mc" || return 1
	# promiscuous_relay warns on stderr: keep that out of the test output
	m4 -D_CF_DIR_="$cf/" "$cf/m4/cf.m4" "$root/etc/sendmail.mc" \
		>"$root/etc/sendmail.cf" 2>"$root/m4.err" ||
		{ echo "sm_build: m4 failed:" >&2; cat "$root/m4.err" >&2; return 1; }
	install -d -o nobody -m 770 "$root/clientqueue" || return 1
	cat >"$root/etc/submit.mc" <<EOF
divert(0)dnl
VERSIONID(\`bulkmilter tests: submission')dnl
define(\`confCF_VERSION', \`Submit')dnl
define(\`__OSTYPE__',\`')dnl
define(\`confTIME_ZONE', \`USE_TZ')dnl
define(\`confDONT_INIT_GROUPS', \`True')dnl
define(\`confDOMAIN_NAME', \`$SM_HOSTNAME')dnl
define(\`confRUN_AS_USER', \`nobody')dnl
define(\`MSP_QUEUE_DIR', \`$root/clientqueue')dnl
define(\`confSERVICE_SWITCH_FILE', \`$root/etc/service.switch')dnl
define(\`confHOSTS_FILE', \`$root/etc/hosts')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $smtpd')dnl
FEATURE(\`msp', \`[$SM_ADDR]')dnl
EOF
	m4 -D_CF_DIR_="$cf/" "$cf/m4/cf.m4" "$root/etc/submit.mc" \
		>"$root/etc/submit.cf" 2>>"$root/m4.err" ||
		{ echo "sm_build: m4 submit.mc failed:" >&2; cat "$root/m4.err" >&2; return 1; }
	for line in "O InputMailFilters=" "Xbulkmilter, S=$socket"; do
		grep -qF "$line" "$root/etc/sendmail.cf" ||
			{ echo "sm_build: sendmail.cf lacks '$line'" >&2; return 1; }
	done
}

sm_sasl_user() {
	local dir=$1/sasl
	mkdir -p "$dir" || return 1
	printf '%s\n' "pwcheck_method: auxprop" "auxprop_plugin: sasldb" \
		"sasldb_path: $dir/sasldb2" "mech_list: PLAIN LOGIN" >"$dir/Sendmail.conf"
	printf '%s' "$3" | saslpasswd2 -f "$dir/sasldb2" -p -c "$2" ||
		{ echo "sm_sasl_user: saslpasswd2 $2 failed" >&2; return 1; }
	chmod 600 "$dir/sasldb2"
}

sm_sendmail() {
	sm__sendmail "$1" "$1/etc/sendmail.cf" "${@:2}"
}

sm_submit() {
	sm__sendmail "$1" "$1/etc/submit.cf" "${@:2}"
}

sm__sendmail() {
	local root=$1 cf=$2 ns=-u mount=:
	shift 2
	if [ -d "$root/sasl" ]; then
		ns=-um
		mount="mount --bind '$root/sasl' /usr/lib/sasl2"
	fi
	# Its own host name in its own UTS namespace; a clean environment.
	sm__run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		LD_LIBRARY_PATH="$root/pkg/usr/lib/x86_64-linux-gnu" \
		unshare "$ns" sh -c "$mount"' && hostname "$1" && shift && exec "$@"' sh \
		"$SM_HOSTNAME" "$root/pkg/usr/libexec/sendmail/sendmail" -C "$cf" "$@"
}

sm_start() {
	local root=$1 port
	port=$(sed -n 's/^O DaemonPortOptions=Port=\([0-9]*\),.*/\1/p' "$root/etc/sendmail.cf" | head -n 1)
	rm -f "$root/sendmail.pid"
	if ! sm_sendmail "$root" -bd -q1s >"$root/start.out" 2>&1 </dev/null; then
		{ echo "sm_start: sendmail failed:"; cat "$root/start.out"; } >&2
		return 1
	fi
	pf_wait_for 10 sm__listening "$port" ||
		{ echo "sm_start: sendmail does not listen on port $port:" >&2; cat "$root/start.out" >&2; return 1; }
}

sm_stop() {
	local root=$1 pid i
	pid=$(head -n 1 "$root/sendmail.pid" 2>/dev/null)
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$root/sendmail.pid"; return 0; }
		sleep 0.1
	done
	echo "sm_stop: sendmail $pid still running after 10 s: SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null
	rm -f "$root/sendmail.pid"
	return 1
}

sm_queue_files() {
	local f
	for f in "$1/${2:-}"*; do
		[ -f "$f" ] && echo "$f"
	done
}

sm_sink_start() {
	local name=$1 port dir=$H_TMP/sink-$1
	if [ -z "$SM_NETNS" ]; then
		h_sink_start "$@"
		return
	fi
	port=$(h_port "$H_NEXT_PORT")
	H_NEXT_PORT=$((H_NEXT_PORT + 1))
	mkdir -p "$dir"
	# nsenter execs the sink: $! is the sink, for the harness to stop
	nsenter --net="$SM_NETNS" /usr/bin/python3 "$H_LIB/sink.py" --port "$port" --dir "$dir" \
		>>"$H_TMP/sink-$name.log" 2>&1 </dev/null &
	H_SINK_PID[$name]=$!
	H_SINK_PORT[$name]=$port
	h__wait_for 10 test -f "$dir/.ready" ||
		h_fatal "sink $name on port $port did not start: $(cat "$H_TMP/sink-$name.log")"
}

sm_smtp() {
	sm__run /usr/bin/python3 "$H_LIB/smtp_driver.py" --host "$SM_ADDR" --port "$H_SMTP_PORT" "$@" </dev/null
}

sm_send() {
	h_send "$@"
	local rc=$?
	H_QID=$(sed -n 's/^<- *250 2\.0\.0 \([0-9A-Za-z]*\) Message accepted for delivery.*/\1/p' \
		"$H_SEND_LOG" | tail -n 1)
	return $rc
}

sm__exit() {
	local rc=$?
	sm_stop "$SM_ROOT"
	[ -n "$SM_NETNS" ] && umount "$SM_NETNS"
	(exit "$rc")
	h__exit
}
trap sm__exit EXIT
