/*
 * NAME
 *	fnv - 32-bit FNV-1a, the hash of the DNS cache, the egress cache,
 *	the SPF helper routing and the SPF budget's void-lookup bookkeeping
 * SYNOPSIS
 *	uint32_t fnv1a32(uint32_t hash, const void *data, size_t len);
 *	FNV1A32_OFFSET, FNV1A32_PRIME
 * DESCRIPTION
 *	fnv1a32 folds len bytes at data into hash: start from FNV1A32_OFFSET,
 *	and continue from a previous result to hash several fields as one.
 *	Not for keys an attacker picks to collide in a table that grows
 *	without bound: the tables using it are bounded.
 */
#ifndef BM_FNV_H
#define BM_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A32_OFFSET 2166136261u
#define FNV1A32_PRIME 16777619u

static inline uint32_t fnv1a32(uint32_t hash, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		hash = (hash ^ p[i]) * FNV1A32_PRIME;
	return hash;
}

#endif
