#!/bin/bash
#
# Outbound mail signed through a real Postfix verifies at the sink with
# python3-dkim and with OpenDKIM's verifier, for a corpus of bodies and
# headers (dkim_it_msg.py corpus: empty, blank lines, trailing blank
# lines, trailing spaces and tabs, lines of 990 and 998 characters,
# UTF-8/8-bit with RFC 2047 headers, raw UTF-8 headers, folded and
# unusually spaced headers, repeated Received and To, bare LF line ends,
# 5 MB), in four rounds, the milter reloaded (SIGHUP) between them:
#
#   rsa       RSA-2048 key from opendkim-genkey, relaxed/relaxed
#   ed25519   Ed25519 key from openssl genpkey
#   multiple  MultipleSignatures yes: an RSA and an Ed25519 line for
#             example.com, both signatures on every message
#   simple    the same two with Canonicalization simple/simple
#
# Every message carries exactly the signatures due (a=, d=, s=, c=), the
# log line says signed=d=example.com,s=SEL,a=ALG for each, and the
# signatures are the first header fields, above the Received header
# Postfix prepends (with two, the Ed25519 one, inserted last, on top).
# Then 16 messages sent at once (both signatures each) all verify.
#
# Postfix's SMTP client breaks lines longer than 998 octets
# (smtp_line_length_limit) after the milter has signed, which breaks
# the body hash; 998 is therefore the longest line tested here.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

dkim_rsa_key rsa
dkim_ed_key ed
cat >"$H_TMP/KeyTable" <<EOF
rsa._domainkey.example.com example.com:rsa:$DKIM_KEYS/rsa.private
ed._domainkey.example.com example.com:ed:$DKIM_KEYS/ed.key
EOF
echo '*@example.com rsa._domainkey.example.com' >"$H_TMP/rsa.table"
echo '*@example.com ed._domainkey.example.com' >"$H_TMP/ed.table"
cat "$H_TMP/rsa.table" "$H_TMP/ed.table" >"$H_TMP/both.table"

# configure TABLE [LINE...]: bulkmilter.conf signing with that SigningTable.
configure() {
	local table=$1
	shift
	h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/$table" "$@"
}

configure rsa.table
h_milter_start
h_postfix_start 'message_size_limit = 20000000'

# verified ROUND VERIFIERS FILE:NAME...: dkim_verify.py on the files
# (--opendkim when VERIFIERS names it); each must get exactly one "pass"
# per signature in $top order (set by round) and per verifier.
verified() {
	local round=$1 verifiers=$2 item files=() opt=() i lines v label
	shift 2
	[ $# -gt 0 ] || return 0
	for item in "$@"; do files+=("${item%%:*}"); done
	label=python3-dkim
	[[ $verifiers == *opendkim* ]] && opt=(--opendkim) label="python3-dkim and OpenDKIM"
	dkim_verify "${opt[@]}" "${files[@]}"
	h_assert_eq 0 "$?" "$round: all ${#files[@]} message(s) verify ($label)"
	for item in "$@"; do
		lines=
		for ((i = 0; i < ${#top[@]}; i++)); do
			for v in $verifiers; do
				lines+="${item%%:*}: sig $((i + 1)) d=example.com s=${top[i]%%:*} a=${top[i]#*:} $v: pass"$'\n'
			done
		done
		h_assert_eq "${lines%$'\n'}" \
			"$(grep -F "${item%%:*}: " "$DKIM_VERIFY_OUT" | sed 's/\(opendkim: pass\) (.*/\1/')" \
			"$round ${item#*:}: each of its ${#top[@]} signature(s) verifies ($label)"
	done
}

# round NAME CANON SIG...: send the corpus; SIG is "SELECTOR:ALGORITHM",
# the signatures every message must carry, in SigningTable order (the
# log's order). Each is inserted at the top in turn, so the last is the
# first header field.
#
# With c=simple headers, tight-and-padded is checked by python3-dkim only:
# OpenDKIM's verifier hashes "Name:value" and "Name:   value" as "Name:
# value", so it fails every c=simple signature over such a header, also
# one made by python3-dkim (a limitation of that verifier, not of the
# signature, which RFC 6376 simple canonicalization makes of the bytes as
# they are).
round() {
	local round=$1 canon=$2 sig top=() want_log='' want_sigs='' want_top='' corpus name
	local both=() python_only=() bad_sigs=() bad_top=()
	shift 2
	for sig in "$@"; do
		want_log+=";d=example.com,s=${sig%%:*},a=${sig#*:}"
		top=("$sig" "${top[@]}")
	done
	want_log=${want_log#;}
	for sig in "${top[@]}"; do
		want_sigs+="a=${sig#*:} d=example.com s=${sig%%:*} c=$canon"$'\n'
		want_top+=DKIM-Signature$'\n'
	done
	want_sigs=${want_sigs%$'\n'}
	want_top+="Received by bm-test.localdomain (Postfix)"

	mkdir -p "$H_TMP/$round"
	mapfile -t corpus < <(dkim_msg corpus "$H_TMP/$round" "$round")
	h_assert_eq 12 "${#corpus[@]}" "$round: the corpus has 12 messages"
	for name in "${corpus[@]}"; do
		if ! dkim_send "$H_TMP/$round/$name.eml"; then
			h_ok "$round $name: delivered" false
			continue
		fi
		if [ "${canon%/*}" = simple ] && [ "$name" = tight-and-padded ]; then
			python_only+=("$DKIM_FILE:$name")
		else
			both+=("$DKIM_FILE:$name")
		fi
		h_assert_eq "$want_log" "$(dkim_signed "$DKIM_QID")" "$round $name: log says signed=$want_log"
		[ "$(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-4)" = "$want_sigs" ] ||
			bad_sigs+=("$name: $(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-4 | tr '\n' '|')")
		[ "$(dkim_first_headers "$DKIM_FILE" $(($# + 1)))" = "$want_top" ] ||
			bad_top+=("$name: $(dkim_first_headers "$DKIM_FILE" $(($# + 1)) | tr '\n' '|')")
	done
	h_ok "$round: every message carries exactly, top first: ${want_sigs//$'\n'/ | }" \
		test "${#bad_sigs[@]}" = 0 || h_diag "${bad_sigs[@]}"
	h_ok "$round: signatures are the first header fields, then Postfix's Received" \
		test "${#bad_top[@]}" = 0 || h_diag "${bad_top[@]}"
	verified "$round" "python opendkim" "${both[@]}"
	verified "$round" python "${python_only[@]}"
}

round rsa relaxed/relaxed rsa:rsa-sha256
h_assert_grep "$DKIM_KEYS/rsa.txt" 'k=rsa' "the rsa key's TXT record says k=rsa (opendkim-genkey)"
h_assert_eq 2048 "$(openssl pkey -in "$DKIM_KEYS/rsa.private" -noout -text | sed -n 's/^Private-Key: (\([0-9]*\) bit.*/\1/p')" \
	"the rsa key has 2048 bits"
long=$(h_sink_grep main 'Message-ID: <long-line.rsa@example.com>')
h_assert_eq "990 998" "$(grep -a '^\(xxx\|yyy\)' "$long" | tr -d '\r' | awk '{print length($0)}' | paste -sd ' ')" \
	"long-line: the 990- and 998-character lines arrive whole"
h_assert_no_grep "$H_MILTER_LOG" "long_line=" "corpus (lines up to 998 octets): no long_line warning"
# Over 998 the milter signs, and says in its log line that Postfix will break the line
printf 'From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: too long\r\nMessage-ID: <too-long@example.com>\r\n\r\n%s\r\n' \
	"$(head -c 1500 /dev/zero | tr '\0' 'y')" >"$H_TMP/too-long.eml"
dkim_send "$H_TMP/too-long.eml"
h_assert_grep "$H_MILTER_LOG" "$DKIM_QID: .* long_line=\"a body line over 998 octets" \
	"a 1500-octet line: the log line warns that the signature will break"
big=$(h_sink_grep main 'Message-ID: <five-megabytes.rsa@example.com>')
h_ok "five-megabytes: more than 5 MB arrive" test "$(stat -c %s "$big")" -gt 5242880

configure ed.table
h_ok "reload: Ed25519 key" dkim_reload
round ed25519 relaxed/relaxed ed:ed25519-sha256

configure both.table "MultipleSignatures yes"
h_ok "reload: MultipleSignatures yes, RSA and Ed25519" dkim_reload
round multiple relaxed/relaxed rsa:rsa-sha256 ed:ed25519-sha256

configure both.table "MultipleSignatures yes" "Canonicalization simple/simple"
h_ok "reload: Canonicalization simple/simple" dkim_reload
round simple simple/simple rsa:rsa-sha256 ed:ed25519-sha256

# ---- concurrency: 16 clients at once, each message signed twice
send_one() {
	dkim_msg message "$H_TMP/parallel-$1.eml" "parallel-$1@test.example" \
		"From: Alice <alice@example.com>" "To: bob@example.net" "Subject: parallel $1"
	h_send --raw "$H_TMP/parallel-$1.eml"
}
h_ok "16 messages sent at once are accepted" h_parallel 16 send_one
h_ok "16 messages sent at once arrive" h_wait_sink main $((4 * 12 + 16)) 60
mapfile -t parallel < <(h_sink_grep main "@test.example>")
h_assert_eq 16 "${#parallel[@]}" "16 parallel messages found at the sink"
dkim_verify --opendkim "${parallel[@]}"
h_assert_eq "0 32 32" "$? $(grep -c 'python: pass' "$DKIM_VERIFY_OUT") $(grep -c 'opendkim: pass' "$DKIM_VERIFY_OUT")" \
	"parallel: all 32 signatures verify with python3-dkim and OpenDKIM"
