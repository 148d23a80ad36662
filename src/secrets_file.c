/* secrets_file.c: secrets from a local JSON file (JOBHOST_SECRETS_FILE),
 * for work on a laptop or in tests: {"id": value, ...}. A string value is
 * the secret as it is; an object or array is the secret's JSON text, as
 * Secrets Manager would hold an RDS secret. The file is read at every
 * fetch, so editing it and refreshing is a rotation. It has no AWSPENDING
 * stage. */
#include "secrets_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE ((long)16 << 20)

/* Reads path whole into a NUL-terminated buffer. NULL on failure, with
 * errno set (EFBIG when over MAX_FILE). */
static char *slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long size;
  struct stat st;

  if (!f)
    return NULL;
  /* A folder opens, and seeks to a size of its own. */
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    goto out;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0)
    goto out;
  if (size > MAX_FILE) {
    errno = EFBIG;
    goto out;
  }
  buf = malloc((size_t)size + 1);
  if (!buf)
    goto out;
  *len = fread(buf, 1, (size_t)size, f);
  buf[*len] = '\0';

out:
  fclose(f);
  return buf;
}

int secrets_file_fetch(const secrets_query *q, secrets_value *out,
                       secrets_error *err)
{
  const char *path = getenv("JOBHOST_SECRETS_FILE");
  char *text = NULL;
  size_t len = 0;
  sjson_span v;
  size_t bad_at = 0;
  int found, rc = -1;

  memset(out, 0, sizeof *out);
  if (!path || !*path) {
    secrets_fail(err, "NotConfigured",
                 "secret %s: JOBHOST_SECRETS_FILE is not set", q->id);
    return -1;
  }
  if (strcmp(q->stage, "AWSCURRENT") != 0) {
    secrets_fail(err, "ResourceNotFoundException",
                 "secret %s: the secrets file holds no %s version", q->id,
                 q->stage);
    return -1;
  }
  text = slurp(path, &len);
  if (!text) {
    secrets_fail(err, "FileError", "secret %s: cannot read %s: %s", q->id,
                 path, strerror(errno));
    return -1;
  }

  found = sjson_member_at(text, len, q->id, &v, &bad_at);
  if (found < 0) {
    /* Where, by line and column, never what: the file holds secrets. */
    size_t i, line = 1, column = 1;

    for (i = 0; i < bad_at && i < len; i++) {
      if (text[i] == '\n') {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    secrets_fail(err, "FileError",
                 "secret %s: %s is not a well-formed JSON object: the "
                 "error is at line %zu, column %zu%s",
                 q->id, path, line, column,
                 bad_at >= len ? " (the text ends too soon)" : "");
    goto out;
  }
  if (!found) {
    secrets_fail(err, "ResourceNotFoundException",
                 "secret %s: not in %s", q->id, path);
    goto out;
  }
  if (v.kind == SJSON_STRING) {
    out->data = sjson_string(&v, &out->len);
  } else {
    out->data = malloc(v.len + 1);
    if (out->data) {
      memcpy(out->data, v.p, v.len);
      out->data[v.len] = '\0';
      out->len = v.len;
    }
  }
  if (!out->data) {
    secrets_fail(err, "OutOfMemory", "secret %s: out of memory", q->id);
    goto out;
  }
  rc = 0;

out:
  explicit_bzero(text, len);
  free(text);
  return rc;
}
