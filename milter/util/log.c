/*
 * log - leveled logging.
 *
 * With -f every line goes to stderr with a timestamp, which is what the
 * tests read; otherwise to syslog under LOG_MAIL, where mail admins look.
 * One write(2) per line keeps lines from concurrent worker threads whole.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* A log line longer than this is cut; no decision needs more. */
#define LOG_LINE_MAX 2048

volatile int log_current_level = LOG_LEVEL_INFO;
static int log_to_stderr = 1;
static const char *log_ident = "bulkmilter";

static const char *const log_level_names[] = { "error", "warning", "info", "debug" };
static const int log_syslog_priority[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

void log_open(const char *ident, int to_stderr)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level)
{
	log_current_level = (int)level;
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++)
		if (strcasecmp(name, log_level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	if (!log_to_stderr) {
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		syslog(log_syslog_priority[level], "%s", line);
		return;
	}
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ld %s[%d]: %s: ",
		      now.tv_nsec / 1000000L, log_ident, (int)getpid(), log_level_names[level]);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	if ((size_t)(n + m) > sizeof(line) - 2)
		m = (int)sizeof(line) - 2 - n;
	line[n + m] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)(n + m + 1));
	(void)w;
}
