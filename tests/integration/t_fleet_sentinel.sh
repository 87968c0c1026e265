#!/bin/bash
#
# Redis Sentinel (1 master, 1 replica, 3 sentinels; scripts/redis-fleet),
# two bulkmilters on "Redis sentinel://...", OnStoreFailure accept:
#   - bulkmilterctl usage and reset work through the sentinels;
#   - under continuous load through both milters the master is SIGKILLed:
#     every message is answered 250 and delivered (none lost), those of
#     the failover window carry X-Bulk-Unchecked, and both milters find
#     the promoted replica by themselves ("master is" its port);
#   - then enforcement is back: no X-Bulk-Unchecked, and recipients 5/1h
#     admits exactly 5 across both milters.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start sentinel
old_master=$(fl_port m)
replica=$(fl_port r)
h_assert_eq "$old_master" "$(fl_master_port)" "the sentinels name the master"

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
EOF_POLICY
h_conf "Redis $FL_URL" 'RedisTimeout 200ms' 'OnStoreFailure accept'
h_milter_start
PORT_B=$(h_port 5)
SOCK_B=unix:$H_TMP/milter2.sock
sed -e "s|^Socket .*|Socket $SOCK_B|" -e "s|^PidFile .*|PidFile $H_TMP/milter2.pid|" \
	"$H_TMP/bulkmilter.conf" >"$H_TMP/bulkmilter2.conf"
rl_milter2_start "$H_TMP/bulkmilter2.conf" "$SOCK_B"
h_postfix_master "127.0.0.1:$PORT_B inet n - n - - smtpd -o smtpd_milters=$SOCK_B"
h_postfix_start
h__wait_for 10 h__port_busy "$PORT_B" || h_fatal "second smtpd does not listen on $PORT_B"

# ---- bulkmilterctl through the sentinels --------------------------------
rl_smtp small0 --rcpts 2 --tag small0 --from small@example.com
h_assert_eq 2 "$(rl_count small0 'rcpt[0-9]+' 250)" "ctl: two recipients accepted"
h_assert_eq 2.00 "$(rl_used small@example.com recipients 5/1h)" "ctl: usage through the sentinels shows 2 used"
rl_ctl -c "$H_TMP/bulkmilter.conf" reset small@example.com >/dev/null 2>&1
h_assert_eq 0.00 "$(rl_used small@example.com recipients 5/1h)" "ctl: reset through the sentinels empties it"

# ---- continuous load, SIGKILL of the master -----------------------------
rm -f "$H_TMP/stop"
rl_smtp loada --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag loada \
	--from load@example.com &
pid_a=$!
rl_smtp loadb --port "$PORT_B" --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag loadb \
	--from load@example.com &
pid_b=$!
sleep 2
h_log_mark "$H_MILTER_LOG"
h_log_mark "$H_TMP/milter2.log"
killed_at=$(date +%s.%N)
kill -KILL "$(fl_pid m)"
h_wait_log "$H_MILTER_LOG" "redis sentinel bm: master is 127.0.0.1:$replica" 30
found_a=$?
h_wait_log "$H_TMP/milter2.log" "redis sentinel bm: master is 127.0.0.1:$replica" 30
found_b=$?
sleep 2
touch "$H_TMP/stop"
wait "$pid_a"
h_assert_eq 0 $? "load A: every session finished" || h_diag "$(cat "$H_TMP/rl-loada.err")"
wait "$pid_b"
h_assert_eq 0 $? "load B: every session finished" || h_diag "$(cat "$H_TMP/rl-loadb.err")"
h_assert_eq "0 0" "$found_a $found_b" "both milters found the promoted replica by themselves"
h_assert_eq "$replica" "$(fl_master_port)" "the sentinels promoted the replica"

sent=$(( $(awk '$3 == "ms"' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l) ))
ok=$(( $(awk '$3 == "ms" && $5 == 250' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l) ))
h_diag "load: $sent messages during the run"
h_ok "load: messages flowed before and after the kill" test "$sent" -gt 20
h_assert_eq "$sent" "$ok" "load: every message was answered 250 (OnStoreFailure accept)"
delivered=$(( $(rl_delivered loada "$(rl_count loada 'rcpt[0-9]+' 250)") +
	$(rl_delivered loadb "$(rl_count loadb 'rcpt[0-9]+' 250)") ))
h_assert_eq "$sent" "$delivered" "load: every accepted message was delivered (none lost)"
unchecked=$(cat "$H_TMP"/sink-main/*.eml | grep -ci '^X-Bulk-Unchecked:')
h_diag "load: $unchecked messages delivered with X-Bulk-Unchecked"
h_ok "load: the messages of the failover window carry X-Bulk-Unchecked" test "$unchecked" -gt 0
h_ok "load: most messages were checked (only the window is unchecked)" test "$unchecked" -lt "$sent"
stamp=$(grep -h "redis sentinel bm: master is 127.0.0.1:$replica" "$H_MILTER_LOG" | head -n 1 | cut -d' ' -f1)
window=$(awk -v a="$(date -d "$stamp" +%s.%N 2>/dev/null || echo 0)" -v k="$killed_at" 'BEGIN {printf "%.1f", a - k}')
h_diag "seconds from the SIGKILL to milter A using the new master: $window"

# ---- enforcement is back ---------------------------------------------------
before=$(cat "$H_TMP"/sink-main/*.eml | grep -ci '^X-Bulk-Unchecked:')
rl_smtp after --messages 5 --tag after --from load@example.com
h_assert_eq 5 "$(rl_delivered after 5)" "after: 5 messages delivered"
h_assert_eq "$before" "$(cat "$H_TMP"/sink-main/*.eml | grep -ci '^X-Bulk-Unchecked:')" \
	"after: none carries X-Bulk-Unchecked"
rl_smtp small1 --rcpts 4 --tag small1 --from small@example.com
rl_smtp small2 --port "$PORT_B" --rcpts 4 --tag small2 --from small@example.com
h_assert_eq "4 1" "$(rl_count small1 'rcpt[0-9]+' 250) $(rl_count small2 'rcpt[0-9]+' 250)" \
	"after: recipients 5/1h admits exactly 5 across both milters (4 via A, 1 via B)"
h_assert_eq 3 "$(rl_count small2 'rcpt[0-9]+' 451)" "after: the other 3 get 451"
h_assert_eq 5.00 "$(rl_used small@example.com recipients 5/1h)" "after: usage on the new master shows 5"
