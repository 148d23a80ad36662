/* tls.c: the run-time search for the CA bundle that tls.h documents. It
 * holds no state: each call looks again (two getenv calls and at most a
 * few stat calls, against a TLS handshake that costs far more), so a
 * bundle that appears or an override set before a call is honoured. */
#include "tls.h"

#include <dirent.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
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

/* The variables that name a hashed directory, strongest first. */
static const char *const dir_env[] = {"JOBHOST_CA_DIR", "SSL_CERT_DIR",
                                      NULL};

/* Hashed directories of the distributions, Debian's first. */
static const char *const dir_paths[] = {
    "/etc/ssl/certs",
    "/etc/pki/ca-trust/extracted/pem/directory-hash",
    NULL};

/* Whether dir holds at least one OpenSSL hash link (NAME.0). */
static int hashed_dir(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int found = 0;

  if (!d)
    return 0;
  while (!found && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    found = n > 2 && strcmp(e->d_name + n - 2, ".0") == 0;
  }
  closedir(d);
  return found;
}

int tls_ca(const char **file, const char **dir)
{
  const char *const *name;
  const char *const *path;

  *file = NULL;
  *dir = NULL;
  for (name = ca_env; *name; name++) {
    const char *value = getenv(*name);
    if (value && *value) {
      *file = value;
      return 1;
    }
  }
  for (name = dir_env; *name; name++) {
    const char *value = getenv(*name);
    if (value && *value) {
      *dir = value;
      return 1;
    }
  }
  for (path = dir_paths; *path; path++)
    if (hashed_dir(*path)) {
      *dir = *path;
      return 1;
    }
  *file = tls_ca_file();
  return *file != NULL;
}
