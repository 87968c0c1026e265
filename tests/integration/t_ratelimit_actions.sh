#!/bin/bash
#
# What a transaction is charged and what over-limit does, end to end:
#   - a transaction that ends without acceptance (RSET, QUIT, a lost
#     connection, DATA refused by Postfix for its size, a tempfail of the
#     milter at end of message) gives back every token it took:
#     bulkmilterctl usage shows the buckets as they were;
#   - over-limit reject (550 5.7.1 with the class's text), hold (hold
#     queue), tag (X-Bulk-Over-Limit: RATE KIND); Mode monitor (loaded
#     by SIGHUP) never defers, tags and logs what it would have done;
#   - local submission (sendmail(1) through non_smtpd_milters) is
#     outbound even though 127.0.0.1 is not in InternalHosts here; its
#     account is the envelope sender; over its recipients rate it is
#     held, not bounced or lost; under the rate it is delivered.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

ACCT=refund@example.com
h_redis_start
h_policy <<'EOF_POLICY'
class refund {
    account     sasl sender
    messages    10/7d
    recipients  20/7d
    bulk        header X-RL-Bulk
    bulk-require list-unsubscribe
    bulk-noncompliant tempfail
}
class rejecting {
    account     sasl sender
    messages    1/1h
    over-limit  reject "Quota exceeded, contact support"
}
class holding {
    account     sasl sender
    messages    1/1h
    over-limit  hold
}
class tagging {
    account     sasl sender
    messages    1/1h
    recipients  2/1h
    over-limit  tag
}
class monitored {
    account     sasl sender
    messages    1/1h
    recipients  2/1h
}
class local {
    account     sasl sender
    recipients  3/1h
}
assign sender  refund@example.com    refund
assign sender  reject@example.com    rejecting
assign sender  hold@example.com      holding
assign sender  tag@example.com       tagging
assign sender  tagr@example.com      tagging
assign sender  monitor@example.com   monitored
assign sender  local@example.com     local
EOF_POLICY
# 127.0.0.1 is not internal: SMTP clients present 198.51.100.7 through
# XCLIENT, and local submission must be recognised as such.
h_conf 'InternalHosts 198.51.100.0/24'
h_milter_start
h_postfix_start "non_smtpd_milters = $H_MILTER_SOCKET" 'message_size_limit = 100000'

XC=(--xclient 198.51.100.7)
CTL="$BM_BUILDDIR/milter/bulkmilterctl -c $H_TMP/bulkmilter.conf --json usage $ACCT"

# used tokens of the refund account's two buckets, "messages recipients"
usage_of() {
	local json
	json=$(cat)
	echo "$(rl_used_json messages 10/7d <<<"$json") $(rl_used_json recipients 20/7d <<<"$json")"
}
usage_now() {
	rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage "$ACCT" | usage_of
}
# the usage printed by --mid-cmd (after the RCPTs, before the end)
usage_mid() {
	sed -n 's/^# //p' "$H_TMP/rl-$1.out" | usage_of
}

# over_tag MESSAGE-ID: the X-Bulk-Over-Limit values of the delivered
# copies of that message (one line), "none" when it has none.
over_tag() {
	local v
	v=$(h_sink_grep main "$1" | xargs -r grep -h '^X-Bulk-Over-Limit:' | tr -d '\r' |
		sed 's/^X-Bulk-Over-Limit: *//' | sort -u | paste -sd,)
	echo "${v:-none}"
}

# ---- 4. refunds -------------------------------------------------------
rl_smtp base "${XC[@]}" --rcpts 2 --tag base --from "$ACCT"
h_assert_eq 1 "$(rl_count base data 250)" "refund: a first message is accepted"
before=$(usage_now)
h_assert_eq "1.00 2.00" "$before" "refund: usage before: messages used 1, recipients used 2"

usage_is() {
	[ "$(usage_now)" = "$1" ]
}

# refunded NAME DESCRIPTION: the transaction was charged (usage printed
# in the middle shows 1 message and 3 recipients more) and the buckets
# are back where they were.
refunded() {
	h_assert_eq "2.00 5.00" "$(usage_mid "$1")" "refund: $2: charged 1 message, 3 recipients before the end"
	h__wait_for 5 usage_is "$before"
	h_assert_eq "$before" "$(usage_now)" "refund: $2: usage after = usage before"
}

rl_smtp rset "${XC[@]}" --rcpts 3 --tag rset --from "$ACCT" --end rset --mid-cmd "$CTL"
h_assert_eq "3 250" "$(rl_count rset 'rcpt[0-9]+' 250) $(awk '$3 == "rset" {print $4}' "$H_TMP/rl-rset.out")" \
	"refund: RSET after 3 accepted RCPTs"
refunded rset "RSET after RCPT"

rl_smtp quit "${XC[@]}" --rcpts 3 --tag quit --from "$ACCT" --end quit --mid-cmd "$CTL"
h_assert_eq 3 "$(rl_count quit 'rcpt[0-9]+' 250)" "refund: QUIT after 3 accepted RCPTs"
refunded quit "QUIT after RCPT"

rl_smtp drop "${XC[@]}" --rcpts 3 --tag drop --from "$ACCT" --end drop --mid-cmd "$CTL"
h_assert_eq 3 "$(rl_count drop 'rcpt[0-9]+' 250)" "refund: connection lost after 3 accepted RCPTs"
refunded drop "connection lost after RCPT"

rl_smtp big "${XC[@]}" --rcpts 3 --tag big --from "$ACCT" --size 200000 --mid-cmd "$CTL"
h_assert_eq "1 552 5.3.4 Error: message file too big" "$(rl_replies big data)" \
	"refund: DATA over message_size_limit is refused by Postfix with 552 5.3.4"
refunded big "message refused by Postfix at DATA"

rl_smtp eom "${XC[@]}" --rcpts 3 --tag eom --from "$ACCT" --header 'X-RL-Bulk: yes' --mid-cmd "$CTL"
h_assert_eq "1 451 4.7.1 Bulk mail does not meet bulk sender requirements: list-unsubscribe" \
	"$(rl_replies eom data)" "refund: the milter tempfails at end of message (bulk-noncompliant tempfail)"
refunded eom "tempfail at end of message"

h_assert_eq 2 "$(rl_delivered base 2)" "refund: only the first message's 2 recipients are delivered"
h_assert_eq 0 "$(( $(rl_sink_rcpts rset) + $(rl_sink_rcpts quit) + $(rl_sink_rcpts drop) + $(rl_sink_rcpts big) + $(rl_sink_rcpts eom) ))" \
	"refund: nothing of the refunded transactions is delivered"

# ---- 7. over-limit actions --------------------------------------------
rl_smtp reject "${XC[@]}" --messages 2 --tag reject --from reject@example.com
h_assert_eq "250 550" "$(awk '$3 == "mail" {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-reject.out")" \
	"reject: the second message is rejected at MAIL FROM"
h_assert_eq "1 550 5.7.1 Quota exceeded, contact support" "$(rl_replies reject mail | grep ' 550 ')" \
	"reject: 550 5.7.1 with the class's text"
h_assert_grep "$H_MILTER_LOG" 'account=reject@example.com .*decision=reject-rate' \
	"reject: the log says decision=reject-rate"

rl_smtp hold "${XC[@]}" --messages 2 --tag hold --from hold@example.com
h_assert_eq 2 "$(rl_count hold data 250)" "hold: both messages accepted"
hold_qid=$(awk '$2 == 2 && $3 == "data" {print $NF}' "$H_TMP/rl-hold.out")
h_assert_eq 1 "$(rl_delivered hold 1)" "hold: only the first is delivered"
h_assert_eq 1 "$(h_postqueue_json | grep "\"queue_id\": *\"$hold_qid\"" | grep -c '"queue_name": *"hold"')" \
	"hold: the second is in the hold queue (postqueue -j queue_name hold)"
h_assert_eq "hold" "$(h_milter_field "$hold_qid" decision)" "hold: its log line says decision=hold"
h_assert_grep "$H_MILTER_LOG" "$hold_qid: .* hold=\"bulkmilter: hold@example.com over messages rate 1/1h\"\$" \
	"hold: the hold reason names account, kind and rate"

rl_smtp tag "${XC[@]}" --messages 2 --tag tag --from tag@example.com
h_assert_eq 2 "$(rl_count tag data 250)" "tag: both messages accepted"
h_assert_eq 2 "$(rl_delivered tag 2)" "tag: both delivered"
h_assert_eq none "$(over_tag '<tag.1.1@rl-it.test>')" \
	"tag: the first message (under the rate) has no X-Bulk-Over-Limit"
h_assert_eq "1/1h messages" "$(over_tag '<tag.1.2@rl-it.test>')" \
	"tag: the second has X-Bulk-Over-Limit: 1/1h messages"

rl_smtp tagr "${XC[@]}" --rcpts 3 --tag tagr --from tagr@example.com
h_assert_eq 3 "$(rl_count tagr 'rcpt[0-9]+' 250)" "tag: all 3 recipients accepted over recipients 2/1h"
h_assert_eq 3 "$(rl_delivered tagr 3)" "tag: all 3 delivered"
h_assert_eq "2/1h recipients" "$(over_tag '<tagr.1.1@rl-it.test>')" \
	"tag: the message has X-Bulk-Over-Limit: 2/1h recipients"

# ---- 9. local submission ----------------------------------------------
held_local() {
	[ "$(rl_held_count local@example.com)" -ge 1 ]
}
localmsg() {
	printf 'From: <local@example.com>\nSubject: local %s\nMessage-ID: <local.%s@rl-it.test>\n\nlocal %s\n' "$1" "$1" "$1"
}
h_log_mark "$H_MILTER_LOG"
localmsg 1 | h_sendmail -f local@example.com local.1.1@example.net local.1.2@example.net
h_wait_log "$H_MILTER_LOG" 'from=<local@example.com> decision=' 20
localmsg 2 | h_sendmail -f local@example.com local.2.1@example.net local.2.2@example.net
h__wait_for 20 held_local
localmsg 3 | h_sendmail -f local@example.com local.3.1@example.net
h_assert_eq 3 "$(rl_delivered local 3)" \
	"local: 3 recipients delivered (messages 1 and 3, under recipients 3/1h)"
h_assert_eq 0 "$(rl_sink_rcpts 'local\.2')" "local: nothing of message 2 delivered"
h_assert_eq 1 "$(rl_held_count local@example.com)" "local: message 2 (over the rate) is in the hold queue"
h_ok "local: the held message has both its recipients" \
	bash -c "postqueue -c '$H_POSTFIX_DIR' -j | grep '\"queue_name\": *\"hold\"' | grep local.2.1@example.net | grep -q local.2.2@example.net"
h_assert_eq 0 "$(cat "$H_TMP"/sink-main/*.env | grep -c '^mail_from: <>')" "local: nothing bounced"
h_assert_eq 3 "$(grep -cE 'direction=outbound class=local account=local@example.com client=127.0.0.1 .*from=<local@example.com> decision=' "$H_MILTER_LOG")" \
	"local: three log lines: outbound, class local, account = envelope sender, client 127.0.0.1"
h_assert_eq "accept 2
hold 2
accept 1" "$(grep -E 'account=local@example.com .*decision=' "$H_MILTER_LOG" | sed 's/.*decision=\([a-z]*\) rcpts=\([0-9]*\).*/\1 \2/')" \
	"local: decisions in order: accept rcpts=2, hold rcpts=2, accept rcpts=1"
h_assert_grep "$H_MILTER_LOG" 'decision=hold .* hold="bulkmilter: local@example.com over recipients rate 3/1h"$' \
	"local: the hold reason names the recipients rate"
h_assert_grep "$H_MILTER_LOG" 'connect from localhost \[127.0.0.1\] local-submission' \
	"local: the milter recognised the emulated connect as local submission"

# ---- 7b. Mode monitor (reloaded into the running milter) ---------------
h_conf 'InternalHosts 198.51.100.0/24' 'Mode monitor'
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"
rl_smtp monitor "${XC[@]}" --messages 3 --rcpts 2 --tag monitor --from monitor@example.com
h_assert_eq "3 6 3" "$(rl_count monitor mail 250) $(rl_count monitor 'rcpt[0-9]+' 250) $(rl_count monitor data 250)" \
	"monitor: 3 messages, 6 recipients, all accepted (nothing deferred)"
h_assert_eq 6 "$(rl_delivered monitor 6)" "monitor: all 6 recipients delivered"
h_assert_eq "none|1/1h messages|1/1h messages" "$(for m in 1 2 3; do
	over_tag "<monitor.1.$m@rl-it.test>"; done | paste -sd'|')" \
	"monitor: messages 2 and 3 tagged X-Bulk-Over-Limit: 1/1h messages, message 1 not"
h_assert_eq 2 "$(grep -c 'monitor: account=monitor@example.com over messages 1/1h: would tempfail$' "$H_MILTER_LOG")" \
	"monitor: log says twice it would have tempfailed a message"
h_assert_eq 4 "$(grep -c 'monitor: account=monitor@example.com over recipients 2/1h: would tempfail$' "$H_MILTER_LOG")" \
	"monitor: log says 4 times it would have tempfailed a recipient"
h_assert_eq 3 "$(grep -c 'account=monitor@example.com .*decision=accept' "$H_MILTER_LOG")" \
	"monitor: three decision=accept lines"
