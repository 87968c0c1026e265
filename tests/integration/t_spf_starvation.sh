#!/bin/bash
#
# A slow DNS zone delays only its own SPF checks (SPEC "Always"). With
# "spf-fail reject" for inbound mail, victim.test publishes "v=spf1 -all"
# and slow3.test is delegated to a server that never answers; slow3.test
# and victim.test route to the same SPF helper (FNV-1a of the name,
# modulo SPF_POOL_SIZE 4: both 1). Four connections loop MAIL
# FROM:<x@slow3.test> + RSET the whole time; meanwhile twelve forged
# messages MAIL FROM:<ceo@victim.test> from an inbound client are each
# rejected 550 5.7.23 (12 of 12), each within DNSTimeout (they never
# wait for the slow zone), and no SPF helper is killed or restarted
# (a caller that gives up does not kill a helper that is working).

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/spf_it_lib.sh"

FORGED=12
HAMMERS=4
TIMEOUT_MS=1000

bh_port=$(h_port 10)
spf_blackhole_start "$bh_port"
spf_dns_start \
	"--txt-record=victim.test,v=spf1 -all" \
	"--server=/slow3.test/127.0.0.1#$bh_port"

h_policy <<'EOF_POLICY'
class inbound {
    spf-fail reject
}
assign inbound inbound
EOF_POLICY
h_conf "AuthservID mx.test.example" "Resolver 127.0.0.1:$H_DNS_PORT" "DNSTimeout ${TIMEOUT_MS}ms"
h_milter_start
milter_pid=$H_MILTER_PID
# RSET counts as a junk command: the hammers send thousands.
h_postfix_start "smtpd_junk_command_limit = 1000000"

# One forged message before the storm: rejected, and the helpers are up.
spf_send --xclient 192.0.2.10 --from ceo@victim.test --tag calm
h_assert_eq 550 "$SPF_CODE" "without the slow zone: forged ceo@victim.test gets 550"
helpers_before=$(spf_helper_pids | sort)
h_ok "the milter runs its SPF helpers" test -n "$helpers_before"

# hammer N: one inbound session looping MAIL FROM:<xN@slow3.test> + RSET
# until $H_TMP/stop exists; writes "MAILS REPLIES" to $H_TMP/hammer.N.
hammer() {
	h_smtp --xclient 192.0.2.77 --helo hammer.example --from "x$1@slow3.test" \
		--rcpts 0 --end rset --until "$H_TMP/stop" >"$H_TMP/hammer.$1.out" &&
		awk '$3 == "mail" {mails++; replies += ($4 == 250 || $4 == 451 || $4 == 550)}
		     END {print mails + 0, replies + 0}' "$H_TMP/hammer.$1.out" >"$H_TMP/hammer.$1"
}

bh_before=$(spf_blackhole_count)
hammer_pids=()
for i in $(seq 1 $HAMMERS); do
	hammer "$i" 2>>"$H_TMP/hammer.err" &
	hammer_pids+=($!)
done
# The storm is on once the silent server has seen a query per hammer.
storm() { [ "$(spf_blackhole_count)" -ge $((bh_before + HAMMERS)) ]; }
h_ok "the slow zone is being asked ($HAMMERS sessions looping MAIL FROM)" h__wait_for 10 storm
sleep 2

rejected=0 fast=0
for i in $(seq 1 $FORGED); do
	spf_send --xclient 192.0.2.10 --from ceo@victim.test --tag "forged-$i"
	h_diag "forged $i: $SPF_CODE in $SPF_MS ms: $SPF_TEXT"
	case "$SPF_CODE $SPF_TEXT" in
	"550 5.7.23 SPF check failed for victim.test from 192.0.2.10: "*)
		rejected=$((rejected + 1)) ;;
	esac
	[ -n "$SPF_MS" ] && [ "$SPF_MS" -lt "$TIMEOUT_MS" ] && fast=$((fast + 1))
done

touch "$H_TMP/stop"
for p in "${hammer_pids[@]}"; do wait "$p"; done
h_assert_eq "$FORGED" "$rejected" \
	"forged ceo@victim.test during the storm: 550 5.7.23 for $rejected of $FORGED"
h_assert_eq "$FORGED" "$fast" \
	"forged messages answered within DNSTimeout ($TIMEOUT_MS ms): $fast of $FORGED"
h_assert_eq "" "$(h_sink_grep main '<forged-')" "no forged message reached the sink"
mails=0 replies=0
for i in $(seq 1 $HAMMERS); do
	read -r m r <"$H_TMP/hammer.$i" || h_diag "hammer $i: $(cat "$H_TMP/hammer.err")"
	mails=$((mails + ${m:-0})) replies=$((replies + ${r:-0}))
done
h_ok "the hammers' MAIL FROMs were answered ($replies of $mails)" \
	test "$mails" -ge $HAMMERS -a "$replies" -eq "$mails"
h_assert_eq "$helpers_before" "$(spf_helper_pids | sort)" \
	"the same SPF helpers run: none killed or restarted"
h_assert_no_grep "$H_MILTER_LOG" \
	'SPF helper [0-9]+ \(pid [0-9]+\) (gave no answer|hung|did not start|ended while idle|failed)' \
	"the milter log shows no helper given up on, killed or restarted"
h_ok "the milter process (pid $milter_pid) is alive" h__alive "$milter_pid"
