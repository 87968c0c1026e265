/*
 * shim_openssl - libopendkim gets a key parsed once instead of parsing
 * it per message, by replacing OpenSSL's PEM_read_bio_PrivateKey.
 *
 * What it replaces. libopendkim has no call that takes a parsed key:
 * each dkim_sign() handle gets the key as text and parses it again in
 * dkim_privkey_load() with PEM_read_bio_PrivateKey(BIO, NULL, NULL,
 * NULL) on a memory BIO over that text. This file defines
 * PEM_read_bio_PrivateKey itself; the dynamic linker binds
 * libopendkim's call to the definition in the executable first
 * (ordinary symbol interposition, as malloc replacements work).
 *
 * Why: on OpenSSL 3.0 that parse builds a decoder context each time,
 * measured at 350-475 us on this machine: more than one RSA-2048
 * signature (250 us), ten Ed25519 signatures; it made libopendkim sign
 * at 27% (RSA) and 9% (Ed25519) of OpenSSL's rate (privkey.c lends).
 *
 * What we assume: of OpenSSL, that PEM_read_bio_PrivateKey(bp, x, cb, u)
 * is PEM_read_bio_PrivateKey_ex(bp, x, cb, u, NULL, NULL) (OpenSSL 3),
 * which is what every call but a loan gets. Of libopendkim, that 2.11
 * (checked against Debian 12's 2.11.0~beta2) calls it as above from
 * dkim_privkey_load, and what it does with the reference it gets:
 * privkey.c, privkey_settle.
 *
 * The loan: a call whose memory BIO holds exactly the text of the key
 * offered on the calling thread gets that key's EVP_PKEY with one more
 * reference. The text compare makes a wrong key impossible.
 *
 * How it is checked and how it falls back: shim_openssl_check (shim.h)
 * signs through libopendkim with an offered key and sees the loan
 * taken; if not, or with another libopendkim, no loan is ever offered
 * and libopendkim parses the PEM text itself: correct, slower
 * (shim_openssl_stats shows it, and test_signer fails on it). If the
 * interposition is lost without the check, the same happens on its
 * own: libopendkim's call goes to OpenSSL.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <dkim.h>

#include "shim_openssl.h"

/* The probe's key: the smallest RSA key libopendkim and OpenSSL sign
 * with without complaint; it is made at start-up and never published. */
#define PROBE_RSA_BITS 1024

/* The loan offered on this thread, or NULL. */
static __thread struct shim_openssl_loan *offered;
static atomic_ulong lent_count;
static atomic_ulong parsed_count;
/* set once, before threads, by a failed shim_openssl_check */
static bool lending_off;

EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
	struct shim_openssl_loan *loan = offered;
	char *data;

	if (loan != NULL && x == NULL && BIO_method_type(bp) == BIO_TYPE_MEM &&
	    BIO_get_mem_data(bp, &data) == (long)loan->text_len &&
	    memcmp(data, loan->text, loan->text_len) == 0 &&
	    EVP_PKEY_up_ref(loan->pkey) == 1) {
		loan->taken = true;
		atomic_fetch_add_explicit(&lent_count, 1, memory_order_relaxed);
		return loan->pkey;
	}
	atomic_fetch_add_explicit(&parsed_count, 1, memory_order_relaxed);
	return PEM_read_bio_PrivateKey_ex(bp, x, cb, u, NULL, NULL);
}

/* The libopendkim whose dkim_privkey_load and dkim_free were checked. */
static bool version_checked(void)
{
	return (dkim_libversion() >> 16) == 0x020b;	/* 2.11.x */
}

bool shim_openssl_lending(void)
{
	return !lending_off && version_checked();
}

void shim_openssl_offer(struct shim_openssl_loan *loan)
{
	offered = loan;
}

void shim_openssl_stats(unsigned long *lent, unsigned long *parsed)
{
	*lent = atomic_load_explicit(&lent_count, memory_order_relaxed);
	*parsed = atomic_load_explicit(&parsed_count, memory_order_relaxed);
}

/*
 * Signs "From: <probe@example.invalid>" through libopendkim with a new
 * RSA key offered as a loan, as privkey_attach does: the key is loaded
 * just before dkim_eom. NULL when the loan was taken, else what failed.
 * An RSA loan needs no settling: libopendkim's dkim_free releases the
 * reference it got.
 */
static const char *probe_lending(void)
{
	static const char header[] = "From: <probe@example.invalid>";
	const char *failed = "cannot make the probe's key";
	EVP_PKEY *pkey = EVP_RSA_gen(PROBE_RSA_BITS);
	BIO *mem = BIO_new(BIO_s_mem());
	struct shim_openssl_loan loan = { .taken = false };
	char *pem, *text = NULL;
	long n = 0;
	DKIM_LIB *lib = NULL;
	DKIM *dkim = NULL;
	DKIM_STAT st;

	if (pkey == NULL || mem == NULL ||
	    PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(mem, &pem)) <= 0 || (text = malloc((size_t)n + 1)) == NULL)
		goto out;
	memcpy(text, pem, (size_t)n);
	text[n] = '\0';
	failed = "libopendkim cannot sign with the probe's key";
	if ((lib = dkim_init(NULL, NULL)) == NULL ||
	    (dkim = dkim_sign(lib, (const unsigned char *)"shim-probe", NULL, (dkim_sigkey_t)text,
			      (const unsigned char *)"probe", (const unsigned char *)"example.invalid",
			      DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1,
			      &st)) == NULL ||
	    dkim_header(dkim, (unsigned char *)header, sizeof(header) - 1) != DKIM_STAT_OK ||
	    dkim_eoh(dkim) != DKIM_STAT_OK)
		goto out;
	loan = (struct shim_openssl_loan){ .text = text, .text_len = (size_t)n, .pkey = pkey };
	shim_openssl_offer(&loan);
	st = dkim_privkey_load(dkim);
	shim_openssl_offer(NULL);
	if (st != DKIM_STAT_OK || dkim_eom(dkim, NULL) != DKIM_STAT_OK)
		goto out;
	failed = loan.taken ? NULL : "libopendkim's call to PEM_read_bio_PrivateKey does not reach ours";
out:
	if (dkim != NULL)
		dkim_free(dkim);
	if (lib != NULL)
		dkim_close(lib);
	if (text != NULL) {
		OPENSSL_cleanse(text, (size_t)n);
		free(text);
	}
	BIO_free(mem);
	EVP_PKEY_free(pkey);
	return failed;
}

bool shim_openssl_check(char *what, size_t len)
{
	unsigned long v = dkim_libversion();
	const char *failed = version_checked() ? probe_lending() :
		"not the 2.11 whose use of a lent key was checked";

	if (failed == NULL) {
		snprintf(what, len, "libopendkim %lu.%lu.%lu", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff);
		return true;
	}
	lending_off = true;
	snprintf(what, len, "to libopendkim parsing each key: libopendkim %lu.%lu.%lu: %s",
		 v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, failed);
	return false;
}
