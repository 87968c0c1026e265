/*
 * NAME
 *	policy_map - file: maps of the policy's assign lines
 * SYNOPSIS
 *	struct policy_map *policy_map_load(const char *path, bool ip_keys,
 *		policy_map_resolver resolve, void *arg, struct diag *errs,
 *		char *err, size_t len);
 *	const struct policy_class *policy_map_lookup(const struct policy_map *m,
 *		const char *key);
 *	const struct policy_class *policy_map_lookup_ip(const struct policy_map *m,
 *		const struct netaddr *a);
 *	void policy_map_free(struct policy_map *m);
 * DESCRIPTION
 *	A map file holds "value class" lines ('#' starts a comment). It is
 *	read once into hash tables, so a lookup costs one probe however
 *	large the map (100,000 accounts load in well under a second). Text
 *	keys (SASL logins, senders, domains) match without regard to case.
 *	With ip_keys, values are addresses or CIDR blocks and the longest
 *	prefix wins: one table per prefix length present, probed longest
 *	first. resolve turns a class name into its class (NULL: unknown).
 *	Errors of lines go to errs as MAPFILE:LINE; a map that cannot be
 *	opened returns NULL with the reason in err. Immutable after load.
 */
#ifndef BM_POLICY_MAP_H
#define BM_POLICY_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "netaddr.h"
#include "policy.h"

typedef const struct policy_class *(*policy_map_resolver)(void *arg, const char *name);

struct policy_map;

struct policy_map *policy_map_load(const char *path, bool ip_keys, policy_map_resolver resolve,
	void *arg, struct diag *errs, char *err, size_t len);
const struct policy_class *policy_map_lookup(const struct policy_map *m, const char *key);
const struct policy_class *policy_map_lookup_ip(const struct policy_map *m, const struct netaddr *a);
void policy_map_free(struct policy_map *m);

#endif
