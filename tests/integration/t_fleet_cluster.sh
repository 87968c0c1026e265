#!/bin/bash
#
# Redis Cluster (3 masters, 3 replicas; scripts/redis-fleet), two
# bulkmilters on "Redis cluster://...":
#   - accounts spread over all three masters: each account's keys sit on
#     the master of its slot (CLUSTER KEYSLOT of the account);
#   - 2 milters x 15 parallel clients x 2 recipients against recipients
#     23/1h on one account: exactly 23 accepted, 23 delivered; bulkmilterctl
#     usage shows 23 and reset empties it;
#   - the master of that account is SIGKILLed under load: every message
#     is answered 250 and delivered, the replica is promoted, and
#     recipients 23/1h is exact again on it (a fresh account of the same
#     master), across both milters.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start cluster

# Accounts: one per master (redis-fleet gives the masters the slots
# 0-5460, 5461-10922, 10923-16383), and two more on the first's master:
# one for the load during its failover, one for after it.
declare -A by_third=()
accounts=()
fresh=
loadacct=
for i in $(seq 1 2000); do
	a=acc$i@example.com
	third=$(( $(fl_cli n0 cluster keyslot "$a") / 5461 ))
	if [ -z "${by_third[$third]:-}" ]; then
		by_third[$third]=$a
		accounts+=("$a")
	elif [ "${by_third[$third]}" = "${accounts[0]}" ] && [ -z "$fresh" ]; then
		fresh=$a
	elif [ "${by_third[$third]}" = "${accounts[0]}" ] && [ -z "$loadacct" ]; then
		loadacct=$a
	fi
	[ ${#accounts[@]} -eq 3 ] && [ -n "$fresh" ] && [ -n "$loadacct" ] && break
done
h_assert_eq 3 "${#accounts[@]}" "three accounts whose slots are on three different masters"
[ -n "$fresh" ] && [ -n "$loadacct" ] || h_fatal "no fresh accounts on the first account's master"
quota=${accounts[0]}
quota_master=$(fl_owner_port "$quota")

{
	echo 'class q {'
	echo '    account     sasl sender'
	echo '    recipients  23/1h'
	echo '}'
	echo 'class load {'
	echo '    account     sasl sender'
	echo '    recipients  100000/1h'
	echo '}'
	for a in "${accounts[@]}" "$fresh"; do echo "assign sender $a q"; done
	echo "assign sender $loadacct load"
} | h_policy
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

# ---- accounts on all three masters ------------------------------------------
for a in "${accounts[@]}"; do		# through both milters (both warm)
	rl_smtp "spread-${a%%@*}" --tag "sp${a%%@*}" --from "$a"
	rl_smtp "spreadb-${a%%@*}" --port "$PORT_B" --tag "spb${a%%@*}" --from "$a"
done
on=
for a in "${accounts[@]}"; do
	p=$(fl_owner_port "$a")
	n=$(redis-cli -p "$p" --scan --pattern "bm:*{$a}*" | wc -l)
	[ "$n" -gt 0 ] && on="$on $p"
done
h_assert_eq 3 "$(echo $on | tr ' ' '\n' | sort -u | wc -l)" \
	"each account's keys are on the master of its slot, and those are three masters"

# ---- exact across two milters and 30 clients ---------------------------------
rl_ctl -c "$H_TMP/bulkmilter.conf" reset "$quota" >/dev/null 2>&1
h_assert_eq 0.00 "$(rl_used "$quota" recipients 23/1h)" "bulkmilterctl reset on the cluster empties the bucket"
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp qa --sessions 15 --rcpts 2 --tag qa --from "$quota" --start-at "$start" &
pid_a=$!
rl_smtp qb --port "$PORT_B" --sessions 15 --rcpts 2 --tag qb --from "$quota" --start-at "$start"
wait "$pid_a"
acc=$(( $(rl_count qa 'rcpt[0-9]+' 250) + $(rl_count qb 'rcpt[0-9]+' 250) ))
ref=$(( $(rl_count qa 'rcpt[0-9]+' 451) + $(rl_count qb 'rcpt[0-9]+' 451) ))
h_assert_eq "23 37" "$acc $ref" "2 milters x 15 clients x 2 recipients vs 23/1h: exactly 23 accepted, 37 get 451"
h_ok "both milters took part" \
	test "$(rl_count qa 'rcpt[0-9]+' 250)" -gt 0 -a "$(rl_count qb 'rcpt[0-9]+' 250)" -gt 0
h_assert_eq 23 "$(( $(rl_delivered qa "$(rl_count qa 'rcpt[0-9]+' 250)") +
	$(rl_delivered qb "$(rl_count qb 'rcpt[0-9]+' 250)") ))" "exactly 23 recipients delivered"
# a rolling bucket leaks 23/h: 0.1 in the 15 s a loaded machine may take
used=$(rl_used "$quota" recipients 23/1h)
h_ok "bulkmilterctl usage on the cluster shows 23 (less what leaked since: $used)" \
	awk -v u="$used" 'BEGIN { exit !(u >= 22.9 && u <= 23.0) }'

# ---- failover of that account's master under load -------------------------
h_log_mark "$H_MILTER_LOG"
rm -f "$H_TMP/stop"
rl_smtp loada --sessions 2 --messages 100000 --until "$H_TMP/stop" --tag loada --from "$loadacct" &
pid_a=$!
rl_smtp loadb --port "$PORT_B" --sessions 2 --messages 100000 --until "$H_TMP/stop" --tag loadb \
	--from "$loadacct" &
pid_b=$!
sleep 1
for m in n0 n1 n2; do [ "$(fl_port $m)" = "$quota_master" ] && victim=$m; done
kill -KILL "$(fl_pid "$victim")"
promoted() {
	local p
	p=$(fl_owner_port "$fresh") && [ "$p" != "$quota_master" ]
}
h__wait_for 30 promoted
h_ok "the replica of the killed master was promoted" promoted
h_wait_log "$H_MILTER_LOG" 'redis cluster: slot map from .* slots changed owner' 20
h_ok "milter A took the new slot map by itself" h__log_has "$H_MILTER_LOG" 'slot map from .* slots changed owner'
sleep 1
touch "$H_TMP/stop"
wait "$pid_a"
h_assert_eq 0 $? "load A: every session finished" || h_diag "$(cat "$H_TMP/rl-loada.err")"
wait "$pid_b"
h_assert_eq 0 $? "load B: every session finished" || h_diag "$(cat "$H_TMP/rl-loadb.err")"
sent=$(awk '$3 == "ms"' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l)
ok=$(awk '$3 == "ms" && $5 == 250' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l)
h_diag "load: $sent messages during the failover"
h_assert_eq "$sent" "$ok" "load: every message was answered 250"
h_assert_eq "$sent" "$(( $(rl_delivered loada "$(rl_count loada 'rcpt[0-9]+' 250)") +
	$(rl_delivered loadb "$(rl_count loadb 'rcpt[0-9]+' 250)") ))" "load: every message delivered (none lost)"

start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp fa --sessions 15 --rcpts 2 --tag fa --from "$fresh" --start-at "$start" &
pid_a=$!
rl_smtp fb --port "$PORT_B" --sessions 15 --rcpts 2 --tag fb --from "$fresh" --start-at "$start"
wait "$pid_a"
h_assert_eq "23 37" "$(( $(rl_count fa 'rcpt[0-9]+' 250) + $(rl_count fb 'rcpt[0-9]+' 250) )) $(( $(rl_count fa 'rcpt[0-9]+' 451) + $(rl_count fb 'rcpt[0-9]+' 451) ))" \
	"after the failover: 23/1h exact again on the promoted replica (23 accepted, 37 get 451)"
h_assert_eq 23.00 "$(rl_used "$fresh" recipients 23/1h)" "after the failover: usage shows 23"
