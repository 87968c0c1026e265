#!/bin/bash
#
# Outbound mail through a private Sendmail 8.17 (tests/lib/sendmail.sh,
# configured with the README's .mc snippet) and bulkmilter; loopback
# clients are InternalHosts, so their mail is outbound:
#
#   signed   a message from alice@example.com arrives at the sink with
#            one DKIM-Signature (d=example.com, s=rsa) that python3-dkim
#            and OpenDKIM's verifier both verify
#   bulk     class "news" (bulk always): the sink copy has "X-Bulk-Class:
#            news" and "Precedence: bulk", and its signature verifies
#   rate     class "standard", recipients 2/1h: of three recipients the
#            third gets "451 4.7.1 Sending rate limit exceeded for
#            carol@example.com, try again later", the message reaches
#            the sink for the first two only
#   hold     class "holding", messages 1/1h, over-limit hold: the second
#            message is accepted (250) but quarantined by Sendmail: its
#            queue file is an hf file (Sendmail's hold queue) whose "q"
#            line is bulkmilter's reason, mailq -qQ lists it with that
#            reason, and it does not reach the sink; released as the
#            README says (sendmail -qQ -qIQID -Q), it is delivered
#   local    sendmail(1) with Sendmail's submission program (submit.cf,
#            FEATURE(msp)) to three recipients of dave@example.com
#            (standard, recipients 2/1h): it hands the message to the MTA
#            over SMTP from 127.0.0.1, so it is outbound and answered per
#            recipient: two reach the sink, the third stays in the
#            submission queue with "Deferred: 451 4.7.1 Sending rate
#            limit exceeded for dave@example.com, try again later" (no
#            hold, unlike Postfix's non_smtpd_milters)
#
# No confMILTER_MACROS_* define: the queue ID "i" the milter asks for
# (smfi_setsymlist) reaches it, and its log lines name Sendmail's queue
# IDs.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/sendmail.sh
. "$(dirname "$0")/../lib/sendmail.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

sm_need_debs

h_redis_start
dkim_rsa_key rsa
echo "rsa._domainkey.example.com example.com:rsa:$DKIM_KEYS/rsa.private" >"$H_TMP/KeyTable"
echo '*@example.com rsa._domainkey.example.com' >"$H_TMP/SigningTable"
h_policy <<'EOF'
class news {
    account     sender
    bulk        always
}
class holding {
    account     sender
    messages    1/1h
    over-limit  hold
}
class standard {
    account     sender
    recipients  2/1h
    over-limit  tempfail
}
assign sender   news@example.com    news
assign sender   held@example.com    holding
assign outbound                     standard
EOF
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
h_milter_start
h_sink_start main
sm_build "$SM_ROOT" --smtpd "$H_SMTP_PORT" --relay "${H_SINK_PORT[main]}" \
	--socket "$H_MILTER_SOCKET" || h_fatal "sm_build failed"
sm_start "$SM_ROOT" || h_fatal "sm_start failed"

# sink_file QID: the sink's copy of Sendmail's message QID ("with ESMTP
# id QID" in Sendmail's Received header), waiting up to 30 s.
sink_file() {
	h_wait_sink_grep main " id $1" 30 >/dev/null || return 1
	h_sink_grep main " id $1" | head -n 1
}
# rcpts FILE: the recipients of the sink's envelope of FILE, sorted.
rcpts() {
	sed -n 's/^rcpt_to: //p' "${1%.eml}.env" | sort | tr '\n' ' '
}

# --- signed
sm_send --from alice@example.com --to bob@example.net
qid=$H_QID
h_ok "signed: Sendmail accepted the message" test -n "$qid" ||
	h_diag "$(grep '^ *<' "$H_SEND_LOG" | tail -n 3)"
file=$(sink_file "$qid")
h_ok "signed: it arrived at the sink" test -n "$file"
h_assert_eq 1 "$(grep -c '^DKIM-Signature:' "$file")" "signed: one DKIM-Signature"
h_ok "signed: python3-dkim and OpenDKIM verify it" dkim_verify --opendkim "$file"
h_assert_grep "$DKIM_VERIFY_OUT" 'd=example.com s=rsa a=rsa-sha256 python: pass' \
	"signed: python3-dkim: d=example.com s=rsa pass"
h_assert_grep "$DKIM_VERIFY_OUT" 'd=example.com s=rsa a=rsa-sha256 opendkim: pass' \
	"signed: OpenDKIM: d=example.com s=rsa pass"
h_assert_eq "d=example.com,s=rsa,a=rsa-sha256" "$(dkim_signed "$qid")" \
	"signed: the milter's line for Sendmail's queue ID $qid says signed"
h_assert_eq outbound "$(h_milter_field "$qid" direction)" "signed: direction=outbound"

# --- bulk
sm_send --from news@example.com --to reader@example.net
qid=$H_QID
file=$(sink_file "$qid")
h_ok "bulk: delivered" test -n "$file"
h_assert_eq "X-Bulk-Class: news" "$(grep -i '^X-Bulk-Class:' "$file" | tr -d '\r')" \
	"bulk: X-Bulk-Class: news"
h_assert_eq "Precedence: bulk" "$(grep -i '^Precedence:' "$file" | tr -d '\r')" \
	"bulk: Precedence: bulk"
h_ok "bulk: the signature verifies (python3-dkim, OpenDKIM)" dkim_verify --opendkim "$file"

# --- rate: recipients 2/1h, three recipients
sm_smtp --from carol@example.com --to r1@example.net --to r2@example.net --to r3@example.net \
	>"$H_TMP/rate.out"
h_assert_eq "250 250 451" "$(awk '$3 ~ /^rcpt/ {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rate.out")" \
	"rate: RCPT TO answers 250 250 451"
h_assert_grep "$H_TMP/rate.out" \
	'^1 1 rcpt3 451 4\.7\.1 Sending rate limit exceeded for carol@example\.com, try again later$' \
	"rate: the third gets 451 4.7.1 with the account named"
qid=$(awk '$3 == "data" && $4 == 250 {print $6}' "$H_TMP/rate.out")
h_ok "rate: the message was accepted ($qid)" test -n "$qid"
file=$(sink_file "$qid")
h_ok "rate: delivered" test -n "$file"
h_assert_eq "<r1@example.net> <r2@example.net> " "$(rcpts "$file")" \
	"rate: the sink got it for the first two recipients only"

# --- hold: messages 1/1h, over-limit hold
sm_smtp --from held@example.com --to h@example.net --messages 2 >"$H_TMP/hold.out"
h_assert_eq "250 250" "$(awk '$3 == "data" {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/hold.out")" \
	"hold: both messages accepted"
first=$(awk '$2 == 1 && $3 == "data" {print $6}' "$H_TMP/hold.out")
held=$(awk '$2 == 2 && $3 == "data" {print $6}' "$H_TMP/hold.out")
h_ok "hold: the first is delivered" test -n "$(sink_file "$first")"
h_assert_eq hold "$(h_milter_field "$held" decision)" "hold: the milter's line says decision=hold"
h_ok "hold: the second is quarantined (queue file hf$held)" test -f "$SM_ROOT/queue/hf$held"
h_assert_grep "$SM_ROOT/queue/hf$held" '^qbulkmilter: held@example\.com over messages rate 1/1h$' \
	"hold: its q line is bulkmilter's reason"
h_assert_eq "" "$(sm_queue_files "$SM_ROOT/queue" qf)" "hold: no qf file (nothing left to deliver)"
sleep 2
h_assert_eq "" "$(h_sink_grep main " id $held")" "hold: it did not reach the sink (2 s of queue runs later)"
sm_sendmail "$SM_ROOT" -bp -qQ >"$H_TMP/mailq.out" 2>&1
h_assert_grep "$H_TMP/mailq.out" "^$held " "hold: mailq -qQ lists it"
h_assert_grep "$H_TMP/mailq.out" 'QUARANTINE: bulkmilter: held@example\.com over messages rate 1/1h' \
	"hold: with its reason"
h_ok "hold: released with sendmail -qQ -qI$held -Q" sm_sendmail "$SM_ROOT" -qQ -qI"$held" -Q
h_ok "hold: then delivered" test -n "$(sink_file "$held")"

# --- local submission: sendmail(1) -> submit.cf -> SMTP to the MTA
printf 'From: dave@example.com\nSubject: local\n\nhello\n' |
	sm_submit "$SM_ROOT" -f dave@example.com l1@example.net l2@example.net l3@example.net
h_assert_eq 0 "$?" "local: sendmail(1) exits 0"
h_wait_sink_grep main 'Subject: local' 30 >/dev/null
file=$(h_sink_grep main 'Subject: local' | head -n 1)
h_ok "local: a message arrives at the sink" test -n "$file"
got=$(rcpts "$file")
h_assert_eq 2 "$(wc -w <<<"$got")" "local: for two of the three recipients ($got)"
qf=$(sm_queue_files "$SM_ROOT/clientqueue" qf)
h_assert_eq 1 "$(wc -w <<<"$qf")" "local: one queue file in the submission queue"
h_assert_grep "$qf" '^MDeferred: 451 4\.7\.1 Sending rate limit exceeded for dave@example\.com, try again later$' \
	"local: deferred with the 451 4.7.1 of the rate"
left=$(sed -n 's/^rRFC822; //p' "$qf")
h_ok "local: it holds the third recipient ($left), not one the sink got" \
	bash -c '[ -n "$1" ] && [[ " l1@example.net l2@example.net l3@example.net " == *" $1 "* ]] && [[ "$2" != *"<$1>"* ]]' \
	_ "$left" "$got"
qid=$(grep -o ' id [0-9A-Za-z]*;' "$file" | head -n 1 | sed 's/ id \(.*\);/\1/')
for f in direction=outbound client=127.0.0.1 account=dave@example.com rcpts=2 decision=accept; do
	h_assert_eq "${f#*=}" "$(h_milter_field "$qid" "${f%%=*}")" "local: the milter's line ($qid) says $f"
done
