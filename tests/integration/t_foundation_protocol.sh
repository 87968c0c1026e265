#!/bin/bash
#
# The milter protocol as the MTA sees it (tests/lib/milter_client.py, no
# Postfix): what bulkmilter negotiates and which steps it answers.
# Offered everything, it asks for leading spaces in header values, skip,
# no HELO/unknown/DATA events, and no reply to connect, headers and end of
# headers: Postfix waits for it only at MAIL, RCPT, body chunks and end of
# message. A message it does not sign gets "skip" at its first body
# chunk, so the rest of the body is not sent; one it signs gets
# "continue" for every chunk and its DKIM-Signature at the end. An MTA
# that does not offer skip (it would take it for a protocol error) gets
# "continue" for every chunk instead.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

keys=$H_TMP/keys
mkdir -p "$keys"
opendkim-genkey -b 1024 -d example.com -s sel -D "$keys" || h_fatal "opendkim-genkey failed"
chmod 600 "$keys/sel.private"
echo "sel._domainkey.example.com example.com:sel:$keys/sel.private" >"$keys/KeyTable"
echo "*@example.com sel._domainkey.example.com" >"$keys/SigningTable"

h_policy </dev/null
h_conf </dev/null
h_milter_start

# client ARGS...: one message through milter_client.py; its lines in $out
client() {
	out=$(/usr/bin/python3 "$H_LIB/milter_client.py" "$H_MILTER_SOCKET" "$@" 2>&1)
	h_diag "$(tr '\n' ';' <<<"$out")"
}
line() { sed -n "s/^$1 //p" <<<"$out"; }
chunks() { echo "$(line "body 1") $(line "body 2") $(line "body 3")"; }

all=1fffff
no_skip=1ffbff
# HDR_LEADSPC SKIP NR_HDR NR_HELO NR_CONN NR_EOH NOUNKNOWN NODATA
wanted=0x143780

client --protocol $all --chunks 3
h_assert_eq $wanted "$(line protocol)" "offered everything: asks for exactly $wanted"
h_assert_eq "c c" "$(line mail) $(line rcpt)" "offered everything: MAIL and RCPT answered continue"
h_assert_eq "s  " "$(chunks)" "not signed: first body chunk answered skip, no more chunks sent"
h_assert_eq c "$(line eom)" "not signed: end of message answered continue"

client --protocol $no_skip --chunks 3
h_assert_eq 0x143380 "$(line protocol)" "skip not offered: asks for the same without it"
h_assert_eq "c c c" "$(chunks)" "skip not offered, not signed: each body chunk answered continue"
h_assert_eq c "$(line eom)" "skip not offered, not signed: end of message answered continue"

h_conf <<EOF_CONF
KeyTable $keys/KeyTable
SigningTable refile:$keys/SigningTable
EOF_CONF
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"

client --protocol $all --chunks 3
h_assert_eq "c c c" "$(chunks)" "signed: each body chunk answered continue"
h_assert_eq i,c "$(line eom)" "signed: end of message inserts a header (the signature), then continue"
h_assert_grep "$H_MILTER_LOG" '4ABC123: .* signed=d=example\.com,s=sel' "signed: log names the signature"
