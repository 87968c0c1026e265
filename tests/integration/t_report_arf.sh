#!/bin/bash
#
# Abuse reports (ARF, RFC 5965) arriving inbound, tied to the account by
# the Feedback-ID of the original they quote:
#   - an ARF report (feedback-type abuse) quoting the headers of a message
#     news@example.com sent suppresses the complaining recipient for that
#     account, and only for that account; the report is delivered;
#   - the same report with the token altered by one character (a forged
#     Feedback-ID) suppresses nothing, nor does one whose token names
#     another class;
#   - a complaint about an account whose class has "suppress hard-bounce"
#     only suppresses nothing; a not-spam report suppresses nothing;
#   - the Feedback-ID is inside the DKIM signature (h= names it, the
#     signature verifies with OpenDKIM's verifier);
#   - "suspend-if complaint-rate > 10% min 2/1d": one complaint about an
#     account that sent 3 recipients suspends it (33%), with events.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/dkim_it_lib.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class newsletter {
    account     sasl sender
    suppress    hard-bounce complaint
}
class bouncesonly {
    account     sasl sender
    suppress    hard-bounce
}
class fbl {
    account     sender
    suspend-if  complaint-rate > 10% min 2/1d
    suspended   reject
}
assign sender  news@example.com     newsletter
assign sender  loop@example.com     fbl
assign sender  shop@example.com     newsletter
assign sender  other@example.com    bouncesonly
EOF_POLICY
dkim_rsa_key k
echo "k._domainkey.example.com example.com:k:$DKIM_KEYS/k.private" >"$H_TMP/KeyTable"
echo '*@example.com k._domainkey.example.com' >"$H_TMP/SigningTable"
sf_webhook_start
h_conf 'InternalHosts 127.0.0.0/8' "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable" "$SF_NOTIFY"
h_milter_start
h_postfix_start

CTL=("$H_BULKMILTERCTL" -c "$H_TMP/bulkmilter.conf")
list() { "${CTL[@]}" suppress export "$1" | sort | tr '\n' ' '; }

# the Feedback-ID of a message each account sends (from the sink)
feedback_of() {
	local n
	n=$(h_sink_count main)
	h_send --from "$1" --to someone@example.net >/dev/null || h_fatal "send as $1"
	h_wait_sink main $((n + 1)) 20 || h_fatal "no message from $1 at the sink"
	h_header "$(h_sink_files main | tail -n 1)" Feedback-ID
}
FID_NEWS=$(feedback_of news@example.com)
FID_OTHER=$(feedback_of other@example.com)
h_ok "news@example.com's mail carries a Feedback-ID ($FID_NEWS)" \
	grep -Eq '^newsletter:[A-Za-z0-9_-]+:bulkmilter$' <<<"$FID_NEWS"
signed=$(h_sink_files main | tail -n 1)
h_ok "its DKIM signature's h= names feedback-id" \
	bash -c 'h_sig=$(sed -n "/^DKIM-Signature:/,/^[^ \t]/p" "$1" | tr -d " \t\r\n"); grep -qi "h=[^;]*feedback-id" <<<"$h_sig"' _ "$signed"
h_ok "the signature verifies (OpenDKIM's verifier)" dkim_verify --opendkim "$signed"

# arf FILE TYPE RCPT FEEDBACK-ID: an ARF report as a feedback loop sends it
arf() {
	cat >"$1" <<EOF_ARF
From: fbl@isp.example
To: abuse@example.com
Subject: FW: December news
Date: Wed, 2 Dec 2026 19:45:00 +0000
Message-ID: <arf-$RANDOM@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="arf_boundary"

--arf_boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report.

--arf_boundary
Content-Type: message/feedback-report

Feedback-Type: $2
User-Agent: FBL/1.0
Version: 1
Original-Mail-From: <news@example.com>
Original-Rcpt-To: <$3>
Reported-Domain: example.com

--arf_boundary
Content-Type: text/rfc822-headers

From: News <news@example.com>
To: <$3>
Subject: December news
Feedback-ID: $4

--arf_boundary--
EOF_ARF
	sed -i 's/$/\r/' "$1"
}
inbound_report() {	# FILE: sends it from outside, waits for its log line
	h_log_mark "$H_MILTER_LOG"
	h_send --ip 192.0.2.1 --from fbl@isp.example --to abuse@example.com --raw "$1" ||
		h_fatal "the report was not accepted"
	h_wait_log "$H_MILTER_LOG" "$H_QID: report=arf" 20
}

arf "$H_TMP/abuse.eml" abuse heidi@example.net "$FID_NEWS"
n=$(h_sink_count main)
inbound_report "$H_TMP/abuse.eml"
h_assert_grep "$H_MILTER_LOG" "$H_QID: report=arf class=newsletter account=news@example.com .*feedback_type=abuse suppress=heidi@example.net new=1 decision=suppressed" \
	"the ARF report suppresses heidi@example.net for news@example.com"
h_assert_eq "heidi@example.net " "$(list news@example.com)" "news@example.com's list holds heidi"
h_assert_eq "" "$(list shop@example.com)" "shop@example.com (same class) has no entry"
h_assert_eq "" "$(list other@example.com)" "other@example.com has no entry"
h_wait_sink main $((n + 1)) 20
h_assert_grep "$(h_sink_files main | tail -n 1)" 'report-type=feedback-report' "the report is delivered"

# forged: one character of the token changed
token=${FID_NEWS#newsletter:}
token=${token%:bulkmilter}
c=${token:5:1}
[ "$c" = A ] && r=B || r=A
forged="newsletter:${token:0:5}$r${token:6}:bulkmilter"
arf "$H_TMP/forged.eml" abuse ivan@example.net "$forged"
inbound_report "$H_TMP/forged.eml"
h_assert_grep "$H_MILTER_LOG" "$H_QID: report=arf rcpts=1 hard=0 feedback_id=unverified decision=ignored" \
	"a forged Feedback-ID is not verified and ignored"
arf "$H_TMP/swapped.eml" abuse ivan@example.net "bouncesonly:$token:bulkmilter"
inbound_report "$H_TMP/swapped.eml"
h_assert_grep "$H_MILTER_LOG" "$H_QID: report=arf rcpts=1 hard=0 feedback_id=unverified decision=ignored" \
	"a token put under another class's name is not verified"
h_assert_eq "heidi@example.net " "$(list news@example.com)" "forged reports suppressed nothing"

# a class without "suppress complaint", and a not-spam report
arf "$H_TMP/other.eml" abuse judy@example.net "$FID_OTHER"
inbound_report "$H_TMP/other.eml"
h_assert_grep "$H_MILTER_LOG" "$H_QID: report=arf class=bouncesonly account=other@example.com .*decision=none" \
	"a complaint about a class with suppress hard-bounce only changes nothing"
arf "$H_TMP/notspam.eml" not-spam karl@example.net "$FID_NEWS"
inbound_report "$H_TMP/notspam.eml"
h_assert_grep "$H_MILTER_LOG" "$H_QID: report=arf class=newsletter account=news@example.com .*feedback_type=not-spam decision=none" \
	"a not-spam report changes nothing"
h_assert_eq "" "$(list other@example.com)" "other@example.com's list is still empty"
h_assert_eq "heidi@example.net " "$(list news@example.com)" "news@example.com's list holds heidi only"

# complaint-rate: 3 recipients sent, one complaint
n=$(h_sink_count main)
h_send --from loop@example.com --to m1@example.net,m2@example.net,m3@example.net
h_wait_sink main $((n + 1)) 20
FID_LOOP=$(h_header "$(h_sink_files main | tail -n 1)" Feedback-ID)
h_ok "a class with a complaint-rate rule carries a Feedback-ID ($FID_LOOP)" \
	grep -Eq '^fbl:[A-Za-z0-9_-]+:bulkmilter$' <<<"$FID_LOOP"
arf "$H_TMP/loop.eml" abuse m2@example.net "$FID_LOOP"
inbound_report "$H_TMP/loop.eml"
h_assert_grep "$H_MILTER_LOG" 'account=loop@example.com class=fbl suspend-if complaint-rate > 10% min 2/1d: 1 of 3 recipients sent: tripped' \
	"one complaint of 3 recipients trips complaint-rate > 10% min 2/1d"
h_assert_eq 1 "$(sf_wait_events 1 event=suspended account=loop@example.com 'by=complaint-rate > 10% min 2/1d')" \
	"a suspended event"
h_send --from loop@example.com --to m1@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* 550 5\.7\.1 Account loop@example\.com is suspended' "the account's next message is refused"
