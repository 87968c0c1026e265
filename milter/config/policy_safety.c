/*
 * policy_safety - the account-safety lines of a class: notify,
 * suspend-if, suspend-for (suspended is an action: policy.c).
 *
 *	notify      80% 100%                    thresholds of every rate
 *	suspend-if  distinct-ips > 5/1h         counts over a period
 *	suspend-if  distinct-recipients > 2000/1h
 *	suspend-if  deferred > 300/1h
 *	suspend-if  bounce-rate > 5% min 200/1d  shares, read from reports
 *	suspend-if  complaint-rate > 0.3% min 1000/1d
 *	suspend-for 24h
 *
 * A count rule trips when the count goes beyond LIMIT: "> 3/1h" lets
 * three addresses through and suspends at the fourth. A kind may appear
 * once per class (two distinct-ips lines would be two counts of the same
 * thing with a muddled meaning).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "settings.h"

/* suspend-for bounds: shorter is a typo, longer is what release is for. */
#define SUSPEND_FOR_MIN_MS 1000L
#define SUSPEND_FOR_MAX_MS (365L * 86400 * 1000)

static const char *const kind_names[] = {
	[SUSPEND_DISTINCT_IPS] = "distinct-ips",
	[SUSPEND_DISTINCT_RECIPIENTS] = "distinct-recipients",
	[SUSPEND_DEFERRED] = "deferred",
	[SUSPEND_BOUNCE_RATE] = "bounce-rate",
	[SUSPEND_COMPLAINT_RATE] = "complaint-rate",
};

const char *policy_suspend_kind_name(enum policy_suspend_kind k)
{
	return kind_names[k];
}

bool policy_safety_directive(const char *word)
{
	return strcasecmp(word, "notify") == 0 || strcasecmp(word, "suspend-if") == 0
	       || strcasecmp(word, "suspend-for") == 0;
}

/* "80%" -> 80; 1..100, whole percents. */
static int parse_pct(const char *s, unsigned *out)
{
	char *end;

	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!isdigit((unsigned char)s[0]) || errno || strcmp(end, "%") != 0 || v == 0 || v > 100)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_notify(struct policy_class *c, char **w, int n, char *err, size_t len)
{
	if (n < 2 || n - 1 > POLICY_NOTIFY_MAX) {
		snprintf(err, len, "notify: expected 1 to %d thresholds such as 80%% 100%%", POLICY_NOTIFY_MAX);
		return -1;
	}
	if (c->notify_count) {
		snprintf(err, len, "notify: already set for class %s", c->name);
		return -1;
	}
	for (int i = 1; i < n; i++) {
		unsigned pct;
		if (parse_pct(w[i], &pct) != 0) {
			snprintf(err, len, "notify: bad threshold %s (expected a whole percent from 1%% to 100%%)", w[i]);
			return -1;
		}
		if (i > 1 && pct <= c->notify_pct[i - 2]) {
			snprintf(err, len, "notify: thresholds must ascend (%s after %u%%)", w[i], c->notify_pct[i - 2]);
			return -1;
		}
		c->notify_pct[i - 1] = pct;
	}
	c->notify_count = (size_t)n - 1;
	return 0;
}

/* "5%" or "0.3%" -> 0.05, 0.003; above 0 and at most 100%. */
static int parse_share(const char *s, double *out)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (!isdigit((unsigned char)s[0]) || errno || strcmp(end, "%") != 0 || !(v > 0) || v > 100)
		return -1;
	*out = v / 100;
	return 0;
}

static int parse_suspend_if(struct policy_class *c, char **w, int n, char *err, size_t len)
{
	struct policy_suspend_rule r = { 0 };
	size_t k;

	if (n < 4 || strcmp(w[2], ">") != 0) {
		snprintf(err, len, "suspend-if: expected KIND > LIMIT/PERIOD (distinct-ips, distinct-recipients, deferred) or KIND > P%% [min N/PERIOD] (bounce-rate, complaint-rate)");
		return -1;
	}
	for (k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
		if (strcasecmp(w[1], kind_names[k]) == 0)
			break;
	if (k == sizeof(kind_names) / sizeof(kind_names[0])) {
		snprintf(err, len, "suspend-if: unknown kind %s (expected distinct-ips, distinct-recipients, deferred, bounce-rate, complaint-rate)", w[1]);
		return -1;
	}
	r.kind = (enum policy_suspend_kind)k;
	for (size_t i = 0; i < c->suspend_if_count; i++)
		if (c->suspend_if[i].kind == r.kind) {
			snprintf(err, len, "suspend-if: %s already set for class %s", kind_names[k], c->name);
			return -1;
		}
	if (c->suspend_if_count >= POLICY_SUSPEND_IF_MAX) {
		snprintf(err, len, "suspend-if: more than %d rules", POLICY_SUSPEND_IF_MAX);
		return -1;
	}
	if (r.kind == SUSPEND_BOUNCE_RATE || r.kind == SUSPEND_COMPLAINT_RATE) {
		struct policy_rate min;
		if ((n != 4 && n != 6) || parse_share(w[3], &r.share) != 0
		    || (n == 6 && (strcasecmp(w[4], "min") != 0 || policy_parse_rate(w[5], &min) != 0))) {
			snprintf(err, len, "suspend-if %s: expected %s > P%% [min N/PERIOD], e.g. %s > 5%% min 200/1d",
				 kind_names[k], kind_names[k], kind_names[k]);
			return -1;
		}
		if (n == 6) {
			r.min = min.count;
			r.min_period_ms = min.period_ms;
		}
		snprintf(r.text, sizeof(r.text), "%s > %s%s%s", kind_names[k], w[3], n == 6 ? " min " : "",
			 n == 6 ? w[5] : "");
	} else {
		struct policy_rate rate;
		if (n != 4 || policy_parse_rate(w[3], &rate) != 0) {
			snprintf(err, len, "suspend-if %s: expected %s > LIMIT/PERIOD, e.g. %s > 5/1h",
				 kind_names[k], kind_names[k], kind_names[k]);
			return -1;
		}
		r.limit = rate.count;
		r.period_ms = rate.period_ms;
		snprintf(r.text, sizeof(r.text), "%s > %s", kind_names[k], w[3]);
	}
	c->suspend_if[c->suspend_if_count++] = r;
	return 0;
}

static int parse_suspend_for(struct policy_class *c, char **w, int n, char *err, size_t len)
{
	long ms;

	if (n != 2 || settings_parse_duration_ms(w[1], &ms) != 0 || ms < SUSPEND_FOR_MIN_MS
	    || ms > SUSPEND_FOR_MAX_MS) {
		snprintf(err, len, "suspend-for: expected a duration from 1s to 365d, e.g. 24h");
		return -1;
	}
	c->suspend_for_ms = (unsigned long)ms;
	return 0;
}

int policy_safety_parse(struct policy_class *c, char **w, int n, char *err, size_t errlen)
{
	if (strcasecmp(w[0], "notify") == 0)
		return parse_notify(c, w, n, err, errlen);
	if (strcasecmp(w[0], "suspend-if") == 0)
		return parse_suspend_if(c, w, n, err, errlen);
	return parse_suspend_for(c, w, n, err, errlen);
}
