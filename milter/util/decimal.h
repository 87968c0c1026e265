/*
 * NAME
 *	decimal - an unsigned number in decimal, without printf
 * SYNOPSIS
 *	size_t decimal_put(char buf[DECIMAL_MAX], unsigned long long v);
 *	size_t decimal_len(unsigned long long v);
 *	void decimal_write(char *buf, size_t n, unsigned long long v);
 *	DECIMAL_MAX
 * DESCRIPTION
 *	decimal_put writes v in decimal at buf, without a terminator, and
 *	returns its length (at most DECIMAL_MAX). decimal_len is that
 *	length; decimal_write writes the digits when the caller knows it
 *	(n = decimal_len(v)), straight where they go. For the Redis keys and
 *	script arguments built for every bucket of every event, where
 *	snprintf's format parsing was a visible share of the milter's CPU,
 *	and then the digit loop itself (a calendar window's bounds are four
 *	13-digit numbers): so two digits per step, written from the end.
 */
#ifndef BM_DECIMAL_H
#define BM_DECIMAL_H

#include <stddef.h>

/* Digits of the largest unsigned long long (2^64 - 1). */
#define DECIMAL_MAX 20

/* How many digits v has in decimal (1 to DECIMAL_MAX). */
static inline size_t decimal_len(unsigned long long v)
{
	static const unsigned long long tens[DECIMAL_MAX] = {
		1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
		100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
		10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
		100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL,
	};
	/* log10(2) ~ 1233/4096: from the bit length, then one correction
	   (0 is counted as 1, which has one digit too) */
	unsigned long long w = v | 1;
	size_t n = ((size_t)(64 - __builtin_clzll(w)) * 1233) >> 12;

	return n + (w >= tens[n]);
}

/* Writes the n = decimal_len(v) digits of v at buf, from the end. */
static inline void decimal_write(char *buf, size_t n, unsigned long long v)
{
	static const char pairs[] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
		"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
		"8081828384858687888990919293949596979899";
	char *p = buf + n;

	while (v >= 100) {
		const char *d = pairs + 2 * (v % 100);
		v /= 100;
		*--p = d[1];
		*--p = d[0];
	}
	if (v >= 10) {
		*--p = pairs[2 * v + 1];
		*--p = pairs[2 * v];
	} else {
		*--p = (char)('0' + v);
	}
}

static inline size_t decimal_put(char buf[DECIMAL_MAX], unsigned long long v)
{
	size_t n = decimal_len(v);

	decimal_write(buf, n, v);
	return n;
}

#endif
