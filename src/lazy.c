/* lazy.c: the libraries that libpq and libcurl link against but a run
 * seldom calls, loaded at their first call instead of at every start.
 *
 * Debian's libpq and libcurl bring some thirty shared libraries into
 * every process: LDAP and SASL (for ldap:// service lookups and URLs),
 * Kerberos (GSSAPI authentication), GnuTLS with its own crypto stack
 * (through libldap and librtmp), SSH, RTMP, HTTP/2, IDN, PSL, zstd and
 * brotli. A job that fetches its secret over HTTPS and logs in with
 * SCRAM calls none of them, yet the loader maps and relocates them all
 * at each cold start and the kernel takes them down at exit: most of
 * the time from exec to main, several milliseconds of a run that lasts
 * a few dozen.
 *
 * So the binary links libpq and libcurl from their static archives, and
 * what those leave undefined in the libraries above is bound here
 * instead: cmake/lazy_stubs.sh writes a stub for each such function
 * that jumps through a slot, first to lazy_enter (lazy_x86_64.S), which
 * calls lazy_resolve below: the library is loaded with dlopen, the
 * function found with dlsym and put in the slot, and the call goes on
 * with its arguments untouched. Later calls jump straight to it. The
 * libraries are the same files as before, found the same way (the
 * binary's RPATH, then the system's paths), so a Kerberos login or an
 * ldap:// service lookup works as it did, one dlopen later.
 *
 * libssl, libcrypto and zlib stay linked as usual: every run uses them.
 * Three symbols are defined here instead (cmake/lazy_stubs.sh writes no
 * stub for them). libpq reads one data symbol before any call into its
 * library, the GSSAPI name type it passes to gss_import_name: it has the
 * value RFC 2744 gives it, and GSSAPI compares name types by value. And
 * curl_global_init calls libssh2_init, which would load libssh2 at every
 * secret fetch (0.3 ms) for SCP and SFTP, which jobhost never speaks: its
 * libcurl handles take HTTP and HTTPS only (src/http.c). libssh2 sets
 * itself up at its first session anyway, so libssh2_init and
 * libssh2_exit here do nothing. Any other data symbol of a lazy library
 * fails the build. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "lazy.h"
#include "log.h"

/* The stubs' slots (lazy_stubs.S) and the libraries' handles
 * (lazy_stubs.c), both generated. */
extern void *lazy_slots[];
extern void *lazy_handles[];

/* RFC 2744's GSS_C_NT_HOSTBASED_SERVICE, {iso(1) member-body(2) us(840)
 * mit(113554) infosys(1) gssapi(2) generic(1) service_name(4)}, laid out
 * as its gss_OID_desc (an OM_uint32 length, then the bytes), so that the
 * build needs no Kerberos headers. */
struct lazy_oid {
  uint32_t length;
  void *elements;
};
static struct lazy_oid hostbased_service = {
    10, (void *)"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04"};
extern struct lazy_oid *GSS_C_NT_HOSTBASED_SERVICE;
struct lazy_oid *GSS_C_NT_HOSTBASED_SERVICE = &hostbased_service;

int libssh2_init(int flags);
void libssh2_exit(void);

int libssh2_init(int flags)
{
  (void)flags;
  return 0;
}

void libssh2_exit(void)
{
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static lazy_failure_fn on_failure;
static void *on_failure_arg;
static int failing;

void lazy_on_failure(lazy_failure_fn fn, void *arg)
{
  on_failure = fn;
  on_failure_arg = arg;
}

/* A descriptor kept in reserve for loading a library: a job that has
 * used up its descriptors (RLIMIT_NOFILE) would otherwise end the
 * process at a first call, where the libraries' own error paths (a
 * Kerberos or LDAP call that cannot open its files) let it go on. The
 * loader opens one file at a time and closes it once mapped, so one is
 * enough. Above the standard descriptors, which main.c may still have
 * to fill. -1 when none could be had. */
static int reserve = -1;

/* Takes a descriptor for the reserve, or gives it back to the process. */
static void reserve_take(void)
{
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  if (fd >= 0 && fd <= 2) {
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);

    close(fd);
    fd = high;
  }
  reserve = fd;
}

static void reserve_give(void)
{
  if (reserve >= 0)
    close(reserve);
  reserve = -1;
}

__attribute__((constructor)) static void reserve_at_start(void)
{
  reserve_take();
}

/* The handle of library number i, loaded if need be; NULL with the
 * loader's message in *why. Called under the lock. */
static void *library(unsigned i, const char **why)
{
  if (!lazy_handles[i]) {
    reserve_give();
    lazy_handles[i] = dlopen(lazy_libraries[i], RTLD_NOW | RTLD_LOCAL);
    if (!lazy_handles[i])
      *why = dlerror();
    reserve_take();
  }
  return lazy_handles[i];
}

void *lazy_resolve(unsigned index)
{
  const struct lazy_symbol *sym = &lazy_symbols[index];
  const char *why = "unknown";
  void *handle, *fn = NULL;

  pthread_mutex_lock(&lock);
  handle = library(sym->library, &why);
  if (handle) {
    dlerror();
    fn = dlsym(handle, sym->name);
    if (!fn)
      why = dlerror();
  }
  if (fn)
    __atomic_store_n(&lazy_slots[index], fn, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&lock);
  if (fn)
    return fn;

  if (!why)
    why = "not found";
  log_field fields[] = {LOG_S("library", lazy_libraries[sym->library]),
                        LOG_S("function", sym->name), LOG_S("error", why)};
  log_emit_last(LOG_FATAL, "shared library not loaded", fields, 3);
  if (on_failure && !__atomic_exchange_n(&failing, 1, __ATOMIC_ACQ_REL)) {
    char msg[1024];

    snprintf(msg, sizeof msg,
             "shared library %s (for %s) could not be loaded: %s",
             lazy_libraries[sym->library], sym->name, why);
    on_failure(msg, on_failure_arg);
  }
  _exit(127);
}

int lazy_check(char *err, size_t n)
{
  const char *why = NULL;
  unsigned i;
  int rc = 0;

  pthread_mutex_lock(&lock);
  for (i = 0; i < lazy_symbol_count && rc == 0; i++) {
    const struct lazy_symbol *sym = &lazy_symbols[i];
    void *handle = library(sym->library, &why);

    if (!handle) {
      snprintf(err, n, "%s: %s", lazy_libraries[sym->library], why);
      rc = -1;
    } else if (!dlsym(handle, sym->name)) {
      snprintf(err, n, "%s: no function %s", lazy_libraries[sym->library],
               sym->name);
      rc = -1;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}
