/* tls.h: where jobhost finds the CA certificates that verify TLS peers:
 * the AWS endpoints (through libcurl) and PostgreSQL servers (libpq's
 * sslrootcert).
 *
 * The binary is built on one distribution and run on another: the Lambda
 * zip carries Debian's libcurl and OpenSSL onto Amazon Linux 2023, whose
 * bundle is not where those libraries look by default. So the file is
 * found at run time, in this order:
 *
 *   1. $JOBHOST_CA_FILE       jobhost's own override
 *   2. $SSL_CERT_FILE         OpenSSL's conventional override
 *   3. /etc/pki/tls/certs/ca-bundle.crt
 *                             Amazon Linux 2023, RHEL, Fedora (the Lambda
 *                             provided.al2023 runtime)
 *   4. /etc/ssl/certs/ca-certificates.crt
 *                             Debian, Ubuntu, Alpine
 *   5. /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem
 *                             RHEL's extracted bundle
 *   6. /etc/ssl/ca-bundle.pem openSUSE
 *   7. /etc/ssl/cert.pem      Alpine, the BSDs
 *
 * An override (1 or 2) that is set and not empty is used as given, even
 * when the file is missing: a wrong override then fails the TLS handshake
 * loudly instead of quietly trusting some other bundle. The well-known
 * paths are taken only when they name a readable file. */
#ifndef JOBHOST_TLS_H
#define JOBHOST_TLS_H

/* The CA file to verify TLS peers with, by the search order above, or
 * NULL when no override is set and no well-known file exists (the TLS
 * libraries' compiled-in defaults then apply). The string is owned by the
 * environment or is a constant: do not free it, and do not keep it across
 * a setenv of the variables above. Safe to call from any thread; never
 * raises and never logs. */
const char *tls_ca_file(void);

/* Where the HTTPS client (libcurl) finds its CA certificates: a file
 * override (1 or 2 above) as a file; else a hashed certificate directory
 * ($JOBHOST_CA_DIR, $SSL_CERT_DIR, /etc/ssl/certs on Debian,
 * /etc/pki/ca-trust/extracted/pem/directory-hash on Amazon Linux 2023)
 * as a directory; else tls_ca_file(). A directory is preferred because
 * OpenSSL 3 reads a whole bundle file, about 140 certificates, at every
 * new TLS context (tens of milliseconds at a cold start), where from a
 * hashed directory it reads only the certificates a handshake needs.
 * Sets exactly one of *file and *dir (or neither: returns 0). */
int tls_ca(const char **file, const char **dir);

#endif
