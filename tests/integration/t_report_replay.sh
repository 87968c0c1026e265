#!/bin/bash
#
# A report is a claim anyone who received one of the account's messages
# can make (the Feedback-ID is the same on every message), so a bounce or
# a complaint counts toward suspend-if once per recipient a day:
#   - "complaint-rate > 20% min 5/1d", 10 recipients sent: the same ARF
#     report (complaint about m2) read three times counts 1, not 3 (the
#     second and third say "already counted today"), nothing trips; two
#     more complaints about other recipients make 3 of 10: tripped;
#   - "bounce-rate > 20% min 5/1d", 10 recipients sent: a DSN from outside
#     with two hard bounces read three times counts 2, not 6; a DSN of b2
#     (counted) and b3 (new) adds 1: 3 of 10, tripped;
#   - a complaint naming no recipient counts once a day.
# Fails before the per-recipient count: the third copy of the ARF report
# trips (3 of 10), the second copy of the DSN trips (4 of 10).

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class fbl {
    account     sender
    suspend-if  complaint-rate > 20% min 5/1d
    suspended   reject
}
class bl {
    account     sender
    suspend-if  bounce-rate > 20% min 5/1d
    suspended   reject
}
assign sender  loop@example.com     fbl
assign sender  list@example.com     bl
EOF_POLICY
h_conf 'InternalHosts 127.0.0.0/8'
h_milter_start
h_postfix_start

# sends 10 recipients as $1 and prints the Feedback-ID they carry
send10() {
	local n to=
	for i in 1 2 3 4 5 6 7 8 9 10; do to+="${to:+,}$2$i@example.net"; done
	n=$(h_sink_count main)
	h_send --from "$1" --to "$to" >/dev/null || h_fatal "send as $1"
	h_wait_sink main $((n + 1)) 20 || h_fatal "no message from $1 at the sink"
	h_header "$(h_sink_files main | tail -n 1)" Feedback-ID
}
# arf FILE RCPT FEEDBACK-ID
arf() {
	cat >"$1" <<EOF_ARF
From: fbl@isp.example
To: abuse@example.com
Subject: FW: news
Message-ID: <arf-$RANDOM@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="arf_boundary"

--arf_boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report.

--arf_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FBL/1.0
Version: 1
Original-Rcpt-To: <$2>

--arf_boundary
Content-Type: text/rfc822-headers

From: <loop@example.com>
To: <$2>
Subject: news
Feedback-ID: $3

--arf_boundary--
EOF_ARF
	sed -i 's/$/\r/' "$1"
}
# dsn FILE FEEDBACK-ID RCPT...: a remote MTA's delivery status, hard bounces
dsn() {
	local f=$1 fid=$2 r
	shift 2
	{
		printf '%s\n' 'From: MAILER-DAEMON@mx.example.net' 'To: list@example.com' \
			'Subject: Undelivered Mail Returned to Sender' "Message-ID: <dsn-$RANDOM@mx.example.net>" \
			'MIME-Version: 1.0' 'Content-Type: multipart/report; report-type=delivery-status;' \
			'	boundary="dsn_boundary"' '' '--dsn_boundary' 'Content-Type: text/plain' '' \
			'Delivery failed.' '' '--dsn_boundary' 'Content-Type: message/delivery-status' '' \
			'Reporting-MTA: dns; mx.example.net'
		for r; do
			printf '%s\n' '' "Final-Recipient: rfc822; $r" 'Action: failed' 'Status: 5.1.1'
		done
		printf '%s\n' '' '--dsn_boundary' 'Content-Type: text/rfc822-headers' '' \
			'From: <list@example.com>' 'Subject: news' "Feedback-ID: $fid" '' '--dsn_boundary--'
	} | sed 's/$/\r/' >"$f"
}
inbound_report() {	# FILE KIND: sends it from outside, waits for its log line
	h_log_mark "$H_MILTER_LOG"
	h_send --ip 192.0.2.1 --from reports@isp.example --to abuse@example.com --raw "$1" ||
		h_fatal "the report was not accepted"
	h_wait_log "$H_MILTER_LOG" "$H_QID: report=$2" 20
}

FID_LOOP=$(send10 loop@example.com m)
h_ok "loop@example.com's mail carries a Feedback-ID ($FID_LOOP)" grep -Eq '^fbl:[A-Za-z0-9_-]+:bulkmilter$' <<<"$FID_LOOP"
RULE='complaint-rate > 20% min 5/1d'
arf "$H_TMP/m2.eml" m2@example.net "$FID_LOOP"
inbound_report "$H_TMP/m2.eml" arf
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 1 of 10 recipients sent$" \
	"the first complaint about m2 counts: 1 of 10"
for copy in 2 3; do
	inbound_report "$H_TMP/m2.eml" arf
	h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 1 of 1 reported recipients already counted today$" \
		"copy $copy of the same complaint: already counted"
	h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 1 of 10 recipients sent$" \
		"copy $copy: still 1 of 10, not tripped"
done
h_send --from loop@example.com --to m1@example.net
h_assert_eq 0 $? "loop@example.com is not suspended by replayed reports"
arf "$H_TMP/m3.eml" m3@example.net "$FID_LOOP"
inbound_report "$H_TMP/m3.eml" arf
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 2 of 11 recipients sent$" \
	"a complaint about m3 counts: 2 of 11"
arf "$H_TMP/m4.eml" m4@example.net "$FID_LOOP"
inbound_report "$H_TMP/m4.eml" arf
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 3 of 11 recipients sent: tripped$" \
	"a complaint about m4: 3 of 11 is over 20%: tripped"
h_send --from loop@example.com --to m1@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* 550 5\.7\.1 Account loop@example\.com is suspended' "then the account is suspended"
# a complaint naming no recipient (no Original-Rcpt-To, the quoted To has two): once a day
arf "$H_TMP/anon.eml" m5@example.net "$FID_LOOP"
sed -i -e '/^Original-Rcpt-To:/d' -e 's/^To: <m5@example.net>/To: <m5@example.net>, <m6@example.net>/' "$H_TMP/anon.eml"
inbound_report "$H_TMP/anon.eml" arf
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 1 of 0 recipients sent$" \
	"a complaint naming no recipient counts once (the counts started afresh at the trip)"
inbound_report "$H_TMP/anon.eml" arf
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=loop@example.com class=fbl suspend-if $RULE: 1 of 1 reported recipients already counted today$" \
	"a second complaint naming no recipient: already counted today"

FID_LIST=$(send10 list@example.com b)
RULE='bounce-rate > 20% min 5/1d'
dsn "$H_TMP/b12.eml" "$FID_LIST" b1@example.net b2@example.net
inbound_report "$H_TMP/b12.eml" dsn
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=list@example.com class=bl suspend-if $RULE: 2 of 10 recipients sent$" \
	"a DSN with two hard bounces counts 2 of 10"
for copy in 2 3; do
	inbound_report "$H_TMP/b12.eml" dsn
	h_assert_grep "$H_MILTER_LOG" "$H_QID: account=list@example.com class=bl suspend-if $RULE: 2 of 2 reported recipients already counted today$" \
		"copy $copy of the DSN: both already counted"
	h_assert_grep "$H_MILTER_LOG" "$H_QID: account=list@example.com class=bl suspend-if $RULE: 2 of 10 recipients sent$" \
		"copy $copy: still 2 of 10"
done
dsn "$H_TMP/b23.eml" "$FID_LIST" b2@example.net B3@Example.NET
inbound_report "$H_TMP/b23.eml" dsn
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=list@example.com class=bl suspend-if $RULE: 1 of 2 reported recipients already counted today$" \
	"a DSN of b2 and b3: b2 already counted"
h_assert_grep "$H_MILTER_LOG" "$H_QID: account=list@example.com class=bl suspend-if $RULE: 3 of 10 recipients sent: tripped$" \
	"b3 counts: 3 of 10 is over 20%: tripped"
