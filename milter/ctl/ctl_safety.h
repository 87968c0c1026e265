/*
 * NAME
 *	ctl_safety - bulkmilterctl suspend, release, suspended
 * SYNOPSIS
 *	bool ctl_safety_command(const char *cmd);
 *	int ctl_safety(struct snapshot *s, bool json, int argc, char **argv);
 * DESCRIPTION
 *	ctl_safety_command says whether cmd is one of these commands;
 *	ctl_safety runs it (argv[0] is the command) and returns the exit
 *	status. See ctl_safety.c for what each does.
 */
#ifndef BM_CTL_SAFETY_H
#define BM_CTL_SAFETY_H

#include <stdbool.h>

#include "snapshot.h"

bool ctl_safety_command(const char *cmd);
int ctl_safety(struct snapshot *s, bool json, int argc, char **argv);

#endif
