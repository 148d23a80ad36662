/* lambda_api.c: the Lambda Runtime API over the http.h client. One
 * client keeps one connection to the API open across invocations.
 *
 * Timeouts: `next` has a connect timeout and no total timeout, because
 * Lambda freezes the process while it waits and may thaw it hours later;
 * a total timeout would fire on thaw and lose the invocation it was about
 * to receive. Posts get a generous total timeout: the API answers them at
 * once, and a post that hangs must not hold the process forever.
 *
 * Failures: a call that got no answer at all (connection refused or
 * reset) is retried a few times over about a second, then is fatal. An
 * answer is never retried: 5xx means the environment is broken and the
 * process must exit; any other 4xx is logged and the loop goes on, but
 * `next` refused API_REFUSED_NEXT_LIMIT times in a row is fatal too. */
#include "lambda_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"

#define API_PREFIX "/2018-06-01/runtime"
#define API_CONNECT_TIMEOUT_MS 2000L
#define API_POST_TIMEOUT_MS 60000L
/* Attempts for a call that got no answer, and the first pause between
 * them; the pause doubles: 25 + 50 + ... + 800 ms, about 1.5 s in all. */
#define API_ATTEMPTS 6
#define API_FIRST_PAUSE_MS 25
/* The largest event accepted: above Lambda's 6 MB synchronous payload. */
#define API_MAX_EVENT ((size_t)16 << 20)
/* Pause after `next` was refused, doubling up to the maximum, so that a
 * refusing API is not hammered. */
#define API_REFUSED_FIRST_PAUSE_MS 10
#define API_REFUSED_MAX_PAUSE_MS 1000
/* `next` refused this many times in a row (about 4 s of pauses) means
 * the runtime will never be given work here: it exits, and Lambda starts
 * a new environment, instead of logging a refusal a second forever. */
#define API_REFUSED_NEXT_LIMIT 10
/* How much of an API error body goes into the log. */
#define API_LOG_BODY 300

struct lambda_api {
  http_client *http;
  char base[256]; /* "http://HOST:PORT/2018-06-01/runtime" */
  const volatile sig_atomic_t *cancel;
  long refused_pause; /* the next pause after a refused `next` */
  int refused;        /* `next` refusals in a row */
};

lambda_api *lambda_api_new(const char *host_port,
                           const volatile sig_atomic_t *cancel)
{
  lambda_api *api = calloc(1, sizeof *api);

  if (!api)
    return NULL;
  api->http = http_client_new();
  if (!api->http) {
    free(api);
    return NULL;
  }
  snprintf(api->base, sizeof api->base, "http://%s" API_PREFIX, host_port);
  api->cancel = cancel;
  api->refused_pause = API_REFUSED_FIRST_PAUSE_MS;
  return api;
}

void lambda_api_free(lambda_api *api)
{
  if (!api)
    return;
  http_client_free(api->http);
  free(api);
}

void lambda_invocation_free(lambda_invocation *inv)
{
  free(inv->request_id);
  free(inv->function_arn);
  free(inv->trace_id);
  free(inv->body);
  memset(inv, 0, sizeof *inv);
}

/* Sleeps ms milliseconds, cut short when the cancel flag rises. */
static void pause_ms(const lambda_api *api, long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

  while (nanosleep(&ts, &ts) != 0 && errno == EINTR &&
         !(api->cancel && *api->cancel))
    ;
}

/* Writes base + "/invocation/" + id (percent-encoded, dots too, so that
 * an odd request id such as "../x" cannot change the path) + "/" + what
 * into url. */
static void invocation_url(const lambda_api *api, const char *id,
                           const char *what, char *url, size_t size)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t n = (size_t)snprintf(url, size, "%s/invocation/", api->base);
  const unsigned char *p;

  for (p = (const unsigned char *)id; *p && n + 4 < size; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
        (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '~') {
      url[n++] = (char)*p;
    } else {
      url[n++] = '%';
      url[n++] = hex[*p >> 4];
      url[n++] = hex[*p & 15];
    }
  }
  url[n] = '\0';
  if (n < size)
    snprintf(url + n, size - n, "/%s", what);
}

/* Sends req, retrying while no answer arrives. Returns 0 with resp
 * holding an answer, 1 when the answer's body was over req->max_body
 * (resp holds its status and headers), or -1 (resp freed) when none
 * came or the cancel flag was raised. */
static int perform(lambda_api *api, const http_request *req,
                   http_response *resp, const char *call)
{
  long wait = API_FIRST_PAUSE_MS;
  int attempt;

  for (attempt = 1;; attempt++) {
    if (http_perform(api->http, req, resp) == 0)
      return 0;
    if (resp->too_big)
      return 1;
    if (api->cancel && *api->cancel) {
      http_response_free(resp);
      return -1;
    }
    log_emit(attempt < API_ATTEMPTS ? LOG_WARN : LOG_ERROR,
             "runtime api unreachable",
             (log_field[]){LOG_S("call", call), LOG_S("error", resp->error),
                           LOG_I("attempt", attempt)},
             3);
    http_response_free(resp);
    if (attempt == API_ATTEMPTS)
      return -1;
    pause_ms(api, wait);
    wait *= 2;
  }
}

/* Maps an answer's status to what the loop does, logging the refusals. */
static lambda_api_status judge(const http_response *resp, const char *call)
{
  char body[API_LOG_BODY + 1];
  log_level level;

  if (resp->status >= 200 && resp->status < 300)
    return LAMBDA_API_OK;
  snprintf(body, sizeof body, "%s", resp->body ? resp->body : "");
  level = resp->status >= 500 ? LOG_FATAL : LOG_ERROR;
  log_emit(level,
           resp->status >= 500 ? "runtime api failed: exiting"
                               : "runtime api refused the call",
           (log_field[]){LOG_S("call", call), LOG_I("status", resp->status),
                         LOG_S("body", body)},
           3);
  return resp->status >= 500 ? LAMBDA_API_FATAL : LAMBDA_API_REJECTED;
}

/* A header's value copied, or NULL when absent or out of memory. */
static char *header_copy(const http_response *resp, const char *name)
{
  const char *v = http_response_header(resp, name);

  return v && *v ? strdup(v) : NULL;
}

/* Reads Lambda-Runtime-Deadline-Ms: epoch milliseconds, or 0 when the
 * header is missing or not a positive integer (warned of: the run then
 * has only its job's timeout). */
static int64_t deadline_of(const http_response *resp)
{
  const char *v = http_response_header(resp, "Lambda-Runtime-Deadline-Ms");
  char *end;
  long long ms;

  if (!v || !*v)
    return 0;
  errno = 0;
  ms = strtoll(v, &end, 10);
  if (errno || *end != '\0' || ms <= 0) {
    log_emit(LOG_WARN, "invocation deadline unreadable: the job's timeout "
             "alone bounds the run",
             (log_field[]){LOG_S("header", "Lambda-Runtime-Deadline-Ms"),
                           LOG_S("value", v)},
             2);
    return 0;
  }
  return (int64_t)ms;
}

/* An invocation whose event is over API_MAX_EVENT (Lambda itself sends
 * at most 6 MB): its body was not kept, so it is answered with an error
 * of its own and the loop goes on to the next. */
static void refuse_event(lambda_api *api, const http_response *resp)
{
  const char *id = http_response_header(resp,
                                        "Lambda-Runtime-Aws-Request-Id");
  char body[256];

  log_emit(LOG_ERROR, "invocation event too large: refused",
           (log_field[]){LOG_S("request_id", id ? id : "(none)"),
                         LOG_I("limit_bytes", (int64_t)API_MAX_EVENT)},
           2);
  if (!id || !*id)
    return;
  snprintf(body, sizeof body,
           "{\"errorType\":\"Event.TooLarge\",\"errorMessage\":\"the "
           "event is over %zu bytes; it was not read\",\"stackTrace\":[]}",
           API_MAX_EVENT);
  lambda_api_fail(api, id, "Event.TooLarge", body, strlen(body));
}

lambda_api_status lambda_api_next(lambda_api *api, lambda_invocation *inv)
{
  http_request req = {0};
  http_response resp;
  lambda_api_status status;
  char url[320];
  int rc;

  memset(inv, 0, sizeof *inv);
  snprintf(url, sizeof url, "%s/invocation/next", api->base);
  req.method = "GET";
  req.url = url;
  req.connect_timeout_ms = API_CONNECT_TIMEOUT_MS;
  req.timeout_ms = 0; /* none: see the top of this file */
  req.max_body = API_MAX_EVENT;
  req.cancel = api->cancel;
  rc = perform(api, &req, &resp, "next");
  if (rc == 1) {
    refuse_event(api, &resp);
    status = LAMBDA_API_REJECTED;
    goto out;
  }
  if (rc != 0)
    return LAMBDA_API_FATAL;

  status = judge(&resp, "next");
  if (status == LAMBDA_API_REJECTED &&
      ++api->refused >= API_REFUSED_NEXT_LIMIT) {
    log_emit(LOG_FATAL, "runtime api keeps refusing next: exiting",
             (log_field[]){LOG_I("refusals", api->refused)}, 1);
    status = LAMBDA_API_FATAL;
  } else if (status == LAMBDA_API_REJECTED) {
    pause_ms(api, api->refused_pause);
    if (api->refused_pause < API_REFUSED_MAX_PAUSE_MS)
      api->refused_pause *= 2;
  }
  if (status != LAMBDA_API_OK)
    goto out;
  api->refused_pause = API_REFUSED_FIRST_PAUSE_MS;
  api->refused = 0;
  inv->request_id = header_copy(&resp, "Lambda-Runtime-Aws-Request-Id");
  if (!inv->request_id) {
    log_emit(LOG_ERROR, "invocation without a request id: skipped", NULL,
             0);
    status = LAMBDA_API_REJECTED;
    goto out;
  }
  inv->deadline_ms = deadline_of(&resp);
  inv->function_arn =
      header_copy(&resp, "Lambda-Runtime-Invoked-Function-Arn");
  inv->trace_id = header_copy(&resp, "Lambda-Runtime-Trace-Id");

  /* The body moves into the invocation rather than being copied: an
   * event may be megabytes. */
  inv->body = resp.body;
  inv->body_len = resp.body_len;
  resp.body = NULL;
  resp.body_len = 0;

out:
  if (status != LAMBDA_API_OK)
    lambda_invocation_free(inv);
  http_response_free(&resp);
  return status;
}

/* Posts body to url with the given extra header (may be NULL). */
static lambda_api_status post(lambda_api *api, const char *url,
                              const http_header *extra, const char *body,
                              size_t len, const char *call)
{
  http_header headers[2] = {{"Content-Type", "application/json"}};
  http_request req = {0};
  http_response resp;
  lambda_api_status status;

  if (extra)
    headers[1] = *extra;
  req.method = "POST";
  req.url = url;
  req.headers = headers;
  req.n_headers = extra ? 2 : 1;
  req.body = body;
  req.body_len = len;
  req.connect_timeout_ms = API_CONNECT_TIMEOUT_MS;
  req.timeout_ms = API_POST_TIMEOUT_MS;
  if (perform(api, &req, &resp, call) != 0)
    return LAMBDA_API_FATAL;
  status = judge(&resp, call);
  http_response_free(&resp);
  return status;
}

lambda_api_status lambda_api_respond(lambda_api *api, const char *request_id,
                                     const char *result, size_t len)
{
  char url[512];

  invocation_url(api, request_id, "response", url, sizeof url);
  return post(api, url, NULL, result, len, "response");
}

lambda_api_status lambda_api_fail(lambda_api *api, const char *request_id,
                                  const char *error_type, const char *body,
                                  size_t len)
{
  http_header type = {"Lambda-Runtime-Function-Error-Type", error_type};
  char url[512];

  if (request_id)
    invocation_url(api, request_id, "error", url, sizeof url);
  else
    snprintf(url, sizeof url, "%s/init/error", api->base);
  return post(api, url, &type, body, len, request_id ? "error" : "init");
}
