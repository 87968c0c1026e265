#!/bin/bash
#
# SigningAuthority: a SASL login gets signatures only for the From
# domains it may send as, through a real Postfix (SASL logins, keys for
# two customers in one KeyTable):
#
# - sasl-domain: alice@cust-a.example sending From cust-a.example and From
#   news.cust-a.example is signed d=cust-a.example (python3-dkim and
#   OpenDKIM verify it); From cust-b.example is delivered unsigned, the
#   log line says sign_reason="not authorized for cust-b.example" and a
#   line of its own says why (sasl-domain, the login). Mail from
#   InternalHosts without a login is still signed for cust-b.example.
#   The class's from-unauthorized: reject answers "550 5.7.1 Not
#   authorized to send as cust-b.example" at end of data and nothing is
#   delivered; hold puts the message in the hold queue (decision=hold,
#   the reason names login and domain); tag delivers it unsigned with
#   X-Bulk-Unauthorized: cust-b.example.
# - explain --sasl X --from Y says "may" or "may not" and why.
# - file:PATH: a glob login line and an exact line with several
#   domains; the exact line wins over the glob; a listed domain covers
#   its subdomains. After the map is edited and the milter gets SIGHUP,
#   the same message gets the other answer. A broken map is refused by
#   -n and by a reload (FILE:LINE in both), and the running map stays.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

dkim_rsa_key a cust-a.example
dkim_rsa_key b cust-b.example
cat >"$H_TMP/KeyTable" <<EOF
a._domainkey.cust-a.example cust-a.example:a:$DKIM_KEYS/a.private
b._domainkey.cust-b.example cust-b.example:b:$DKIM_KEYS/b.private
EOF
cat >"$H_TMP/SigningTable" <<'EOF'
*@cust-a.example    a._domainkey.cust-a.example
*@*.cust-a.example  a._domainkey.cust-a.example
*@cust-b.example    b._domainkey.cust-b.example
EOF
h_policy <<'EOF'
class plain    { account sasl }
class strict   {
    account sasl
    from-unauthorized reject
}
class holding  {
    account sasl
    from-unauthorized hold
}
class tagging  {
    account sasl
    from-unauthorized tag
}
assign sasl rita@cust-a.example strict
assign sasl hank@cust-a.example holding
assign sasl tina@cust-a.example tagging
assign outbound plain
EOF
tables=("KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable")
h_conf "${tables[@]}" "SigningAuthority sasl-domain"
for u in alice rita hank tina bob; do
	h_sasl_user "$u@cust-a.example" s3cret
done
h_milter_start
h_postfix_start

# mail NAME LOGIN|- FROM: a message From FROM sent with SASL LOGIN from
# 192.0.2.10 (- : no login, from 127.0.0.1, an InternalHost); delivered
# (DKIM_QID, DKIM_FILE) unless it was refused.
mail() {
	local name=$1 login=$2 from=$3 opts=()
	[ "$login" = - ] || opts=(--ip 192.0.2.10 --sasl "$login" s3cret)
	dkim_msg message "$H_TMP/$name.eml" "$name@test.example" "From: <$from>" \
		"To: bob@example.net" "Subject: $name"
	dkim_send "$H_TMP/$name.eml" "${opts[@]}"
}

# signed NAME DOMAIN SELECTOR: one signature d=DOMAIN s=SELECTOR that both verifiers accept.
signed() {
	h_assert_eq "d=$2,s=$3,a=rsa-sha256" "$(dkim_signed "$DKIM_QID")" "$1: log says signed=d=$2,s=$3"
	h_assert_eq "a=rsa-sha256 d=$2 s=$3" "$(dkim_msg sigs "$DKIM_FILE" | cut -d' ' -f1-3)" \
		"$1: one signature at the sink, d=$2 s=$3"
	dkim_verify --opendkim "$DKIM_FILE"
	h_assert_eq 0 "$?" "$1: verifies with python3-dkim and OpenDKIM"
}

# unsigned NAME DOMAIN: delivered without a signature, not authorized for DOMAIN.
unsigned() {
	h_assert_eq "no(not authorized for $2)" "$(dkim_signed "$DKIM_QID")" \
		"$1: log says signed=no, sign_reason=\"not authorized for $2\""
	h_ok "$1: delivered without a DKIM-Signature" test -n "$DKIM_FILE" -a -z "$(dkim_msg sigs "$DKIM_FILE")"
}

# ---- sasl-domain
mail own alice@cust-a.example alice@cust-a.example || h_ok "own: delivered" false
signed own cust-a.example a
mail sub alice@cust-a.example news@news.cust-a.example || h_ok "sub: delivered" false
signed sub cust-a.example a
mail other alice@cust-a.example ceo@cust-b.example || h_ok "other: delivered" false
unsigned other cust-b.example
h_assert_grep "$H_MILTER_LOG" "$DKIM_QID: sasl=alice@cust-a.example not authorized for cust-b.example: sasl-domain: cust-b.example does not have the organizational domain of login alice@cust-a.example\$" \
	"other: the log says why (sasl-domain, the login)"
h_assert_eq accept "$(h_milter_field "$DKIM_QID" decision)" "other: from-unauthorized none: decision=accept"
mail internal - ceo@cust-b.example || h_ok "internal: delivered" false
signed internal cust-b.example b

# reject: refused at end of data, nothing queued
dkim_msg message "$H_TMP/reject.eml" reject@test.example "From: <ceo@cust-b.example>" "To: bob@example.net" \
	"Subject: reject"
h_send --raw "$H_TMP/reject.eml" --ip 192.0.2.10 --sasl rita@cust-a.example s3cret
h_assert_grep "$H_SEND_LOG" '^<\*\* *550 5\.7\.1 Not authorized to send as cust-b\.example$' \
	"reject: 550 5.7.1 Not authorized to send as cust-b.example"
h_assert_eq "" "$H_QID" "reject: not queued"
h_assert_grep "$H_MILTER_LOG" 'account=rita@cust-a.example .*decision=reject .*sign_reason="not authorized for cust-b.example"' \
	"reject: the log line says decision=reject, not authorized"
mail reject-own rita@cust-a.example rita@cust-a.example || h_ok "reject-own: delivered" false
signed reject-own cust-a.example a

# hold: accepted into the hold queue
dkim_msg message "$H_TMP/hold.eml" hold@test.example "From: <ceo@cust-b.example>" "To: bob@example.net" \
	"Subject: hold"
h_send --raw "$H_TMP/hold.eml" --ip 192.0.2.10 --sasl hank@cust-a.example s3cret
hold_qid=$H_QID
h_ok "hold: accepted ($hold_qid)" test -n "$hold_qid"
h_assert_eq hold "$(h_milter_field "$hold_qid" decision)" "hold: decision=hold"
h__wait_for 10 bash -c "postqueue -c '$H_POSTFIX_DIR' -j | grep '\"queue_id\": *\"$hold_qid\"' | grep -q '\"queue_name\": *\"hold\"'"
h_assert_eq 1 "$(h_postqueue_json | grep "\"queue_id\": *\"$hold_qid\"" | grep -c '"queue_name": *"hold"')" \
	"hold: in the hold queue (postqueue -j)"
h_assert_grep "$H_MILTER_LOG" "$hold_qid: .* hold=\"bulkmilter: hank@cust-a.example not authorized to send as cust-b.example\"\$" \
	"hold: the hold reason names login and domain"

# tag: delivered unsigned with X-Bulk-Unauthorized
mail tag tina@cust-a.example ceo@cust-b.example || h_ok "tag: delivered" false
unsigned tag cust-b.example
h_assert_eq "cust-b.example" "$(h_header "$DKIM_FILE" X-Bulk-Unauthorized)" "tag: X-Bulk-Unauthorized: cust-b.example"

# explain
conf=$H_TMP/bulkmilter.conf
out=$("$H_BULKMILTERCTL" -c "$conf" explain --sasl alice@cust-a.example --from ceo@cust-b.example)
h_assert_eq "signing authority (sasl-domain): cust-b.example may not be signed for alice@cust-a.example: sasl-domain: cust-b.example does not have the organizational domain of login alice@cust-a.example" \
	"$(grep '^signing authority' <<<"$out")" "explain: may not, and why"
out=$("$H_BULKMILTERCTL" -c "$conf" --json explain --sasl alice@cust-a.example --from news.cust-a.example)
h_assert_eq '"signing_authority":{"setting":"sasl-domain","from_domain":"news.cust-a.example","may_sign":true,' \
	"$(grep -o '"signing_authority":{[^,]*,[^,]*,[^,]*,' <<<"$out")" "explain --json: may_sign true"

# ---- file: map, glob and exact lines, reloaded
map=$H_TMP/authority.map
cat >"$map" <<'EOF'
# customers and who may sign for what
*@cust-a.example      cust-a.example
alice@cust-a.example  cust-a.example, cust-b.example
EOF
h_conf "${tables[@]}" "SigningAuthority file:$map"
h_milter_run -n -c "$conf"
h_assert_eq "0 config OK" "$? $H_OUT" "file: the map loads (bulkmilter -n)"
dkim_reload || h_ok "file: reloaded" false
mail f-alice-b alice@cust-a.example ceo@cust-b.example || h_ok "f-alice-b: delivered" false
signed f-alice-b cust-b.example b
mail f-bob-sub bob@cust-a.example bob@news.cust-a.example || h_ok "f-bob-sub: delivered" false
signed f-bob-sub cust-a.example a
mail f-bob-b bob@cust-a.example ceo@cust-b.example || h_ok "f-bob-b: delivered" false
unsigned f-bob-b cust-b.example
h_assert_grep "$H_MILTER_LOG" "$DKIM_QID: sasl=bob@cust-a.example not authorized for cust-b.example: $map:2: \\*@cust-a.example may sign for cust-a.example, not cust-b.example\$" \
	"f-bob-b: the log names the map line that answered"

# a broken map: -n and a reload refuse it, naming FILE:LINE; the running map stays
printf 'bob@cust-a.example cust-b..example\n' >>"$map"
h_milter_run -n -c "$conf"
h_assert_eq "1 $map:4: bad domain \"cust-b..example\"" "$? $H_OUT" "broken map: bulkmilter -n exits 1 with FILE:LINE"
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reload refused' 10
h_assert_grep "$H_MILTER_LOG" "$map:4: bad domain \"cust-b..example\"" "broken map: the refused reload logs FILE:LINE"
mail f-bob-b2 bob@cust-a.example ceo@cust-b.example || h_ok "f-bob-b2: delivered" false
unsigned f-bob-b2 cust-b.example

# the map edited: bob's glob now covers cust-b.example too
cat >"$map" <<'EOF'
*@cust-a.example      cust-a.example cust-b.example
alice@cust-a.example  cust-a.example
EOF
dkim_reload || h_ok "file: reloaded after the edit" false
mail f-bob-b3 bob@cust-a.example ceo@cust-b.example || h_ok "f-bob-b3: delivered" false
signed f-bob-b3 cust-b.example b
mail f-alice-b2 alice@cust-a.example ceo@cust-b.example || h_ok "f-alice-b2: delivered" false
unsigned f-alice-b2 cust-b.example
out=$("$H_BULKMILTERCTL" -c "$conf" explain --sasl bob@cust-a.example --from ceo@cust-b.example)
h_assert_eq "signing authority (file:$map): cust-b.example may be signed for bob@cust-a.example: $map:1: *@cust-a.example may sign for cust-b.example" \
	"$(grep '^signing authority' <<<"$out")" "explain after the edit: may, the map line"
