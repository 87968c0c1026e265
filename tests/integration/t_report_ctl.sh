#!/bin/bash
#
# bulkmilterctl suppress, on a real Redis:
#   - import then export gives back the same addresses (lower case, one a
#     line, brackets and comments taken off); list shows each with its
#     expiry; del removes one; add adds one;
#   - a file with a bad line imports nothing and names FILE:LINE;
#   - entries added with --for 2s are gone after it, each on its own
#     (the others stay), and the list's key goes with its last entry;
#   - --json forms; the lists of two accounts are apart.

. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class newsletter {
    account     sasl sender
    suppress    hard-bounce
}
assign sender  news@example.com  newsletter
EOF_POLICY
h_conf
CTL=("$H_BULKMILTERCTL" -c "$H_TMP/bulkmilter.conf")
A=news@example.com

cat >"$H_TMP/in.txt" <<'EOF_IN'
# bounced in the old system
alice@example.org
<Bob@Example.ORG>

  carol@example.org  
EOF_IN
h_ok "import exits 0" "${CTL[@]}" suppress import "$A" "$H_TMP/in.txt"
h_assert_eq "alice@example.org bob@example.org carol@example.org" \
	"$("${CTL[@]}" suppress export "$A" | sort | tr '\n' ' ' | sed 's/ $//')" "export gives back what was imported"
"${CTL[@]}" suppress export "$A" >"$H_TMP/out.txt"
h_ok "export's output imports again" "${CTL[@]}" suppress import other@example.com "$H_TMP/out.txt"
h_assert_eq "$(sort "$H_TMP/out.txt")" "$("${CTL[@]}" suppress export other@example.com | sort)" \
	"... into another account, the same"
h_assert_eq 3 "$("${CTL[@]}" suppress list "$A" | grep -Ec '^[a-z]+@example\.org until 20[0-9]{2}-[0-9]{2}-[0-9]{2}T')" \
	"list shows each address with its expiry"
until=$("${CTL[@]}" suppress list "$A" | sed -n 's/^alice@example.org until //p')
days=$(( ($(date -d "$until" +%s) - $(date +%s) + 43200) / 86400 ))
h_assert_eq 180 "$days" "the default expiry is 180 days away"

h_ok "del bob" "${CTL[@]}" suppress del "$A" bob@example.org
h_assert_eq "alice@example.org carol@example.org" \
	"$("${CTL[@]}" suppress export "$A" | sort | tr '\n' ' ' | sed 's/ $//')" "bob is gone"
h_assert_eq "bob@example.org was not suppressed for $A" "$("${CTL[@]}" suppress del "$A" bob@example.org)" \
	"del of an address not on the list says so"
h_assert_eq '{"account":"news@example.com","address":"dave@example.org","for_ms":15552000000,"new":true}' \
	"$("${CTL[@]}" --json suppress add "$A" Dave@Example.org)" "add --json"
h_assert_eq '["alice@example.org","carol@example.org","dave@example.org"]' \
	"$("${CTL[@]}" --json suppress export "$A")" "export --json"
h_assert_eq 3 "$("${CTL[@]}" --json suppress list "$A" | grep -o '"until":"20' | wc -l)" "list --json has each until"

printf 'erin@example.org\nnot an address\n' >"$H_TMP/bad.txt"
"${CTL[@]}" suppress import "$A" "$H_TMP/bad.txt" 2>"$H_TMP/bad.err"
h_assert_eq 1 $? "a bad line fails the import"
h_assert_grep "$H_TMP/bad.err" "^$H_TMP/bad.txt:2: not an address: not an address$" "... naming FILE:LINE"
h_assert_no_grep <("${CTL[@]}" suppress export "$A") erin "... and nothing of the file was imported"

# expiry, per entry
h_ok "add with --for 2s" "${CTL[@]}" suppress add "$A" short@example.org --for 2s
printf 'x1@example.org\nx2@example.org\n' >"$H_TMP/short.txt"
h_ok "import with --for 2s" "${CTL[@]}" suppress import temp@example.com "$H_TMP/short.txt" --for 2s
h_assert_grep <("${CTL[@]}" suppress export "$A") '^short@example\.org$' "the short entry is listed at first"
sleep 3
h_assert_no_grep <("${CTL[@]}" suppress export "$A") short "it is gone after 2s"
h_assert_eq "alice@example.org carol@example.org dave@example.org" \
	"$("${CTL[@]}" suppress export "$A" | sort | tr '\n' ' ' | sed 's/ $//')" "the others stay"
h_assert_eq "" "$("${CTL[@]}" suppress export temp@example.com)" "an account whose entries all expired lists none"
h_assert_eq 0 "$(h_redis EXISTS 'bm:{temp@example.com}:sup')" "... and its key is gone from Redis"
