#!/bin/bash
#
# suspend-if bounce-rate, evaluated when Postfix's own bounce is read:
#   - "suspend-if bounce-rate > 20% min 10/1d": an account that sent 10
#     recipients, 3 of them answered 550 5.1.1 by the sink at delivery, is
#     suspended by the bounce (log line, rule-tripped and suspended
#     events, bulkmilterctl suspended lists it by the rule), and its next
#     message gets the class's suspended action (reject);
#   - an account with 9 recipients and the same 3 bounces stays below
#     "min 10/1d": nothing happens, its next message goes through;
#   - recipients are counted in the RCPT script: the Redis commands per
#     recipient (EVALSHA calls) do not change with the rule.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
replies=()
for a in h1 h2 h3 l1 l2 l3; do
	replies+=(--rcpt-reply-for "$a@example.org=550 5.1.1 <$a@example.org>: user unknown")
done
h_sink_start main "" "${replies[@]}"
h_policy <<'EOF_POLICY'
class newsletter {
    account     sender
    recipients  1000/1h
    suspend-if  bounce-rate > 20% min 10/1d
    suspended   reject
}
assign sender  heavy@example.com  newsletter
assign sender  light@example.com  newsletter
EOF_POLICY
sf_webhook_start
h_conf "$SF_NOTIFY"
h_milter_start
h_postfix_start "non_smtpd_milters = $H_MILTER_SOCKET" 'internal_mail_filter_classes = bounce'

evalsha() { h_redis INFO commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }

h_log_mark "$H_MILTER_LOG"
before=$(evalsha)
h_send --from light@example.com --to s1@example.org,s2@example.org,s3@example.org,s4@example.org,s5@example.org,s6@example.org,l1@example.org,l2@example.org,l3@example.org
h_assert_eq 0 $? "light@example.com sends 9 recipients"
h_assert_eq 10 $(( $(evalsha) - before )) "one script call at MAIL FROM and one per recipient: the rule adds none"
h_wait_log "$H_MILTER_LOG" 'account=light@example.com class=newsletter suspend-if bounce-rate > 20% min 10/1d: 3 of 9 recipients sent$' 30
h_assert_eq 0 $? "its bounce is read: 3 of 9 recipients, below min 10: nothing happens"

h_send --from heavy@example.com --to r1@example.org,r2@example.org,r3@example.org,r4@example.org,r5@example.org,r6@example.org,r7@example.org,h1@example.org,h2@example.org,h3@example.org
h_assert_eq 0 $? "heavy@example.com sends 10 recipients"
h_wait_log "$H_MILTER_LOG" 'account=heavy@example.com class=newsletter suspend-if bounce-rate > 20% min 10/1d: 3 of 10 recipients sent: tripped' 30
h_assert_eq 0 $? "its bounce is read: 3 of 10 is over 20%: tripped"
h_wait_log "$H_MILTER_LOG" 'account=heavy@example.com class=newsletter suspended by suspend-if bounce-rate > 20% min 10/1d \(3 of 10\)' 10
h_assert_eq 0 $? "... one log line of the suspension"
h_assert_grep "$H_MILTER_LOG" ': report=dsn class=newsletter account=heavy@example.com rcpts=3 hard=3 decision=counted$' \
	"the report's own line: counted (the class has no suppress line)"
h_assert_eq 1 "$(sf_wait_events 1 event=rule-tripped account=heavy@example.com 'rule=bounce-rate > 20% min 10/1d' figure=3)" \
	"a rule-tripped event"
h_assert_eq 1 "$(sf_wait_events 1 event=suspended account=heavy@example.com 'by=bounce-rate > 20% min 10/1d')" \
	"a suspended event"
h_assert_eq 0 "$(sf_events account=light@example.com)" "no event for light@example.com"
h_assert_grep <(sf_ctl suspended) '^heavy@example.com .*bounce-rate > 20% min 10/1d' "bulkmilterctl suspended lists heavy by the rule"
h_assert_no_grep <(sf_ctl suspended) light "... and not light"

h_send --from heavy@example.com --to r1@example.org
h_assert_grep "$H_SEND_LOG" '^<\*\* 550 5\.7\.1 Account heavy@example\.com is suspended' \
	"heavy's next message gets 550 5.7.1 Account heavy@example.com is suspended"
h_send --from light@example.com --to s1@example.org
h_assert_eq 0 $? "light's next message is accepted"
