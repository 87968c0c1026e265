#!/bin/bash
#
# The test bench itself, without bulkmilter (smtpd_milters empty): the
# private Postfix relays to the sink byte for byte; XCLIENT (IPv4 and
# IPv6), SASL, local submission through sendmail(1), a second transport
# to a second sink chosen by header_checks (milter_header_checks, which
# later tests use, sees only headers a milter adds), and the private Redis
# all work. When this fails, the other tests' failures say nothing about
# the milter.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_ok "redis answers on its unix socket" test "$(h_redis ping)" = PONG

h_sink_start second
printf '/^X-Route:\\s*second$/ FILTER second:%s\n' "$(h_sink_nexthop second)" >"$H_TMP/routes"
h_postfix_master "second unix - - n - - smtp -o smtp_bind_address=127.0.0.2"
h_sasl_user carol@example.org s3cret
h_postfix_start 'smtpd_milters =' "header_checks = pcre:$H_TMP/routes"

orig=$H_TMP/original.eml
/usr/bin/python3 "$H_LIB/mkmsg.py" passthrough "$orig" harness.1@example.com
h_send --to bob@example.net,carol@example.net --raw "$orig"
h_ok "plain: queued" test -n "$H_QID"
h_ok "plain: delivered" h_wait_sink main 1 20
got=$(h_sink_grep main harness.1@example.com)
/usr/bin/python3 "$H_LIB/mkmsg.py" strip-received "$got" "$H_TMP/rest.eml"
h_ok "plain: byte-for-byte intact below Received" cmp -s "$orig" "$H_TMP/rest.eml"

h_send --ip 192.0.2.10 --header 'Message-Id: <harness.2@example.com>'
h_ok "XCLIENT IPv4: queued" test -n "$H_QID"
h_assert_grep "$H_MAILLOG" "$H_QID: client=unknown\[192\.0\.2\.10\]" "XCLIENT IPv4: Postfix sees 192.0.2.10"

if grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
	h_send --ip 2001:db8::25
	h_ok "XCLIENT IPv6: queued" test -n "$H_QID"
	h_assert_grep "$H_MAILLOG" "$H_QID: client=unknown\[2001:db8::25\]" "XCLIENT IPv6: Postfix sees 2001:db8::25"
else
	h_skip "XCLIENT IPv6" "no IPv6 on this machine"
fi

h_send --ip 192.0.2.30 --sasl carol@example.org s3cret
h_ok "SASL: queued" test -n "$H_QID"
h_assert_grep "$H_MAILLOG" "$H_QID: client=.*sasl_username=carol@example\.org" "SASL: Postfix logs the login"

h_send --header 'X-Route: second' --header 'Message-Id: <harness.3@example.com>'
h_ok "second transport: delivered to sink second" h_wait_sink second 1 20
h_assert_grep "$(h_sink_files second)" '^X-Route: second' "second transport: it is the routed message"
h_assert_grep "${got%.eml}.env" '^peer: 127\.0\.0\.1 ' "main sink: peer 127.0.0.1"
h_assert_grep "$(h_sink_files second | sed 's/eml$/env/')" '^peer: 127\.0\.0\.2 ' \
	"second transport: smtp_bind_address 127.0.0.2 as the sink's peer"

printf 'From: dave@example.com\nTo: erin@example.net\nSubject: local\nMessage-Id: <harness.4@example.com>\n\nhello\n' |
	h_sendmail -f dave@example.com erin@example.net
h_ok "sendmail(1): accepted" test $? = 0
local_copy=$(h_wait_sink_grep main harness.4@example.com 20)
h_ok "sendmail(1): delivered" test -n "$local_copy"

h_ok "all delivered" h_wait_sink main 5 20
sleep 1
h_assert_eq 0 "$(h_queue_count)" "postqueue -j: the queue is empty"
