/* secrets.h: secrets from AWS Secrets Manager, the Parameters and Secrets
 * Lambda Extension, or a local JSON file, cached in C for a bounded time
 * and shared by every run in the process. A secret's value never goes into
 * a log record or an error message. */
#ifndef JOBHOST_SECRETS_H
#define JOBHOST_SECRETS_H

#include <stddef.h>

#include <lua.h>

/* What went wrong, for error objects: type is "Secrets.<Reason>" (e.g.
 * Secrets.ResourceNotFoundException); message names the secret id. */
typedef struct {
  char type[64];
  char message[512];
} secrets_error;

/* libpq connection keywords built from a secret. keywords and values are
 * NULL-terminated arrays owned by the struct; free with
 * secrets_db_params_free. */
typedef struct {
  const char **keywords;
  const char **values;
  void *storage;
} secrets_db_params;

/* How hard to look for a secret's current value. */
typedef enum {
  SECRETS_CACHED = 0,  /* the cache when fresh, else fetch */
  SECRETS_REFRESH = 1, /* drop the cached value and fetch AWSCURRENT */
  SECRETS_PENDING = 2  /* fetch the AWSPENDING version (rotation) */
} secrets_mode;

/* Turns secret id into libpq keywords: host, port (number or string),
 * user (from username), password, dbname (default postgres), and sslmode /
 * sslrootcert as configured. Returns 0, or -1 with err filled. */
int secrets_db_params_get(const char *id, secrets_mode mode,
                          secrets_db_params *out, secrets_error *err);
void secrets_db_params_free(secrets_db_params *params);

/* Pushes ctx.secret(id)'s value: a table when the secret is a JSON object
 * or array, else the string (SecretBinary decoded). Raises an error object
 * of type Secrets.* naming the id. */
void secrets_push(lua_State *L, const char *id);

/* Forgets every cached secret (tests, and a process that wants fresh
 * values). */
void secrets_cache_clear(void);

#endif
