/*
 * NAME
 *	spf_wire - what the milter (spf.c) and an SPF helper (spf_helper.c)
 *	say to each other; private to the two
 * DESCRIPTION
 *	The helper is started as
 *
 *		EXE --spf-helper FD RESOLVER TIMEOUT_MS USER LOGLEVEL
 *
 *	FD is its end of a SOCK_SEQPACKET socket pair, RESOLVER the Resolver
 *	setting, TIMEOUT_MS the per-query DNS timeout, USER "user[:group]"
 *	to run as when started as root ("" = SPF_HELPER_DEFAULT_USER), and
 *	LOGLEVEL the daemon's enum log_level.
 *
 *	Every message is one packet of at most SPF_WIRE_MAX bytes: a kind
 *	byte, then NUL-terminated fields.
 *
 *	helper -> milter, once at start:
 *		'R'				ready
 *		'E' reason			could not start; it exits
 *	milter -> helper:
 *		'S' seq ip helo mail_from	check_host(); mail_from "" = null sender
 *		'D' seq domain			DMARC record of domain or its org domain
 *	helper -> milter, one per request:
 *		'A' seq outcome detail ttl sender_specific	to an 'S'
 *		'A' seq found detail		to a 'D'
 *
 *	outcome is a decimal enum spf_outcome, found a decimal enum
 *	dmarc_record (spf.h); SPF_WIRE_CODE_MAX(kind) is the largest for
 *	a request of that kind. ttl (decimal, at
 *	most SPF_WIRE_TTL_MAX) is how many seconds the outcome stays true as
 *	far as DNS goes: the least TTL of every answer the evaluation used,
 *	positive or negative, a cached one counted with what is left of it;
 *	0 when a lookup failed or timed out or an answer's TTL is unknown.
 *	sender_specific is "1" when an SPF record the evaluation fetched
 *	uses %{l}, %{s} or %{h} (any case, any transformers), whose values
 *	are neither the client address nor the domain, else "0". The milter
 *	reuses an outcome only with ttl > 0 and sender_specific "0".
 *
 *	seq echoes the request's, so a late answer can never be taken for
 *	the answer to a later question. The helper evaluates one request at
 *	a time and exits when the milter closes its end.
 */
#ifndef BM_SPF_WIRE_H
#define BM_SPF_WIRE_H

#define SPF_WIRE_MAX 2048
#define SPF_WIRE_READY 'R'
#define SPF_WIRE_FAILED 'E'
#define SPF_WIRE_CHECK 'S'
#define SPF_WIRE_DMARC 'D'
#define SPF_WIRE_ANSWER 'A'
/* The largest answer code to a request of kind (enum spf_outcome, enum dmarc_record). */
#define SPF_WIRE_CODE_MAX(kind) \
	((kind) == SPF_WIRE_CHECK ? SPF_OUTCOME_PERMERROR : DMARC_RECORD_TEMPERROR)

#define SPF_HELPER_ARG "--spf-helper"
#define SPF_HELPER_ARGC 7
#define SPF_HELPER_DEFAULT_USER "nobody"

/*
 * DNS lookups one evaluation may make, cache hits included. RFC 7208
 * 4.6.4 allows 10 DNS terms, each MX or PTR term 10 more address
 * lookups: 1 + 10 * (1 + 10) + 1 for exp= is the most a valid record
 * needs. libspf2 counts terms per record, not across include:, so this
 * is what bounds the work a hostile include chain can cause.
 */
#define SPF_LOOKUPS_MAX 112
/* Void lookups one evaluation may make: RFC 7208 4.6.4's recommended two. */
#define SPF_VOID_LOOKUPS_MAX 2
/* A detail string is cut here: it goes into log lines and SMTP replies. */
#define SPF_DETAIL_MAX 200
/* The largest ttl an answer may carry: a DNS TTL's (RFC 2181 8), 10 digits. */
#define SPF_WIRE_TTL_MAX 2147483647L
#define SPF_WIRE_TTL_DIGITS 10

/*
 * The helper's work once started (spf_helper_main: arguments checked,
 * privileges dropped): 'R', then answers to requests on fd until the
 * milter closes its end (0), or 1 on an error or a malformed request;
 * 'E' and 1 when it cannot start. fd stays open. Also the entry point
 * of the SPF wire fuzz target (tests/fuzz).
 */
int spf_helper_run(int fd, const char *resolver, long timeout_ms);

#endif
