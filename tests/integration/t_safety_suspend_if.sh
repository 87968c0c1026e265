#!/bin/bash
#
# suspend-if rules, counted for the fleet in Redis (issue 18, "Must show"
# 2, 3 and 6):
#   - distinct-ips > 3/1h: one SASL login from client addresses (XCLIENT)
#     through two milters; two IPv6 addresses of one /64 count once; the
#     fourth distinct address's message gets the suspended action (hold);
#     exactly one rule-tripped and one suspended event reach the webhook
#     receiver; the log names the rule and the figure;
#   - suspend-for 2s: after it the account sends again, and the rule's
#     count started afresh (a fifth address does not trip it again);
#   - distinct-recipients > 50/1h: 50 recipients pass, the 51st gets the
#     suspended action (tempfail: 451 4.7.1 Account A is suspended), and
#     so does the whole message at end of message (nothing delivered);
#   - deferred > 5/1h: five over-limit answers pass, the sixth suspends
#     (reject: 550 5.7.1 Account A is suspended);
#   - under the thresholds nothing happens: no suspension, no event.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class roaming {
    account     sasl
    messages    100/1h
    suspend-if  distinct-ips > 3/1h
    suspend-for 2s
}
class fanout {
    account     sasl sender
    recipients  1000/1h
    suspend-if  distinct-recipients > 50/1h
    suspended   tempfail
}
class pushy {
    account     sasl sender
    messages    2/1h
    suspend-if  deferred > 5/1h
    suspended   reject
}
assign sasl    thief@example.com   roaming
assign sender  fan@example.com     fanout
assign sender  fan2@example.com    fanout
assign sender  push@example.com    pushy
assign sender  push2@example.com   pushy
EOF_POLICY
sf_webhook_start
h_conf 'InternalHosts 198.51.100.0/24' "$SF_NOTIFY"
h_milter_start
sf_second_milter
h_sasl_user thief@example.com s3cret
h_postfix_start
h__wait_for 10 h__port_busy "$SF_PORT_B" || h_fatal "second smtpd does not listen on $SF_PORT_B"

AUTH=(--auth thief@example.com:s3cret --from thief@example.com)
RULE='distinct-ips > 3/1h'

# ---- distinct-ips through two milters ----------------------------------
rl_smtp ip1 --xclient 192.0.2.1 "${AUTH[@]}" --messages 2 --tag ip1
rl_smtp ip2 --port "$SF_PORT_B" --xclient 192.0.2.2 "${AUTH[@]}" --tag ip2
rl_smtp ip3 --xclient 2001:db8:0:1::1 "${AUTH[@]}" --tag ip3
rl_smtp ip3b --port "$SF_PORT_B" --xclient 2001:db8:0:1::2 "${AUTH[@]}" --tag ip3b
h_assert_eq 5 "$(rl_delivered 'ip[0-9b]*' 5)" \
	"distinct-ips: 3 distinct (two IPv6 of one /64 count once), 5 messages delivered"
h_assert_eq 0 "$(sf_events)" "distinct-ips: under the threshold no event"
rl_smtp ip4 --port "$SF_PORT_B" --xclient 192.0.2.4 "${AUTH[@]}" --tag ip4
h_assert_eq 1 "$(rl_count ip4 data 250)" "distinct-ips: the fourth address's message is accepted"
h_assert_eq 1 "$(rl_held_count thief@example.com)" "distinct-ips: ... and held (suspended hold)"
h_assert_grep "$H_TMP/milter2.log" "account=thief@example.com class=roaming suspended by suspend-if $RULE \\(4\\)" \
	"distinct-ips: milter 2 logs the rule and the figure"
h_assert_eq 1 "$(sf_wait_events 1 event=rule-tripped account=thief@example.com "rule=$RULE" figure=4)" \
	"distinct-ips: one rule-tripped event (rule, figure 4)"
h_assert_eq 1 "$(sf_wait_events 1 event=suspended account=thief@example.com "by=$RULE")" \
	"distinct-ips: one suspended event, by the rule"
rl_smtp ip1again --xclient 192.0.2.1 "${AUTH[@]}" --tag ip1again
h_assert_eq 2 "$(rl_held_count thief@example.com)" "distinct-ips: while suspended, milter 1 holds too"
sleep 0.5
h_assert_eq "1 1" "$(sf_events event=rule-tripped) $(sf_events event=suspended)" \
	"distinct-ips: still exactly one rule-tripped and one suspended event"

# ---- suspend-for 2s, count afresh -------------------------------------
sleep 2.2
rl_smtp ip5 --xclient 192.0.2.5 "${AUTH[@]}" --tag ip5
h_assert_eq 1 "$(rl_delivered ip5 1)" "suspend-for 2s: usable again after it (a fifth address)"
h_assert_eq 2 "$(rl_held_count thief@example.com)" "suspend-for 2s: nothing more held"
h_assert_eq 1 "$(sf_events event=rule-tripped)" "suspend-for 2s: the count started afresh, no new trip"

# ---- distinct-recipients > 50/1h ----------------------------------------
XC=(--xclient 198.51.100.7)
rl_smtp fan2 "${XC[@]}" --rcpts 50 --tag fan2 --from fan2@example.com
h_assert_eq 50 "$(rl_delivered fan2 50)" "distinct-recipients: 50 recipients under the threshold, all delivered"
rl_smtp fan "${XC[@]}" --rcpts 51 --tag fan --from fan@example.com
h_assert_eq 50 "$(rl_count fan 'rcpt[0-9]+' 250)" "distinct-recipients: 50 RCPTs accepted"
h_assert_eq "1 451 4.7.1 Account fan@example.com is suspended" "$(rl_replies fan rcpt51)" \
	"distinct-recipients: the 51st gets 451 4.7.1 Account fan@example.com is suspended"
h_assert_eq "1 451 4.7.1 Account fan@example.com is suspended" "$(rl_replies fan data)" \
	"distinct-recipients: the whole message gets the suspended action at end of message"
h_assert_eq 0 "$(rl_sink_rcpts fan)" "distinct-recipients: nothing of it is delivered"
rl_smtp fanafter "${XC[@]}" --tag fanafter --from fan@example.com
h_assert_eq "1 451 4.7.1 Account fan@example.com is suspended" "$(rl_replies fanafter mail)" \
	"distinct-recipients: the next message is refused at MAIL FROM"
h_assert_eq 1 "$(sf_wait_events 1 event=rule-tripped account=fan@example.com 'rule=distinct-recipients > 50/1h' figure=51)" \
	"distinct-recipients: one rule-tripped event, figure 51"

# ---- deferred > 5/1h -----------------------------------------------------
rl_smtp push2 "${XC[@]}" --messages 7 --tag push2 --from push2@example.com
h_assert_eq "2 5" "$(rl_count push2 mail 250) $(rl_count push2 mail 451)" \
	"deferred: 2 accepted, 5 over-limit answers (at the threshold)"
rl_smtp push "${XC[@]}" --messages 8 --tag push --from push@example.com
h_assert_eq "2 5" "$(rl_count push mail 250) $(rl_count push mail 451)" \
	"deferred: 2 accepted, 5 over-limit answers"
h_assert_eq "1 550 5.7.1 Account push@example.com is suspended" "$(rl_replies push mail | grep ' 550 ')" \
	"deferred: the sixth over-limit answer suspends: 550 5.7.1 Account push@example.com is suspended"
h_assert_eq 1 "$(sf_wait_events 1 event=rule-tripped account=push@example.com 'rule=deferred > 5/1h' figure=6)" \
	"deferred: one rule-tripped event, figure 6"
h_assert_eq "0 0" "$(sf_events account=push2@example.com) $(sf_events account=fan2@example.com)" \
	"under the thresholds: no event for push2 or fan2"
h_assert_eq "push@example.com fan@example.com" \
	"$(sf_ctl --json suspended | /usr/bin/python3 -c 'import json,sys; print(" ".join(sorted((s["account"] for s in json.load(sys.stdin)["suspended"]), reverse=True)))')" \
	"suspended lists push and fan (thief's 2 s are over), nobody under a threshold"
