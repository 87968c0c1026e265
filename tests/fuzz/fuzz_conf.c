/*
 * fuzz_conf - bulkmilter.conf (settings_read, settings_load, and
 * store_open, which parses the Redis URL and reads RedisPasswordFile).
 *
 * Input: a whole bulkmilter.conf, written to a scratch file. Properties:
 * settings_load gives settings exactly when settings_read found no
 * error; every diagnostic is one line; the store opens without touching
 * the network (it is closed again at once).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "fuzz.h"
#include "netaddr.h"
#include "settings.h"
#include "store.h"

/* Addresses InternalHosts is asked about. */
static const char *const fuzz_clients[] = { "127.0.0.1", "192.0.2.1", "::1", "2001:db8::1", "10.1.2.3" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag read_errs = { 0 }, load_errs = { 0 }, store_errs = { 0 };
	struct settings *s, *loaded;
	const char *path;

	fuzz_init();
	path = fuzz_write("bulkmilter.conf", data, size);
	s = settings_read(path, &read_errs);
	fuzz_check(s != NULL, "settings_read of a readable file gave nothing");
	loaded = settings_load(path, &load_errs);
	fuzz_check((loaded != NULL) == (diag_errors(&read_errs) == 0),
		   "settings_load and settings_read disagree about errors");
	fuzz_check(diag_errors(&load_errs) == diag_errors(&read_errs),
		   "settings_load and settings_read found different errors");
	for (size_t i = 0; i < read_errs.count; i++)
		fuzz_check(strchr(read_errs.lines[i], '\n') == NULL, "a diagnostic of two lines");
	for (size_t i = 0; i < sizeof(fuzz_clients) / sizeof(fuzz_clients[0]); i++) {
		struct netaddr a;
		if (netaddr_parse(fuzz_clients[i], &a) == 0)
			settings_is_internal(s, &a);
	}
	if (loaded != NULL)
		store_close(store_open(loaded, &store_errs));
	settings_free(loaded);
	settings_free(s);
	diag_free(&read_errs);
	diag_free(&load_errs);
	diag_free(&store_errs);
	return 0;
}
