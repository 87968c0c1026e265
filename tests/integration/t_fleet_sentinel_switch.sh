#!/bin/bash
#
# A planned Sentinel failover (SENTINEL FAILOVER: the old master stays up
# and becomes a replica) under load through one milter: the milter's
# connections to the old master are closed by the sentinels, a new one
# finds it is no longer the master (ROLE), the milter asks the
# sentinels again and carries on on the promoted replica; every message
# is answered 250 and delivered, and recipients 5/1h is exact on the new
# master afterwards. Then the old master's role is checked: a replica.
# Then the new master hangs (SIGSTOP): the milter's commands time out,
# it asks the sentinels again and follows them back to the first
# server once they have promoted it; every message answered, 5/1h exact.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start sentinel
replica=$(fl_port r)
h_policy <<'EOF_POLICY'
class load {
    account     sasl sender
    recipients  100000/1h
}
class small {
    account     sasl sender
    recipients  5/1h
}
assign sender  load@example.com   load
assign sender  small@example.com  small
assign sender  small2@example.com small
EOF_POLICY
h_conf "Redis $FL_URL" 'RedisTimeout 200ms' 'OnStoreFailure accept'
h_milter_start
h_postfix_start

rl_smtp warm --tag warm --from load@example.com
h_log_mark "$H_MILTER_LOG"
rm -f "$H_TMP/stop"
rl_smtp load --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag load --from load@example.com &
pid=$!
sleep 1
h_assert_eq OK "$(redis-cli -p "$(fl_port s1)" sentinel failover bm)" "SENTINEL FAILOVER accepted"
h_wait_log "$H_MILTER_LOG" "redis sentinel bm: master is 127.0.0.1:$replica" 30
h_ok "the milter moved to the promoted replica by itself" \
	h__log_has "$H_MILTER_LOG" "redis sentinel bm: master is 127.0.0.1:$replica"
sleep 1
touch "$H_TMP/stop"
wait "$pid"
h_assert_eq 0 $? "load: every session finished" || h_diag "$(cat "$H_TMP/rl-load.err")"
sent=$(awk '$3 == "ms"' "$H_TMP/rl-load.out" | wc -l)
ok=$(awk '$3 == "ms" && $5 == 250' "$H_TMP/rl-load.out" | wc -l)
h_diag "load: $sent messages, $(h__log_since_mark "$H_MILTER_LOG" | grep -c 'rate limit not checked') unchecked"
h_assert_eq "$sent" "$ok" "load: every message was answered 250"
h_assert_eq "$sent" "$(rl_delivered load "$sent")" "load: every message delivered (none lost)"
h_assert_grep "$H_MILTER_LOG" "not a master \\(ROLE\\)|READONLY|Connection reset|Server closed the connection" \
	"the milter noticed the old master is no longer one (closed connection, ROLE or -READONLY)"
h_assert_eq slave "$(fl_cli m role | head -n 1)" "the old master is a replica now"

rl_smtp small --rcpts 8 --tag small --from small@example.com
h_assert_eq "5 3" "$(rl_count small 'rcpt[0-9]+' 250) $(rl_count small 'rcpt[0-9]+' 451)" \
	"after: recipients 5/1h exact on the new master (5 accepted, 3 get 451)"

# ---- the new master hangs: timeouts, the sentinels asked again ------------
first=$(fl_port m)
h_log_mark "$H_MILTER_LOG"
rm -f "$H_TMP/stop"
rl_smtp hang --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag hang --from load@example.com &
pid=$!
sleep 1
kill -STOP "$(fl_pid r)"
h_wait_log "$H_MILTER_LOG" "redis sentinel bm: master is 127.0.0.1:$first" 30
found=$?
kill -CONT "$(fl_pid r)"
sleep 1
touch "$H_TMP/stop"
wait "$pid"
h_assert_eq 0 $? "hang: every session finished" || h_diag "$(cat "$H_TMP/rl-hang.err")"
h_assert_eq 0 "$found" "hang: the milter followed the sentinels back to $first"
h_assert_grep "$H_MILTER_LOG" "127.0.0.1:$replica: .*(Resource temporarily unavailable|timed out|Connection reset)" \
	"hang: the hung master's commands timed out"
sent=$(awk '$3 == "ms"' "$H_TMP/rl-hang.out" | wc -l)
h_assert_eq "$sent" "$(awk '$3 == "ms" && $5 == 250' "$H_TMP/rl-hang.out" | wc -l)" \
	"hang: every message was answered 250"
h_assert_eq "$sent" "$(rl_delivered hang "$sent")" "hang: every message delivered (none lost)"
rl_smtp small2 --rcpts 8 --tag small2 --from small2@example.com
h_assert_eq "5 3" "$(rl_count small2 'rcpt[0-9]+' 250) $(rl_count small2 'rcpt[0-9]+' 451)" \
	"hang: recipients 5/1h exact on the master the sentinels chose"
