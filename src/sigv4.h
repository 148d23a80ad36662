/* sigv4.h: AWS Signature Version 4 (AWS4-HMAC-SHA256) over OpenSSL.
 *
 * The signer turns one HTTP request into its canonical request, the string
 * to sign and the Authorization header value, following the rules of the
 * AWS SigV4 test suite for services other than S3: the path is normalized
 * (dot segments and repeated slashes removed) and URI-encoded, query
 * parameters are decoded, re-encoded and sorted, header names lowercased
 * and values trimmed with inner whitespace collapsed, repeated headers
 * joined with commas. It performs no I/O and keeps no state. */
#ifndef JOBHOST_SIGV4_H
#define JOBHOST_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/* One header of the request, as the caller will send it. */
typedef struct {
  const char *name;
  const char *value;
} sigv4_header;

/* Who signs. session_token is NULL (or "") for long-term keys. */
typedef struct {
  const char *access_key_id;
  const char *secret_access_key;
  const char *session_token;
} sigv4_credentials;

/* The request to sign. Every header given is signed, so pass exactly those
 * that will be sent and that the service must see unchanged (host
 * included). payload is hashed as given: it must be the exact bytes
 * sent. */
typedef struct {
  const char *method;          /* "GET", "POST", ... */
  const char *path;            /* as on the request line, without query */
  const char *query;           /* after '?', or NULL / "" for none */
  const sigv4_header *headers;
  size_t n_headers;
  const void *payload;         /* may be NULL when payload_len is 0 */
  size_t payload_len;
  const char *region;          /* "us-east-1" */
  const char *service;         /* "secretsmanager" */
  int64_t time_s;              /* signing time, seconds since the epoch */
} sigv4_request;

/* The result. The three strings are allocated and owned by the struct:
 * free with sigv4_signature_free. When add_date (add_token) is set, the
 * signer signed an X-Amz-Date (X-Amz-Security-Token) header that the
 * request did not carry, and the caller must send it with the value
 * amz_date (the session token). */
typedef struct {
  char amz_date[17];           /* "20150830T123600Z" */
  int add_date;
  int add_token;
  char *canonical_request;
  char *string_to_sign;
  char *authorization;         /* the Authorization header's value */
} sigv4_signature;

/* Signs req with cred. When the headers already hold x-amz-date, its value
 * is the signing time and time_s is ignored; when they hold
 * x-amz-security-token, that header is signed as it is. Returns 0, or -1
 * when memory runs out or the input is unusable (a NULL field, a date
 * header that is not a SigV4 timestamp); out is then zeroed. Secrets are
 * wiped from the stack before returning. */
int sigv4_sign(const sigv4_request *req, const sigv4_credentials *cred,
               sigv4_signature *out);

/* Frees the strings of sig (which may be zeroed) and zeroes it. */
void sigv4_signature_free(sigv4_signature *sig);

/* Formats epoch seconds as a SigV4 timestamp "YYYYMMDDTHHMMSSZ" into buf
 * (17 bytes). */
void sigv4_format_time(int64_t time_s, char buf[17]);

/* s[0..n) URI-encoded the SigV4 way (unreserved characters kept, every
 * other byte as %XX in upper case, '/' kept when keep_slash), as a new
 * NUL-terminated string the caller frees; NULL when out of memory. Also
 * right for a query parameter sent with the request. */
char *sigv4_uri_encode(const char *s, size_t n, int keep_slash);

#endif
