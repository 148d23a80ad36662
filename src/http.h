/* http.h: a small HTTP client over libcurl for the host's own calls (AWS
 * Secrets Manager, the Lambda extension, the Lambda Runtime API).
 *
 * A client keeps one curl handle, so connections are reused from one
 * request to the next. TLS is always verified, against the CA bundle
 * tls_ca_file() finds (JOBHOST_CA_FILE first; see tls.h), or libcurl's
 * default when it finds none. Nothing is written to stdout or stderr:
 * failures come back as text in the response. A client is not safe for
 * use by two threads at once; two clients are independent. */
#ifndef JOBHOST_HTTP_H
#define JOBHOST_HTTP_H

#include <signal.h>
#include <stddef.h>

typedef struct http_client http_client;

/* One request or response header. */
typedef struct {
  const char *name;
  const char *value;
} http_header;

/* What to send. Headers go out as given (an empty value sends the header
 * empty); "Expect" is never sent. A NULL body with body_len 0 sends no
 * body. Timeouts are in milliseconds; 0 means none (a long poll), which
 * suits the Lambda Runtime API's "next" call. */
typedef struct {
  const char *method; /* "GET", "POST", "PUT", ... */
  const char *url;
  const http_header *headers;
  size_t n_headers;
  const void *body;
  size_t body_len;
  long connect_timeout_ms; /* 0: libcurl's default */
  long timeout_ms;         /* the whole exchange; 0: none */
  size_t max_body;         /* bytes; 0: HTTP_DEFAULT_MAX_BODY */
  /* When not NULL, the transfer stops as soon as *cancel becomes
   * non-zero (a signal handler's flag). */
  const volatile sig_atomic_t *cancel;
} http_request;

#define HTTP_DEFAULT_MAX_BODY ((size_t)64 << 20)

/* What came back. status is 0 when no response arrived; then error says
 * why (libcurl's message; it names the host but never a header or body).
 * body is NUL-terminated (body_len excludes the NUL) and never NULL after
 * http_perform. Free with http_response_free, which also wipes the body,
 * since it may hold a secret. */
typedef struct {
  long status;
  char *body;
  size_t body_len;
  http_header *headers; /* in order of arrival; names as sent */
  size_t n_headers;
  int timed_out;        /* no response because a timeout struck */
  int too_big;          /* the body passed max_body: not kept, though
                           status and headers are */
  char error[256];
} http_response;

/* A new client, or NULL when memory runs out. */
http_client *http_client_new(void);

/* Closes the client's connections and frees it. NULL is allowed. */
void http_client_free(http_client *client);

/* Sends req and waits for the whole response. Returns 0 when a response
 * arrived (whatever its status), -1 when none did (a connection or TLS
 * failure, a timeout, a cancel, a body over max_body); resp->error then
 * says why (and resp->too_big tells the last, with the status and the
 * headers kept). resp is filled in either case and must be freed. */
int http_perform(http_client *client, const http_request *req,
                 http_response *resp);

/* The value of the first response header called name (any case), or
 * NULL. */
const char *http_response_header(const http_response *resp,
                                 const char *name);

/* Frees what resp holds, wiping the body first, and zeroes it. */
void http_response_free(http_response *resp);

#endif
