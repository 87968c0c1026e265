#!/bin/bash
#
# Rate limits are exact, end to end through a real Postfix and Redis:
#   - 20 parallel SASL clients x 5 recipients against recipients 50/1h:
#     exactly 50 accepted, 50 answered 451 4.7.1, 50 delivered;
#   - over a recipients rate only the recipients beyond it get 451 4.7.1
#     naming the account, and the message goes through to the rest;
#   - messages 5/10s: the sixth is deferred at MAIL FROM, one more fits
#     after 2 s (and only one);
#   - two rates: the tighter governs, and a refused message charges no
#     bucket;
#   - two bulkmilters (two sockets, one Redis) share one quota exactly.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class parallel {
    account     sasl sender
    recipients  50/1h
}
class per_recipient {
    account     sasl sender
    recipients  10/1h
}
class refill {
    account     sasl sender
    messages    5/10s
}
class two_rates {
    account     sasl sender
    messages    5/1m 8/1h
}
class shared {
    account     sasl sender
    recipients  10/1d
}
assign sasl    para@example.com    parallel
assign sender  twelve@example.com  per_recipient
assign sender  refill@example.com  refill
assign sender  tworates@example.com two_rates
assign sender  shared@example.com  shared
EOF_POLICY
h_conf </dev/null
h_milter_start

# The second milter: same Redis, same policy, its own socket, behind a
# second smtpd listener of the same Postfix.
PORT_B=$(h_port 15)
SOCK_B=unix:$H_TMP/milter2.sock
sed -e "s|^Socket .*|Socket $SOCK_B|" -e "s|^PidFile .*|PidFile $H_TMP/milter2.pid|" \
	"$H_TMP/bulkmilter.conf" >"$H_TMP/bulkmilter2.conf"
rl_milter2_start "$H_TMP/bulkmilter2.conf" "$SOCK_B"
h_postfix_master "127.0.0.1:$PORT_B inet n - n - - smtpd -o smtpd_milters=$SOCK_B"
h_sasl_user para@example.com s3cret
h_postfix_start
h__wait_for 10 h__port_busy "$PORT_B" || h_fatal "second smtpd does not listen on $PORT_B"

over() {
	echo "451 4.7.1 Sending rate limit exceeded for $1, try again later"
}

# ---- 1. concurrency: 20 sessions x 5 recipients against 50/1h --------
rl_smtp para --sessions 20 --rcpts 5 --tag para --auth para@example.com:s3cret \
	--from para@example.com
h_assert_eq 0 $? "parallel: all 20 sessions opened and finished" ||
	h_diag "$(cat "$H_TMP/rl-para.err")"
h_assert_eq 20 "$(rl_count para mail 250)" "parallel: 20 MAIL FROM accepted"
h_assert_eq 50 "$(rl_count para 'rcpt[0-9]+' 250)" "parallel: exactly 50 RCPT accepted"
h_assert_eq 50 "$(rl_count para 'rcpt[0-9]+' 451)" "parallel: the other 50 RCPT answered 451"
h_assert_eq "$(printf '50 250 2.1.5 Ok\n50 %s' "$(over para@example.com)")" \
	"$(rl_replies para 'rcpt[0-9]+')" "parallel: RCPT replies are exactly 250 Ok or 451 4.7.1 naming the account"
h_assert_eq 0 "$(awk '$3 == "data" && $4 != 250' "$H_TMP/rl-para.out" | wc -l)" \
	"parallel: every DATA with an accepted recipient is queued"
h_assert_eq 50 "$(rl_delivered para 50)" "parallel: exactly 50 recipients delivered at the sink"
h_assert_eq 50 "$(grep -E ' account=para@example.com .*decision=accept rcpts=' "$H_MILTER_LOG" |
	sed 's/.* rcpts=\([0-9]*\).*/\1/' | awk '{n += $1} END {print n + 0}')" \
	"parallel: the milter's decision lines add up to rcpts=50"

# ---- 2. one message, 12 recipients, recipients 10/1h -----------------
rl_smtp twelve --rcpts 12 --tag twelve --from twelve@example.com
h_assert_eq 10 "$(rl_count twelve 'rcpt([1-9]|10)' 250)" "12 recipients: the first 10 accepted"
h_assert_eq "2 $(over twelve@example.com)" "$(rl_replies twelve 'rcpt1[12]')" \
	"12 recipients: recipients 11 and 12 get 451 4.7.1 naming the account"
h_assert_eq 1 "$(rl_count twelve data 250)" "12 recipients: the message is queued"
qid=$(awk '$3 == "data" {print $NF}' "$H_TMP/rl-twelve.out")
h_assert_eq 10 "$(rl_delivered twelve 10)" "12 recipients: exactly 10 delivered"
h_assert_eq "accept 10 twelve@example.com per_recipient" \
	"$(h_milter_field "$qid" decision) $(h_milter_field "$qid" rcpts) $(h_milter_field "$qid" account) $(h_milter_field "$qid" class)" \
	"12 recipients: log line says decision=accept rcpts=10 and the account and class"
h_assert_grep "$H_MILTER_LOG" "account=twelve@example.com over recipients 10/1h: 451 4.7.1 \\(recipient\\)" \
	"12 recipients: the refused recipients are logged with the rate"

# ---- 3. refill: messages 5/10s ----------------------------------------
rl_smtp refill1 --messages 6 --tag refill --from refill@example.com
h_assert_eq "5 250 2.1.0 Ok
1 $(over refill@example.com)" "$(rl_replies refill1 mail)" \
	"refill: 5 messages accepted at once, the sixth deferred at MAIL FROM"
h_assert_eq 451 "$(awk '$2 == 6 && $3 == "mail" {print $4}' "$H_TMP/rl-refill1.out")" \
	"refill: it is the sixth that is deferred"
sleep 2
rl_smtp refill2 --messages 2 --tag refill2 --from refill@example.com
h_assert_eq "250 451" "$(awk '$3 == "mail" {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-refill2.out")" \
	"refill: after 2 s exactly one more message is accepted"
h_assert_eq 6 "$(( $(rl_delivered refill 5) + $(rl_delivered refill2 1) ))" \
	"refill: 6 messages delivered"

# ---- 5. two rates: messages 5/1m 8/1h ---------------------------------
rl_smtp tworates --messages 7 --tag tworates --from tworates@example.com
h_assert_eq "250 250 250 250 250 451 451" \
	"$(awk '$3 == "mail" {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-tworates.out")" \
	"two rates: 5/1m governs, the 6th and 7th are deferred"
used_hour=$(rl_used tworates@example.com messages 8/1h)
used_min=$(rl_used tworates@example.com messages 5/1m)
h_assert_eq "5 5" "$(printf '%.0f %.0f' "$used_hour" "$used_min")" \
	"two rates: 8/1h used 5 (not charged for the refused ones), 5/1m used 5" ||
	h_diag "$(rl_ctl -c "$H_TMP/bulkmilter.conf" usage tworates@example.com)"
h_assert_grep "$H_MILTER_LOG" 'account=tworates@example.com over messages 5/1m: 451 4.7.1$' \
	"two rates: the log names the full rate 5/1m"

# ---- 6. two milters on one Redis share one quota ----------------------
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp shared_a --sessions 4 --rcpts 2 --tag shared --from shared@example.com --start-at "$start" &
pid_a=$!
rl_smtp shared_b --port "$PORT_B" --sessions 4 --rcpts 2 --tag sharedb --from shared@example.com \
	--start-at "$start"
wait "$pid_a"
accepted=$(( $(rl_count shared_a 'rcpt[0-9]+' 250) + $(rl_count shared_b 'rcpt[0-9]+' 250) ))
refused=$(( $(rl_count shared_a 'rcpt[0-9]+' 451) + $(rl_count shared_b 'rcpt[0-9]+' 451) ))
h_assert_eq "10 6" "$accepted $refused" "two milters: exactly 10 of 16 recipients accepted, 6 get 451"
h_ok "two milters: both took part (A accepted some, B accepted some)" \
	test "$(rl_count shared_a 'rcpt[0-9]+' 250)" -gt 0 -a "$(rl_count shared_b 'rcpt[0-9]+' 250)" -gt 0
h_assert_grep "$H_TMP/milter2.log" 'account=shared@example.com .*decision=accept' \
	"two milters: the second milter decided B's messages"
h_assert_eq 10 "$(( $(rl_delivered shared "$(rl_count shared_a 'rcpt[0-9]+' 250)") +
	$(rl_delivered sharedb "$(rl_count shared_b 'rcpt[0-9]+' 250)") ))" \
	"two milters: exactly 10 recipients delivered"
h_assert_eq "10.00 10.00" "$(rl_used shared@example.com recipients 10/1d) $(rl_used shared@example.com recipients 10/1d "$H_TMP/bulkmilter2.conf")" \
	"two milters: bulkmilterctl usage (either config) shows used 10"
