/*
 * NAME
 *	align - DMARC relaxed alignment through the Public Suffix List
 * SYNOPSIS
 *	int align_normalize(const char *domain, char *buf, size_t len);
 *	int align_org_domain(const char *domain, char *buf, size_t len);
 *	bool align_relaxed(const char *a, const char *b);
 * DESCRIPTION
 *	align_normalize writes domain lower-cased (UTF-8 aware) without a
 *	trailing dot; -1 when it is not shaped like a host name: an empty or
 *	over-long label (63), over 253 characters, characters other than
 *	letters, digits, '-', '_' and UTF-8, an all-digit last label (an
 *	IPv4 address), or a buffer too small.
 *
 *	align_org_domain writes the organizational domain (RFC 7489 3.2,
 *	libpsl's registrable domain of the normalized name, private
 *	suffixes such as github.io included); -1 when the name is a public
 *	suffix or invalid as above.
 *
 *	align_relaxed is true when both names normalize to the same name,
 *	or have the same organizational domain.
 *
 *	All are thread-safe. U-labels and A-labels are not converted into
 *	each other, so "bücher.example" and "xn--bcher-kva.example" differ.
 *	[owner: SPF module]
 */
#ifndef BM_ALIGN_H
#define BM_ALIGN_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 1035: 253 characters in text form; buffers of this + 1 always fit. */
#define ALIGN_NAME_MAX 253

int align_normalize(const char *domain, char *buf, size_t len);
int align_org_domain(const char *domain, char *buf, size_t len);
bool align_relaxed(const char *a, const char *b);

#endif
