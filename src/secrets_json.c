/* secrets_json.c: a small, strict JSON reader for the secrets layer, which
 * must read answers and RDS secrets where no lua_State exists (the
 * database binding asks for connection keywords from C). It validates a
 * whole document, finds one member of the top-level object and hands
 * back its text untouched, so a port written 5432 stays "5432". */
#include "secrets_internal.h"

#include <stdlib.h>
#include <string.h>

#define SJSON_MAX_DEPTH 256

typedef struct {
  const char *p;
  const char *end;
} cursor;

static void skip_ws(cursor *c)
{
  while (c->p < c->end &&
         (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static int hex4(const char *p, unsigned *out)
{
  unsigned v = 0;
  int i;

  for (i = 0; i < 4; i++) {
    char ch = p[i];

    v <<= 4;
    if (ch >= '0' && ch <= '9')
      v |= (unsigned)(ch - '0');
    else if (ch >= 'a' && ch <= 'f')
      v |= (unsigned)(ch - 'a' + 10);
    else if (ch >= 'A' && ch <= 'F')
      v |= (unsigned)(ch - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* Steps over a string starting at its quote. Returns 0 or -1. */
static int skip_string(cursor *c)
{
  c->p++;
  while (c->p < c->end) {
    unsigned char ch = (unsigned char)*c->p;

    if (ch == '"') {
      c->p++;
      return 0;
    }
    if (ch < 0x20)
      return -1;
    if (ch == '\\') {
      unsigned u;

      if (c->p + 1 >= c->end)
        return -1;
      if (c->p[1] == 'u') {
        if (c->end - c->p < 6 || hex4(c->p + 2, &u))
          return -1;
        c->p += 6;
        continue;
      }
      if (!strchr("\"\\/bfnrt", c->p[1]))
        return -1;
      c->p += 2;
      continue;
    }
    c->p++;
  }
  return -1;
}

static int skip_digits(cursor *c)
{
  const char *start = c->p;

  while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
    c->p++;
  return c->p > start ? 0 : -1;
}

/* Steps over a number as RFC 8259 writes it. Returns 0 or -1. */
static int skip_number(cursor *c)
{
  if (c->p < c->end && *c->p == '-')
    c->p++;
  if (c->p < c->end && *c->p == '0')
    c->p++;
  else if (skip_digits(c))
    return -1;
  if (c->p < c->end && *c->p == '.') {
    c->p++;
    if (skip_digits(c))
      return -1;
  }
  if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
    c->p++;
    if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
      c->p++;
    if (skip_digits(c))
      return -1;
  }
  return 0;
}

static int skip_word(cursor *c, const char *word)
{
  size_t n = strlen(word);

  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
    return -1;
  c->p += n;
  return 0;
}

static int skip_value(cursor *c, int depth, sjson_span *span);

/* Steps over an object or array body after its opening bracket. */
static int skip_container(cursor *c, int depth, char close, int is_object)
{
  c->p++;
  skip_ws(c);
  if (c->p < c->end && *c->p == close) {
    c->p++;
    return 0;
  }
  for (;;) {
    if (is_object) {
      skip_ws(c);
      if (c->p >= c->end || *c->p != '"' || skip_string(c))
        return -1;
      skip_ws(c);
      if (c->p >= c->end || *c->p != ':')
        return -1;
      c->p++;
    }
    if (skip_value(c, depth + 1, NULL))
      return -1;
    skip_ws(c);
    if (c->p >= c->end)
      return -1;
    if (*c->p == close) {
      c->p++;
      return 0;
    }
    if (*c->p != ',')
      return -1;
    c->p++;
  }
}

/* Steps over one value (leading whitespace included); span, when given,
 * gets its kind and extent. */
static int skip_value(cursor *c, int depth, sjson_span *span)
{
  sjson_kind kind;
  const char *start;
  int rc;

  if (depth > SJSON_MAX_DEPTH)
    return -1;
  skip_ws(c);
  if (c->p >= c->end)
    return -1;
  start = c->p;
  switch (*c->p) {
  case '"':
    kind = SJSON_STRING;
    rc = skip_string(c);
    break;
  case '{':
    kind = SJSON_OBJECT;
    rc = skip_container(c, depth, '}', 1);
    break;
  case '[':
    kind = SJSON_ARRAY;
    rc = skip_container(c, depth, ']', 0);
    break;
  case 't':
    kind = SJSON_TRUE;
    rc = skip_word(c, "true");
    break;
  case 'f':
    kind = SJSON_FALSE;
    rc = skip_word(c, "false");
    break;
  case 'n':
    kind = SJSON_NULL;
    rc = skip_word(c, "null");
    break;
  default:
    kind = SJSON_NUMBER;
    rc = skip_number(c);
    break;
  }
  if (rc == 0 && span) {
    span->kind = kind;
    span->p = start;
    span->len = (size_t)(c->p - start);
  }
  return rc;
}

/* Whether the string span equals key once unescaped. */
static int key_equals(const sjson_span *s, const char *key)
{
  size_t n;
  char *k = sjson_string(s, &n);
  int eq = k && n == strlen(key) && memcmp(k, key, n) == 0;

  free(k);
  return eq;
}

int sjson_each(const char *text, size_t len, sjson_member_fn *each,
               void *arg, size_t *bad_at)
{
  cursor c = {text, text + len};

  skip_ws(&c);
  if (c.p >= c.end || *c.p != '{')
    goto bad;
  c.p++;
  skip_ws(&c);
  if (c.p < c.end && *c.p == '}') {
    c.p++;
    goto tail;
  }
  for (;;) {
    sjson_span k, v;

    if (skip_value(&c, 1, &k) || k.kind != SJSON_STRING)
      goto bad;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != ':')
      goto bad;
    c.p++;
    if (skip_value(&c, 1, &v))
      goto bad;
    each(&k, &v, arg);
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
      c.p++;
      break;
    }
    if (c.p >= c.end || *c.p != ',')
      goto bad;
    c.p++;
  }

tail:
  skip_ws(&c);
  if (c.p == c.end)
    return 0;
bad:
  if (bad_at)
    *bad_at = (size_t)(c.p - text);
  return -1;
}

int sjson_each_element(const sjson_span *array, sjson_element_fn *each,
                       void *arg)
{
  cursor c = {array->p, array->p + array->len};

  skip_ws(&c);
  if (c.p >= c.end || *c.p != '[')
    return -1;
  c.p++;
  skip_ws(&c);
  if (c.p < c.end && *c.p == ']')
    return 0;
  for (;;) {
    sjson_span v;

    if (skip_value(&c, 1, &v))
      return -1;
    each(&v, arg);
    skip_ws(&c);
    if (c.p >= c.end)
      return -1;
    if (*c.p == ']')
      return 0;
    if (*c.p != ',')
      return -1;
    c.p++;
  }
}

typedef struct {
  const char *key;
  sjson_span *val;
  int found;
} member_search;

static void match_member(const sjson_span *k, const sjson_span *v, void *arg)
{
  member_search *m = arg;

  if (key_equals(k, m->key)) {
    *m->val = *v;
    m->found = 1;
  }
}

int sjson_member_at(const char *text, size_t len, const char *key,
                    sjson_span *val, size_t *bad_at)
{
  member_search m = {key, val, 0};

  if (sjson_each(text, len, match_member, &m, bad_at) != 0)
    return -1;
  return m.found;
}

int sjson_member(const char *text, size_t len, const char *key,
                 sjson_span *val)
{
  return sjson_member_at(text, len, key, val, NULL);
}

/* Writes code point u as UTF-8 at out; returns the bytes written. */
static size_t put_utf8(char *out, unsigned u)
{
  if (u < 0x80) {
    out[0] = (char)u;
    return 1;
  }
  if (u < 0x800) {
    out[0] = (char)(0xC0 | (u >> 6));
    out[1] = (char)(0x80 | (u & 0x3F));
    return 2;
  }
  if (u < 0x10000) {
    out[0] = (char)(0xE0 | (u >> 12));
    out[1] = (char)(0x80 | ((u >> 6) & 0x3F));
    out[2] = (char)(0x80 | (u & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (u >> 18));
  out[1] = (char)(0x80 | ((u >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((u >> 6) & 0x3F));
  out[3] = (char)(0x80 | (u & 0x3F));
  return 4;
}

char *sjson_string(const sjson_span *s, size_t *out_len)
{
  const char *p = s->p + 1, *end = s->p + s->len - 1;
  char *out, *o;

  if (s->kind != SJSON_STRING || s->len < 2)
    return NULL;
  /* Unescaping never grows the text: \uXXXX (6 bytes) is at most 3 bytes
   * of UTF-8, a surrogate pair (12 bytes) 4. */
  out = malloc(s->len);
  if (!out)
    return NULL;
  o = out;
  while (p < end) {
    unsigned u, lo;

    if (*p != '\\') {
      *o++ = *p++;
      continue;
    }
    p++;
    switch (*p) {
    case 'b': *o++ = '\b'; p++; continue;
    case 'f': *o++ = '\f'; p++; continue;
    case 'n': *o++ = '\n'; p++; continue;
    case 'r': *o++ = '\r'; p++; continue;
    case 't': *o++ = '\t'; p++; continue;
    case 'u': break;
    default: *o++ = *p++; continue; /* " \ / */
    }
    if (hex4(p + 1, &u))
      goto bad;
    p += 5;
    if (u >= 0xD800 && u <= 0xDBFF) {
      if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) ||
          lo < 0xDC00 || lo > 0xDFFF)
        goto bad;
      u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
      p += 6;
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
      goto bad;
    }
    o += put_utf8(o, u);
  }
  *o = '\0';
  *out_len = (size_t)(o - out);
  return out;

bad:
  free(out);
  return NULL;
}

int sjson_put_string(char *buf, size_t cap, size_t *len, const char *s)
{
  static const char hex[] = "0123456789abcdef";
  size_t n = *len;

#define PUT(ch)                                                            \
  do {                                                                     \
    if (n + 1 >= cap)                                                      \
      return -1;                                                           \
    buf[n++] = (ch);                                                       \
  } while (0)

  PUT('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;

    if (ch == '"' || ch == '\\') {
      PUT('\\');
      PUT((char)ch);
    } else if (ch < 0x20) {
      PUT('\\');
      PUT('u');
      PUT('0');
      PUT('0');
      PUT(hex[ch >> 4]);
      PUT(hex[ch & 15]);
    } else {
      PUT((char)ch);
    }
  }
  PUT('"');
#undef PUT

  buf[n] = '\0';
  *len = n;
  return 0;
}
