/*
 * policy_map - file: maps: "value class" lines in hash tables.
 *
 * An ip map keeps one table per prefix length present (at most 33 for
 * IPv4 and 129 for IPv6) and probes them longest first, which makes a
 * longest-prefix match without a trie; real maps use a handful of
 * lengths, so a lookup is one to three probes.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_map.h"
#include "strmap.h"

#define MAP_LINE_MAX 8192		/* longer lines are refused */
#define MAP_LINES_MAX 10000000		/* lines of one map */

struct policy_map {
	struct strmap *values;			/* text keys */
	struct strmap *by_prefix[2][129];	/* ip: [v4=0|v6=1][prefix] */
	int prefixes[2][129];			/* prefix lengths present, longest first */
	int prefix_count[2];
};

static int map_add_ip(struct policy_map *m, const char *value, const struct policy_class *cls)
{
	struct cidr block;
	char key[NETADDR_TEXT_MAX];
	if (cidr_parse(value, &block) != 0)
		return 1;
	int fam = block.net.family == AF_INET ? 0 : 1;
	struct strmap **t = &m->by_prefix[fam][block.prefix];
	if (*t == NULL) {
		if ((*t = strmap_new(16, false)) == NULL)
			return -1;
		/* keep prefix lengths sorted longest first */
		int i = m->prefix_count[fam]++;
		while (i > 0 && m->prefixes[fam][i - 1] < block.prefix) {
			m->prefixes[fam][i] = m->prefixes[fam][i - 1];
			i--;
		}
		m->prefixes[fam][i] = block.prefix;
	}
	netaddr_format(&block.net, key, sizeof(key));
	return strmap_put(*t, key, (void *)cls) < 0 ? -1 : 0;
}

struct policy_map *policy_map_load(const char *path, bool ip_keys, policy_map_resolver resolve,
				   void *arg, struct diag *errs, char *err, size_t len)
{
	struct policy_map *m = calloc(1, sizeof(*m));
	char line[MAP_LINE_MAX + 2];
	int lineno = 0;
	FILE *fp;

	if (m == NULL || (!ip_keys && (m->values = strmap_new(1024, true)) == NULL)) {
		snprintf(err, len, "out of memory");
		policy_map_free(m);
		return NULL;
	}
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, len, "cannot open map %s: %s", path, strerror(errno));
		policy_map_free(m);
		return NULL;
	}
	while (fgets(line, sizeof(line), fp)) {
		char *save = NULL, *value, *name, *extra;
		if (++lineno > MAP_LINES_MAX) {
			diag_add(errs, path, lineno, "map longer than %d lines", MAP_LINES_MAX);
			break;
		}
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			diag_add(errs, path, lineno, "line longer than %d characters", MAP_LINE_MAX);
			int ch;
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if ((value = strtok_r(line, " \t\r\n", &save)) == NULL)
			continue;
		name = strtok_r(NULL, " \t\r\n", &save);
		extra = strtok_r(NULL, " \t\r\n", &save);
		if (name == NULL || extra != NULL) {
			diag_add(errs, path, lineno, "expected \"value class\"");
			continue;
		}
		const struct policy_class *cls = resolve(arg, name);
		if (cls == NULL) {
			diag_add(errs, path, lineno,
				 "unknown class %s (classes must be defined before the assign line that loads this map)",
				 name);
			continue;
		}
		int rc = ip_keys ? map_add_ip(m, value, cls) : strmap_put(m->values, value, (void *)cls) < 0 ? -1 : 0;
		if (rc > 0)
			diag_add(errs, path, lineno, "not an IP address or CIDR block: %s", value);
		else if (rc < 0)
			diag_add(errs, path, lineno, "out of memory");
	}
	fclose(fp);
	return m;
}

const struct policy_class *policy_map_lookup(const struct policy_map *m, const char *key)
{
	return strmap_get(m->values, key);
}

const struct policy_class *policy_map_lookup_ip(const struct policy_map *m, const struct netaddr *a)
{
	int fam = a->family == AF_INET ? 0 : 1;
	for (int i = 0; i < m->prefix_count[fam]; i++) {
		char key[NETADDR_TEXT_MAX];
		struct netaddr masked = *a;
		int prefix = m->prefixes[fam][i];
		netaddr_mask(&masked, prefix);
		netaddr_format(&masked, key, sizeof(key));
		const struct policy_class *cls = strmap_get(m->by_prefix[fam][prefix], key);
		if (cls)
			return cls;
	}
	return NULL;
}

void policy_map_free(struct policy_map *m)
{
	if (m == NULL)
		return;
	strmap_free(m->values, NULL);
	for (int f = 0; f < 2; f++)
		for (int i = 0; i < 129; i++)
			strmap_free(m->by_prefix[f][i], NULL);
	free(m);
}
