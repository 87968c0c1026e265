#!/bin/bash
#
# The metrics endpoint (MetricsListen) keeps serving after errors and
# never delays mail (SPEC.md "Always"):
# - After descriptor exhaustion: with the milter's descriptor limit
#   lowered (prlimit) to the lowest descriptor it has free, accept()
#   fails with EMFILE (logged once); once the limit is back, the next
#   scrape is answered and the log says so, without a restart.
# - Beside silent clients: clients that connect and send nothing hold up
#   no scrape. With 3 silent connections open, a scrape is answered while
#   all 3 are still open and unanswered (the server has not given up on
#   them: it serves them side by side); with 40 (more than it serves at
#   once), a scrape is still answered. A message goes through Postfix
#   meanwhile.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

port=$(h_port 17)
h_conf "MetricsListen 127.0.0.1:$port"
h_milter_start
h_postfix_start

# scrape: the counters, or nothing after 10 s.
scrape() {
	curl -s --max-time "${1:-10}" "http://127.0.0.1:$port/metrics"
}
h_ok "a scrape is answered" bash -c "$(declare -f scrape); port=$port; scrape | grep -q '^bulkmilter_messages_accepted_total '"

# -- descriptor exhaustion
# lowest_free PID: the lowest descriptor number PID does not use.
lowest_free() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n |
		awk 'BEGIN { n = 0 } $1 == n { n++ } END { print n }'
}
soft=$(prlimit --pid "$H_MILTER_PID" --nofile --raw --noheadings -o SOFT)
limit=$(lowest_free "$H_MILTER_PID")
h_log_mark "$H_MILTER_LOG"
h_ok "the milter's descriptor limit lowered to $limit (it uses all below)" \
	prlimit --pid "$H_MILTER_PID" --nofile="$limit:"
scrape 2 >/dev/null		# its accept() fails: no descriptor left
h_ok "the failed accept() is logged" \
	h_wait_log "$H_MILTER_LOG" 'error: metrics: accept: Too many open files; trying again every [0-9]+ ms' 5
h_ok "the limit back at $soft" prlimit --pid "$H_MILTER_PID" --nofile="$soft:"
h_ok "after descriptors are free again, a scrape is answered" \
	bash -c "$(declare -f scrape); port=$port; scrape | grep -q '^bulkmilter_messages_accepted_total '"
h_ok "the log says the endpoint accepts again" \
	h_wait_log "$H_MILTER_LOG" 'info: metrics: accepting connections again' 5
h_assert_eq 1 "$(h__log_since_mark "$H_MILTER_LOG" | grep -c 'metrics: accept: ')" \
	"one log line for the whole episode, not one per try"

# -- silent clients
# silent COUNT: COUNT connections that send nothing, then a scrape;
# prints "answered" or "no answer", then how many of the silent ones the
# server had answered or closed by then.
silent() {
	/usr/bin/python3 - "$port" "$1" <<'EOF'
import select, socket, sys, urllib.request
port, count = int(sys.argv[1]), int(sys.argv[2])
quiet = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
try:
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    answer = "answered" if "\nbulkmilter_messages_accepted_total " in "\n" + body else "bad answer"
except Exception as e:
    answer = "no answer (%s)" % e
readable, _, _ = select.select(quiet, [], [], 0)
print(answer, "silent-done=%d" % len(readable))
EOF
}

h_assert_eq "answered silent-done=0" "$(silent 3)" \
	"3 silent clients: a scrape is answered while they are still open and unanswered"
h_assert_eq answered "$(silent 40 | cut -d' ' -f1)" "40 silent clients: a scrape is still answered"

# mail does not wait for the endpoint
/usr/bin/python3 - "$port" <<'EOF' &
import socket, sys, time
quiet = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(40)]
time.sleep(4)
EOF
quiet=$!
h_send --from alice@example.com
h_assert_eq accept "$(h_milter_field "$H_QID" decision)" "a message is accepted while 40 silent clients hang on the endpoint"
wait "$quiet"
