/* sigv4.c: AWS Signature Version 4 signing (see sigv4.h).
 *
 * The canonical request is built in a growable buffer whose out-of-memory
 * state is sticky, so the building code reads as a straight list of
 * appends and checks once at the end. SHA-256 and HMAC come from OpenSSL;
 * derived keys are wiped with OPENSSL_cleanse once used. */
#include "sigv4.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/* A growable byte string; oom sticks once an allocation failed. */
typedef struct {
  char *p;
  size_t len;
  size_t cap;
  int oom;
} sbuf;

static void sbuf_put(sbuf *b, const char *s, size_t n)
{
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;

    while (cap < b->len + n + 1)
      cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sbuf_puts(sbuf *b, const char *s)
{
  sbuf_put(b, s, strlen(s));
}

static void sbuf_putc(sbuf *b, char c)
{
  sbuf_put(b, &c, 1);
}

/* Hands the text over to the caller (NULL after an allocation failure). */
static char *sbuf_take(sbuf *b)
{
  char *p = b->p;

  if (b->oom || !p) {
    free(p);
    p = b->oom ? NULL : calloc(1, 1);
  }
  memset(b, 0, sizeof *b);
  return p;
}

static int is_unreserved(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
         c == '~';
}

/* Appends s[0..n) URI-encoded as SigV4 wants: unreserved characters as
 * they are, every other byte as %XX in upper case; '/' kept when
 * keep_slash. */
static void put_encoded(sbuf *b, const char *s, size_t n, int keep_slash)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t i;

  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];

    if (is_unreserved(c) || (keep_slash && c == '/')) {
      sbuf_putc(b, (char)c);
    } else {
      char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

      sbuf_put(b, esc, 3);
    }
  }
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into a new NUL-terminated string; a '%' not
 * followed by two hex digits stays as it is. NULL when out of memory. */
static char *percent_decode(const char *s, size_t n)
{
  char *out = malloc(n + 1);
  size_t i, j = 0;

  if (!out)
    return NULL;
  for (i = 0; i < n; i++) {
    int hi, lo;

    if (s[i] == '%' && i + 2 < n && (hi = hex_value(s[i + 1])) >= 0 &&
        (lo = hex_value(s[i + 2])) >= 0) {
      out[j++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[j++] = s[i];
    }
  }
  out[j] = '\0';
  return out;
}

/* The canonical URI: the path with empty and "." segments dropped, ".."
 * removing the segment before it, a trailing slash kept when anything is
 * left, then URI-encoded with '/' kept. An empty path is "/". */
static void put_canonical_path(sbuf *b, const char *path)
{
  size_t n = strlen(path);
  size_t *starts, *lens, depth = 0, i = 0;

  if (n == 0) {
    sbuf_putc(b, '/');
    return;
  }

  /* At most n/2 + 1 segments can be kept. */
  starts = malloc((n / 2 + 1) * sizeof *starts);
  lens = malloc((n / 2 + 1) * sizeof *lens);
  if (!starts || !lens) {
    b->oom = 1;
    goto out;
  }

  while (i < n) {
    size_t start, len;

    while (i < n && path[i] == '/')
      i++;
    start = i;
    while (i < n && path[i] != '/')
      i++;
    len = i - start;
    if (len == 0 || (len == 1 && path[start] == '.'))
      continue;
    if (len == 2 && path[start] == '.' && path[start + 1] == '.') {
      if (depth > 0)
        depth--;
      continue;
    }
    starts[depth] = start;
    lens[depth] = len;
    depth++;
  }

  if (path[0] == '/')
    sbuf_putc(b, '/');
  for (i = 0; i < depth; i++) {
    if (i > 0)
      sbuf_putc(b, '/');
    put_encoded(b, path + starts[i], lens[i], 0);
  }
  if (path[n - 1] == '/' && depth > 0)
    sbuf_putc(b, '/');

out:
  free(starts);
  free(lens);
}

/* One query parameter, both parts already in canonical encoding. */
typedef struct {
  char *key;
  char *value;
} query_param;

static int compare_params(const void *a, const void *b)
{
  const query_param *x = a, *y = b;
  int c = strcmp(x->key, y->key);

  return c ? c : strcmp(x->value, y->value);
}

/* Decodes s[0..n) and encodes it again in canonical form, so that raw
 * UTF-8 and already-encoded text give the same result. */
static char *canonical_component(const char *s, size_t n)
{
  char *raw = percent_decode(s, n);
  sbuf b = {0};

  if (!raw)
    return NULL;
  put_encoded(&b, raw, strlen(raw), 0);
  free(raw);
  return sbuf_take(&b);
}

/* The canonical query string: parameters split on '&' (empty pieces
 * dropped) and at their first '=', each part canonically encoded, sorted
 * by key and then by value, joined as k=v with '&'. */
static void put_canonical_query(sbuf *b, const char *query)
{
  query_param *params = NULL;
  size_t count = 1, n = 0, i;
  const char *p;

  if (!query || !*query)
    return;
  for (p = query; *p; p++)
    count += *p == '&';
  params = calloc(count, sizeof *params);
  if (!params) {
    b->oom = 1;
    return;
  }

  for (p = query; *p;) {
    const char *end = strchr(p, '&');
    const char *eq;
    size_t len;

    if (!end)
      end = p + strlen(p);
    len = (size_t)(end - p);
    if (len > 0) {
      eq = memchr(p, '=', len);
      params[n].key = canonical_component(p, eq ? (size_t)(eq - p) : len);
      params[n].value =
          eq ? canonical_component(eq + 1, (size_t)(end - eq - 1))
             : canonical_component("", 0);
      n++;
      if (!params[n - 1].key || !params[n - 1].value) {
        b->oom = 1;
        goto out;
      }
    }
    p = *end ? end + 1 : end;
  }

  qsort(params, n, sizeof *params, compare_params);
  for (i = 0; i < n; i++) {
    if (i > 0)
      sbuf_putc(b, '&');
    sbuf_puts(b, params[i].key);
    sbuf_putc(b, '=');
    sbuf_puts(b, params[i].value);
  }

out:
  for (i = 0; i < n; i++) {
    free(params[i].key);
    free(params[i].value);
  }
  free(params);
}

/* A header in canonical form: lowercase name, normalized value, and its
 * position in the request so that repeated names keep their order. */
typedef struct {
  char *name;
  char *value;
  size_t order;
} canon_header;

static int compare_headers(const void *a, const void *b)
{
  const canon_header *x = a, *y = b;
  int c = strcmp(x->name, y->name);

  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *lowercase_copy(const char *s)
{
  size_t n = strlen(s), i;
  char *out = malloc(n + 1);

  if (!out)
    return NULL;
  for (i = 0; i <= n; i++)
    out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
  return out;
}

/* The value trimmed, with each run of whitespace (folded lines included)
 * made one space. */
static char *normalized_value(const char *s)
{
  size_t n = strlen(s), j = 0, i;
  char *out = malloc(n + 1);
  int pending_space = 0;

  if (!out)
    return NULL;
  for (i = 0; i < n; i++) {
    if (is_space(s[i])) {
      pending_space = j > 0;
      continue;
    }
    if (pending_space)
      out[j++] = ' ';
    pending_space = 0;
    out[j++] = s[i];
  }
  out[j] = '\0';
  return out;
}

static int has_header(const sigv4_request *req, const char *lower_name)
{
  size_t i;

  for (i = 0; i < req->n_headers; i++)
    if (strcasecmp(req->headers[i].name, lower_name) == 0)
      return 1;
  return 0;
}

static const char *header_value(const sigv4_request *req,
                                const char *lower_name)
{
  size_t i;

  for (i = 0; i < req->n_headers; i++)
    if (strcasecmp(req->headers[i].name, lower_name) == 0)
      return req->headers[i].value;
  return NULL;
}

static void to_hex(const unsigned char *bytes, size_t n, char *out)
{
  static const char hex[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < n; i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Hex SHA-256 of data into out (65 bytes). Returns 0 or -1. */
static int sha256_hex(const void *data, size_t n, char out[65])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;

  if (!EVP_Digest(data ? data : "", n, md, &md_len, EVP_sha256(), NULL))
    return -1;
  to_hex(md, md_len, out);
  return 0;
}

/* HMAC-SHA256 of msg under key into out (32 bytes). Returns 0 or -1. */
static int hmac256(const unsigned char *key, size_t key_len, const char *msg,
                   unsigned char out[32])
{
  unsigned int len = 32;

  return HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg,
              strlen(msg), out, &len)
             ? 0
             : -1;
}

void sigv4_format_time(int64_t time_s, char buf[17])
{
  time_t t = (time_t)time_s;
  struct tm tm;

  gmtime_r(&t, &tm);
  strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Whether s is "YYYYMMDDTHHMMSSZ". */
static int is_amz_date(const char *s)
{
  int i;

  for (i = 0; i < 16; i++) {
    char c = s[i];

    if (i == 8 ? c != 'T' : i == 15 ? c != 'Z' : (c < '0' || c > '9'))
      return 0;
  }
  return s[16] == '\0';
}

/* Stores one header in canonical form at h[*n]. Returns 0, or -1 when out
 * of memory (what was allocated stays in h for free_headers). */
static int add_header(canon_header *h, size_t *n, const char *name,
                      const char *value)
{
  canon_header *slot = &h[*n];

  slot->name = lowercase_copy(name);
  slot->value = normalized_value(value);
  slot->order = *n;
  (*n)++;
  return slot->name && slot->value ? 0 : -1;
}

/* Collects the headers to sign, the ones the signer adds included, in
 * canonical form and sorted, into *out (room for n_headers + 2, to be
 * freed with free_headers whatever happens). Returns the count, or -1
 * when out of memory. */
static long collect_headers(const sigv4_request *req, const char *token,
                            const sigv4_signature *sig, canon_header **out)
{
  size_t n = 0, i;
  canon_header *h = calloc(req->n_headers + 2, sizeof *h);

  *out = h;
  if (!h)
    return -1;
  for (i = 0; i < req->n_headers; i++)
    if (add_header(h, &n, req->headers[i].name, req->headers[i].value))
      return -1;
  if (sig->add_date && add_header(h, &n, "x-amz-date", sig->amz_date))
    return -1;
  if (sig->add_token && add_header(h, &n, "x-amz-security-token", token))
    return -1;
  qsort(h, n, sizeof *h, compare_headers);
  return (long)n;
}

static void free_headers(canon_header *h, size_t n)
{
  size_t i;

  if (!h)
    return;
  for (i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
}

/* Appends the canonical headers block and records the signed header list
 * in signed_list. */
static void put_headers(sbuf *b, sbuf *signed_list, const canon_header *h,
                        size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    int repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;

    if (repeat) {
      sbuf_putc(b, ',');
    } else {
      if (i > 0) {
        sbuf_putc(b, '\n');
        sbuf_putc(signed_list, ';');
      }
      sbuf_puts(b, h[i].name);
      sbuf_putc(b, ':');
      sbuf_puts(signed_list, h[i].name);
    }
    sbuf_puts(b, h[i].value);
  }
  if (n > 0)
    sbuf_putc(b, '\n');
}

/* The signing key for date/region/service, as the SigV4 chain of HMACs
 * derives it from the secret access key. */
static int derive_key(const char *secret, const char *date,
                      const char *region, const char *service,
                      unsigned char key[32])
{
  sbuf seed = {0};
  unsigned char k1[32], k2[32];
  int rc = -1;

  sbuf_puts(&seed, "AWS4");
  sbuf_puts(&seed, secret);
  if (seed.oom)
    goto out;
  if (hmac256((const unsigned char *)seed.p, seed.len, date, k1) ||
      hmac256(k1, 32, region, k2) || hmac256(k2, 32, service, k1) ||
      hmac256(k1, 32, "aws4_request", key))
    goto out;
  rc = 0;

out:
  if (seed.p)
    OPENSSL_cleanse(seed.p, seed.len);
  free(seed.p);
  OPENSSL_cleanse(k1, sizeof k1);
  OPENSSL_cleanse(k2, sizeof k2);
  return rc;
}

int sigv4_sign(const sigv4_request *req, const sigv4_credentials *cred,
               sigv4_signature *out)
{
  const char *token = cred->session_token;
  const char *date_header;
  canon_header *headers = NULL;
  long n_headers = 0;
  sbuf creq = {0}, sts = {0}, auth = {0}, signed_list = {0}, scope = {0};
  char payload_hash[65], creq_hash[65], signature[65];
  char date[9];
  unsigned char key[32], mac[32];
  int rc = -1;

  memset(out, 0, sizeof *out);
  if (!req->method || !req->path || !req->region || !req->service ||
      !cred->access_key_id || !cred->secret_access_key)
    return -1;

  /* The time: the request's own x-amz-date header, else time_s. */
  date_header = header_value(req, "x-amz-date");
  if (date_header) {
    if (!is_amz_date(date_header))
      return -1;
    memcpy(out->amz_date, date_header, 17);
  } else {
    sigv4_format_time(req->time_s, out->amz_date);
    out->add_date = 1;
  }
  memcpy(date, out->amz_date, 8);
  date[8] = '\0';
  out->add_token =
      token && *token && !has_header(req, "x-amz-security-token");

  /* Task 1: the canonical request. */
  sbuf_puts(&creq, req->method);
  sbuf_putc(&creq, '\n');
  put_canonical_path(&creq, req->path);
  sbuf_putc(&creq, '\n');
  put_canonical_query(&creq, req->query);
  sbuf_putc(&creq, '\n');
  n_headers = collect_headers(req, token, out, &headers);
  if (n_headers < 0)
    goto out;
  put_headers(&creq, &signed_list, headers, (size_t)n_headers);
  sbuf_putc(&creq, '\n');
  sbuf_puts(&creq, signed_list.p ? signed_list.p : "");
  sbuf_putc(&creq, '\n');
  if (sha256_hex(req->payload, req->payload_len, payload_hash))
    goto out;
  sbuf_puts(&creq, payload_hash);
  if (creq.oom || signed_list.oom)
    goto out;

  /* Task 2: the string to sign. */
  sbuf_puts(&scope, date);
  sbuf_putc(&scope, '/');
  sbuf_puts(&scope, req->region);
  sbuf_putc(&scope, '/');
  sbuf_puts(&scope, req->service);
  sbuf_puts(&scope, "/aws4_request");
  if (sha256_hex(creq.p, creq.len, creq_hash))
    goto out;
  sbuf_puts(&sts, SIGV4_ALGORITHM "\n");
  sbuf_puts(&sts, out->amz_date);
  sbuf_putc(&sts, '\n');
  sbuf_puts(&sts, scope.p ? scope.p : "");
  sbuf_putc(&sts, '\n');
  sbuf_puts(&sts, creq_hash);
  if (sts.oom || scope.oom)
    goto out;

  /* Task 3: the signature, and the header that carries it. */
  if (derive_key(cred->secret_access_key, date, req->region, req->service,
                 key) ||
      hmac256(key, sizeof key, sts.p, mac))
    goto out;
  to_hex(mac, sizeof mac, signature);
  sbuf_puts(&auth, SIGV4_ALGORITHM " Credential=");
  sbuf_puts(&auth, cred->access_key_id);
  sbuf_putc(&auth, '/');
  sbuf_puts(&auth, scope.p);
  sbuf_puts(&auth, ", SignedHeaders=");
  sbuf_puts(&auth, signed_list.p);
  sbuf_puts(&auth, ", Signature=");
  sbuf_puts(&auth, signature);
  if (auth.oom)
    goto out;

  out->canonical_request = sbuf_take(&creq);
  out->string_to_sign = sbuf_take(&sts);
  out->authorization = sbuf_take(&auth);
  rc = 0;

out:
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(mac, sizeof mac);
  free_headers(headers, req->n_headers + 2);
  free(creq.p);
  free(sts.p);
  free(auth.p);
  free(signed_list.p);
  free(scope.p);
  if (rc != 0)
    sigv4_signature_free(out);
  return rc;
}

char *sigv4_uri_encode(const char *s, size_t n, int keep_slash)
{
  sbuf b = {0};

  put_encoded(&b, s, n, keep_slash);
  return sbuf_take(&b);
}

void sigv4_signature_free(sigv4_signature *sig)
{
  free(sig->canonical_request);
  free(sig->string_to_sign);
  free(sig->authorization);
  memset(sig, 0, sizeof *sig);
}
