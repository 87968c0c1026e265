#!/bin/bash
#
# SPF when things break. An SPF helper killed with SIGKILL while idle
# costs nothing (the next message passes); one killed while it waits on
# DNS costs that message a temperror at once (not after the DNS
# timeout), the next message passes, and the milter process lives on.
# With the DNS server unreachable (a port where nothing listens) or
# silent (a server that reads queries and never answers), every message
# is answered within 2 x DNSTimeout + 1.5 s, gets spf=temperror and is
# delivered.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/spf_it_lib.sh"

bh_port=$(h_port 10)
dead_port=$(h_port 11)
h__port_busy "$dead_port" udp && h_fatal "UDP port $dead_port is in use"
spf_blackhole_start "$bh_port"
# slow.example is asked of the blackhole, so killme.example's evaluation
# waits on DNS for DNSTimeout.
spf_dns_start \
	"--txt-record=ok.example,v=spf1 ip4:192.0.2.0/24 -all" \
	"--txt-record=killme.example,v=spf1 include:x.slow.example -all" \
	"--server=/slow.example/127.0.0.1#$bh_port"

h_policy <<'EOF_POLICY'
class inbound { }
assign inbound inbound
EOF_POLICY
conf() {	# conf RESOLVER-PORT DNSTIMEOUT
	h_conf <<-EOF_CONF
	AuthservID mx.test.example
	Resolver 127.0.0.1:$1
	DNSTimeout $2
	EOF_CONF
}
conf "$H_DNS_PORT" 3s
h_milter_start
milter_pid=$H_MILTER_PID
h_postfix_start

# ar NAME QID EXPECTED: that message arrived with this Authentication-Results.
ar() {
	h_ok "$1: queued" test -n "$2" || return
	h_ok "$1: delivered" spf_sink_file "$2" || return
	h_assert_eq "$3" "$(spf_header "$SPF_FILE" Authentication-Results)" "$1: $3"
}

# kill_helpers: SIGKILL every SPF helper; wait until they are gone.
kill_helpers() {
	local pids
	pids=$(spf_helper_pids)
	[ -n "$pids" ] || return 1
	# shellcheck disable=SC2086 # one PID a word
	kill -KILL $pids
	# shellcheck disable=SC2086
	h__wait_for 5 spf__gone $pids
}
spf__gone() {
	local p
	for p in "$@"; do
		[ -e "/proc/$p/cmdline" ] && [ -n "$(tr -d '\0' <"/proc/$p/cmdline")" ] && return 1
	done
	return 0
}

# -- helpers killed while idle
spf_send --xclient 192.0.2.10 --from alice@ok.example --tag warm-up
ar "before any kill" "$SPF_QID" "mx.test.example; spf=pass smtp.mailfrom=ok.example"
before=$(spf_helper_pids | sort)
h_ok "the milter has SPF helpers (bulkmilter-spf children)" test -n "$before"
h_log_mark "$H_MILTER_LOG"
h_ok "idle helpers killed with SIGKILL" kill_helpers
spf_send --xclient 192.0.2.10 --from alice@ok.example --tag after-idle-kill
ar "after the idle helpers were killed" "$SPF_QID" "mx.test.example; spf=pass smtp.mailfrom=ok.example"
h_ok "the milter noticed a dead idle helper" h_wait_log "$H_MILTER_LOG" 'SPF helper [0-9]+ \(pid [0-9]+\) ended while idle' 2
after=$(spf_helper_pids | sort)
h_ok "new helpers run" test -n "$after"
h_assert_eq "" "$(comm -12 <(echo "$before") <(echo "$after"))" "no killed helper PID is among them"

# -- a helper killed in the middle of an evaluation
bh_before=$(spf_blackhole_count)
( spf_send --xclient 192.0.2.10 --from alice@killme.example --tag in-flight
  echo "$SPF_CODE $SPF_QID $SPF_MS" >"$H_TMP/in-flight.result" ) &
sender=$!
bh_more() { [ "$(spf_blackhole_count)" -gt "$bh_before" ]; }
h_ok "in flight: the helper waits on DNS (its query reached the silent server)" \
	h__wait_for 5 bh_more
h_log_mark "$H_MILTER_LOG"
h_ok "in flight: helpers killed with SIGKILL" kill_helpers
wait "$sender"
read -r code qid ms <"$H_TMP/in-flight.result"
h_assert_eq 250 "$code" "in flight: the message is accepted"
ar "in flight" "$qid" "mx.test.example; spf=temperror smtp.mailfrom=killme.example"
h_ok "in flight: answered before the 3 s DNS timeout (${ms} ms)" test "${ms:-99999}" -lt 2500
h_ok "in flight: the milter logs the helper's death" \
	h_wait_log "$H_MILTER_LOG" 'SPF helper [0-9]+ \(pid [0-9]+\) failed during a request' 2
h_ok "in flight: decision line says spf=temperror, spf_reason=\"SPF helper failed\"" \
	grep -q ' spf=temperror .* spf_reason="SPF helper failed"' <<<"$(h_milter_line "$qid")"
spf_send --xclient 192.0.2.10 --from bob@ok.example --tag after-flight-kill
ar "the next message" "$SPF_QID" "mx.test.example; spf=pass smtp.mailfrom=ok.example"
h_assert_eq "$milter_pid" "$H_MILTER_PID" "the milter was not restarted"
h_ok "the milter process (pid $milter_pid) is alive" h__alive "$milter_pid"

# -- unreachable and silent DNS servers: temperror within the time limit
# timed NAME DOMAIN: 3 messages in one session, each answered in time,
# with spf=temperror, delivered.
timed() {
	local seq code qid ms _ limit=2500
	spf_smtp --xclient 192.0.2.10 --from "alice@$2" --messages 3 --tag "$(spf_tag "$1")" >/dev/null
	h_assert_eq 3 "$(grep -c '^[0-9]* 250 ' "$SPF_SMTP_OUT")" "$1: all 3 messages accepted"
	while read -r seq code qid ms _; do
		h_ok "$1: message $seq answered in ${ms} ms (< $limit)" test "$ms" -lt "$limit"
		ar "$1: message $seq" "$qid" "mx.test.example; spf=temperror smtp.mailfrom=$2"
	done <"$SPF_SMTP_OUT"
}

conf "$dead_port" 500ms
h_ok "Resolver: a port where nothing listens (SIGHUP)" spf_milter_reload
timed "nothing listens" unreachable.example

conf "$bh_port" 500ms
h_ok "Resolver: a server that never answers (SIGHUP)" spf_milter_reload
bh_before=$(spf_blackhole_count)
timed "never answers" silent.example
h_ok "never answers: each message asked it ($(spf_blackhole_count) queries in all)" \
	test "$(spf_blackhole_count)" -ge $((bh_before + 3))

h_ok "the milter process (pid $milter_pid) is alive at the end" h__alive "$milter_pid"
