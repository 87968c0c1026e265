/*
 * fuzz_spf_wire - both sides of the SPF helper wire (spf_wire.h): a
 * request packet as the milter sends it, served by the helper itself
 * (spf_helper_run: request parsing, libspf2's parsing of the client
 * address, HELO name and MAIL FROM, the DMARC lookup, the answer), and
 * the milter reading answers (spf_dispatch_unpack): the helper's, and the
 * input itself taken as an answer (a helper is where DNS data is parsed:
 * the milter trusts nothing it says).
 *
 * Input: one packet, a kind byte then NUL-terminated fields ('S' seq ip
 * helo mail_from, 'D' seq domain), at most SPF_WIRE_MAX bytes. The helper
 * runs in this process on one end of a SOCK_SEQPACKET pair; its DNS
 * server is a closed loopback port, so every lookup fails at once
 * (temperror) and no input waits on the network. Properties: the helper
 * says 'R' first; a request of the right shape gets exactly one answer,
 * a malformed one none and status 1; an answer is 'A', echoes the seq,
 * has a code (enum spf_outcome for a check, enum dmarc_record for a
 * DMARC lookup: SPF_WIRE_CODE_MAX), a detail of printable ASCII
 * without '%' (it goes into SMTP replies), and for a check a ttl of at
 * most SPF_WIRE_TTL_DIGITS digits and sender_specific "0" or "1"; the
 * milter takes every answer the helper gives to a request it could have
 * sent; whatever answer it takes has a code of its kind, a ttl of at most
 * SPF_WIRE_TTL_MAX and a detail cut to the caller's buffer.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "spf.h"
#include "spf_dispatch.h"
#include "spf_wire.h"

/* The fields of a packet after its kind byte; how many (at most max). */
static int fuzz_fields(const char *pkt, size_t n, const char *fields[], int max)
{
	int count = 0;

	for (size_t at = 1; at < n && count < max; at += strlen(pkt + at) + 1)
		fields[count++] = pkt + at;
	return count;
}

static void fuzz_check_answer(const char *pkt, size_t n, const char *req, size_t req_len)
{
	const char *f[6], *want[2];
	int nf, expect = req[0] == SPF_WIRE_CHECK ? 5 : 3;
	char *end;
	long code;

	fuzz_check(n >= 1 && pkt[0] == SPF_WIRE_ANSWER && pkt[n - 1] == '\0', "an answer that is not 'A'");
	nf = fuzz_fields(pkt, n, f, 6);
	fuzz_check(nf == expect, "an answer with the wrong number of fields");
	fuzz_fields(req, req_len, want, 1);
	fuzz_check(strcmp(f[0], want[0]) == 0, "an answer that does not echo the request's seq");
	code = strtol(f[1], &end, 10);
	fuzz_check(f[1][0] != '\0' && *end == '\0' && code >= 0 &&
		   code <= SPF_WIRE_CODE_MAX(req[0]), "a code that is not one of the request's kind");
	fuzz_check(strlen(f[2]) < SPF_DETAIL_MAX, "a detail longer than SPF_DETAIL_MAX");
	for (const char *p = f[2]; *p; p++)
		fuzz_check(*p >= 0x20 && *p <= 0x7e && *p != '%', "a detail unfit for an SMTP reply");
	if (expect == 5) {
		size_t digits = strspn(f[3], "0123456789");
		fuzz_check(digits > 0 && digits == strlen(f[3]) && digits <= SPF_WIRE_TTL_DIGITS,
			   "a ttl that is not 1 to 10 digits");
		fuzz_check(strcmp(f[4], "0") == 0 || strcmp(f[4], "1") == 0,
			   "sender_specific neither 0 nor 1");
	}
}

/*
 * The milter reads pkt as the answer to a request of kind with seq; when
 * it takes it, what it took must be in range. Returns whether it did.
 */
static bool fuzz_milter_reads(const char *pkt, size_t n, char kind, unsigned seq)
{
	char copy[SPF_WIRE_MAX + 1], detail[64];
	struct spf_reuse reuse = { .ttl = -1 };
	int code = -1;

	memcpy(copy, pkt, n);
	if (spf_dispatch_unpack(copy, (ssize_t)n, seq, &code, detail, sizeof(detail),
				kind == SPF_WIRE_CHECK ? &reuse : NULL) != 0)
		return false;
	fuzz_check(code >= 0 && code <= SPF_WIRE_CODE_MAX(kind), "the milter took a code out of range");
	fuzz_check(strlen(detail) < sizeof(detail), "the milter overran the detail");
	if (kind == SPF_WIRE_CHECK)
		fuzz_check(reuse.ttl >= 0 && reuse.ttl <= SPF_WIRE_TTL_MAX,
			   "the milter took a ttl out of range");
	return true;
}

/* The seq as a milter would have sent it ("%u"), or false. */
static bool fuzz_seq(const char *text, unsigned *seq)
{
	char back[16];
	char *end;
	unsigned long v = strtoul(text, &end, 10);

	if (text[0] < '0' || text[0] > '9' || *end != '\0' || v > 0xffffffffUL)
		return false;
	*seq = (unsigned)v;
	snprintf(back, sizeof(back), "%u", *seq);
	return strcmp(back, text) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2], rc, answers = 0;
	char buf[SPF_WIRE_MAX + 1], req[SPF_WIRE_MAX + 1];
	const char *f[4];
	bool well_formed, canonical = false;
	unsigned seq = 0;
	ssize_t n;

	fuzz_init();
	if (size == 0 || size > SPF_WIRE_MAX)
		return -1;		/* the milter sends neither */
	memcpy(req, data, size);
	req[size] = '\0';
	well_formed = (req[0] == SPF_WIRE_CHECK && fuzz_fields(req, size, f, 4) == 4) ||
		      (req[0] == SPF_WIRE_DMARC && fuzz_fields(req, size, f, 2) == 2);
	if (fuzz_fields(req, size, f, 1) == 1) {
		canonical = fuzz_seq(f[0], &seq);
		/* the input read as a (hostile) helper's answer, to either kind */
		fuzz_milter_reads(req, size, SPF_WIRE_CHECK, seq);
		fuzz_milter_reads(req, size, SPF_WIRE_DMARC, seq);
	}
	fuzz_check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	fuzz_check(send(sv[0], data, size, MSG_NOSIGNAL) == (ssize_t)size, "cannot send the request");
	shutdown(sv[0], SHUT_WR);
	rc = spf_helper_run(sv[1], "127.0.0.1:1", 50);
	close(sv[1]);
	n = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
	fuzz_check(n == 1 && buf[0] == SPF_WIRE_READY, "the helper did not say it is ready");
	while ((n = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		answers++;
		fuzz_check_answer(buf, (size_t)n, req, size);
		if (canonical)
			fuzz_check(fuzz_milter_reads(buf, (size_t)n, req[0], seq),
				   "the milter refuses the helper's answer");
	}
	close(sv[0]);
	fuzz_check(rc == (well_formed ? 0 : 1), "the helper's status does not say whether the request was good");
	fuzz_check(answers == (well_formed ? 1 : 0), "not one answer to a good request, or one to a bad");
	return 0;
}
