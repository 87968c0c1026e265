#!/bin/bash
#
# Bulk mail is routed by its tag, end to end, with the shipped routing
# files: Postfix's milter_header_checks = the shipped bulk_routes, whose
# "FILTER bulk-pool1:" sends newsletter mail through the shipped
# bulk-pool1 transport of master.cf (to sink "pool1"); everything else
# goes the default way (relayhost: sink "main").
#   - a newsletter message (bulk always) arrives at pool1, through the
#     bulk-pool1 transport, with X-Bulk-Class: newsletter and Precedence:
#     bulk; a message of a class whose bulk rule does not hold arrives at
#     main without them;
#   - a client's X-Bulk-Class is removed: on a non-bulk message (outbound
#     or inbound) it does not reach the sink and does not route it; on a
#     bulk message only
#     the milter's own X-Bulk-Class: newsletter remains;
#   - the tag and the DKIM signature coexist: at pool1 the signature
#     verifies with python3-dkim, and neither X-Bulk-Class nor Precedence
#     is in its h= list.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/bulk_it_lib.sh
. "$(dirname "$0")/../lib/bulk_it_lib.sh"

keys=$H_TMP/keys
bulk_dkim_key "$keys" example.com sel
cat >"$keys/KeyTable" <<EOF
sel._domainkey.example.com example.com:sel:$keys/sel.private
EOF
cat >"$keys/SigningTable" <<'EOF'
*@example.com sel._domainkey.example.com
EOF

h_policy <<'EOF_POLICY'
class newsletter {
    bulk        always
}
class standard {
    bulk        recipients >= 50
}
assign sender   news@example.com    newsletter
assign outbound                     standard
EOF_POLICY
h_conf <<EOF
KeyTable $keys/KeyTable
SigningTable refile:$keys/SigningTable
EOF
h_milter_start

h_sink_start main
h_sink_start pool1
# The shipped files, adapted to this instance's paths and sinks.
# The shipped bulk_routes has "FILTER bulk-pool1:" with an empty next hop:
# that keeps each recipient's own next hop, i.e. an MX look-up of
# example.net, which cannot resolve here. So the test fills in pool1's
# address, and changes nothing else of the shipped file.
bulk_routes_from_shipped "$H_TMP/bulk_routes" bulk-pool1 "$(h_sink_nexthop pool1)"
mapfile -t pool1_entry < <(bulk_master_from_shipped bulk-pool1)
[ "${#pool1_entry[@]}" -ge 2 ] || h_fatal "no bulk-pool1 entry in the shipped master.cf"
h_postfix_master "${pool1_entry[@]}"
pool1_helo=$(printf '%s\n' "${pool1_entry[@]}" | sed -n 's/.*smtp_helo_name=\([^ \t]*\).*/\1/p')
[ -n "$pool1_helo" ] || h_fatal "the shipped bulk-pool1 entry sets no smtp_helo_name"
# main.cf: the shipped milter_header_checks line, with the test's path
grep -Eq '^milter_header_checks *= *pcre:/etc/postfix/bulk_routes$' \
	"$H_SRCDIR/scripts/postfix/main.cf" ||
	h_fatal "the shipped main.cf has no 'milter_header_checks = pcre:/etc/postfix/bulk_routes'"
h_postfix_start "milter_header_checks = pcre:$H_TMP/bulk_routes"

verify() {	# FILE: the DKIM signature of FILE verifies
	/usr/bin/python3 "$H_LIB/dkim_verify.py" --txt "sel._domainkey.example.com=$keys/sel.txt" \
		"$1" >>"$H_TMP/verify.out" 2>&1
}

# -- 1. a newsletter message goes to pool1, tagged
bulk_msg "$H_TMP/nl.eml" nl.1@example.com news@example.com
h_send --from news@example.com --raw "$H_TMP/nl.eml"
h_ok "newsletter: accepted" test -n "$H_QID"
nl_qid=$H_QID
nl=$(bulk_sink_file pool1 "$nl_qid")
h_ok "newsletter: arrives at the bulk-pool1 sink" test -n "$nl"
h_assert_eq "$pool1_helo" "$(sed -n 's/^helo: //p' "${nl%.eml}.env")" \
	"newsletter: delivered by the bulk-pool1 transport (HELO $pool1_helo)"
h_assert_eq "newsletter" "$(bulk_header "$nl" X-Bulk-Class)" "newsletter: X-Bulk-Class: newsletter"
h_assert_eq "bulk" "$(bulk_header "$nl" Precedence)" "newsletter: Precedence: bulk"
h_assert_eq "yes" "$(h_milter_field "$nl_qid" bulk)" "newsletter: log says bulk=yes"
h_assert_grep "$H_MILTER_LOG" "$nl_qid: .* bulk_reason=\"always\"" "newsletter: log says bulk_reason=\"always\""

# -- 2. a message whose bulk rule does not hold goes the default way
bulk_msg "$H_TMP/plain.eml" plain.1@example.com alice@example.com
h_send --from alice@example.com --raw "$H_TMP/plain.eml"
plain_qid=$H_QID
plain=$(bulk_sink_file main "$plain_qid")
h_ok "non-bulk: arrives at the default (main) sink" test -n "$plain"
h_assert_eq 0 "$(bulk_header_count "$plain" X-Bulk-Class)" "non-bulk: no X-Bulk-Class"
h_assert_eq 0 "$(bulk_header_count "$plain" Precedence)" "non-bulk: no Precedence"
h_assert_eq "standard" "$(h_milter_field "$plain_qid" class)" "non-bulk: class=standard"
h_assert_eq "no" "$(h_milter_field "$plain_qid" bulk)" "non-bulk: log says bulk=no"

# -- 3a. a forged tag on a non-bulk message is removed and routes nothing
bulk_msg "$H_TMP/forged.eml" forged.1@example.com alice@example.com "X-Bulk-Class: newsletter"
h_send --from alice@example.com --raw "$H_TMP/forged.eml"
forged=$(bulk_sink_file main "$H_QID")
h_ok "forged tag, non-bulk: arrives at the default (main) sink" test -n "$forged"
h_assert_eq 0 "$(bulk_header_count "$forged" X-Bulk-Class)" "forged tag, non-bulk: X-Bulk-Class removed"
h_assert_eq 0 "$(bulk_header_count "$forged" Precedence)" "forged tag, non-bulk: no Precedence"

# -- 3a'. and on an inbound message (a client outside InternalHosts)
bulk_msg "$H_TMP/inforged.eml" inforged.1@example.com carol@example.org "X-Bulk-Class: newsletter"
h_send --ip 192.0.2.10 --from carol@example.org --raw "$H_TMP/inforged.eml"
inforged=$(bulk_sink_file main "$H_QID")
h_ok "forged tag, inbound: arrives at the default (main) sink" test -n "$inforged"
h_assert_eq inbound "$(h_milter_field "$H_QID" direction)" "forged tag, inbound: direction=inbound"
h_assert_eq 0 "$(bulk_header_count "$inforged" X-Bulk-Class)" "forged tag, inbound: X-Bulk-Class removed"

# -- 3b. forged tags on a bulk message: only ours remains
bulk_msg "$H_TMP/nlforged.eml" nlforged.1@example.com news@example.com \
	"X-Bulk-Class: marketing" "x-bulk-class: newsletter"
h_send --from news@example.com --raw "$H_TMP/nlforged.eml"
nlforged=$(bulk_sink_file pool1 "$H_QID")
h_ok "forged tags, bulk: arrives at the bulk-pool1 sink" test -n "$nlforged"
h_assert_eq "newsletter" "$(bulk_header "$nlforged" X-Bulk-Class)" \
	"forged tags, bulk: exactly one X-Bulk-Class, ours (newsletter)"

# -- nothing went the wrong way
sleep 1
h_assert_eq 2 "$(h_sink_count pool1)" "bulk-pool1 sink holds exactly the two newsletter messages"
h_assert_eq 3 "$(h_sink_count main)" "main sink holds exactly the three non-bulk messages"

# -- 5. the tag and the DKIM signature coexist
for n in newsletter "forged tags, bulk"; do
	f=$nl
	[ "$n" = newsletter ] || f=$nlforged
	h_assert_eq 1 "$(bulk_header_count "$f" DKIM-Signature)" "$n: one DKIM-Signature"
	h_assert_eq "example.com" "$(bulk_header "$f" DKIM-Signature | tr -d ' \t' |
		tr ';' '\n' | sed -n 's/^d=//p')" "$n: signed with d=example.com"
	h_ok "$n: the signature verifies at the bulk-pool1 sink (dkim_verify.py)" verify "$f" ||
		h_diag "$(tail -n 3 "$H_TMP/verify.out")"
	bulk_dkim_h "$f" >"$H_TMP/h.list"
	h_assert_grep "$H_TMP/h.list" '^from$' "$n: h= names From"
	h_assert_no_grep "$H_TMP/h.list" '^x-bulk-class$' "$n: X-Bulk-Class is not in h="
	h_assert_no_grep "$H_TMP/h.list" '^precedence$' "$n: Precedence is not in h="
done
