#!/bin/bash
#
# Postfix's own bounces pass bulkmilter (internal_mail_filter_classes =
# bounce, non_smtpd_milters), which suppresses the hard-bounced
# recipients for the account that sent the original:
#   - mail of a class with "suppress" carries Feedback-ID:
#     CLASS:TOKEN:bulkmilter, signed by DKIM, the account nowhere in it;
#   - a newsletter to 5 recipients, 2 answered 550 5.1.1 by the sink at
#     delivery: exactly those 2 are on the account's list, and the next
#     message's RCPT TO for them gets "550 5.1.1 Recipient ADDRESS is
#     suppressed for ACCOUNT", the other 3 are accepted and delivered;
#   - the bounce itself reaches the sender's mailbox (the sink) as usual;
#   - a soft bounce (4.x.x, Action delayed) suppresses nothing;
#   - another account's list is untouched;
#   - an entry made with bulkmilterctl holds at the next RCPT TO; a class
#     with "suppressed tempfail" answers 451 4.7.1 with the same text, one
#     with "suppressed tag" accepts the recipient, charges it as any
#     recipient (the limit still holds), and the message gets
#     X-Bulk-Suppressed: ADDRESS;
#   - in Mode monitor a suppressed recipient is accepted, the message
#     tagged X-Bulk-Suppressed, and the log says "would reject".

. "$(dirname "$0")/../lib/harness.sh"

ACCT=news@example.com
h_redis_start
h_sink_start main "" --rcpt-reply-for 'b@example.org=550 5.1.1 <b@example.org>: user unknown' \
	--rcpt-reply-for 'd@example.org=550 5.1.1 <d@example.org>: user unknown' \
	--rcpt-reply-for 'slow@example.org=450 4.2.1 <slow@example.org>: try later'
h_policy <<'EOF_POLICY'
class newsletter {
    account     sasl sender
    recipients  1000/1h
    bulk        always
    suppress    hard-bounce complaint
}
class other {
    account     sasl sender
    recipients  1000/1h
    suppress    hard-bounce
}
class deferring {
    account     sender
    suppressed  tempfail
}
class tagging {
    account     sender
    recipients  2/1h
    suppressed  tag
}
assign sender  news@example.com    newsletter
assign sender  other@example.com   other
assign sender  defer@example.com   deferring
assign sender  tag@example.com     tagging
EOF_POLICY
h_conf
h_milter_start
h_postfix_start "non_smtpd_milters = $H_MILTER_SOCKET" 'internal_mail_filter_classes = bounce' \
	'delay_warning_time = 1s' 'maximal_queue_lifetime = 1h'

CTL=("$H_BULKMILTERCTL" -c "$H_TMP/bulkmilter.conf")
list() { "${CTL[@]}" suppress export "$1" | sort | tr '\n' ' '; }

h_log_mark "$H_MILTER_LOG"
h_send --from "$ACCT" --to a@example.org,b@example.org,c@example.org,d@example.org,e@example.org \
	--header 'Subject: December news'
h_assert_eq 0 $? "the newsletter to 5 recipients is accepted"
h_wait_sink main 1 20
msg=$(h_sink_files main | head -n 1)
fid=$(h_header "$msg" Feedback-ID)
h_ok "it carries Feedback-ID: newsletter:TOKEN:bulkmilter ($fid)" \
	grep -Eq '^ *newsletter:[A-Za-z0-9_-]{20,}:bulkmilter$' <<<"$fid"
token=${fid#newsletter:}
token=${token%:bulkmilter}
h_ok "the token does not show the account" bash -c '! grep -qi "news\|example" <<<"$1"' _ "$token"

# the bounce for b and d: read by the milter, delivered to the sender
h_wait_log "$H_MILTER_LOG" 'report=dsn class=newsletter account=news@example.com .*suppress=b@example.org,d@example.org .*decision=suppressed' 30
h_assert_eq 0 $? "the bounce is read: b and d suppressed for the account"
h_wait_sink main 2 20
bounce=$(h_sink_files main | tail -n 1)
h_assert_grep "$bounce" 'report-type=delivery-status' "the bounce reaches the sender's mailbox"
h_assert_grep "${bounce%.eml}.env" "rcpt_to: <$ACCT>" "... addressed to the sender"
h_assert_eq "b@example.org d@example.org " "$(list "$ACCT")" "exactly b and d are on the account's list"
h_assert_eq "" "$(list other@example.com)" "another account's list is empty"

# the next message: b and d refused at RCPT TO, the others accepted
h_send --from "$ACCT" --to a@example.org,b@example.org,c@example.org,d@example.org,e@example.org
h_assert_grep "$H_SEND_LOG" '^<\*\* 550 5\.1\.1 Recipient b@example\.org is suppressed for news@example\.com' \
	"RCPT TO b gets 550 5.1.1 Recipient b@example.org is suppressed for news@example.com"
h_assert_grep "$H_SEND_LOG" '^<\*\* 550 5\.1\.1 Recipient d@example\.org is suppressed for news@example\.com' \
	"RCPT TO d gets the same"
h_assert_eq 3 "$(grep -Ec '^<-  250 2\.1\.5' "$H_SEND_LOG")" "a, c and e are accepted"
h_wait_sink main 3 20
h_assert_eq 3 "$(grep -c '^rcpt_to:' "$(h_sink_files main | tail -n 1 | sed 's/\.eml$/.env/')")" \
	"the message is delivered to the 3 others"

# a soft bounce (delayed, 4.x.x) suppresses nothing
h_log_mark "$H_MILTER_LOG"
h_send --from "$ACCT" --to slow@example.org
h_wait_log "$H_MILTER_LOG" 'report=dsn class=newsletter account=news@example.com rcpts=1 hard=0 decision=none' 30
h_assert_eq 0 $? "the delay notice is read: no hard bounce, nothing done"
h_assert_eq "b@example.org d@example.org " "$(list "$ACCT")" "the list still holds b and d only"
# entries made by hand; the other suppressed actions
"${CTL[@]}" suppress add defer@example.com x@example.org >/dev/null
"${CTL[@]}" suppress add tag@example.com x@example.org >/dev/null
h_send --from other@example.com --to x@example.org
h_assert_eq 0 $? "x@example.org is not suppressed for other@example.com"
h_send --from defer@example.com --to x@example.org,y@example.org
h_assert_grep "$H_SEND_LOG" '^<\*\* 451 4\.7\.1 Recipient x@example\.org is suppressed for defer@example\.com' \
	"suppressed tempfail: 451 4.7.1 Recipient x@example.org is suppressed for defer@example.com"
n=$(h_sink_count main)
h_send --from tag@example.com --to x@example.org
h_assert_eq 0 $? "suppressed tag: the recipient is accepted"
h_wait_sink main $((n + 1)) 20
h_assert_eq "x@example.org" "$(h_header "$(h_sink_files main | tail -n 1)" X-Bulk-Suppressed)" \
	"... and the message gets X-Bulk-Suppressed: x@example.org"
h_send --from tag@example.com --to y@example.org,z@example.org
h_assert_eq 1 "$(grep -Ec '^<-  250 2\.1\.5' "$H_SEND_LOG")" "... and it was charged: of 2/1h only y fits after it"
h_assert_grep "$H_SEND_LOG" '^<\*\* 451 4\.7\.1 Sending rate limit exceeded for tag@example\.com' "... z gets 451 4.7.1"

# Mode monitor: a suppressed recipient is accepted and tagged, and the log
# says what enforce would have done
"${CTL[@]}" suppress add "$ACCT" m@example.org >/dev/null
echo "Mode monitor" >>"$H_TMP/bulkmilter.conf"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"
n=$(h_sink_count main)
h_send --from "$ACCT" --to m@example.org
h_assert_eq 0 $? "monitor: the suppressed recipient is accepted"
h_wait_sink main $((n + 1)) 20
h_assert_eq "m@example.org" "$(h_header "$(h_sink_files main | tail -n 1)" X-Bulk-Suppressed)" \
	"monitor: ... delivered with X-Bulk-Suppressed: m@example.org"
h_assert_grep "$H_MILTER_LOG" "monitor: account=$ACCT recipient m@example.org suppressed: would reject" \
	"monitor: the log says enforce would reject it"
h_postfix_stop
h_ok "the milter is still running" kill -0 "$H_MILTER_PID"
