#!/bin/bash
#
# Redis unavailable, end to end:
#   - OnStoreFailure accept: with Redis stopped, and with Redis frozen
#     (SIGSTOP: every command times out after RedisTimeout 200ms), mail
#     is delivered with X-Bulk-Unchecked, and 50 messages in a row take
#     about as long as with Redis up: the back-off spares them the
#     timeout (a few probes may pay it, not every message);
#   - Redis back: limits are enforced again by the same milter process;
#   - OnStoreFailure tempfail (loaded by SIGHUP): 451 4.3.0 and nothing
#     delivered while Redis is down; enforcement again once it is back.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class roomy {
    account     sasl sender
    messages    1000/1h
    recipients  1000/1h
}
class limited {
    account     sasl sender
    messages    3/1d
}
assign sender  limited*@example.com  limited
assign sender  *@example.com         roomy
EOF_POLICY
h_conf 'RedisTimeout 200ms' 'OnStoreFailure accept'
h_milter_start
h_postfix_start
milter_pid=$H_MILTER_PID

# total NAME: the sum of the per-message times (ms) of a run
total() {
	awk '$3 == "ms" {n += $4} END {print n + 0}' "$H_TMP/rl-$1.out"
}
# slow NAME: messages of a run that took 200 ms or more
slow() {
	awk '$3 == "ms" && $4 >= 200 {n++} END {print n + 0}' "$H_TMP/rl-$1.out"
}
# unchecked TAG: delivered messages of that run that carry exactly one
# X-Bulk-Unchecked header, whose reason is one word that names nothing
# internal (no Redis host or socket path in mail that leaves the site)
unchecked() {
	local f n=0
	while IFS= read -r f; do
		[ "$(grep -cE $'^X-Bulk-Unchecked: (backoff|timeout|unavailable)\r?$' "$f")" = 1 ] &&
			n=$((n + 1))
	done < <(grep -l "^Message-ID: <$1\\." "$H_TMP"/sink-main/*.eml)
	echo "$n"
}
# mail_codes NAME: the MAIL FROM replies of a run, in order
mail_codes() {
	awk '$3 == "mail" {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-$1.out"
}
# back_again: after Redis is back, send probe messages until one is
# checked again (the milter logs "available again"); at most ~10 s.
back_again() {
	local i
	for ((i = 1; i <= 20; i++)); do
		rl_smtp "probe$i" --from probe@example.com --tag "probe$i"
		h__log_has "$H_MILTER_LOG" 'redis .*: available again' && return 0
		sleep 0.5
	done
	h_diag "the milter did not log that Redis is available again"
	return 1
}

# ---- Redis up: the reference time ------------------------------------
rl_smtp up --messages 50 --tag up --from speed@example.com
h_assert_eq 50 "$(rl_count up data 250)" "up: 50 messages accepted"
h_assert_eq 50 "$(rl_delivered up 50)" "up: 50 delivered"
h_assert_eq 0 "$(unchecked up)" "up: none carries X-Bulk-Unchecked"
up_ms=$(total up)
h_diag "50 messages with Redis up: ${up_ms} ms"

# ---- Redis stopped, OnStoreFailure accept -----------------------------
h_log_mark "$H_MILTER_LOG"
h_redis_stop
rl_smtp down --messages 50 --tag down --from speed@example.com
h_assert_eq 50 "$(rl_count down data 250)" "stopped: 50 messages accepted"
h_assert_eq 50 "$(rl_delivered down 50)" "stopped: 50 delivered"
h_assert_eq 50 "$(unchecked down)" "stopped: every one carries X-Bulk-Unchecked"
h_diag "X-Bulk-Unchecked values (count value):" \
	"$(cat "$H_TMP"/sink-main/*.eml | sed -n 's/^X-Bulk-Unchecked: //p' | tr -d '\r' | sort | uniq -c)"
down_ms=$(total down)
h_diag "50 messages with Redis stopped: ${down_ms} ms, $(slow down) took 200 ms or more"
h_ok "stopped: 50 messages take no longer than with Redis up ($down_ms ms < 2 x $up_ms ms + 5 s)" \
	test "$down_ms" -lt $(( 2 * up_ms + 5000 ))
h_ok "stopped: at most 5 of 50 messages took 200 ms or more ($(slow down))" test "$(slow down)" -le 5
h_assert_grep "$H_MILTER_LOG" 'account=speed@example.com rate limit not checked: ' \
	"stopped: the milter logs that the rate limit was not checked"
rl_smtp limited_down --messages 5 --tag limited_down --from limited@example.com
h_assert_eq "250 250 250 250 250" "$(mail_codes limited_down)" \
	"stopped: accept means unchecked: 5 messages over messages 3/1d accepted"

# ---- Redis back: enforced again, same process -------------------------
h_log_mark "$H_MILTER_LOG"
h_redis_start
h_ok "back: the milter finds Redis again by itself" back_again
rl_smtp limited --messages 5 --tag limited --from limited@example.com
h_assert_eq "250 250 250 451 451" "$(mail_codes limited)" "back: messages 3/1d enforced again"
h_assert_eq "2 451 4.7.1 Sending rate limit exceeded for limited@example.com, try again later" \
	"$(rl_replies limited mail | grep ' 451 ')" "back: 451 4.7.1 naming the account"
h_ok "back: the same milter process ($milter_pid), never restarted" \
	test "$(grep -c ' started on ' "$H_MILTER_LOG")" = 1 -a "$H_MILTER_PID" = "$milter_pid"

# ---- Redis frozen (SIGSTOP): every command times out ------------------
h_log_mark "$H_MILTER_LOG"
kill -STOP "$H_REDIS_PID"
rl_smtp frozen --messages 50 --tag frozen --from speed@example.com
kill -CONT "$H_REDIS_PID"
h_assert_eq 50 "$(rl_count frozen data 250)" "frozen: 50 messages accepted"
h_assert_eq 50 "$(rl_delivered frozen 50)" "frozen: 50 delivered"
h_assert_eq 50 "$(unchecked frozen)" "frozen: every one carries X-Bulk-Unchecked"
frozen_ms=$(total frozen)
h_diag "50 messages with Redis frozen: ${frozen_ms} ms, $(slow frozen) took 200 ms or more"
h_ok "frozen: 50 messages take no longer than with Redis up ($frozen_ms ms < 2 x $up_ms ms + 5 s)" \
	test "$frozen_ms" -lt $(( 2 * up_ms + 5000 ))
h_ok "frozen: no timeout per message: at most 10 of 50 took 200 ms or more ($(slow frozen))" \
	test "$(slow frozen)" -le 10
h_ok "frozen: the timeout was hit (at least one probe paid it)" test "$(slow frozen)" -ge 1

# ---- OnStoreFailure tempfail (SIGHUP, no restart) ---------------------
h_conf 'RedisTimeout 200ms' 'OnStoreFailure tempfail'
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded .* \(generation [0-9]+\)' || h_fatal "the milter did not reload"
h_log_mark "$H_MILTER_LOG"
h_redis_stop
rl_smtp tempfail --messages 3 --tag tempfail --from speed@example.com
h_assert_eq "3 451 4.3.0 Rate limit service unavailable, try again later" "$(rl_replies tempfail mail)" \
	"tempfail: every message gets 451 4.3.0 at MAIL FROM"
h_ok "tempfail: the Postfix queue is empty" rl_queue_settled
h_assert_eq 0 "$(grep -l '^Message-ID: <tempfail\.' "$H_TMP"/sink-main/*.eml | wc -l)" \
	"tempfail: nothing delivered"
h_assert_eq 3 "$(grep -c 'account=speed@example.com .*decision=tempfail-rate' "$H_MILTER_LOG")" \
	"tempfail: three decision=tempfail-rate log lines"

h_log_mark "$H_MILTER_LOG"
h_redis_start
h_ok "tempfail, back: the milter finds Redis again by itself" back_again
rl_smtp limited2 --messages 4 --tag limited2 --from limited2@example.com
h_assert_eq "250 250 250 451" "$(mail_codes limited2)" "tempfail, back: messages 3/1d enforced again"
h_ok "tempfail, back: the same milter process, never restarted" \
	test "$(grep -c ' started on ' "$H_MILTER_LOG")" = 1 -a "$H_MILTER_PID" = "$milter_pid"
