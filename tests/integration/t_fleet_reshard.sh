#!/bin/bash
#
# Redis Cluster resharding under load (scripts/redis-fleet, 3 masters):
# the slot of a busy account moves to another master (CLUSTER SETSLOT
# IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while its mail flows
# through two milters. Its calendar quota (recipients N/day: no refill,
# so counts compare exactly) is exact before and after; every message is
# answered 250 and delivered; the milters followed ASK/TRYAGAIN and MOVED
# (debug lines) and logged no store failure; no X-Bulk-Unchecked.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start cluster
busy=busy@example.com
h_policy <<'EOF_POLICY'
class busy {
    account     sasl sender
    recipients  100000/day
}
assign sender  busy@example.com  busy
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

slot=$(fl_cli n0 cluster keyslot "$busy")
src_port=$(fl_owner_port "$busy")
for m in n0 n1 n2; do
	p=$(fl_port $m)
	if [ "$p" = "$src_port" ]; then src=$m; elif [ -z "${dst:-}" ]; then dst=$m; fi
done
[ -n "${src:-}" ] && [ -n "${dst:-}" ] || h_fatal "no source or destination master"
src_id=$(fl_cli $src cluster myid)
dst_id=$(fl_cli $dst cluster myid)

# ---- before: exact ---------------------------------------------------------
rl_smtp before --sessions 5 --messages 4 --tag before --from "$busy"
rl_smtp beforeb --port "$PORT_B" --sessions 5 --messages 4 --tag beforeb --from "$busy"
h_assert_eq 40 "$(( $(rl_count before 'rcpt[0-9]+' 250) + $(rl_count beforeb 'rcpt[0-9]+' 250) ))" \
	"before: 40 recipients accepted"
h_assert_eq 40.00 "$(rl_used "$busy" recipients 100000/day)" "before: usage shows exactly 40"

# ---- the slot moves while mail flows ---------------------------------------
h_log_mark "$H_MILTER_LOG"
h_log_mark "$H_TMP/milter2.log"
rm -f "$H_TMP/stop"
rl_smtp loada --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag loada --from "$busy" &
pid_a=$!
rl_smtp loadb --port "$PORT_B" --sessions 3 --messages 100000 --until "$H_TMP/stop" --tag loadb \
	--from "$busy" &
pid_b=$!
sleep 1
{
	fl_cli $dst cluster setslot "$slot" importing "$src_id"
	fl_cli $src cluster setslot "$slot" migrating "$dst_id"
	sleep 0.2
	keys=$(fl_cli $src cluster getkeysinslot "$slot" 10000)
	# shellcheck disable=SC2086
	[ -n "$keys" ] && fl_cli $src migrate 127.0.0.1 "$(fl_port $dst)" "" 0 5000 keys $keys
	sleep 0.2
	for m in $dst $src n0 n1 n2; do fl_cli $m cluster setslot "$slot" node "$dst_id"; done
} >"$H_TMP/reshard.log" 2>&1
h_assert_eq 0 "$(grep -vc '^OK$' "$H_TMP/reshard.log")" "resharding: every step answered OK" ||
	h_diag "$(cat "$H_TMP/reshard.log")"
h_assert_eq "$(fl_port $dst)" "$(fl_owner_port "$busy")" "resharding: the account's slot is on the other master"
sleep 1
touch "$H_TMP/stop"
wait "$pid_a"
h_assert_eq 0 $? "load A: every session finished" || h_diag "$(cat "$H_TMP/rl-loada.err")"
wait "$pid_b"
h_assert_eq 0 $? "load B: every session finished" || h_diag "$(cat "$H_TMP/rl-loadb.err")"

sent=$(awk '$3 == "ms"' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l)
ok=$(awk '$3 == "ms" && $5 == 250' "$H_TMP/rl-loada.out" "$H_TMP/rl-loadb.out" | wc -l)
h_diag "load: $sent messages during the resharding"
h_ok "load: mail flowed" test "$sent" -gt 20
h_assert_eq "$sent" "$ok" "load: every message was answered 250"
h_assert_eq "$sent" "$(( $(rl_delivered loada "$(rl_count loada 'rcpt[0-9]+' 250)") +
	$(rl_delivered loadb "$(rl_count loadb 'rcpt[0-9]+' 250)") ))" "load: every message delivered (none lost)"
h_assert_eq "$(printf '%d.00' $((40 + sent)))" "$(rl_used "$busy" recipients 100000/day)" \
	"after: usage on the new master is exactly 40 + every message of the load"
h_assert_eq 0 "$(cat "$H_TMP"/sink-main/*.eml | grep -ci '^X-Bulk-Unchecked:')" \
	"no delivered message carries X-Bulk-Unchecked"
h_assert_eq 0 "$(cat "$H_MILTER_LOG" "$H_TMP/milter2.log" | grep -c 'rate limit not checked')" \
	"no store failure logged by either milter"
h_ok "the milters followed MOVED" grep -q 'debug: redis cluster: MOVED from' "$H_MILTER_LOG" "$H_TMP/milter2.log"
h_ok "the milters met the migration (ASK or TRYAGAIN) and went on" \
	grep -Eq 'debug: redis cluster: ASK from|TRYAGAIN.*trying again' "$H_MILTER_LOG" "$H_TMP/milter2.log"
rl_smtp after --sessions 2 --messages 5 --tag after --from "$busy"
h_assert_eq "$(printf '%d.00' $((40 + sent + 10)))" "$(rl_used "$busy" recipients 100000/day)" \
	"after: 10 more recipients count exactly"
