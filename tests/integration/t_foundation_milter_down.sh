#!/bin/bash
#
# milter_default_action = tempfail: while bulkmilter is not running,
# Postfix answers 4xx and accepts nothing; once it runs, mail flows; a
# SIGTERM makes it exit 0, and mail is refused again until it is back.

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

sleep 2
h_assert_eq 2 "$(h_sink_count main)" "the sink holds exactly the 2 accepted messages"
h_assert_eq 0 "$(h_queue_count)" "the Postfix queue is empty"
