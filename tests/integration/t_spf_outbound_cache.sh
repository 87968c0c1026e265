#!/bin/bash
#
# Outbound SPF: for mail from an InternalHosts address or a SASL client,
# the milter checks the MAIL FROM domain's SPF against each
# EgressAddresses entry and relaxed alignment of MAIL FROM with From, and
# logs "egress=ADDR:RESULT aligned=yes|no"; it adds no
# Authentication-Results to outbound mail. The DNS cache: 100 inbound
# messages from one domain make exactly one TXT query for it.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/spf_it_lib.sh"

spf_dns_start \
	"--txt-record=bounces.example.com,v=spf1 ip4:203.0.113.0/24 -all" \
	"--txt-record=example.net,v=spf1 ip4:203.0.113.0/24 -all" \
	"--txt-record=other.example.org,v=spf1 ip4:192.0.2.0/24 -all" \
	"--txt-record=cache.example,v=spf1 ip4:192.0.2.0/24 -all"

h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
}
class inbound { }
assign outbound standard
assign inbound inbound
EOF_POLICY
h_conf <<EOF_CONF
AuthservID mx.test.example
Resolver 127.0.0.1:$H_DNS_PORT
DNSTimeout 500ms
InternalHosts 127.0.0.0/8, 198.51.100.0/24
EgressAddresses 203.0.113.20
EOF_CONF
h_sasl_user news@example.com s3cret
h_milter_start
milter_pid=$H_MILTER_PID
h_postfix_start

# outbound NAME EGRESS ALIGNED: the last message (its queue ID in QID) is
# logged outbound with these egress and aligned fields and arrives
# without an Authentication-Results header.
outbound() {
	h_ok "$1: queued" test -n "$QID" || return
	h_assert_eq outbound "$(h_milter_field "$QID" direction)" "$1: direction=outbound"
	h_assert_eq "$2" "$(h_milter_field "$QID" egress)" "$1: egress=$2"
	h_assert_eq "$3" "$(h_milter_field "$QID" aligned)" "$1: aligned=$3"
	h_assert_eq - "$(h_milter_field "$QID" spf)" "$1: no inbound SPF (spf=-)"
	h_ok "$1: delivered" spf_sink_file "$QID" || return
	h_assert_eq "" "$(spf_header "$SPF_FILE" Authentication-Results)" "$1: no Authentication-Results"
}

spf_send --xclient 198.51.100.7 --from news@bounces.example.com \
	--header "From: News <news@example.com>" --tag internal-aligned
QID=$SPF_QID
outbound "internal host, From example.com" 203.0.113.20:pass yes

spf_send --xclient 198.51.100.7 --from news@bounces.example.com \
	--header "From: News <news@example.net>" --tag internal-unaligned
QID=$SPF_QID
outbound "internal host, From example.net" 203.0.113.20:pass no

spf_send --xclient 198.51.100.7 --from news@other.example.org \
	--header "From: <news@other.example.org>" --tag internal-egress-fail
QID=$SPF_QID
outbound "internal host, egress not in the SPF record" 203.0.113.20:fail yes

h_send --ip 192.0.2.50 --sasl news@example.com s3cret --from news@bounces.example.com \
	--header "From: News <news@example.com>"
QID=$H_QID
outbound "SASL client at 192.0.2.50, From example.com" 203.0.113.20:pass yes
h_assert_eq news@example.com "$(h_milter_field "$QID" sasl)" "SASL client: sasl=news@example.com"

# The cache: 100 messages, 4 sessions, one MAIL FROM domain.
start=${EPOCHREALTIME/./}
spf_smtp --xclient 192.0.2.10 --from list@cache.example --sessions 4 --messages 25 \
	--tag cache >/dev/null
h_diag "100 messages sent in $(( (${EPOCHREALTIME/./} - start) / 1000 )) ms"
h_assert_eq 100 "$(grep -c '^[0-9]* 250 ' "$SPF_SMTP_OUT")" "cache: all 100 messages accepted"
h_assert_eq 100 "$(grep -c 'from=<list@cache\.example> .* spf=pass ' "$H_MILTER_LOG")" \
	"cache: the milter logs spf=pass for all 100"
h_assert_eq 1 "$(spf_dns_queries TXT cache.example)" "cache: exactly one TXT query for cache.example"
h_ok "cache: all 100 arrive at the sink" h_wait_sink main 104 60
h_assert_eq 100 "$(grep -l 'spf=pass smtp.mailfrom=cache\.example' "$H_TMP"/sink-main/*.eml | wc -l)" \
	"cache: all 100 arrive with spf=pass smtp.mailfrom=cache.example"

h_ok "milter (pid $milter_pid) is still running" h__alive "$milter_pid"
