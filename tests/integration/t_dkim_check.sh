#!/bin/bash
#
# bulkmilterctl dkim check: every KeyTable entry's TXT record, asked of
# the Resolver (dnsmasq on loopback), against its private key:
#
# - ok for a published matching RSA key (opendkim-genkey's record, two
#   strings) and Ed25519 key (RFC 8463 record);
# - missing for a selector without a record, mismatch for a record of
#   another key, and for a k=ed25519 record of an RSA key; revoked for
#   "p="; unusable for a p= that is not base64, and for v=DKIM2;
# - exit status 1 when any entry is not ok, 0 for "dkim check DOMAIN"
#   whose entries are all ok; --json gives the same statuses per entry
#   and "ok"; a DOMAIN with no entry exits 1.
# - the check goes through the Resolver: with dnsmasq stopped, an entry
#   is unusable (DNS lookup failed), not missing.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

for s in rsa mism revk bad v2 kty; do dkim_rsa_key "$s"; done
dkim_rsa_key other
dkim_rsa_key grsa good.example
dkim_ed_key ed
dkim_ed_key ged good.example
dkim_rsa_key gone

# record FILE: the TXT record in an opendkim-genkey zone snippet or a bare one
record() {
	/usr/bin/python3 -c 'import re,sys
t=open(sys.argv[1]).read(); q=re.findall(r"\"([^\"]*)\"", t)
print(" ".join(("".join(q) if q else t).split()))' "$1"
}
# txt NAME RECORD: dnsmasq's option serving RECORD in strings of 255 octets
txt() {
	local out="--txt-record=$1" rec=$2
	while [ -n "$rec" ]; do
		out+=",${rec:0:255}"
		rec=${rec:255}
	done
	printf '%s' "$out"
}
rsa=$(record "$DKIM_KEYS/rsa.txt")
h_ok "the RSA record needs two strings (${#rsa} octets)" test "${#rsa}" -gt 255
h_dns_start \
	"$(txt rsa._domainkey.example.com "$rsa")" \
	"$(txt ed._domainkey.example.com "$(record "$DKIM_KEYS/ed.txt")")" \
	"$(txt mism._domainkey.example.com "$(record "$DKIM_KEYS/other.txt")")" \
	"$(txt revk._domainkey.example.com "v=DKIM1; k=rsa; p=")" \
	"$(txt bad._domainkey.example.com "v=DKIM1; k=rsa; p=not*base64")" \
	"$(txt v2._domainkey.example.com "v=DKIM2; k=rsa; p=$(record "$DKIM_KEYS/v2.txt" | sed 's/.*p=//')")" \
	"$(txt kty._domainkey.example.com "v=DKIM1; k=ed25519; p=$(record "$DKIM_KEYS/ed.txt" | sed 's/.*p=//')")" \
	"$(txt grsa._domainkey.good.example "$(record "$DKIM_KEYS/grsa.txt")")" \
	"$(txt ged._domainkey.good.example "$(record "$DKIM_KEYS/ged.txt")")" \
	"--txt-record=unrelated._domainkey.example.com,google-site-verification=x"

{
	for s in rsa ed mism revk bad v2 kty gone; do
		key=$DKIM_KEYS/$s.private
		[ -e "$key" ] || key=$DKIM_KEYS/$s.key
		echo "$s._domainkey.example.com example.com:$s:$key"
	done
	echo "grsa._domainkey.good.example good.example:grsa:$DKIM_KEYS/grsa.private"
	echo "ged._domainkey.good.example good.example:ged:$DKIM_KEYS/ged.key"
} >"$H_TMP/KeyTable"
echo '*@example.com rsa._domainkey.example.com' >"$H_TMP/SigningTable"
h_policy 'class standard { }' 'assign outbound standard'
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
conf=$H_TMP/bulkmilter.conf
ctl() { "$H_BULKMILTERCTL" -c "$conf" "$@"; }
[ -x "$H_BULKMILTERCTL" ] || h_fatal "no bulkmilterctl: set BM_BUILDDIR"

out=$(ctl dkim check)
h_assert_eq 1 "$?" "dkim check: exit 1 (some entries are not ok)"
printf '%s\n' "$out" >"$H_TMP/check.out"
# status NAME: the status word of that entry's line
status() { sed -n "s/^$1\\._domainkey\\.[a-z.]* $1\\._domainkey\\.[a-z.]*: \\([a-z]*\\) .*/\\1/p" "$H_TMP/check.out"; }
h_assert_eq ok "$(status rsa)" "rsa: ok"
h_assert_grep "$H_TMP/check.out" '^rsa._domainkey.example.com rsa._domainkey.example.com: ok \(rsa-2048\)$' \
	"rsa: the line names the record and the key"
h_assert_eq ok "$(status ed)" "ed25519: ok"
h_assert_eq missing "$(status gone)" "no record: missing"
h_assert_eq mismatch "$(status mism)" "another key's record: mismatch"
h_assert_grep "$H_TMP/check.out" '^kty\..*: mismatch \(the record is k=ed25519, the private key is RSA\)$' \
	"k=ed25519 record of an RSA key: mismatch, and why"
h_assert_eq revoked "$(status revk)" "p= empty: revoked"
h_assert_grep "$H_TMP/check.out" '^bad\..*: unusable \(p= is not base64\)$' "p= not base64: unusable (why)"
h_assert_grep "$H_TMP/check.out" '^v2\..*: unusable \(v=DKIM2 is not DKIM1\)$' "v=DKIM2: unusable (why)"
h_assert_eq 10 "$(wc -l <"$H_TMP/check.out")" "one line per KeyTable entry"

out=$(ctl dkim check good.example)
h_assert_eq 0 "$?" "dkim check good.example: exit 0 (its RSA and Ed25519 entries are ok)"
h_assert_eq "ok ok" "$(sed 's/.*: \([a-z]*\) .*/\1/' <<<"$out" | tr '\n' ' ' | sed 's/ $//')" \
	"dkim check good.example: two entries, both ok"

ctl --json dkim check >"$H_TMP/check.json"
h_assert_eq 1 "$?" "dkim check --json: exit 1"
h_assert_eq "false rsa=ok ed=ok mism=mismatch revk=revoked bad=unusable v2=unusable kty=mismatch gone=missing grsa=ok ged=ok" \
	"$(/usr/bin/python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
print(str(d["ok"]).lower(), " ".join(e["selector"]+"="+e["status"] for e in d["entries"]))' "$H_TMP/check.json")" \
	"dkim check --json: ok false and each entry's status, in KeyTable order"
ctl --json dkim check good.example >"$H_TMP/good.json"
h_assert_eq "0 true" "$? $(/usr/bin/python3 -c 'import json,sys; print(str(json.load(open(sys.argv[1]))["ok"]).lower())' "$H_TMP/good.json")" \
	"dkim check --json good.example: exit 0, ok true"

ctl dkim check nothing.example >/dev/null 2>"$H_TMP/none.err"
h_assert_eq 1 "$?" "dkim check of a domain without entries: exit 1"
h_assert_grep "$H_TMP/none.err" '^dkim check: no KeyTable entry for nothing.example$' "... and it says so"

h_dns_stop
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable" "DNSTimeout 200ms"
ctl dkim check good.example >"$H_TMP/down.out"
h_assert_eq 1 "$?" "DNS down: exit 1"
h_assert_grep "$H_TMP/down.out" '^grsa\..*: unusable \(DNS lookup failed' "DNS down: unusable (DNS lookup failed), not missing"
