#!/bin/bash
#
# Inbound SPF through a private Sendmail 8.17 (tests/lib/sendmail.sh,
# the README's .mc snippet): the client is 192.0.2.1, not an
# InternalHosts address, so its mail is inbound. Sendmail has no
# XCLIENT and libspf2 passes every loopback client, so Sendmail, the
# sink and the client run in a network namespace whose lo also has
# 192.0.2.1 (sm_netns); bulkmilter and the DNS server (dnsmasq, the SPF
# records) stay outside.
#
# Each message reaches the sink with exactly one "Authentication-Results:
# mx.test.example; spf=RESULT smtp.mailfrom=DOMAIN" (pass, fail,
# softfail, none), and the milter's line says direction=inbound and
# spf=RESULT. An Authentication-Results with our authserv-id that the
# client sent is removed (only ours arrives); one with another
# authserv-id stays. Sendmail puts the header the milter inserts at
# index 0 above its own Received header, as Postfix does.
#
# The same client after AUTH PLAIN as alice@example.com (Sendmail's own
# sasldb, sm_sasl_user) is outbound: Sendmail hands {auth_authen} to
# the milter at MAIL FROM, the line says sasl=alice@example.com,
# direction=outbound, class=standard, account=alice@example.com, and
# the message gets no Authentication-Results.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/sendmail.sh
. "$(dirname "$0")/../lib/sendmail.sh"

sm_need_debs

sm_netns 192.0.2.1 || h_fatal "no network namespace for Sendmail"
h_dns_start \
	"--txt-record=pass.example,v=spf1 ip4:192.0.2.0/24 -all" \
	"--txt-record=fail.example,v=spf1 ip4:198.51.100.0/24 -all" \
	"--txt-record=softfail.example,v=spf1 ip4:198.51.100.0/24 ~all"
h_policy <<'EOF'
class inbound {
    spf-fail none
}
class standard {
    account     sasl sender
}
assign inbound inbound
assign outbound standard
EOF
h_conf "AuthservID mx.test.example"
h_milter_start
sm_sink_start main
sm_sasl_user "$SM_ROOT" alice@example.com 'al1ce-pw' || h_fatal "sm_sasl_user failed"
sm_build "$SM_ROOT" --smtpd "$H_SMTP_PORT" --relay "${H_SINK_PORT[main]}" \
	--socket "$H_MILTER_SOCKET" --sasl || h_fatal "sm_build failed"
sm_start "$SM_ROOT" || h_fatal "sm_start failed"

# send TAG FROM [smtp_driver options]: one message; QID and FILE (the
# sink's copy) set, empty when it was not accepted or did not arrive.
send() {
	local tag=$1 from=$2
	shift 2
	FILE=
	sm_smtp --from "$from" --to bob@example.net --tag "$tag" "$@" >"$H_TMP/$tag.out"
	QID=$(awk '$3 == "data" && $4 == 250 {print $6}' "$H_TMP/$tag.out")
	h_ok "$tag: accepted" test -n "$QID" || { h_diag "$(cat "$H_TMP/$tag.out")"; return 1; }
	h_wait_sink_grep main " id $QID" 30 >/dev/null
	FILE=$(h_sink_grep main " id $QID" | head -n 1)
	h_ok "$tag: delivered" test -n "$FILE"
}
# expect TAG RESULT DOMAIN: the last message has exactly our header.
expect() {
	h_assert_eq "mx.test.example; spf=$2 smtp.mailfrom=$3" \
		"$(h_header "$FILE" Authentication-Results)" "$1: Authentication-Results spf=$2 smtp.mailfrom=$3"
	h_assert_eq "Authentication-Results: mx.test.example; spf=$2 smtp.mailfrom=$3" \
		"$(h_headers "$FILE" | head -n 1)" "$1: it is the first header, above Sendmail's Received"
	h_assert_eq inbound "$(h_milter_field "$QID" direction)" "$1: the milter's line says direction=inbound"
	h_assert_eq "$2" "$(h_milter_field "$QID" spf)" "$1: and spf=$2"
}

send pass alice@pass.example && expect pass pass pass.example
h_assert_eq 192.0.2.1 "$(h_milter_field "$QID" client)" "pass: the client is 192.0.2.1"
send fail mallory@fail.example && expect fail fail fail.example
send softfail eve@softfail.example && expect softfail softfail softfail.example
send none carol@nospf.example && expect none none nospf.example

send forged mallory@fail.example \
	--header 'Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=fail.example' \
	--header 'Authentication-Results: other.example; spf=pass smtp.mailfrom=fail.example' &&
	h_assert_eq "$(printf '%s\n' 'mx.test.example; spf=fail smtp.mailfrom=fail.example' \
		'other.example; spf=pass smtp.mailfrom=fail.example')" \
		"$(h_header "$FILE" Authentication-Results | sort)" \
		"forged: ours replaced the client's, the other authserv-id's stays"

send sasl someone@fail.example --auth 'alice@example.com:al1ce-pw' &&
	h_assert_eq "" "$(h_header "$FILE" Authentication-Results)" "sasl: no Authentication-Results"
for f in sasl=alice@example.com direction=outbound class=standard account=alice@example.com; do
	h_assert_eq "${f#*=}" "$(h_milter_field "$QID" "${f%%=*}")" "sasl: the milter's line says $f"
done
