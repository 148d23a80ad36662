/* secrets.c: the secrets layer's front. It picks the provider the
 * environment configures (see secrets.h), keeps fetched AWSCURRENT values
 * in a process-wide cache for JOBHOST_SECRETS_TTL seconds, turns RDS
 * secrets into libpq keywords for the database binding, and gives jobs
 * ctx.secret. Values are copied out of the cache, never shared, and
 * wiped when freed. One lock serializes lookups, so two threads asking
 * for the same secret cause one fetch. */
#include "secrets.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "clock.h"
#include "env.h"
#include "host.h"
#include "json.h"
#include "log.h"
#include "redact.h"
#include "secrets_internal.h"
#include "tls.h"

#define DEFAULT_TTL_S 300
#define MAX_TTL_S (366L * 24 * 3600) /* a year: no overflow in µs */

typedef enum { PROVIDER_AWS, PROVIDER_EXTENSION, PROVIDER_FILE } provider;

static const char *const provider_names[] = {"aws", "extension", "file"};

/* A cached AWSCURRENT value. */
typedef struct cache_entry {
  struct cache_entry *next;
  char *id;
  secrets_value value;
  int64_t expires_us; /* on the monotonic clock */
} cache_entry;

static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry *cache;
static http_client *client;

void secrets_value_free(secrets_value *v)
{
  if (v->data) {
    explicit_bzero(v->data, v->len);
    free(v->data);
  }
  memset(v, 0, sizeof *v);
}

static int value_copy(const secrets_value *from, secrets_value *to)
{
  *to = *from;
  to->data = malloc(from->len + 1);
  if (!to->data)
    return -1;
  memcpy(to->data, from->data, from->len + 1);
  return 0;
}

static void entry_free(cache_entry *e)
{
  secrets_value_free(&e->value);
  free(e->id);
  free(e);
}

/* Unlinks and frees the entry for id, if any, and every expired entry. */
static void cache_drop(const char *id, int64_t now_us)
{
  cache_entry **p = &cache;

  while (*p) {
    cache_entry *e = *p;

    if ((id && strcmp(e->id, id) == 0) || e->expires_us <= now_us) {
      *p = e->next;
      entry_free(e);
    } else {
      p = &e->next;
    }
  }
}

static const cache_entry *cache_find(const char *id, int64_t now_us)
{
  const cache_entry *e;

  for (e = cache; e; e = e->next)
    if (strcmp(e->id, id) == 0 && e->expires_us > now_us)
      return e;
  return NULL;
}

/* Keeps a copy of v for ttl_s seconds; a failure to allocate only means
 * the next lookup fetches again. */
static void cache_put(const char *id, const secrets_value *v, long ttl_s,
                      int64_t now_us)
{
  cache_entry *e = calloc(1, sizeof *e);

  if (!e)
    return;
  e->id = strdup(id);
  if (!e->id || value_copy(v, &e->value)) {
    free(e->id);
    free(e);
    return;
  }
  e->expires_us = now_us + (int64_t)ttl_s * 1000000;
  e->next = cache;
  cache = e;
}

void secrets_cache_clear(void)
{
  pthread_mutex_lock(&secrets_lock);
  while (cache) {
    cache_entry *e = cache;

    cache = e->next;
    entry_free(e);
  }
  pthread_mutex_unlock(&secrets_lock);
}

/* The configured provider. Returns 0, or -1 with err for a bad name. */
static int choose_provider(const char *id, provider *p, secrets_error *err)
{
  const char *name = getenv("JOBHOST_SECRETS_PROVIDER");
  const char *file = getenv("JOBHOST_SECRETS_FILE");
  const char *ext = getenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT");
  int i;

  if (!name || !*name) {
    *p = file && *file  ? PROVIDER_FILE
         : ext && *ext ? PROVIDER_EXTENSION
                        : PROVIDER_AWS;
    return 0;
  }
  for (i = 0; i < 3; i++) {
    if (strcmp(name, provider_names[i]) == 0) {
      *p = (provider)i;
      return 0;
    }
  }
  secrets_fail(err, "NotConfigured",
               "secret %s: JOBHOST_SECRETS_PROVIDER is \"%.64s\"; it must "
               "be aws, extension or file", id, name);
  return -1;
}

static void register_member(const sjson_span *k, const sjson_span *v,
                            void *arg);

/* Registers a string or a number (as written) of a credential member, or
 * each element of an array of them. */
static void register_credential(const sjson_span *v, void *arg)
{
  int *rc = arg;
  size_t n;
  char *text;

  if (v->kind == SJSON_ARRAY) {
    (void)sjson_each_element(v, register_credential, arg);
  } else if (v->kind == SJSON_OBJECT) {
    (void)sjson_each(v->p, v->len, register_member, arg, NULL);
  } else if (v->kind == SJSON_NUMBER) {
    if (redact_add(v->p, v->len) != 0)
      *rc = -1;
  } else if (v->kind == SJSON_STRING) {
    if (!(text = sjson_string(v, &n))) {
      *rc = -1;
      return;
    }
    if (redact_add(text, n) != 0)
      *rc = -1;
    explicit_bzero(text, n);
    free(text);
  }
}

/* Registers a JSON secret's member whose name says it holds a credential
 * (redact_credential_name, keys included): a string, a number, or the
 * strings and numbers of an array; and looks into nested objects. */
static void register_member(const sjson_span *k, const sjson_span *v,
                            void *arg)
{
  int *rc = arg;
  size_t kn;
  char *name;

  if (v->kind == SJSON_OBJECT) {
    (void)sjson_each(v->p, v->len, register_member, arg, NULL);
    return;
  }
  if (v->kind != SJSON_STRING && v->kind != SJSON_NUMBER &&
      v->kind != SJSON_ARRAY)
    return;
  if (!(name = sjson_string(k, &kn))) {
    *rc = -1;
    return;
  }
  if (redact_credential_name(name, kn, 1))
    register_credential(v, arg);
  free(name);
}

/* Registers a fetched value with the redactor (redact.h): the whole
 * value, and for a JSON object the members that by their name hold
 * credentials (password, db_password, Password, apiToken, private_key,
 * ...; strings, numbers and arrays of them, in nested objects too), which
 * a job is likelier to log than the whole secret. Returns 0,
 * or -1 when memory ran out: the value is then not handed out, since it
 * could not be hidden. */
static int register_for_redaction(const secrets_value *v)
{
  int rc = redact_add(v->data, v->len);

  if (!v->binary)
    (void)sjson_each(v->data, v->len, register_member, &rc, NULL);
  return rc;
}

/* Fetches through provider p; the lock is held. */
static int fetch(provider p, const secrets_query *q, secrets_value *out,
                 secrets_error *err)
{
  if (p == PROVIDER_FILE)
    return secrets_file_fetch(q, out, err);
  if (!client && !(client = http_client_new())) {
    secrets_fail(err, "HttpError", "secret %s: cannot start HTTP", q->id);
    return -1;
  }
  if (p == PROVIDER_EXTENSION)
    return secrets_ext_fetch(client, q, out, err);
  return secrets_aws_fetch(client, q, out, err);
}

int secrets_get(const char *id, secrets_mode mode, int64_t deadline_ms,
                secrets_value *out, secrets_error *err)
{
  secrets_query q = {id, mode == SECRETS_PENDING ? "AWSPENDING"
                                                 : "AWSCURRENT",
                     deadline_ms};
  int64_t now_us, started_us;
  long ttl = env_long("JOBHOST_SECRETS_TTL", 0, MAX_TTL_S,
                              DEFAULT_TTL_S);
  const cache_entry *hit;
  provider p;
  int rc = -1;

  memset(out, 0, sizeof *out);
  if (!id || !*id) {
    secrets_fail(err, "InvalidParameterException", "empty secret id");
    return -1;
  }
  if (choose_provider(id, &p, err))
    return -1;

  pthread_mutex_lock(&secrets_lock);
  now_us = clock_mono_us();
  cache_drop(mode == SECRETS_REFRESH ? id : NULL, now_us);
  if (mode == SECRETS_CACHED && (hit = cache_find(id, now_us))) {
    rc = value_copy(&hit->value, out);
    if (rc)
      secrets_fail(err, "OutOfMemory", "secret %s: out of memory", id);
    goto out;
  }

  started_us = clock_mono_us();
  rc = fetch(p, &q, out, err);
  if (rc == 0 && register_for_redaction(out) != 0) {
    secrets_value_free(out);
    secrets_fail(err, "OutOfMemory",
                 "secret %s: out of memory hiding its value from logs", id);
    rc = -1;
  }
  if (rc == 0 && mode != SECRETS_PENDING && ttl > 0)
    cache_put(id, out, ttl, clock_mono_us());
  if (rc == 0)
    log_emit(LOG_DEBUG, "secret fetched",
             (log_field[]){LOG_S("secret", id),
                           LOG_S("provider", provider_names[p]),
                           LOG_S("stage", q.stage),
                           LOG_S("version", out->version_id),
                           LOG_I("ms", (clock_mono_us() - started_us) / 1000)},
             5);
  else
    log_emit(LOG_WARN, "secret fetch failed",
             (log_field[]){LOG_S("secret", id),
                           LOG_S("provider", provider_names[p]),
                           LOG_S("stage", q.stage), LOG_S("error", err->type)},
             4);

out:
  pthread_mutex_unlock(&secrets_lock);
  return rc;
}

/* ---- RDS secrets to libpq keywords ------------------------------------ */

enum { DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_DBNAME, DB_SSLMODE,
       DB_SSLROOTCERT, DB_NKEYS };

static const char *const db_keywords[DB_NKEYS] = {
    "host", "port", "user", "password", "dbname", "sslmode", "sslrootcert"};

/* What params->storage points at: the arrays and the strings they hold. */
typedef struct {
  const char *keywords[DB_NKEYS + 1];
  const char *values[DB_NKEYS + 1];
  char *owned[DB_NKEYS];
} db_storage;

/* A member of the secret as text: strings unescaped, numbers as written,
 * other kinds NULL. *found tells whether the member exists at all. */
static char *member_text(const secrets_value *v, const char *key, int *found,
                         sjson_kind *kind)
{
  sjson_span s;
  size_t n;
  char *text;

  *found = sjson_member(v->data, v->len, key, &s) == 1;
  if (!*found)
    return NULL;
  *kind = s.kind;
  if (s.kind == SJSON_STRING)
    return sjson_string(&s, &n);
  if (s.kind != SJSON_NUMBER)
    return NULL;
  text = malloc(s.len + 1);
  if (text) {
    memcpy(text, s.p, s.len);
    text[s.len] = '\0';
  }
  return text;
}

/* The port as libpq wants it: decimal digits of an integer in 1..65535,
 * whether the secret wrote 5432, 5432.0 or "5432". NULL when it is no
 * port number or memory ran out. */
static char *port_text(const char *raw)
{
  char *end, *out;
  double d;

  errno = 0;
  d = strtod(raw, &end);
  while (*end == ' ')
    end++;
  if (errno || end == raw || *end || d < 1 || d > 65535 || d != (long)d)
    return NULL;
  out = malloc(8);
  if (out)
    snprintf(out, 8, "%ld", (long)d);
  return out;
}

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);

  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Fills sslmode and sslrootcert as secrets.h documents. */
static int db_tls_defaults(db_storage *st)
{
  const char *mode = getenv("JOBHOST_DB_SSLMODE");
  const char *root = getenv("JOBHOST_DB_SSLROOTCERT");
  const char *host = st->owned[DB_HOST];

  if (root && *root) {
    free(st->owned[DB_SSLROOTCERT]);
    if (!(st->owned[DB_SSLROOTCERT] = strdup(root)))
      return -1;
  }
  if (mode && *mode) {
    free(st->owned[DB_SSLMODE]);
    st->owned[DB_SSLMODE] = NULL;
  } else if (st->owned[DB_SSLMODE]) {
    return 0;
  } else if (st->owned[DB_SSLROOTCERT]) {
    mode = "verify-full";
  } else if (host && (ends_with(host, ".rds.amazonaws.com") ||
                      ends_with(host, ".rds.amazonaws.com.cn"))) {
    mode = "require";
  } else {
    return 0;
  }
  return (st->owned[DB_SSLMODE] = strdup(mode)) ? 0 : -1;
}

/* A verifying sslmode with no sslrootcert would have libpq look for
 * ~/.postgresql/root.crt, which a Lambda function has not: such a
 * connection verifies against the CA bundle tls_ca_file finds (tls.h). */
static int db_tls_root(db_storage *st)
{
  const char *mode = st->owned[DB_SSLMODE];
  const char *root = getenv("PGSSLROOTCERT");
  const char *ca;

  if (!mode)
    mode = getenv("PGSSLMODE");
  if (st->owned[DB_SSLROOTCERT] || (root && *root) || !mode ||
      (strcmp(mode, "verify-full") != 0 && strcmp(mode, "verify-ca") != 0))
    return 0;
  ca = tls_ca_file();
  if (!ca)
    return 0;
  return (st->owned[DB_SSLROOTCERT] = strdup(ca)) ? 0 : -1;
}

static void db_storage_free(db_storage *st)
{
  int i;

  if (!st)
    return;
  for (i = 0; i < DB_NKEYS; i++) {
    if (st->owned[i]) {
      explicit_bzero(st->owned[i], strlen(st->owned[i]));
      free(st->owned[i]);
    }
  }
  free(st);
}

/* Reads the RDS-style JSON of v into st. Returns 0 or -1 with err. */
static int db_read_secret(const char *id, const secrets_value *v,
                          db_storage *st, secrets_error *err)
{
  static const char *const fields[DB_NKEYS] = {
      "host", "port", "username", "password", "dbname", "sslmode",
      "sslrootcert"};
  sjson_span probe;
  int i;

  if (v->binary || sjson_member(v->data, v->len, "", &probe) < 0) {
    secrets_fail(err, "InvalidSecret",
                 "secret %s: not a JSON object with host, username and "
                 "password", id);
    return -1;
  }
  for (i = 0; i < DB_NKEYS; i++) {
    int found;
    sjson_kind kind = SJSON_NULL;
    char *text = member_text(v, fields[i], &found, &kind);

    if (!found && i == DB_USER)
      text = member_text(v, "user", &found, &kind);
    if (!found || kind == SJSON_NULL)
      continue;
    if (!text && kind != SJSON_STRING && kind != SJSON_NUMBER) {
      secrets_fail(err, "InvalidSecret",
                   "secret %s: field %s must be a string", id, fields[i]);
      return -1;
    }
    if (!text) {
      secrets_fail(err, "OutOfMemory", "secret %s: out of memory", id);
      return -1;
    }
    st->owned[i] = text;
  }

  if (st->owned[DB_PORT]) {
    char *port = port_text(st->owned[DB_PORT]);

    if (!port) {
      secrets_fail(err, "InvalidSecret",
                   "secret %s: port is not a port number", id);
      return -1;
    }
    free(st->owned[DB_PORT]);
    st->owned[DB_PORT] = port;
  }
  if (!st->owned[DB_PORT] && !(st->owned[DB_PORT] = strdup("5432")))
    return -1;
  if (!st->owned[DB_DBNAME] && !(st->owned[DB_DBNAME] = strdup("postgres")))
    return -1;
  if (!st->owned[DB_HOST] || !st->owned[DB_USER] ||
      !st->owned[DB_PASSWORD]) {
    secrets_fail(err, "InvalidSecret",
                 "secret %s: host, username and password are required", id);
    return -1;
  }
  if (db_tls_defaults(st) != 0)
    return -1;
  return db_tls_root(st);
}

int secrets_db_params_get_until(const char *id, secrets_mode mode,
                                int64_t deadline_ms,
                                secrets_db_params *out, secrets_error *err)
{
  secrets_value v;
  db_storage *st = NULL;
  int i, n = 0, rc = -1;

  memset(out, 0, sizeof *out);
  if (secrets_get(id, mode, deadline_ms, &v, err))
    return -1;
  st = calloc(1, sizeof *st);
  if (!st) {
    secrets_fail(err, "OutOfMemory", "secret %s: out of memory", id);
    goto out;
  }
  err->type[0] = '\0';
  if (db_read_secret(id, &v, st, err)) {
    if (!err->type[0])
      secrets_fail(err, "OutOfMemory", "secret %s: out of memory", id);
    goto out;
  }

  for (i = 0; i < DB_NKEYS; i++) {
    if (!st->owned[i])
      continue;
    st->keywords[n] = db_keywords[i];
    st->values[n] = st->owned[i];
    n++;
  }
  st->keywords[n] = NULL;
  st->values[n] = NULL;
  out->keywords = st->keywords;
  out->values = st->values;
  out->storage = st;
  st = NULL;
  rc = 0;

out:
  db_storage_free(st);
  secrets_value_free(&v);
  return rc;
}

int secrets_db_params_get(const char *id, secrets_mode mode,
                          secrets_db_params *out, secrets_error *err)
{
  return secrets_db_params_get_until(id, mode, 0, out, err);
}

void secrets_db_params_free(secrets_db_params *params)
{
  db_storage_free(params->storage);
  memset(params, 0, sizeof *params);
}

/* ---- ctx.secret ----------------------------------------------------- */

/* Whether the text looks like a JSON object or array. */
static int looks_like_json(const secrets_value *v)
{
  size_t i = 0;

  while (i < v->len && (v->data[i] == ' ' || v->data[i] == '\t' ||
                        v->data[i] == '\n' || v->data[i] == '\r'))
    i++;
  return i < v->len && (v->data[i] == '{' || v->data[i] == '[');
}

static int decode_value(lua_State *L)
{
  const secrets_value *v = lua_touserdata(L, 1);

  json_decode(L, v->data, v->len);
  return 1;
}

static int push_string(lua_State *L)
{
  const secrets_value *v = lua_touserdata(L, 1);

  lua_pushlstring(L, v->data, v->len);
  return 1;
}

/* Pushes v as ctx.secret returns it. Every step that can raise runs under
 * lua_pcall, so the caller always gets to wipe v; returns the status. */
static int push_value(lua_State *L, const secrets_value *v)
{
  if (!v->binary && looks_like_json(v)) {
    lua_pushcfunction(L, decode_value);
    lua_pushlightuserdata(L, (void *)v);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
      return LUA_OK;
    /* Not JSON after all (the decoder's message, which may quote the
     * text, is dropped): the string it is. */
    lua_pop(L, 1);
  }
  lua_pushcfunction(L, push_string);
  lua_pushlightuserdata(L, (void *)v);
  return lua_pcall(L, 1, 1, 0);
}

void secrets_push(lua_State *L, const char *id)
{
  int64_t left = host_remaining_ms(L);
  int64_t deadline = left == INT64_MAX ? 0 : clock_now_ms() + left;
  secrets_value v;
  secrets_error err;
  int status;

  if (left <= 0)
    host_check(L);
  if (secrets_get(id, SECRETS_CACHED, deadline, &v, &err)) {
    /* A fetch the deadline or a signal cut short is the run's stop. */
    host_check(L);
    host_push_error(L, err.type, err.message);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "secret_id");
    lua_error(L);
  }
  status = push_value(L, &v);
  secrets_value_free(&v);
  if (status != LUA_OK)
    lua_error(L);
}
