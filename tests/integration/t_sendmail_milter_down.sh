#!/bin/bash
#
# F=T in the README's Sendmail snippet: with bulkmilter down, a private
# Sendmail 8.17 (tests/lib/sendmail.sh) tempfails every transaction at
# MAIL FROM ("451 4.3.2 Please try again later"), accepts nothing into
# its queue and delivers nothing. Once the milter runs, the same message
# is accepted and delivered; once it is stopped again, mail is refused
# again: Sendmail opens the milter for every SMTP session.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/sendmail.sh
. "$(dirname "$0")/../lib/sendmail.sh"

sm_need_debs

h_sink_start main
sm_build "$SM_ROOT" --smtpd "$H_SMTP_PORT" --relay "${H_SINK_PORT[main]}" \
	--socket "$H_MILTER_SOCKET" || h_fatal "sm_build failed"
sm_start "$SM_ROOT" || h_fatal "sm_start failed"

# send NAME: one message from alice@example.com, replies in $H_TMP/NAME.out
send() {
	sm_smtp --from alice@example.com --to bob@example.net --tag "$1" >"$H_TMP/$1.out"
}
# refused NAME: the last send got 451 4.3.2 at MAIL FROM, nothing queued
refused() {
	h_assert_grep "$H_TMP/$1.out" '^1 1 mail 451 4\.3\.2 Please try again later$' \
		"$1: MAIL FROM gets 451 4.3.2 Please try again later"
	h_assert_eq "" "$(awk '$3 == "data"' "$H_TMP/$1.out")" "$1: no DATA"
	h_assert_eq "" "$(sm_queue_files "$SM_ROOT/queue")" "$1: nothing in Sendmail's queue"
}

send down
refused down
h_assert_eq 0 "$(h_sink_count main)" "down: nothing delivered"

h_milter_start
send up
h_assert_grep "$H_TMP/up.out" '^1 1 data 250 2\.0\.0 [0-9A-Za-z]+ Message accepted for delivery$' \
	"up: with the milter running the message is accepted"
h_ok "up: and delivered" h_wait_sink main 1 30

h_milter_stop
send again
refused again
sleep 2
h_assert_eq 1 "$(h_sink_count main)" "again: nothing more delivered"
