/* lazy.c (test): the libraries that libpq and libcurl load at first call
 * (src/lazy.c). None is loaded at start; a call through a stub loads its
 * library alone, reaches the real function with every argument in place
 * (in registers and on the stack) and gives its result; the stub then
 * jumps to the function directly; and every stubbed function is found in
 * its library. Skipped (77) in a build without lazy loading. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if JOBHOST_LAZY

#include "lazy.h"

/* The functions called here, declared as their libraries' headers do
 * (the build has none of those headers). */
typedef struct {
  size_t length;
  void *value;
} gss_buffer_desc;
const char *idn2_check_version(const char *req_version);
const char *ldap_err2string(int err);
uint32_t gss_display_status(uint32_t *minor, uint32_t status, int type,
                            void *mech, uint32_t *message_context,
                            gss_buffer_desc *out);
uint32_t gss_release_buffer(uint32_t *minor, gss_buffer_desc *buffer);
uint32_t gss_init_sec_context(uint32_t *minor, void *cred, void **context,
                              void *target, void *mech, uint32_t flags,
                              uint32_t time_req, void *bindings,
                              gss_buffer_desc *input, void **actual_mech,
                              gss_buffer_desc *output, uint32_t *ret_flags,
                              uint32_t *time_rec);
extern void *lazy_slots[];

static int checks, failures;

static void check(int ok, const char *what)
{
  checks++;
  if (!ok)
    failures++;
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

static int loaded(const char *soname)
{
  void *h = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);

  if (h)
    dlclose(h);
  return h != NULL;
}

/* The real function, from its library as loaded now. */
static void *real(const char *soname, const char *name)
{
  void *h = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
  void *fn = h ? dlsym(h, name) : NULL;

  if (h)
    dlclose(h);
  return fn;
}

static int slot_of(const char *name)
{
  unsigned i;

  for (i = 0; i < lazy_symbol_count; i++)
    if (strcmp(lazy_symbols[i].name, name) == 0)
      return (int)i;
  return -1;
}

static int listed(const char *soname)
{
  unsigned i;

  for (i = 0; i < lazy_library_count; i++)
    if (strcmp(lazy_libraries[i], soname) == 0)
      return 1;
  return 0;
}

int main(void)
{
  const char *gss = "libgssapi_krb5.so.2", *ldap = "libldap-2.5.so.0";
  const char *idn = "libidn2.so.0";
  char err[512];
  unsigned i, none = 1;

  check(listed(gss) && listed(ldap) && listed(idn),
        "Kerberos, LDAP and IDN are loaded lazily");
  check(!listed("libssl.so.3") && !listed("libcrypto.so.3"),
        "OpenSSL is linked as usual");
  for (i = 0; i < lazy_library_count; i++)
    if (loaded(lazy_libraries[i])) {
      printf("     %s is loaded at start\n", lazy_libraries[i]);
      none = 0;
    }
  check(none, "no lazy library is loaded at start");

  /* One argument and a pointer result; the stub then jumps straight to
   * the function. */
  const char *v = idn2_check_version(NULL);
  const char *(*idn_real)(const char *) =
      (const char *(*)(const char *))real(idn, "idn2_check_version");
  check(loaded(idn) && idn_real && v && v == idn_real(NULL),
        "idn2_check_version through its stub is the library's");
  check(slot_of("idn2_check_version") >= 0 &&
            lazy_slots[slot_of("idn2_check_version")] == (void *)idn_real,
        "the stub's slot now holds the function");
  check(!loaded(gss) && !loaded(ldap), "other libraries are still not loaded");

  const char *(*ldap_real)(int) = NULL;
  const char *s = ldap_err2string(0);
  ldap_real = (const char *(*)(int))real(ldap, "ldap_err2string");
  check(ldap_real && s && strcmp(s, ldap_real(0)) == 0,
        "ldap_err2string through its stub");

  /* Six arguments, all in registers. */
  uint32_t minor = 0, mctx = 0, major;
  gss_buffer_desc text = {0, NULL};
  major = gss_display_status(&minor, 2u << 16, 1, NULL, &mctx, &text);
  check(major == 0 && text.length > 0 && text.value &&
            memmem(text.value, text.length, "name", 4) != NULL,
        "gss_display_status describes GSS_S_BAD_NAME");
  printf("     %.*s\n", (int)text.length, (const char *)text.value);
  gss_release_buffer(&minor, &text);
  check(text.value == NULL, "gss_release_buffer through its stub");

  /* Thirteen arguments, seven on the stack: the ones past the sixth are
   * output pointers that the library clears before it refuses the
   * missing target name. */
  void *context = NULL, *mech = (void *)&minor;
  gss_buffer_desc out = {99, (void *)&minor};
  uint32_t flags = 7, rec = 7;
  major = gss_init_sec_context(&minor, NULL, &context, NULL, NULL, 0, 0, NULL,
                               NULL, &mech, &out, &flags, &rec);
  check((major & 0xffff0000u) == ((1u << 24) | (2u << 16)),
        "gss_init_sec_context refuses no target name");
  check(mech == NULL && out.length == 0 && out.value == NULL,
        "its arguments on the stack reach it");

  check(lazy_check(err, sizeof err) == 0, "every stubbed function resolves");
  if (failures == 0)
    printf("     %u functions in %u libraries\n", lazy_symbol_count,
           lazy_library_count);
  else
    printf("     %s\n", err);

  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}

#else

int main(void)
{
  printf("SKIP built without lazy loading (JOBHOST_LAZY_LIBS=OFF)\n");
  return 77;
}

#endif
