#!/bin/bash
#
# Which mail is signed, with which key, and which headers the signature
# covers, through a real Postfix (the milter reloaded with SIGHUP between
# table sets):
#
# - refile: SigningTable "*@example.com" picks key a, "*@*.example.com"
#   key b (any depth of subdomain), matched ignoring case; a domain that
#   only ends like example.com matches neither.
# - The From address is the one inside <> (a quoted display name with an
#   @ is not it; nor is a comment); two addresses in one From are not
#   signed.
# - Outbound is also a SASL client at an external address and mail from
#   sendmail(1) (non_smtpd_milters): both signed.
# - Not signed, and the log line says why: an inbound client (XCLIENT
#   ADDR=192.0.2.10, From in a signed domain: signed=no with sign_reason="inbound", direction=
#   inbound), two From headers (signed=no(2 From headers)), a From
#   domain not in the SigningTable (signed=no(no signing table entry for
#   ADDRESS)). None of them carries a DKIM-Signature at the sink.
# - List-Unsubscribe and List-Unsubscribe-Post are in h= (RFC 8058);
#   a message without them does not have them there.
# - OversignHeaders From (the default): h= names from twice; a From added
#   above the signed one after delivery makes OpenDKIM's verifier fail.
#   The control: with OversignHeaders Subject the same forgery passes
#   OpenDKIM's verifier (python3-dkim refuses two From headers by itself,
#   so it cannot tell).
# - A plain SigningTable: user@domain beats domain, a subdomain needs its
#   own line.
# - A KeyTable/SigningTable pair as an OpenDKIM admin writes it (file:,
#   refile:, comments, tabs, blank lines, "%" as the domain) works
#   unchanged; opendkim -n accepts the same pair.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

dkim_rsa_key a
dkim_rsa_key b
cat >"$H_TMP/KeyTable" <<EOF
a._domainkey.example.com example.com:a:$DKIM_KEYS/a.private
b._domainkey.example.com example.com:b:$DKIM_KEYS/b.private
EOF
cat >"$H_TMP/refile.table" <<'EOF'
*@example.com   a._domainkey.example.com
*@*.example.com b._domainkey.example.com
EOF
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/refile.table"
h_sasl_user carol@example.org s3cret
h_milter_start
h_postfix_start "non_smtpd_milters = $H_MILTER_SOCKET"

# mail NAME [--ip ADDR] [--sasl USER PASS] 'Name: value'...: a message
# with these header fields (and To, Subject), sent and delivered
# (DKIM_QID, DKIM_FILE).
mail() {
	local name=$1 opts=()
	shift
	[ "$1" = --ip ] && { opts+=(--ip "$2"); shift 2; }
	[ "$1" = --sasl ] && { opts+=(--sasl "$2" "$3"); shift 3; }
	dkim_msg message "$H_TMP/$name.eml" "$name@test.example" \
		"To: bob@example.net" "Subject: $name" "$@"
	dkim_send "$H_TMP/$name.eml" "${opts[@]}" || h_ok "$name: delivered" false
}

# signed NAME SELECTOR [DOMAIN]: the last message has one RSA signature
# by SELECTOR of DOMAIN (example.com), in the log and at the sink, and
# it verifies with both verifiers.
signed() {
	local name=$1 sel=$2 domain=${3:-example.com}
	h_assert_eq "d=$domain,s=$sel,a=rsa-sha256" "$(dkim_signed "$DKIM_QID")" \
		"$name: log says signed=d=$domain,s=$sel,a=rsa-sha256"
	h_assert_eq "a=rsa-sha256 d=$domain s=$sel" "$(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-3)" \
		"$name: one signature at the sink, d=$domain s=$sel"
	dkim_verify --opendkim "$DKIM_FILE"
	h_assert_eq 0 "$?" "$name: verifies with python3-dkim and OpenDKIM (key $sel)"
}

# unsigned NAME LOGGED: the last message was delivered without a
# signature; the log says signed=LOGGED.
unsigned() {
	h_assert_eq "$2" "$(dkim_signed "$DKIM_QID")" "$1: log says signed=$2"
	h_ok "$1: no DKIM-Signature at the sink" no_signature "$DKIM_FILE"
}
no_signature() {
	[ -n "$1" ] && [ -z "$(dkim_msg sigs "$1")" ]
}

# ---- refile: wildcard and subdomain patterns
mail refile-domain "From: Alice <alice@example.com>"
signed refile-domain a
mail refile-subdomain "From: News <news@news.example.com>"
signed refile-subdomain b
mail refile-deeper "From: x@a.b.example.com"
signed refile-deeper b
mail refile-case "From: Alice <Alice@Example.COM>"
signed refile-case a
mail refile-lookalike "From: alice@notexample.com"
unsigned refile-lookalike "no(no signing table entry for alice@notexample.com)"
mail refile-suffix "From: alice@example.com.evil.test"
unsigned refile-suffix "no(no signing table entry for alice@example.com.evil.test)"

# ---- the From address, parsed
mail quoted-at "From: \"news@other.example\" <alice@example.com>"
signed quoted-at a
mail comment "From: alice@example.com (Alice at other.example)"
signed comment a
mail two-addresses "From: alice@example.com, news@news.example.com"
unsigned two-addresses "no(From header has no single valid address)"

# ---- outbound from elsewhere: SASL from an external address, sendmail(1)
mail sasl --ip 192.0.2.10 --sasl carol@example.org s3cret "From: Alice <alice@example.com>"
h_assert_eq outbound "$(h_milter_field "$DKIM_QID" direction)" "sasl: log says direction=outbound"
signed sasl a
dkim_msg message "$H_TMP/local.eml" local@test.example "From: Alice <alice@example.com>" \
	"To: bob@example.net" "Subject: local submission"
h_sendmail -f alice@example.com bob@example.net <"$H_TMP/local.eml"
DKIM_FILE=$(h_wait_sink_grep main "Message-ID: <local@test.example>" 30)
DKIM_QID=$(dkim_msg headers "$DKIM_FILE" | sed -n 's/^Received: .*(Postfix, from userid 0) id \([0-9A-Za-z]*\);.*/\1/p')
h_ok "sendmail: delivered, queue ID $DKIM_QID" test -n "$DKIM_QID"
signed sendmail a

# ---- not signed, and why
mail inbound --ip 192.0.2.10 "From: Alice <alice@example.com>"
h_assert_eq inbound "$(h_milter_field "$DKIM_QID" direction)" "inbound: log says direction=inbound"
unsigned inbound "no(inbound)"
mail two-froms "From: Alice <alice@example.com>" "From: Mallory <mallory@example.com>"
unsigned two-froms "no(2 From headers)"
mail two-froms-same "From: alice@example.com" "From: alice@example.com"
unsigned two-froms-same "no(2 From headers)"
mail other-domain "From: Olga <olga@other.example>"
unsigned other-domain "no(no signing table entry for olga@other.example)"

# ---- List-Unsubscribe and List-Unsubscribe-Post are signed
mail list "From: News <news@example.com>" \
	"List-Unsubscribe: <https://example.com/u/123>, <mailto:u@example.com>" \
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
signed list a
dkim_verify --opendkim --require-h list-unsubscribe --require-h list-unsubscribe-post "$DKIM_FILE"
h_assert_eq 0 "$?" "list: h= has list-unsubscribe and list-unsubscribe-post; both verifiers pass"
mail no-list "From: News <news@example.com>"
dkim_verify --require-h list-unsubscribe-post --expect-fail "$DKIM_FILE"
h_assert_eq 0 "$?" "no-list: dkim_verify.py --require-h list-unsubscribe-post fails it (control)"
h_assert_grep "$DKIM_VERIFY_OUT" ' h=: missing list-unsubscribe-post$' \
	"no-list: because list-unsubscribe-post is not in h="

# ---- From is oversigned
hfrom() { dkim_msg sigs "$1" | sed 's/.*h=//' | tr ':' '\n' | grep -c '^from$'; }
mail oversign "From: Alice <alice@example.com>"
signed oversign a
h_assert_eq 2 "$(hfrom "$DKIM_FILE")" "oversign: h= names from twice, the message has one"
dkim_msg add-from "$DKIM_FILE" "$H_TMP/oversign-forged.eml" "Mallory <mallory@example.com>"
h_assert_eq 2 "$(grep -c '^From: ' "$H_TMP/oversign-forged.eml")" "oversign: the forged copy has two From"
dkim_verify --opendkim --no-python --expect-fail "$H_TMP/oversign-forged.eml"
h_assert_eq 0 "$?" "oversign: with a second From added, OpenDKIM's verifier fails"
h_assert_grep "$DKIM_VERIFY_OUT" 'opendkim: fail .*s=a d=example.com.* failed: signature verification failed' \
	"oversign: OpenDKIM says: signature verification failed"

h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/refile.table" "OversignHeaders Subject"
h_ok "reload: OversignHeaders Subject" dkim_reload
mail not-oversigned "From: Alice <alice@example.com>"
signed not-oversigned a
h_assert_eq 1 "$(hfrom "$DKIM_FILE")" "not-oversigned: h= names from once"
dkim_msg add-from "$DKIM_FILE" "$H_TMP/not-oversigned-forged.eml" "Mallory <mallory@example.com>"
dkim_verify --opendkim --no-python "$H_TMP/not-oversigned-forged.eml"
h_assert_eq 0 "$?" "not-oversigned: the same forgery passes OpenDKIM's verifier (control)"

# ---- plain SigningTable
cat >"$H_TMP/plain.table" <<'EOF'
example.com        a._domainkey.example.com
carol@example.com  b._domainkey.example.com
news.example.com   b._domainkey.example.com
EOF
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable $H_TMP/plain.table"
h_ok "reload: plain SigningTable" dkim_reload
mail plain-domain "From: alice@example.com"
signed plain-domain a
mail plain-user "From: Carol <carol@example.com>"
signed plain-user b
mail plain-subdomain "From: news@news.example.com"
signed plain-subdomain b
mail plain-other-subdomain "From: x@deep.news.example.com"
unsigned plain-other-subdomain "no(no signing table entry for x@deep.news.example.com)"

# ---- an OpenDKIM pair, unchanged
dkim_rsa_key mail example.org
for d in news.example.org shop.example.org; do
	DKIM_TXT+=(--txt "mail._domainkey.$d=$DKIM_KEYS/mail.txt")
done
mkdir -p "$H_TMP/opendkim"
cat >"$H_TMP/opendkim/KeyTable" <<EOF
# /etc/opendkim/KeyTable
# KEYNAME                    DOMAIN:SELECTOR:PATH-TO-PRIVATE-KEY

a._domainkey.example.com	example.com:a:$DKIM_KEYS/a.private
# one key for every example.org subdomain, d= is the From domain
mail._domainkey.example.org	%:mail:$DKIM_KEYS/mail.private
EOF
cat >"$H_TMP/opendkim/SigningTable" <<'EOF'
# /etc/opendkim/SigningTable (refile:)
# PATTERN                KEYNAME

*@example.com		a._domainkey.example.com
*@*.example.org		mail._domainkey.example.org
EOF
h_conf "KeyTable file:$H_TMP/opendkim/KeyTable" "SigningTable refile:$H_TMP/opendkim/SigningTable"
h_ok "reload: the OpenDKIM pair" dkim_reload
mail opendkim-com "From: Alice <alice@example.com>"
signed opendkim-com a
mail opendkim-news "From: News <news@news.example.org>"
signed opendkim-news mail news.example.org
mail opendkim-shop "From: shop@Shop.Example.org"
signed opendkim-shop mail shop.example.org
mail opendkim-apex "From: x@example.org"
unsigned opendkim-apex "no(no signing table entry for x@example.org)"

cat >"$H_TMP/opendkim/opendkim.conf" <<EOF
Mode s
Syslog no
Socket local:$H_TMP/opendkim/opendkim.sock
KeyTable file:$H_TMP/opendkim/KeyTable
SigningTable refile:$H_TMP/opendkim/SigningTable
EOF
h_ok "opendkim -n accepts the same KeyTable and SigningTable" \
	opendkim -n -x "$H_TMP/opendkim/opendkim.conf"
