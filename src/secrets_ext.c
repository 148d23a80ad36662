/* secrets_ext.c: the AWS Parameters and Secrets Lambda Extension as a
 * provider. The extension runs beside the function and answers
 * GET /secretsmanager/get?secretId=ID[&versionStage=STAGE] on localhost
 * (port PARAMETERS_SECRETS_EXTENSION_HTTP_PORT, default 2773) with the
 * GetSecretValue answer, when the request carries the function's session
 * token in X-Aws-Parameters-Secrets-Token. It holds its own cache, so the
 * calls are cheap; our cache still spares the round trip. */
#include "secrets_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "host.h"
#include "sigv4.h"

#define DEFAULT_PORT 2773
#define ATTEMPT_CAP_MS 5000L

/* The request URL for q into url (cap bytes). Returns 0 or -1. */
static int extension_url(const secrets_query *q, long port, char *url,
                         size_t cap)
{
  char *id = sigv4_uri_encode(q->id, strlen(q->id), 0);
  int n;

  if (!id)
    return -1;
  if (strcmp(q->stage, "AWSCURRENT") == 0)
    n = snprintf(url, cap, "http://localhost:%ld/secretsmanager/get"
                 "?secretId=%s", port, id);
  else
    n = snprintf(url, cap, "http://localhost:%ld/secretsmanager/get"
                 "?secretId=%s&versionStage=%s", port, id, q->stage);
  free(id);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

int secrets_ext_fetch(http_client *http, const secrets_query *q,
                      secrets_value *out, secrets_error *err)
{
  const char *token = getenv("AWS_SESSION_TOKEN");
  long port = env_long("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                               1, 65535, DEFAULT_PORT);
  char url[8192];
  http_header headers[1];
  http_request req;
  int attempt = 0;

  memset(out, 0, sizeof *out);
  if (!token || !*token) {
    secrets_fail(err, "NotConfigured",
                 "secret %s: the extension needs AWS_SESSION_TOKEN", q->id);
    return -1;
  }
  if (extension_url(q, port, url, sizeof url)) {
    secrets_fail(err, "InvalidParameterException",
                 "secret %s: the id is too long", q->id);
    return -1;
  }
  headers[0] = (http_header){"X-Aws-Parameters-Secrets-Token", token};
  memset(&req, 0, sizeof req);
  req.method = "GET";
  req.url = url;
  req.headers = headers;
  req.n_headers = 1;
  req.max_body = 1 << 20;
  /* SIGINT or SIGTERM abandons the request, as it stops the run. */
  req.cancel = &host_interrupt_requested;

  for (;;) {
    http_response resp;
    int retry = 1, rc;

    attempt++;
    req.connect_timeout_ms = secrets_attempt_timeout_ms(q->deadline_ms, 1000);
    req.timeout_ms = secrets_attempt_timeout_ms(q->deadline_ms,
                                                ATTEMPT_CAP_MS);
    if (req.timeout_ms == 0) {
      secrets_fail(err, "Timeout",
                   "secret %s: the run's deadline passed before an answer "
                   "(%d attempts)", q->id, attempt - 1);
      return -1;
    }
    rc = http_perform(http, &req, &resp);
    if (rc == 0 && resp.status == 200) {
      rc = secrets_parse_answer(q->id, resp.body, resp.body_len, out, err);
      http_response_free(&resp);
      return rc;
    }
    if (rc == 0)
      retry = secrets_answer_error(q->id, &resp, err);
    else
      secrets_fail(err, "HttpError", "secret %s: extension: %s", q->id,
                   resp.error);
    http_response_free(&resp);
    if (!retry || secrets_retry_wait(q->id, err, attempt, q->deadline_ms))
      return -1;
  }
}
