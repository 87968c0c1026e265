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
 *	Knows nothing of libmilter. Header values arrive as the milter gets
 *	them with SMFIP_HDR_LEADSPC (leading space kept, folds as bare LF).
 *	Headers are held (bounded) until signer_eoh, where the From address
 *	(NULL when the message has none or more than one) picks the keys;
 *	body chunks go straight to libopendkim (no copy of the message).
 *	signer_eoh returns SIGNER_SIGN, SIGNER_SKIP (why says why) or
 *	SIGNER_ERROR. signer_eom fills res with the signature header values,
 *	ready for smfi_insheader(ctx, 0, "DKIM-Signature", value).
 *	[owner: signer module; extend as needed, keep these calls]
 */
#ifndef BM_SIGNER_H
#define BM_SIGNER_H

#include <stddef.h>

#include "keytable.h"
#include "settings.h"

enum { SIGNER_SIGN = 0, SIGNER_SKIP = 1, SIGNER_ERROR = -1 };

/* Signatures one message can carry (MultipleSignatures). */
#define SIGNER_SIGNATURES_MAX 4

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
