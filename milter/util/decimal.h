/*
 * NAME
 *	decimal - an unsigned number in decimal, without printf
 * SYNOPSIS
 *	size_t decimal_put(char buf[DECIMAL_MAX], unsigned long long v);
 *	DECIMAL_MAX
 * DESCRIPTION
 *	decimal_put writes v in decimal at buf, without a terminator, and
 *	returns its length (at most DECIMAL_MAX). For the Redis keys and
 *	script arguments built for every bucket of every event, where
 *	snprintf's format parsing was a visible share of the milter's CPU.
 */
#ifndef BM_DECIMAL_H
#define BM_DECIMAL_H

#include <stddef.h>

/* Digits of the largest unsigned long long (2^64 - 1). */
#define DECIMAL_MAX 20

static inline size_t decimal_put(char buf[DECIMAL_MAX], unsigned long long v)
{
	char tmp[DECIMAL_MAX];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

#endif
