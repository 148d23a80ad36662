/* redact.c: the registry of values never to be shown, and the scrubber
 * the log sink and job outcomes use; the scan runs only when a value is
 * registered. The list has no fixed size: a warm Lambda process that
 * fetches new versions of its secrets for weeks, or a job that reads
 * hundreds, keeps every value hidden. A long text and a handful of forms
 * (most processes) are searched with memmem, one scan of the text a
 * form; otherwise the text is read once, each position looked up by its
 * first REDACT_MIN_LEN bytes in a hash index of the forms, so a text
 * costs the same with ten thousand values as with a hundred. */
#include "redact.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define REDACT_MARK "[redacted]"
/* Escaped forms registered beside a value: as a JSON string, as a JSON
 * string inside a JSON string, and once more. */
#define REDACT_ESCAPE_LEVELS 3
/* What the masks of redact_copy hold for a byte: shown, hidden where it
 * stands, or hidden with the whole JSON token it belongs to. */
enum { HIDE_NONE, HIDE_BYTE, HIDE_TOKEN };

/* When the index is used instead of one memmem a form: from INDEX_FROM
 * forms on, or for a text shorter than INDEX_BYTES_A_FORM bytes a form.
 * Measured here (bench/redact): memmem costs about 25 ns a form and a
 * form 0.045 ns a byte, the index 1.7 ns a byte whatever the forms; so a
 * log line is cheaper through the index from a few forms on, a 1 MB
 * result from about 40. */
#define INDEX_FROM 40
#define INDEX_BYTES_A_FORM 64

typedef struct {
  char *value;
  size_t len;
  uint32_t prefix; /* the first REDACT_MIN_LEN bytes */
  size_t next;     /* 1 + the next form with the same prefix; 0: none */
} known_value;

static known_value *known;
static size_t nknown, known_cap;

/* The index: open addressing by prefix, a slot holding 1 + the first
 * form with its prefix (0: empty), the others chained through next. At
 * most half full. */
static size_t *slots;
static size_t nslots;

static uint32_t prefix_of(const char *p)
{
  uint32_t w;

  memcpy(&w, p, sizeof w);
  return w;
}

static size_t slot_of(uint32_t prefix)
{
  return (size_t)((prefix * 2654435761u) >> 7) & (nslots - 1);
}

/* 1 + the first form whose prefix is prefix, or 0. */
static size_t chain_of(uint32_t prefix)
{
  size_t h;

  if (!nslots)
    return 0;
  for (h = slot_of(prefix); slots[h]; h = (h + 1) & (nslots - 1))
    if (known[slots[h] - 1].prefix == prefix)
      return slots[h];
  return 0;
}

/* Puts form i in the index (room is there). */
static void index_form(size_t i)
{
  size_t h = slot_of(known[i].prefix);

  while (slots[h] && known[slots[h] - 1].prefix != known[i].prefix)
    h = (h + 1) & (nslots - 1);
  known[i].next = slots[h];
  slots[h] = i + 1;
}

/* Makes room in the index for one more form, rebuilding it twice as
 * large when it would pass half full. Returns 0, or -1 (memory). */
static int index_reserve(void)
{
  size_t want = nslots ? nslots : 256, i;
  size_t *grown;

  while ((nknown + 1) * 2 > want)
    want *= 2;
  if (want == nslots)
    return 0;
  grown = calloc(want, sizeof *grown);
  if (!grown)
    return -1;
  free(slots);
  slots = grown;
  nslots = want;
  for (i = 0; i < nknown; i++)
    index_form(i);
  return 0;
}

/* Registers one form of a value; see redact_add. Returns 0, or -1 when
 * memory ran out. */
static int add_form(const char *value, size_t len)
{
  size_t i;
  char *copy;

  if (!value || len < REDACT_MIN_LEN)
    return 0;
  for (i = chain_of(prefix_of(value)); i; i = known[i - 1].next)
    if (known[i - 1].len == len &&
        memcmp(known[i - 1].value, value, len) == 0)
      return 0;
  if (index_reserve() != 0)
    return -1;
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
  known[nknown].prefix = prefix_of(copy);
  index_form(nknown);
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

/* Marks, in a calloc'd array of len bytes, every byte of s covered by
 * an occurrence of a registered value. Returns it, or NULL when s holds
 * none or memory ran out (*oom set). One scan of the text for each
 * value, so the work grows with the values times the text, not with the
 * hits. */
static unsigned char *hidden_bytes(const char *s, size_t len, int *oom)
{
  unsigned char *hide = NULL;
  size_t i, at;

  if (nknown >= INDEX_FROM || len < INDEX_BYTES_A_FORM * nknown) {
    for (at = 0; at + REDACT_MIN_LEN <= len; at++) {
      for (i = chain_of(prefix_of(s + at)); i; i = known[i - 1].next) {
        const known_value *k = &known[i - 1];

        if (k->len > len - at || memcmp(s + at, k->value, k->len) != 0)
          continue;
        if (!hide && !(hide = calloc(len, 1))) {
          *oom = 1;
          return NULL;
        }
        memset(hide + at, HIDE_BYTE, k->len);
      }
    }
    return hide;
  }
  for (i = 0; i < nknown; i++) {
    const char *p = s, *end = s + len, *hit;

    while (p < end &&
           (hit = memmem(p, (size_t)(end - p), known[i].value,
                         known[i].len)) != NULL) {
      at = (size_t)(hit - s);
      if (!hide && !(hide = calloc(len, 1))) {
        *oom = 1;
        return NULL;
      }
      memset(hide + at, HIDE_BYTE, known[i].len);
      p = hit + 1;
    }
  }
  return hide;
}

/* Writes s with each run of hidden bytes as one mark, and each token
 * marked HIDE_TOKEN (a number or a literal in JSON) as the mark in
 * quotes. Frees hide. */
static char *apply(const char *s, size_t len, unsigned char *hide,
                   size_t *outlen)
{
  static const char mark[] = REDACT_MARK;
  size_t i, n = 0, cap = len + 1;
  char *out;

  for (i = 0; i < len; i++)
    if (hide[i] && (i == 0 || hide[i - 1] != hide[i]))
      cap += sizeof mark + 1;
  out = malloc(cap);
  if (!out) {
    free(hide);
    return withheld(outlen);
  }
  for (i = 0; i < len; i++) {
    if (!hide[i]) {
      out[n++] = s[i];
    } else if (i == 0 || hide[i - 1] != hide[i]) {
      if (hide[i] == HIDE_TOKEN)
        out[n++] = '"';
      memcpy(out + n, mark, sizeof mark - 1);
      n += sizeof mark - 1;
      if (hide[i] == HIDE_TOKEN)
        out[n++] = '"';
    }
  }
  out[n] = '\0';
  *outlen = n;
  free(hide);
  return out;
}

char *redact_copy(const char *s, size_t len, size_t *outlen)
{
  int oom = 0;
  unsigned char *hide = hidden_bytes(s, len, &oom);

  if (!hide)
    return oom ? withheld(outlen) : NULL;
  return apply(s, len, hide, outlen);
}

/* The end of the JSON string whose opening quote is at s[i], just past
 * its closing quote, or 0 when it is not a well-formed string. */
static size_t string_end(const char *s, size_t len, size_t i)
{
  for (i++; i < len; i++) {
    if (s[i] == '"')
      return i + 1;
    if ((unsigned char)s[i] < 0x20)
      return 0;
    if (s[i] == '\\' && ++i == len)
      return 0;
  }
  return 0;
}

/* The length of the unit of string content at s[i] (before end) that
 * must be shown or hidden whole: an escape (a \u surrogate pair counts
 * as one), or one UTF-8 character. */
static size_t unit_len(const char *s, size_t i, size_t end)
{
  unsigned char c = (unsigned char)s[i];
  size_t n = 1;

  if (c == '\\') {
    if (i + 1 < end && s[i + 1] != 'u')
      return 2;
    n = i + 6 <= end ? 6 : end - i;
    /* A high surrogate and the low one after it are one character. */
    if (n == 6 && i + 12 <= end && (s[i + 2] == 'd' || s[i + 2] == 'D') &&
        s[i + 3] && strchr("89abAB", s[i + 3]) && s[i + 6] == '\\' &&
        s[i + 7] == 'u')
      n = 12;
    return n;
  }
  if (c >= 0xC0)
    while (i + n < end && ((unsigned char)s[i + n] & 0xC0) == 0x80)
      n++;
  return n;
}

/* The length of the JSON number, true, false or null at s (n bytes), or
 * 0 when there is none. A number's bytes are taken as they come: the
 * mask needs its extent, not its value. */
static size_t literal_len(const char *s, size_t n)
{
  static const char *const words[] = {"true", "false", "null"};
  size_t i, w;

  if (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
    for (i = 1; i < n && s[i] && strchr("+-.0123456789eE", s[i]); i++)
      ;
    return i;
  }
  for (w = 0; w < 3; w++) {
    size_t k = strlen(words[w]);

    if (k <= n && memcmp(s, words[w], k) == 0 &&
        (k == n || !isalnum((unsigned char)s[k])))
      return k;
  }
  return 0;
}

/* Fits the byte mask to JSON's tokens: the quotes and the punctuation
 * between tokens are shown, a string's hidden content is widened to whole
 * escapes and characters, and a number or literal with any hidden byte
 * is hidden as a token. Returns 0, or -1 when s is not a sequence of JSON
 * tokens (the byte mask is then used as it is). Only the tokens are read,
 * not the nesting: jobhost wrote the text, and the mask needs no more. */
static int fit_to_json(const char *s, size_t len, unsigned char *hide)
{
  size_t i = 0, j, end, u;

  while (i < len) {
    unsigned char c = (unsigned char)s[i];

    if (c && strchr(" \t\r\n{}[],:", c)) {
      hide[i++] = HIDE_NONE;
    } else if (c == '"') {
      end = string_end(s, len, i);
      if (!end)
        return -1;
      hide[i] = hide[end - 1] = HIDE_NONE;
      for (j = i + 1; j < end - 1; j += u) {
        u = unit_len(s, j, end - 1);
        if (memchr(hide + j, HIDE_BYTE, u))
          memset(hide + j, HIDE_BYTE, u);
      }
      i = end;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' ||
               c == 'n') {
      int any = 0;

      end = i + literal_len(s + i, len - i);
      if (end == i)
        return -1;
      for (j = i; j < end; j++)
        any |= hide[j];
      memset(hide + i, any ? HIDE_TOKEN : HIDE_NONE, end - i);
      i = end;
    } else {
      return -1;
    }
  }
  return 0;
}

char *redact_json_copy(const char *s, size_t len, size_t *outlen)
{
  int oom = 0;
  unsigned char *hide = hidden_bytes(s, len, &oom), *fitted;

  if (!hide)
    return oom ? withheld(outlen) : NULL;
  fitted = malloc(len);
  if (!fitted) {
    free(hide);
    return withheld(outlen);
  }
  memcpy(fitted, hide, len);
  if (fit_to_json(s, len, fitted) == 0) {
    free(hide);
    hide = fitted;
  } else {
    free(fitted);
  }
  return apply(s, len, hide, outlen);
}

void redact_clear(void)
{
  while (nknown > 0)
    free(known[--nknown].value);
  free(known);
  known = NULL;
  known_cap = 0;
  free(slots);
  slots = NULL;
  nslots = 0;
}
