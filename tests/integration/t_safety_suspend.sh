#!/bin/bash
#
# Suspension by hand, fleet-wide, end to end (issue 18, "Must show" 1):
#   - bulkmilterctl suspend on the first milter's config; the second
#     milter (behind a second smtpd) holds alice's next message, sent at
#     once (within 1 s of the suspend), with the reason in the hold queue;
#   - a class's suspended reject / tempfail give "550 5.7.1 Account A is
#     suspended" / "451 4.7.1 Account A is suspended" at MAIL FROM;
#   - suspended --json lists the three with since, by ctl and the reason;
#   - release restores alice (delivered, not held) and suspended --json
#     no longer lists her; suspend and release sent "suspended" and
#     "released" events to NotifyURL;
#   - suspend --for 2s ends by itself;
#   - in Mode monitor their mail is delivered and the log says what
#     enforce would have done (hold, reject, tempfail).

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class holding {
    account     sender
    messages    100/1h
}
class refusing {
    account     sender
    messages    100/1h
    suspended   reject
}
class deferring {
    account     sender
    messages    100/1h
    suspended   tempfail
}
assign sender  alice@example.com  holding
assign sender  brief@example.com  holding
assign sender  rej@example.com    refusing
assign sender  tmp@example.com    deferring
EOF_POLICY
sf_webhook_start
h_conf 'InternalHosts 198.51.100.0/24' "$SF_NOTIFY"
h_milter_start
sf_second_milter
h_postfix_start
h__wait_for 10 h__port_busy "$SF_PORT_B" || h_fatal "second smtpd does not listen on $SF_PORT_B"
XC=(--xclient 198.51.100.7)

h_assert_eq "suspended: reject" "$(sf_ctl explain --sender rej@example.com --ip 198.51.100.7 | grep '^suspended:')" \
	"explain shows the class's suspended action"

# ---- suspend on milter 1's config, hold on milter 2 --------------------
start=$(date +%s%N)
sf_ctl suspend alice@example.com --reason test >"$H_TMP/suspend.out"
h_assert_eq "0 suspended alice@example.com until released: test" "$? $(cat "$H_TMP/suspend.out")" \
	"suspend: exit 0 and says what it did"
rl_smtp alice1 --port "$SF_PORT_B" "${XC[@]}" --tag alice1 --from alice@example.com
took=$(( ($(date +%s%N) - start) / 1000000 ))
h_assert_eq "1 250" "$(rl_count alice1 data 250) $(awk '$3 == "mail" {print $4}' "$H_TMP/rl-alice1.out")" \
	"hold: milter 2 accepts alice's message (MAIL FROM 250, DATA 250)"
h_ok "hold: the message was sent within 1 s of the suspend (${took} ms)" [ "$took" -lt 1000 ]
h_assert_eq 1 "$(rl_held_count alice@example.com)" "hold: it is in the hold queue"
alice_qid=$(awk '$3 == "data" {print $NF}' "$H_TMP/rl-alice1.out")
h_assert_grep "$H_TMP/milter2.log" "$alice_qid: .*account=alice@example.com .*decision=hold .*hold=\"bulkmilter: account alice@example.com is suspended \\(by ctl\\)\"" \
	"hold: milter 2 logs decision=hold with the suspension as reason"
h_assert_eq 0 "$(rl_sink_rcpts alice1)" "hold: nothing of it is delivered"

# ---- reject and tempfail -------------------------------------------------
sf_ctl suspend rej@example.com --reason test >/dev/null
sf_ctl suspend tmp@example.com --reason test >/dev/null
rl_smtp rej --port "$SF_PORT_B" "${XC[@]}" --tag rej --from rej@example.com
h_assert_eq "1 550 5.7.1 Account rej@example.com is suspended" "$(rl_replies rej mail)" \
	"reject: 550 5.7.1 Account rej@example.com is suspended at MAIL FROM"
rl_smtp tmp "${XC[@]}" --tag tmp --from tmp@example.com
h_assert_eq "1 451 4.7.1 Account tmp@example.com is suspended" "$(rl_replies tmp mail)" \
	"tempfail: 451 4.7.1 Account tmp@example.com is suspended at MAIL FROM (milter 1)"
h_assert_grep "$H_MILTER_LOG" 'account=tmp@example.com .*decision=tempfail-suspended' \
	"tempfail: the log says decision=tempfail-suspended"

# ---- suspended --json ----------------------------------------------------
listed() {
	sf_ctl --json suspended | /usr/bin/python3 -c '
import json, sys
print(" ".join("%s/%s/%s/%s" % (s["account"], s["by"], s["reason"], s["until"])
               for s in json.load(sys.stdin)["suspended"]))'
}
h_assert_eq "alice@example.com/ctl/test/None rej@example.com/ctl/test/None tmp@example.com/ctl/test/None" \
	"$(listed)" "suspended --json lists the three, by ctl, reason test, until released"

# ---- release -------------------------------------------------------------
h_assert_eq "released alice@example.com" "$(sf_ctl release alice@example.com)" "release: says so"
rl_smtp alice2 --port "$SF_PORT_B" "${XC[@]}" --tag alice2 --from alice@example.com
h_assert_eq 1 "$(rl_delivered alice2 1)" "release: alice's next message is delivered"
h_assert_eq 1 "$(rl_held_count alice@example.com)" "release: still only the first one is held"
h_assert_eq "rej@example.com/ctl/test/None tmp@example.com/ctl/test/None" "$(listed)" \
	"suspended --json no longer lists alice"
h_assert_eq 1 "$(sf_wait_events 1 event=suspended account=alice@example.com class=holding by=ctl reason=test)" \
	"events: one suspended event for alice, class holding (her assign line), by ctl, reason test"
h_assert_eq 1 "$(sf_wait_events 1 event=released account=alice@example.com class=holding by=ctl)" \
	"events: one released event for alice, class holding"

# ---- suspend --for -------------------------------------------------------
sf_ctl suspend brief@example.com --for 2s >/dev/null
rl_smtp brief1 "${XC[@]}" --tag brief1 --from brief@example.com
h_assert_eq 1 "$(rl_held_count brief@example.com)" "--for 2s: held while suspended"
sleep 2.5
rl_smtp brief2 "${XC[@]}" --tag brief2 --from brief@example.com
h_assert_eq 1 "$(rl_delivered brief2 1)" "--for 2s: delivered after the 2 s"
h_assert_eq 1 "$(rl_held_count brief@example.com)" "--for 2s: only the first one is held"

# ---- Mode monitor ------------------------------------------------------------
# Mail of suspended accounts passes, and the log says what enforce would
# have done (SPEC: "never defer or reject; log and tag").
sf_ctl suspend alice@example.com --reason again >/dev/null
echo "Mode monitor" >>"$H_TMP/bulkmilter.conf"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"
for who in alice:hold rej:reject tmp:tempfail; do
	name=${who%%:*} action=${who#*:}
	rl_smtp "mon_$name" "${XC[@]}" --tag "mon_$name" --from "$name@example.com"
	h_assert_eq 1 "$(rl_delivered "mon_$name" 1)" "monitor: $name's message is delivered (enforce: $action)"
	h_assert_grep "$H_MILTER_LOG" "monitor: account=$name@example.com suspended by ctl: would $action" \
		"monitor: the log says $name's message would get $action"
done
h_assert_eq 1 "$(rl_held_count alice@example.com)" "monitor: nothing more is held"
