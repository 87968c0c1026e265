#!/bin/bash
#
# Quota scopes on a Redis Cluster (scripts/redis-fleet, 3 masters), two
# milters: a mailbox's bucket, its domain's and its class's carry
# different hash tags on different masters, so one event is charged
# scope by scope and a later scope's refusal gives back the earlier:
#   - cust.example: recipients 5/1h per mailbox, 8/1h by domain (mailboxes
#     and domain on three masters): a@ takes 5, b@ asks 5 and gets 3; b@'s
#     own bucket shows 3 (the 2 refused were given back), the domain 8;
#   - recipients 6/1h by class: three accounts in parallel through two
#     milters share it exactly (6 accepted).

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start cluster
third() { echo $(( $(fl_cli n0 cluster keyslot "$1") / 5461 )); }
h_assert_eq 3 "$(printf '%s\n' "$(third a@cust.example)" "$(third b@cust.example)" \
	"$(third d:cust.example)" | sort -u | wc -l)" \
	"a@, b@ and the domain cust.example hash to three different masters"

h_policy <<'EOF_POLICY'
class cust {
    account     sasl sender
    recipients  5/1h
    recipients  8/1h by domain
}
class shared {
    account     sasl sender
    recipients  6/1h by class
}
assign domain  cust.example   cust
assign domain  shared.example shared
EOF_POLICY
h_conf "Redis $FL_URL" 'RedisTimeout 200ms' 'OnStoreFailure tempfail'
h_milter_start
PORT_B=$(h_port 5)
SOCK_B=unix:$H_TMP/milter2.sock
sed -e "s|^Socket .*|Socket $SOCK_B|" -e "s|^PidFile .*|PidFile $H_TMP/milter2.pid|" \
	"$H_TMP/bulkmilter.conf" >"$H_TMP/bulkmilter2.conf"
rl_milter2_start "$H_TMP/bulkmilter2.conf" "$SOCK_B"
h_postfix_master "127.0.0.1:$PORT_B inet n - n - - smtpd -o smtpd_milters=$SOCK_B"
h_postfix_start
h__wait_for 10 h__port_busy "$PORT_B" || h_fatal "second smtpd does not listen on $PORT_B"

rl_smtp a --rcpts 5 --tag a --from a@cust.example
h_assert_eq 5 "$(rl_count a 'rcpt[0-9]+' 250)" "a@: 5 of 5 recipients accepted"
rl_smtp b --port "$PORT_B" --rcpts 5 --tag b --from b@cust.example
h_assert_eq "3 2" "$(rl_count b 'rcpt[0-9]+' 250) $(rl_count b 'rcpt[0-9]+' 451)" \
	"b@: 3 accepted, 2 get 451 (the domain's 8 are used)"
h_assert_eq "3.00 8.00" "$(rl_used b@cust.example recipients 5/1h) $(rl_used b@cust.example recipients 8/1h)" \
	"b@'s own bucket holds 3 (the refused 2 were given back), the domain's 8"
h_assert_eq 8 "$(( $(rl_delivered a 5) + $(rl_delivered b 3) ))" "8 recipients delivered"

start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp x --rcpts 3 --tag x --from x@shared.example --start-at "$start" &
p1=$!
rl_smtp y --port "$PORT_B" --rcpts 3 --tag y --from y@shared.example --start-at "$start" &
p2=$!
rl_smtp z --rcpts 3 --tag z --from z@shared.example --start-at "$start"
wait "$p1" "$p2"
h_assert_eq 6 "$(( $(rl_count x 'rcpt[0-9]+' 250) + $(rl_count y 'rcpt[0-9]+' 250) + $(rl_count z 'rcpt[0-9]+' 250) ))" \
	"by class: three accounts through two milters share 6/1h exactly"
h_assert_eq 0 "$(cat "$H_MILTER_LOG" "$H_TMP/milter2.log" | grep -c 'rate limit not checked')" \
	"no store failure (no CROSSSLOT: each scope ran on its own master)"
