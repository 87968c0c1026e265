# shellcheck shell=bash
#
# NAME
#	bulk_it_lib.sh - messages, DKIM keys, routing files and header
#	look-ups for the t_bulk_* tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/bulk_it_lib.sh"
#
#	bulk_msg FILE MSGID FROM ['Name: value'...]
#	bulk_sink_file SINK QID
#	bulk_headers FILE; bulk_header FILE NAME; bulk_header_count FILE NAME
#	bulk_dkim_h FILE
#	bulk_held QID
#	bulk_dkim_key DIR DOMAIN SELECTOR
#	bulk_routes_from_shipped OUT TRANSPORT NEXTHOP
#	bulk_master_from_shipped TRANSPORT
# DESCRIPTION
#	bulk_msg writes a small message with exact bytes (CRLF line ends):
#	Date, From: <FROM>, To, Subject, Message-ID: <MSGID>, the extra
#	header fields given, an empty line and a two-line body.
#
#	bulk_sink_file prints the file of the message Postfix queued as QID
#	(found by the "with ESMTP id QID" of its Received header) in SINK,
#	waiting up to 20 s for it; it prints nothing (and a diagnostic on
#	stderr) when the message does not arrive.
#
#	bulk_headers prints FILE's header fields in order, one a line,
#	unfolded (CRLF + white space becomes one space), CR removed;
#	bulk_header the values of the fields called NAME (case-insensitive),
#	leading white space removed; bulk_header_count how many there are.
#	A FILE that does not exist has no header fields.
#	bulk_dkim_h prints the h= tag of the first DKIM-Signature, lower
#	case, one header name a line.
#
#	bulk_held QID: true when QID is in Postfix's hold queue.
#
#	bulk_dkim_key makes DIR/SELECTOR.private (mode 0600: RequireSafeKeys)
#	and DIR/SELECTOR.txt (the DNS record) with opendkim-genkey.
#
#	bulk_routes_from_shipped writes OUT from scripts/postfix/bulk_routes
#	with TRANSPORT's empty next hop replaced by NEXTHOP; it bails out when
#	the shipped file has no "FILTER TRANSPORT:" line with an empty next
#	hop, so that the shipped file is what the test exercises.
#	bulk_master_from_shipped prints TRANSPORT's entry of the shipped
#	scripts/postfix/master.cf (service line and its "-o" lines) with
#	smtp_bind_address set to 127.0.0.1 (the shipped public addresses
#	cannot be bound here).
#
#	DNS records come from the harness's h_dns_start.

bulk_msg() {
	local file=$1 msgid=$2 from=$3 h
	shift 3
	{
		printf '%s\r\n' "Date: Mon, 02 Mar 2026 10:00:00 +0000" \
			"From: Sender <$from>" "To: Bob <bob@example.net>" \
			"Subject: bulk test $msgid" "Message-ID: <$msgid>"
		for h in "$@"; do printf '%s\r\n' "$h"; done
		printf '\r\n%s\r\n%s\r\n' "Hello," "this is $msgid."
	} >"$file"
}

bulk_sink_file() {
	local out
	# h_wait_sink_grep prints its diagnostic on stdout: keep it out of
	# the file name the caller captures
	if out=$(h_wait_sink_grep "$1" "with ESMTP id $2" 20); then
		echo "$out"
	else
		echo "$out" >&2
		return 1
	fi
}

bulk_headers() {
	[ -f "$1" ] || return 0
	h_headers "$1"
}

bulk_header() {
	[ -f "$1" ] || return 0
	h_header "$1" "$2"
}

bulk_header_count() {
	bulk_headers "$1" | LC_ALL=C awk -v name="$2" '
		BEGIN { n = tolower(name) ":" }
		tolower(substr($0, 1, length(n))) == n { c++ }
		END { print c + 0 }'
}

bulk_dkim_h() {
	bulk_header "$1" DKIM-Signature | head -n 1 | tr -d ' \t' | tr ';' '\n' |
		sed -n 's/^h=//p' | tr ':' '\n' | tr '[:upper:]' '[:lower:]'
}

bulk_held() {
	h_postqueue_json | grep "\"queue_id\": *\"$1\"" | grep -q '"queue_name": *"hold"'
}

bulk_dkim_key() {
	mkdir -p "$1"
	opendkim-genkey -b 2048 -d "$2" -s "$3" -D "$1" ||
		h_fatal "opendkim-genkey -d $2 -s $3 failed"
	chmod 600 "$1/$3.private"
}

bulk_routes_from_shipped() {
	local out=$1 transport=$2 nexthop=$3
	local shipped=$H_SRCDIR/scripts/postfix/bulk_routes
	grep -Eq "FILTER[[:space:]]+$transport:[[:space:]]*\$" "$shipped" ||
		h_fatal "$shipped has no 'FILTER $transport:' line with an empty next hop"
	sed -E "s/(FILTER[[:space:]]+$transport:)[[:space:]]*\$/\\1$nexthop/" "$shipped" >"$out"
}

bulk_master_from_shipped() {
	local shipped=$H_SRCDIR/scripts/postfix/master.cf
	awk -v t="$1" '
		/^[^ \t#]/ { on = ($1 == t) }
		on && /^[ \t]+-o/ { sub(/smtp_bind_address=[^ \t]*/, "smtp_bind_address=127.0.0.1") }
		on' "$shipped"
}
