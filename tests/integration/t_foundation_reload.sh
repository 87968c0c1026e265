#!/bin/bash
#
# SIGHUP reloads the policy. An invalid policy is refused: its errors are
# logged as FILE:LINE, and mail is still classified by the running one.
# A valid policy applies to the next message. bulkmilter -n reports the
# same errors and exits 1, with those of bulkmilter.conf in the same run.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

good_policy() {
	h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
}
class other { }
assign outbound standard
assign inbound other
EOF_POLICY
}

h_redis_start
good_policy
h_conf </dev/null
h_milter_start
h_postfix_start

h_milter_run -n -c "$H_TMP/bulkmilter.conf"
h_assert_eq 0 "$?" "bulkmilter -n: valid set exits 0"
printf '%s\n' "$H_OUT" >"$H_TMP/check-good.out"
h_assert_grep "$H_TMP/check-good.out" '^config OK$' "bulkmilter -n: prints 'config OK'"

h_send --from alice@example.com
h_assert_eq standard "$(h_milter_field "$H_QID" class)" "before reload: class=standard"

# Line 3 has an unknown keyword, line 5 names a class that does not exist.
h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
    frobnicate yes
}
assign outbound nosuchclass
EOF_POLICY

h_milter_run -n -c "$H_TMP/bulkmilter.conf"
h_assert_eq 1 "$?" "bulkmilter -n: invalid policy exits 1"
printf '%s\n' "$H_OUT" >"$H_TMP/check.out"
h_assert_grep "$H_TMP/check.out" 'bulkmilter\.policy:3: ' "bulkmilter -n: reports FILE:3"
h_assert_grep "$H_TMP/check.out" 'bulkmilter\.policy:5: ' "bulkmilter -n: reports FILE:5"

# An error in bulkmilter.conf too: one run reports both files' errors.
cp "$H_TMP/bulkmilter.conf" "$H_TMP/broken.conf"
echo "NoSuchSetting yes" >>"$H_TMP/broken.conf"
bad_line=$(wc -l <"$H_TMP/broken.conf")
h_milter_run -n -c "$H_TMP/broken.conf"
h_assert_eq 1 "$?" "bulkmilter -n: broken config and policy exit 1"
printf '%s\n' "$H_OUT" >"$H_TMP/check-both.out"
h_assert_grep "$H_TMP/check-both.out" "broken\\.conf:$bad_line: unknown setting NoSuchSetting" \
	"bulkmilter -n: reports the config's error as FILE:$bad_line"
h_assert_grep "$H_TMP/check-both.out" 'bulkmilter\.policy:3: ' \
	"bulkmilter -n: and, in the same run, the policy's errors"

h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_ok "bad reload: an error is logged as FILE:LINE" \
	h_wait_log "$H_MILTER_LOG" 'bulkmilter\.policy:(3|5): ' 10
h_ok "bad reload: line 5's error is logged too" \
	h_wait_log "$H_MILTER_LOG" 'bulkmilter\.policy:5: ' 5
h_assert_grep "$H_MILTER_LOG" 'bulkmilter\.policy:3: ' "bad reload: line 3's error is logged"

h_send --from alice@example.com
h_assert_eq standard "$(h_milter_field "$H_QID" class)" "after a refused reload: still class=standard"
h_ok "after a refused reload: message arrives" h_wait_sink main 2 20

h_policy <<'EOF_POLICY'
class renamed {
    account sender
}
assign outbound renamed
EOF_POLICY
h_log_mark "$H_MILTER_LOG"
h_milter_hup
# The new set is in place once the milter says so; give it a moment if it
# logs nothing we recognise.
h_wait_log "$H_MILTER_LOG" '[Rr]eload' 10 || sleep 1

h_send --from alice@example.com
h_assert_eq renamed "$(h_milter_field "$H_QID" class)" "after a good reload: class=renamed"
h_ok "after a good reload: message arrives" h_wait_sink main 3 20
