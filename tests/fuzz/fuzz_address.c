/*
 * fuzz_address - From header values and envelope arguments
 * (address_from_header, address_from_envelope, address_domain).
 *
 * Input: one header value or envelope argument, as a client sends it.
 * Properties: an address taken is non-empty, fits the buffer, has a
 * domain, and parses again to itself (what the signer and the alignment
 * checks rely on); a smaller buffer is never overrun.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "fuzz.h"

/*
 * An address taken must read back as itself: as an envelope argument
 * always, as a From value when it came from one (an envelope address may
 * hold ':' or ';', which make a From value a group).
 */
static void check_address(const char *addr, size_t len, bool from_header)
{
	char again[ADDRESS_MAX];

	fuzz_check(addr[0] != '\0' && strlen(addr) < len, "address empty or too long");
	fuzz_check(address_domain(addr) != NULL, "address without a domain");
	if (from_header)
		fuzz_check(address_from_header(addr, again, sizeof(again)) == 0 &&
			   strcmp(again, addr) == 0, "address does not parse to itself as a From value");
	fuzz_check(address_from_envelope(addr, again, sizeof(again)) == 0 &&
		   strcmp(again, addr) == 0, "address does not parse to itself as an envelope");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size), out[ADDRESS_MAX], small[12];

	fuzz_init();
	if (address_from_header(in, out, sizeof(out)) == 0)
		check_address(out, sizeof(out), true);
	if (address_from_header(in, small, sizeof(small)) == 0)
		check_address(small, sizeof(small), true);
	if (address_from_envelope(in, out, sizeof(out)) == 0 && out[0] != '\0')
		check_address(out, sizeof(out), false);
	if (address_from_envelope(in, small, sizeof(small)) == 0 && small[0] != '\0')
		check_address(small, sizeof(small), false);
	address_domain(in);
	free(in);
	return 0;
}
