/* redact.c: the registry of values never to be shown, and the scrubber
 * the log sink and job outcomes use. A handful of secrets live in most
 * processes, so a list and memmem are enough; the scan runs only when a
 * value is registered. The list has no fixed size: a warm Lambda process
 * that fetches new versions of its secrets for weeks, or a job that reads
 * hundreds, keeps every value hidden. */
#include "redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define REDACT_MARK "[redacted]"
/* Escaped forms registered beside a value: as a JSON string, as a JSON
 * string inside a JSON string, and once more. */
#define REDACT_ESCAPE_LEVELS 3

typedef struct {
  char *value;
  size_t len;
} known_value;

static known_value *known;
static size_t nknown, known_cap;

/* Registers one form of a value; see redact_add. Returns 0, or -1 when
 * memory ran out. */
static int add_form(const char *value, size_t len)
{
  size_t i;
  char *copy;

  if (!value || len < REDACT_MIN_LEN)
    return 0;
  for (i = 0; i < nknown; i++)
    if (known[i].len == len && memcmp(known[i].value, value, len) == 0)
      return 0;
  if (nknown == known_cap) {
    size_t cap = known_cap ? known_cap * 2 : 32;
    known_value *grown = realloc(known, cap * sizeof *known);

    if (!grown)
      return -1;
    known = grown;
    known_cap = cap;
  }
  copy = malloc(len);
  if (!copy)
    return -1;
  memcpy(copy, value, len);

  /* In any order: redact_copy hides every byte any value covers. */
  known[nknown].value = copy;
  known[nknown].len = len;
  nknown++;
  return 0;
}

/* A value shows in a JSON record or a quoted text field with its
 * quotes, backslashes and control characters escaped: that form is
 * registered too. Returns a malloc'd escaped copy, or NULL when the
 * value needs no escaping (or memory ran out). */
static char *json_escaped(const char *value, size_t len, size_t *outlen)
{
  char *out = malloc(len * 6 + 1);
  size_t i, n = 0;
  int changed = 0;

  if (!out)
    return NULL;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)value[i];
    const char *esc = NULL;

    /* Exactly as json.c writes a string. */
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    default: break;
    }
    if (esc) {
      memcpy(out + n, esc, 2);
      n += 2;
      changed = 1;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, 7, "\\u%04x", c);
      changed = 1;
    } else {
      out[n++] = (char)c;
    }
  }
  if (!changed) {
    free(out);
    return NULL;
  }
  out[n] = '\0';
  *outlen = n;
  return out;
}

int redact_add(const char *value, size_t len)
{
  char *form = NULL;
  int level, rc = add_form(value, len);
  const char *nul = value ? memchr(value, '\0', len) : NULL;

  /* A value with NUL bytes shows cut at a NUL wherever text passes
   * through C strings: each part between them is a form too. */
  if (nul) {
    const char *p = value, *end = value + len;

    while (p < end) {
      const char *stop = memchr(p, '\0', (size_t)(end - p));

      if (!stop)
        stop = end;
      if (redact_add(p, (size_t)(stop - p)) != 0)
        rc = -1;
      p = stop + 1;
    }
  }

  /* A job may encode a value itself (json.encode(ctx.secret(id))) and
   * return that text, which the result escapes once more: each level of
   * escaping, up to REDACT_ESCAPE_LEVELS, is a form of its own. */
  for (level = 0; value && level < REDACT_ESCAPE_LEVELS; level++) {
    size_t elen;
    char *escaped = json_escaped(form ? form : value, len, &elen);

    free(form);
    form = escaped;
    if (!form)
      break;
    len = elen;
    if (add_form(form, len) != 0)
      rc = -1;
  }
  free(form);
  return rc;
}

int redact_credential_name(const char *name, size_t len, int keys)
{
  static const char *const words[] = {"password", "passwd", "pwd", "secret",
                                      "token", "key", NULL};
  size_t i, w;

  for (w = 0; words[w]; w++) {
    size_t n = strlen(words[w]);

    if (!keys && strcmp(words[w], "key") == 0)
      continue;
    for (i = 0; i + n <= len; i++)
      if (strncasecmp(name + i, words[w], n) == 0)
        return 1;
  }
  return 0;
}

int redact_active(void)
{
  return nknown > 0;
}

/* What a text holding a secret becomes when there is no memory for its
 * redacted copy: the whole text is withheld (a JSON string, so that a
 * JSON result or field stays JSON). With not even this much memory the
 * process stops rather than show the text. */
static char *withheld(size_t *outlen)
{
  static const char mark[] = "\"" REDACT_MARK "\"";
  static const char fatal[] = "jobhost: out of memory while hiding a "
                              "secret's value; stopping\n";
  char *out = malloc(sizeof mark);

  if (!out) {
    ssize_t told = write(STDERR_FILENO, fatal, sizeof fatal - 1);

    (void)told;
    abort();
  }
  memcpy(out, mark, sizeof mark);
  *outlen = sizeof mark - 1;
  return out;
}

/* Every byte of s covered by an occurrence of a registered value is
 * hidden, and each run of hidden bytes becomes one mark: values that
 * overlap or touch are hidden whole. One scan of the text for each value,
 * so the work grows with the values times the text, not with the hits. */
char *redact_copy(const char *s, size_t len, size_t *outlen)
{
  unsigned char *hide = NULL;
  size_t i, n = 0, runs = 0, hidden = 0;
  char *out;

  for (i = 0; i < nknown; i++) {
    const char *p = s, *end = s + len, *hit;

    while (p < end &&
           (hit = memmem(p, (size_t)(end - p), known[i].value,
                         known[i].len)) != NULL) {
      size_t at = (size_t)(hit - s);

      if (!hide && !(hide = calloc(len, 1)))
        return withheld(outlen);
      memset(hide + at, 1, known[i].len);
      p = hit + 1;
    }
  }
  if (!hide)
    return NULL;
  for (i = 0; i < len; i++) {
    if (hide[i]) {
      hidden++;
      if (i == 0 || !hide[i - 1])
        runs++;
    }
  }
  out = malloc(len - hidden + runs * (sizeof REDACT_MARK - 1) + 1);
  if (!out) {
    free(hide);
    return withheld(outlen);
  }
  for (i = 0; i < len; i++) {
    if (!hide[i]) {
      out[n++] = s[i];
    } else if (i == 0 || !hide[i - 1]) {
      memcpy(out + n, REDACT_MARK, sizeof REDACT_MARK - 1);
      n += sizeof REDACT_MARK - 1;
    }
  }
  out[n] = '\0';
  *outlen = n;
  free(hide);
  return out;
}

void redact_clear(void)
{
  while (nknown > 0)
    free(known[--nknown].value);
  free(known);
  known = NULL;
  known_cap = 0;
}
