/* interpose.c (test): the binary's HMAC_Init_ex (src/interpose.c, linked
 * and exported here as in the binary) gives the MACs OpenSSL's would, for
 * libpq's way of calling it and for the ways that must not take its
 * shortcut: another key, another context, a reset, a copy onto the
 * context, a free and a new context at the same address. Every MAC is
 * checked against HMAC-SHA-256 built here from plain SHA-256 (RFC 2104),
 * which never goes through HMAC_Init_ex, and the libpq-style PBKDF2 also
 * against the published PBKDF2-HMAC-SHA-256 vector. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static int checks, failures;

static void expect(const char *what, const unsigned char *got,
                   const unsigned char *want, size_t n)
{
  checks++;
  if (memcmp(got, want, n) != 0) {
    size_t i;

    printf("FAIL %s: got ", what);
    for (i = 0; i < n; i++)
      printf("%02x", got[i]);
    printf(", want ");
    for (i = 0; i < n; i++)
      printf("%02x", want[i]);
    printf("\n");
    failures++;
  } else {
    printf("ok   %s\n", what);
  }
}

static void expect_true(const char *what, int ok)
{
  checks++;
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok)
    failures++;
}

/* HMAC-SHA-256 from SHA-256 alone: H((K ^ opad) || H((K ^ ipad) || m)),
 * for keys of at most one block. */
static void reference(const void *key, size_t klen, const void *msg,
                      size_t mlen, unsigned char out[32])
{
  unsigned char pad[64], inner[32];
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t i;

  for (i = 0; i < 64; i++)
    pad[i] = (unsigned char)((i < klen ? ((const unsigned char *)key)[i]
                                       : 0) ^ 0x36);
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestUpdate(md, pad, 64);
  EVP_DigestUpdate(md, msg, mlen);
  EVP_DigestFinal_ex(md, inner, NULL);
  for (i = 0; i < 64; i++)
    pad[i] = (unsigned char)((i < klen ? ((const unsigned char *)key)[i]
                                       : 0) ^ 0x5c);
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestUpdate(md, pad, 64);
  EVP_DigestUpdate(md, inner, 32);
  EVP_DigestFinal_ex(md, out, NULL);
  EVP_MD_CTX_free(md);
}

/* One MAC the way libpq's pg_hmac_init/update/final make it: the key
 * given to HMAC_Init_ex every time. */
static int keyed(HMAC_CTX *ctx, const char *key, const void *msg,
                 size_t mlen, unsigned char out[32])
{
  unsigned int n = 0;

  return HMAC_Init_ex(ctx, key, (int)strlen(key), EVP_sha256(), NULL) &&
         HMAC_Update(ctx, msg, mlen) && HMAC_Final(ctx, out, &n) && n == 32;
}

/* The salted password of SCRAM (RFC 5802 Hi(), PBKDF2 with one block) as
 * libpq 15 computes it; with reference set, with reference() instead. */
static void salted(HMAC_CTX *ctx, const char *password, const char *salt,
                   int iterations, int use_reference, unsigned char out[32])
{
  unsigned char u[32], first[64];
  size_t slen = strlen(salt);
  int i, j;

  memcpy(first, salt, slen);
  memcpy(first + slen, "\0\0\0\1", 4);
  if (use_reference)
    reference(password, strlen(password), first, slen + 4, u);
  else
    keyed(ctx, password, first, slen + 4, u);
  memcpy(out, u, 32);
  for (i = 2; i <= iterations; i++) {
    unsigned char next[32];

    if (use_reference)
      reference(password, strlen(password), u, 32, next);
    else
      keyed(ctx, password, u, 32, next);
    memcpy(u, next, 32);
    for (j = 0; j < 32; j++)
      out[j] ^= u[j];
  }
}

int main(void)
{
  /* PBKDF2-HMAC-SHA-256 with P = "password", S = "salt", c = 4096 and 32
   * bytes: the published test vector for those inputs. */
  static const unsigned char vector[32] = {
      0xc5, 0xe4, 0x78, 0xd5, 0x92, 0x88, 0xc8, 0x41, 0xaa, 0x53, 0x0d,
      0xb6, 0x84, 0x5c, 0x4c, 0x8d, 0x96, 0x28, 0x93, 0xa0, 0x01, 0xce,
      0x4e, 0x11, 0xa4, 0x96, 0x38, 0x73, 0xaa, 0x98, 0x13, 0x4a};
  unsigned char got[32], want[32];
  HMAC_CTX *a = HMAC_CTX_new(), *b = HMAC_CTX_new(), *c;
  const char *msg = "what the server sent";
  size_t mlen = strlen(msg);

  salted(a, "password", "salt", 4096, 0, got);
  expect("libpq's salted password, 4096 rounds: the published vector", got,
         vector, 32);
  salted(NULL, "password", "salt", 4096, 1, want);
  expect("the reference HMAC gives the same", want, vector, 32);
  salted(a, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ", 4096, 0, got);
  salted(NULL, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ", 4096, 1, want);
  expect("the same context, another password", got, want, 32);

  /* Keys that alternate on one context, and two contexts sharing one.
   * Each key that must not take the shortcut follows one of its length
   * on the same context. */
  keyed(a, "first", msg, mlen, got);
  reference("first", 5, msg, mlen, want);
  expect("key A", got, want, 32);
  keyed(a, "second", msg, mlen, got);
  reference("second", 6, msg, mlen, want);
  expect("key B on the same context", got, want, 32);
  keyed(a, "first", msg, mlen, got);
  reference("first", 5, msg, mlen, want);
  expect("key A again", got, want, 32);
  keyed(b, "second", msg, mlen, got);
  keyed(a, "first", msg, mlen, got);
  expect("key A after B on another context", got, want, 32);
  keyed(b, "first", msg, mlen, got);
  expect("key A on the other context", got, want, 32);
  keyed(a, "first", msg, mlen, got);
  keyed(a, "firsT", msg, mlen, got);
  reference("firsT", 5, msg, mlen, want);
  expect("a key differing in its last byte", got, want, 32);
  keyed(a, "first", msg, mlen, got);
  keyed(a, "firs", msg, mlen, got);
  reference("firs", 4, msg, mlen, want);
  expect("a key that is the last one's prefix", got, want, 32);

  /* A reset forgets the key: keyed again, the context must work. */
  keyed(a, "first", msg, mlen, got);
  HMAC_CTX_reset(a);
  expect_true("keyed again after a reset",
              keyed(a, "first", msg, mlen, got));
  reference("first", 5, msg, mlen, want);
  expect("after a reset", got, want, 32);

  /* A copy onto the context brings another key's state. */
  keyed(b, "second", msg, mlen, got);
  keyed(a, "first", msg, mlen, got);
  HMAC_CTX_copy(a, b);
  keyed(a, "first", msg, mlen, got);
  reference("first", 5, msg, mlen, want);
  expect("after a copy of another key's context onto it", got, want, 32);

  /* Freed and allocated again, perhaps at the same address. */
  keyed(a, "first", msg, mlen, got);
  HMAC_CTX_free(a);
  c = HMAC_CTX_new();
  expect_true("a new context keyed with the freed one's key",
              keyed(c, "first", msg, mlen, got));
  expect("on a new context", got, want, 32);

  /* Restarting without a key, as OpenSSL documents, still works. */
  {
    unsigned int n = 0;

    expect_true("restart without a key",
                HMAC_Init_ex(c, NULL, 0, NULL, NULL) &&
                    HMAC_Update(c, (const unsigned char *)msg, mlen) &&
                    HMAC_Final(c, got, &n));
    expect("restarted", got, want, 32);
  }

  /* The one-shot HMAC() and PBKDF2 of libcrypto, whose own calls to
   * HMAC_Init_ex come here too. */
  HMAC(EVP_sha256(), "second", 6, (const unsigned char *)msg, mlen, got,
       NULL);
  reference("second", 6, msg, mlen, want);
  expect("one-shot HMAC()", got, want, 32);
  PKCS5_PBKDF2_HMAC("password", 8, (const unsigned char *)"salt", 4, 4096,
                    EVP_sha256(), 32, got);
  expect("PKCS5_PBKDF2_HMAC", got, vector, 32);

  HMAC_CTX_free(b);
  HMAC_CTX_free(c);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
