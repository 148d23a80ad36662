/* interpose.c: definitions in the binary that take the place of some of
 * its shared libraries' own, to spare every cold start work it does not
 * need. Linked into the jobhost executable only (not into jobhost_core),
 * and exported from it (CMakeLists.txt), since the dynamic loader binds a
 * library's call to the executable's definition before its own (and where
 * libpq is linked into the binary, its calls bind here at link time). Each
 * keeps the library's documented contract; none changes a result.
 *
 * 1. GnuTLS's initialisation at load. Debian's libcurl and libpq bring
 *    GnuTLS in through libldap and librtmp (at their first call, see
 *    src/lazy.c; at every start in a build without that), and its
 *    constructor initialises it (its RNG, its priority strings, its
 *    algorithms): about 0.6 ms and 0.6 MB. jobhost's TLS is OpenSSL's.
 *    GnuTLS asks the weak _gnutls_global_init_skip whether to skip that
 *    (its GNUTLS_SKIP_GLOBAL_INIT macro defines the same function); a
 *    library that does use GnuTLS, as libldap for an ldaps:// service
 *    lookup, still calls gnutls_global_init itself.
 *
 * 2. libpq's SCRAM-SHA-256 proof. libpq 15 computes the salted password
 *    (4,096 HMAC-SHA-256 rounds) by calling HMAC_Init_ex with the
 *    password as the key at every round, and OpenSSL 3 then redoes the
 *    key schedule and fetches SHA-256 from its provider twice a round;
 *    even restarted under the key it holds, each round copies digest
 *    contexts through the provider (1.0 ms for the proof here). So
 *    HMAC_Init_ex here remembers the context it last keyed (one for the
 *    process, under a lock, so that a context freed on another thread is
 *    forgotten too), with what digest and key. Keyed again with the same
 *    digest and key, the context is not touched: for HMAC-SHA-256 the MAC
 *    is made here, RFC 2104 over libcrypto's SHA-256 from the two padded
 *    key states computed once (HMAC_Update keeps the message, HMAC_Final
 *    hashes it: 0.45 ms for the proof); for another digest the context is
 *    restarted with OpenSSL's documented HMAC_Init_ex(ctx, NULL, 0, NULL,
 *    NULL). A message longer than the buffer, a copy from the context, or
 *    another context keyed meanwhile first brings the context up to date
 *    (restarted, and given the message so far), so that OpenSSL's own
 *    functions carry on from the same state. Another key, a reset, a copy
 *    onto the context or its free forget what was remembered, and the key
 *    and message are wiped. (PostgreSQL 18's libpq keys the context once
 *    itself.)
 *
 * 3. Random bytes for libpq's SCRAM nonce. libpq asks RAND_status and
 *    then RAND_bytes for 18 bytes, and the first call sets up OpenSSL's
 *    random generator (its seed source and two AES-CTR DRBGs, 0.5 ms of a
 *    cold start) only to draw from the kernel's. RAND_bytes here reads
 *    the kernel's generator with getrandom(2), which blocks only until
 *    the kernel's pool is first seeded, and RAND_status says it is
 *    seeded. OpenSSL's own TLS draws from its generator through its
 *    internal calls, as before; once getrandom fails (missing, or refused
 *    by a seccomp filter), both are OpenSSL's. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* HMAC_Init_ex and friends, and the SHA256_ functions, are deprecated in
 * OpenSSL 3 for new code, but HMAC_ is what libpq calls, and so what has
 * to be defined here; SHA256_ is libcrypto's SHA-256 without a provider
 * fetch. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

int _gnutls_global_init_skip(void);
int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md,
                 ENGINE *impl);
int HMAC_Update(HMAC_CTX *ctx, const unsigned char *data, size_t len);
int HMAC_Final(HMAC_CTX *ctx, unsigned char *out, unsigned int *len);
int HMAC_CTX_reset(HMAC_CTX *ctx);
void HMAC_CTX_free(HMAC_CTX *ctx);
int HMAC_CTX_copy(HMAC_CTX *dctx, HMAC_CTX *sctx);
int RAND_bytes(unsigned char *buf, int num);
int RAND_status(void);

int _gnutls_global_init_skip(void)
{
  return 1;
}

/* ---- HMAC --------------------------------------------------------------- */

/* A key longer than this (a SHA-512 block) is never remembered: the
 * context is keyed as asked every time. */
#define KEY_MAX 128
/* The longest message a MAC made here keeps; libpq's are at most 36
 * bytes under the password. */
#define MSG_MAX 256

typedef struct {
  const HMAC_CTX *ctx; /* NULL: nothing remembered */
  const EVP_MD *md;
  int len;
  unsigned char key[KEY_MAX];
  int sha256;               /* md is SHA-256: the pad states below are set */
  SHA256_CTX inner, outer;  /* after the key ^ ipad and key ^ opad blocks */
  int pending;              /* a MAC made here is under way on ctx */
  size_t used;              /* its message so far */
  unsigned char msg[MSG_MAX];
} keyed;

static keyed last;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int (*init_fn)(HMAC_CTX *, const void *, int, const EVP_MD *,
                       ENGINE *);
typedef int (*update_fn)(HMAC_CTX *, const unsigned char *, size_t);
typedef int (*final_fn)(HMAC_CTX *, unsigned char *, unsigned int *);
typedef int (*reset_fn)(HMAC_CTX *);
typedef void (*free_fn)(HMAC_CTX *);
typedef int (*copy_fn)(HMAC_CTX *, HMAC_CTX *);
typedef int (*rand_bytes_fn)(unsigned char *, int);
typedef int (*rand_status_fn)(void);

/* OpenSSL's own definition of name: the next one after this binary's. */
static void *real(const char *name)
{
  return dlsym(RTLD_NEXT, name);
}

static init_fn real_init(void)
{
  static init_fn fn;

  if (!fn)
    fn = (init_fn)real("HMAC_Init_ex");
  return fn;
}

static update_fn real_update(void)
{
  static update_fn fn;

  if (!fn)
    fn = (update_fn)real("HMAC_Update");
  return fn;
}

/* Brings the remembered context up to date with the MAC under way here:
 * restarted under its key and given the message so far, so that
 * OpenSSL's functions carry on from there. A failure (out of memory in
 * OpenSSL) shows in the caller's next call on the context, which finds
 * it unusable. The lock is held. */
static void catch_up_locked(void)
{
  init_fn init = real_init();
  update_fn update = real_update();

  if (!last.pending)
    return;
  last.pending = 0;
  if (init && update && init((HMAC_CTX *)last.ctx, NULL, 0, NULL, NULL))
    update((HMAC_CTX *)last.ctx, last.msg, last.used);
  OPENSSL_cleanse(last.msg, last.used);
  last.used = 0;
}

/* Forgets the remembered context when it is ctx (any when NULL); a MAC
 * under way on it is dropped. The lock is held. */
static void forget_locked(const HMAC_CTX *ctx)
{
  if (last.ctx && (ctx == NULL || last.ctx == ctx)) {
    OPENSSL_cleanse(&last, sizeof last);
    last.ctx = NULL;
  }
}

/* Drops what is remembered to make room for ctx: a MAC under way on
 * another context is brought up to date first (one on ctx itself is
 * discarded by what ctx is about to do). The lock is held. */
static void evict_locked(const HMAC_CTX *ctx)
{
  if (last.ctx != ctx)
    catch_up_locked();
  forget_locked(NULL);
}

static void forget(const HMAC_CTX *ctx)
{
  pthread_mutex_lock(&last_lock);
  forget_locked(ctx);
  pthread_mutex_unlock(&last_lock);
}

/* The SHA-256 state after one block of key ^ pad. */
static void pad_state(SHA256_CTX *state, const unsigned char *key,
                      size_t len, unsigned char pad)
{
  unsigned char block[SHA256_CBLOCK];
  size_t i;

  for (i = 0; i < sizeof block; i++)
    block[i] = (unsigned char)((i < len ? key[i] : 0) ^ pad);
  SHA256_Init(state);
  SHA256_Update(state, block, sizeof block);
  OPENSSL_cleanse(block, sizeof block);
}

/* Remembers ctx as keyed with key; for SHA-256, with the pad states of
 * RFC 2104 (a key longer than a block is hashed first). The lock is
 * held, and nothing is remembered. */
static void remember_locked(const HMAC_CTX *ctx, const void *key, int len,
                            const EVP_MD *md)
{
  last.ctx = ctx;
  last.md = md;
  last.len = len;
  memcpy(last.key, key, (size_t)len);
  last.sha256 = md == EVP_sha256();
  if (last.sha256) {
    unsigned char hashed[SHA256_DIGEST_LENGTH];
    const unsigned char *k = last.key;
    size_t klen = (size_t)len;

    if (klen > SHA256_CBLOCK) {
      SHA256(last.key, klen, hashed);
      k = hashed;
      klen = sizeof hashed;
    }
    pad_state(&last.inner, k, klen, 0x36);
    pad_state(&last.outer, k, klen, 0x5c);
    OPENSSL_cleanse(hashed, sizeof hashed);
  }
}

int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md,
                 ENGINE *impl)
{
  init_fn init = real_init();
  int ok, same;

  if (!init)
    return 0;

  pthread_mutex_lock(&last_lock);
  if (!key) {
    /* A restart under the key ctx holds: a MAC under way here is
     * dropped, as OpenSSL drops its own. */
    if (ctx && ctx == last.ctx && last.pending) {
      last.pending = 0;
      OPENSSL_cleanse(last.msg, last.used);
      last.used = 0;
    }
    pthread_mutex_unlock(&last_lock);
    return init(ctx, key, len, md, impl);
  }
  same = ctx && ctx == last.ctx && md == last.md && impl == NULL &&
         len == last.len &&
         CRYPTO_memcmp(key, last.key, (size_t)len) == 0;
  if (same && last.sha256) {
    OPENSSL_cleanse(last.msg, last.used);
    last.used = 0;
    last.pending = 1;
    pthread_mutex_unlock(&last_lock);
    return 1;
  }
  if (!same)
    evict_locked(ctx);
  pthread_mutex_unlock(&last_lock);
  if (same && init(ctx, NULL, 0, NULL, NULL))
    return 1;

  ok = init(ctx, key, len, md, impl);
  if (ok && ctx && md && impl == NULL && len >= 0 && len <= KEY_MAX) {
    pthread_mutex_lock(&last_lock);
    evict_locked(ctx);
    remember_locked(ctx, key, len, md);
    pthread_mutex_unlock(&last_lock);
  }
  return ok;
}

int HMAC_Update(HMAC_CTX *ctx, const unsigned char *data, size_t len)
{
  update_fn update = real_update();

  pthread_mutex_lock(&last_lock);
  if (ctx && ctx == last.ctx && last.pending) {
    if (len <= MSG_MAX - last.used) {
      if (len)
        memcpy(last.msg + last.used, data, len);
      last.used += len;
      pthread_mutex_unlock(&last_lock);
      return 1;
    }
    catch_up_locked();
  }
  pthread_mutex_unlock(&last_lock);
  return update ? update(ctx, data, len) : 0;
}

int HMAC_Final(HMAC_CTX *ctx, unsigned char *out, unsigned int *len)
{
  static final_fn final;

  pthread_mutex_lock(&last_lock);
  if (ctx && ctx == last.ctx && last.pending) {
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_CTX work = last.inner;

    SHA256_Update(&work, last.msg, last.used);
    SHA256_Final(inner, &work);
    work = last.outer;
    SHA256_Update(&work, inner, sizeof inner);
    SHA256_Final(out, &work);
    OPENSSL_cleanse(inner, sizeof inner);
    OPENSSL_cleanse(&work, sizeof work);
    OPENSSL_cleanse(last.msg, last.used);
    last.used = 0;
    last.pending = 0;
    pthread_mutex_unlock(&last_lock);
    if (len)
      *len = SHA256_DIGEST_LENGTH;
    return 1;
  }
  pthread_mutex_unlock(&last_lock);
  if (!final)
    final = (final_fn)real("HMAC_Final");
  return final ? final(ctx, out, len) : 0;
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

  pthread_mutex_lock(&last_lock);
  if (sctx && sctx == last.ctx)
    catch_up_locked();
  forget_locked(dctx);
  pthread_mutex_unlock(&last_lock);
  if (!copy)
    copy = (copy_fn)real("HMAC_CTX_copy");
  return copy ? copy(dctx, sctx) : 0;
}

/* ---- random bytes ------------------------------------------------------- */

/* 1 once getrandom has failed (missing, or refused by a seccomp filter):
 * from then on OpenSSL's generator serves, with its own seed sources. */
static int no_getrandom;

int RAND_bytes(unsigned char *buf, int num)
{
  static rand_bytes_fn fallback;
  size_t done = 0;

  if (num < 0)
    return 0;
  while (!no_getrandom && done < (size_t)num) {
    ssize_t n = getrandom(buf + done, (size_t)num - done, 0);

    if (n >= 0)
      done += (size_t)n;
    else if (errno != EINTR)
      no_getrandom = 1;
  }
  if (done == (size_t)num)
    return 1;
  if (!fallback)
    fallback = (rand_bytes_fn)real("RAND_bytes");
  return fallback ? fallback(buf + done, num - (int)done) : 0;
}

int RAND_status(void)
{
  static rand_status_fn fallback;

  if (!no_getrandom)
    return 1;
  if (!fallback)
    fallback = (rand_status_fn)real("RAND_status");
  return fallback ? fallback() : 0;
}
