/*
 * NAME
 *	ctl_safety - bulkmilterctl suspend, release, suspended
 * SYNOPSIS
 *	bool ctl_safety_command(const char *cmd);
 *	int ctl_safety(struct snapshot *s, bool json, int argc, char **argv);
 *	void ctl_safety_explain(const struct policy_class *c, bool json);
 * DESCRIPTION
 *	ctl_safety_command says whether cmd is one of these commands;
 *	ctl_safety runs it (argv[0] is the command) and returns the exit
 *	status. See ctl_safety.c for what each does. ctl_safety_explain
 *	prints a class's safety lines for explain: text lines (notify,
 *	suspended, suspend-if, suspend-for), or with json the fields
 *	,"notify":[80,100],"suspended":"hold","suspend_if":["..."],
 *	"suspend_for_seconds":N to go inside explain's object.
 * DIAGNOSTICS
 *	Exit status 0; 1 when Redis did not answer or answered an error
 *	(the reason on stderr, without secrets); 2 for bad arguments. An
 *	event NotifyURL did not take within 3 s is not sent, and stderr
 *	says so (the suspension or release itself is done: exit 0).
 */
#ifndef BM_CTL_SAFETY_H
#define BM_CTL_SAFETY_H

#include <stdbool.h>

#include "snapshot.h"

bool ctl_safety_command(const char *cmd);
int ctl_safety(struct snapshot *s, bool json, int argc, char **argv);
void ctl_safety_explain(const struct policy_class *c, bool json);

#endif
