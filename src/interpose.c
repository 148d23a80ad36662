/* interpose.c: definitions in the binary that take the place of two of
 * its shared libraries' own, to spare every cold start work it does not
 * need. Linked into the jobhost executable only (not into jobhost_core),
 * and exported from it (CMakeLists.txt), since the dynamic loader binds a
 * library's call to the executable's definition before its own.
 *
 * 1. GnuTLS's initialisation at load. Debian's libcurl and libpq bring
 *    GnuTLS in through libldap and librtmp, and its constructor
 *    initialises it (its RNG, its priority strings, its algorithms) in
 *    every process: about 0.6 ms and 0.6 MB. jobhost's TLS is OpenSSL's.
 *    GnuTLS asks the weak _gnutls_global_init_skip whether to skip that
 *    (its GNUTLS_SKIP_GLOBAL_INIT macro defines the same function); a
 *    library that does use GnuTLS, as libldap for an ldaps:// service
 *    lookup, still calls gnutls_global_init itself.
 *
 * 2. libpq's SCRAM-SHA-256 proof. libpq 15 computes the salted password
 *    (4,096 HMAC-SHA-256 rounds) by calling HMAC_Init_ex with the
 *    password as the key at every round. OpenSSL 3 then redoes the key
 *    schedule and fetches SHA-256 from its provider twice a round: some
 *    40 million instructions, about half of a trivial job's cold start.
 *    OpenSSL's documented way to restart a context under the key it
 *    already holds is HMAC_Init_ex(ctx, NULL, 0, NULL, NULL), and its
 *    result is the same as with the key given again. So HMAC_Init_ex
 *    here remembers the context it last keyed (one for the process, under
 *    a lock, so that a context freed on another thread is forgotten too),
 *    with what digest and key, and when that same context is keyed again
 *    with the same digest and key, restarts it instead. The remembered
 *    key is wiped as soon as another key, a reset, a copy onto the
 *    context or its free makes it useless. (PostgreSQL 18's libpq keys
 *    the context once itself.) */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>

/* HMAC_Init_ex and friends are deprecated in OpenSSL 3 for new code, but
 * they are what libpq calls, and so what has to be defined here. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

int _gnutls_global_init_skip(void);
int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md,
                 ENGINE *impl);
int HMAC_CTX_reset(HMAC_CTX *ctx);
void HMAC_CTX_free(HMAC_CTX *ctx);
int HMAC_CTX_copy(HMAC_CTX *dctx, HMAC_CTX *sctx);

int _gnutls_global_init_skip(void)
{
  return 1;
}

/* A key longer than this (a SHA-512 block) is never remembered: the
 * context is keyed as asked every time. */
#define KEY_MAX 128

typedef struct {
  const HMAC_CTX *ctx; /* NULL: nothing remembered */
  const EVP_MD *md;
  int len;
  unsigned char key[KEY_MAX];
} keyed;

static keyed last;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int (*init_fn)(HMAC_CTX *, const void *, int, const EVP_MD *,
                       ENGINE *);
typedef int (*reset_fn)(HMAC_CTX *);
typedef void (*free_fn)(HMAC_CTX *);
typedef int (*copy_fn)(HMAC_CTX *, HMAC_CTX *);

/* OpenSSL's own definition of name: the next one after this binary's. */
static void *real(const char *name)
{
  return dlsym(RTLD_NEXT, name);
}

/* Forgets the remembered context when it is ctx (any when NULL); the
 * lock is held. */
static void forget_locked(const HMAC_CTX *ctx)
{
  if (last.ctx && (ctx == NULL || last.ctx == ctx)) {
    OPENSSL_cleanse(last.key, sizeof last.key);
    last.ctx = NULL;
    last.md = NULL;
    last.len = 0;
  }
}

static void forget(const HMAC_CTX *ctx)
{
  pthread_mutex_lock(&last_lock);
  forget_locked(ctx);
  pthread_mutex_unlock(&last_lock);
}

int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md,
                 ENGINE *impl)
{
  static init_fn init;
  int ok, same;

  if (!init)
    init = (init_fn)real("HMAC_Init_ex");
  if (!init)
    return 0;
  if (!key)
    return init(ctx, key, len, md, impl);

  pthread_mutex_lock(&last_lock);
  same = ctx && ctx == last.ctx && md == last.md && impl == NULL &&
         len == last.len &&
         CRYPTO_memcmp(key, last.key, (size_t)len) == 0;
  if (!same)
    forget_locked(NULL);
  pthread_mutex_unlock(&last_lock);
  if (same && init(ctx, NULL, 0, NULL, NULL))
    return 1;

  ok = init(ctx, key, len, md, impl);
  if (ok && ctx && md && impl == NULL && len >= 0 && len <= KEY_MAX) {
    pthread_mutex_lock(&last_lock);
    last.ctx = ctx;
    last.md = md;
    last.len = len;
    memcpy(last.key, key, (size_t)len);
    pthread_mutex_unlock(&last_lock);
  }
  return ok;
}

int HMAC_CTX_reset(HMAC_CTX *ctx)
{
  static reset_fn reset;

  forget(ctx);
  if (!reset)
    reset = (reset_fn)real("HMAC_CTX_reset");
  return reset ? reset(ctx) : 0;
}

void HMAC_CTX_free(HMAC_CTX *ctx)
{
  static free_fn release;

  forget(ctx);
  if (!release)
    release = (free_fn)real("HMAC_CTX_free");
  if (release)
    release(ctx);
}

int HMAC_CTX_copy(HMAC_CTX *dctx, HMAC_CTX *sctx)
{
  static copy_fn copy;

  forget(dctx);
  if (!copy)
    copy = (copy_fn)real("HMAC_CTX_copy");
  return copy ? copy(dctx, sctx) : 0;
}
