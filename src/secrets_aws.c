/* secrets_aws.c: the Secrets Manager provider. GetSecretValue over HTTPS
 * in the JSON 1.1 protocol, signed with SigV4 (sigv4.c) from the
 * environment's credentials. The region and partition come from the id
 * when it is an ARN; the endpoint may be overridden by the standard
 * AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL. Each retry is
 * signed anew; a "Signature expired" (or "not yet current") answer
 * corrects the clock once from the answer's Date, and the correction is
 * kept for later calls. */
#include "secrets_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "clock.h"
#include "host.h"
#include "log.h"
#include "sigv4.h"

#define SERVICE "secretsmanager"
#define TARGET "secretsmanager.GetSecretValue"
#define CONTENT_TYPE "application/x-amz-json-1.1"
#define ATTEMPT_CAP_MS 10000L
/* Secret ids are at most 2048 characters; escaped, six times that. */
#define MAX_BODY 16384

/* Server time minus local time, learnt from a "Signature expired"
 * answer; every later signature uses it. */
static int64_t clock_skew_ms;

/* Where a request goes and how it is scoped. */
typedef struct {
  char region[64];
  char url[1024];
  char host[512];  /* the Host header, port included when given */
  char path[512];  /* the URL's path, "/" when none */
} target;

/* The DNS suffix of a partition. */
static const char *partition_suffix(const char *partition)
{
  if (strcmp(partition, "aws-cn") == 0)
    return "amazonaws.com.cn";
  if (strcmp(partition, "aws-iso") == 0)
    return "c2s.ic.gov";
  if (strcmp(partition, "aws-iso-b") == 0)
    return "sc2s.sgov.gov";
  if (strcmp(partition, "aws-iso-e") == 0)
    return "cloud.adc-e.uk";
  if (strcmp(partition, "aws-iso-f") == 0)
    return "csp.hci.ic.gov";
  return "amazonaws.com";
}

/* The partition a region name belongs to, for ids that are no ARN. */
static const char *region_partition(const char *region)
{
  if (strncmp(region, "cn-", 3) == 0)
    return "aws-cn";
  if (strncmp(region, "us-gov-", 7) == 0)
    return "aws-us-gov";
  if (strncmp(region, "us-isob-", 8) == 0)
    return "aws-iso-b";
  if (strncmp(region, "us-iso-", 7) == 0)
    return "aws-iso";
  if (strncmp(region, "eu-isoe-", 8) == 0)
    return "aws-iso-e";
  if (strncmp(region, "us-isof-", 8) == 0)
    return "aws-iso-f";
  return "aws";
}

/* Copies field number `index` (0-based, ':'-separated) of s into out. */
static int arn_field(const char *s, int index, char *out, size_t cap)
{
  const char *end;
  size_t n;

  while (index-- > 0) {
    s = strchr(s, ':');
    if (!s)
      return -1;
    s++;
  }
  end = strchr(s, ':');
  n = end ? (size_t)(end - s) : strlen(s);
  if (n == 0 || n >= cap)
    return -1;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

/* Fills host and path from an endpoint URL, with libcurl's parser. */
static int split_url(const char *url, target *t)
{
  CURLU *u = curl_url();
  char *host = NULL, *port = NULL, *path = NULL;
  int rc = -1;

  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    goto out;
  curl_url_get(u, CURLUPART_PORT, &port, 0);
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  snprintf(t->host, sizeof t->host, "%s%s%s", host, port ? ":" : "",
           port ? port : "");
  snprintf(t->path, sizeof t->path, "%s", path && *path ? path : "/");
  rc = 0;

out:
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_url_cleanup(u);
  return rc;
}

/* Works out region, URL and Host for id. Returns 0 or -1 with err. */
static int resolve_target(const char *id, target *t, secrets_error *err)
{
  char partition[32] = "";
  const char *endpoint, *region;

  memset(t, 0, sizeof *t);
  if (strncmp(id, "arn:", 4) == 0) {
    char service[32];

    if (arn_field(id, 1, partition, sizeof partition) ||
        arn_field(id, 2, service, sizeof service) ||
        strcmp(service, SERVICE) != 0 ||
        arn_field(id, 3, t->region, sizeof t->region)) {
      secrets_fail(err, "InvalidParameterException",
                   "secret %s: not a Secrets Manager ARN", id);
      return -1;
    }
  } else {
    region = getenv("AWS_REGION");
    if (!region || !*region)
      region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region || strlen(region) >= sizeof t->region) {
      secrets_fail(err, "NotConfigured",
                   "secret %s: no region (set AWS_REGION or use an ARN)",
                   id);
      return -1;
    }
    snprintf(t->region, sizeof t->region, "%s", region);
    snprintf(partition, sizeof partition, "%s", region_partition(region));
  }

  endpoint = getenv("AWS_ENDPOINT_URL_SECRETS_MANAGER");
  if (!endpoint || !*endpoint)
    endpoint = getenv("AWS_ENDPOINT_URL");
  if (endpoint && *endpoint)
    snprintf(t->url, sizeof t->url, "%s", endpoint);
  else
    snprintf(t->url, sizeof t->url, "https://" SERVICE ".%s.%s/", t->region,
             partition_suffix(partition));
  if (split_url(t->url, t)) {
    secrets_fail(err, "NotConfigured", "secret %s: bad endpoint URL %s", id,
                 t->url);
    return -1;
  }
  return 0;
}

/* The answer's Date header as epoch ms, or 0 when absent or unreadable. */
static int64_t answer_date_ms(const http_response *resp)
{
  const char *date = http_response_header(resp, "Date");
  struct tm tm;
  const char *end;

  if (!date)
    return 0;
  memset(&tm, 0, sizeof tm);
  end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end)
    return 0;
  return (int64_t)timegm(&tm) * 1000;
}

/* Whether an error answer says our clock is off. */
static int is_clock_error(const secrets_error *err)
{
  return strstr(err->message, "Signature expired") != NULL ||
         strstr(err->message, "Signature not yet current") != NULL ||
         strcmp(err->type, "Secrets.RequestTimeTooSkewed") == 0 ||
         strcmp(err->type, "Secrets.RequestExpired") == 0;
}

/* Appends text to buf (cap bytes) at *len. Returns 0, or -1 when full. */
static int put_text(char *buf, size_t cap, size_t *len, const char *text)
{
  size_t n = strlen(text);

  if (*len + n + 1 > cap)
    return -1;
  memcpy(buf + *len, text, n + 1);
  *len += n;
  return 0;
}

/* The GetSecretValue body: {"SecretId":ID} plus "VersionStage" when the
 * stage is not the default AWSCURRENT. Returns 0, or -1 when too long. */
static int request_body(const secrets_query *q, char *buf, size_t cap,
                        size_t *len)
{
  *len = 0;
  if (put_text(buf, cap, len, "{\"SecretId\":") ||
      sjson_put_string(buf, cap, len, q->id))
    return -1;
  if (strcmp(q->stage, "AWSCURRENT") != 0 &&
      (put_text(buf, cap, len, ",\"VersionStage\":") ||
       sjson_put_string(buf, cap, len, q->stage)))
    return -1;
  return put_text(buf, cap, len, "}");
}

/* One signed POST. Returns 0 when an answer came, -1 when none did (worth
 * another try), -2 when the request could not be signed (final); err is
 * filled for the last two. */
static int send_signed(http_client *http, const target *t,
                       const sigv4_credentials *cred, const char *body,
                       size_t body_len, int64_t deadline_ms,
                       http_response *resp, secrets_error *err,
                       const char *id)
{
  sigv4_header signed_headers[] = {{"Host", t->host},
                                   {"Content-Type", CONTENT_TYPE},
                                   {"X-Amz-Target", TARGET}};
  sigv4_request sreq = {"POST", t->path, NULL, signed_headers, 3,
                        body, body_len, t->region, SERVICE,
                        (clock_now_ms() + clock_skew_ms) / 1000};
  sigv4_signature sig;
  http_header headers[6];
  http_request req;
  size_t n = 0;
  int rc;

  memset(resp, 0, sizeof *resp);
  if (sigv4_sign(&sreq, cred, &sig)) {
    secrets_fail(err, "SigningFailed", "secret %s: cannot sign", id);
    return -2;
  }
  headers[n++] = (http_header){"Host", t->host};
  headers[n++] = (http_header){"Content-Type", CONTENT_TYPE};
  headers[n++] = (http_header){"X-Amz-Target", TARGET};
  headers[n++] = (http_header){"X-Amz-Date", sig.amz_date};
  if (sig.add_token)
    headers[n++] = (http_header){"X-Amz-Security-Token",
                                 cred->session_token};
  headers[n++] = (http_header){"Authorization", sig.authorization};

  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.url = t->url;
  req.headers = headers;
  req.n_headers = n;
  req.body = body;
  req.body_len = body_len;
  req.connect_timeout_ms = secrets_attempt_timeout_ms(deadline_ms, 3000);
  req.timeout_ms = secrets_attempt_timeout_ms(deadline_ms, ATTEMPT_CAP_MS);
  req.max_body = 1 << 20;
  /* SIGINT or SIGTERM abandons the request, as it stops the run. */
  req.cancel = &host_interrupt_requested;
  rc = http_perform(http, &req, resp);
  if (rc)
    secrets_fail(err, "HttpError", "secret %s: %s", id, resp->error);
  sigv4_signature_free(&sig);
  return rc;
}

int secrets_aws_fetch(http_client *http, const secrets_query *q,
                      secrets_value *out, secrets_error *err)
{
  sigv4_credentials cred;
  target t;
  char body[MAX_BODY];
  size_t len = 0;
  int attempt = 0, clock_fixed = 0;

  memset(out, 0, sizeof *out);
  cred.access_key_id = getenv("AWS_ACCESS_KEY_ID");
  cred.secret_access_key = getenv("AWS_SECRET_ACCESS_KEY");
  cred.session_token = getenv("AWS_SESSION_TOKEN");
  if (!cred.access_key_id || !*cred.access_key_id ||
      !cred.secret_access_key || !*cred.secret_access_key) {
    const char *chosen = getenv("JOBHOST_SECRETS_PROVIDER");

    /* When the aws provider was picked for want of another, say so: the
     * likelier mistake is a secrets file not exported. */
    secrets_fail(err, "NoCredentials",
                 "secret %s: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                 "are not set%s",
                 q->id,
                 chosen && *chosen
                     ? ""
                     : " (Secrets Manager is asked since neither "
                       "JOBHOST_SECRETS_FILE nor the Lambda extension's "
                       "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT is set)");
    return -1;
  }
  if (resolve_target(q->id, &t, err))
    return -1;

  /* The body is signed as these exact bytes. */
  if (request_body(q, body, sizeof body, &len)) {
    secrets_fail(err, "InvalidParameterException",
                 "secret %.200s...: the id is too long", q->id);
    return -1;
  }

  for (;;) {
    http_response resp;
    int retry, sent;

    attempt++;
    if (secrets_attempt_timeout_ms(q->deadline_ms, 1) == 0) {
      secrets_fail(err, "Timeout",
                   "secret %s: the run's deadline passed before an answer "
                   "(%d attempts)", q->id, attempt - 1);
      return -1;
    }
    sent = send_signed(http, &t, &cred, body, len, q->deadline_ms, &resp,
                       err, q->id);
    if (sent == -2)
      return -1;
    if (sent == 0 && resp.status == 200) {
      int rc = secrets_parse_answer(q->id, resp.body, resp.body_len, out,
                                    err);

      http_response_free(&resp);
      return rc;
    }

    retry = 1; /* a network failure is worth another try */
    if (resp.status != 0)
      retry = secrets_answer_error(q->id, &resp, err);
    if (resp.status != 0 && !clock_fixed && is_clock_error(err)) {
      int64_t server_ms = answer_date_ms(&resp);

      if (server_ms) {
        clock_skew_ms = server_ms - clock_now_ms();
        clock_fixed = 1;
        log_emit(LOG_WARN, "clock skew corrected",
                 (log_field[]){LOG_S("secret", q->id),
                               LOG_I("skew_ms", clock_skew_ms)},
                 2);
        http_response_free(&resp);
        continue;
      }
    }
    http_response_free(&resp);
    if (!retry || secrets_retry_wait(q->id, err, attempt, q->deadline_ms))
      return -1;
  }
}
