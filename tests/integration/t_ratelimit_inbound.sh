#!/bin/bash
#
# The envelope sender of inbound mail proves nothing (SPEC.md, Policy
# file), through a real Postfix and Redis:
#   - an inbound client (XCLIENT from 198.51.100.7) whose MAIL FROM names
#     a local customer, or the provider's own ops domain, gets the inbound
#     class: assign sender and assign domain lines match outbound mail
#     only; the customer's bucket in Redis is never created, and the
#     customer, sending with SASL, still has its whole quota and is
#     charged for it;
#   - a class that inbound mail reaches by its address (assign ip) and
#     that takes its account from the sender's domain charges the inbound
#     account's buckets (PREFIXin{DOMAIN}:...), never the outbound ones of
#     the same domain;
#   - bulkmilterctl usage and reset reach the outbound account, and with
#     --inbound the inbound one;
#   - bulkmilterctl explain with the shipped policy/hosting.policy: a
#     forged x@ops.example.net from 198.51.100.7 is class inbound.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class customer {
    account     sasl sender
    messages    3/1d
}
class webserver {
    account     domain
    messages    4/1d
}
class internal {
    account     sender
    messages    5/1d
}
class inbound {
    account     ip
    messages    100/1d
}
assign ip       192.0.2.0/24         webserver
assign sender   *@ops.example.net    internal
assign domain   shop.example         customer
assign sasl     *                    customer
assign inbound                       inbound
EOF_POLICY
h_conf </dev/null
h_sasl_user alice@shop.example s3cret
h_sasl_user carol@shop.example s3cret
h_milter_start
h_postfix_start

ALICE='bm:{alice@shop.example}:customer:m:3/86400000'
OPS='bm:{x@ops.example.net}:internal:m:5/86400000'
STRANGER='bm:in{198.51.100.7}:inbound:m:100/86400000'

# expect NAME DIRECTION CLASS ACCOUNT: the last message was queued, and
# its log line says so.
expect() {
	h_ok "$1: accepted" test -n "$H_QID" || { h_diag "$(grep '^<\*\*' "$H_SEND_LOG")"; return; }
	h_assert_eq "$2 $3 $4" "$(h_milter_field "$H_QID" direction) $(h_milter_field "$H_QID" class) $(
		h_milter_field "$H_QID" account)" "$1: direction=$2 class=$3 account=$4"
}

# ---- 1. a stranger forging a local customer's address ------------------
for i in 1 2 3 4 5; do
	h_send --ip 198.51.100.7 --from alice@shop.example --to "bob$i@example.net"
	expect "forged alice@shop.example from 198.51.100.7 (#$i)" inbound inbound 198.51.100.7
done
h_send --ip 198.51.100.7 --from x@ops.example.net --to bob@example.net
expect "forged x@ops.example.net from 198.51.100.7" inbound inbound 198.51.100.7
h_assert_eq 0 "$(h_redis EXISTS "$ALICE")" "forged: the customer's bucket $ALICE does not exist"
h_assert_eq 0 "$(h_redis EXISTS "$OPS")" "forged: no internal-class bucket for the ops address"
h_assert_eq "" "$(h_redis --scan --pattern '*alice@shop.example*')" \
	"forged: no key of any kind names alice@shop.example"
h_assert_eq 1 "$(h_redis EXISTS "$STRANGER")" "forged: the stranger's inbound bucket $STRANGER holds the charge"
h_assert_eq 6.00 "$(rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage --inbound 198.51.100.7 |
	rl_used_json messages 100/1d)" "forged: usage --inbound 198.51.100.7 shows 6 messages"

# ---- 2. the customer, authenticated: its whole quota, and charged -----
for i in 1 2 3; do
	h_send --sasl alice@shop.example s3cret --from alice@shop.example --to "bob$i@example.net"
	expect "alice@shop.example with SASL (#$i)" outbound customer alice@shop.example
done
h_send --sasl alice@shop.example s3cret --from alice@shop.example --to bob4@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* +451 4\.7\.1 Sending rate limit exceeded for alice@shop\.example, try again later' \
	"alice@shop.example with SASL: only the 4th message of 3/1d is deferred"
h_assert_eq 1 "$(h_redis EXISTS "$ALICE")" "alice@shop.example: its bucket exists now"
h_assert_eq 3.00 "$(rl_used alice@shop.example messages 3/1d)" "alice@shop.example: usage shows its 3 messages"
h_assert_eq 0.00 "$(rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage --inbound alice@shop.example |
	rl_used_json messages 3/1d)" "alice@shop.example: no inbound use under its name"

# the provider's own hosts still get the class of their sender
h_send --from x@ops.example.net --to bob@example.net
expect "x@ops.example.net from loopback (InternalHosts)" outbound internal x@ops.example.net
h_assert_eq 1 "$(h_redis EXISTS "$OPS")" "x@ops.example.net from loopback: charged to $OPS"

# ---- 3. a class inbound mail reaches by address, account domain ------
OUT_SHOP='bm:{shop.example}:webserver:m:4/86400000'
IN_SHOP='bm:in{shop.example}:webserver:m:4/86400000'
h_send --ip 192.0.2.10 --sasl carol@shop.example s3cret --from carol@shop.example
expect "carol@shop.example with SASL from 192.0.2.10" outbound webserver shop.example
for i in 1 2 3 4; do
	h_send --ip 192.0.2.20 --from "dave$i@shop.example" --to bob@example.net
	expect "forged dave$i@shop.example from 192.0.2.20" inbound webserver shop.example
done
h_send --ip 192.0.2.20 --from dave5@shop.example --to bob@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* +451 4\.7\.1 Sending rate limit exceeded for shop\.example, try again later' \
	"forged from 192.0.2.20: the 5th is deferred by the inbound bucket of shop.example"
for i in 2 3 4; do
	h_send --ip 192.0.2.10 --sasl carol@shop.example s3cret --from carol@shop.example
	expect "carol@shop.example with SASL from 192.0.2.10 (#$i)" outbound webserver shop.example
done
h_send --ip 192.0.2.10 --sasl carol@shop.example s3cret --from carol@shop.example
h_assert_grep "$H_SEND_LOG" '^<\*\* +451 4\.7\.1 Sending rate limit exceeded for shop\.example' \
	"carol@shop.example: the 5th outbound message of 4/1d is deferred"
h_assert_eq "1 1" "$(h_redis EXISTS "$OUT_SHOP") $(h_redis EXISTS "$IN_SHOP")" \
	"shop.example: an outbound and an inbound bucket, apart"
h_assert_eq 4.00 "$(rl_used shop.example messages 4/1d)" "usage shop.example: the 4 outbound messages"
h_assert_eq 4.00 "$(rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage --inbound shop.example |
	rl_used_json messages 4/1d)" "usage --inbound shop.example: the 4 inbound messages"

# ---- 4. reset reaches one side ---------------------------------------
rl_ctl -c "$H_TMP/bulkmilter.conf" reset --inbound shop.example >"$H_TMP/ctl.out" 2>&1
h_assert_eq "0 shop.example (inbound): every bucket reset" "$? $(cat "$H_TMP/ctl.out")" "reset --inbound shop.example"
h_assert_eq "1 0" "$(h_redis EXISTS "$OUT_SHOP") $(h_redis EXISTS "$IN_SHOP")" \
	"reset --inbound: the inbound bucket is gone, the outbound one stays"
rl_ctl -c "$H_TMP/bulkmilter.conf" --json reset shop.example >"$H_TMP/ctl.out" 2>&1
h_assert_eq '0 {"account":"shop.example","direction":"outbound","scope":"account","reset":true}' "$? $(cat "$H_TMP/ctl.out")" \
	"reset shop.example (--json)"
h_assert_eq 0 "$(h_redis EXISTS "$OUT_SHOP")" "reset: the outbound bucket is gone"
rl_ctl -c "$H_TMP/bulkmilter.conf" usage --inbound >"$H_TMP/ctl.out" 2>&1
h_assert_eq 2 "$?" "usage --inbound without an account: usage error (exit 2)"

# ---- 5. explain, with the shipped hosting.policy -----------------------
sed "s|^Policy .*|Policy $H_SRCDIR/policy/hosting.policy|" "$H_TMP/bulkmilter.conf" >"$H_TMP/hosting.conf"
rl_ctl -c "$H_TMP/hosting.conf" explain --sender x@ops.example.net --ip 198.51.100.7 >"$H_TMP/ctl.out" 2>&1
h_assert_grep "$H_TMP/ctl.out" '^direction: inbound$' "explain hosting.policy, forged ops sender: direction inbound"
h_assert_grep "$H_TMP/ctl.out" '^class: inbound \(line [0-9]+: assign inbound inbound\)$' \
	"explain hosting.policy, forged ops sender: class inbound"
rl_ctl -c "$H_TMP/hosting.conf" --json explain --sender x@ops.example.net --ip 127.0.0.1 >"$H_TMP/ctl.out" 2>&1
h_assert_grep "$H_TMP/ctl.out" '^\{"direction":"outbound","class":"internal",' \
	"explain hosting.policy, ops sender from an InternalHosts address: class internal"

h_ok "every accepted message arrives" h_wait_sink main 18 30
