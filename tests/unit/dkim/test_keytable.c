/*
 * Unit tests of KeyTable/SigningTable loading and lookup (keytable.c)
 * and of key loading (privkey.c). Keys come from signer_mkkeys in a
 * temp directory made per run.
 */
#include "unit.h"

#include <limits.h>
#include <sys/wait.h>
#include <sys/stat.h>

#include "keytable.h"
#include "privkey.h"

static char keydir[64];
static char *oversign_from[] = { "from", NULL };

/* DIR/name, in one of a few rotating buffers. */
static const char *kpath(const char *name)
{
	static char buf[8][128];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, 128, "%s/%s", keydir, name);
	return p;
}

/* Writes DIR/name with printf-style text; "@" in fmt stands for DIR. */
static const char *kfile(const char *name, const char *fmt, ...)
{
	char text[16384], expanded[32768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	size_t o = 0;
	for (const char *p = text; *p && o + PATH_MAX < sizeof(expanded); p++) {
		if (*p == '@' && p[1] == '/') {
			o += (size_t)snprintf(expanded + o, sizeof(expanded) - o, "%s", keydir);
		} else {
			expanded[o++] = *p;
		}
	}
	expanded[o] = '\0';
	const char *path = kpath(name);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(expanded, fp);
	fclose(fp);
	return path;
}

static struct settings settings_with(const char *key_table, const char *signing_table)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.path = (char *)"test.conf";
	s.key_table = (char *)key_table;
	s.signing_table = (char *)signing_table;
	s.canon_header_relaxed = s.canon_body_relaxed = true;
	s.oversign_headers = oversign_from;
	s.require_safe_keys = true;
	return s;
}

static struct keytable *load_ok(const char *key_table, const char *signing_table)
{
	struct diag d = { 0 };
	struct settings s = settings_with(key_table, signing_table);
	struct keytable *kt = keytable_load(&s, &d);
	diag_print(&d, stderr);
	assert_int_equal(diag_errors(&d), 0);
	assert_non_null(kt);
	diag_free(&d);
	return kt;
}

/* The selector the first signature gets for addr, or "" when none. */
static const char *first_selector(struct keytable *kt, const char *addr)
{
	static struct keytable_signing out[4];
	char why[256];
	int n = keytable_lookup(kt, addr, false, out, 4, why, sizeof(why));
	assert_true(n == 0 || n == 1);
	return n == 1 ? out[0].selector : "";
}

/* Selectors of every match, joined with ','. */
static const char *all_selectors(struct keytable *kt, const char *addr, size_t max)
{
	static char joined[256];
	struct keytable_signing out[8];
	char why[256];
	int n = keytable_lookup(kt, addr, true, out, max, why, sizeof(why));
	assert_true(n >= 0);
	joined[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
			i ? "," : "", out[i].selector);
	return joined;
}

static const char *six_keys =
	"# OpenDKIM KeyTable\n"
	"k-user  example.com:user:@/rsa.private\n"
	"k-dom   example.com:dom:@/rsa.private\n"
	"k-sub   example.com:sub:@/rsa.private\n"
	"k-usub  example.com:usub:@/rsa.private\n"
	"k-uany  example.com:uany:@/rsa.private\n"
	"k-any   example.com:any:@/rsa.private\n";

static void plain_table_tries_keys_in_opendkim_order(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "%s", six_keys);
	const char *st_path = kfile("SigningTable",
		"alice@example.com   k-user\n"
		"example.com         k-dom\n"
		".example.net        k-sub\n"
		"carol@.example.net  k-usub\n"
		"dave@*              k-uany\n"
		"*                   k-any\n");
	struct keytable *kt = load_ok(kt_path, st_path);

	assert_string_equal(first_selector(kt, "alice@example.com"), "user");
	assert_string_equal(first_selector(kt, "bob@example.com"), "dom");
	assert_string_equal(first_selector(kt, "Bob@EXAMPLE.Com"), "dom");
	assert_string_equal(first_selector(kt, "x@a.example.net"), "sub");
	assert_string_equal(first_selector(kt, "carol@a.example.net"), "usub");
	assert_string_equal(first_selector(kt, "x@a.b.example.net"), "sub");
	/* ".example.net" is for subdomains, not example.net itself */
	assert_string_equal(first_selector(kt, "x@example.net"), "any");
	assert_string_equal(first_selector(kt, "dave@other.org"), "uany");
	assert_string_equal(first_selector(kt, "eve@other.org"), "any");
	/* MultipleSignatures: every key that matches, in lookup order */
	assert_string_equal(all_selectors(kt, "alice@example.com", 4), "user,dom,any");
	assert_string_equal(all_selectors(kt, "carol@x.example.net", 4), "usub,sub,any");
	assert_string_equal(all_selectors(kt, "carol@x.example.net", 2), "usub,sub");
	keytable_free(kt);
}

static void plain_table_without_a_match_signs_nothing(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "%s", six_keys);
	const char *st_path = kfile("SigningTable", "example.com k-dom\n");
	struct keytable *kt = load_ok(kt_path, st_path);
	assert_string_equal(first_selector(kt, "a@other.org"), "");
	assert_string_equal(first_selector(kt, "a@sub.example.com"), "");
	assert_string_equal(first_selector(kt, "a@example.com.evil.org"), "");
	keytable_free(kt);
}

static void refile_star_at_domain_and_star_at_subdomains(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "%s", six_keys);
	const char *st_path = kfile("SigningTable",
		"*@example.com      k-dom\n"
		"*@*.example.com    k-sub\n");
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", st_path);
	struct keytable *kt = load_ok(kt_path, spec);
	assert_string_equal(first_selector(kt, "a@example.com"), "dom");
	assert_string_equal(first_selector(kt, "A@Example.COM"), "dom");
	assert_string_equal(first_selector(kt, "a@mail.example.com"), "sub");
	assert_string_equal(first_selector(kt, "a@a.b.example.com"), "sub");
	assert_string_equal(first_selector(kt, "a@example.com.evil.org"), "");
	assert_string_equal(first_selector(kt, "a@notexample.com"), "");
	assert_string_equal(first_selector(kt, "a@example.org"), "");
	keytable_free(kt);
}

static void refile_first_matching_line_wins_whatever_its_form(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "%s", six_keys);
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable",
		"# subdomains first\n"
		"*@*.example.com         k-sub\n"
		"*@mail.example.com      k-dom\n"
		"alice@mail.example.com  k-user\n"
		"*@mail.*.org            k-uany\n"
		"*                       k-any\n"));
	struct keytable *kt = load_ok(kt_path, spec);
	assert_string_equal(first_selector(kt, "alice@mail.example.com"), "sub");
	assert_string_equal(all_selectors(kt, "alice@mail.example.com", 4), "sub,dom,user,any");
	assert_string_equal(all_selectors(kt, "bob@mail.x.org", 4), "uany,any");
	assert_string_equal(first_selector(kt, "bob@other.net"), "any");
	keytable_free(kt);

	/* the same lines in another order: a catch-all first takes everything */
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable",
		"*                       k-any\n"
		"alice@mail.example.com  k-user\n"
		"*@mail.example.com      k-dom\n"));
	kt = load_ok(kt_path, spec);
	assert_string_equal(first_selector(kt, "alice@mail.example.com"), "any");
	assert_string_equal(all_selectors(kt, "alice@mail.example.com", 4), "any,user,dom");
	keytable_free(kt);

	/* a regex line before an indexed line wins; after it, it does not */
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable",
		"*@mail.example.co[m]    k-uany\n"
		"*@mail.example.com      k-dom\n"
		"*@*.example.org         k-sub\n"
		"*@mail.example.(org|net) k-any\n"));
	kt = load_ok(kt_path, spec);
	assert_string_equal(first_selector(kt, "a@mail.example.com"), "uany");
	assert_string_equal(first_selector(kt, "a@mail.example.org"), "sub");
	assert_string_equal(first_selector(kt, "a@mail.example.net"), "any");
	keytable_free(kt);
}

static void signer_field_becomes_identity_within_the_domain(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "%s", six_keys);
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable",
		"*@example.com      k-dom:news@%%\n"
		"*@*.example.com    k-sub:x@other.net\n"));
	struct keytable *kt = load_ok(kt_path, spec);
	struct keytable_signing out[2];
	char why[256];
	assert_int_equal(keytable_lookup(kt, "a@example.com", false, out, 2, why, sizeof(why)), 1);
	assert_string_equal(out[0].identity, "news@example.com");
	assert_int_equal(out[0].line, 1);
	/* i= outside d= would make libopendkim refuse: OpenDKIM leaves it out */
	assert_int_equal(keytable_lookup(kt, "a@b.example.com", false, out, 2, why, sizeof(why)), 1);
	assert_string_equal(out[0].identity, "");
	keytable_free(kt);
}

static void percent_domain_signs_as_the_from_domain(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "any %%:sel:@/rsa.private\n");
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable", "*@* any\n"));
	struct keytable *kt = load_ok(kt_path, spec);
	struct keytable_signing out[1];
	char why[256];
	assert_int_equal(keytable_lookup(kt, "Ann@Foo.Example", false, out, 1, why, sizeof(why)), 1);
	assert_string_equal(out[0].domain, "foo.example");
	assert_string_equal(out[0].selector, "sel");
	/* a From domain that is no domain name is not used as d= */
	assert_int_equal(keytable_lookup(kt, "a@bad..domain", false, out, 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "not usable"));
	keytable_free(kt);
}

static void percent_key_name_is_the_entry_named_like_the_domain(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable", "example.com example.com:s1:@/rsa.private\n");
	char spec[PATH_MAX + 8];
	const char *st_path = kfile("SigningTable", "*@example.com %%\n*@example.org %%\n");
	snprintf(spec, sizeof(spec), "refile:%s", st_path);
	struct keytable *kt = load_ok(kt_path, spec);
	struct keytable_signing out[1];
	char why[256], want[256];
	assert_int_equal(keytable_lookup(kt, "a@example.com", false, out, 1, why, sizeof(why)), 1);
	assert_string_equal(out[0].selector, "s1");
	assert_int_equal(keytable_lookup(kt, "a@example.org", false, out, 1, why, sizeof(why)), -1);
	snprintf(want, sizeof(want), "%s:2: no KeyTable entry named example.org", st_path);
	assert_string_equal(why, want);
	keytable_free(kt);
}

static void percent_in_key_path_reads_that_domains_key_once(void **state)
{
	(void)state;
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp -p %s %s", kpath("keys"),
		kpath("ed.key"), kpath("keys/dyn.example.key"));
	assert_int_equal(system(cmd), 0);
	const char *kt_path = kfile("KeyTable", "dyn %%:ed:@/keys/%%.key\n");
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable", "* dyn\n"));
	struct keytable *kt = load_ok(kt_path, spec);
	struct keytable_signing out[1];
	char why[512], want[256];
	assert_int_equal(keytable_lookup(kt, "a@DYN.example", false, out, 1, why, sizeof(why)), 1);
	assert_string_equal(out[0].domain, "dyn.example");
	assert_int_equal(out[0].key->algorithm, DKIM_SIGN_ED25519SHA256);
	const struct privkey *first = out[0].key;
	assert_int_equal(keytable_lookup(kt, "b@dyn.example", false, out, 1, why, sizeof(why)), 1);
	assert_ptr_equal(out[0].key, first);
	assert_int_equal(keytable_lookup(kt, "a@none.example", false, out, 1, why, sizeof(why)), -1);
	snprintf(want, sizeof(want), "%s:1: %s: No such file or directory", kt_path,
		kpath("keys/none.example.key"));
	assert_string_equal(why, want);
	/* the domain goes into a path: nothing but a domain name may */
	assert_int_equal(keytable_lookup(kt, "a@../../etc/x", false, out, 1, why, sizeof(why)), -1);
	keytable_free(kt);
}

static void opendkim_files_load_unchanged(void **state)
{
	(void)state;
	/* tabs, CRLF line ends, trailing blanks, comments after values, file: */
	const char *kt_path = kfile("KeyTable",
		"# generated by an OpenDKIM admin\r\n"
		"\r\n"
		"rsa._domainkey.example.com\texample.com:rsa:@/rsa.private   # main key\r\n"
		"ed._domainkey.example.com example.com:ed:@/ed.key\t\r\n"
		"   \r\n");
	const char *st_path = kfile("SigningTable",
		"# who signs\n"
		"*@example.com\trsa._domainkey.example.com\n"
		"*@example.com\ted._domainkey.example.com   # second signature\n");
	char ks[PATH_MAX + 8], ss[PATH_MAX + 8];
	snprintf(ks, sizeof(ks), "file:%s", kt_path);
	snprintf(ss, sizeof(ss), "refile:%s", st_path);
	struct keytable *kt = load_ok(ks, ss);
	assert_int_equal(keytable_count(kt), 2);
	assert_string_equal(all_selectors(kt, "a@example.com", 4), "rsa,ed");
	keytable_free(kt);
}

static void require_safe_keys_refuses_a_group_readable_key(void **state)
{
	(void)state;
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "cp %s %s && chmod 0644 %s", kpath("rsa.private"),
		kpath("open.key"), kpath("open.key"));
	assert_int_equal(system(cmd), 0);
	const char *kt_path = kfile("KeyTable",
		"ok example.com:rsa:@/rsa.private\n"
		"open example.com:open:@/open.key\n");
	const char *st_path = kfile("SigningTable", "example.com open\n");
	struct diag d = { 0 };
	struct settings s = settings_with(kt_path, st_path);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: mode 0644 is readable by group or others (RequireSafeKeys)",
		kpath("open.key"));
	assert_null(keytable_load(&s, &d));
	assert_int_equal(diag_errors(&d), 1);
	assert_true(unit_has_error(&d, kt_path, 2, msg));
	diag_free(&d);

	s.require_safe_keys = false;
	struct keytable *kt = keytable_load(&s, &d);
	assert_non_null(kt);
	assert_int_equal(diag_errors(&d), 0);
	keytable_free(kt);
}

/* The error keytable_load gives for each inline key of a KeyTable of mode. */
static const char *inline_unsafe(const char *kt_path, int line, const char *name, const char *mode,
	const char *how)
{
	static char msg[2 * PATH_MAX];
	snprintf(msg, sizeof(msg), "%s:%d: key %s: private key inline in %s: mode %s is %s by group or "
		"others (RequireSafeKeys)", kt_path, line, name, kt_path, mode, how);
	return msg;
}

static void inline_keys_obey_require_safe_keys_through_the_keytable_mode(void **state)
{
	(void)state;
	char inline_key[4096];
	FILE *fp = fopen(kpath("rsa.b64"), "r");
	assert_non_null(fp);
	assert_non_null(fgets(inline_key, sizeof(inline_key), fp));
	fclose(fp);
	inline_key[strcspn(inline_key, "\n")] = '\0';
	const char *kt_path = kfile("KeyTable",
		"file example.com:file:@/rsa.private\n"
		"inline example.com:inline:%s\n"
		"again example.com:again:%s\n", inline_key, inline_key);
	const char *st_path = kfile("SigningTable", "example.com inline\n");
	struct settings s = settings_with(kt_path, st_path);
	struct diag d = { 0 };

	/* readable or writable by group or others: each inline line refused */
	const struct { mode_t mode; const char *text, *how; } unsafe[] = {
		{ 0644, "0644", "readable" }, { 0640, "0640", "readable" },
		{ 0604, "0604", "readable" }, { 0620, "0620", "writable" },
	};
	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
		assert_int_equal(chmod(kt_path, unsafe[i].mode), 0);
		assert_null(keytable_load(&s, &d));
		assert_int_equal(diag_errors(&d), 2);
		assert_string_equal(d.lines[0], inline_unsafe(kt_path, 2, "inline", unsafe[i].text,
			unsafe[i].how));
		assert_string_equal(d.lines[1], inline_unsafe(kt_path, 3, "again", unsafe[i].text,
			unsafe[i].how));
		diag_free(&d);
	}

	/* only its owner reads it: loads, and the inline key signs */
	assert_int_equal(chmod(kt_path, 0600), 0);
	struct keytable *kt = load_ok(kt_path, st_path);
	assert_string_equal(first_selector(kt, "a@example.com"), "inline");
	keytable_free(kt);

	/* checked at every load: the same file made unsafe again is refused */
	assert_int_equal(chmod(kt_path, 0644), 0);
	assert_null(keytable_load(&s, &d));
	assert_int_equal(diag_errors(&d), 2);
	diag_free(&d);

	/* RequireSafeKeys no: the mode does not matter */
	s.require_safe_keys = false;
	kt = keytable_load(&s, &d);
	assert_non_null(kt);
	assert_int_equal(diag_errors(&d), 0);
	keytable_free(kt);

	/* a 0644 KeyTable naming key files only is fine (the files are checked) */
	kt_path = kfile("KeyTable", "file example.com:file:@/rsa.private\n");
	assert_int_equal(chmod(kt_path, 0644), 0);
	kt = load_ok(kt_path, kfile("SigningTable", "example.com file\n"));
	keytable_free(kt);
}

static void missing_bad_small_and_foreign_keys_are_errors_at_their_lines(void **state)
{
	(void)state;
	kfile("junk.key", "this is not a key\n");
	chmod(kpath("junk.key"), 0600);
	const char *kt_path = kfile("KeyTable",
		"gone example.com:a:@/missing.key\n"
		"junk example.com:b:@/junk.key\n"
		"small example.com:c:@/small.key\n"
		"ec example.com:d:@/ec.key\n"
		"short example.com:e\n"
		"badsel example.com:x/y:@/rsa.private\n"
		"baddom exa mple.com:s:@/rsa.private\n"
		"inline example.com:f:MIIBadBase64\n");
	chmod(kt_path, 0600);	/* it holds a key inline (RequireSafeKeys) */
	const char *st_path = kfile("SigningTable", "example.com gone\nexample.org nokey\nlonely\n");
	struct diag d = { 0 };
	struct settings s = settings_with(kt_path, st_path);
	char msg[256];
	assert_null(keytable_load(&s, &d));
	snprintf(msg, sizeof(msg), "%s: No such file or directory", kpath("missing.key"));
	assert_true(unit_has_error(&d, kt_path, 1, msg));
	snprintf(msg, sizeof(msg), "%s: cannot parse private key", kpath("junk.key"));
	assert_true(unit_has_error(&d, kt_path, 2, msg));
	snprintf(msg, sizeof(msg), "%s: RSA key of 512 bits: 1024 to 8192 bits are accepted",
		kpath("small.key"));
	assert_true(unit_has_error(&d, kt_path, 3, msg));
	snprintf(msg, sizeof(msg), "%s: unsupported key type EC (RSA or Ed25519 only)",
		kpath("ec.key"));
	assert_true(unit_has_error(&d, kt_path, 4, msg));
	assert_true(unit_has_error(&d, kt_path, 5, "key short: DOMAIN:SELECTOR:KEY expected"));
	assert_true(unit_has_error(&d, kt_path, 6, "key badsel: bad selector \"x/y\""));
	assert_true(unit_has_error(&d, kt_path, 7, "key baddom: bad domain \"exa mple.com\""));
	assert_true(unit_has_error(&d, kt_path, 8, "cannot parse private key"));
	char want[256];
	snprintf(want, sizeof(want), "key name nokey is not in the KeyTable %s", kt_path);
	assert_true(unit_has_error(&d, st_path, 2, want));
	assert_true(unit_has_error(&d, st_path, 3, "lonely: no key name"));
	assert_int_equal(diag_errors(&d), 10);
	diag_free(&d);
}

static void algorithm_comes_from_the_key_file(void **state)
{
	(void)state;
	char inline_key[4096];
	FILE *fp = fopen(kpath("rsa.b64"), "r");
	assert_non_null(fp);
	assert_non_null(fgets(inline_key, sizeof(inline_key), fp));
	fclose(fp);
	const char *kt_path = kfile("KeyTable",
		"rsa example.com:rsa:@/rsa.private\n"
		"ed example.com:ed:@/ed.key\n"
		"pkcs1 example.com:pkcs1:@/rsa1.pem\n"
		"b64 example.com:b64:@/rsa.b64\n"
		"inline example.com:inline:%s\n", inline_key);
	chmod(kt_path, 0600);	/* it holds a key inline (RequireSafeKeys) */
	char spec[PATH_MAX + 8];
	snprintf(spec, sizeof(spec), "refile:%s", kfile("SigningTable",
		"*@example.com rsa\n*@example.com ed\n*@example.com pkcs1\n"
		"*@example.com b64\n*@example.com inline\n"));
	struct keytable *kt = load_ok(kt_path, spec);
	struct keytable_signing out[8];
	char why[256];
	assert_int_equal(keytable_lookup(kt, "a@example.com", true, out, 8, why, sizeof(why)), 5);
	const char *want[] = { "rsa-sha256", "ed25519-sha256", "rsa-sha256", "rsa-sha256", "rsa-sha256" };
	for (int i = 0; i < 5; i++) {
		assert_string_equal(out[i].key->algorithm_name, want[i]);
		assert_int_equal(out[i].key->algorithm,
			i == 1 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256);
	}
	assert_int_equal(out[0].key->bits, 2048);
	/* one RSA key in four encodings: the same canonical text for libopendkim */
	assert_string_equal(out[0].key->text, out[2].key->text);
	assert_string_equal(out[0].key->text, out[3].key->text);
	assert_string_equal(out[0].key->text, out[4].key->text);
	keytable_free(kt);
}

static void entries_naming_one_key_file_share_the_parsed_key(void **state)
{
	(void)state;
	const char *kt_path = kfile("KeyTable",
		"a a.example:s:@/rsa.private\n"
		"b b.example:s:@/rsa.private\n"
		"c c.example:s:@/rsa.private\n"
		"a a.example:dup:@/rsa.private\n");
	const char *st_path = kfile("SigningTable", "a.example a\nb.example b\nc.example c\n");
	struct keytable *kt = load_ok(kt_path, st_path);
	assert_int_equal(keytable_count(kt), 3);
	struct keytable_signing a, b;
	char why[128];
	assert_int_equal(keytable_lookup(kt, "x@a.example", false, &a, 1, why, sizeof(why)), 1);
	assert_int_equal(keytable_lookup(kt, "x@c.example", false, &b, 1, why, sizeof(why)), 1);
	assert_ptr_equal(a.key, b.key);
	/* a name given twice: the first line counts, as in OpenDKIM */
	assert_string_equal(a.selector, "s");
	keytable_free(kt);
}

static void table_settings_must_come_in_pairs_of_known_types(void **state)
{
	(void)state;
	struct diag d = { 0 };
	struct settings s = settings_with(NULL, NULL);
	assert_null(keytable_load(&s, &d));
	assert_int_equal(diag_errors(&d), 0);

	s = settings_with(kpath("KeyTable"), NULL);
	assert_null(keytable_load(&s, &d));
	assert_true(unit_has_error(&d, "test.conf", 0, "KeyTable is set but SigningTable is not"));
	diag_free(&d);

	s = settings_with(NULL, kpath("SigningTable"));
	assert_null(keytable_load(&s, &d));
	assert_true(unit_has_error(&d, "test.conf", 0, "SigningTable is set but KeyTable is not"));
	diag_free(&d);

	s = settings_with(kpath("KeyTable"), "csl:example.com=key");
	assert_null(keytable_load(&s, &d));
	assert_true(unit_has_error(&d, "test.conf", 0,
		"SigningTable csl:example.com=key: only file: and refile: tables are supported"));
	diag_free(&d);

	s = settings_with(kpath("nonexistent"), kpath("SigningTable"));
	assert_null(keytable_load(&s, &d));
	assert_true(unit_has_error(&d, kpath("nonexistent"), 0, "No such file or directory"));
	diag_free(&d);
}

int main(void)
{
	char cmd[2 * PATH_MAX];
	snprintf(keydir, sizeof(keydir), "/tmp/bm-keytable-XXXXXX");
	if (mkdtemp(keydir) == NULL)
		return 1;
	snprintf(cmd, sizeof(cmd), "/bin/sh %s/tests/unit/dkim/signer_mkkeys %s", TEST_SRCDIR, keydir);
	int rc = system(cmd);
	if (rc != 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", keydir);
		(void)system(cmd);
		return WIFEXITED(rc) && WEXITSTATUS(rc) == 77 ? 77 : 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_table_tries_keys_in_opendkim_order),
		cmocka_unit_test(plain_table_without_a_match_signs_nothing),
		cmocka_unit_test(refile_star_at_domain_and_star_at_subdomains),
		cmocka_unit_test(refile_first_matching_line_wins_whatever_its_form),
		cmocka_unit_test(signer_field_becomes_identity_within_the_domain),
		cmocka_unit_test(percent_domain_signs_as_the_from_domain),
		cmocka_unit_test(percent_key_name_is_the_entry_named_like_the_domain),
		cmocka_unit_test(percent_in_key_path_reads_that_domains_key_once),
		cmocka_unit_test(opendkim_files_load_unchanged),
		cmocka_unit_test(require_safe_keys_refuses_a_group_readable_key),
		cmocka_unit_test(inline_keys_obey_require_safe_keys_through_the_keytable_mode),
		cmocka_unit_test(missing_bad_small_and_foreign_keys_are_errors_at_their_lines),
		cmocka_unit_test(algorithm_comes_from_the_key_file),
		cmocka_unit_test(entries_naming_one_key_file_share_the_parsed_key),
		cmocka_unit_test(table_settings_must_come_in_pairs_of_known_types),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", keydir);
	(void)system(cmd);
	return rc;
}
