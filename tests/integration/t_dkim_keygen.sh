#!/bin/bash
#
# bulkmilterctl dkim keygen, for rsa-2048 and ed25519:
#
# - the key file DIR/DOMAIN.SELECTOR.key is mode 0600; a second keygen
#   for the same name exits 1 ("refusing to overwrite") and leaves the
#   key as it was; an unknown algorithm is a usage error (exit 2).
# - the printed KeyTable and SigningTable lines, loaded as they are
#   (MultipleSignatures yes), make bulkmilter sign with both keys, and
#   the printed TXT records (RSA in strings of at most 255 octets, so
#   more than one; Ed25519 in one), served by the test DNS, pass
#   "dkim check" and make python3-dkim and OpenDKIM's verifier accept
#   both signatures.
# - --json gives the same lines and the record's strings.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

[ -x "$H_BULKMILTERCTL" ] || h_fatal "no bulkmilterctl: set BM_BUILDDIR"
dir=$H_TMP/newkeys
mkdir -p "$dir"

"$H_BULKMILTERCTL" dkim keygen --algorithm rsa-2048 kg.example r2026 "$dir" >"$H_TMP/rsa.out"
h_assert_eq 0 "$?" "keygen rsa-2048: exit 0"
"$H_BULKMILTERCTL" dkim keygen --algorithm ed25519 kg.example e2026 "$dir" >"$H_TMP/ed.out"
h_assert_eq 0 "$?" "keygen ed25519: exit 0"
for k in r2026 e2026; do
	h_assert_eq 600 "$(stat -c %a "$dir/kg.example.$k.key")" "$k: key file mode 0600"
done
h_ok "rsa: an RSA-2048 key" bash -c "openssl pkey -in '$dir/kg.example.r2026.key' -text -noout | grep -q 'Private-Key: (2048 bit'"
h_ok "ed25519: an Ed25519 key" bash -c "openssl pkey -in '$dir/kg.example.e2026.key' -text -noout | grep -q 'ED25519 Private-Key'"

before=$(sha256sum <"$dir/kg.example.r2026.key")
"$H_BULKMILTERCTL" dkim keygen --algorithm rsa-2048 kg.example r2026 "$dir" >/dev/null 2>"$H_TMP/again.err"
h_assert_eq 1 "$?" "keygen again: exit 1"
h_assert_grep "$H_TMP/again.err" "^dkim keygen: $dir/kg.example.r2026.key: File exists \\(refusing to overwrite a key\\)\$" \
	"keygen again: refuses to overwrite"
h_assert_eq "$before" "$(sha256sum <"$dir/kg.example.r2026.key")" "keygen again: the key is unchanged"
"$H_BULKMILTERCTL" dkim keygen --algorithm rsa-1024 kg.example x "$dir" 2>/dev/null
h_assert_eq 2 "$?" "keygen rsa-1024: usage error"

# after TITLE FILE: the line after the comment line starting with "# TITLE"
after() { awk -v t="# $1" 'found { print; exit } index($0, t) == 1 { found = 1 }' "$2"; }
h_assert_eq "r2026._domainkey.kg.example kg.example:r2026:$dir/kg.example.r2026.key" \
	"$(after 'KeyTable line' "$H_TMP/rsa.out")" "rsa: the KeyTable line"
h_assert_eq "*@kg.example r2026._domainkey.kg.example" "$(after 'SigningTable line' "$H_TMP/rsa.out")" \
	"rsa: the SigningTable line"
rsa_dns=$(after 'DNS record' "$H_TMP/rsa.out")
ed_dns=$(after 'DNS record' "$H_TMP/ed.out")
case $rsa_dns in
'r2026._domainkey.kg.example. IN TXT ( "v=DKIM1; k=rsa; p='*'" )') shape=yes ;;
*) shape=no ;;
esac
h_assert_eq yes "$shape" 'rsa: the DNS line is r2026._domainkey.kg.example. IN TXT ( "v=DKIM1; k=rsa; p=..." ... )'
# strings FILE-LINE: the quoted strings of a DNS line, one a line
strings() { grep -o '"[^"]*"' <<<"$1" | tr -d '"'; }
h_assert_eq 2 "$(strings "$rsa_dns" | wc -l)" "rsa: the record is split into two strings"
h_assert_eq 255 "$(strings "$rsa_dns" | head -n 1 | tr -d '\n' | wc -c)" "rsa: the first string is 255 octets"
h_assert_eq 1 "$(strings "$ed_dns" | wc -l)" "ed25519: the record is one string"
h_assert_eq 'v=DKIM1; k=ed25519; p=' "$(strings "$ed_dns" | sed 's/p=.*/p=/')" "ed25519: v=DKIM1; k=ed25519; p=..."
h_assert_eq 32 "$(strings "$ed_dns" | sed 's/.*p=//' | base64 -d | wc -c)" "ed25519: p= is a 32-byte key (RFC 8463)"

# serve the printed records, strings as printed
dns_args=()
for line in "$rsa_dns" "$ed_dns"; do
	arg="--txt-record=${line%%. IN TXT*}"
	while IFS= read -r s; do arg+=",$s"; done < <(strings "$line")
	dns_args+=("$arg")
done
h_dns_start "${dns_args[@]}"

{ after 'KeyTable line' "$H_TMP/rsa.out"; after 'KeyTable line' "$H_TMP/ed.out"; } >"$H_TMP/KeyTable"
{ after 'SigningTable line' "$H_TMP/rsa.out"; after 'SigningTable line' "$H_TMP/ed.out"; } >"$H_TMP/SigningTable"
h_policy 'class standard { }' 'assign outbound standard'
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable" "MultipleSignatures yes"
conf=$H_TMP/bulkmilter.conf
"$H_BULKMILTERCTL" -c "$conf" dkim check >"$H_TMP/check.out"
h_assert_eq 0 "$?" "dkim check of the printed lines and records: exit 0"
h_assert_eq "ok ok" "$(sed 's/.*: \([a-z]*\) .*/\1/' "$H_TMP/check.out" | tr '\n' ' ' | sed 's/ $//')" \
	"dkim check: both keys ok"

h_milter_start
h_postfix_start
dkim_msg message "$H_TMP/m.eml" m@test.example "From: Alice <alice@kg.example>" "To: bob@example.net" \
	"Subject: keygen"
dkim_send "$H_TMP/m.eml" || h_ok "message delivered" false
h_assert_eq "a=rsa-sha256 d=kg.example s=r2026;a=ed25519-sha256 d=kg.example s=e2026" \
	"$(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-3 | sort -r | tr '\n' ';' | sed 's/;$//')" \
	"both signatures at the sink"
printf '%s\n' "$rsa_dns" >"$H_TMP/r2026.txt"
printf '%s\n' "$ed_dns" >"$H_TMP/e2026.txt"
dkim_verify --opendkim --txt "r2026._domainkey.kg.example=$H_TMP/r2026.txt" \
	--txt "e2026._domainkey.kg.example=$H_TMP/e2026.txt" "$DKIM_FILE"
h_assert_eq 0 "$?" "python3-dkim and OpenDKIM verify both signatures with the printed records"

"$H_BULKMILTERCTL" --json dkim keygen --algorithm ed25519 kg.example j2026 "$dir" >"$H_TMP/j.json"
h_assert_eq 0 "$?" "keygen --json: exit 0"
h_assert_eq "$dir/kg.example.j2026.key|j2026._domainkey.kg.example kg.example:j2026:$dir/kg.example.j2026.key|*@kg.example j2026._domainkey.kg.example|j2026._domainkey.kg.example.|1" \
	"$(/usr/bin/python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
print("|".join([d["key_file"], d["key_table"], d["signing_table"], d["dns_name"], str(len(d["txt_strings"]))]))' "$H_TMP/j.json")" \
	"keygen --json: key file, KeyTable and SigningTable lines, DNS name, one string"
