/* secrets_internal.h: what the secret providers (secrets_aws.c,
 * secrets_ext.c, secrets_file.c) share with the cache and the Lua binding
 * in secrets.c, and the small JSON reader they all use (secrets_json.c).
 * Not part of the public API. */
#ifndef JOBHOST_SECRETS_INTERNAL_H
#define JOBHOST_SECRETS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "secrets.h"

/* One lookup: which secret, which version stage, until when. */
typedef struct {
  const char *id;
  const char *stage;   /* "AWSCURRENT" or "AWSPENDING" */
  int64_t deadline_ms; /* epoch ms; 0: none */
} secrets_query;

/* The providers. Each fills out (freed by secrets_value_free) and returns
 * 0, or returns -1 with err filled (type "Secrets.<Reason>", a message
 * naming the id and never the value). http is the process's client. */
int secrets_aws_fetch(http_client *http, const secrets_query *q,
                      secrets_value *out, secrets_error *err);
int secrets_ext_fetch(http_client *http, const secrets_query *q,
                      secrets_value *out, secrets_error *err);
int secrets_file_fetch(const secrets_query *q, secrets_value *out,
                       secrets_error *err);

/* Fills err: type is "Secrets." + reason, message is printf-formatted. */
void secrets_fail(secrets_error *err, const char *reason, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));

/* Reads a GetSecretValue answer (the API's and the extension's share one
 * shape): SecretString, or SecretBinary decoded from base64, and
 * VersionId. Returns 0, or -1 with err filled. */
int secrets_parse_answer(const char *id, const char *body, size_t len,
                         secrets_value *out, secrets_error *err);

/* Turns an error answer into err: the type from x-amzn-ErrorType or the
 * body's __type (without namespace or suffix), the message from the body's
 * message or Message, prefixed with the secret id. Returns 1 when the
 * error is worth retrying (throttling, a 5xx), else 0. */
int secrets_answer_error(const char *id, const http_response *resp,
                         secrets_error *err);

/* Waits before trying again after failed attempt number `attempt` (1
 * for the first): exponential backoff with full jitter, logged with err's
 * type. Returns 0 after waiting, or -1 without waiting when no attempt is
 * left (AWS_MAX_ATTEMPTS, default 5) or the wait would pass the
 * deadline. */
int secrets_retry_wait(const char *id, const secrets_error *err,
                       int attempt, int64_t deadline_ms);

/* How long one HTTP exchange may take: the time left before the deadline
 * (less a margin), at most `cap_ms`; 0 when the deadline has passed. */
long secrets_attempt_timeout_ms(int64_t deadline_ms, long cap_ms);

/* --- a small JSON reader (secrets_json.c) --------------------------- */

typedef enum {
  SJSON_STRING,
  SJSON_NUMBER,
  SJSON_OBJECT,
  SJSON_ARRAY,
  SJSON_TRUE,
  SJSON_FALSE,
  SJSON_NULL
} sjson_kind;

/* A value inside a JSON text: p points at its first byte (the quote of a
 * string), len covers it whole. */
typedef struct {
  sjson_kind kind;
  const char *p;
  size_t len;
} sjson_span;

/* Validates text as one JSON object and finds its member key. Returns 1
 * with *val set when found, 0 when the object lacks it, -1 when text is
 * not a well-formed JSON object. Duplicate keys: the last one wins. */
int sjson_member(const char *text, size_t len, const char *key,
                 sjson_span *val);
/* Calls each(key, value, arg) for every member of the JSON object text,
 * in order. Returns 0, or -1 when text is not a well-formed JSON object,
 * with the offset of about where it stops being one in *bad_at (when not
 * NULL). */
typedef void sjson_member_fn(const sjson_span *key, const sjson_span *val,
                             void *arg);
int sjson_each(const char *text, size_t len, sjson_member_fn *each,
               void *arg, size_t *bad_at);

/* Calls each(element, arg) for every element of the array span, in
 * order. Returns 0, or -1 when it is not a well-formed array. */
typedef void sjson_element_fn(const sjson_span *val, void *arg);
int sjson_each_element(const sjson_span *array, sjson_element_fn *each,
                       void *arg);

/* The same, and on -1 the offset of about where text stops being one
 * (the end of the text when it stops short) in *bad_at. */
int sjson_member_at(const char *text, size_t len, const char *key,
                    sjson_span *val, size_t *bad_at);

/* The bytes of a string span, escapes resolved (\u pairs to UTF-8), as a
 * new NUL-terminated string; *out_len is its length. NULL when out of
 * memory or the escapes are bad. */
char *sjson_string(const sjson_span *s, size_t *out_len);

/* Appends s as a JSON string literal (quoted, escaped) to buf of size cap
 * at *len. Returns 0, or -1 when it does not fit. */
int sjson_put_string(char *buf, size_t cap, size_t *len, const char *s);

#endif
