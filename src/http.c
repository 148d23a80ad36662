/* http.c: the libcurl client behind http.h. One easy handle per client is
 * reset before each request, which keeps its connection cache, so a warm
 * Lambda process talks to the same endpoint over one TLS session. */
#include "http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "tls.h"

struct http_client {
  CURL *curl;
};

/* What the callbacks fill while a transfer runs. */
typedef struct {
  http_response *resp;
  size_t body_cap;
  size_t max_body;
  size_t headers_cap;
  int too_big;
  int oom;
  const volatile sig_atomic_t *cancel;
} transfer;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_status = CURLE_FAILED_INIT;

static void global_init(void)
{
  global_status = curl_global_init(CURL_GLOBAL_DEFAULT);
}

http_client *http_client_new(void)
{
  http_client *client;

  pthread_once(&global_once, global_init);
  if (global_status != CURLE_OK)
    return NULL;
  client = calloc(1, sizeof *client);
  if (!client)
    return NULL;
  client->curl = curl_easy_init();
  if (!client->curl) {
    free(client);
    return NULL;
  }
  return client;
}

void http_client_free(http_client *client)
{
  if (!client)
    return;
  curl_easy_cleanup(client->curl);
  free(client);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
  transfer *t = arg;
  http_response *r = t->resp;
  size_t n = size * nmemb;

  if (r->body_len + n > t->max_body) {
    t->too_big = 1;
    return 0;
  }
  if (r->body_len + n + 1 > t->body_cap) {
    size_t cap = t->body_cap ? t->body_cap : 4096;
    char *p;

    while (cap < r->body_len + n + 1)
      cap *= 2;
    p = malloc(cap);
    if (!p) {
      t->oom = 1;
      return 0;
    }
    /* Copy rather than realloc, so no stale copy of the body is left
     * behind unwiped. */
    if (r->body) {
      memcpy(p, r->body, r->body_len);
      explicit_bzero(r->body, r->body_len);
      free(r->body);
    }
    r->body = p;
    t->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return n;
}

static void clear_headers(http_response *r)
{
  size_t i;

  for (i = 0; i < r->n_headers; i++) {
    free((char *)r->headers[i].name);
    free((char *)r->headers[i].value);
  }
  r->n_headers = 0;
}

/* Keeps one "Name: value" line. A status line starts a new response (after
 * a 100 Continue, say), so the headers collected so far are dropped. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
  transfer *t = arg;
  http_response *r = t->resp;
  size_t n = size * nmemb, name_len, start, end;
  const char *colon;
  char *name, *value;

  if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
    clear_headers(r);
    return n;
  }
  colon = memchr(data, ':', n);
  if (!colon)
    return n;
  name_len = (size_t)(colon - data);
  start = name_len + 1;
  end = n;
  while (start < end && (data[start] == ' ' || data[start] == '\t'))
    start++;
  while (end > start && (data[end - 1] == '\r' || data[end - 1] == '\n' ||
                         data[end - 1] == ' ' || data[end - 1] == '\t'))
    end--;

  if (r->n_headers == t->headers_cap) {
    size_t cap = t->headers_cap ? t->headers_cap * 2 : 16;
    http_header *h = realloc(r->headers, cap * sizeof *h);

    if (!h) {
      t->oom = 1;
      return 0;
    }
    r->headers = h;
    t->headers_cap = cap;
  }
  name = strndup(data, name_len);
  value = strndup(data + start, end - start);
  if (!name || !value) {
    free(name);
    free(value);
    t->oom = 1;
    return 0;
  }
  r->headers[r->n_headers].name = name;
  r->headers[r->n_headers].value = value;
  r->n_headers++;
  return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
  transfer *t = arg;

  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  return t->cancel && *t->cancel;
}

/* The request headers as a curl list; "Expect:" turns off 100-continue. A
 * header with an empty value needs curl's "Name;" form. */
static struct curl_slist *header_list(const http_request *req, int *oom)
{
  struct curl_slist *list = NULL, *next;
  size_t i;

  *oom = 0;
  next = curl_slist_append(list, "Expect:");
  if (!next)
    goto fail;
  list = next;
  for (i = 0; i < req->n_headers; i++) {
    const http_header *h = &req->headers[i];
    size_t len = strlen(h->name) + strlen(h->value) + 3;
    char *line = malloc(len);

    if (!line)
      goto fail;
    if (*h->value)
      snprintf(line, len, "%s: %s", h->name, h->value);
    else
      snprintf(line, len, "%s;", h->name);
    next = curl_slist_append(list, line);
    explicit_bzero(line, len);
    free(line);
    if (!next)
      goto fail;
    list = next;
  }
  return list;

fail:
  *oom = 1;
  curl_slist_free_all(list);
  return NULL;
}

int http_perform(http_client *client, const http_request *req,
                 http_response *resp)
{
  CURL *c = client->curl;
  transfer t;
  struct curl_slist *headers = NULL;
  const char *ca_file, *ca_dir;
  char errbuf[CURL_ERROR_SIZE] = "";
  CURLcode rc;
  int oom = 0, result = -1;

  memset(resp, 0, sizeof *resp);
  memset(&t, 0, sizeof t);
  t.resp = resp;
  t.max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
  t.cancel = req->cancel;

  headers = header_list(req, &oom);
  if (oom) {
    snprintf(resp->error, sizeof resp->error, "out of memory");
    goto out;
  }

  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, req->url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "jobhost/" JOBHOST_VERSION);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  tls_ca(&ca_file, &ca_dir);
  if (ca_file) {
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
  } else if (ca_dir) {
    curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(c, CURLOPT_CAPATH, ca_dir);
  }
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, req->cancel ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);

  if (strcmp(req->method, "GET") == 0 && req->body_len == 0) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (strcmp(req->method, "POST") != 0)
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)req->body_len);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
  }

  rc = curl_easy_perform(c);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    result = 0;
  } else if (t.too_big) {
    resp->too_big = 1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    snprintf(resp->error, sizeof resp->error,
             "response body over %zu bytes", t.max_body);
  } else if (t.oom) {
    snprintf(resp->error, sizeof resp->error, "out of memory");
  } else {
    resp->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    snprintf(resp->error, sizeof resp->error, "%s",
             *errbuf ? errbuf : curl_easy_strerror(rc));
  }

out:
  curl_slist_free_all(headers);
  if (!resp->body) {
    resp->body = calloc(1, 1);
    if (!resp->body)
      result = -1;
  }
  if (result != 0)
    resp->status = 0;
  /* The handle must not keep pointers into this stack frame. */
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  return result;
}

const char *http_response_header(const http_response *resp,
                                 const char *name)
{
  size_t i;

  for (i = 0; i < resp->n_headers; i++)
    if (strcasecmp(resp->headers[i].name, name) == 0)
      return resp->headers[i].value;
  return NULL;
}

void http_response_free(http_response *resp)
{
  clear_headers(resp);
  free(resp->headers);
  if (resp->body) {
    explicit_bzero(resp->body, resp->body_len);
    free(resp->body);
  }
  memset(resp, 0, sizeof *resp);
}
