/*
 * privkey - DKIM private keys: read and checked once, shared by every
 * message, lent to libopendkim without a parse per message.
 *
 * Does: read a key file (or inline KeyTable data), apply RequireSafeKeys
 * to key files (keytable applies the same privkey_mode_unsafe to a
 * KeyTable holding keys inline), parse it with OpenSSL, take the
 * algorithm from the key type, and keep a canonical PKCS#8 PEM text of
 * it. Does not: know about tables, domains or messages.
 *
 * Why we lend keys. libopendkim has no call that takes a parsed key: each
 * dkim_sign() handle gets the key as text and parses it again in
 * dkim_privkey_load() with PEM_read_bio_PrivateKey(). On OpenSSL 3.0 that
 * parse builds a decoder context each time, which measured 350-475 us on
 * this machine: more than one RSA-2048 signature (250 us), ten Ed25519
 * signatures, and it made libopendkim sign at 27% (RSA) and 9% (Ed25519)
 * of OpenSSL's rate. So shim_openssl.c defines PEM_read_bio_PrivateKey
 * itself, and privkey_attach() offers it the parsed key for the one
 * dkim_privkey_load() it makes: libopendkim gets the key's EVP_PKEY with
 * one more reference, which privkey_settle() balances where libopendkim
 * does not. Lending is on while shim_openssl_lending() says so: the
 * libopendkim (2.11) whose handling of that reference was checked, and
 * a start-up check that libopendkim's call reaches our definition. If
 * the interposition were ever lost (a different link), libopendkim
 * parses the PEM text itself and signing stays correct, only slower
 * (privkey_stats shows it, and the unit tests fail on it). An EVP_PKEY
 * may be used by many threads at once for signing; OpenSSL locks what
 * it caches inside it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "privkey.h"
#include "shim_openssl.h"

/* Never prompt for a passphrase: an encrypted key is an error. */
static int privkey_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static void privkey_ssl_error(char *why, size_t len, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	snprintf(why, len, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
	ERR_clear_error();
}

/* PEM (any OpenSSL private key PEM) or base64 DER, whitespace allowed. */
static EVP_PKEY *privkey_parse(const char *text, size_t n, char *why, size_t len)
{
	EVP_PKEY *pkey = NULL;

	if (memmem(text, n, "-----BEGIN", 10) != NULL) {
		BIO *b = BIO_new_mem_buf(text, (int)n);
		if (b != NULL)
			pkey = PEM_read_bio_PrivateKey_ex(b, NULL, privkey_no_passphrase,
				NULL, NULL, NULL);
		BIO_free(b);
	} else {
		unsigned char *der = malloc(n / 4 * 3 + 4);
		EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
		int out = 0, last = 0;
		if (der != NULL && ctx != NULL) {
			EVP_DecodeInit(ctx);
			if (EVP_DecodeUpdate(ctx, der, &out, (const unsigned char *)text, (int)n) >= 0 &&
			    EVP_DecodeFinal(ctx, der + out, &last) == 1) {
				const unsigned char *p = der;
				pkey = d2i_AutoPrivateKey(NULL, &p, out + last);
			}
			OPENSSL_cleanse(der, n / 4 * 3 + 4);
		}
		EVP_ENCODE_CTX_free(ctx);
		free(der);
	}
	if (pkey == NULL)
		privkey_ssl_error(why, len,
			"cannot parse private key (unencrypted PEM or base64 DER expected)");
	return pkey;
}

/* The key type decides the algorithm; the text is what dkim_sign() gets. */
static struct privkey *privkey_make(EVP_PKEY *pkey, char *why, size_t len)
{
	struct privkey *k;
	int id = EVP_PKEY_get_id(pkey);
	int bits = EVP_PKEY_get_bits(pkey);

	if (id == EVP_PKEY_RSA && (bits < PRIVKEY_RSA_BITS_MIN || bits > PRIVKEY_RSA_BITS_MAX)) {
		snprintf(why, len, "RSA key of %d bits: %d to %d bits are accepted",
			bits, PRIVKEY_RSA_BITS_MIN, PRIVKEY_RSA_BITS_MAX);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		const char *type = EVP_PKEY_get0_type_name(pkey);
		snprintf(why, len, "unsupported key type %s (RSA or Ed25519 only)",
			type ? type : "unknown");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	BIO *m = BIO_new(BIO_s_mem());
	char *pem;
	long n;
	if (k == NULL || m == NULL ||
	    PEM_write_bio_PrivateKey(m, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(m, &pem)) <= 0 || (k->text = malloc((size_t)n + 1)) == NULL) {
		privkey_ssl_error(why, len, "cannot encode private key");
		BIO_free(m);
		free(k);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	memcpy(k->text, pem, (size_t)n);
	k->text[n] = '\0';
	k->text_len = (size_t)n;
	OPENSSL_cleanse(pem, (size_t)n);
	BIO_free(m);
	k->pkey = pkey;
	k->bits = bits;
	if (id == EVP_PKEY_RSA) {
		k->algorithm = DKIM_SIGN_RSASHA256;
		k->algorithm_name = "rsa-sha256";
	} else {
		k->algorithm = DKIM_SIGN_ED25519SHA256;
		k->algorithm_name = "ed25519-sha256";
	}
	return k;
}

struct privkey *privkey_load_text(const char *text, char *why, size_t len)
{
	EVP_PKEY *pkey = privkey_parse(text, strlen(text), why, len);
	return pkey ? privkey_make(pkey, why, len) : NULL;
}

bool privkey_mode_unsafe(const char *path, mode_t mode, char *why, size_t len)
{
	if (!(mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)))
		return false;
	snprintf(why, len, "%s: mode %04o is %s by group or others (RequireSafeKeys)",
		path, (unsigned)(mode & 07777), (mode & (S_IRGRP | S_IROTH)) ? "readable" : "writable");
	return true;
}

struct privkey *privkey_load_file(const char *path, bool require_safe, char *why, size_t len)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	/* fstat of the open file: what we check is what we read */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (require_safe && privkey_mode_unsafe(path, st.st_mode, why, len)) {
		close(fd);
		return NULL;
	}
	if (st.st_size > PRIVKEY_FILE_MAX) {
		snprintf(why, len, "%s: %lld bytes is too large for a private key",
			path, (long long)st.st_size);
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(why, len, "%s: out of memory", path);
		close(fd);
		return NULL;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';

	char inner[256];
	EVP_PKEY *pkey = privkey_parse(buf, got, inner, sizeof(inner));
	OPENSSL_cleanse(buf, got);
	free(buf);
	struct privkey *k = pkey ? privkey_make(pkey, inner, sizeof(inner)) : NULL;
	if (k == NULL)
		snprintf(why, len, "%s: %s", path, inner);
	return k;
}

DKIM_STAT privkey_attach(const struct privkey *k, DKIM *dkim, struct privkey_loan *loan)
{
	loan->key = k;
	loan->lent = false;
	if (!shim_openssl_lending())
		return dkim_privkey_load(dkim);
	struct shim_openssl_loan offer = { .text = k->text, .text_len = k->text_len, .pkey = k->pkey };
	shim_openssl_offer(&offer);
	DKIM_STAT st = dkim_privkey_load(dkim);
	shim_openssl_offer(NULL);
	loan->lent = offer.taken;
	return st;
}

/*
 * What libopendkim 2.11 does with the key it got from
 * PEM_read_bio_PrivateKey (read in its disassembly and checked with the
 * sanitizer build): dkim_eom() frees the BIO for both key types;
 * dkim_free() frees the EVP_PKEY (and the RSA taken from it) of an RSA
 * signature, but the EVP_PKEY of an Ed25519 signature on no path at all.
 * So an Ed25519 loan gives back its one reference here, and an RSA loan
 * nothing: libopendkim does. (An RSA handle whose dkim_eom() fails before
 * it records the signature, which only running out of memory does, keeps
 * its reference: the key is then freed by no one, never used freed.)
 */
void privkey_settle(struct privkey_loan *loan)
{
	if (loan->lent && loan->key->algorithm == DKIM_SIGN_ED25519SHA256)
		EVP_PKEY_free(loan->key->pkey);
	loan->key = NULL;
	loan->lent = false;
}

void privkey_stats(unsigned long *lent, unsigned long *parsed)
{
	shim_openssl_stats(lent, parsed);
}

void privkey_free(struct privkey *k)
{
	if (k == NULL)
		return;
	OPENSSL_cleanse(k->text, k->text_len);
	free(k->text);
	EVP_PKEY_free(k->pkey);
	free(k);
}
