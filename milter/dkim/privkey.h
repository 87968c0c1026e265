/*
 * NAME
 *	privkey - DKIM private keys, parsed once and lent to libopendkim
 * SYNOPSIS
 *	struct privkey *privkey_load_file(const char *path, bool require_safe,
 *		char *why, size_t len);
 *	struct privkey *privkey_load_text(const char *text, char *why, size_t len);
 *	bool privkey_mode_unsafe(const char *path, mode_t mode, char *why, size_t len);
 *	DKIM_STAT privkey_attach(const struct privkey *k, DKIM *dkim,
 *		struct privkey_loan *loan);
 *	void privkey_settle(struct privkey_loan *loan);
 *	void privkey_stats(unsigned long *lent, unsigned long *parsed);
 *	void privkey_free(struct privkey *k);
 * DESCRIPTION
 *	privkey_load_file reads a key file the way OpenDKIM's KeyTable names
 *	it: PEM (PKCS#1 or PKCS#8) or base64 DER, unencrypted, RSA (1024 to
 *	8192 bits) or Ed25519. The key type decides the algorithm, because
 *	libopendkim does not check the key against the algorithm it is told.
 *	With require_safe, a file readable or writable by group or others is
 *	refused and why says "PATH: mode 0644 is readable by group or others
 *	(RequireSafeKeys)". privkey_load_text takes key data written inline
 *	in a KeyTable line (base64 DER); RequireSafeKeys is then the
 *	caller's to apply to the KeyTable. Both return NULL with why on
 *	error.
 *
 *	privkey_mode_unsafe is that rule: true, with why as above, when
 *	mode (of the open file, from fstat) lets group or others read or
 *	write a file holding a private key.
 *
 *	privkey_attach makes the signing handle dkim (made by dkim_sign()
 *	with k->text as its key) use the already parsed k->pkey instead of
 *	parsing k->text again (see privkey.c for how and why), and records
 *	the loan. Call it just before dkim_eom(), which must follow. It
 *	returns dkim_privkey_load()'s status. After dkim_free(dkim),
 *	privkey_settle(loan) releases what libopendkim 2.11 keeps of an
 *	Ed25519 loan (its dkim_free() releases RSA keys only). Lending is
 *	on while shim_openssl_lending() is true (libopendkim 2.11, whose
 *	behaviour this was checked against, and the start-up check passed);
 *	otherwise libopendkim parses the key itself and settling does
 *	nothing. A key stays valid, and may be attached from any number of
 *	threads at once, until privkey_free.
 *
 *	privkey_stats counts, process-wide, the keys lent to libopendkim and
 *	the private keys libopendkim had to parse itself (tests assert the
 *	latter stays 0 while signing): shim_openssl_stats.
 */
#ifndef BM_PRIVKEY_H
#define BM_PRIVKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <dkim.h>

/* A key file larger than this is not a key (an RSA-8192 PEM is ~6.5 KB). */
#define PRIVKEY_FILE_MAX (64 * 1024)
/* RFC 8301: signers MUST use at least 1024 bits; larger than 8192 only
 * costs CPU and a signature header no MTA accepts comfortably. */
#define PRIVKEY_RSA_BITS_MIN 1024
#define PRIVKEY_RSA_BITS_MAX 8192

struct privkey {
	char *text;			/* PKCS#8 PEM given to dkim_sign() */
	size_t text_len;
	EVP_PKEY *pkey;			/* the parsed key, shared by all messages */
	dkim_alg_t algorithm;		/* DKIM_SIGN_RSASHA256 or DKIM_SIGN_ED25519SHA256 */
	const char *algorithm_name;	/* "rsa-sha256" or "ed25519-sha256" */
	int bits;
};

/* What one DKIM handle borrowed (privkey_attach fills it). */
struct privkey_loan {
	const struct privkey *key;
	bool lent;			/* libopendkim got key->pkey */
};

struct privkey *privkey_load_file(const char *path, bool require_safe, char *why, size_t len);
struct privkey *privkey_load_text(const char *text, char *why, size_t len);
bool privkey_mode_unsafe(const char *path, mode_t mode, char *why, size_t len);
DKIM_STAT privkey_attach(const struct privkey *k, DKIM *dkim, struct privkey_loan *loan);
void privkey_settle(struct privkey_loan *loan);
void privkey_stats(unsigned long *lent, unsigned long *parsed);
void privkey_free(struct privkey *k);

#endif
