/* secrets.h: secrets from AWS Secrets Manager, the Parameters and Secrets
 * Lambda Extension, or a local JSON file, cached in C for a bounded time
 * and shared by every run in the process. A secret's value never goes into
 * a log record or an error message.
 *
 * Configuration (environment, read at each lookup):
 *
 *   JOBHOST_SECRETS_PROVIDER  aws | extension | file. Default: file when
 *                             JOBHOST_SECRETS_FILE is set, extension when
 *                             PARAMETERS_SECRETS_EXTENSION_HTTP_PORT is set
 *                             (the extension layer's own setting), else aws.
 *   JOBHOST_SECRETS_FILE      a JSON object of secret id to value (a string,
 *                             or an object/array taken as its JSON text).
 *   JOBHOST_SECRETS_TTL       seconds a fetched secret is reused (default
 *                             300; 0 fetches every time; at most a year).
 *   AWS_MAX_ATTEMPTS          tries per lookup against throttling, 5xx and
 *                             network failures (default 5), never past the
 *                             run's deadline.
 *   AWS_REGION, AWS_DEFAULT_REGION    the region when the id is no ARN.
 *   AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL   endpoint override.
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *                             credentials; the token is also the extension's
 *                             X-Aws-Parameters-Secrets-Token.
 *   PARAMETERS_SECRETS_EXTENSION_HTTP_PORT   the extension's port (2773).
 *   JOBHOST_CA_FILE           CA bundle for TLS (see tls.h).
 *   JOBHOST_DB_SSLMODE, JOBHOST_DB_SSLROOTCERT   see secrets_db_params_get.
 */
#ifndef JOBHOST_SECRETS_H
#define JOBHOST_SECRETS_H

#include <stddef.h>
#include <stdint.h>

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

/* A secret's value: SecretString's bytes, or SecretBinary decoded. data is
 * NUL-terminated (len excludes the NUL) and owned by the struct; free with
 * secrets_value_free, which wipes it. */
typedef struct {
  char *data;
  size_t len;
  int binary;          /* it came from SecretBinary */
  char version_id[72]; /* VersionId when the provider tells, else "" */
} secrets_value;

/* Turns secret id into libpq keywords: host, port (number or string),
 * user (from username), password, dbname (default postgres), and sslmode /
 * sslrootcert as configured. Returns 0, or -1 with err filled.
 *
 * TLS: JOBHOST_DB_SSLMODE, when set, is the sslmode. Otherwise, when
 * JOBHOST_DB_SSLROOTCERT names a CA bundle (the RDS one, say), sslmode is
 * verify-full with that sslrootcert, which verifies an RDS host's
 * certificate and name; without a bundle an RDS or Aurora host
 * (*.rds.amazonaws.com[.cn]) gets require, and any other host libpq's own
 * default (PGSSLMODE, else prefer). Fields sslmode and sslrootcert in
 * the secret itself come before the defaults but after the variables.
 * A verifying sslmode left without an sslrootcert (and no PGSSLROOTCERT)
 * gets the CA bundle tls_ca_file() finds (tls.h). Waits no longer than
 * the process allows; see secrets_db_params_get_until to bound it by a
 * run's deadline. */
int secrets_db_params_get(const char *id, secrets_mode mode,
                          secrets_db_params *out, secrets_error *err);

/* secrets_db_params_get bounded by deadline_ms (epoch ms, 0 for none):
 * retries stop and the call fails with Secrets.Timeout rather than wait
 * past it. */
int secrets_db_params_get_until(const char *id, secrets_mode mode,
                                int64_t deadline_ms,
                                secrets_db_params *out, secrets_error *err);

/* Frees what params holds (wiping the password) and zeroes it. A zeroed
 * struct is fine. */
void secrets_db_params_free(secrets_db_params *params);

/* Looks a secret up through the configured provider and the cache, as
 * mode says, giving up at deadline_ms (epoch ms, 0 for none). Returns 0
 * with out filled (free with secrets_value_free), or -1 with err filled.
 * Never raises. */
int secrets_get(const char *id, secrets_mode mode, int64_t deadline_ms,
                secrets_value *out, secrets_error *err);

/* Frees and wipes v's data and zeroes it. */
void secrets_value_free(secrets_value *v);

/* Pushes ctx.secret(id)'s value: a table when the secret is a JSON object
 * or array, else the string (SecretBinary decoded). Raises an error object
 * of type Secrets.* naming the id. The wait is bounded by the run's
 * deadline (host_remaining_ms). */
void secrets_push(lua_State *L, const char *id);

/* Forgets every cached secret (tests, and a process that wants fresh
 * values). */
void secrets_cache_clear(void);

#endif
