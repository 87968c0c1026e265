#!/bin/bash
#
# The signer's header limits (SIGNER_HEADERS_MAX 1000 header fields,
# SIGNER_HEADER_BYTES_MAX 256 KB), through a real Postfix: a message
# with more or larger headers than the signer takes is accepted unsigned
# and logged, never deferred (SPEC "Always").
#
# The milter counts the header fields the client wrote: Postfix does not
# hand its own Received: field to smtpd milters.
#
# - 1,000 header fields: signed, and the signature verifies with
#   python3-dkim and OpenDKIM's verifier.
# - 1,001 header fields, List-Id and From just above the closing
#   Message-ID: 250, delivered without a DKIM-Signature, decision=accept and
#   sign_reason="more than 1000 header fields" in the log line; the From
#   beyond the limit still counts for alignment (aligned=yes) and the
#   List-Id beyond it for the class's "bulk header List-Id" (bulk=yes,
#   X-Bulk-Class at the sink).
# - The same through SASL from an outside address (XCLIENT 192.0.2.10).
# - 300 header fields of ~940 bytes (~270 KB; each under Postfix's
#   header_size_limit of 100 KB a field): 250, delivered unsigned,
#   sign_reason="headers larger than 256 KB", bulk and aligned as above.
# - No message is answered 4.3.0 (the deferral this used to be).

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

dkim_rsa_key a
echo "a._domainkey.example.com example.com:a:$DKIM_KEYS/a.private" >"$H_TMP/KeyTable"
echo '*@example.com a._domainkey.example.com' >"$H_TMP/SigningTable"
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
h_policy 'class standard {' '    account sasl sender' '    bulk header List-Id' '}' \
	'assign outbound standard'
h_sasl_user carol@example.org s3cret
h_milter_start
h_postfix_start

# many NAME COUNT [PAD [h_send options...]]: a message whose header has
# COUNT fields as the client writes it: Date, To, Subject, X-Pad-N
# fields, List-Id, From, Message-ID. A PAD > 0 makes each X-Pad-N field
# PAD lines of 90 characters, folded. Sent and delivered (DKIM_QID,
# DKIM_FILE).
many() {
	local name=$1 count=$2 pad=${3:-0} fields=() i j value line
	shift $(($# < 3 ? $# : 3))
	printf -v line '%090d' 0
	fields+=("To: bob@example.net" "Subject: $name")
	for ((i = 1; i <= count - 6; i++)); do
		value="X-Pad-$i: $i"
		for ((j = 0; j < pad; j++)); do value+=$'\r\n\t'$line; done
		fields+=("$value")
	done
	fields+=("List-Id: <news.example.com>" "From: Alice <alice@example.com>")
	dkim_msg message "$H_TMP/$name.eml" "$name@test.example" "${fields[@]}"
	h_assert_eq "$count" "$(dkim_msg headers "$H_TMP/$name.eml" | wc -l)" \
		"$name: the client writes $count header fields"
	dkim_send "$H_TMP/$name.eml" "$@"
	h_ok "$name: accepted (250) and delivered" test -n "$DKIM_FILE"
}

# signed NAME: one signature, in the log and at the sink, that verifies.
signed() {
	[ -n "$DKIM_FILE" ] || return 0
	h_assert_eq "d=example.com,s=a,a=rsa-sha256" "$(dkim_signed "$DKIM_QID")" \
		"$1: log says signed=d=example.com,s=a,a=rsa-sha256"
	h_assert_eq "a=rsa-sha256 d=example.com s=a" "$(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-3)" \
		"$1: one signature at the sink"
	dkim_verify --opendkim "$DKIM_FILE"
	h_assert_eq 0 "$?" "$1: verifies with python3-dkim and OpenDKIM"
}

# unsigned NAME REASON: accepted, delivered without a signature, the log
# line says why, and the facts past the limit still count.
unsigned() {
	[ -n "$DKIM_FILE" ] || return 0
	h_assert_eq accept "$(h_milter_field "$DKIM_QID" decision)" "$1: log says decision=accept"
	h_assert_eq "no($2)" "$(dkim_signed "$DKIM_QID")" "$1: log says signed=no, sign_reason=\"$2\""
	h_assert_eq "" "$(dkim_msg sigs "$DKIM_FILE")" "$1: no DKIM-Signature at the sink"
	h_assert_eq yes "$(h_milter_field "$DKIM_QID" aligned)" \
		"$1: the From past the limit counts for alignment (aligned=yes)"
	h_assert_eq "yes standard" \
		"$(h_milter_field "$DKIM_QID" bulk) $(h_header "$DKIM_FILE" X-Bulk-Class)" \
		"$1: the List-Id past the limit makes it bulk (bulk=yes, X-Bulk-Class: standard)"
}

# ---- header fields: 1,000 are signed, 1,001 are not
many at-limit 1000
signed "1000 header fields"
many over-limit 1001
unsigned "1001 header fields" "more than 1000 header fields"
many over-limit-sasl 1001 0 --ip 192.0.2.10 --sasl carol@example.org s3cret
[ -z "$DKIM_FILE" ] ||
	h_assert_eq outbound "$(h_milter_field "$DKIM_QID" direction)" "1001 via SASL: direction=outbound"
unsigned "1001 header fields via SASL" "more than 1000 header fields"

# ---- header bytes
many big-headers 300 10
h_ok "300 fields of ~940 bytes: over 256 KB of header" \
	test "$(sed '/^\r$/q' "$H_TMP/big-headers.eml" | wc -c)" -gt $((256 * 1024))
unsigned "over 256 KB of headers" "headers larger than 256 KB"

h_assert_no_grep "$H_MAILLOG" '4\.3\.0 Temporary signing failure' "no message was deferred with 4.3.0"
