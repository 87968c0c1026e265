/*
 * NAME
 *	log - leveled logging to syslog (mail facility) or stderr
 * SYNOPSIS
 *	void log_open(const char *ident, int to_stderr);
 *	void log_set_level(enum log_level level);
 *	log_error(fmt, ...); log_warning(...); log_info(...); log_debug(...);
 * DESCRIPTION
 *	The macros test the level before any argument is formatted, so a
 *	debug line on the hot path costs one comparison when debug is off.
 *	Secrets (Redis passwords, key material) are never passed here.
 */
#ifndef BM_LOG_H
#define BM_LOG_H

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern volatile int log_current_level;

void log_open(const char *ident, int to_stderr);
void log_set_level(enum log_level level);
/* Parses "error", "warning", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *name);
void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_at(level, ...) do { \
	if ((int)(level) <= log_current_level) log_write((level), __VA_ARGS__); \
} while (0)
#define log_error(...)   log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
