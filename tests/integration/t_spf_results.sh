#!/bin/bash
#
# Inbound SPF through a real Postfix: every check_host() result reaches
# the sink as "Authentication-Results: mx.test.example; spf=RESULT
# smtp.mailfrom=DOMAIN" (smtp.helo= for the null sender), as the first
# header, above Postfix's own Received (Postfix puts a header a milter
# inserts at index 0 above the Received header it prepends itself). IPv4
# and IPv6 clients (XCLIENT; loopback clients would always pass in
# libspf2). RFC 7208's limits: 10 DNS terms, two void lookups (the
# empty AAAA answers for an mx term's IPv4-only hosts are not void
# lookups). Authentication-Results with our authserv-id from the client
# are removed, others stay. "spf-fail none" (the default) only adds the
# header; "spf-fail reject" refuses MAIL FROM with 550 5.7.23, "tempfail"
# defers it with 451 4.7.23, "tag" delivers it with X-Bulk-SPF: fail; in
# Mode monitor, reject only logs and tags. With the DNS server gone, a new
# domain gets temperror and the mail is delivered.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/spf_it_lib.sh"

lookups=$(for i in $(seq 1 11); do echo "--host-record=h$i.lk.example,198.51.100.$i"; done)
a_terms() { for i in $(seq 1 "$1"); do printf 'a:h%d.lk.example ' "$i"; done; }
# shellcheck disable=SC2086 # one option a line
spf_dns_start \
	"--txt-record=pass.example,v=spf1 ip4:192.0.2.0/24 -all" \
	"--txt-record=fail.example,v=spf1 ip4:198.51.100.0/24 -all" \
	"--txt-record=softfail.example,v=spf1 ip4:198.51.100.0/24 ~all" \
	"--txt-record=neutral.example,v=spf1 ip4:198.51.100.0/24 ?all" \
	"--txt-record=nospf.example,site-verification=4711" \
	"--txt-record=syntax.example,v=spf1 ipv4:192.0.2.10 -all" \
	"--txt-record=ten.example,v=spf1 $(a_terms 10)-all" \
	"--txt-record=eleven.example,v=spf1 $(a_terms 11)-all" \
	"--txt-record=void2.example,v=spf1 a:nx1.void.example mx:nx2.void.example ip4:192.0.2.0/24 -all" \
	"--txt-record=void3.example,v=spf1 a:nx1.void.example mx:nx2.void.example exists:nx3.void.example ip4:192.0.2.0/24 -all" \
	"--txt-record=v4mx.example,v=spf1 mx ip6:2001:db8::/32 -all" \
	--mx-host=v4mx.example,mx1.v4mx.example,10 --mx-host=v4mx.example,mx2.v4mx.example,20 \
	--mx-host=v4mx.example,mx3.v4mx.example,30 --host-record=mx1.v4mx.example,198.51.100.21 \
	--host-record=mx2.v4mx.example,198.51.100.22 --host-record=mx3.v4mx.example,198.51.100.23 \
	"--txt-record=helo.example,v=spf1 ip4:192.0.2.10 -all" \
	"--txt-record=v6.example,v=spf1 ip6:2001:db8::/32 -all" \
	"--txt-record=temp.example,v=spf1 ip4:192.0.2.0/24 -all" \
	$lookups

# policy ACTION: one class for all inbound mail, "spf-fail ACTION"
policy() {
	h_policy <<EOF_POLICY
class inbound {
    spf-fail $1
}
assign inbound inbound
EOF_POLICY
}
# conf [SETTING...]: the test's bulkmilter.conf, plus SETTINGs
conf() {
	h_conf "AuthservID mx.test.example" "Resolver 127.0.0.1:$H_DNS_PORT" "DNSTimeout 500ms" "$@"
}

policy none
conf
h_milter_start
milter_pid=$H_MILTER_PID
h_postfix_start

# delivered NAME: the last spf_send was queued and arrived at the sink;
# its file in DFILE.
delivered() {
	DFILE=
	h_ok "$1: queued" test -n "$SPF_QID" || { h_diag "reply: $SPF_CODE $SPF_TEXT"; return 1; }
	h_ok "$1: delivered" spf_sink_file "$SPF_QID"
	DFILE=$SPF_FILE
}

# expect_ar NAME EXPECTED-AR-VALUE: the last message arrived with exactly
# one Authentication-Results, this one, as its first header.
expect_ar() {
	delivered "$1" || return
	h_assert_eq "$2" "$(spf_header "$DFILE" Authentication-Results)" \
		"$1: Authentication-Results: $2"
	h_assert_eq "Authentication-Results: $2" "$(spf_headers "$DFILE" | head -n 1)" \
		"$1: it is the first header"
}

# result NAME CLIENT MAIL-FROM RESULT: one message, one header.
result() {
	spf_send --xclient "$2" --from "$3" --tag "$(spf_tag "$1")"
	expect_ar "$1" "mx.test.example; spf=$4 smtp.mailfrom=${3#*@}"
}

result pass 192.0.2.10 alice@pass.example pass
h_assert_eq "Received: from client.example (unknown [192.0.2.10])" \
	"$(spf_headers "$DFILE" | sed -n 2p | sed 's/ by .*//')" \
	"pass: Postfix's Received is the second header"
h_ok "pass: milter log says spf=pass" grep -q ' spf=pass ' <<<"$(h_milter_line "$SPF_QID")"
h_assert_eq inbound "$(h_milter_field "$SPF_QID" direction)" "pass: milter log direction=inbound"

result fail 192.0.2.10 alice@fail.example fail
h_assert_eq 250 "$SPF_CODE" "fail with spf-fail none (default): message accepted"
result softfail 192.0.2.10 alice@softfail.example softfail
result neutral 192.0.2.10 alice@neutral.example neutral
result "none (no TXT record)" 192.0.2.10 alice@none.example none
result "none (TXT without v=spf1)" 192.0.2.10 alice@nospf.example none
result "permerror (unknown mechanism)" 192.0.2.10 alice@syntax.example permerror
result "10 DNS terms are allowed" 192.0.2.10 alice@ten.example fail
result "permerror (11 DNS terms)" 192.0.2.10 alice@eleven.example permerror
result "2 void lookups are allowed" 192.0.2.10 alice@void2.example pass
result "permerror (3 void lookups)" 192.0.2.10 alice@void3.example permerror
result "IPv6 client, 3 IPv4-only MX hosts: not void lookups" 2001:db8::25 alice@v4mx.example pass
spf_send --xclient 192.0.2.10 --from bob@PASS.Example --tag mixed-case
expect_ar "mixed-case MAIL FROM domain" "mx.test.example; spf=pass smtp.mailfrom=pass.example"

# RFC 5321 allows a quoted local part; the identity is still the domain.
spf_send --xclient 192.0.2.10 --from '"a b"@fail.example' --tag quoted-local-part
expect_ar "quoted local part with a space" "mx.test.example; spf=fail smtp.mailfrom=fail.example"

spf_send --xclient 192.0.2.10 --from "" --helo helo.example --tag "null-sender"
expect_ar "null sender: HELO identity" "mx.test.example; spf=pass smtp.helo=helo.example"
spf_send --xclient 192.0.2.99 --from "" --helo helo.example --tag "null-sender-2"
expect_ar "null sender, HELO not permitted" "mx.test.example; spf=fail smtp.helo=helo.example"

result "IPv6 client, ip6: permits it" 2001:db8::25 alice@v6.example pass
h_assert_eq 2001:db8::25 "$(h_milter_field "$SPF_QID" client)" "IPv6: milter log client=2001:db8::25"
result "IPv6 client, ip4-only record" 2001:db8::25 alice@pass.example fail

# Forged results: ours (any case, after comments, nested or not, or as a
# quoted-string, RFC 8601 2.2) go, others stay.
spf_send --xclient 192.0.2.10 --from alice@fail.example --tag forged \
	--header "Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=fail.example" \
	--header "Authentication-Results: (a (nested) comment) mx.test.example; spf=pass smtp.mailfrom=fail.example" \
	--header "Authentication-Results: \"mx.test.example\"; spf=pass smtp.mailfrom=fail.example" \
	--header "Authentication-Results: other.example; spf=pass smtp.mailfrom=fail.example" \
	--header "Authentication-Results: MX.Test.Example; dkim=pass header.d=fail.example" \
	--header "Authentication-Results: (forged) mx.test.example; spf=pass smtp.mailfrom=fail.example" \
	--header "Authentication-Results: mx.test.example.org; spf=pass smtp.mailfrom=fail.example"
delivered "forged Authentication-Results" && {
	h_assert_eq "$(printf '%s\n' \
		"mx.test.example; spf=fail smtp.mailfrom=fail.example" \
		"other.example; spf=pass smtp.mailfrom=fail.example" \
		"mx.test.example.org; spf=pass smtp.mailfrom=fail.example")" \
		"$(spf_header "$DFILE" Authentication-Results)" \
		"forged: only ours, other.example's and mx.test.example.org's remain"
	h_assert_eq "Authentication-Results: mx.test.example; spf=fail smtp.mailfrom=fail.example" \
		"$(spf_headers "$DFILE" | head -n 1)" "forged: ours is the first header"
}

# spf-fail reject: 550 5.7.23 at MAIL FROM, nothing delivered.
policy reject
h_ok "policy with spf-fail reject loaded (SIGHUP)" spf_milter_reload
spf_send --xclient 192.0.2.10 --from alice@fail.example --tag rejected
h_assert_eq 550 "$SPF_CODE" "spf-fail reject: MAIL FROM gets 550"
h_assert_eq "5.7.23 SPF check failed for fail.example from 192.0.2.10: fail.example does not designate 192.0.2.10 as permitted sender" \
	"$SPF_TEXT" "spf-fail reject: 5.7.23 and the reason"
h_assert_grep "$H_MAILLOG" 'milter-reject: MAIL from unknown\[192\.0\.2\.10\]: 550 5\.7\.23 ' \
	"spf-fail reject: Postfix logs the reject at MAIL FROM"
h_assert_grep "$H_MILTER_LOG" 'decision=reject-spf' "spf-fail reject: milter logs decision=reject-spf"
spf_send --xclient 192.0.2.10 --from '"a b"@fail.example' --tag rejected-quoted
h_assert_eq 550 "$SPF_CODE" "spf-fail reject: a quoted local part does not evade it (550)"
result "spf-fail reject: a pass still goes through" 192.0.2.10 carol@pass.example pass
result "spf-fail reject: a softfail still goes through" 192.0.2.10 carol@softfail.example softfail
h_assert_eq "" "$(h_sink_grep main '<rejected')" "spf-fail reject: nothing at the sink"

# spf-fail tempfail: 451 4.7.23 at MAIL FROM.
policy tempfail
h_ok "policy with spf-fail tempfail loaded (SIGHUP)" spf_milter_reload
spf_send --xclient 192.0.2.10 --from alice@fail.example --tag deferred
h_assert_eq 451 "$SPF_CODE" "spf-fail tempfail: MAIL FROM gets 451"
h_assert_eq "4.7.23 SPF check failed for fail.example from 192.0.2.10: fail.example does not designate 192.0.2.10 as permitted sender" \
	"$SPF_TEXT" "spf-fail tempfail: 4.7.23 and the reason"
h_assert_eq "" "$(h_sink_grep main '<deferred')" "spf-fail tempfail: nothing at the sink"

# spf-fail tag: delivered with X-Bulk-SPF: fail beside the header.
policy tag
h_ok "policy with spf-fail tag loaded (SIGHUP)" spf_milter_reload
result "spf-fail tag" 192.0.2.10 alice@fail.example fail
h_assert_eq fail "$(spf_header "$DFILE" X-Bulk-SPF)" "spf-fail tag: X-Bulk-SPF: fail"
result "spf-fail tag: a pass is not tagged" 192.0.2.10 carol@pass.example pass
h_assert_eq "" "$(spf_header "$DFILE" X-Bulk-SPF)" "spf-fail tag: a pass has no X-Bulk-SPF"

# Mode monitor with spf-fail reject: delivered and tagged; the log says
# what enforce would have done.
policy reject
conf "Mode monitor"
h_ok "Mode monitor and spf-fail reject loaded (SIGHUP)" spf_milter_reload
result "monitor, spf-fail reject" 192.0.2.10 alice@fail.example fail
h_assert_eq 250 "$SPF_CODE" "monitor, spf-fail reject: MAIL FROM accepted"
h_assert_eq fail "$(spf_header "$DFILE" X-Bulk-SPF)" "monitor, spf-fail reject: X-Bulk-SPF: fail"
h_assert_grep "$H_MILTER_LOG" 'NOQUEUE: monitor: spf=fail from 192\.0\.2\.10: would reject$' \
	"monitor, spf-fail reject: log says it would have rejected"
h_assert_eq accept "$(h_milter_field "$SPF_QID" decision)" "monitor, spf-fail reject: decision=accept"

# DNS server gone: temperror, delivered.
h_dns_stop
result "DNS server stopped: temperror" 192.0.2.10 alice@temp.example temperror
h_assert_eq 250 "$SPF_CODE" "DNS server stopped: message accepted"

h_ok "milter (pid $milter_pid) is still running" h__alive "$milter_pid"
