#!/bin/bash
#
# bulk-require, end to end, with DKIM signing and a test DNS server. Each
# check alone (one class per check, picked by the client address the
# test presents through XCLIENT), passing and failing:
#   dkim-aligned      signed d=example.com, From @example.com or
#                     @news.example.com: pass; From @example.net (signed,
#                     but by d=example.com): fail
#   spf-aligned       MAIL FROM @bounces.example.com, whose SPF includes
#                     the egress address, From @example.com: pass; an
#                     SPF that leaves the egress address out: fail; MAIL
#                     FROM in another organizational domain: fail
#   list-unsubscribe  https + List-Unsubscribe-Post One-Click: pass;
#                     https alone: fail; mailto alone: pass; none: fail
#   dmarc-record      _dmarc.example.com: pass; example.net (none): fail;
#                     From news.example.com (record only at the
#                     organizational domain): pass
# A failed check gives X-Bulk-Noncompliant: CHECK (tag is the default).
# Each bulk-noncompliant action, on a message failing dkim-aligned and
# list-unsubscribe: tag adds X-Bulk-Noncompliant: dkim-aligned
# list-unsubscribe; hold puts it in the hold queue; tempfail answers 451
# 4.7.1 at end of DATA, reject 550 5.7.1, both naming the two checks; a
# compliant message of the same class goes through.
# A compliant newsletter (all four checks) arrives exactly as sent but
# for the DKIM-Signature on top and X-Bulk-Class and Precedence at the
# end of the header, and its signature verifies.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/bulk_it_lib.sh
. "$(dirname "$0")/../lib/bulk_it_lib.sh"

keys=$H_TMP/keys
bulk_dkim_key "$keys" example.com sel
cat >"$keys/KeyTable" <<EOF
sel._domainkey.example.com example.com:sel:$keys/sel.private
EOF
# example.net is signed too, by d=example.com: a signature that does not
# align, rather than none at all
cat >"$keys/SigningTable" <<'EOF'
*@example.com sel._domainkey.example.com
*@news.example.com sel._domainkey.example.com
*@example.net sel._domainkey.example.com
EOF

h_dns_start \
	--txt-record=bounces.example.com,"v=spf1 ip4:203.0.113.0/24 -all" \
	--txt-record=nopass.example.com,"v=spf1 ip4:192.0.2.0/24 -all" \
	--txt-record=example.org,"v=spf1 ip4:203.0.113.20 -all" \
	--txt-record=_dmarc.example.com,"v=DMARC1; p=none"

h_policy <<'EOF_POLICY'
class req_dkim {
    bulk        always
    bulk-require dkim-aligned
}
class req_spf {
    bulk        always
    bulk-require spf-aligned
}
class req_unsub {
    bulk        always
    bulk-require list-unsubscribe
}
class req_dmarc {
    bulk        always
    bulk-require dmarc-record
}
class act_tag {
    bulk        always
    bulk-require dkim-aligned list-unsubscribe
    bulk-noncompliant tag
}
class act_hold {
    bulk        always
    bulk-require dkim-aligned list-unsubscribe
    bulk-noncompliant hold
}
class act_tempfail {
    bulk        always
    bulk-require dkim-aligned list-unsubscribe
    bulk-noncompliant tempfail
}
class act_reject {
    bulk        always
    bulk-require dkim-aligned list-unsubscribe
    bulk-noncompliant reject
}
class full {
    bulk        always
    bulk-require dkim-aligned spf-aligned list-unsubscribe dmarc-record
    bulk-noncompliant reject
}
assign ip   198.51.100.1    req_dkim
assign ip   198.51.100.2    req_spf
assign ip   198.51.100.3    req_unsub
assign ip   198.51.100.4    req_dmarc
assign ip   198.51.100.5    act_tag
assign ip   198.51.100.6    act_hold
assign ip   198.51.100.7    act_tempfail
assign ip   198.51.100.8    act_reject
assign ip   198.51.100.9    full
EOF_POLICY
h_conf <<EOF
InternalHosts 127.0.0.0/8, 198.51.100.0/24
EgressAddresses 203.0.113.20
KeyTable $keys/KeyTable
SigningTable refile:$keys/SigningTable
EOF
h_milter_start
h_postfix_start

declare -A IP=([req_dkim]=198.51.100.1 [req_spf]=198.51.100.2 [req_unsub]=198.51.100.3
	[req_dmarc]=198.51.100.4 [act_tag]=198.51.100.5 [act_hold]=198.51.100.6
	[act_tempfail]=198.51.100.7 [act_reject]=198.51.100.8 [full]=198.51.100.9)
UNSUB="List-Unsubscribe: <https://example.com/unsub?id=42>, <mailto:unsub@example.com>"
ONECLICK="List-Unsubscribe-Post: List-Unsubscribe=One-Click"
N=0

# send NAME CLASS MAILFROM FROM ['Header: value'...]: one message from
# the client address of CLASS; queue ID in $qid (empty when refused),
# its log line in $H_TMP/line.
send() {
	local class=$2 mailfrom=$3 from=$4
	shift 4
	N=$((N + 1))
	msgid="m$N.${class}@example.com"
	bulk_msg "$H_TMP/m$N.eml" "$msgid" "$from" "$@"
	h_send --ip "${IP[$class]}" --from "$mailfrom" --raw "$H_TMP/m$N.eml"
	qid=$H_QID
	: >"$H_TMP/line"
	[ -n "$qid" ] && h_milter_line "$qid" >"$H_TMP/line"
}

# delivered NAME: the message was accepted and arrived; file in $got
delivered() {
	got=
	[ -n "$qid" ] && got=$(bulk_sink_file main "$qid")
	h_ok "$1: accepted and delivered" test -n "$got"
}

# passes NAME CLASS ...: delivered, tagged with its class, no
# X-Bulk-Noncompliant, no noncompliant= in the log
passes() {
	local name=$1 class=$2
	send "$@"
	delivered "$name"
	h_assert_eq "$class" "$(bulk_header "$got" X-Bulk-Class)" "$name: X-Bulk-Class: $class"
	h_assert_eq 0 "$(bulk_header_count "$got" X-Bulk-Noncompliant)" "$name: compliant: no X-Bulk-Noncompliant"
	h_assert_no_grep "$H_TMP/line" ' noncompliant=' "$name: log names no noncompliant checks"
}

# fails NAME CLASS MAILFROM FROM CHECKS [headers]: delivered with
# X-Bulk-Noncompliant: CHECKS, and noncompliant="CHECKS" in the log
fails() {
	local name=$1 class=$2 checks=$5
	send "$1" "$2" "$3" "$4" "${@:6}"
	delivered "$name"
	h_assert_eq "$class" "$(bulk_header "$got" X-Bulk-Class)" "$name: X-Bulk-Class: $class"
	h_assert_eq "$checks" "$(bulk_header "$got" X-Bulk-Noncompliant)" \
		"$name: X-Bulk-Noncompliant: $checks"
	h_assert_grep "$H_TMP/line" " noncompliant=\"$checks\"" "$name: log says noncompliant=\"$checks\""
}

# log_has NAME ERE: the message's log line matches ERE
log_has() {
	h_assert_grep "$H_TMP/line" "$2" "$1: log line matches /$2/"
}

# -- dkim-aligned
passes "dkim: From example.com, d=example.com" req_dkim news@example.com news@example.com
log_has "dkim: From example.com, d=example.com" ' signed=d=example.com,s=sel,'
passes "dkim: From news.example.com, d=example.com (relaxed)" req_dkim \
	news@example.com news@news.example.com
fails "dkim: From example.net, d=example.com" req_dkim news@example.net news@example.net dkim-aligned
log_has "dkim: From example.net, d=example.com" ' signed=d=example.com,s=sel,'

# -- spf-aligned
passes "spf: MAIL FROM bounces.example.com, SPF has the egress address" req_spf \
	news@bounces.example.com news@example.com
log_has "spf: MAIL FROM bounces.example.com" ' egress=203\.0\.113\.20:pass aligned=yes'
fails "spf: SPF leaves the egress address out" req_spf \
	news@nopass.example.com news@example.com spf-aligned
log_has "spf: SPF leaves the egress address out" ' egress=203\.0\.113\.20:fail aligned=yes'
fails "spf: MAIL FROM in another organizational domain" req_spf \
	news@example.org news@example.com spf-aligned
log_has "spf: MAIL FROM in another organizational domain" ' egress=203\.0\.113\.20:pass aligned=no'

# -- list-unsubscribe
passes "unsub: https + One-Click" req_unsub news@example.com news@example.com \
	"List-Unsubscribe: <https://example.com/unsub?id=42>" "$ONECLICK"
fails "unsub: https without List-Unsubscribe-Post" req_unsub news@example.com news@example.com \
	list-unsubscribe "List-Unsubscribe: <https://example.com/unsub?id=42>"
passes "unsub: mailto alone" req_unsub news@example.com news@example.com \
	"List-Unsubscribe: <mailto:unsub@example.com>"
fails "unsub: no List-Unsubscribe" req_unsub news@example.com news@example.com list-unsubscribe

# -- dmarc-record
passes "dmarc: From example.com (_dmarc.example.com)" req_dmarc news@example.com news@example.com
fails "dmarc: From example.net (no record)" req_dmarc news@example.com news@example.net dmarc-record
passes "dmarc: From news.example.com (organizational domain's record)" req_dmarc \
	news@example.com news@news.example.com

# -- the bulk-noncompliant actions; "bad" fails dkim-aligned and
# list-unsubscribe, "good" passes both
for action in tag hold tempfail reject; do
	class=act_$action
	passes "$action: compliant message" "$class" news@example.com news@example.com "$UNSUB" "$ONECLICK"
	send "$action: noncompliant message" "$class" news@example.net news@example.net
	case $action in
	tag)
		delivered "tag: noncompliant message"
		h_assert_eq "dkim-aligned list-unsubscribe" "$(bulk_header "$got" X-Bulk-Noncompliant)" \
			"tag: X-Bulk-Noncompliant: dkim-aligned list-unsubscribe"
		h_assert_eq act_tag "$(bulk_header "$got" X-Bulk-Class)" "tag: X-Bulk-Class: act_tag" ;;
	hold)
		h_ok "hold: accepted (250 queued as ID)" test -n "$qid"
		held_msgid=$msgid
		h_ok "hold: in the hold queue (postqueue -j queue_name hold)" h__wait_for 5 bulk_held "$qid"
		h_assert_eq hold "$(h_milter_field "$qid" decision)" "hold: log says decision=hold"
		log_has "hold" ' hold="bulkmilter: bulk non-compliant: dkim-aligned list-unsubscribe"$' ;;
	tempfail)
		h_ok "tempfail: not accepted" test -z "$qid"
		h_assert_grep "$H_SEND_LOG" \
			'^<\*\* +451 4\.7\.1 .*dkim-aligned list-unsubscribe' \
			"tempfail: 451 4.7.1 at end of DATA naming dkim-aligned list-unsubscribe" ;;
	reject)
		h_ok "reject: not accepted" test -z "$qid"
		h_assert_grep "$H_SEND_LOG" \
			'^<\*\* +550 5\.7\.1 .*dkim-aligned list-unsubscribe' \
			"reject: 550 5.7.1 at end of DATA naming dkim-aligned list-unsubscribe" ;;
	esac
done
sleep 1
h_assert_eq "" "$(h_sink_grep main "<$held_msgid>")" "hold: the held message is not delivered"

# -- a compliant newsletter passes untouched but for the tag, Precedence
# and the signature. The message is the pass-through one (folded headers,
# 8-bit, dots, a long line, trailing empty lines) plus the unsubscribe
# headers.
orig=$H_TMP/newsletter.eml
/usr/bin/python3 "$H_LIB/mkmsg.py" passthrough "$H_TMP/base.eml" newsletter.1@example.com ||
	h_fatal "cannot write the test message"
LC_ALL=C awk -v a="$UNSUB" -v b="$ONECLICK" '
	!done && $0 == "\r" { printf "%s\r\n%s\r\n", a, b; done = 1 }
	{ print }' "$H_TMP/base.eml" >"$orig"
h_send --ip "${IP[full]}" --from news@bounces.example.com --to bob@example.net,carol@example.net \
	--raw "$orig"
qid=$H_QID
delivered "compliant newsletter"
h_milter_line "$qid" >"$H_TMP/line"
h_assert_eq accept "$(h_milter_field "$qid" decision)" "compliant newsletter: decision=accept"
h_assert_no_grep "$H_TMP/line" ' noncompliant=' "compliant newsletter: log names no noncompliant checks"
# what should arrive: DKIM-Signature (inserted at index 0, so above
# Postfix's own Received, as OpenDKIM's are), Received, then the message
# as sent with X-Bulk-Class: full and Precedence: bulk at the end of its
# header
LC_ALL=C awk '
	!done && $0 == "\r" { printf "X-Bulk-Class: full\r\nPrecedence: bulk\r\n"; done = 1 }
	{ print }' "$orig" >"$H_TMP/expected.eml"
h_assert_eq DKIM-Signature "$(head -n 1 "$got" | cut -d: -f1)" \
	"compliant newsletter: DKIM-Signature on top"
LC_ALL=C awk '
	NR == 1 && /^DKIM-Signature:/ { skip = 1; next }
	skip && /^[ \t]/ { next }
	{ skip = 0; print }' "$got" >"$H_TMP/no-dkim.eml"
/usr/bin/python3 "$H_LIB/mkmsg.py" strip-received "$H_TMP/no-dkim.eml" "$H_TMP/rest.eml"
h_assert_eq 0 "$?" "compliant newsletter: Received right below the DKIM-Signature"
if ! h_ok "compliant newsletter: header and body exactly as sent, plus X-Bulk-Class and Precedence" \
	cmp -s "$H_TMP/expected.eml" "$H_TMP/rest.eml"; then
	h_diag "$(diff <(cat -A "$H_TMP/expected.eml") <(cat -A "$H_TMP/rest.eml") | head -n 20)"
fi
/usr/bin/python3 "$H_LIB/dkim_verify.py" --txt "sel._domainkey.example.com=$keys/sel.txt" \
	--require-h list-unsubscribe --require-h list-unsubscribe-post "$got" >"$H_TMP/verify.out" 2>&1
h_assert_eq 0 "$?" "compliant newsletter: its signature verifies (dkim_verify.py, List-Unsubscribe{,-Post} in h=)" ||
	h_diag "$(cat "$H_TMP/verify.out")"

# -- Mode monitor (reloaded into the running milter): hold, tempfail and
# reject only log what they would have done; the message is delivered
# with X-Bulk-Noncompliant, as with tag (delivered: not held)
h_conf <<EOF_CONF
InternalHosts 127.0.0.0/8, 198.51.100.0/24
EgressAddresses 203.0.113.20
KeyTable $keys/KeyTable
SigningTable refile:$keys/SigningTable
Mode monitor
EOF_CONF
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"
for action in hold tempfail reject; do
	send "monitor, $action: noncompliant message" "act_$action" news@example.net news@example.net
	delivered "monitor, $action: noncompliant message"
	h_assert_eq "dkim-aligned list-unsubscribe" "$(bulk_header "$got" X-Bulk-Noncompliant)" \
		"monitor, $action: X-Bulk-Noncompliant: dkim-aligned list-unsubscribe"
	h_assert_eq "act_$action" "$(bulk_header "$got" X-Bulk-Class)" "monitor, $action: X-Bulk-Class: act_$action"
	h_assert_eq accept "$(h_milter_field "$qid" decision)" "monitor, $action: log says decision=accept"
	h_assert_grep "$H_MILTER_LOG" \
		"^.*$qid: monitor: bulk non-compliant \\(dkim-aligned list-unsubscribe\\): would $action\$" \
		"monitor, $action: log says what enforce would have done"
done
