/*
 * NAME
 *	ctl_suppress - bulkmilterctl suppress add|del|list|import|export
 * SYNOPSIS
 *	int ctl_suppress(struct snapshot *s, bool json, int argc, char **argv);
 * DESCRIPTION
 *	Runs "suppress SUBCOMMAND ..." (argv[0] is "suppress") on the
 *	suppression lists of suppress.h and returns the exit status; see
 *	ctl_suppress.c for each subcommand.
 */
#ifndef BM_CTL_SUPPRESS_H
#define BM_CTL_SUPPRESS_H

#include <stdbool.h>

#include "snapshot.h"

int ctl_suppress(struct snapshot *s, bool json, int argc, char **argv);

#endif
