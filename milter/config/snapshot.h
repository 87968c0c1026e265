/*
 * NAME
 *	snapshot - one immutable, reference-counted set of config, policy,
 *	keys and the services built from them
 * SYNOPSIS
 *	struct snapshot *snapshot_load(const char *config_path, const char *socket_override,
 *		bool start_services, struct diag *errs);
 *	void snapshot_install(struct snapshot *s);
 *	struct snapshot *snapshot_acquire(void);
 *	void snapshot_release(struct snapshot *s);
 * DESCRIPTION
 *	A reload (SIGHUP) loads a whole new snapshot; only when it loaded
 *	without a single error is it installed, and the running one stays
 *	otherwise. A connection acquires the current snapshot at connect and
 *	releases it at close, so mail in flight finishes under the rules it
 *	started with; the old snapshot is freed when its last connection
 *	ends. The SigningAuthority file: map is part of the snapshot, so a
 *	reload reads it again. With start_services false (-n, bulkmilterctl check/explain)
 *	nothing is spawned and the network is not touched.
 */
#ifndef BM_SNAPSHOT_H
#define BM_SNAPSHOT_H

#include <stdbool.h>

#include "authority.h"
#include "diag.h"
#include "feedback.h"
#include "keytable.h"
#include "policy.h"
#include "settings.h"
#include "spf.h"
#include "store.h"

struct snapshot {
	int refs;			/* guarded by the snapshot lock */
	unsigned long generation;	/* 1, 2, ... per installed snapshot */
	struct settings *settings;
	struct policy *policy;
	struct keytable *keys;		/* NULL: no signing */
	struct authority *authority;	/* NULL: SigningAuthority none */
	struct feedback_key *feedback;	/* FeedbackKeyFile's; NULL: the fleet's, in Redis (intake.h) */
	struct store *store;
	struct spf_pool *spf;		/* NULL unless services started */
};

struct snapshot *snapshot_load(const char *config_path, const char *socket_override,
	bool start_services, struct diag *errs);
/* Makes s current (taking its reference) and releases the previous one. */
void snapshot_install(struct snapshot *s);
/* The current snapshot with a reference held, or NULL before install. */
struct snapshot *snapshot_acquire(void);
void snapshot_release(struct snapshot *s);

#endif
