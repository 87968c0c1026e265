# shellcheck shell=bash disable=SC2034,SC2119,SC2120
# (variables here are for the tests; h_conf reads stdin when given no argument)
#
# NAME
#	harness.sh - private Postfix, Redis, SMTP sinks and bulkmilter for
#	the integration tests
# SYNOPSIS
#	#!/bin/bash
#	. "$(dirname "$0")/../lib/harness.sh"
#
#	Redis:	 h_redis_start; h_redis_stop; h_redis ARGS (redis-cli)
#	DNS:	 h_dns_start [dnsmasq --txt-record=... options]; h_dns_stop
#	Sinks:	 h_sink_start NAME [PORT [sink.py options]]; h_sink_stop NAME
#		 h_sink_count NAME; h_sink_files NAME; h_sink_grep NAME STRING
#		 h_wait_sink NAME COUNT [TIMEOUT]
#		 h_wait_sink_grep NAME STRING [TIMEOUT]; h_sink_nexthop NAME
#	Postfix: h_postfix_master 'master.cf line'...
#		 h_postfix_start ['main.cf line'...]; h_postfix_stop
#		 h_postconf 'name = value'...; h_postfix_reload
#		 h_sasl_user USER PASS; h_postqueue_json; h_queue_count
#		 h_sendmail [sendmail options...] < MESSAGE
#	Milter:	 h_policy ['LINE'...|< TEXT]; h_conf ['LINE'...|< TEXT]
#		 h_milter_start [ARGS]; h_milter_stop; h_milter_hup
#		 h_milter_run ARGS (-n, -V: output in $H_OUT)
#		 h_milter_line QID; h_milter_field QID FIELD
#	SMTP:	 h_send [--ip ADDR] [--sasl USER PASS] [--raw FILE] [swaks...]
#		 h_smtp [smtp_driver.py options...]
#		 h_parallel COUNT CMD... (never a bare "wait")
#	Logs:	 h_log_mark FILE; h_wait_log FILE ERE [TIMEOUT]
#	Messages: h_headers FILE; h_header FILE NAME
#	Checks:	 h_ok NAME CMD...; h_assert_eq EXPECTED ACTUAL [NAME]
#		 h_assert_grep FILE ERE [NAME]; h_assert_no_grep FILE ERE [NAME]
#		 h_skip NAME REASON; h_diag TEXT; h_fatal TEXT
#	Other:	 h_port N; h_detach
#
#	Variables: H_TMP, H_LIB, H_SRCDIR, H_SMTP_PORT, H_POSTFIX_DIR,
#	H_MAILLOG, H_MILTER_SOCKET, H_MILTER_LOG, H_MILTER_PID,
#	H_MILTER_STATUS, H_BULKMILTER, H_BULKMILTERCTL, H_REDIS_SOCK,
#	H_SINK_PORT[NAME], H_DNS_PORT, H_SEND_LOG, H_QID, H_OUT.
#	tests/lib/mkmsg.py writes messages with exact bytes.
#	tests/lib/postfix.sh (sourced here) builds the private Postfix;
#	tests/lib/smtp_driver.py is the SMTP client of h_smtp.
# DESCRIPTION
#	Sourced by every tests/integration/t_*.sh (bash). It makes a temp
#	dir $H_TMP per test and a trap that, on any exit, stops everything
#	the test started (by PID, never by name) and removes $H_TMP unless
#	BM_KEEP=1. When the milter ran, the trap also fails the test if the
#	milter died before the end, if its log holds a sanitizer report
#	("ERROR: AddressSanitizer", "runtime error:"), or if anything whose
#	command line names $H_TMP is still running.
#
#	Each check prints "ok - NAME" or "not ok - NAME"; the test exits 1
#	when any check failed, it bailed out, or the script itself ended
#	with a nonzero status (so end a test with a check), else 0. A test
#	that cannot set up calls h_fatal ("Bail out! ...").
#
#	Ports: below the ephemeral range, a block of 20 derived from $$ so
#	that tests run one after another never share one. $H_SMTP_PORT is
#	the Postfix smtpd; sinks take the next ones (h_port N is base+N).
#
#	Postfix runs as a private instance made by tests/lib/postfix.sh
#	(config, queue and data dirs in $H_TMP/postfix, chroot n
#	everywhere, log in $H_MAILLOG, queue retries within 1-2 s), accepts
#	everything from loopback, SASL clients and, thanks to relay_domains
#	= static:ALL, anyone (so XCLIENT-ed "inbound" clients can send), and
#	relays everything to the sink "main" (started on demand) or to
#	$H_RELAYHOST. smtpd_milters is the milter's socket; pass
#	"non_smtpd_milters = $H_MILTER_SOCKET" to h_postfix_start for
#	sendmail(1) tests. milter_header_checks sees only headers a milter
#	adds; route with "FILTER transport:$(h_sink_nexthop NAME)" (an empty
#	next hop would look up the recipient domain, which cannot resolve).
#
#	bulkmilter.conf (h_conf) has Socket, PidFile, Policy, LogLevel debug,
#	Umask 000, Resolver 127.0.0.1:$H_DNS_PORT and, once Redis runs, Redis
#	unix:$H_REDIS_SOCK; a setting in h_conf's lines replaces its default.
#	The milter runs as "bulkmilter -f -c $H_TMP/bulkmilter.conf", its
#	stdout and stderr appended to $H_MILTER_LOG, with detect_leaks=0
#	added to ASAN_OPTIONS (it is SIGTERM'd with work in flight).
# ENVIRONMENT
#	BM_BUILDDIR	build dir holding milter/bulkmilter (required by
#			h_milter_start)
#	BM_KEEP=1	keep $H_TMP (and print where it is)
#	BM_VERBOSE=1	print the tails of the logs even when all passed

H_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
H_SRCDIR=$(cd "$H_LIB/../.." && pwd)
H_TEST=$(basename "$0" .sh)
# shellcheck source=SCRIPTDIR/postfix.sh
. "$H_LIB/postfix.sh"

[ "$(id -u)" = 0 ] || { echo "Bail out! $H_TEST needs root (private Postfix)"; exit 1; }

H_TMP=$(mktemp -d "/tmp/bm-$H_TEST.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
chmod 755 "$H_TMP"		# Postfix daemons run as user postfix
export H_TMP

H_CHECKS=0
H_FAILED=0
H_BAILED=0
H_REDIS_PID=
H_DNS_PID=
H_REDIS_SOCK=
H_MILTER_PID=
H_MILTER_STATUS=
H_MILTER_EVER=0
H_MILTER_SOCKET=unix:$H_TMP/milter.sock
H_MILTER_LOG=$H_TMP/milter.log
H_POSTFIX_DIR=
H_POSTFIX_RUNNING=0
H_MAILLOG=$H_TMP/postfix/maillog
H_BULKMILTER=${BM_BUILDDIR:+$BM_BUILDDIR/milter/bulkmilter}
H_BULKMILTERCTL=${BM_BUILDDIR:+$BM_BUILDDIR/milter/bulkmilterctl}
H_OUT=
H_SEND_N=0
H_SEND_LOG=
H_QID=
declare -A H_SINK_PID=() H_SINK_PORT=() H_LOG_MARK=()
export H_MILTER_SOCKET H_MILTER_LOG H_MAILLOG

# ---------------------------------------------------------------- ports

# True when something listens on TCP port $1 (read from /proc, so that no
# probe connection shows up in Postfix's or the milter's log); with
# "udp", on UDP port $1.
h__port_busy() {
	pf_port_busy "$@"
}
# A block of 20 ports for this test: base = 20000 + (PID mod N) * 20,
# with N chosen so that the block stays below the ephemeral range; if
# the block's first ports are taken, the next block is used.
h__pick_ports() {
	local lo span i base p busy
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	lo=${lo:-32768}
	span=$(( (lo - 20000) / 20 - 1 ))
	[ "$span" -gt 400 ] && span=400
	[ "$span" -lt 1 ] && span=1
	for ((i = 0; i < span; i++)); do
		base=$(( 20000 + (($$ + i) % span) * 20 ))
		busy=0
		for ((p = base; p < base + 6; p++)); do
			h__port_busy "$p" && { busy=1; break; }
		done
		h__port_busy $((base + 19)) udp && busy=1
		[ "$busy" = 0 ] && { H_PORT_BASE=$base; return; }
	done
	H_PORT_BASE=$(( 20000 + ($$ % span) * 20 ))
}
h__pick_ports
H_SMTP_PORT=$H_PORT_BASE
H_DNS_PORT=$((H_PORT_BASE + 19))
H_NEXT_PORT=1
export H_SMTP_PORT H_DNS_PORT

h_port() { echo $(( H_PORT_BASE + $1 )); }

# ------------------------------------------------------- checks, output

h_diag() {
	local line
	while IFS= read -r line; do echo "# $line"; done <<<"$*"
}

h__result() {		# STATUS NAME
	H_CHECKS=$((H_CHECKS + 1))
	if [ "$1" = 0 ]; then
		echo "ok - $2"
	else
		H_FAILED=$((H_FAILED + 1))
		echo "not ok - $2"
	fi
	return "$1"
}

# h_ok NAME CMD...: ok when CMD succeeds.
h_ok() {
	local name=$1
	shift
	"$@"
	h__result $? "$name"
}

# h_assert_eq EXPECTED ACTUAL [NAME]
h_assert_eq() {
	local name=${3:-"'$2' = '$1'"}
	if [ "$1" = "$2" ]; then
		h__result 0 "$name"
	else
		h__result 1 "$name"
		h_diag "expected: '$1'" "actual:   '$2'"
		return 1
	fi
}

# h_assert_grep FILE ERE [NAME]: FILE has a line matching ERE.
h_assert_grep() {
	local name=${3:-"$(basename "$1") matches /$2/"}
	if grep -Eq -- "$2" "$1" 2>/dev/null; then
		h__result 0 "$name"
	else
		h__result 1 "$name"
		h_diag "no line of $1 matches /$2/"
		[ -f "$1" ] && h_diag "$(tail -n 15 "$1")"
		return 1
	fi
}

# h_assert_no_grep FILE ERE [NAME]: no line of FILE matches ERE.
h_assert_no_grep() {
	local name=${3:-"$(basename "$1") does not match /$2/"}
	if grep -Eq -- "$2" "$1" 2>/dev/null; then
		h__result 1 "$name"
		h_diag "$(grep -E -- "$2" "$1" | head -n 5)"
		return 1
	fi
	h__result 0 "$name"
}

h_skip() {
	H_CHECKS=$((H_CHECKS + 1))
	echo "ok - $1 # SKIP $2"
}

h_fatal() {
	echo "Bail out! $*"
	H_BAILED=1
	exit 1
}

# --------------------------------------------------------- process care

# True while PID runs (a zombie child counts as gone).
h__alive() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# h__stop PID [SECONDS [signalled]]: SIGTERM (unless already sent), wait,
# then SIGKILL. Reaps our children and leaves their exit status in
# H__STATUS.
h__stop() {
	local pid=$1 limit=$(( ${2:-10} * 10 )) i
	H__STATUS=
	[ -n "$pid" ] || return 0
	[ "${3:-}" = signalled ] || kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < limit; i++)); do
		h__alive "$pid" || break
		sleep 0.1
	done
	if h__alive "$pid"; then
		h_diag "pid $pid ignored SIGTERM for ${2:-10}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	H__STATUS=$?
}

# h__wait_for SECONDS CMD...: poll CMD every 0.1 s.
h__wait_for() {
	pf_wait_for "$@"
}

# ---------------------------------------------------------------- redis

h_redis_start() {
	[ -n "$H_REDIS_PID" ] && h__alive "$H_REDIS_PID" && return 0
	H_REDIS_SOCK=$H_TMP/redis.sock
	rm -f "$H_REDIS_SOCK"
	redis-server --port 0 --unixsocket "$H_REDIS_SOCK" --unixsocketperm 777 \
		--save '' --appendonly no --daemonize no --dir "$H_TMP" \
		--logfile "$H_TMP/redis.log" >/dev/null 2>&1 </dev/null &
	H_REDIS_PID=$!
	export H_REDIS_SOCK
	h__wait_for 10 h__redis_ready ||
		h_fatal "redis-server did not start: $(tail -n 5 "$H_TMP/redis.log")"
}
h__redis_ready() {
	[ -S "$H_REDIS_SOCK" ] && [ "$(redis-cli -s "$H_REDIS_SOCK" ping 2>/dev/null)" = PONG ]
}

# Stops Redis; H_REDIS_SOCK stays set so that h_conf keeps pointing at
# the same socket and h_redis_start brings the same one back.
h_redis_stop() {
	h__stop "$H_REDIS_PID" 10
	H_REDIS_PID=
}

# h_redis ARGS...: redis-cli against the private Redis.
h_redis() {
	redis-cli -s "$H_REDIS_SOCK" "$@"
}

# ------------------------------------------------------------------ DNS

# h_dns_start [dnsmasq options...]: a private DNS server on
# 127.0.0.1:$H_DNS_PORT (the milter's default Resolver here) that knows
# only the records given, e.g. (one shell word each; dnsmasq would keep
# quotes that reach it as part of the text)
#	'--txt-record=example.com,v=spf1 ip4:192.0.2.0/24 -all'
#	--host-record=mx.example.com,198.51.100.7
# Answers carry a TTL of 300 s, so the milter's DNS cache is exercised.
# and answers NXDOMAIN for every other name. h_milter_start starts one
# with no records when none runs, so that no test ever asks a DNS server
# off this machine. To change the records: h_dns_stop, h_dns_start.
h_dns_start() {
	[ -n "$H_DNS_PID" ] && h__alive "$H_DNS_PID" && return 0
	dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
		--port="$H_DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
		--user=root --pid-file= --log-queries --log-facility=- \
		--local-ttl=300 --local=/#/ "$@" >>"$H_TMP/dns.log" 2>&1 </dev/null &
	H_DNS_PID=$!
	h__wait_for 10 h__port_busy "$H_DNS_PORT" udp ||
		h_fatal "dnsmasq did not start: $(tail -n 5 "$H_TMP/dns.log")"
}

h_dns_stop() {
	h__stop "$H_DNS_PID" 5
	H_DNS_PID=
}

# ---------------------------------------------------------------- sinks

# h_sink_start NAME [PORT] [sink.py options]: SMTP sink storing every
# message in $H_TMP/sink-NAME/NNNNNN.eml (+ .env); its port is in
# H_SINK_PORT[NAME].
h_sink_start() {
	local name=$1 port=${2:-} dir=$H_TMP/sink-$1
	shift $(( $# >= 2 ? 2 : 1 ))
	if [ -z "$port" ]; then
		port=$(h_port "$H_NEXT_PORT")
		H_NEXT_PORT=$((H_NEXT_PORT + 1))
	fi
	mkdir -p "$dir"
	rm -f "$dir/.ready"
	/usr/bin/python3 "$H_LIB/sink.py" --port "$port" --dir "$dir" "$@" \
		>>"$H_TMP/sink-$name.log" 2>&1 </dev/null &
	H_SINK_PID[$name]=$!
	H_SINK_PORT[$name]=$port
	h__wait_for 10 test -f "$dir/.ready" ||
		h_fatal "sink $name on port $port did not start: $(cat "$H_TMP/sink-$name.log")"
}

# h_sink_nexthop NAME: "[127.0.0.1]:PORT", for a FILTER or transport_maps
# action (FILTER transport: with an empty next hop would look up the
# recipient's domain, which cannot resolve here).
h_sink_nexthop() {
	echo "[127.0.0.1]:${H_SINK_PORT[$1]}"
}

h_sink_stop() {
	h__stop "${H_SINK_PID[$1]}" 5
	unset "H_SINK_PID[$1]"
}

# The sink's messages, oldest first.
h_sink_files() {
	local f
	for f in "$H_TMP/sink-$1"/*.eml; do
		[ -e "$f" ] && echo "$f"
	done
}

h_sink_count() {
	h_sink_files "$1" | wc -l
}

# h_sink_grep NAME FIXED-STRING: the sink's messages containing it.
h_sink_grep() {
	local f
	h_sink_files "$1" | while IFS= read -r f; do
		grep -qF -- "$2" "$f" && echo "$f"
	done
}

# h_wait_sink NAME COUNT [TIMEOUT]: wait until the sink holds at least
# COUNT messages.
h_wait_sink() {
	local n
	h__wait_for "${3:-30}" h__sink_has "$1" "$2" && return 0
	n=$(h_sink_count "$1")
	h_diag "sink $1 holds $n messages, expected $2 (after ${3:-30}s)"
	return 1
}
# h_wait_sink_grep NAME FIXED-STRING [TIMEOUT]: wait for a message that
# contains FIXED-STRING (e.g. its Message-ID); prints its file.
h_wait_sink_grep() {
	h__wait_for "${3:-30}" h__sink_has_grep "$1" "$2" &&
		{ h_sink_grep "$1" "$2" | head -n 1; return 0; }
	h_diag "sink $1 has no message containing '$2' (after ${3:-30}s)"
	return 1
}
h__sink_has_grep() {
	[ -n "$(h_sink_grep "$1" "$2")" ]
}

h__sink_has() {
	[ "$(h_sink_count "$1")" -ge "$2" ]
}

# -------------------------------------------------------------- postfix

# h_postfix_master 'LINE'...: extra master.cf lines (a second transport,
# a second smtpd); before h_postfix_start, or later (then reloads).
h_postfix_master() {
	printf '%s\n' "$@" >>"$H_TMP/master.extra"
	if [ "$H_POSTFIX_RUNNING" = 1 ]; then
		printf '%s\n' "$@" >>"$H_POSTFIX_DIR/master.cf"
		h_postfix_reload
	fi
}

# h_postconf 'name = value'...: change main.cf of the running instance
# and reload it.
h_postconf() {
	pf_postconf "$H_TMP/postfix" "$@" 2>>"$H_TMP/postfix.err" ||
		h_fatal "$(tail -n 1 "$H_TMP/postfix.err")"
	h_postfix_reload
}

h_postfix_reload() {
	pf_reload "$H_TMP/postfix" 2>>"$H_TMP/postfix.err" || h_fatal "postfix reload failed"
}

# h_postfix_start ['name = value'...]: build (tests/lib/postfix.sh) and
# start the private instance.
h_postfix_start() {
	local root=$H_TMP/postfix relay line args=()
	H_POSTFIX_DIR=$root/etc
	export H_POSTFIX_DIR
	if [ -n "${H_RELAYHOST:-}" ]; then
		relay=$H_RELAYHOST
	else
		[ -n "${H_SINK_PID[main]:-}" ] || h_sink_start main
		relay="[127.0.0.1]:${H_SINK_PORT[main]}"
	fi
	if [ -f "$H_TMP/master.extra" ]; then
		while IFS= read -r line; do args+=(--master "$line"); done <"$H_TMP/master.extra"
	fi
	for line in "$@"; do args+=(--main "$line"); done
	pf_build "$root" --smtpd "127.0.0.1:$H_SMTP_PORT" --relayhost "$relay" \
		--milters "$H_MILTER_SOCKET" --hostname bm-test.localdomain \
		--syslog-name bm-postfix --log-prefix "$H_TMP" --ipv6 --relay-anyone \
		--xclient --sasl --quick-retry --no-throttle --pickup-wakeup 1 \
		"${args[@]}" 2>>"$H_TMP/postfix.err" ||
		h_fatal "building the private Postfix failed: $(tail -n 3 "$H_TMP/postfix.err")"
	if ! pf_start "$root" 2>>"$H_TMP/postfix.err"; then
		h_diag "$(tail -n 30 "$H_TMP/postfix.err")"
		h_fatal "postfix -c $H_POSTFIX_DIR start failed"
	fi
	H_POSTFIX_RUNNING=1
}

h_postfix_stop() {
	[ "$H_POSTFIX_RUNNING" = 1 ] || return 0
	pf_stop "$H_TMP/postfix" 2>>"$H_TMP/postfix.err" ||
		h_diag "$(tail -n 1 "$H_TMP/postfix.err")"
	H_POSTFIX_RUNNING=0
}

# h_sasl_user USER PASS: a SASL account. "alice@example.com" logs in as
# that (realm example.com); a bare "alice" lives in the realm Postfix
# uses by default, its myhostname.
h_sasl_user() {
	pf_sasl_user "$H_TMP/postfix" "$1" "$2" bm-test.localdomain 2>>"$H_TMP/postfix.err" ||
		h_fatal "$(tail -n 1 "$H_TMP/postfix.err")"
}

h_postqueue_json() {
	postqueue -c "$H_POSTFIX_DIR" -j
}

# Number of messages in the Postfix queue (all queues, hold included).
h_queue_count() {
	h_postqueue_json | grep -c '"queue_id"'
}

# h_sendmail [sendmail options...] < MESSAGE: local submission through
# pickup (non_smtpd_milters).
h_sendmail() {
	/usr/sbin/sendmail -C "$H_POSTFIX_DIR" "$@"
}

# ------------------------------------------------------- the milter

# h_policy ['LINE'...]: write the policy file (the lines, or stdin).
h_policy() {
	if [ $# -gt 0 ]; then
		printf '%s\n' "$@" >"$H_TMP/bulkmilter.policy"
	else
		cat >"$H_TMP/bulkmilter.policy"
	fi
}

# h_conf ['LINE'...]: write bulkmilter.conf: the harness defaults, except
# those the extra lines (arguments, or stdin) name, then the extra lines.
h_conf() {
	local extra name line file=$H_TMP/bulkmilter.conf
	if [ $# -gt 0 ]; then extra=$(printf '%s\n' "$@"); else extra=$(cat); fi
	declare -A named=()
	while read -r name _; do
		[ -n "$name" ] && [ "${name:0:1}" != "#" ] && named[${name,,}]=1
	done <<<"$extra"
	{
		echo "# written by tests/lib/harness.sh"
		while read -r name line; do
			[ -n "$name" ] || continue
			[ -n "${named[${name,,}]:-}" ] || echo "$name $line"
		done <<EOF
Socket $H_MILTER_SOCKET
PidFile $H_TMP/milter.pid
Policy $H_TMP/bulkmilter.policy
LogLevel debug
Umask 000
Resolver 127.0.0.1:$H_DNS_PORT
${H_REDIS_SOCK:+Redis unix:$H_REDIS_SOCK}
EOF
		printf '%s\n' "$extra"
	} >"$file"
}

h__need_builddir() {
	[ -n "${BM_BUILDDIR:-}" ] || h_fatal "BM_BUILDDIR is not set (run via make check-integration)"
	H_BULKMILTER=$BM_BUILDDIR/milter/bulkmilter
	H_BULKMILTERCTL=$BM_BUILDDIR/milter/bulkmilterctl
	[ -x "$H_BULKMILTER" ] || h_fatal "$H_BULKMILTER is missing: build first"
}

# The milter runs with leak checks off: it is SIGTERM'd mid-flight.
h__milter_asan() {
	echo "${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
}

# h_milter_start [ARGS...]: bulkmilter -f -c $H_TMP/bulkmilter.conf ARGS,
# stderr appended to $H_MILTER_LOG; waits for its socket.
h_milter_start() {
	local sock=${H_MILTER_SOCKET#unix:}
	h__need_builddir
	[ -f "$H_TMP/bulkmilter.conf" ] || h_conf </dev/null
	[ -n "$H_DNS_PID" ] || h_dns_start
	[ -f "$H_TMP/bulkmilter.policy" ] || h_policy "$(printf '%s\n' \
		'class standard {' '    account sasl sender' '}' 'assign outbound standard')"
	rm -f "$sock"
	echo "--- h_milter_start $(date +%T.%N)" >>"$H_MILTER_LOG"
	# A simple command, so that $! is the milter itself, not a subshell.
	ASAN_OPTIONS=$(h__milter_asan) "$H_BULKMILTER" -f -c "$H_TMP/bulkmilter.conf" "$@" \
		>>"$H_MILTER_LOG" 2>&1 </dev/null &
	H_MILTER_PID=$!
	H_MILTER_EVER=1
	H_MILTER_STATUS=
	if ! h__wait_for 20 h__milter_up "$sock"; then
		h_diag "$(tail -n 20 "$H_MILTER_LOG")"
		h_fatal "bulkmilter did not open $sock"
	fi
}
h__milter_up() {
	h__alive "$H_MILTER_PID" || return 1
	[ -S "$1" ]
}

# h_milter_stop: SIGTERM, wait; exit status in H_MILTER_STATUS.
h_milter_stop() {
	[ -n "$H_MILTER_PID" ] || return 0
	h__stop "$H_MILTER_PID" 15 "${1:-}"
	H_MILTER_STATUS=$H__STATUS
	H_MILTER_PID=
}

h_milter_hup() {
	kill -HUP "$H_MILTER_PID"
}

# h_milter_run ARGS...: run bulkmilter in the foreground (e.g. -n, -V);
# output in H_OUT, status returned.
h_milter_run() {
	local rc
	h__need_builddir
	H_OUT=$(ASAN_OPTIONS=$(h__milter_asan) "$H_BULKMILTER" "$@" 2>&1 </dev/null)
	rc=$?
	printf '%s\n' "$H_OUT" >>"$H_TMP/milter-run.log"
	return $rc
}

# h_milter_line QID: the milter's decision line(s) for that queue ID;
# waits up to 5 s for one to appear.
h_milter_line() {
	h__wait_for 5 grep -Eq -- "$1: .*direction=" "$H_MILTER_LOG" ||
		h_diag "no decision line for $1 in the milter log"
	grep -E -- "$1: .*direction=" "$H_MILTER_LOG"
}

# h_milter_field QID FIELD: the value of FIELD=value in that line.
h_milter_field() {
	h_milter_line "$1" | head -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# h_headers FILE: the header fields of a stored message, one a line,
# unfolded, without CR. h_header FILE NAME: the values of field NAME (any
# case), one a line, leading white space removed.
h_headers() {
	LC_ALL=C awk '
		{ sub(/\r$/, "") }
		/^$/ { exit }
		/^[ \t]/ { sub(/^[ \t]+/, ""); cur = cur " " $0; next }
		{ if (cur != "") print cur; cur = $0 }
		END { if (cur != "") print cur }' "$1"
}

h_header() {
	h_headers "$1" | LC_ALL=C awk -v name="$2" '
		BEGIN { n = tolower(name) ":" }
		tolower(substr($0, 1, length(n))) == n {
			v = substr($0, length(n) + 1); sub(/^[ \t]+/, "", v); print v }'
}

# ----------------------------------------------------------------- SMTP

# h_send [--ip ADDR] [--sasl USER PASS] [--raw FILE] [swaks options...]:
# one SMTP session with the private Postfix. Defaults --from
# alice@example.com --to bob@example.net unless given (several
# recipients: --to a@x,b@y). --ip presents ADDR through XCLIENT (IPv6
# addresses get the IPV6: prefix). --raw sends FILE (CRLF lines, ending
# in CRLF) as DATA byte for byte; swaks's own --data @FILE adds an empty
# line at the end and rebuilds the header. The transcript is in
# $H_SEND_LOG, the queue ID of the accepted message in $H_QID (empty if
# none). Returns swaks's status.
h_send() {
	local args=() have_from=0 have_to=0 rc addr raw id
	# Unique also for h_send in parallel subshells (h_parallel).
	H_SEND_N=$((H_SEND_N + 1))
	id=$(printf %03d "$H_SEND_N")
	[ "$BASHPID" = $$ ] || id=$id-$BASHPID
	while [ $# -gt 0 ]; do
		case $1 in
		--ip)
			addr=$2
			case $addr in
			*:*) [ "${addr:0:5}" = IPV6: ] || addr=IPV6:$addr ;;
			esac
			args+=(--xclient-addr "$addr")
			shift 2 ;;
		--sasl)
			args+=(--auth PLAIN --auth-user "$2" --auth-password "$3")
			shift 3 ;;
		--raw)
			# Exact bytes: swaks would add an empty line and
			# rewrite the header, so hand it DATA ready to send.
			raw=$H_TMP/send-$id.smtp
			LC_ALL=C sed 's/^\./../' "$2" >"$raw" && printf . >>"$raw"
			args+=(--no-data-fixup --data "@$raw")
			shift 2 ;;
		-f|--from) have_from=1; args+=("$1" "$2"); shift 2 ;;
		-t|--to) have_to=1; args+=("$1" "$2"); shift 2 ;;
		*) args+=("$1"); shift ;;
		esac
	done
	[ "$have_from" = 1 ] || args+=(--from alice@example.com)
	[ "$have_to" = 1 ] || args+=(--to bob@example.net)
	H_SEND_LOG=$H_TMP/send-$id.log
	swaks --server 127.0.0.1 --port "$H_SMTP_PORT" --helo client.example \
		--timeout 60 "${args[@]}" >"$H_SEND_LOG" 2>&1 </dev/null
	rc=$?
	H_QID=$(sed -n 's/^<- *250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$H_SEND_LOG" | tail -n 1)
	return $rc
}

# h_smtp [smtp_driver.py options...]: tests/lib/smtp_driver.py against
# the private Postfix (--port $H_SMTP_PORT unless another --port is
# given: the last one counts), its reply lines on stdout; see its header.
h_smtp() {
	/usr/bin/python3 "$H_LIB/smtp_driver.py" --port "$H_SMTP_PORT" "$@" </dev/null
}

# h_parallel COUNT CMD...: run "CMD... I" for I = 1..COUNT at once, in
# subshells, and wait for just those (a bare "wait" would wait for the
# milter, Redis and the sinks too, forever). Returns 1 when any failed.
# Each h_send in them leaves its transcript in $H_TMP/send-*.log.
h_parallel() {
	local n=$1 i pids=() rc=0
	shift
	for ((i = 1; i <= n; i++)); do
		"$@" "$i" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || rc=1
	done
	return $rc
}

# --------------------------------------------------------------- logs

# h_log_mark FILE: later h_wait_log FILE only looks past this point.
h_log_mark() {
	H_LOG_MARK[$1]=$(stat -c %s "$1" 2>/dev/null || echo 0)
}

h__log_since_mark() {
	tail -c +"$(( ${H_LOG_MARK[$1]:-0} + 1 ))" "$1" 2>/dev/null
}

h__log_has() {
	h__log_since_mark "$1" | grep -Eq -- "$2"
}

# h_wait_log FILE ERE [TIMEOUT]: wait until FILE (past its mark) has a
# line matching ERE.
h_wait_log() {
	h__wait_for "${3:-10}" h__log_has "$1" "$2" && return 0
	h_diag "no line matching /$2/ in $1 after ${3:-10}s"
	return 1
}

# ----------------------------------------------------------- the end

h__check_crash() {
	if [ -n "$H_MILTER_PID" ] && ! h__alive "$H_MILTER_PID"; then
		wait "$H_MILTER_PID" 2>/dev/null
		h__result 1 "bulkmilter is still running at the end (it exited with status $?)"
		H_MILTER_PID=
	fi
}

h__check_sanitizer() {
	local re='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'
	[ -f "$H_MILTER_LOG" ] || return 0
	if grep -Eq "$re" "$H_MILTER_LOG"; then
		h__result 1 "no sanitizer report in the milter log"
		h_diag "$(grep -E -A 15 "$re" "$H_MILTER_LOG" | head -n 40)"
	fi
}

# h_detach: leave everything running when the script exits (quickstart
# --keep); writes $H_TMP/stop, which stops it all and removes $H_TMP.
h_detach() {
	local name
	{
		echo '#!/bin/bash'
		echo "# stops what $0 left running in $H_TMP"
		[ -n "$H_MILTER_PID" ] && echo "kill -TERM $H_MILTER_PID 2>/dev/null"
		[ "$H_POSTFIX_RUNNING" = 1 ] && echo "postfix -c '$H_POSTFIX_DIR' stop"
		for name in "${!H_SINK_PID[@]}"; do
			echo "kill -TERM ${H_SINK_PID[$name]} 2>/dev/null"
		done
		[ -n "$H_REDIS_PID" ] && echo "kill -TERM $H_REDIS_PID 2>/dev/null"
		[ -n "$H_DNS_PID" ] && echo "kill -TERM $H_DNS_PID 2>/dev/null"
		[ -n "$H_MILTER_PID" ] &&
			echo "for i in \$(seq 100); do kill -0 $H_MILTER_PID 2>/dev/null || break; sleep 0.2; done"
		echo "sleep 1"
		echo "rm -rf '$H_TMP'"
	} >"$H_TMP/stop"
	chmod 755 "$H_TMP/stop"
	H_DETACHED=1
}
H_DETACHED=0

# PIDs of processes whose command line names $H_TMP (the milter, Redis,
# the sinks): none may outlive the test.
h__leftovers() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$H_TMP/" &&
			{ f=${f#/proc/}; echo "${f%/cmdline}"; }
	done
}
h__no_leftovers() {
	[ -z "$(h__leftovers)" ]
}

h__exit() {
	local rc=$? f
	trap - EXIT
	trap '' PIPE		# a closed stdout must not stop the cleanup
	if [ "$H_DETACHED" = 1 ]; then
		exit "$rc"
	fi
	[ "$H_MILTER_EVER" = 1 ] && h__check_crash
	# Everything shuts down at once: the milter takes a few seconds.
	[ -n "$H_MILTER_PID" ] && kill -TERM "$H_MILTER_PID" 2>/dev/null
	h_postfix_stop
	h_milter_stop signalled
	if [ "$H_MILTER_EVER" = 1 ] && [ -n "$H_MILTER_STATUS" ] &&
	   [ "$H_MILTER_STATUS" != 0 ]; then
		h_diag "bulkmilter exited with status $H_MILTER_STATUS on SIGTERM"
	fi
	for f in "${!H_SINK_PID[@]}"; do h_sink_stop "$f"; done
	h_redis_stop
	h_dns_stop
	[ "$H_MILTER_EVER" = 1 ] && h__check_sanitizer
	if ! h__wait_for 5 h__no_leftovers; then
		h__result 1 "nothing the test started is left running"
		h_diag "$(for f in $(h__leftovers); do tr '\0' ' ' 2>/dev/null <"/proc/$f/cmdline"; echo "(pid $f)"; done)"
	fi
	[ "$rc" != 0 ] && [ "$H_BAILED" = 0 ] && [ "$H_FAILED" = 0 ] &&
		echo "not ok - $H_TEST ended with status $rc"
	if [ "$rc" != 0 ] || [ "$H_FAILED" != 0 ] || [ "${BM_VERBOSE:-0}" = 1 ]; then
		for f in "$H_MILTER_LOG" "$H_MAILLOG"; do
			[ -s "$f" ] && { echo "# --- tail of $f"; tail -n 25 "$f" | sed 's/^/#   /'; }
		done
	fi
	[ "$H_CHECKS" -gt 0 ] && echo "# $H_TEST: $H_CHECKS checks, $H_FAILED failed"
	if [ "${BM_KEEP:-0}" = 1 ]; then
		echo "# kept $H_TMP"
	else
		rm -rf "$H_TMP"
	fi
	if [ "$rc" != 0 ] || [ "$H_FAILED" != 0 ]; then
		exit 1
	fi
	exit 0
}
trap h__exit EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
