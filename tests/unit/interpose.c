/* interpose.c (test): the binary's HMAC_Init_ex (src/interpose.c, linked
 * and exported here as in the binary) gives the MACs OpenSSL's would, for
 * libpq's way of calling it and for the ways that must not take its
 * shortcut: another key, another context, a reset, a copy onto the
 * context, a free and a new context at the same address. Every MAC is
 * checked against HMAC-SHA-256 built here from plain SHA-256 (RFC 2104),
 * which never goes through HMAC_Init_ex, and the libpq-style PBKDF2 also
 * against the published PBKDF2-HMAC-SHA-256 vector. The MACs the binary
 * makes itself are checked with keys of every kind, messages in pieces
 * and beyond what it keeps, and contexts copied or keyed while a MAC is
 * under way; its RAND_bytes and RAND_status with the kernel's bytes. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

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
 * where a key longer than a block is first replaced by its hash. */
static void reference(const void *key, size_t klen, const void *msg,
                      size_t mlen, unsigned char out[32])
{
  unsigned char pad[64], inner[32], hashed[32];
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t i;

  if (klen > 64) {
    EVP_Digest(key, klen, hashed, NULL, EVP_sha256(), NULL);
    key = hashed;
    klen = 32;
  }

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

/* The MAC of msg under key on ctx, keyed twice so that the second time
 * takes the shortcut, with the message given in pieces of step bytes. */
static int pieces(HMAC_CTX *ctx, const char *key, const unsigned char *msg,
                  size_t mlen, size_t step, unsigned char out[32])
{
  unsigned int n = 0;
  size_t o;
  int klen = (int)strlen(key);

  if (!HMAC_Init_ex(ctx, key, klen, EVP_sha256(), NULL) ||
      !HMAC_Init_ex(ctx, key, klen, EVP_sha256(), NULL))
    return 0;
  for (o = 0; o < mlen; o += step)
    if (!HMAC_Update(ctx, msg + o, o + step < mlen ? step : mlen - o))
      return 0;
  return HMAC_Final(ctx, out, &n) && n == 32;
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

  /* Keys of one block, and longer ones, which HMAC hashes first. */
  {
    static const char *const keys[] = {
        "0123456789012345678901234567890123456789012345678901234567890123",
        "01234567890123456789012345678901234567890123456789012345678901234",
        "a key of more than one SHA-256 block, which RFC 2104 hashes into "
        "a key of 32 bytes before padding it; and a little more",
        NULL};
    int i;

    for (i = 0; keys[i]; i++) {
      char what[64];

      snprintf(what, sizeof what, "a key of %zu bytes, twice",
               strlen(keys[i]));
      salted(c, keys[i], "salt", 16, 0, got);
      salted(NULL, keys[i], "salt", 16, 1, want);
      expect(what, got, want, 32);
    }
  }

  /* Messages in pieces, and longer than what a MAC made in the binary
   * keeps, which then carries on in OpenSSL's context. */
  {
    unsigned char big[1000];
    size_t i;

    for (i = 0; i < sizeof big; i++)
      big[i] = (unsigned char)(i * 7 + 3);
    reference("pieces", 6, big, 200, want);
    expect_true("200 bytes in pieces of 7",
                pieces(c, "pieces", big, 200, 7, got));
    expect("200 bytes in pieces of 7: the MAC", got, want, 32);
    reference("pieces", 6, big, sizeof big, want);
    pieces(c, "pieces", big, sizeof big, 1000, got);
    expect("1,000 bytes at once", got, want, 32);
    pieces(c, "pieces", big, sizeof big, 100, got);
    expect("1,000 bytes in pieces of 100", got, want, 32);
    pieces(c, "pieces", big, sizeof big, 255, got);
    expect("1,000 bytes in pieces of 255", got, want, 32);
    reference("pieces", 6, big, 0, want);
    pieces(c, "pieces", big, 0, 1, got);
    expect("an empty message", got, want, 32);
  }

  /* A MAC under way when its context is copied, or when another context
   * is keyed: OpenSSL's functions carry on from the same state. */
  {
    static const unsigned char part1[] = "the first half, ";
    static const unsigned char part2[] = "and the second";
    unsigned char whole[64], got2[32];
    unsigned int n = 0;
    HMAC_CTX *d = HMAC_CTX_new();

    memcpy(whole, part1, sizeof part1 - 1);
    memcpy(whole + sizeof part1 - 1, part2, sizeof part2 - 1);
    reference("copied", 6, whole, sizeof part1 + sizeof part2 - 2, want);

    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Update(c, part1, sizeof part1 - 1);
    expect_true("a copy of a context with a MAC under way",
                HMAC_CTX_copy(d, c));
    HMAC_Update(c, part2, sizeof part2 - 1);
    HMAC_Update(d, part2, sizeof part2 - 1);
    HMAC_Final(c, got, &n);
    HMAC_Final(d, got2, &n);
    expect("the original after the copy", got, want, 32);
    expect("the copy", got2, want, 32);

    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Update(c, part1, sizeof part1 - 1);
    HMAC_Init_ex(d, "another", 7, EVP_sha256(), NULL);
    HMAC_Update(c, part2, sizeof part2 - 1);
    HMAC_Final(c, got, &n);
    expect("a MAC under way while another context is keyed", got, want,
           32);

    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Update(c, (const unsigned char *)"dropped", 7);
    HMAC_Init_ex(c, NULL, 0, NULL, NULL);
    HMAC_Update(c, whole, sizeof part1 + sizeof part2 - 2);
    HMAC_Final(c, got, &n);
    expect("a restart without a key drops the message under way", got,
           want, 32);

    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Update(c, part1, sizeof part1 - 1);
    HMAC_CTX_copy(c, d);
    HMAC_Init_ex(c, "copied", 6, EVP_sha256(), NULL);
    HMAC_Update(c, whole, sizeof part1 + sizeof part2 - 2);
    HMAC_Final(c, got, &n);
    expect("a copy onto a context with a MAC under way", got, want, 32);
    HMAC_CTX_free(d);
  }

  /* SHA-1, which the binary does not compute: restarted in OpenSSL. */
  {
    unsigned char sha1[20], sha1_want[20];
    unsigned int n = 0;

    HMAC(EVP_sha1(), "first", 5, (const unsigned char *)msg, mlen,
         sha1_want, NULL);
    HMAC_Init_ex(c, "first", 5, EVP_sha1(), NULL);
    HMAC_Init_ex(c, "first", 5, EVP_sha1(), NULL);
    HMAC_Update(c, (const unsigned char *)msg, mlen);
    expect_true("HMAC-SHA-1 keyed twice", HMAC_Final(c, sha1, &n) &&
                                              n == 20);
    expect("HMAC-SHA-1", sha1, sha1_want, 20);
  }

  /* Random bytes from the kernel. */
  {
    unsigned char r1[1000], r2[32], zero[32] = {0};

    expect_true("RAND_status", RAND_status() == 1);
    memset(r1, 0, sizeof r1);
    expect_true("RAND_bytes of 1,000 bytes", RAND_bytes(r1, 1000) == 1);
    expect_true("the last of them drawn",
                memcmp(r1 + sizeof r1 - 32, zero, 32) != 0);
    expect_true("RAND_bytes of 32", RAND_bytes(r2, 32) == 1);
    expect_true("two draws differ", memcmp(r1, r2, 32) != 0);
    expect_true("RAND_bytes of nothing", RAND_bytes(r2, 0) == 1);
    expect_true("RAND_bytes of a negative count fails",
                RAND_bytes(r2, -1) == 0);
  }

  HMAC_CTX_free(b);
  HMAC_CTX_free(c);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
