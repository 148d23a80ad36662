/* secrets_http.c: what the two HTTP providers (Secrets Manager itself and
 * the Lambda extension) share: reading a GetSecretValue answer, turning an
 * error answer into a Secrets.<Type> error, and the retry policy
 * (exponential backoff with full jitter, bounded by attempts and by the
 * run's deadline). */
#include "secrets_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "clock.h"
#include "env.h"
#include "log.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 20000
#define DEFAULT_MAX_ATTEMPTS 5
/* Kept free before a deadline, so the caller can still report. */
#define DEADLINE_MARGIN_MS 250

void secrets_fail(secrets_error *err, const char *reason, const char *fmt,
                  ...)
{
  va_list ap;

  snprintf(err->type, sizeof err->type, "Secrets.%s", reason);
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

/* Decodes base64 text (whitespace ignored) into a new buffer. Returns it,
 * NUL-terminated, with *out_len set; NULL when malformed or out of
 * memory. */
static char *base64_decode(const char *text, size_t len, size_t *out_len)
{
  char *clean = malloc(len + 1), *out = NULL;
  size_t n = 0, i, pad = 0;
  int got;

  if (!clean)
    return NULL;
  for (i = 0; i < len; i++)
    if (text[i] != '\n' && text[i] != '\r' && text[i] != ' ')
      clean[n++] = text[i];
  if (n % 4 != 0 || n > (size_t)1 << 30)
    goto out;
  while (pad < 2 && n > pad && clean[n - 1 - pad] == '=')
    pad++;
  out = malloc(n / 4 * 3 + 1);
  if (!out)
    goto out;
  got = n ? EVP_DecodeBlock((unsigned char *)out,
                            (const unsigned char *)clean, (int)n)
          : 0;
  if (got < 0) {
    free(out);
    out = NULL;
    goto out;
  }
  /* EVP_DecodeBlock counts the padding as zero bytes. */
  *out_len = (size_t)got - pad;
  out[*out_len] = '\0';

out:
  free(clean);
  return out;
}

int secrets_parse_answer(const char *id, const char *body, size_t len,
                         secrets_value *out, secrets_error *err)
{
  sjson_span s, b, v;
  int has_string, has_binary;

  memset(out, 0, sizeof *out);
  has_string = sjson_member(body, len, "SecretString", &s);
  if (has_string < 0) {
    secrets_fail(err, "InvalidResponse",
                 "secret %s: the answer is not a JSON object", id);
    return -1;
  }
  has_binary = sjson_member(body, len, "SecretBinary", &b);
  if (has_string && s.kind == SJSON_STRING) {
    out->data = sjson_string(&s, &out->len);
  } else if (has_binary && b.kind == SJSON_STRING) {
    size_t n;
    char *text = sjson_string(&b, &n);

    if (text) {
      out->data = base64_decode(text, n, &out->len);
      out->binary = 1;
      free(text);
    }
  } else {
    secrets_fail(err, "InvalidResponse",
                 "secret %s: the answer holds no SecretString or "
                 "SecretBinary", id);
    return -1;
  }
  if (!out->data) {
    secrets_fail(err, "InvalidResponse",
                 "secret %s: the answer's value cannot be decoded", id);
    return -1;
  }

  if (sjson_member(body, len, "VersionId", &v) == 1 &&
      v.kind == SJSON_STRING) {
    size_t n;
    char *vid = sjson_string(&v, &n);

    if (vid && n < sizeof out->version_id)
      memcpy(out->version_id, vid, n + 1);
    free(vid);
  }
  return 0;
}

/* Copies the error type from raw into out: "ns#Type:detail" gives
 * "Type". Keeps letters, digits, '.', '_' only. */
static void clean_type(const char *raw, char *out, size_t cap)
{
  const char *hash = strrchr(raw, '#');
  size_t n = 0;

  if (hash)
    raw = hash + 1;
  while (*raw && *raw != ':' && n + 1 < cap) {
    char ch = *raw++;

    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
        (ch >= '0' && ch <= '9') || ch == '.' || ch == '_')
      out[n++] = ch;
  }
  out[n] = '\0';
}

/* A string member of a JSON body, or NULL. */
static char *body_string(const http_response *resp, const char *key)
{
  sjson_span s;
  size_t n;

  if (sjson_member(resp->body, resp->body_len, key, &s) != 1 ||
      s.kind != SJSON_STRING)
    return NULL;
  return sjson_string(&s, &n);
}

static int is_retryable_type(const char *type)
{
  static const char *const types[] = {
      "ThrottlingException",    "Throttling",
      "TooManyRequestsException", "RequestLimitExceeded",
      "RequestThrottled",       "RequestThrottledException",
      "InternalServiceError",   "InternalFailure",
      "ServiceUnavailable",     "RequestTimeout",
      "RequestTimeoutException", "PriorRequestNotComplete"};
  size_t i;

  for (i = 0; i < sizeof types / sizeof *types; i++)
    if (strcmp(type, types[i]) == 0)
      return 1;
  return 0;
}

int secrets_answer_error(const char *id, const http_response *resp,
                         secrets_error *err)
{
  const char *header = http_response_header(resp, "x-amzn-ErrorType");
  char *body_type = body_string(resp, "__type");
  char *message = body_string(resp, "message");
  char type[48] = "";
  int retry;

  if (!message)
    message = body_string(resp, "Message");
  if (header)
    clean_type(header, type, sizeof type);
  if (!*type && body_type)
    clean_type(body_type, type, sizeof type);
  if (!*type)
    snprintf(type, sizeof type, "%s",
             resp->status == 429    ? "ThrottlingException"
             : resp->status >= 500  ? "ServiceError"
             : resp->status == 404  ? "ResourceNotFoundException"
             : resp->status == 401 || resp->status == 403
                 ? "AccessDeniedException"
                                    : "HttpError");

  /* The message comes from the service, which never echoes a value; it
   * is cut to what an error line can carry. */
  secrets_fail(err, type, "secret %s: %.300s (HTTP %ld)", id,
               message ? message : "no message", resp->status);
  retry = resp->status == 429 || resp->status >= 500 ||
          is_retryable_type(type);
  free(body_type);
  free(message);
  return retry;
}

int secrets_retry_wait(const char *id, const secrets_error *err,
                       int attempt, int64_t deadline_ms)
{
  int64_t ceiling = BACKOFF_BASE_MS, wait_ms;
  uint32_t r = 0;
  struct timespec ts;
  int i;

  if (attempt >= env_long("AWS_MAX_ATTEMPTS", 1, 100,
                                  DEFAULT_MAX_ATTEMPTS))
    return -1;
  for (i = 1; i < attempt && ceiling < BACKOFF_CAP_MS; i++)
    ceiling *= 2;
  if (ceiling > BACKOFF_CAP_MS)
    ceiling = BACKOFF_CAP_MS;

  /* Full jitter: anywhere between nothing and the ceiling, so that many
   * processes throttled together do not come back together. */
  if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
    r = (uint32_t)clock_mono_us();
  wait_ms = (int64_t)(r % (uint32_t)(ceiling + 1));

  if (deadline_ms &&
      clock_now_ms() + wait_ms + DEADLINE_MARGIN_MS >= deadline_ms)
    return -1;
  log_emit(LOG_WARN, "secret fetch retried",
           (log_field[]){LOG_S("secret", id), LOG_S("error", err->type),
                         LOG_I("attempt", attempt + 1),
                         LOG_I("delay_ms", wait_ms)},
           4);
  ts.tv_sec = (time_t)(wait_ms / 1000);
  ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return 0;
}

long secrets_attempt_timeout_ms(int64_t deadline_ms, long cap_ms)
{
  int64_t left;

  if (!deadline_ms)
    return cap_ms;
  left = deadline_ms - clock_now_ms() - DEADLINE_MARGIN_MS;
  if (left <= 0)
    return 0;
  return left < cap_ms ? (long)left : cap_ms;
}
