/*
 * calendar - a reader of the system's zone data (TZif, RFC 8536) and the
 * calendar windows of quotas (ratelimit.c): when a local day, week or
 * month starts and ends.
 *
 * What it does: parses one zone file into a table of transitions (UTC
 * time, offset) and, for later times, the POSIX TZ rule of the file's
 * footer; answers "what is the offset at t" and "where is local midnight
 * of day D". What it does not: local time formatting beyond RFC 3339, leap
 * seconds (the "right/" zones' leap records are skipped: Redis's clock is
 * POSIX time), or anything with the process's TZ.
 *
 * Decisions:
 * - Our own reader, not localtime_r: glibc keeps one zone per process,
 *   chosen by TZ through tzset, so two classes in two zones would need
 *   setenv/tzset while worker threads read it. The format is small and
 *   fixed (RFC 8536), and the zone is loaded with the policy, so a bad
 *   zone is a "-n" error and the hot path reads a table in memory.
 * - Midnight of local day D is found by walking the zone's constant-
 *   offset intervals from two days before: the first interval whose
 *   local times reach D's 00:00 gives it (so a midnight that happens
 *   twice counts from the first time); an interval whose local times
 *   start beyond 00:00 means the midnight was skipped, and the day starts
 *   at that interval's start. No search over a non-monotone clock.
 * - A POSIX rule's transitions are computed for the years around t and
 *   sorted, which covers southern-hemisphere rules (DST across the new
 *   year), negative DST (Europe/Dublin) and rules whose times run past
 *   24h (RFC 8536 allows -167..167 hours).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calendar.h"

#define CAL_DAY 86400LL
/* Offsets beyond this are not a place on Earth (the widest is +14h). */
#define CAL_OFFSET_MAX (26 * 3600L)
/* Transitions and types a zone file may hold (tzdata: under 300 each). */
#define CAL_TRANSITIONS_MAX 100000
#define CAL_TYPES_MAX 256
/*
 * Times we compute with: about +-35000 years, far beyond any calendar
 * question, and small enough that no arithmetic below overflows.
 */
#define CAL_TIME_LIMIT (1LL << 40)
#define CAL_DEFAULT_DIR "/usr/share/zoneinfo"

struct cal_date {
	char kind;			/* 'J' Julian 1..365, 'N' 0..365, 'M' month.week.day */
	int a, b, c;
	long secs;			/* local time of day of the change */
};

struct cal_rule {
	long std_off, dst_off;		/* seconds east of UTC */
	bool has_dst;
	struct cal_date start, end;	/* into DST, out of DST */
};

struct calendar_zone {
	char name[CALENDAR_NAME_MAX];
	size_t n;
	long long *at;			/* transition times, ascending */
	long *off;			/* offset in effect from at[i] */
	long off0;			/* before the first transition */
	bool has_rule;			/* footer rule for times after the last */
	struct cal_rule rule;
	unsigned long serial;		/* unique per loaded zone: calendar_windows' cache */
};

/* Serials of loaded zones; 0 is the NULL zone (UTC). */
static _Atomic unsigned long cal_zone_serials;

static void cal_zone_stamp(struct calendar_zone *z)
{
	z->serial = atomic_fetch_add(&cal_zone_serials, 1) + 1;
}

/* ---- civil dates (proleptic Gregorian, days since 1970-01-01) ---- */

static long long cal_floordiv(long long a, long long b)
{
	long long q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static long long cal_days_from_civil(long long y, int m, int d)
{
	y -= m <= 2;
	long long era = cal_floordiv(y, 400);
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void cal_civil_from_days(long long z, long long *y, int *m, int *d)
{
	z += 719468;
	long long era = cal_floordiv(z, 146097);
	long long doe = z - era * 146097;
	long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	long long mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool cal_leap(long long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Monday = 0 (1970-01-01 was a Thursday). */
static int cal_weekday_monday(long long days)
{
	return (int)(((days + 3) % 7 + 7) % 7);
}

/* ---- POSIX TZ rules (the TZif footer) ---- */

static bool cal_number(const char **p, int maxdigits, long max, long *out)
{
	long v = 0;
	int n = 0;

	while (isdigit((unsigned char)**p) && n < maxdigits) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	if (n == 0 || v > max)
		return false;
	*out = v;
	return true;
}

static bool cal_rule_name(const char **p)
{
	const char *s = *p;

	if (*s == '<') {
		const char *q = ++s;
		while (isalnum((unsigned char)*q) || *q == '+' || *q == '-')
			q++;
		if (*q != '>' || q - s < 1)
			return false;
		*p = q + 1;
		return true;
	}
	while (isalpha((unsigned char)*s))
		s++;
	if (s - *p < 3)
		return false;
	*p = s;
	return true;
}

/* [+-]hh[:mm[:ss]], hh up to maxh. */
static bool cal_rule_hms(const char **p, long maxh, long *out)
{
	long sign = 1, h, m = 0, s = 0;

	if (**p == '+' || **p == '-')
		sign = *(*p)++ == '-' ? -1 : 1;
	if (!cal_number(p, 3, maxh, &h))
		return false;
	if (**p == ':') {
		(*p)++;
		if (!cal_number(p, 2, 59, &m))
			return false;
		if (**p == ':') {
			(*p)++;
			if (!cal_number(p, 2, 59, &s))
				return false;
		}
	}
	*out = sign * (h * 3600 + m * 60 + s);
	return true;
}

static bool cal_rule_date(const char **p, struct cal_date *d)
{
	long a, b, c;

	if (**p == 'J') {
		(*p)++;
		if (!cal_number(p, 3, 365, &a) || a < 1)
			return false;
		*d = (struct cal_date){ 'J', (int)a, 0, 0, 7200 };
	} else if (**p == 'M') {
		(*p)++;
		if (!cal_number(p, 2, 12, &a) || a < 1 || *(*p)++ != '.' || !cal_number(p, 1, 5, &b) ||
		    b < 1 || *(*p)++ != '.' || !cal_number(p, 1, 6, &c))
			return false;
		*d = (struct cal_date){ 'M', (int)a, (int)b, (int)c, 7200 };
	} else {
		if (!cal_number(p, 3, 365, &a))
			return false;
		*d = (struct cal_date){ 'N', (int)a, 0, 0, 7200 };
	}
	if (**p == '/') {
		(*p)++;
		if (!cal_rule_hms(p, 167, &d->secs))
			return false;
	}
	return true;
}

/* "std offset [dst [offset] ,start[/time],end[/time]]" (POSIX, RFC 8536 3.3.1). */
static bool cal_rule_parse(const char *s, struct cal_rule *r)
{
	const char *p = s;
	long v;

	memset(r, 0, sizeof(*r));
	if (!cal_rule_name(&p) || !cal_rule_hms(&p, 24, &v))
		return false;
	r->std_off = -v;
	if (*p == '\0')
		return true;
	if (!cal_rule_name(&p))
		return false;
	r->dst_off = r->std_off + 3600;
	if (*p != ',') {
		if (!cal_rule_hms(&p, 24, &v))
			return false;
		r->dst_off = -v;
	}
	/* A TZif footer always spells the rule out (no POSIX default). */
	if (*p++ != ',' || !cal_rule_date(&p, &r->start) || *p++ != ',' || !cal_rule_date(&p, &r->end))
		return false;
	r->has_dst = true;
	return *p == '\0';
}

/* Days since the epoch of a rule date in year y. */
static long long cal_date_day(const struct cal_date *d, long long y)
{
	long long jan1 = cal_days_from_civil(y, 1, 1);

	switch (d->kind) {
	case 'J':
		return jan1 + d->a - 1 + (cal_leap(y) && d->a >= 60);
	case 'N':
		return jan1 + d->a;
	default: {
		static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
		long long first = cal_days_from_civil(y, d->a, 1);
		int len = mdays[d->a - 1] + (d->a == 2 && cal_leap(y));
		int wd_sunday = (cal_weekday_monday(first) + 1) % 7;
		long long day = (d->c - wd_sunday + 7) % 7 + 7LL * (d->b - 1);
		while (day >= len)
			day -= 7;
		return first + day;
	}
	}
}

static long cal_rule_offset(const struct cal_rule *r, long long t, long long *until)
{
	if (!r->has_dst) {
		*until = LLONG_MAX;
		return r->std_off;
	}
	long long y;
	int m, d;
	cal_civil_from_days(cal_floordiv(t + r->std_off, CAL_DAY), &y, &m, &d);

	/* The changes of the years around t, in time order. */
	long long at[6];
	long off[6];
	int n = 0;
	for (long long yy = y - 1; yy <= y + 1; yy++) {
		at[n] = cal_date_day(&r->start, yy) * CAL_DAY + r->start.secs - r->std_off;
		off[n++] = r->dst_off;
		at[n] = cal_date_day(&r->end, yy) * CAL_DAY + r->end.secs - r->dst_off;
		off[n++] = r->std_off;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && at[j - 1] > at[j]; j--) {
			long long ta = at[j];
			long to = off[j];
			at[j] = at[j - 1];
			off[j] = off[j - 1];
			at[j - 1] = ta;
			off[j - 1] = to;
		}
	/* Before the first change of y-1: the state that change ends. */
	long cur = off[0] == r->dst_off ? r->std_off : r->dst_off;
	*until = t + 366 * CAL_DAY;
	for (int i = 0; i < n; i++) {
		if (at[i] <= t) {
			cur = off[i];
		} else {
			*until = at[i];
			break;
		}
	}
	return cur;
}

/* ---- zones ---- */

const char *calendar_zone_name(const struct calendar_zone *z)
{
	return z ? z->name : "UTC";
}

static long long cal_clamp(long long t)
{
	return t > CAL_TIME_LIMIT ? CAL_TIME_LIMIT : t < -CAL_TIME_LIMIT ? -CAL_TIME_LIMIT : t;
}

long calendar_offset(const struct calendar_zone *z, long long t, long long *until)
{
	long long u = LLONG_MAX;
	long off;

	t = cal_clamp(t);
	if (z == NULL) {
		off = 0;
	} else if (z->n == 0 || t < z->at[0]) {
		if (z->n > 0) {
			off = z->off0;
			u = z->at[0];
		} else if (z->has_rule) {
			off = cal_rule_offset(&z->rule, t, &u);
		} else {
			off = z->off0;
		}
	} else {
		size_t lo = 0, hi = z->n;	/* at[lo] <= t < at[hi] */
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;
			if (z->at[mid] <= t)
				lo = mid;
			else
				hi = mid;
		}
		if (hi < z->n) {
			off = z->off[lo];
			u = z->at[hi];
		} else if (z->has_rule) {
			off = cal_rule_offset(&z->rule, t, &u);
		} else {
			off = z->off[lo];
		}
	}
	if (until)
		*until = u <= t ? t + 1 : u;
	return off;
}

/* The UTC time at which local day `day` starts (see the top of the file). */
static long long cal_midnight(const struct calendar_zone *z, long long day)
{
	long long wall = day * CAL_DAY, t = wall - 2 * CAL_DAY;

	for (int i = 0; i < 64; i++) {
		long long until;
		long off = calendar_offset(z, t, &until);
		if (wall < t + off)
			return t;
		if (until >= CAL_TIME_LIMIT || wall < until + off)
			return wall - off;
		t = until;
	}
	return wall - calendar_offset(z, wall, NULL);
}

/* The local days [first, last) of the window of period p that holds day. */
static void cal_days(enum calendar_period p, long long day, long long *first, long long *last)
{
	long long y;
	int m, d;

	switch (p) {
	case CALENDAR_WEEK:
		*first = day - cal_weekday_monday(day);
		*last = *first + 7;
		return;
	case CALENDAR_MONTH:
		cal_civil_from_days(day, &y, &m, &d);
		*first = cal_days_from_civil(y, m, 1);
		*last = m == 12 ? cal_days_from_civil(y + 1, 1, 1) : cal_days_from_civil(y, m + 1, 1);
		return;
	default:
		*first = day;
		*last = day + 1;
		return;
	}
}

void calendar_window(const struct calendar_zone *z, enum calendar_period p, long long t,
	long long *start, long long *end)
{
	t = cal_clamp(t);
	long long day = cal_floordiv(t + calendar_offset(z, t, NULL), CAL_DAY);

	/* The local date can disagree with the window around a repeated midnight. */
	for (int i = 0; i < 4; i++) {
		long long first, last;
		cal_days(p, day, &first, &last);
		*start = cal_midnight(z, first);
		*end = cal_midnight(z, last);
		if (*start <= t && t < *end)
			return;
		day = t < *start ? first - 1 : last;
	}
	/* Only a zone no place uses (offsets leaping by days) gets here. */
	*start = t;
	*end = t + CAL_DAY;
}

/*
 * The last answer of each thread for each period: every recipient of a
 * message asks for the same windows, and working them out again costs
 * dozens of offset look-ups. Keyed by the zone's serial, not only its
 * address, so a zone freed by a reload and another allocated at the same
 * address never share an answer.
 */
struct cal_windows_cache {
	const struct calendar_zone *zone;
	unsigned long serial;
	long long bounds[4];
};
static _Thread_local struct cal_windows_cache cal_cache[CALENDAR_MONTH + 1];

void calendar_windows(const struct calendar_zone *z, enum calendar_period p, long long t,
	long long bounds[4])
{
	unsigned long serial = z ? z->serial : 0;
	struct cal_windows_cache *c = (unsigned)p <= CALENDAR_MONTH ? &cal_cache[p] : NULL;
	long long pe, ns;

	t = cal_clamp(t);
	if (c != NULL && c->serial == serial && c->zone == z && c->bounds[1] <= t && t < c->bounds[2]) {
		memcpy(bounds, c->bounds, sizeof(c->bounds));
		return;
	}
	calendar_window(z, p, t, &bounds[1], &bounds[2]);
	calendar_window(z, p, bounds[1] - 1, &bounds[0], &pe);
	calendar_window(z, p, bounds[2], &ns, &bounds[3]);
	if (c != NULL) {
		c->zone = z;
		c->serial = serial;
		memcpy(c->bounds, bounds, sizeof(c->bounds));
	}
}

void calendar_rfc3339(const struct calendar_zone *z, long long t, char *buf, size_t len)
{
	long off = calendar_offset(z, t, NULL);
	long long local = cal_clamp(t) + off, y;
	long long secs = local - cal_floordiv(local, CAL_DAY) * CAL_DAY;
	int m, d;
	long a = off < 0 ? -off : off;

	cal_civil_from_days(cal_floordiv(local, CAL_DAY), &y, &m, &d);
	snprintf(buf, len, "%04lld-%02d-%02dT%02lld:%02lld:%02lld%c%02ld:%02ld", y, m, d, secs / 3600,
		 secs / 60 % 60, secs % 60, off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

const char *calendar_period_name(enum calendar_period p)
{
	switch (p) {
	case CALENDAR_DAY:
		return "day";
	case CALENDAR_WEEK:
		return "week";
	case CALENDAR_MONTH:
		return "month";
	default:
		return NULL;
	}
}

void calendar_zone_free(struct calendar_zone *z)
{
	if (z == NULL)
		return;
	free(z->at);
	free(z->off);
	free(z);
}

static uint32_t cal_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t cal_be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)cal_be32(p) << 32 | cal_be32(p + 4));
}

struct cal_header {
	uint32_t isut, isstd, leap, time, type, chars;
};

/* Reads a header at data[pos]; the size of its data block for time size ts. */
static bool cal_header(const unsigned char *data, size_t len, size_t pos, size_t ts,
	struct cal_header *h, size_t *block)
{
	if (len - pos < 44 || memcmp(data + pos, "TZif", 4) != 0)
		return false;
	const unsigned char *c = data + pos + 20;
	*h = (struct cal_header){ cal_be32(c), cal_be32(c + 4), cal_be32(c + 8), cal_be32(c + 12),
				  cal_be32(c + 16), cal_be32(c + 20) };
	if (h->time > CAL_TRANSITIONS_MAX || h->type == 0 || h->type > CAL_TYPES_MAX ||
	    h->leap > CAL_TRANSITIONS_MAX || h->chars > 65536 ||
	    (h->isut != 0 && h->isut != h->type) || (h->isstd != 0 && h->isstd != h->type))
		return false;
	*block = (size_t)h->time * (ts + 1) + (size_t)h->type * 6 + h->chars +
		 (size_t)h->leap * (ts + 4) + h->isstd + h->isut;
	return len - pos - 44 >= *block;
}

struct calendar_zone *calendar_zone_parse(const char *name, const unsigned char *data, size_t len,
	char *err, size_t errlen)
{
	struct cal_header h;
	size_t block, pos = 0, ts = 4;

	if (strlen(name) >= CALENDAR_NAME_MAX) {
		snprintf(err, errlen, "time zone name longer than %d characters", CALENDAR_NAME_MAX - 1);
		return NULL;
	}
	if (!cal_header(data, len, 0, 4, &h, &block)) {
		snprintf(err, errlen, "time zone %s: not a valid TZif file", name);
		return NULL;
	}
	bool v2 = data[4] >= '2';
	if (v2) {
		pos = 44 + block;
		ts = 8;
		if (!cal_header(data, len, pos, 8, &h, &block)) {
			snprintf(err, errlen, "time zone %s: bad version 2 part of the TZif file", name);
			return NULL;
		}
	}
	const unsigned char *times = data + pos + 44, *idx = times + (size_t)h.time * ts;
	const unsigned char *types = idx + h.time, *end = times + block;

	struct calendar_zone *z = calloc(1, sizeof(*z));
	if (z == NULL || (h.time && ((z->at = calloc(h.time, sizeof(*z->at))) == NULL ||
				     (z->off = calloc(h.time, sizeof(*z->off))) == NULL))) {
		snprintf(err, errlen, "time zone %s: out of memory", name);
		calendar_zone_free(z);
		return NULL;
	}
	strcpy(z->name, name);
	cal_zone_stamp(z);
	for (uint32_t i = 0; i < h.type; i++) {
		int32_t off = (int32_t)cal_be32(types + 6 * i);
		if (off <= -CAL_OFFSET_MAX || off >= CAL_OFFSET_MAX || types[6 * i + 4] > 1) {
			snprintf(err, errlen, "time zone %s: bad local time type", name);
			goto bad;
		}
	}
	z->off0 = (int32_t)cal_be32(types);
	for (uint32_t i = 0; i < h.time; i++) {
		long long at = ts == 8 ? cal_be64(times + 8 * i) : (int32_t)cal_be32(times + 4 * i);
		if (idx[i] >= h.type || (i > 0 && at <= z->at[i - 1])) {
			snprintf(err, errlen, "time zone %s: bad transition table", name);
			goto bad;
		}
		z->at[i] = cal_clamp(at);
		z->off[i] = (int32_t)cal_be32(types + 6 * idx[i]);
	}
	z->n = h.time;
	/* Clamping may have made two transitions equal: keep times ascending. */
	for (size_t i = 1; i < z->n; i++)
		if (z->at[i] <= z->at[i - 1]) {
			snprintf(err, errlen, "time zone %s: transitions beyond the calendar", name);
			goto bad;
		}
	if (v2 && end < data + len) {
		const unsigned char *nl;
		if (*end != '\n' || (nl = memchr(end + 1, '\n', (size_t)(data + len - end - 1))) == NULL ||
		    nl - end - 1 > 255) {
			snprintf(err, errlen, "time zone %s: bad TZif footer", name);
			goto bad;
		}
		char rule[256];
		memcpy(rule, end + 1, (size_t)(nl - end - 1));
		rule[nl - end - 1] = '\0';
		if (rule[0] != '\0') {
			if (!cal_rule_parse(rule, &z->rule) || z->rule.std_off <= -CAL_OFFSET_MAX ||
			    z->rule.std_off >= CAL_OFFSET_MAX || z->rule.dst_off <= -CAL_OFFSET_MAX ||
			    z->rule.dst_off >= CAL_OFFSET_MAX) {
				snprintf(err, errlen, "time zone %s: cannot read the footer rule %.64s", name, rule);
				goto bad;
			}
			z->has_rule = true;
		}
	}
	return z;
bad:
	calendar_zone_free(z);
	return NULL;
}

static bool cal_name_ok(const char *name)
{
	if (name[0] == '\0' || name[0] == '/' || strlen(name) >= CALENDAR_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("/_+-.", *p))
			return false;
	/* no "." or ".." component */
	for (const char *c = name; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
		if (c[0] == '.' && (c[1] == '/' || c[1] == '\0' || (c[1] == '.' && (c[2] == '/' || c[2] == '\0'))))
			return false;
	return true;
}

struct calendar_zone *calendar_zone_load(const char *name, char *err, size_t errlen)
{
	if (strcmp(name, "UTC") == 0) {
		struct calendar_zone *z = calloc(1, sizeof(*z));
		if (z == NULL)
			snprintf(err, errlen, "out of memory");
		else {
			strcpy(z->name, "UTC");
			cal_zone_stamp(z);
		}
		return z;
	}
	if (!cal_name_ok(name)) {
		snprintf(err, errlen, "bad time zone name %.80s (expected an IANA name such as Europe/Paris)",
			 name);
		return NULL;
	}
	/* TZDIR as glibc reads it; read once, here, never set. */
	const char *dir = getenv("TZDIR");
	char path[PATH_MAX];
	if (dir == NULL || dir[0] == '\0')
		dir = CAL_DEFAULT_DIR;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		snprintf(err, errlen, "time zone %s: path too long", name);
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0) {
		snprintf(err, errlen, errno == ENOENT || errno == ENOTDIR
			 ? "unknown time zone %s (no %s; is tzdata installed?)" : "time zone %s: %s: cannot open",
			 name, path);
		return NULL;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > CALENDAR_FILE_MAX) {
		snprintf(err, errlen, "unknown time zone %s (%s is not a zone file)", name, path);
		close(fd);
		return NULL;
	}
	unsigned char *data = malloc((size_t)sb.st_size + 1);
	size_t got = 0;
	ssize_t r = 1;
	while (data != NULL && got < (size_t)sb.st_size && (r = read(fd, data + got, (size_t)sb.st_size - got)) > 0)
		got += (size_t)r;
	close(fd);
	if (data == NULL || r < 0) {
		snprintf(err, errlen, "time zone %s: cannot read %s", name, path);
		free(data);
		return NULL;
	}
	struct calendar_zone *z = calendar_zone_parse(name, data, got, err, errlen);
	free(data);
	return z;
}
