#!/bin/bash
#
# Direction: a SASL-authenticated client and an InternalHosts address are
# outbound; any other address (IPv4 or IPv6) is inbound. XCLIENT makes
# Postfix present the address to the milter's connect callback (swaks
# itself connects from 127.0.0.1, which is internal).

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
}
class other { }
assign outbound standard
assign inbound other
EOF_POLICY
h_conf 'InternalHosts 127.0.0.0/8, 198.51.100.0/24'
h_sasl_user carol@example.org s3cret
h_milter_start
h_postfix_start

# expect NAME DIRECTION CLASS ACCOUNT: check the last message's log line.
expect() {
	local name=$1
	h_ok "$name: accepted" test -n "$H_QID" || { h_diag "$(grep '^<\*\*' "$H_SEND_LOG")"; return; }
	h_assert_eq "$2" "$(h_milter_field "$H_QID" direction)" "$name: direction=$2"
	h_assert_eq "$3" "$(h_milter_field "$H_QID" class)" "$name: class=$3"
	[ -n "$4" ] && h_assert_eq "$4" "$(h_milter_field "$H_QID" account)" "$name: account=$4"
}

h_send --ip 192.0.2.20 --sasl carol@example.org s3cret --from alice@example.com
expect "SASL client at an external address" outbound standard carol@example.org

h_send --ip 198.51.100.7 --from dave@example.com
expect "InternalHosts address 198.51.100.7" outbound standard dave@example.com

h_send --from erin@example.com
expect "loopback 127.0.0.1 (InternalHosts)" outbound standard erin@example.com

h_send --ip 192.0.2.10 --from frank@example.net --to alice@example.com
expect "external IPv4 192.0.2.10" inbound other ""

if grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
	h_send --ip 2001:db8::25 --from grace@example.net --to alice@example.com
	expect "external IPv6 2001:db8::25" inbound other ""
else
	h_skip "external IPv6 2001:db8::25 is inbound" "no IPv6 on this machine"
fi

h_send --ip 192.0.2.30 --sasl carol@example.org wrong --from mallory@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* +535 ' "wrong password: AUTH fails"

h_ok "all accepted messages arrive" h_wait_sink main 5 20
