/*
 * NAME
 *	signer - DKIM signing of one message with libopendkim
 * SYNOPSIS
 *	struct signer *signer_begin(const struct keytable *kt, const struct settings *s,
 *		const char *queue_id);
 *	int signer_header(struct signer *sg, const char *name, const char *value);
 *	int signer_eoh(struct signer *sg, const char *from_address, char *why, size_t len);
 *	int signer_body(struct signer *sg, const unsigned char *data, size_t len);
 *	int signer_eom(struct signer *sg, struct signer_result *res, char *why, size_t len);
 *	void signer_free(struct signer *sg);
 * DESCRIPTION
 *	Knows nothing of libmilter; the caller decides that a message is
 *	outbound and calls, for one message, in this order: signer_begin,
 *	signer_header for each header in arrival order, signer_eoh,
 *	signer_body for each body chunk, signer_eom, then signer_free (which
 *	may come at any point, e.g. on abort). kt and s must outlive sg.
 *
 *	signer_begin returns NULL when kt is NULL (no signing configured) or
 *	memory is short. Canonicalization and MultipleSignatures come from s.
 *
 *	signer_header takes a header as the milter gets it with
 *	SMFIP_HDR_LEADSPC: the value keeps its leading space and folds as
 *	bare LF. It is held, as "Name:" + value with folds turned into CRLF
 *	(exact bytes: c=simple depends on them), until signer_eoh. Beyond
 *	SIGNER_HEADERS_MAX header fields or SIGNER_HEADER_BYTES_MAX bytes
 *	the message will not be signed: what was held is dropped, nothing
 *	more is kept, and it returns SIGNER_SKIP from then on (signer_eoh
 *	gives the why: "more than 1000 header fields", "headers larger
 *	than 256 KB"). A skip is not an error: the caller goes on and the
 *	message goes out unsigned. Otherwise 0; SIGNER_ERROR out of memory.
 *
 *	signer_eoh takes the From address (NULL when the message has no
 *	From or more than one: the caller logs which) and picks the keys
 *	with the SigningTable (keytable_lookup), then feeds the held headers
 *	to one libopendkim handle per signature. It returns SIGNER_SIGN;
 *	SIGNER_SKIP with why ("no usable From", "no signing table entry for
 *	user@domain", a header limit, headers libopendkim refuses); or
 *	SIGNER_ERROR with why (a key for this domain missing or unreadable,
 *	libopendkim failing).
 *
 *	signer_body feeds a chunk (not kept: no copy of the message is
 *	made). It returns 0, SIGNER_SKIP when the message is not being
 *	signed, or SIGNER_ERROR.
 *
 *	signer_eom fills res with one signature per key: the value for
 *	smfi_insheader(ctx, 0, "DKIM-Signature", value): CR-free, starting
 *	with a space, folded with LF-TAB. It returns SIGNER_SIGN, SIGNER_SKIP
 *	(not signing: why repeats signer_eoh's reason) or SIGNER_ERROR.
 *
 *	The DKIM_LIB of kt is shared; each signer has its own DKIM handles,
 *	so signers of different messages may run on different threads.
 */
#ifndef BM_SIGNER_H
#define BM_SIGNER_H

#include <stddef.h>

#include "keytable.h"
#include "settings.h"

enum { SIGNER_SIGN = 0, SIGNER_SKIP = 1, SIGNER_ERROR = -1 };

/* Signatures one message can carry (MultipleSignatures), e.g. one RSA
 * and one Ed25519 during a migration, plus a spare for a key rollover. */
#define SIGNER_SIGNATURES_MAX 4
/* Headers held per message until the From is known. Real mail has a few
 * dozen headers and a few KB of them (Postfix's header_size_limit caps
 * one header at 100 KB); beyond these we skip signing rather than hold
 * an unbounded amount per connection. The bytes are "Name:" + value as
 * held, folds as CRLF. Such mail is accepted unsigned, never deferred:
 * a retry would bring the same headers. */
#define SIGNER_HEADERS_MAX 1000
#define SIGNER_HEADER_BYTES_MAX (256 * 1024)

struct signer_signature {
	char *header_value;		/* " v=1; a=...", CR-free, LF-TAB folded */
	char domain[256];		/* d= */
	char selector[64];		/* s= */
	const char *algorithm;		/* "rsa-sha256" or "ed25519-sha256" */
};

struct signer_result {
	size_t count;
	struct signer_signature sig[SIGNER_SIGNATURES_MAX];
};

struct signer;

struct signer *signer_begin(const struct keytable *kt, const struct settings *s,
	const char *queue_id);
int signer_header(struct signer *sg, const char *name, const char *value);
int signer_eoh(struct signer *sg, const char *from_address, char *why, size_t len);
int signer_body(struct signer *sg, const unsigned char *data, size_t len);
/* The result's strings live until signer_free. */
int signer_eom(struct signer *sg, struct signer_result *res, char *why, size_t len);
void signer_free(struct signer *sg);

#endif
