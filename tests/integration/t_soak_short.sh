#!/bin/bash
#
# scripts/soak, short: bulkmilter's whole pipeline under load through a
# real Postfix while every kind of fault is injected at least once
# (Redis SIGKILLed and SIGSTOPped, the DNS server stopped and
# SIGSTOPped, SPF helpers SIGKILLed, SIGHUPs, a broken policy reloaded,
# the milter SIGKILLed and restarted, clients dropping mid-DATA). It
# passes when the soak does: every 250 delivered exactly once per
# accepted recipient, nothing refused delivered, headers and body
# intact, signatures where the SigningTable asks and all verifying, no
# crash, no sanitizer report, the milter exits 0 on SIGTERM once idle
# (with LeakSanitizer on in the sanitizer build); and when the load was
# real: enough messages, some accepted, held, deferred and rejected.
#
# 120 s of load on the plain build, 90 s on the sanitizer one (about
# 3 and 2.5 minutes in all, inside the runner's BM_TEST_TIMEOUT of
# 300 s); BM_SOAK_SECONDS sets it.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

h__need_builddir
if ldd "$H_BULKMILTER" | grep -q libasan; then
	secs=${BM_SOAK_SECONDS:-90} min_tried=1500
else
	secs=${BM_SOAK_SECONDS:-120} min_tried=2500
fi
out=$H_TMP/soak.out
"$H_SRCDIR/scripts/soak" --seconds "$secs" --builddir "$BM_BUILDDIR" --seed 15 >"$out" 2>&1 </dev/null
rc=$?
h_diag "$(cat "$out")"
h_assert_eq 0 "$rc" "scripts/soak --seconds $secs passes"

# field N LABEL: the Nth word of the table line that starts with LABEL
field() {
	awk -v label="$2" -v n="$1" 'index($0, label) == 1 {print $n; exit}' "$out"
}
for kind in redis-kill redis-freeze dns-stop dns-freeze spf-kill hup hup-broken milter-kill client-drop; do
	n=$(field 2 "  $kind ")
	h_ok "fault $kind injected at least once (${n:-none})" test "${n:-0}" -ge 1
done
tried=$(field 2 "  tried ")
h_ok "at least $min_tried messages tried (${tried:-none})" test "${tried:-0}" -ge "$min_tried"
for what in "  accepted " "    of which held " "  deferred " "  rejected " "  dropped "; do
	n=$(awk -v label="$what" 'index($0, label) == 1 {print substr($0, length(label) + 1) + 0; exit}' "$out")
	h_ok "some messages $(xargs <<<"$what") (${n:-none})" test "${n:-0}" -ge 1
done
for check in "lost (250" "duplicated" "delivered though refused" "headers or body altered" \
	"unsigned but should be signed" "bad signatures" "milter deaths not caused" "sanitizer reports" \
	"milter exit status on SIGTERM once idle"; do
	line=$(grep -F "  $check" "$out" | head -n 1)
	h_ok "soak check: $check: 0" grep -qE ' 0  ok$' <<<"$line"
done
kills=$(field 2 "  milter-kill ")
h_assert_grep "$out" "restarts ${kills:-x} \\(${kills:-x} after an injected SIGKILL, 0 after a crash\\)" \
	"the milter was restarted once per injected SIGKILL, never after a crash"
h_assert_grep "$out" '^Result: PASS$' "the soak's verdict is PASS"
