#!/bin/bash
#
# Key files: RequireSafeKeys (the default) and key rollover by SIGHUP.
#
# - A key file of mode 0644 stops the start: "bulkmilter -f" exits 1 and
#   "bulkmilter -n" exits 1, both naming the KeyTable line, the key's
#   path and its mode. Mode 0640 is refused too; RequireSafeKeys no
#   accepts 0644; mode 0600 is "config OK".
# - Keys are read at start and on SIGHUP, never per message: a key file
#   replaced in place (same path, new content, a new TXT record for the
#   same selector) is not used until SIGHUP; after it, the next message
#   verifies with the new record and fails with the old one.
# - A SIGHUP that finds an unsafe key is refused (logged with path and
#   mode) and the running keys stay; once the mode is fixed, the next
#   SIGHUP takes the new key.
# - A key written inline in the KeyTable (base64 DER, as OpenDKIM allows)
#   obeys RequireSafeKeys through the KeyTable's own mode: with the
#   KeyTable 0644, "bulkmilter -n" exits 1 naming the line, the file and
#   its mode; 0600 is "config OK", and so is 0644 with RequireSafeKeys
#   no. The running milter signs with an inline key from a 0600 KeyTable;
#   a SIGHUP after the KeyTable became 0644 is refused (logged the same
#   way) and the running key stays.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

key=$DKIM_KEYS/k.private
dkim_rsa_key k
old_txt=$DKIM_KEYS/k.txt
# the next keys for the same selector, as an admin makes them
for n in 2 3; do
	mkdir -p "$H_TMP/key$n"
	opendkim-genkey -b 2048 -d example.com -s k -D "$H_TMP/key$n" || h_fatal "opendkim-genkey failed"
done
echo "k._domainkey.example.com example.com:k:$key" >"$H_TMP/KeyTable"
echo '*@example.com k._domainkey.example.com' >"$H_TMP/SigningTable"
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
h_policy 'class standard {' '    account sasl sender' '}' 'assign outbound standard'
conf=$H_TMP/bulkmilter.conf
unsafe="$H_TMP/KeyTable:1: $key: mode 0644 is readable by group or others (RequireSafeKeys)"

# ---- an unsafe key stops the start
[ -x "$H_BULKMILTER" ] || h_fatal "no bulkmilter: set BM_BUILDDIR"
chmod 0644 "$key"
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	timeout 20 "$H_BULKMILTER" -f -c "$conf" >"$H_TMP/start.out" 2>&1 </dev/null
h_assert_eq 1 "$?" "mode 0644: bulkmilter -f exits 1"
h_assert_eq 1 "$(grep -cxF "$unsafe" "$H_TMP/start.out")" "mode 0644: bulkmilter -f says: $unsafe" ||
	h_diag "$(cat "$H_TMP/start.out")"
h_ok "mode 0644: no milter socket was left" test ! -e "${H_MILTER_SOCKET#unix:}"

h_milter_run -n -c "$conf"
h_assert_eq 1 "$?" "mode 0644: bulkmilter -n exits 1"
h_assert_eq "$unsafe" "$H_OUT" "mode 0644: bulkmilter -n prints exactly that error"

chmod 0640 "$key"
h_milter_run -n -c "$conf"
h_assert_eq "1 $H_TMP/KeyTable:1: $key: mode 0640 is readable by group or others (RequireSafeKeys)" \
	"$? $H_OUT" "mode 0640: bulkmilter -n exits 1, readable by group"

chmod 0644 "$key"
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable" "RequireSafeKeys no"
h_milter_run -n -c "$conf"
h_assert_eq "0 config OK" "$? $H_OUT" "mode 0644 with RequireSafeKeys no: config OK"

chmod 0600 "$key"
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
h_milter_run -n -c "$conf"
h_assert_eq "0 config OK" "$? $H_OUT" "mode 0600: config OK"

# ---- a key inline in the KeyTable: the KeyTable's own mode
inline=$H_TMP/InlineKeyTable
# inline_table KEYFILE: the KeyTable line for selector k with KEYFILE inline
inline_table() {
	printf 'k._domainkey.example.com example.com:k:%s\n' \
		"$(openssl pkey -in "$1" -outform DER | base64 -w0)" >"$inline"
}
inline_unsafe="$inline:1: key k._domainkey.example.com: private key inline in $inline: mode 0644 is readable by group or others (RequireSafeKeys)"
inline_table "$key"
chmod 0644 "$inline"
h_conf "KeyTable $inline" "SigningTable refile:$H_TMP/SigningTable"
h_milter_run -n -c "$conf"
h_assert_eq "1 $inline_unsafe" "$? $H_OUT" "inline key, KeyTable 0644: bulkmilter -n exits 1 with that error"
chmod 0600 "$inline"
h_milter_run -n -c "$conf"
h_assert_eq "0 config OK" "$? $H_OUT" "inline key, KeyTable 0600: config OK"
chmod 0644 "$inline"
h_conf "KeyTable $inline" "SigningTable refile:$H_TMP/SigningTable" "RequireSafeKeys no"
h_milter_run -n -c "$conf"
h_assert_eq "0 config OK" "$? $H_OUT" "inline key, KeyTable 0644 with RequireSafeKeys no: config OK"
h_conf "KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"

# ---- rollover by SIGHUP
h_milter_start
h_postfix_start

# send NAME: a message from alice@example.com, delivered.
send() {
	dkim_msg message "$H_TMP/$1.eml" "$1@test.example" "From: Alice <alice@example.com>" \
		"To: bob@example.net" "Subject: $1"
	dkim_send "$H_TMP/$1.eml" || h_ok "$1: delivered" false
}

# verifies NAME TXT-FILE: the last message passes both verifiers with it.
verifies() {
	dkim_verify --opendkim --txt "k._domainkey.example.com=$2" "$DKIM_FILE"
	h_assert_eq 0 "$?" "$1: verifies with python3-dkim and OpenDKIM"
}

# fails NAME TXT-FILE: both verifiers fail the last message with it.
fails() {
	dkim_verify --opendkim --expect-fail --txt "k._domainkey.example.com=$2" "$DKIM_FILE"
	h_assert_eq "0 python: fail opendkim: fail" \
		"$? $(grep -o '\(python\|opendkim\): \(pass\|fail\)' "$DKIM_VERIFY_OUT" | tr '\n' ' ' | sed 's/ $//')" \
		"$1: python3-dkim and OpenDKIM both fail it"
}

send first
h_assert_eq "d=example.com,s=k,a=rsa-sha256" "$(dkim_signed "$DKIM_QID")" "first: signed s=k"
verifies "first, with the old TXT" "$old_txt"
fails "first, with the new TXT" "$H_TMP/key2/k.txt"

cat "$H_TMP/key2/k.private" >"$key"
send replaced-not-reloaded
verifies "replaced, before SIGHUP: still the old key (old TXT)" "$old_txt"

h_ok "SIGHUP: reloaded" dkim_reload
send after-reload
h_assert_eq "d=example.com,s=k,a=rsa-sha256" "$(dkim_signed "$DKIM_QID")" "after SIGHUP: signed s=k"
verifies "after SIGHUP, with the new TXT" "$H_TMP/key2/k.txt"
fails "after SIGHUP, with the old TXT" "$old_txt"

# ---- an unsafe key on SIGHUP: refused, the running key stays
cat "$H_TMP/key3/k.private" >"$key"
chmod 0644 "$key"
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_ok "unsafe key on SIGHUP: reload refused" h_wait_log "$H_MILTER_LOG" 'reload refused' 10
h_ok "unsafe key on SIGHUP: the log names path and mode" \
	h_wait_log "$H_MILTER_LOG" "$key: mode 0644 is readable by group or others" 1
send refused
verifies "after the refused reload: the running key (second TXT)" "$H_TMP/key2/k.txt"
fails "after the refused reload, with the third TXT" "$H_TMP/key3/k.txt"

chmod 0600 "$key"
h_ok "mode fixed, SIGHUP: reloaded" dkim_reload
send third
verifies "third key, with the third TXT" "$H_TMP/key3/k.txt"
fails "third key, with the second TXT" "$H_TMP/key2/k.txt"

# ---- an inline key on SIGHUP: taken from a 0600 KeyTable, refused from 0644
inline_table "$H_TMP/key2/k.private"
chmod 0600 "$inline"
h_conf "KeyTable $inline" "SigningTable refile:$H_TMP/SigningTable"
h_ok "inline key, KeyTable 0600, SIGHUP: reloaded" dkim_reload
send inline
verifies "inline key (the second), with the second TXT" "$H_TMP/key2/k.txt"
inline_table "$H_TMP/key3/k.private"
chmod 0644 "$inline"
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_ok "inline key, KeyTable 0644, SIGHUP: reload refused" h_wait_log "$H_MILTER_LOG" 'reload refused' 10
h_ok "inline key, KeyTable 0644, SIGHUP: the log says $inline_unsafe" \
	grep -qF -- "$inline_unsafe" "$H_MILTER_LOG"
send inline-refused
verifies "after the refused reload: the running inline key (second TXT)" "$H_TMP/key2/k.txt"
