#!/bin/bash
#
# scripts/bench and tests/bench/milterload, small: one round of 60
# messages (4 KB; 1 and 10 recipients) through Postfix alone, Postfix with
# the do-nothing filter (on bulkmilter's connection threads, and without
# libmilter), with Debian's OpenDKIM, and with bulkmilter's
# full pipeline on a unix and an inet socket, and with the hosting,
# account-safety and suppression features (issues 17, 18, 21); then
# milterload against each. Speed is the benchmark's business, not this test's: it
# checks that every run completed, that what the benchmark counts is what
# issue 7 asks for (every message signed and tagged, exactly one Redis
# round trip at MAIL FROM and one per recipient, by INFO commandstats and
# by MONITOR), that the report and chart are written, and that bulkmilter
# holds 200 open connections in at most 64 MB (not under the sanitizers,
# whose shadow memory makes any RSS meaningless). Last, --instructions:
# callgrind's count per message for bm-full and the hosting variant, and
# its table and target line in the report (not under the sanitizers,
# which valgrind cannot run).

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

out=$H_TMP/bench
variants=postfix,null-threads,raw,opendkim,bm-full,bm-full-inet,bm-full-hosting,bm-full-safety,bm-full-suppress
"$H_SRCDIR/scripts/bench" --rounds 1 --messages 60 --sessions 5 --sizes 4k --rcpts 1,10 \
	--variants "$variants" --out "$out" >"$H_TMP/bench.log" 2>&1
rc=$?
h_diag "$(tail -n 5 "$H_TMP/bench.log")"
h_assert_eq 0 "$rc" "scripts/bench exits 0"
[ -s "$out/raw.tsv" ] || h_fatal "no raw.tsv"

# row VARIANT CASE: the raw.tsv line of that measurement
row() { awk -F'\t' -v v="$1" -v c="$2" '$2 == v && $3 == c' "$out/raw.tsv"; }
# col VARIANT CASE NAME: one column of it, by header name
col() {
	awk -F'\t' -v v="$1" -v c="$2" -v name="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) k = i; next }
		$2 == v && $3 == c { print $k }' "$out/raw.tsv"
}

h_assert_eq 18 "$(($(wc -l <"$out/raw.tsv") - 1))" "raw.tsv: one line per variant and case"
for c in 4k/1 4k/10; do
	n=$([ "$c" = 4k/1 ] && echo 60 || echo 30)
	rcpts=${c#*/}
	for v in ${variants//,/ }; do
		[ -n "$(row "$v" "$c")" ] || { h_assert_eq present missing "$v $c measured"; continue; }
		h_assert_eq "0 $n" "$(col "$v" "$c" status) $(col "$v" "$c" messages)" \
			"$v $c: smtp-source sent all $n messages, status 0"
		h_ok "$v $c: a positive rate" awk -v r="$(col "$v" "$c" msgs_per_s)" 'BEGIN { exit !(r > 0) }'
	done
	h_assert_eq "$n" "$(col opendkim "$c" signed)" "opendkim $c: every message signed"
	for v in bm-full bm-full-inet bm-full-hosting bm-full-safety bm-full-suppress; do
		h_assert_eq "$n $n" "$(col "$v" "$c" signed) $(col "$v" "$c" tagged)" \
			"$v $c: every message signed and tagged"
		h_assert_eq $((n * (1 + rcpts))) "$(col "$v" "$c" redis_evals)" \
			"$v $c: EVALSHA count = one at MAIL FROM + one per recipient"
	done
done

h_assert_grep "$out/bench.md" '^\| 4k/1 \| bm-full-inet \| [0-9.]+ \|' "bench.md: the table has bm-full-inet 4k/1"
h_assert_grep "$out/bench.md" 'PASS: Redis 4k/10: 11\.00 EVAL\(SHA\)/msg' "bench.md: the Redis target line for 10 recipients"
h_assert_grep "$out/bench.md" '1 recipient\(s\), 200 messages: 2\.000 commands/msg' \
	"MONITOR: 2 commands per 1-recipient message"
h_assert_grep "$out/bench.md" '10 recipient\(s\), 200 messages: 11\.000 commands/msg' \
	"MONITOR: 11 commands per 10-recipient message"
h_assert_eq PNG "$(head -c 4 "$out/bench.png" | tail -c 3)" "bench.png is a PNG"

# milterload against bm-full: a load run, then 200 connections held open
ml=$out/milterload.txt
h_assert_grep "$ml" '^RESULT msgs_per_s=[0-9.]+ messages=60 failed=0 ' "milterload: 60 messages, none failed"
h_assert_grep "$ml" '^hold: 200 of 200 connections open' "milterload: 200 connections held open"
tree_kb=$(awk '/^### / { mine = ($2 == "bm-full:") }
	mine && /^RESULT hold=200 / { sub(/.*tree_rss_kb=/, ""); print $1 + 0; exit }' "$ml")
h_diag "bulkmilter and its SPF helpers with 200 connections open: ${tree_kb:-?} kB"
if ldd "$H_BULKMILTER" | grep -q libasan; then
	h_skip "RSS with 200 connections ≤ 64 MB" "sanitizer build"
else
	h_ok "RSS with 200 connections open ≤ 64 MB (${tree_kb:-?} kB)" \
		test "${tree_kb:-999999999}" -le $((64 * 1024))
fi

# --instructions: the milter under callgrind, its SPF helpers exec'd from
# it natively (through the descriptor of /proc/self/exe: exec of the path
# itself would start valgrind's tool, not bulkmilter)
if ldd "$H_BULKMILTER" | grep -q libasan; then
	h_skip "scripts/bench --instructions" "sanitizer build (valgrind cannot run it)"
else
	ins=$H_TMP/instructions
	"$H_SRCDIR/scripts/bench" --milterload-only --no-milterload --instructions 40 --sessions 5 \
		--milterload-rcpts 1 --variants bm-full,bm-full-hosting --out "$ins" >"$H_TMP/ins.log" 2>&1
	rc=$?
	h_diag "$(tail -n 5 "$H_TMP/ins.log")"
	h_assert_eq 0 "$rc" "scripts/bench --instructions exits 0"
	for v in bm-full bm-full-hosting; do
		total=$(awk -F'\t' -v v="$v" '$1 == v && $2 == 1 {print $4}' "$ins/instructions.tsv")
		# A message costs millions of instructions (RSA-2048 signing
		# alone); a milter that failed every message costs far fewer.
		h_ok "$v: 40 messages counted, over 1,000,000 instructions each (${total:-none})" \
			awk -v t="${total:-0}" 'BEGIN { exit !(t / 40 > 1000000) }'
	done
	h_assert_grep "$ins/instructions.log" '^RESULT msgs_per_s=[0-9.]+ messages=40 failed=0 ' \
		"the counted milterload runs: 40 messages, none failed"
	h_assert_grep "$ins/bench.md" '^\| bm-full-hosting \| 1 \| 40 \| [0-9,]+ \| [0-9.]+× \|' \
		"bench.md: the instructions table has bm-full-hosting"
	h_assert_grep "$ins/bench.md" '^- (PASS|MISS): bm-full-hosting milter instructions [0-9.]+× of bm-full' \
		"bench.md: the instructions target line"
fi
