/* tls.c (test): the CA bundle search order of tls_ca_file. The overrides
 * are checked in this process's environment; the well-known paths are
 * checked against what this machine holds, computed here independently
 * of the order src/tls.c keeps. (The zip test checks Amazon Linux 2023's
 * path inside a root that holds only it.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls.h"

static int checks, failures;

static void expect_str(const char *what, const char *got, const char *want)
{
  checks++;
  if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0)) {
    printf("FAIL %s: got %s, want %s\n", what, got ? got : "(null)",
           want ? want : "(null)");
    failures++;
  } else {
    printf("ok   %s\n", what);
  }
}

static int is_file(const char *path)
{
  struct stat st;

  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int main(void)
{
  /* The order tls.h documents, which this test restates on purpose. */
  static const char *const documented[] = {
      "/etc/pki/tls/certs/ca-bundle.crt",
      "/etc/ssl/certs/ca-certificates.crt",
      "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
      "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem", NULL};
  const char *const *p;
  const char *first = NULL;

  for (p = documented; *p && !first; p++)
    if (is_file(*p))
      first = *p;

  unsetenv("JOBHOST_CA_FILE");
  unsetenv("SSL_CERT_FILE");
  expect_str("no override: the first well-known file", tls_ca_file(),
             first);

  setenv("SSL_CERT_FILE", "/nonexistent/openssl.pem", 1);
  expect_str("SSL_CERT_FILE is used as given", tls_ca_file(),
             "/nonexistent/openssl.pem");

  setenv("JOBHOST_CA_FILE", "/nonexistent/jobhost.pem", 1);
  expect_str("JOBHOST_CA_FILE comes before SSL_CERT_FILE", tls_ca_file(),
             "/nonexistent/jobhost.pem");

  setenv("JOBHOST_CA_FILE", "", 1);
  expect_str("an empty JOBHOST_CA_FILE is no override", tls_ca_file(),
             "/nonexistent/openssl.pem");

  setenv("SSL_CERT_FILE", "", 1);
  expect_str("empty overrides fall back to the well-known files",
             tls_ca_file(), first);

  /* A directory at a well-known path is no bundle: /etc/ssl/certs is a
   * directory on most machines and is not in the list; the search must
   * never return a directory. */
  checks++;
  if (tls_ca_file() && !is_file(tls_ca_file())) {
    printf("FAIL the file found is not a regular file\n");
    failures++;
  }

  /* The HTTPS client: a file override wins, then a directory override,
   * then a hashed directory of the system, then a bundle file. */
  {
    const char *file, *dir;
    char tmp[] = "/tmp/jobhost-tls-XXXXXX";

    setenv("SSL_CERT_FILE", "/nonexistent/openssl.pem", 1);
    setenv("JOBHOST_CA_DIR", "/nonexistent/dir", 1);
    tls_ca(&file, &dir);
    expect_str("a file override beats a directory", file,
               "/nonexistent/openssl.pem");
    expect_str("and no directory is set beside it", dir, NULL);

    unsetenv("SSL_CERT_FILE");
    tls_ca(&file, &dir);
    expect_str("JOBHOST_CA_DIR is used as given", dir, "/nonexistent/dir");
    expect_str("and no file is set beside it", file, NULL);

    unsetenv("JOBHOST_CA_DIR");
    if (mkdtemp(tmp)) {
      setenv("SSL_CERT_DIR", tmp, 1);
      tls_ca(&file, &dir);
      expect_str("SSL_CERT_DIR is used as given", dir, tmp);
      unsetenv("SSL_CERT_DIR");
      rmdir(tmp);
    }

    tls_ca(&file, &dir);
    checks++;
    if (!!file == !!dir) {
      printf("FAIL with no override exactly one of file and dir is set\n");
      failures++;
    }
  }

  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
