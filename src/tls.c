/* tls.c: the run-time search for the CA bundle that tls.h documents. It
 * holds no state: each call looks again (two getenv calls and at most a
 * few stat calls, against a TLS handshake that costs far more), so a
 * bundle that appears or an override set before a call is honoured. */
#include "tls.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The environment variables that name a bundle, strongest first. */
static const char *const ca_env[] = {"JOBHOST_CA_FILE", "SSL_CERT_FILE",
                                     NULL};

/* Where distributions keep their bundle, the Lambda runtime's first. */
static const char *const ca_paths[] = {
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    NULL};

/* Whether path names a regular file (through symlinks) we may read. */
static int readable_file(const char *path)
{
  struct stat st;

  return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
         access(path, R_OK) == 0;
}

const char *tls_ca_file(void)
{
  const char *const *name;
  const char *const *path;

  for (name = ca_env; *name; name++) {
    const char *value = getenv(*name);

    if (value && *value)
      return value;
  }
  for (path = ca_paths; *path; path++)
    if (readable_file(*path))
      return *path;
  return NULL;
}
