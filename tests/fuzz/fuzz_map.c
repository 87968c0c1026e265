/*
 * fuzz_map - file: maps of assign lines (policy_map_load, as text keys
 * and as IP keys, then policy_map_lookup and policy_map_lookup_ip).
 *
 * Input: a whole map file, written to a scratch file; the classes it may
 * name are starter, business and webserver. Properties: every word of
 * the input can be looked up, as a key and as an address, and what is
 * found is one of those classes; in a map without errors, the value of
 * each "value class" line is found (as an address or block too, when it
 * is one).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "fuzz.h"
#include "netaddr.h"
#include "policy_map.h"

static struct policy_class fuzz_classes[] = { { .name = "starter" }, { .name = "business" },
					      { .name = "webserver" } };
#define FUZZ_CLASSES (sizeof(fuzz_classes) / sizeof(fuzz_classes[0]))

static const struct policy_class *fuzz_resolve(void *arg, const char *name)
{
	(void)arg;
	for (size_t i = 0; i < FUZZ_CLASSES; i++)
		if (strcmp(fuzz_classes[i].name, name) == 0)
			return &fuzz_classes[i];
	return NULL;
}

static void fuzz_found(const struct policy_class *c)
{
	fuzz_check(c == NULL || (c >= fuzz_classes && c < fuzz_classes + FUZZ_CLASSES),
		   "a map lookup found something that is not a class");
}

/* A line "value class" the map must have taken: its value is found. */
static void fuzz_valid_line(const struct policy_map *text, const struct policy_map *ips,
	char *line)
{
	char *save = NULL, *value, *name;
	struct cidr block;

	if (strlen(line) > 200 || strchr(line, '#') != NULL ||
	    (value = strtok_r(line, " \t\r", &save)) == NULL ||
	    (name = strtok_r(NULL, " \t\r", &save)) == NULL ||
	    strtok_r(NULL, " \t\r", &save) != NULL || fuzz_resolve(NULL, name) == NULL)
		return;
	if (text != NULL)
		fuzz_check(policy_map_lookup(text, value) != NULL,
			   "the value of a valid map line is not found");
	if (ips != NULL && cidr_parse(value, &block) == 0)
		fuzz_check(policy_map_lookup_ip(ips, &block.net) != NULL,
			   "the block of a valid map line is not found");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path;
	struct policy_map *text, *ips;
	struct diag errs = { 0 }, ip_errs = { 0 };
	char err[512], *words, *save = NULL, *lines[64];
	size_t n;

	fuzz_init();
	path = fuzz_write("map", data, size);
	text = policy_map_load(path, false, fuzz_resolve, NULL, &errs, err, sizeof(err));
	ips = policy_map_load(path, true, fuzz_resolve, NULL, &ip_errs, err, sizeof(err));
	fuzz_check(text != NULL && ips != NULL, "a readable map did not load");
	words = fuzz_string(data, size);
	for (char *w = strtok_r(words, " \t\r\n", &save); w != NULL; w = strtok_r(NULL, " \t\r\n", &save)) {
		struct netaddr a;
		struct cidr block;
		fuzz_found(policy_map_lookup(text, w));
		if (netaddr_parse(w, &a) == 0)
			fuzz_found(policy_map_lookup_ip(ips, &a));
		if (cidr_parse(w, &block) == 0)
			fuzz_found(policy_map_lookup_ip(ips, &block.net));
	}
	free(words);
	words = fuzz_string(data, size);
	n = fuzz_lines(words, lines, sizeof(lines) / sizeof(lines[0]));
	/* a map with errors is refused (policy_load fails): nothing to find */
	for (size_t i = 0; i < n; i++)
		if (i + 1 < sizeof(lines) / sizeof(lines[0]))	/* the last may hold the rest */
			fuzz_valid_line(diag_errors(&errs) == 0 ? text : NULL,
					diag_errors(&ip_errs) == 0 ? ips : NULL, lines[i]);
	free(words);
	policy_map_free(text);
	policy_map_free(ips);
	diag_free(&errs);
	diag_free(&ip_errs);
	return 0;
}
