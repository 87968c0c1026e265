#!/bin/bash
#
# milter_default_action = tempfail: while bulkmilter is not running,
# Postfix answers 4xx and accepts nothing; once it runs, mail flows; a
# SIGTERM makes it exit 0, and mail is refused again until it is back. A
# session in progress when SIGTERM comes is served to its end first.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
}
assign outbound standard
EOF_POLICY
h_conf </dev/null
h_postfix_start

# refused_while_down N: a message sent now gets a 4xx and is not queued.
refused_while_down() {
	h_send --header "Subject: while down $1"
	h_assert_grep "$H_SEND_LOG" '^<\*\* +4[0-9][0-9][ -]' "$1: Postfix answers 4xx without the milter"
	h_assert_eq "" "$H_QID" "$1: nothing is queued"
}

refused_while_down "before the first start"

h_milter_start
h_send --header "Subject: after start"
h_ok "after start: message is accepted" test -n "$H_QID"
h_ok "after start: message arrives at the sink" h_wait_sink main 1 20
h_assert_eq outbound "$(h_milter_field "$H_QID" direction)" "after start: the milter logged $H_QID"

h_milter_stop
h_assert_eq 0 "$H_MILTER_STATUS" "SIGTERM: bulkmilter exits with status 0"
refused_while_down "after SIGTERM"

h_milter_start
h_send --header "Subject: after restart"
h_ok "after restart: message is accepted" test -n "$H_QID"
h_ok "after restart: message arrives at the sink" h_wait_sink main 2 20

# An SMTP session is past RCPT (the milter has a connection and a
# transaction) when SIGTERM comes; it sends DATA only afterwards.
slow_session() {
	h_smtp --from alice@example.com --to bob@example.net --tag in-flight \
		--mid-cmd "touch '$H_TMP/ready'; while [ ! -e '$H_TMP/go' ]; do sleep 0.05; done" \
		>"$H_TMP/slow_session.replies" 2>&1
	# "CODE TEXT" of the reply to the final dot
	awk '$3 == "data" {$1 = $2 = $3 = ""; sub(/^ +/, ""); print}' \
		"$H_TMP/slow_session.replies" >"$H_TMP/slow_session.out"
}
slow_session &
client=$!
h__wait_for 20 test -e "$H_TMP/ready" || h_fatal "the slow session did not get past RCPT"
kill -TERM "$H_MILTER_PID"
sleep 1
h_ok "SIGTERM: bulkmilter still runs while a session is in progress" h__alive "$H_MILTER_PID"
touch "$H_TMP/go"
wait "$client"
h_assert_grep "$H_TMP/slow_session.out" '^250 ' "the session in progress at SIGTERM ends in 250"
h_ok "the message in flight at SIGTERM arrives at the sink" h_wait_sink main 3 20
h_milter_stop signalled
h_assert_eq 0 "$H_MILTER_STATUS" "bulkmilter exits with status 0 once the session has ended"
qid=$(sed -n 's/^250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$H_TMP/slow_session.out")
h_assert_eq accept "$(h_milter_field "$qid" decision)" \
	"the milter logged its decision for the message in flight ($qid)"

sleep 2
h_assert_eq 3 "$(h_sink_count main)" "the sink holds exactly the 3 accepted messages"
h_assert_eq 0 "$(h_queue_count)" "the Postfix queue is empty"
