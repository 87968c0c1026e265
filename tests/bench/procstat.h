/*
 * procstat - CPU time and memory of a process and its descendants, from
 * /proc, for milterload.
 *
 * procstat_read(pid, &u) fills u for PID and every process descending
 * from it (bulkmilter's SPF helpers, for one): CPU seconds ever used,
 * reaped children included, so two readings subtract to the CPU a run
 * cost; the RSS and peak RSS of PID; the summed RSS of the tree. Linux
 * only. False when PID does not exist.
 */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stdbool.h>

struct proc_usage {
	double cpu_s;		/* the process and its descendants, ever */
	long rss_kb, hwm_kb;	/* the process: VmRSS, VmHWM */
	long tree_rss_kb;	/* the process and its descendants: VmRSS */
	unsigned procs;		/* processes in the tree */
};

bool procstat_read(long pid, struct proc_usage *u);

#endif
