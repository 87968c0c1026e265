#!/bin/bash
#
# Calendar quotas end to end (real Postfix and Redis):
#   - recipients 7/day in Pacific/Kiritimati (UTC+14) and America/Adak
#     (UTC-10): the eighth recipient gets 451, and bulkmilterctl usage
#     reports the window's reset as that zone's next local midnight
#     (text and --json RFC 3339 with the zone's offset);
#   - a reset without waiting hours: a zone made for the test with zic
#     (TZDIR), whose local midnight comes about 30 s after the
#     milter starts: 7 recipients, the eighth deferred, and after that
#     midnight 7 again (and the eighth deferred again);
#   - exactness under concurrency: 20 parallel clients against
#     messages 13/day: exactly 13 messages accepted;
#   - -n: an unknown zone, a bad TimeZone and an unknown period are
#     FILE:LINE errors.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

command -v zic >/dev/null || h_skip "calendar quotas" "zic (libc-bin) is not installed"
[ -f /usr/share/zoneinfo/Pacific/Kiritimati ] || h_skip "calendar quotas" "tzdata is not installed"

# ---- a zone directory: two real zones and one whose midnight is near ----
export TZDIR=$H_TMP/zoneinfo
mkdir -p "$TZDIR/Pacific" "$TZDIR/America" "$TZDIR/Test"
cp /usr/share/zoneinfo/Pacific/Kiritimati "$TZDIR/Pacific/"
cp /usr/share/zoneinfo/America/Adak "$TZDIR/America/"
LEAD=30		# seconds from now to the test zone's midnight (checks 1-4 run meanwhile)
midnight=$(( $(date +%s) + LEAD ))
off=$(( (86400 - midnight % 86400) % 86400 ))
[ "$off" -gt 50400 ] && off=$(( off - 86400 ))
sign=
[ "$off" -lt 0 ] && sign=- && off=$(( -off ))
printf 'Zone Test/Soon %s%d:%02d:%02d - TST\n' "$sign" $(( off / 3600 )) $(( off / 60 % 60 )) $(( off % 60 )) \
	>"$H_TMP/soon.zi"
zic -d "$TZDIR" "$H_TMP/soon.zi" 2>"$H_TMP/zic.err" || h_fatal "zic: $(cat "$H_TMP/zic.err")"

h_redis_start
h_policy <<'EOF_POLICY'
class kiri {
    account     sasl sender
    recipients  7/day
    timezone    Pacific/Kiritimati
}
class adak {
    account     sasl sender
    recipients  7/day
    timezone    America/Adak
}
class soon {
    account     sasl sender
    recipients  7/day
    timezone    Test/Soon
}
class daily {
    account     sasl sender
    messages    13/day
}
assign sender  kiri@example.com   kiri
assign sender  adak@example.com   adak
assign sender  soon@example.com   soon
assign sender  daily@example.com  daily
EOF_POLICY
h_conf 'TimeZone America/Adak'
h_milter_start
h_postfix_start

over() {
	echo "451 4.7.1 Sending rate limit exceeded for $1, try again later"
}

# The "resets" of the 7/day window in usage --json.
resets_json() {
	rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage "$1" | /usr/bin/python3 -c '
import json, sys
for b in json.load(sys.stdin)["buckets"]:
    if b["rate"] == sys.argv[1]:
        print(b["resets"], b["timezone"], b["window"], "%.0f" % b["used"])' "$2"
}

# ---- 1. far zones: the reset is their next local midnight ----------------
for zone in kiri:Pacific/Kiritimati adak:America/Adak; do
	name=${zone%%:*} tz=${zone#*:}
	rl_smtp "$name" --rcpts 8 --tag "$name" --from "$name@example.com"
	h_assert_eq "7 250 2.1.5 Ok
1 $(over "$name@example.com")" "$(rl_replies "$name" 'rcpt[0-9]+')" \
		"$tz: 7 recipients accepted, the eighth 451"
	want=$(TZ=$tz date -d 'tomorrow 00:00' +%Y-%m-%dT%H:%M:%S%:z)
	h_assert_eq "$want $tz day 7" "$(resets_json "$name@example.com" 7/day)" \
		"$tz: usage --json: the window resets at $want, the zone's next midnight, 7 used"
	rl_ctl -c "$H_TMP/bulkmilter.conf" usage "$name@example.com" >"$H_TMP/usage-$name.txt"
	h_assert_grep "$H_TMP/usage-$name.txt" "^$name +recipients +account +7/day .* ${want//+/\\+} \\(window ends\\)$" \
		"$tz: usage (text) shows the reset in the zone"
	h_assert_eq 7 "$(rl_delivered "$name" 7)" "$tz: 7 recipients delivered"
done

# ---- 2. the test zone's midnight: the account has 7 again after it -------
rl_smtp soon1 --rcpts 8 --tag soon1 --from soon@example.com
h_assert_eq "7 250 2.1.5 Ok
1 $(over soon@example.com)" "$(rl_replies soon1 'rcpt[0-9]+')" "before midnight: 7 accepted, the eighth 451"
want=$(TZ=Test/Soon date -d "@$midnight" +%Y-%m-%dT%H:%M:%S%:z)
h_assert_eq "$want Test/Soon day 7" "$(resets_json soon@example.com 7/day)" \
	"before midnight: usage says the window resets at the test zone's midnight ($want)"
# (the other checks run while the test zone's midnight approaches: 5.)

# ---- 3. 20 parallel clients against messages 13/day ----------------------
rl_smtp daily --sessions 20 --rcpts 1 --tag daily --from daily@example.com
h_assert_eq "13 250 2.1.0 Ok
7 $(over daily@example.com)" "$(rl_replies daily mail)" \
	"20 parallel clients: exactly 13 messages accepted, 7 deferred at MAIL FROM"
h_assert_eq 13 "$(rl_delivered daily 13)" "20 parallel clients: 13 delivered"
h_assert_eq 13.00 "$(rl_used daily@example.com messages 13/day)" "usage shows 13 of 13/day used"

# ---- 4. -n: zones and periods are checked --------------------------------
cat >"$H_TMP/bad.policy" <<'EOF_BAD'
class a {
    messages    10/day
    timezone    Europe/Atlantis
}
class b {
    recipients  5/fortnight
    messages    5/1h to gmail.com
}
EOF_BAD
sed -e "s|^Policy .*|Policy $H_TMP/bad.policy|" -e 's|^TimeZone .*|TimeZone Mars/Olympus|' \
	"$H_TMP/bulkmilter.conf" >"$H_TMP/bad.conf"
"$H_BULKMILTER" -n -c "$H_TMP/bad.conf" >"$H_TMP/n.out" 2>&1
h_assert_eq 1 $? "-n fails on bad zones and periods"
h_assert_grep "$H_TMP/n.out" "^$H_TMP/bad.conf:[0-9]+: TimeZone: unknown time zone Mars/Olympus" \
	"-n: a bad TimeZone is FILE:LINE"
h_assert_grep "$H_TMP/n.out" "^$H_TMP/bad.policy:3: timezone: unknown time zone Europe/Atlantis" \
	"-n: an unknown class zone is FILE:LINE"
h_assert_grep "$H_TMP/n.out" "^$H_TMP/bad.policy:6: recipients: bad rate 5/fortnight" \
	"-n: an unknown period is FILE:LINE"
h_assert_grep "$H_TMP/n.out" "^$H_TMP/bad.policy:7: messages: \"to\" limits recipients" \
	"-n: to on a messages rate is FILE:LINE"

# ---- 5. after the test zone's midnight: 7 again ---------------------------
now=$(date +%s)
h_diag "the test zone's midnight in $(( midnight - $(date +%s) )) s"
[ "$now" -lt "$midnight" ] || h_fatal "set-up took longer than $LEAD s: raise LEAD"
sleep $(( midnight - now + 1 ))
rl_smtp soon2 --rcpts 8 --tag soon2 --from soon@example.com
h_assert_eq "7 250 2.1.5 Ok
1 $(over soon@example.com)" "$(rl_replies soon2 'rcpt[0-9]+')" \
	"after midnight: 7 accepted again, the eighth 451"
h_assert_eq 14 "$(( $(rl_delivered soon1 7) + $(rl_delivered soon2 7) ))" "14 recipients delivered in all"
