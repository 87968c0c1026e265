/*
 * NAME
 *	shim_openssl - OpenSSL's PEM_read_bio_PrivateKey, replaced so
 *	libopendkim can be lent a key parsed once (an interposition: see
 *	shim.h)
 * SYNOPSIS
 *	struct shim_openssl_loan { text, text_len, pkey, taken };
 *	bool shim_openssl_lending(void);
 *	void shim_openssl_offer(struct shim_openssl_loan *loan);
 *	void shim_openssl_stats(unsigned long *lent, unsigned long *parsed);
 *	bool shim_openssl_check(char *what, size_t len);
 * DESCRIPTION
 *	libopendkim parses the private key of every signature it makes
 *	with PEM_read_bio_PrivateKey(); this module defines that function
 *	in our binary, so libopendkim's calls come here (privkey.c says
 *	why). A call made while a loan is offered on the calling thread,
 *	whose memory BIO holds exactly loan->text, returns loan->pkey with
 *	one more reference and sets loan->taken; every other call is
 *	OpenSSL's own PEM_read_bio_PrivateKey_ex().
 *
 *	shim_openssl_lending is true when offering loans is safe: the
 *	running libopendkim is the 2.11 whose handling of the lent
 *	reference was checked (privkey_settle balances it) and
 *	shim_openssl_check did not fall back.
 *
 *	shim_openssl_offer(loan) offers loan to the calling thread's next
 *	calls; shim_openssl_offer(NULL) withdraws it. The caller keeps
 *	loan alive in between.
 *
 *	shim_openssl_stats counts, process-wide, the keys lent and the
 *	private keys OpenSSL had to parse for a caller of
 *	PEM_read_bio_PrivateKey.
 *
 *	shim_openssl_check proves that libopendkim's call reaches our
 *	definition: it makes an RSA key, signs a one-header message
 *	through libopendkim with the key offered as a loan, and sees the
 *	loan taken. It returns true with what = "libopendkim 2.11.0"; or
 *	false with what saying why, after which shim_openssl_lending is
 *	false: libopendkim parses each key itself, which is its own
 *	behaviour (correct, slower).
 * DIAGNOSTICS
 *	None here: the caller of shim_openssl_check logs its result.
 */
#ifndef BM_SHIM_OPENSSL_H
#define BM_SHIM_OPENSSL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

/* A parsed key and the PEM text libopendkim will ask to have parsed. */
struct shim_openssl_loan {
	const char *text;
	size_t text_len;
	EVP_PKEY *pkey;
	bool taken;		/* libopendkim got pkey, with a reference of its own */
};

bool shim_openssl_lending(void);
void shim_openssl_offer(struct shim_openssl_loan *loan);
void shim_openssl_stats(unsigned long *lent, unsigned long *parsed);
bool shim_openssl_check(char *what, size_t len);

#endif
