/*
 * NAME
 *	calendar - time zones and calendar windows (day, week, month)
 * SYNOPSIS
 *	struct calendar_zone *calendar_zone_load(const char *name,
 *		char *err, size_t errlen);
 *	struct calendar_zone *calendar_zone_parse(const char *name,
 *		const unsigned char *data, size_t len, char *err, size_t errlen);
 *	void calendar_zone_free(struct calendar_zone *z);
 *	const char *calendar_zone_name(const struct calendar_zone *z);
 *	long calendar_offset(const struct calendar_zone *z, long long t,
 *		long long *until);
 *	void calendar_window(const struct calendar_zone *z,
 *		enum calendar_period p, long long t, long long *start,
 *		long long *end);
 *	void calendar_windows(const struct calendar_zone *z,
 *		enum calendar_period p, long long t, long long bounds[4]);
 *	void calendar_rfc3339(const struct calendar_zone *z, long long t,
 *		char *buf, size_t len);
 * DESCRIPTION
 *	A zone is the system's zone data for one IANA name, read once (when
 *	the policy loads) from a TZif file (RFC 8536) under $TZDIR or
 *	/usr/share/zoneinfo: its 64-bit transitions (version 2 and later; a
 *	version 1 file's 32-bit ones) and, for times past the last
 *	transition, the POSIX TZ rule of its footer. "UTC" is built in, so a
 *	host without tzdata still has it. A loaded zone is immutable: any
 *	number of threads may use it; nothing here touches TZ, setenv or
 *	tzset (glibc's localtime_r reads global state that a reload would
 *	change under the workers).
 *
 *	A NULL zone is UTC. Times are seconds since the epoch (UTC). calendar_offset gives the
 *	zone's UTC offset in seconds at t, and in *until (may be NULL) the
 *	first time after t at which it may change.
 *
 *	calendar_window gives the window of period p that holds t: it
 *	starts at local midnight (of the day; of the Monday for a week; of
 *	the 1st for a month) and ends at the next one. DST is followed: a
 *	day is 23 or 25 hours long on a transition day; a midnight that does
 *	not exist (a zone that springs forward at 00:00) is replaced by the
 *	first moment of the day, and a midnight that happens twice (falling
 *	back to 00:00) counts from its first occurrence. Always
 *	*start <= t < *end.
 *
 *	calendar_windows gives in bounds the start of the window before the
 *	one that holds t, that window's start and end, and the end of the
 *	window after it (the three windows a calendar bucket spans). Each
 *	thread keeps its last answer per period, so asking again within the
 *	same window costs a comparison.
 *
 *	calendar_rfc3339 writes t as local time with the zone's offset,
 *	"2026-12-03T00:00:00+14:00" (RFC 3339; "Z" is never used, so the
 *	zone's offset is always shown).
 * DIAGNOSTICS
 *	calendar_zone_load and calendar_zone_parse return NULL with a
 *	one-line reason in err: a name that is not a zone name (absolute
 *	path, "..", odd characters), no such file, a file that is not valid
 *	TZif or whose footer rule cannot be read. calendar_zone_parse is the
 *	parser alone (unit tests and the fuzz target feed it bytes).
 */
#ifndef BM_CALENDAR_H
#define BM_CALENDAR_H

#include <stddef.h>

/* Longest zone name we take ("America/Argentina/ComodRivadavia" is 32). */
#define CALENDAR_NAME_MAX 64
/* Largest TZif file we read; the biggest in tzdata is about 4 KB. */
#define CALENDAR_FILE_MAX (256 * 1024)

enum calendar_period { CALENDAR_NONE = 0, CALENDAR_DAY, CALENDAR_WEEK, CALENDAR_MONTH };

struct calendar_zone;

struct calendar_zone *calendar_zone_load(const char *name, char *err, size_t errlen);
struct calendar_zone *calendar_zone_parse(const char *name, const unsigned char *data, size_t len,
	char *err, size_t errlen);
void calendar_zone_free(struct calendar_zone *z);
const char *calendar_zone_name(const struct calendar_zone *z);
long calendar_offset(const struct calendar_zone *z, long long t, long long *until);
void calendar_window(const struct calendar_zone *z, enum calendar_period p, long long t,
	long long *start, long long *end);
void calendar_windows(const struct calendar_zone *z, enum calendar_period p, long long t,
	long long bounds[4]);
void calendar_rfc3339(const struct calendar_zone *z, long long t, char *buf, size_t len);
/* "day", "week", "month" (NULL for CALENDAR_NONE). */
const char *calendar_period_name(enum calendar_period p);

#endif
