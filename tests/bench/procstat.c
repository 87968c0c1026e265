/*
 * procstat - CPU time and memory of a process tree from /proc (see
 * procstat.h).
 *
 * One pass over every /proc/PID/stat collects every process's parent and
 * CPU ticks; the tree is then grown from the root by parent links until
 * it stops growing (a few hundred processes: no need for anything
 * cleverer). Threads are not listed in /proc itself, and each process's
 * utime+stime already covers its threads, live and ended.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

struct proc_entry {
	long pid, ppid;
	unsigned long long ticks, child_ticks;
	bool in_tree;
};

static long status_kb(long pid, const char *field)
{
	char path[64], buf[256];
	long v = -1;
	size_t n = strlen(field);
	FILE *f;
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(buf, sizeof buf, f))
		if (!strncmp(buf, field, n) && buf[n] == ':') {
			v = strtol(buf + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static bool read_stat(long pid, struct proc_entry *e)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st, cut, cst;
	long ppid;
	FILE *f;
	size_t n;
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return false;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces and parentheses: skip to the last ')' */
	if (!(p = strrchr(buf, ')')))
		return false;
	if (sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
		   &ppid, &ut, &st, &cut, &cst) != 5)
		return false;
	e->pid = pid;
	e->ppid = ppid;
	e->ticks = ut + st;
	e->child_ticks = cut + cst;
	e->in_tree = false;
	return true;
}

bool procstat_read(long root, struct proc_usage *u)
{
	struct proc_entry *e = NULL;
	size_t n = 0, cap = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	bool grew = true, found = false;
	unsigned long long ticks = 0;

	memset(u, 0, sizeof *u);
	if (!d)
		return false;
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			struct proc_entry *grown = realloc(e, cap * sizeof *e);
			if (!grown) {
				free(e);
				closedir(d);
				return false;
			}
			e = grown;
		}
		if (read_stat(strtol(de->d_name, NULL, 10), &e[n]))
			n++;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		if (e[i].pid == root) {
			e[i].in_tree = found = true;
			/* children that have exited and were reaped */
			ticks += e[i].child_ticks;
		}
	while (found && grew) {
		grew = false;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n && !e[i].in_tree; j++)
				if (e[j].in_tree && e[j].pid == e[i].ppid)
					e[i].in_tree = grew = true;
	}
	for (size_t i = 0; i < n; i++)
		if (e[i].in_tree) {
			long rss = status_kb(e[i].pid, "VmRSS");
			ticks += e[i].ticks;
			u->tree_rss_kb += rss > 0 ? rss : 0;
			u->procs++;
		}
	free(e);
	u->cpu_s = (double)ticks / (double)sysconf(_SC_CLK_TCK);
	u->rss_kb = status_kb(root, "VmRSS");
	u->hwm_kb = status_kb(root, "VmHWM");
	return found;
}
