/*
 * NAME
 *	text - a string built from pieces in a caller's buffer, without printf
 * SYNOPSIS
 *	struct text t = TEXT_INIT(buf);
 *	void text_put(struct text *t, const char *s, size_t n);
 *	void text_str(struct text *t, const char *s);
 *	void text_num(struct text *t, unsigned long long v);
 *	void text_hex(struct text *t, unsigned long long v, size_t width);
 *	bool text_ok(const struct text *t);
 *	char *text_dup(const struct text *t);
 *	void text_copy(char *dst, size_t size, const char *src);
 * DESCRIPTION
 *	The Redis keys of every event (a bucket's, a suspend-if count's, a
 *	threshold's, the suppression list's) are made on the mail path, and
 *	snprintf's format parsing was most of what they cost. A text appends
 *	to a fixed buffer (TEXT_INIT takes an array, not a pointer), which
 *	is a string once a piece was put; a piece that does not fit sets it over, and
 *	text_ok is false from then on. text_dup is a malloc'd copy, or NULL
 *	when over or out of memory. text_hex puts v in lowercase hex, with
 *	leading zeros up to width digits (at most 16).
 *	text_copy copies src into dst as snprintf(dst, size, "%s", src)
 *	would (cut to size - 1 bytes, NUL-terminated; size > 0).
 */
#ifndef BM_TEXT_H
#define BM_TEXT_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

struct text {
	char *buf;
	size_t size, len;
	bool over;
};

#define TEXT_INIT(array) { (array), sizeof(array), 0, false }

static inline void text_put(struct text *t, const char *s, size_t n)
{
	if (t->over || n >= t->size - t->len) {
		t->over = true;
		return;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static inline void text_str(struct text *t, const char *s)
{
	text_put(t, s, strlen(s));
}

static inline void text_num(struct text *t, unsigned long long v)
{
	char digits[DECIMAL_MAX];

	text_put(t, digits, decimal_put(digits, v));
}

static inline void text_hex(struct text *t, unsigned long long v, size_t width)
{
	char digits[16];
	size_t n = 0;

	do {
		digits[sizeof(digits) - ++n] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v != 0 || (n < width && n < sizeof(digits)));
	text_put(t, digits + sizeof(digits) - n, n);
}

static inline bool text_ok(const struct text *t)
{
	return !t->over;
}

static inline char *text_dup(const struct text *t)
{
	return t->over ? NULL : strndup(t->buf, t->len);
}

static inline void text_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

#endif
