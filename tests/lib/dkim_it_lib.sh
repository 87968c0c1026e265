# shellcheck shell=bash
#
# NAME
#	dkim_it_lib.sh - keys, sending and verifying for the t_dkim_* tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/dkim_it_lib.sh"
#
#	dkim_rsa_key SELECTOR [DOMAIN]; dkim_ed_key SELECTOR [DOMAIN]
#	dkim_msg ARGS (dkim_it_msg.py ARGS)
#	dkim_send FILE [h_send options...]
#	dkim_verify [dkim_verify.py options...] MESSAGE...
#	dkim_first_headers FILE N
#	dkim_signed QID
#	dkim_reload
# DESCRIPTION
#	Keys live in $DKIM_KEYS. dkim_rsa_key makes SELECTOR.private (RSA-2048,
#	opendkim-genkey, as an admin makes it) and SELECTOR.txt (its TXT
#	record, opendkim-genkey's zone snippet); dkim_ed_key makes
#	SELECTOR.key (Ed25519, openssl genpkey) and SELECTOR.txt ("v=DKIM1;
#	k=ed25519; p=" the raw 32-byte public key, RFC 8463). Private keys
#	are mode 0600 (RequireSafeKeys). Each key's record is registered for
#	SELECTOR._domainkey.DOMAIN (DOMAIN defaults to example.com) in the
#	DKIM_TXT array, which dkim_verify hands to the verifier; a --txt
#	given to dkim_verify for the same name replaces it.
#
#	dkim_send sends FILE byte for byte (h_send --raw) and sets DKIM_QID
#	(queue ID, "" when not queued) and DKIM_FILE (the sink copy, found
#	by the "with ESMTP id QID" of Postfix's Received header, waiting up
#	to 30 s; "" when none arrives). It returns 0 only when both are set.
#
#	dkim_verify runs tests/lib/dkim_verify.py with every registered key;
#	its output is in $DKIM_VERIFY_OUT (and printed as diagnostics when it
#	fails), its exit status is returned.
#
#	dkim_first_headers prints the names of FILE's first N header fields,
#	one a line ("Received" is followed by " by HOST (Postfix)" when the
#	field was written by a Postfix).
#
#	dkim_signed prints the signed= field of the milter's log line for
#	QID: "d=D,s=S,a=A" (";" between signatures), or "no(WHY)" for an
#	outbound message not signed, "no" for an inbound one; nothing for
#	an empty QID.
#
#	dkim_reload sends the milter SIGHUP and waits for its "reloaded"
#	line; it fails when the milter logs "reload refused" instead.

DKIM_KEYS=$H_TMP/keys
DKIM_TXT=()
DKIM_VERIFY_OUT=$H_TMP/verify.out
DKIM_QID=
DKIM_FILE=
mkdir -p "$DKIM_KEYS"

dkim_rsa_key() {
	local sel=$1 domain=${2:-example.com}
	opendkim-genkey -b 2048 -d "$domain" -s "$sel" -D "$DKIM_KEYS" ||
		h_fatal "opendkim-genkey -s $sel failed"
	chmod 600 "$DKIM_KEYS/$sel.private"
	DKIM_TXT+=(--txt "$sel._domainkey.$domain=$DKIM_KEYS/$sel.txt")
}

dkim_ed_key() {
	local sel=$1 domain=${2:-example.com} pub
	(umask 077 && openssl genpkey -algorithm ed25519 -out "$DKIM_KEYS/$sel.key") ||
		h_fatal "openssl genpkey ed25519 failed"
	pub=$(openssl pkey -in "$DKIM_KEYS/$sel.key" -pubout -outform DER | tail -c 32 | base64 -w0)
	printf 'v=DKIM1; k=ed25519; p=%s\n' "$pub" >"$DKIM_KEYS/$sel.txt"
	DKIM_TXT+=(--txt "$sel._domainkey.$domain=$DKIM_KEYS/$sel.txt")
}

dkim_msg() {
	/usr/bin/python3 "$H_LIB/dkim_it_msg.py" "$@"
}

dkim_send() {
	local file=$1
	shift
	DKIM_FILE=
	h_send --raw "$file" "$@"
	DKIM_QID=$H_QID
	if [ -z "$DKIM_QID" ]; then
		h_diag "$(basename "$file") was not queued: $(grep '^<' "$H_SEND_LOG" | tail -n 2)"
		return 1
	fi
	if ! h_wait_sink_grep main " id $DKIM_QID" 30 >/dev/null; then
		h_diag "$(basename "$file") ($DKIM_QID) did not arrive at the sink"
		return 1
	fi
	DKIM_FILE=$(h_sink_grep main " id $DKIM_QID" | head -n 1)
	[ -n "$DKIM_FILE" ]
}

dkim_verify() {
	local rc
	/usr/bin/python3 "$H_LIB/dkim_verify.py" "${DKIM_TXT[@]}" "$@" >"$DKIM_VERIFY_OUT" 2>&1
	rc=$?
	[ "$rc" = 0 ] || h_diag "$(cut -c 1-300 "$DKIM_VERIFY_OUT" | head -n 20)"
	return "$rc"
}

dkim_first_headers() {
	dkim_msg headers "$1" "$2" | LC_ALL=C sed -E \
		-e 's/^(Received):.* (by [^ ]+ \(Postfix\)).*/\1 \2/' -e 's/^([^: ]+) *:.*/\1/'
}

dkim_signed() {
	[ -n "$1" ] || return 0
	# "no(REASON)" when not signed, from signed=no and sign_reason="REASON"
	local line
	line=$(h_milter_line "$1" | head -n 1)
	case $line in
	*" signed=no "*sign_reason=*) sed -n 's/.* sign_reason="\([^"]*\)".*/no(\1)/p' <<<"$line" ;;
	*) sed -n 's/.* signed=\([^ ]*\) .*/\1/p' <<<"$line" ;;
	esac
}

dkim_reload() {
	h_log_mark "$H_MILTER_LOG"
	h_milter_hup || return 1
	h_wait_log "$H_MILTER_LOG" ': reloaded .*generation|reload refused' 10 || return 1
	! h__log_since_mark "$H_MILTER_LOG" | grep -q 'reload refused'
}
