/*
 * NAME
 *	align - DMARC relaxed alignment through the Public Suffix List
 * SYNOPSIS
 *	int align_org_domain(const char *domain, char *buf, size_t len);
 *	bool align_relaxed(const char *a, const char *b);
 * DESCRIPTION
 *	align_org_domain writes the organizational domain (RFC 7489 3.2,
 *	libpsl's registrable domain of the lower-cased name without a
 *	trailing dot); -1 when the name is a public suffix or invalid.
 *	align_relaxed is true when both names have the same organizational
 *	domain. Thread-safe.
 *	[owner: SPF module]
 */
#ifndef BM_ALIGN_H
#define BM_ALIGN_H

#include <stdbool.h>
#include <stddef.h>

int align_org_domain(const char *domain, char *buf, size_t len);
bool align_relaxed(const char *a, const char *b);

#endif
