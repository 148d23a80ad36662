/* lambda_api.h: the client side of the AWS Lambda Runtime API
 * (/2018-06-01/runtime/...): fetch the next invocation, post its result
 * or its error, report an init failure. It knows HTTP and the API's
 * status codes, nothing about jobs; lambda.c decides what to post. */
#ifndef JOBHOST_LAMBDA_API_H
#define JOBHOST_LAMBDA_API_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* How a call to the API ended, as the loop must act on it. */
typedef enum {
  LAMBDA_API_OK = 0,   /* 2xx: done */
  LAMBDA_API_REJECTED, /* another 4xx (400, 403, 413, ...): logged, the
                          loop goes on to the next invocation */
  LAMBDA_API_FATAL     /* 5xx, no answer after the retries, or a cancel:
                          the process must exit */
} lambda_api_status;

/* One invocation as `next` delivered it. Strings are NUL-terminated and
 * owned by the struct; trace_id and function_arn may be NULL. */
typedef struct {
  char *request_id;   /* Lambda-Runtime-Aws-Request-Id */
  int64_t deadline_ms; /* Lambda-Runtime-Deadline-Ms; 0 when absent */
  char *function_arn; /* Lambda-Runtime-Invoked-Function-Arn */
  char *trace_id;     /* Lambda-Runtime-Trace-Id */
  char *body;         /* the event, as sent */
  size_t body_len;
} lambda_invocation;

typedef struct lambda_api lambda_api;

/* A client for the API at host_port (the value of
 * AWS_LAMBDA_RUNTIME_API, "127.0.0.1:9001"). cancel, when not NULL, is a
 * flag a signal handler sets to abandon a waiting `next`. Returns NULL
 * when memory runs out. */
lambda_api *lambda_api_new(const char *host_port,
                           const volatile sig_atomic_t *cancel);

/* Closes the client's connection and frees it. NULL is allowed. */
void lambda_api_free(lambda_api *api);

/* Waits for the next invocation, with no limit on the wait (the process
 * may be frozen between invocations for hours), only on connecting. A
 * connection failure is retried for about a second. On LAMBDA_API_OK inv
 * is filled (free it with lambda_invocation_free); otherwise it is left
 * zeroed. REJECTED also covers a 200 that lacks a request id; after a
 * refusal the call pauses (10 ms, doubling up to 1 s while refusals go
 * on) so that the loop does not spin against a refusing API. */
lambda_api_status lambda_api_next(lambda_api *api, lambda_invocation *inv);

/* Frees what inv holds and zeroes it. */
void lambda_invocation_free(lambda_invocation *inv);

/* Posts an invocation's JSON result to invocation/ID/response. The
 * caller keeps result within the API's limit. */
lambda_api_status lambda_api_respond(lambda_api *api, const char *request_id,
                                     const char *result, size_t len);

/* Posts an error body ({"errorType", "errorMessage", "stackTrace"}) with
 * the Lambda-Runtime-Function-Error-Type header: to invocation/ID/error,
 * or to init/error when request_id is NULL. */
lambda_api_status lambda_api_fail(lambda_api *api, const char *request_id,
                                  const char *error_type, const char *body,
                                  size_t len);

#endif
