/*
 * feedback - Feedback-ID tokens: SIV over HMAC-SHA256 and AES-256-CTR
 * (feedback.h says why). OpenSSL 3's EVP interfaces only; nothing here
 * touches the network or keeps state.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "feedback.h"
#include "policy.h"

static int hmac(const unsigned char *key, size_t klen, const void *data, size_t dlen,
		unsigned char out[32])
{
	size_t n = 0;
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, data, dlen, out, 32, &n) == NULL ||
	    n != 32)
		return -1;
	return 0;
}

void feedback_key_secret(const void *secret, size_t len, struct feedback_key *k)
{
	static const char mac_label[] = "bulkmilter feedback-id mac";
	static const char enc_label[] = "bulkmilter feedback-id enc";
	/* cannot fail but for no memory; a zero key then makes tokens nobody accepts */
	if (hmac(secret, len, mac_label, sizeof(mac_label) - 1, k->mac) != 0 ||
	    hmac(secret, len, enc_label, sizeof(enc_label) - 1, k->enc) != 0)
		memset(k, 0, sizeof(*k));
}

int feedback_key_file(const char *path, struct feedback_key *k, char *err, size_t errlen)
{
	unsigned char buf[FEEDBACK_SECRET_MAX + 2];
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "FeedbackKeyFile %s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == sizeof(buf))
			break;
	}
	close(fd);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	int rc = 0;
	if (n > FEEDBACK_SECRET_MAX) {
		snprintf(err, errlen, "FeedbackKeyFile %s: longer than %d octets", path, FEEDBACK_SECRET_MAX);
		rc = -1;
	} else if (n < FEEDBACK_SECRET_MIN) {
		snprintf(err, errlen, "FeedbackKeyFile %s: shorter than %d octets", path, FEEDBACK_SECRET_MIN);
		rc = -1;
	} else {
		feedback_key_secret(buf, n, k);
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

/* TAG of class and account. */
static int tag_of(const struct feedback_key *k, const char *cls, const char *account,
		  unsigned char tag[FEEDBACK_TAG_LEN])
{
	unsigned char in[POLICY_NAME_MAX + 1 + POLICY_ACCOUNT_MAX], out[32];
	size_t cl = strlen(cls), al = strlen(account);
	if (cl >= POLICY_NAME_MAX || al >= POLICY_ACCOUNT_MAX)
		return -1;
	memcpy(in, cls, cl);
	in[cl] = '\0';
	memcpy(in + cl + 1, account, al);
	if (hmac(k->mac, sizeof(k->mac), in, cl + 1 + al, out) != 0)
		return -1;
	memcpy(tag, out, FEEDBACK_TAG_LEN);
	return 0;
}

/* AES-256-CTR with the tag as IV: encrypts and decrypts alike. */
static int ctr(const struct feedback_key *k, const unsigned char tag[FEEDBACK_TAG_LEN],
	       const unsigned char *in, size_t n, unsigned char *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ok = c != NULL, m = 0, f = 0;
	ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_ctr(), NULL, k->enc, tag) == 1;
	ok = ok && EVP_EncryptUpdate(c, out, &m, in, (int)n) == 1;
	ok = ok && EVP_EncryptFinal_ex(c, out + m, &f) == 1 && (size_t)(m + f) == n;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding; -1 when out is too small. */
static int b64url_encode(const unsigned char *in, size_t n, char *out, size_t size)
{
	size_t o = 0;
	unsigned acc = 0, bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8 | in[i]) & 0xffff;
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			if (o + 1 >= size)
				return -1;
			out[o++] = b64url[acc >> bits & 63];
		}
	}
	if (bits > 0) {
		if (o + 1 >= size)
			return -1;
		out[o++] = b64url[acc << (6 - bits) & 63];
	}
	out[o] = '\0';
	return 0;
}

/* Decodes n characters of base64url; -1 on a foreign character or no room. */
static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t size, size_t *len)
{
	size_t o = 0;
	unsigned acc = 0, bits = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = in[i] ? strchr(b64url, in[i]) : NULL;
		if (p == NULL)
			return -1;
		acc = (acc << 6 | (unsigned)(p - b64url)) & 0xffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= size)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (acc & ((1u << bits) - 1))
		return -1;	/* not canonical: a second spelling of the same token */
	*len = o;
	return 0;
}

int feedback_make(const struct feedback_key *k, const char *cls, const char *account, char *buf,
		  size_t len)
{
	unsigned char raw[FEEDBACK_TAG_LEN + POLICY_ACCOUNT_MAX];
	char token[(sizeof(raw) * 4 + 2) / 3 + 1];
	size_t al = strlen(account);
	if (tag_of(k, cls, account, raw) != 0 ||
	    ctr(k, raw, (const unsigned char *)account, al, raw + FEEDBACK_TAG_LEN) != 0 ||
	    b64url_encode(raw, FEEDBACK_TAG_LEN + al, token, sizeof(token)) != 0)
		return -1;
	int n = snprintf(buf, len, "%s:%s:%s", cls, token, FEEDBACK_SUFFIX);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

int feedback_read(const struct feedback_key *k, const char *value, char *cls, size_t clen,
		  char *account, size_t alen)
{
	unsigned char raw[FEEDBACK_TAG_LEN + POLICY_ACCOUNT_MAX], plain[POLICY_ACCOUNT_MAX + 1],
		tag[FEEDBACK_TAG_LEN];
	size_t rl;
	while (isspace((unsigned char)*value))
		value++;
	const char *c1 = strchr(value, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c2 == NULL || c1 == value || (size_t)(c1 - value) >= clen ||
	    (size_t)(c1 - value) >= POLICY_NAME_MAX)
		return -1;
	const char *suffix = c2 + 1;
	size_t sl = strlen(suffix);
	while (sl > 0 && isspace((unsigned char)suffix[sl - 1]))
		sl--;
	if (sl != strlen(FEEDBACK_SUFFIX) || strncasecmp(suffix, FEEDBACK_SUFFIX, sl) != 0)
		return -1;
	if (b64url_decode(c1 + 1, (size_t)(c2 - c1 - 1), raw, sizeof(raw), &rl) != 0 ||
	    rl <= FEEDBACK_TAG_LEN || rl - FEEDBACK_TAG_LEN >= alen)
		return -1;
	size_t al = rl - FEEDBACK_TAG_LEN;
	if (ctr(k, raw, raw + FEEDBACK_TAG_LEN, al, plain) != 0)
		return -1;
	plain[al] = '\0';
	if (memchr(plain, '\0', al) != NULL)
		return -1;
	memcpy(cls, value, (size_t)(c1 - value));
	cls[c1 - value] = '\0';
	if (tag_of(k, cls, (const char *)plain, tag) != 0 || CRYPTO_memcmp(tag, raw, FEEDBACK_TAG_LEN) != 0) {
		cls[0] = '\0';
		return -1;
	}
	memcpy(account, plain, al + 1);
	return 0;
}
