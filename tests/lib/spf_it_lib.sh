# shellcheck shell=bash disable=SC2034
# (SPF_* variables are set here for the tests to read)
#
# NAME
#	spf_it_lib.sh - DNS and SMTP helpers for the t_spf_* tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/spf_it_lib.sh"
#
#	spf_dns_start [dnsmasq options...]; spf_dns_queries TYPE NAME
#	spf_blackhole_start PORT; spf_blackhole_count; spf_blackhole_stop
#	spf_smtp [smtp_driver.py options...]; spf_send [options...]
#	spf_sink_file QID (sets SPF_FILE); spf_headers FILE; spf_header FILE NAME
#	spf_milter_reload; spf_helper_pids; spf_tag TEXT
# DESCRIPTION
#	spf_dns_start is h_dns_start (dnsmasq on 127.0.0.1:$H_DNS_PORT,
#	the milter's Resolver, NXDOMAIN for every name it has no record
#	for) with local answers given a TTL of 300 s: dnsmasq's default of
#	0 would defeat the milter's DNS cache. Records go on the command
#	line without quotes (--txt-record=NAME,v=spf1 -all): dnsmasq keeps
#	quotes given there as part of the text. spf_dns_queries counts the
#	queries of TYPE for NAME in the server's query log.
#
#	spf_blackhole_start runs a UDP server on 127.0.0.1:PORT that reads
#	queries and never answers; spf_blackhole_count says how many it got.
#
#	spf_smtp runs tests/lib/smtp_driver.py (h_smtp) against the private
#	Postfix, its sessions one after another (--serial), Message-IDs
#	<TAG.S.M@spf-it.test>, and prints one line per message (also in
#	$SPF_SMTP_OUT), then the driver's complaints:
#
#	    SEQ CODE QID MS TEXT
#
#	SEQ counts from 1 over all sessions; CODE, QID ("-" when not
#	queued), MS and TEXT are those of the driver's "ms" line. spf_send
#	does that for one message and sets SPF_CODE, SPF_QID ("" when not
#	queued), SPF_MS, SPF_TEXT.
#
#	spf_sink_file sets SPF_FILE to the sink file of the message Postfix
#	queued as QID (found by the "id QID" of its Received header),
#	waiting up to 20 s for it; it fails, SPF_FILE empty, when none
#	arrives.
#	spf_headers prints FILE's header fields in order, one a line, folding
#	undone (each CRLF and the white space after it become one space);
#	spf_header prints the values of the fields called NAME.
#
#	spf_milter_reload sends the milter SIGHUP and waits for its
#	"reloaded" log line. spf_helper_pids prints the PIDs of its SPF
#	helpers: the processes whose argv[0] is "bulkmilter-spf" among the
#	children of the milter and of its spawner (its child that forks
#	them). spf_tag makes TEXT fit for a Message-ID.
#
#	Sourcing it installs an EXIT trap that stops the blackhole (by PID)
#	and then runs the harness's own.

# The query log of h_dns_start's dnsmasq (--log-queries).
SPF_DNS_LOG=$H_TMP/dns.log
SPF_BH_PID=
SPF_BH_COUNT=$H_TMP/blackhole.count
SPF_SMTP_N=0

spf__exit() {
	local rc=$?
	trap - EXIT
	spf_blackhole_stop
	(exit "$rc")
	h__exit
}
trap spf__exit EXIT

spf_dns_start() {
	h_dns_start "$@"
	[ -f "$SPF_DNS_LOG" ] || h_fatal "no DNS query log at $SPF_DNS_LOG (harness changed?)"
}

# dnsmasq logs "query[TXT] NAME from ADDR".
spf_dns_queries() {
	grep -cF "query[$1] $2 from " "$SPF_DNS_LOG"
}

spf_blackhole_start() {
	rm -f "$SPF_BH_COUNT"
	/usr/bin/python3 "$H_LIB/spf_it_blackhole.py" "$1" "$SPF_BH_COUNT" \
		2>>"$H_TMP/blackhole.err" </dev/null &
	SPF_BH_PID=$!
	h__wait_for 10 test -f "$SPF_BH_COUNT" ||
		h_fatal "blackhole did not start on port $1: $(cat "$H_TMP/blackhole.err")"
}

spf_blackhole_count() {
	cat "$SPF_BH_COUNT" 2>/dev/null || echo 0
}

spf_blackhole_stop() {
	[ -n "$SPF_BH_PID" ] || return 0
	h__stop "$SPF_BH_PID" 5
	SPF_BH_PID=
}

spf_smtp() {
	local raw
	SPF_SMTP_N=$((SPF_SMTP_N + 1))
	SPF_SMTP_OUT=$H_TMP/smtp-$(printf %03d "$SPF_SMTP_N").out
	raw=${SPF_SMTP_OUT%.out}.replies
	h_smtp --serial --domain spf-it.test --tag spf-it "$@" >"$raw" 2>"$raw.err"
	{
		# "S M ms MS CODE QID TEXT" -> "SEQ CODE QID MS TEXT"
		awk '$3 == "ms" {
			text = $0
			sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", text)
			if (NF == 6) text = ""
			print ++seq, $5, $6, $4, text
		}' "$raw"
		cat "$raw.err"
	} >"$SPF_SMTP_OUT"
	cat "$SPF_SMTP_OUT"
}

spf_send() {
	local line _seq
	line=$(spf_smtp --messages 1 "$@" | tail -n 1)
	read -r _seq SPF_CODE SPF_QID SPF_MS SPF_TEXT <<<"$line"
	[ "$SPF_QID" = - ] && SPF_QID=
	case $SPF_CODE in
	[0-9][0-9][0-9]) ;;
	*)
		SPF_CODE='' SPF_QID='' SPF_MS='' SPF_TEXT=''
		h_diag "smtp_driver.py: $line" ;;
	esac
}

spf_sink_file() {
	SPF_FILE=
	if [ -z "$1" ] || ! h_wait_sink_grep main " id $1" 20 >/dev/null; then
		h_diag "no message queued as '$1' arrived at the sink"
		return 1
	fi
	SPF_FILE=$(h_sink_grep main " id $1" | head -n 1)
}

spf_headers() {
	h_headers "$1"
}

spf_header() {
	h_header "$1" "$2"
}

spf_milter_reload() {
	h_log_mark "$H_MILTER_LOG"
	h_milter_hup && h_wait_log "$H_MILTER_LOG" ': reloaded .*generation' 10
}

spf_helper_pids() {
	local parents=$H_MILTER_PID p
	[ -n "$H_MILTER_PID" ] || return 0
	for p in $(ps -o pid= --ppid "$H_MILTER_PID"); do parents+=,$p; done
	ps -o pid=,args= --ppid "$parents" | awk '$2 == "bulkmilter-spf" {print $1}'
}

spf_tag() {
	tr -c 'A-Za-z0-9\n' - <<<"$1"
}
