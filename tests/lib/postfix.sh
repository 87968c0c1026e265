# shellcheck shell=bash
#
# NAME
#	postfix.sh - private Postfix instances on loopback, for the
#	integration tests, scripts/quickstart and scripts/bench
# SYNOPSIS
#	. tests/lib/postfix.sh
#
#	pf_build ROOT --smtpd ADDR:PORT --relayhost NEXTHOP [options]
#	pf_start ROOT; pf_stop ROOT; pf_reload ROOT
#	pf_postconf ROOT 'name = value'...
#	pf_sasl_user ROOT USER PASS [REALM]
#	pf_port_busy PORT [udp]; pf_wait_for SECONDS CMD...
# DESCRIPTION
#	The one place that writes a private Postfix: everything under ROOT
#	(config in ROOT/etc, queue in ROOT/spool, data in ROOT/data, log in
#	ROOT/maillog through postlogd), "chroot n" everywhere, listening on
#	loopback only, no DNS (smtp_host_lookup = native), no TLS, relaying
#	everything to one next hop. Sourced by tests/lib/harness.sh (the
#	integration tests and scripts/quickstart) and by scripts/bench.
#
#	pf_build writes ROOT/etc/main.cf and master.cf and makes the queue
#	directories (what "postfix start" would spend a second or two
#	checking). Options:
#	  --smtpd ADDR:PORT	the smtpd listener (required)
#	  --relayhost NEXTHOP	where all mail goes, e.g. "[127.0.0.1]:2525"
#				(required)
#	  --milters SOCKETS	smtpd_milters (may be empty); in any case
#				milter_default_action = tempfail, protocol 6
#	  --milter-header-checks MAP
#				milter_header_checks (see the headers a
#				milter adds, e.g. to WARN on them)
#	  --hostname NAME	myhostname (default bm-test.localdomain)
#	  --syslog-name NAME	syslog_name (default bm-postfix)
#	  --log-prefix DIR	maillog_file_prefixes (default ROOT): a
#				directory above ROOT/maillog
#	  --ipv6		inet_protocols = all and [::1]/128 in
#				mynetworks when the machine has ::1
#				(default: IPv4 only)
#	  --relay-anyone	relay_domains = static:ALL: any client may
#				relay (XCLIENT-ed "outside" clients too);
#				otherwise only mynetworks (and SASL)
#	  --xclient		XCLIENT from 127.0.0.0/8
#	  --sasl		SASL (cyrus, sasldb ROOT/etc/sasl/sasldb2,
#				PLAIN and LOGIN; see pf_sasl_user)
#	  --quick-retry		deferred mail retried within 1-2 s
#	  --no-throttle		no in_flow_delay, no error sleep, error
#				limits of 1000
#	  --pickup-wakeup N	pickup's wakeup time (default 60, Postfix's)
#	  --main 'name = value'	more main.cf, after the rest (postconf -e,
#				so it replaces a setting made above); repeat
#	  --master 'LINE'	one more master.cf line; repeat
#	Without options, main.cf has only what any private instance needs;
#	each option adds its lines at a fixed place, so that the same
#	options always make the same files.
#
#	pf_start runs the master (master -w returns once it runs) and waits
#	until every inet listener of master.cf accepts connections.
#	pf_stop sends the master SIGTERM and waits; after 10 s, SIGKILL
#	(and status 1).
#	pf_reload is "postfix reload" plus half a second for the daemons.
#	pf_postconf changes main.cf (postconf -e); reload to apply.
#	pf_sasl_user adds a sasldb account (REALM: the part after '@', else
#	the one given, else none).
#
#	pf_port_busy is true when something listens on TCP port PORT (or
#	UDP, with "udp"), read from /proc so that no probe connection shows
#	up in a log. pf_wait_for polls CMD every 0.1 s for SECONDS.
# DIAGNOSTICS
#	Each function returns 0 on success; on failure 1, with what went
#	wrong (and the tail of the maillog) on stderr.

pf_port_busy() {
	local files="/proc/net/tcp /proc/net/tcp6" state=0A
	[ "${2:-}" = udp ] && files="/proc/net/udp /proc/net/udp6" state=07
	# shellcheck disable=SC2086
	awk -v port="$(printf ':%04X' "$1")" -v state="$state" '
		$4 == state && toupper(substr($2, length($2) - 4)) == port {found = 1}
		END {exit !found}' $files 2>/dev/null
}

pf_wait_for() {
	local limit=$(( $1 * 10 )) i
	shift
	for ((i = 0; i < limit; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

pf__has_ipv6() {
	grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null
}

pf_build() {
	local root=$1 conf=$1/etc smtpd='' relay='' milters='' header_checks=''
	local hostname=bm-test.localdomain name=bm-postfix prefix=$1 wakeup=60
	local ipv6=0 anyone=0 xclient=0 sasl=0 quick=0 nothrottle=0
	local protocols=ipv4 networks=127.0.0.0/8 restrictions line d
	local main=() master=()
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--smtpd) smtpd=$2; shift 2 ;;
		--relayhost) relay=$2; shift 2 ;;
		--milters) milters=$2; shift 2 ;;
		--milter-header-checks) header_checks=$2; shift 2 ;;
		--hostname) hostname=$2; shift 2 ;;
		--syslog-name) name=$2; shift 2 ;;
		--log-prefix) prefix=$2; shift 2 ;;
		--pickup-wakeup) wakeup=$2; shift 2 ;;
		--ipv6) ipv6=1; shift ;;
		--relay-anyone) anyone=1; shift ;;
		--xclient) xclient=1; shift ;;
		--sasl) sasl=1; shift ;;
		--quick-retry) quick=1; shift ;;
		--no-throttle) nothrottle=1; shift ;;
		--main) main+=("$2"); shift 2 ;;
		--master) master+=("$2"); shift 2 ;;
		*) echo "pf_build: unknown option $1" >&2; return 1 ;;
		esac
	done
	if [ -z "$smtpd" ] || [ -z "$relay" ]; then
		echo "pf_build: --smtpd and --relayhost are required" >&2
		return 1
	fi
	if [ "$ipv6" = 1 ] && pf__has_ipv6; then
		protocols=all networks="127.0.0.0/8 [::1]/128"
	fi
	restrictions=permit_mynetworks
	[ "$sasl" = 1 ] && restrictions="$restrictions, permit_sasl_authenticated"
	if [ "$anyone" = 1 ]; then
		restrictions="$restrictions, reject_unauth_destination"
	else
		restrictions="$restrictions, reject"
	fi

	mkdir -p "$conf" "$root/data" "$root/spool" || return 1
	chown postfix "$root/data" || return 1
	{
		echo "# Private instance made by tests/lib/postfix.sh (pf_build)."
		cat <<EOF
compatibility_level = 3.6
queue_directory = $root/spool
data_directory = $root/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $root/maillog
maillog_file_prefixes = $prefix
syslog_name = $name
myhostname = $hostname
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = $protocols
mynetworks = $networks
relayhost = $relay
EOF
		[ "$anyone" = 1 ] && echo "relay_domains = static:ALL"
		echo "smtpd_relay_restrictions = $restrictions"
		[ "$xclient" = 1 ] && echo "smtpd_authorized_xclient_hosts = 127.0.0.0/8"
		cat <<EOF
smtpd_peername_lookup = no
smtp_host_lookup = native
disable_dns_lookups = yes
smtpd_milters = $milters
milter_default_action = tempfail
milter_protocol = 6
EOF
		[ -n "$header_checks" ] && echo "milter_header_checks = $header_checks"
		[ "$sasl" = 1 ] && cat <<EOF
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_security_options = noanonymous
EOF
		cat <<EOF
smtpd_tls_security_level = none
smtp_tls_security_level = none
EOF
		[ "$quick" = 1 ] && cat <<EOF
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
		[ "$nothrottle" = 1 ] && cat <<EOF
in_flow_delay = 0s
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
EOF
		cat <<EOF
delay_warning_time = 0h
biff = no
readme_directory = no
EOF
	} >"$conf/main.cf" || return 1
	{
		echo "# service type private unpriv chroot wakeup maxproc command"
		echo "$smtpd inet n - n - - smtpd"
		printf 'pickup    unix  n       -       n       %-8s1       pickup\n' "$wakeup"
		cat <<EOF
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
		if [ ${#master[@]} -gt 0 ]; then printf '%s\n' "${master[@]}"; fi
	} >"$conf/master.cf" || return 1
	for line in "${main[@]}"; do
		postconf -c "$conf" -e "$line" ||
			{ echo "pf_build: postconf -e '$line' failed" >&2; return 1; }
	done
	if [ "$sasl" = 1 ]; then
		mkdir -p "$conf/sasl" || return 1
		cat >"$conf/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $conf/sasl/sasldb2
mech_list: PLAIN LOGIN
EOF
	fi
	# The queue layout of postfix-files.
	install -d -o root -g root -m 755 "$root/spool" "$root/spool/pid" || return 1
	for d in active bounce corrupt defer deferred flush hold incoming \
		 private saved trace; do
		install -d -o postfix -g root -m 700 "$root/spool/$d" || return 1
	done
	install -d -o postfix -g postdrop -m 730 "$root/spool/maildrop" &&
		install -d -o postfix -g postdrop -m 710 "$root/spool/public"
}

# The TCP ports of master.cf's inet services ("ADDR:PORT inet ...").
pf__inet_ports() {
	awk '$2 == "inet" && $1 ~ /:[0-9]+$/ {n = split($1, a, ":"); print a[n]}' "$1/etc/master.cf"
}

pf_start() {
	local root=$1 conf=$1/etc port
	# master -w returns once the daemon runs. On failure "postfix start"
	# says why (it prints fatal errors only to a tty or syslog: script).
	if ! /usr/lib/postfix/sbin/master -c "$conf" -w >"$root/start.out" 2>&1 &&
	   ! script -qec "postfix -c '$conf' start" /dev/null >>"$root/start.out" 2>&1; then
		{
			echo "pf_start: postfix -c $conf start failed:"
			cat "$root/start.out"
			[ -f "$root/maillog" ] && tail -n 20 "$root/maillog"
		} >&2
		return 1
	fi
	for port in $(pf__inet_ports "$root"); do
		pf_wait_for 10 pf_port_busy "$port" ||
			{ echo "pf_start: postfix does not listen on port $port" >&2; return 1; }
	done
}

pf_stop() {
	local root=$1 pid i
	pid=$(tr -d ' \n' <"$root/spool/pid/master.pid" 2>/dev/null)
	# What "postfix stop" does, without its second of checks.
	if [ -z "$pid" ]; then
		postfix -c "$root/etc" stop >/dev/null 2>&1
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "pf_stop: postfix master $pid still running after 10 s: SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null
	return 1
}

pf_reload() {
	postfix -c "$1/etc" reload >/dev/null 2>&1 ||
		{ echo "pf_reload: postfix -c $1/etc reload failed" >&2; return 1; }
	sleep 0.5
}

pf_postconf() {
	local conf=$1/etc line
	shift
	for line in "$@"; do
		postconf -c "$conf" -e "$line" ||
			{ echo "pf_postconf: postconf -e '$line' failed" >&2; return 1; }
	done
}

pf_sasl_user() {
	local dir=$1/etc/sasl realm=()
	case $2 in
	*@*) ;;
	*) [ -n "${4:-}" ] && realm=(-u "$4") ;;
	esac
	mkdir -p "$dir" || return 1
	printf '%s' "$3" | saslpasswd2 -f "$dir/sasldb2" -p -c "${realm[@]}" "$2" ||
		{ echo "pf_sasl_user: saslpasswd2 $2 failed" >&2; return 1; }
	chgrp postfix "$dir/sasldb2" && chmod 640 "$dir/sasldb2"
}
