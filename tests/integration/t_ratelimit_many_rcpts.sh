#!/bin/bash
#
# Every recipient is counted, however many (SPEC "Always": no limit fails
# open), end to end through a real Postfix and Redis:
#   - recipients 1500/1d, one message to 2,500 recipients in one SMTP
#     session (smtpd_recipient_limit raised): exactly the first 1,500 are
#     accepted, the other 1,000 are answered 451 4.7.1 one by one, the
#     message is delivered to the 1,500 without X-Bulk-Unchecked (Redis
#     was healthy: nothing went unchecked), and the bucket shows 1,500
#     used.
# A day, not an hour: a bucket refills while the session runs (1500/1h
# gives a token back every 2.4 s), and exactness needs none back.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class many {
    account     sasl sender
    recipients  1500/1d
}
assign sender  many@example.com  many
EOF_POLICY
h_conf 'OnStoreFailure accept'
h_milter_start
# every refused RCPT is an smtpd "error": no sleeping, no disconnect
h_postfix_start 'smtpd_recipient_limit = 3000' 'smtpd_soft_error_limit = 5000' \
	'smtpd_hard_error_limit = 5000'

rl_smtp many --rcpts 2500 --tag many --from many@example.com
h_assert_eq 0 $? "the session opened and finished" || h_diag "$(cat "$H_TMP/rl-many.err")"
# replies RANGE: "COUNT CODE TEXT" per distinct reply to RCPT number FIRST..LAST
replies() {
	awk -v lo="$1" -v hi="$2" '$3 ~ /^rcpt[0-9]+$/ {
		n = substr($3, 5) + 0
		if (n >= lo && n <= hi) { $1 = $2 = $3 = ""; sub(/^ +/, ""); print }
	}' "$H_TMP/rl-many.out" | sort | uniq -c | sed 's/^ *//'
}
h_assert_eq "1500 250 2.1.5 Ok" "$(replies 1 1500)" "recipients 1 to 1500 are accepted"
h_assert_eq "1000 451 4.7.1 Sending rate limit exceeded for many@example.com, try again later" \
	"$(replies 1501 2500)" "recipients 1501 to 2500 each get 451 4.7.1 naming the account"
h_assert_eq 2500 "$(awk '$3 ~ /^rcpt[0-9]+$/' "$H_TMP/rl-many.out" | wc -l)" "2500 RCPT replies"
h_assert_eq 1 "$(rl_count many data 250)" "the message is queued"
h_assert_eq 1500 "$(rl_delivered many 1500 60)" "exactly 1500 recipients delivered"
h_assert_eq 0 "$(cat "$H_TMP"/sink-main/*.eml | grep -ci '^X-Bulk-Unchecked:')" \
	"no delivered copy carries X-Bulk-Unchecked"
h_assert_no_grep "$H_MILTER_LOG" 'rate limit not checked' \
	"the milter logged no store failure"
used=$(rl_used many@example.com recipients 1500/1d)
h_ok "the bucket shows 1500 used (within the refill of the run: $used)" \
	awk -v u="$used" 'BEGIN {exit !(u > 1499 && u <= 1500)}'
