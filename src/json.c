/* json.c: the host's exact JSON encoder and decoder, and the Lua module
 * "json" over them (the contract is json.h).
 *
 * The rules, beyond what json.h states:
 *
 * - Numbers. A Lua integer is written with all its digits. A float is
 *   written with the shortest of %.15g, %.16g and %.17g that reads back as
 *   the same double, and is always recognisable as a float: when that text
 *   is all digits, ".0" is appended (3.0 -> "3.0", 2099999997690001.0 ->
 *   "2099999997690001.0"; 1e20 -> "1e+20"), as Lua's own tostring does.
 *   The decoder mirrors this: a number written without fraction or
 *   exponent is an integer when it fits in int64 (beyond that, a float);
 *   any other number is a float. So every value round-trips with its
 *   subtype, and {"port":5432} gives the integer 5432. NaN and the
 *   infinities cannot be encoded; a decoded number that overflows a double
 *   ("1e400") is an error.
 * - Tables. A table is an array when it carries the array mark (json.array,
 *   a decoded array, a query result) or when its keys are exactly 1..n,
 *   n > 0. A marked table with any other key is an error, never a silent
 *   loss. Any other table is an object: string keys as they are, integer
 *   keys as decimal strings ({[1]="a",[3]="c"} -> {"1":"a","3":"c"} and
 *   {1,2,x=3} -> {"1":1,"2":2,"x":3}); keys of other types are an error, as
 *   are two keys with the same text (1 and "1"). Keys are written in byte
 *   order of their text, except that the names listed in the metatable's
 *   __columns come first, in that order (query rows keep column order). An
 *   empty unmarked table is {}. json.array(t) marks t by giving it the
 *   shared array metatable (replacing any other); json.is_array(v) says
 *   whether json.encode writes v as an array.
 * - Strings must be valid UTF-8 (RFC 3629: no overlong forms, no
 *   surrogates). The encoder escapes '"', '\\' and control characters below
 *   0x20 (as \b \f \n \r \t or \u00XX) and nothing else; "/" stays as is.
 * - Null is the light userdata NULL, the same value as cjson.null.
 * - Nesting is limited to JSON_MAX_DEPTH levels both ways; a table that
 *   contains itself is a cycle error.
 * - Encoding errors read "json.encode: PATH: problem". PATH names the value
 *   in Lua terms: $ is the value given, .name or ["any key"] a string key,
 *   [3] an integer key or array index (1-based, as in Lua). A key longer
 *   than 40 bytes or with bytes that are not printable ASCII is shown as
 *   [<a key of N bytes>] (it may be a secret); long paths are shortened.
 *   No value ever appears in a message.
 * - Decoding is strict RFC 8259: one value of any type with optional
 *   whitespace around it; no comments, trailing commas, leading zeros,
 *   single quotes, BOM or raw control characters in strings. \u escapes
 *   are decoded to UTF-8, surrogate pairs joined; a lone surrogate is an
 *   error. Duplicate object keys: the last wins. Errors read
 *   "json.decode: problem at offset N", N being the number of bytes before
 *   the offending one; they never quote the input (it may be a secret).
 *
 * Memory: the text being built and the key lists being sorted start in
 * storage inside the caller's C frame, so a small encode allocates nothing
 * but its result string. When they outgrow it they move to memory from the
 * state's own allocator (so a host memory limit counts it), owned by a box
 * userdata that sits in a stack slot reserved at the start and marked
 * to-be-closed: a raised error frees it at once, through __close. */
#include "json.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* How deep arrays and objects may nest, encoding and decoding. */
#define JSON_MAX_DEPTH 1000

/* How many __columns names an encode call keeps at hand; for the rare
 * longer lists it makes a table from name to place. */
#define JSON_COLS_MAX 256
#define JSON_NO_RANK INT_MAX

/* Members a decoded array or object gathers before its table is made. */
#define JSON_BATCH 32

/* Storage inside the caller's frame before anything is allocated. */
#define JSON_TEXT_INIT 2048
#define JSON_KEYS_INIT 32

#define JSON_NORETURN __attribute__((noreturn))

/* Registry keys: their addresses are what matters. */
static const char json_array_mt_key = 'a';
static const char json_box_mt_key = 'b';

/* Byte classes shared by the encoder and the decoder's string scan:
 * 0 passes through, 1 needs attention in JSON ('"', '\\', control
 * characters), 2 starts a multi-byte UTF-8 sequence (or is invalid). */
static const unsigned char json_byte_class[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50 '\\' */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x90 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xa0 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xb0 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xc0 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xd0 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xe0 */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2  /* 0xf0 */
};

static const char json_hex[] = "0123456789abcdef";

/* The number of bytes at s, of at most n, that all have class 0, found
 * eight at a time: a word passes when none of its bytes is below 0x20,
 * a quote, a backslash or 0x80 and above. */
static size_t plain_run(const unsigned char *s, size_t n)
{
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  size_t i = 0;

  while (n - i >= 8) {
    uint64_t w, q, b;
    memcpy(&w, s + i, 8);
    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');
    if (((w - ones * 0x20) | (q - ones) | (b - ones) | w) & high) {
      /* Some byte may be special (the test has false alarms only on
       * bytes that are): finish this word bytewise. */
      break;
    }
    i += 8;
  }
  while (i < n && json_byte_class[s[i]] == 0)
    i++;
  return i;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at s (s[0] >= 0x80), of at most
 * n bytes, or 0 when it is not valid: a stray continuation byte, a
 * truncated sequence, an overlong form, a surrogate or a code point above
 * U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
  unsigned lo = 0x80, hi = 0xbf;
  unsigned c = s[0];
  size_t len;

  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4;
  else
    return 0;
  if (n < len)
    return 0;

  /* The second byte carries the range limits that rule out overlong
   * forms, surrogates and code points past U+10FFFF. */
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  return len;
}

/* Writes code point cp (at most U+10FFFF, not a surrogate) as UTF-8 into
 * out; returns the number of bytes (1 to 4). */
static size_t utf8_encode(unsigned long cp, char *out)
{
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* ---- numbers as text ------------------------------------------------- */

/* "00" to "99", for writing integers two digits at a time. */
static const char json_digit_pairs[] =
  "00010203040506070809101112131415161718192021222324252627282930313233"
  "34353637383940414243444546474849505152535455565758596061626364656667"
  "6869707172737475767778798081828384858687888990919293949596979899";

/* Writes v in decimal into out (room for 21 bytes); returns the length.
 * INT64_MIN is handled by working on the unsigned magnitude. */
static size_t format_integer(lua_Integer v, char *out)
{
  char tmp[24];
  char *p = tmp + sizeof tmp;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  size_t n;

  while (u >= 100) {
    const char *pair = json_digit_pairs + 2 * (u % 100);
    u /= 100;
    *--p = pair[1];
    *--p = pair[0];
  }
  if (u >= 10) {
    *--p = json_digit_pairs[2 * u + 1];
    *--p = json_digit_pairs[2 * u];
  } else {
    *--p = (char)('0' + u);
  }
  if (v < 0)
    *--p = '-';

  n = (size_t)(tmp + sizeof tmp - p);
  memcpy(out, p, n);
  return n;
}

/* Writes the finite double d into out (room for 32 bytes) as the shortest
 * of %.15g, %.16g, %.17g that reads back the same, with '.' as decimal
 * point whatever the locale, and ".0" appended when the text would read
 * as an integer. Returns the length. */
static size_t format_float(double d, char *out)
{
  int n = 0;
  size_t len;

  /* The read-back happens before the decimal point is normalised, so
   * both sides use the same locale; %.17g always reads back exactly. */
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(out, 32, "%.*g", prec, d);
    if (prec == 17 || strtod(out, NULL) == d)
      break;
  }
  len = n > 0 && n < 32 ? (size_t)n : 0;

  /* %g writes only digits, a sign, 'e' and the decimal point, so
   * whatever else is there is a locale's decimal point. */
  for (size_t i = 0; i < len; i++) {
    char c = out[i];
    if (!(c >= '0' && c <= '9') && c != '-' && c != '+' && c != 'e')
      out[i] = '.';
  }
  if (strspn(out, "-0123456789") == len) {
    out[len++] = '.';
    out[len++] = '0';
  }
  return len;
}

/* ---- storage: frame first, then a to-be-closed box ------------------- */

/* A member of an object (or array) being written: its key, and where its
 * text went, so that the members can be put in order afterwards. */
typedef struct {
  const char *s;     /* a string key (anchored by its table), or NULL */
  size_t len;        /* the key's text length */
  lua_Integer i;     /* an integer key */
  int rank;          /* its place in __columns, or JSON_NO_RANK */
  size_t at;         /* where the member's text starts */
  size_t value;      /* where its value starts */
  size_t end;        /* where it ends */
  char digits[24];   /* an integer key as decimal text */
} json_key;

/* The heap memory owned by the box userdata; __close and __gc free it. */
typedef struct {
  lua_Alloc alloc;
  void *ud;
  char *text;
  size_t text_cap;
  json_key *keys;
  size_t keys_cap;
} json_box;

/* The growing text and key list of one encode or decode call. */
typedef struct {
  lua_State *L;
  int slot;          /* stack slot reserved for the box */
  json_box *box;     /* NULL while nothing is on the heap */
  char *text;
  size_t len;
  size_t cap;
  json_key *keys;
  size_t nkeys;
  size_t keys_cap;
  char text_init[JSON_TEXT_INIT];
  json_key keys_init[JSON_KEYS_INIT];
} json_store;

/* __close and __gc of the box: frees what it holds, once. */
static int box_release(lua_State *L)
{
  json_box *b = lua_touserdata(L, 1);

  if (b->text != NULL)
    b->alloc(b->ud, b->text, b->text_cap, 0);
  if (b->keys != NULL)
    b->alloc(b->ud, b->keys, b->keys_cap * sizeof(json_key), 0);
  b->text = NULL;
  b->keys = NULL;
  return 0;
}

/* Pushes the metatable of registry entry key, creating it with the given
 * __name (and, for the box, its release functions) the first time. */
static void push_metatable(lua_State *L, const char *key, const char *name)
{
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TNIL)
    return;
  lua_pop(L, 1);

  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  if (key == &json_box_mt_key) {
    lua_pushcfunction(L, box_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, box_release);
    lua_setfield(L, -2, "__close");
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Pushes the shared array metatable, the mark of arrays. */
static void push_array_mt(lua_State *L)
{
  push_metatable(L, &json_array_mt_key, "json.array");
}

/* Reserves the box slot on top of the stack and starts in frame storage. */
static void store_init(json_store *st, lua_State *L)
{
  lua_pushnil(L);
  st->L = L;
  st->slot = lua_gettop(L);
  st->box = NULL;
  st->text = st->text_init;
  st->len = 0;
  st->cap = sizeof st->text_init;
  st->keys = st->keys_init;
  st->nkeys = 0;
  st->keys_cap = JSON_KEYS_INIT;
}

/* Creates the box in the reserved slot on first need. The metatable is
 * set before anything can raise, and the slot becomes to-be-closed. */
static json_box *store_box(json_store *st)
{
  lua_State *L = st->L;
  json_box *b;

  if (st->box != NULL)
    return st->box;
  luaL_checkstack(L, 3, "json");
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->alloc = lua_getallocf(L, &b->ud);
  push_metatable(L, &json_box_mt_key, "json.buffer");
  lua_setmetatable(L, -2);
  lua_replace(L, st->slot);
  lua_toclose(L, st->slot);
  st->box = b;
  return b;
}

/* Moves a block of the store (text or keys) to new_cap bytes of heap:
 * ptr is the block, init the frame storage it may still be, used the
 * bytes in use. Raises on failure, leaving the old block with its owner
 * (the frame, or the box that frees it). */
static void *store_realloc(json_store *st, void *ptr, const void *init,
                           size_t used, size_t old_cap, size_t new_cap)
{
  json_box *b = store_box(st);
  void *p;

  if (ptr == init) {
    p = b->alloc(b->ud, NULL, 0, new_cap);
    if (p != NULL)
      memcpy(p, init, used);
  } else {
    p = b->alloc(b->ud, ptr, old_cap, new_cap);
  }
  if (p == NULL)
    luaL_error(st->L, "json: not enough memory");
  return p;
}

/* Makes room for need more bytes of text. */
static void store_grow_text(json_store *st, size_t need)
{
  size_t cap = st->cap;

  if (need > SIZE_MAX / 2 - st->len)
    luaL_error(st->L, "json: text too large");
  while (cap < st->len + need)
    cap *= 2;
  st->text = store_realloc(st, st->text, st->text_init, st->len, st->cap,
                           cap);
  st->cap = cap;
  st->box->text = st->text;
  st->box->text_cap = cap;
}

/* Returns room for need more bytes of text at st->text + st->len. */
static inline char *store_reserve(json_store *st, size_t need)
{
  if (st->cap - st->len < need)
    store_grow_text(st, need);
  return st->text + st->len;
}

static inline void store_put(json_store *st, const char *s, size_t n)
{
  memcpy(store_reserve(st, n), s, n);
  st->len += n;
}

static inline void store_putc(json_store *st, char c)
{
  *store_reserve(st, 1) = c;
  st->len++;
}

/* Appends an entry to the key list and returns it. */
static json_key *store_push_key(json_store *st)
{
  if (st->nkeys == st->keys_cap) {
    size_t cap = st->keys_cap * 2;
    if (cap > SIZE_MAX / sizeof(json_key))
      luaL_error(st->L, "json: too many keys");
    st->keys = store_realloc(st, st->keys, st->keys_init,
                             st->nkeys * sizeof(json_key),
                             st->keys_cap * sizeof(json_key),
                             cap * sizeof(json_key));
    st->keys_cap = cap;
    st->box->keys = st->keys;
    st->box->keys_cap = cap;
  }
  return &st->keys[st->nkeys++];
}

/* Replaces the reserved slot (and everything above it) by the value on
 * top of the stack, freeing the heap part at once. */
static void store_finish(json_store *st)
{
  lua_State *L = st->L;

  if (st->box != NULL)
    lua_closeslot(L, st->slot);
  lua_replace(L, st->slot);
  lua_settop(L, st->slot);
}

/* ---- the encoder ------------------------------------------------------- */

/* One open table on the way from the value given to the current one. */
typedef struct {
  const void *table; /* for cycle detection */
  const char *key;   /* the string key being written, or NULL */
  size_t key_len;
  lua_Integer index; /* the integer key or index being written */
} json_frame;

/* A name of the __columns list being followed. */
typedef struct {
  const char *s;     /* anchored by the list */
  size_t len;
  int plain;         /* written between quotes as it is */
} json_column;

/* The state of one json_encode call (it lives in the caller's frame). */
typedef struct {
  lua_State *L;
  json_store st;
  int mt_slot;              /* the array metatable */
  int columns_slot;         /* the string "__columns" */
  int ranks_slot;           /* a long __columns list as name -> place */
  int depth;                /* open tables */
  const void *cols_table;   /* the __columns list cached in cols */
  int cols_depth;           /* the depth of the table it was loaded for */
  int ncols;                /* its length, or -1 when too long to cache */
  json_column cols[JSON_COLS_MAX];
  int by_rank_ready;          /* how much of by_rank has been cleared */
  int by_rank[JSON_COLS_MAX]; /* members by column place, or -1 */
  int order[JSON_COLS_MAX];   /* members in column order */
  size_t hints;               /* how many of hint are set */
  int hint[JSON_COLS_MAX];    /* the place found for the nth member of
                                 the last row (rows share a shape) */
  json_frame frames[JSON_MAX_DEPTH];
} json_encoder;

/* Appends to a fixed buffer, dropping what does not fit. */
typedef struct {
  char b[1024];
  size_t n;
} json_msg;

static void msg_put(json_msg *m, const char *s, size_t n)
{
  if (n > sizeof m->b - 1 - m->n)
    n = sizeof m->b - 1 - m->n;
  memcpy(m->b + m->n, s, n);
  m->n += n;
  m->b[m->n] = '\0';
}

static void msg_puts(json_msg *m, const char *s)
{
  msg_put(m, s, strlen(s));
}

/* Appends one path step: .name for identifier-like keys, ["..."] for
 * other printable keys of up to 40 bytes, [<a key of N bytes>] for the
 * rest, [i] for integer keys. */
static void msg_step(json_msg *m, const json_frame *f)
{
  const unsigned char *k = (const unsigned char *)f->key;
  size_t n = f->key_len, i;
  int ident;
  char tmp[32];

  if (k == NULL) {
    tmp[0] = '[';
    n = format_integer(f->index, tmp + 1) + 1;
    tmp[n++] = ']';
    msg_put(m, tmp, n);
    return;
  }

  ident = n > 0 && n <= 40 && !(k[0] >= '0' && k[0] <= '9');
  for (i = 0; i < n && ident; i++)
    ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
            (k[i] >= '0' && k[i] <= '9') || k[i] == '_';
  if (ident) {
    msg_puts(m, ".");
    msg_put(m, f->key, n);
    return;
  }

  /* A key the message could only show in part or escaped (longer than
   * 40 bytes, or not printable ASCII) is not shown: it may be a secret's
   * value a job made a key, and a part or an escaped form of it is beyond
   * what redaction can recognise. */
  for (i = 0; i < n; i++)
    if (k[i] < 0x20 || k[i] >= 0x7f)
      break;
  if (n > 40 || i < n) {
    int len = snprintf(tmp, sizeof tmp, "[<a key of %zu byte%s>]", n,
                       n == 1 ? "" : "s");
    msg_put(m, tmp, (size_t)len);
    return;
  }
  msg_puts(m, "[\"");
  for (i = 0; i < n; i++) {
    if (k[i] == '"' || k[i] == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)k[i];
      msg_put(m, tmp, 2);
    } else {
      msg_put(m, (const char *)k + i, 1);
    }
  }
  msg_puts(m, "\"]");
}

/* Raises "json.encode: PATH: what", PATH made of the first nframes
 * frames; a long path keeps its first and last ten steps. */
JSON_NORETURN static void encode_fail(json_encoder *e, int nframes,
                                      const char *what)
{
  json_msg m;

  m.n = 0;
  m.b[0] = '\0';
  msg_puts(&m, "$");
  for (int i = 0; i < nframes; i++) {
    if (nframes > 20 && i == 10) {
      msg_puts(&m, "...");
      i = nframes - 10;
    }
    msg_step(&m, &e->frames[i]);
  }
  lua_pushfstring(e->L, "json.encode: %s: %s", m.b, what);
  lua_error(e->L);
  __builtin_unreachable();
}

/* Writes s as a JSON string. Returns 1, or 0 when s is not valid UTF-8
 * (the text written so far is then left as it is). */
static int encode_string(json_store *st, const char *str, size_t len)
{
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, run = 0;
  char *out;

  /* Room for the quotes and every byte once; escapes reserve more. */
  out = store_reserve(st, len + 2);
  *out = '"';
  st->len++;

  for (;;) {
    unsigned char c;

    i += plain_run(s + i, len - i);
    if (i == len)
      break;
    c = s[i];
    if (json_byte_class[c] == 2) {
      size_t n = utf8_sequence(s + i, len - i);
      if (n == 0)
        return 0;
      i += n;
      continue;
    }

    /* A byte to escape: flush the run before it, then write the escape
     * in its place (reserving the extra room the escape takes). */
    memcpy(st->text + st->len, s + run, i - run);
    st->len += i - run;
    out = store_reserve(st, 6 + (len - i) + 1);
    out[0] = '\\';
    switch (c) {
    case '"': out[1] = '"'; st->len += 2; break;
    case '\\': out[1] = '\\'; st->len += 2; break;
    case '\b': out[1] = 'b'; st->len += 2; break;
    case '\f': out[1] = 'f'; st->len += 2; break;
    case '\n': out[1] = 'n'; st->len += 2; break;
    case '\r': out[1] = 'r'; st->len += 2; break;
    case '\t': out[1] = 't'; st->len += 2; break;
    default:
      memcpy(out + 1, "u00", 3);
      out[4] = json_hex[c >> 4];
      out[5] = json_hex[c & 0xf];
      st->len += 6;
      break;
    }
    run = ++i;
  }

  memcpy(st->text + st->len, s + run, len - run);
  st->len += len - run;
  st->text[st->len++] = '"';
  return 1;
}

/* Writes a string key of the innermost open table (already in its frame,
 * for the path) and the colon after it. */
static void encode_key(json_encoder *e, const char *s, size_t len)
{
  if (!encode_string(&e->st, s, len))
    encode_fail(e, e->depth, "key is not valid UTF-8");
  store_putc(&e->st, ':');
}

static void encode_value(json_encoder *e, int idx);

/* Tries the common array: keys that come in traversal order as 1, 2, ...
 * n. Writes it and returns 1, or rolls back what it wrote and returns 0
 * when a key breaks the sequence. An empty table is written here too. */
static int encode_in_order(json_encoder *e, int t, int marked)
{
  lua_State *L = e->L;
  json_frame *f = &e->frames[e->depth - 1];
  size_t mark = e->st.len;
  lua_Integer n = 0;

  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) != n + 1) {
      lua_pop(L, 2);
      e->st.len = mark;
      return 0;
    }
    store_putc(&e->st, n == 0 ? '[' : ',');
    f->key = NULL;
    f->index = ++n;
    encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }

  if (n > 0)
    store_putc(&e->st, ']');
  else
    store_put(&e->st, marked ? "[]" : "{}", 2);
  return 1;
}

/* Orders two members of an object: columns first in __columns order,
 * then the others by their key text, bytewise. */
static int key_compare(const json_key *a, const json_key *b)
{
  const char *sa = a->s != NULL ? a->s : a->digits;
  const char *sb = b->s != NULL ? b->s : b->digits;
  size_t n = a->len < b->len ? a->len : b->len;
  int r;

  if (a->rank != b->rank)
    return a->rank < b->rank ? -1 : 1;
  r = memcmp(sa, sb, n);
  if (r != 0)
    return r;
  return (a->len > b->len) - (a->len < b->len);
}

static int key_compare_q(const void *a, const void *b)
{
  return key_compare(a, b);
}

static int index_compare_q(const void *a, const void *b)
{
  lua_Integer x = ((const json_key *)a)->i, y = ((const json_key *)b)->i;

  return (x > y) - (x < y);
}

/* Sorts n members, by key or by integer index: insertion sort for the
 * short lists objects usually have, qsort beyond. */
static void sort_keys(json_key *k, size_t n, int by_index)
{
  if (n > 16) {
    qsort(k, n, sizeof *k, by_index ? index_compare_q : key_compare_q);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    json_key tmp = k[i];
    size_t j = i;
    while (j > 0 && (by_index ? index_compare_q(&k[j - 1], &tmp)
                              : key_compare(&k[j - 1], &tmp)) > 0) {
      k[j] = k[j - 1];
      j--;
    }
    k[j] = tmp;
  }
}

/* Raises for the key at idx, of a type no object key can have (a float,
 * a boolean, a table...), naming its type. */
JSON_NORETURN static void encode_bad_key(json_encoder *e, int idx)
{
  char what[64];

  if (lua_type(e->L, idx) == LUA_TNUMBER)
    snprintf(what, sizeof what, "table key %.17g is not an integer",
             (double)lua_tonumber(e->L, idx));
  else
    snprintf(what, sizeof what, "table key of type %s",
             luaL_typename(e->L, idx));
  encode_fail(e, e->depth - 1, what);
}

/* Raises for __columns[i] of the innermost table, not a string. */
JSON_NORETURN static void encode_bad_column(json_encoder *e, lua_Integer i)
{
  char what[64];

  snprintf(what, sizeof what, "__columns[%lld] is not a string",
           (long long)i);
  encode_fail(e, e->depth - 1, what);
}

/* Makes the __columns list cols the one at hand: its names are kept in
 * e->cols for the rest of the call (query rows share one list); a list
 * too long for that becomes a table from name to place instead. */
static void columns_load(json_encoder *e, int cols)
{
  lua_State *L = e->L;
  const void *p = lua_topointer(L, cols);
  lua_Unsigned m;

  e->cols_depth = e->depth;
  if (p == e->cols_table)
    return;
  m = lua_rawlen(L, cols);
  e->cols_table = p;
  e->ncols = -1;
  if (m > JSON_COLS_MAX) {
    lua_createtable(L, 0, m > INT_MAX ? INT_MAX : (int)m);
    for (lua_Unsigned j = 1; j <= m; j++) {
      if (lua_rawgeti(L, cols, (lua_Integer)j) != LUA_TSTRING) {
        e->cols_table = NULL;
        encode_bad_column(e, (lua_Integer)j);
      }
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TNIL && j <= INT_MAX) {
        lua_pop(L, 1);
        lua_pushinteger(L, (lua_Integer)j - 1);
        lua_rawset(L, -3);
      } else {
        lua_pop(L, 2);
      }
    }
    lua_replace(L, e->ranks_slot);
    return;
  }

  for (int j = 0; j < (int)m; j++) {
    json_column *c = &e->cols[j];
    if (lua_rawgeti(L, cols, j + 1) != LUA_TSTRING) {
      e->cols_table = NULL;
      encode_bad_column(e, j + 1);
    }
    c->s = lua_tolstring(L, -1, &c->len);
    c->plain = plain_run((const unsigned char *)c->s, c->len) == c->len;
    lua_pop(L, 1);
  }
  e->ncols = (int)m;
}

/* Loads cols again when a nested row brought its own list meanwhile;
 * returns 1. */
static int columns_again(json_encoder *e, int cols)
{
  if (e->cols_depth != e->depth)
    columns_load(e, cols);
  return 1;
}

/* The place of the key s, the nth member of its table, in the
 * __columns list cols (its first mention), or JSON_NO_RANK. Rows of one
 * result traverse their keys in the same order, so the place found for
 * the nth member of the last row is tried first; names usually match by
 * address, being interned. */
static int column_rank(json_encoder *e, int cols, const char *s, size_t len,
                       size_t nth)
{
  lua_State *L = e->L;
  int rank = JSON_NO_RANK, j;

  columns_again(e, cols);
  if (nth < e->hints && (j = e->hint[nth]) < e->ncols && e->cols[j].s == s)
    return j;
  for (j = 0; j < e->ncols; j++) {
    const json_column *c = &e->cols[j];
    if (c->len == len && (c->s == s || memcmp(c->s, s, len) == 0)) {
      for (; e->hints <= nth && e->hints < JSON_COLS_MAX; e->hints++)
        e->hint[e->hints] = 0;
      if (nth < e->hints)
        e->hint[nth] = j;
      return j;
    }
  }
  if (e->ncols >= 0)
    return JSON_NO_RANK;

  lua_pushlstring(L, s, len);
  if (lua_rawget(L, e->ranks_slot) == LUA_TNUMBER)
    rank = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return rank;
}

/* Writes the key of member k and its colon; the key is in its frame
 * already, for the path. */
static void encode_member_key(json_encoder *e, const json_key *k)
{
  json_store *st = &e->st;
  const char *s = k->s != NULL ? k->s : k->digits;
  char *out;

  if (k->s != NULL && !(k->rank < e->ncols && e->cols[k->rank].plain)) {
    encode_key(e, k->s, k->len);
    return;
  }
  out = store_reserve(st, k->len + 3);
  out[0] = '"';
  memcpy(out + 1, s, k->len);
  out[k->len + 1] = '"';
  out[k->len + 2] = ':';
  st->len += k->len + 3;
}

/* Rewrites the members of a table, written from start on in traversal
 * order, in the order of their entries from the key list (or of the
 * entry numbers in order, when given): as an array of their values, or
 * as an object. The text is copied once past its end and written back,
 * so the two never overlap. */
static void reorder_members(json_store *st, size_t from, size_t start,
                            int array, const int *order)
{
  size_t size = st->len - start, tail, n = st->nkeys - from;
  char *text;

  store_reserve(st, size + 1);
  text = st->text;
  tail = st->len;
  memcpy(text + tail, text + start, size);

  st->len = start;
  text[st->len++] = array ? '[' : '{';
  for (size_t j = 0; j < n; j++) {
    const json_key *k = &st->keys[from + (order ? (size_t)order[j] : j)];
    size_t at = array ? k->value : k->at;
    if (j > 0)
      text[st->len++] = ',';
    memcpy(text + st->len, text + tail + (at - start), k->end - at);
    st->len += k->end - at;
  }
  text[st->len++] = array ? ']' : '}';
}

/* Puts the count members from the key list's entry from on in column
 * order, when all of them are columns, into e->order; returns 0 when
 * some are not (or two share a column). */
static int order_by_rank(json_encoder *e, size_t from, size_t count)
{
  const json_key *k = e->st.keys + from;
  size_t n = 0, j;
  int ok = 1;

  for (; e->by_rank_ready < e->ncols; e->by_rank_ready++)
    e->by_rank[e->by_rank_ready] = -1;
  for (j = 0; j < count && ok; j++) {
    int r = k[j].rank;
    ok = r < e->ncols && e->by_rank[r] < 0;
    if (ok)
      e->by_rank[r] = (int)j;
  }
  /* Collect in column order, leaving by_rank all -1 again. */
  for (int r = 0; r < e->ncols; r++) {
    if (e->by_rank[r] >= 0) {
      e->order[n++] = e->by_rank[r];
      e->by_rank[r] = -1;
    }
  }
  return ok;
}

/* Writes a table whose keys do not come as 1..n in traversal order (an
 * object, mostly). One pass writes each member as it comes and notes
 * where; then the table is put out as an array when its keys are exactly
 * 1..n, else as an object in key order, reordering the text only when
 * the traversal order was not that order already. */
static void encode_members(json_encoder *e, int t, int marked, int cols)
{
  lua_State *L = e->L;
  json_store *st = &e->st;
  json_frame *f = &e->frames[e->depth - 1];
  size_t from = st->nkeys, start = st->len, count = 0;
  lua_Integer max = 0;
  int sequence = 1, ordered = 1;

  if (cols)
    columns_load(e, cols);
  store_putc(st, '{');

  lua_pushnil(L);
  while (lua_next(L, t)) {
    json_key *k = store_push_key(st);

    if (count > 0)
      store_putc(st, ',');
    k->at = st->len;
    if (lua_type(L, -2) == LUA_TSTRING) {
      k->s = lua_tolstring(L, -2, &k->len);
      f->key = k->s;
      f->key_len = k->len;
      sequence = 0;
    } else if (lua_isinteger(L, -2)) {
      k->s = NULL;
      k->i = lua_tointeger(L, -2);
      k->len = format_integer(k->i, k->digits);
      f->key = NULL;
      f->index = k->i;
      if (k->i < 1)
        sequence = 0;
      else if (k->i > max)
        max = k->i;
    } else {
      encode_bad_key(e, -2);
    }
    k->rank = cols ? column_rank(e, cols, k->s != NULL ? k->s : k->digits,
                                 k->len, count)
                   : JSON_NO_RANK;
    encode_member_key(e, k);
    k->value = st->len;

    /* Nested tables use the key list too and may move it. */
    encode_value(e, lua_gettop(L));
    k = &st->keys[from + count];
    k->end = st->len;
    if (count > 0 && ordered && key_compare(k - 1, k) >= 0)
      ordered = 0;
    lua_pop(L, 1);
    count++;
  }

  if (count == 0) {
    st->len = start;
    store_put(st, marked ? "[]" : "{}", 2);
  } else if (sequence && (lua_Integer)count == max) {
    sort_keys(st->keys + from, count, 1);
    reorder_members(st, from, start, 1, NULL);
  } else if (marked) {
    encode_fail(e, e->depth - 1,
                "array (json.array) has keys other than 1..n");
  } else if (ordered) {
    store_putc(st, '}');
  } else if (cols && columns_again(e, cols) &&
             order_by_rank(e, from, count)) {
    /* A query row: its columns, in order, with nothing else. */
    reorder_members(st, from, start, 0, e->order);
  } else {
    json_key *k = st->keys + from;
    sort_keys(k, count, 0);
    for (size_t j = 1; j < count; j++) {
      if (key_compare(&k[j - 1], &k[j]) == 0) {
        /* Only an integer key and a string key share their text. */
        f->key = k[j].s != NULL ? k[j].s : k[j - 1].s;
        f->key_len = k[j].len;
        encode_fail(e, e->depth, "an integer key has the same text");
      }
    }
    reorder_members(st, from, start, 0, NULL);
  }
  st->nkeys = from;
}

/* Writes the table at t, checking depth and cycles first. */
static void encode_table(json_encoder *e, int t)
{
  lua_State *L = e->L;
  const void *self = lua_topointer(L, t);
  int base = lua_gettop(L), marked = 0, cols = 0;
  json_frame *f;

  if (e->depth >= JSON_MAX_DEPTH)
    encode_fail(e, e->depth, "tables nest deeper than 1000 levels");
  for (int i = 0; i < e->depth; i++)
    if (e->frames[i].table == self)
      encode_fail(e, e->depth, "cycle: the table contains itself");
  luaL_checkstack(L, 8, "json.encode");

  f = &e->frames[e->depth++];
  f->table = self;
  f->key = NULL;
  f->index = 0;

  if (lua_getmetatable(L, t)) {
    if (lua_rawequal(L, -1, e->mt_slot)) {
      marked = 1;
    } else {
      lua_pushvalue(L, e->columns_slot);
      if (lua_rawget(L, -2) == LUA_TTABLE)
        cols = lua_gettop(L);
    }
  }

  /* Query rows (with __columns) are objects; anything else is first
   * tried as the common array. */
  if (cols || !encode_in_order(e, t, marked))
    encode_members(e, t, marked, cols);

  e->depth--;
  lua_settop(L, base);
}

/* Writes the value at idx (an absolute index). */
static void encode_value(json_encoder *e, int idx)
{
  lua_State *L = e->L;
  json_store *st = &e->st;

  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!encode_string(st, s, len))
      encode_fail(e, e->depth, "string is not valid UTF-8");
    break;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      char *out = store_reserve(st, 24);
      st->len += format_integer(lua_tointeger(L, idx), out);
    } else {
      double d = (double)lua_tonumber(L, idx);
      if (isnan(d))
        encode_fail(e, e->depth, "NaN cannot be encoded");
      if (isinf(d))
        encode_fail(e, e->depth, "infinity cannot be encoded");
      char *out = store_reserve(st, 32);
      st->len += format_float(d, out);
    }
    break;
  case LUA_TTABLE:
    encode_table(e, idx);
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      store_put(st, "true", 4);
    else
      store_put(st, "false", 5);
    break;
  case LUA_TNIL:
    store_put(st, "null", 4);
    break;
  default:
    if (json_is_null(L, idx)) {
      store_put(st, "null", 4);
    } else {
      char what[64];
      snprintf(what, sizeof what, "a %s cannot be encoded",
               luaL_typename(L, idx));
      encode_fail(e, e->depth, what);
    }
    break;
  }
}

const char *json_encode(lua_State *L, int idx, size_t *len)
{
  json_encoder e;

  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, "json.encode");
  e.L = L;
  e.depth = 0;
  e.cols_table = NULL;
  e.cols_depth = -1;
  e.ncols = 0;
  e.by_rank_ready = 0;
  e.hints = 0;
  store_init(&e.st, L);
  push_array_mt(L);
  e.mt_slot = lua_gettop(L);
  lua_pushliteral(L, "__columns");
  e.columns_slot = lua_gettop(L);
  lua_pushnil(L);
  e.ranks_slot = lua_gettop(L);

  encode_value(&e, idx);

  lua_pushlstring(L, e.st.text, e.st.len);
  store_finish(&e.st);
  return lua_tolstring(L, -1, len);
}

/* ---- the decoder ------------------------------------------------------- */

/* The state of one json_decode call. */
typedef struct {
  lua_State *L;
  json_store st;
  const unsigned char *start;
  const unsigned char *p;
  const unsigned char *end;
  int mt_slot;
  int depth;
} json_decoder;

/* Raises "json.decode: what at offset N", N the bytes before at. */
JSON_NORETURN static void decode_fail(json_decoder *d,
                                      const unsigned char *at,
                                      const char *what)
{
  lua_pushfstring(d->L, "json.decode: %s at offset %I", what,
                  (lua_Integer)(at - d->start));
  lua_error(d->L);
  __builtin_unreachable();
}

static void skip_space(json_decoder *d)
{
  while (d->p < d->end &&
         (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

static int is_digit(const json_decoder *d, const unsigned char *p)
{
  return p < d->end && *p >= '0' && *p <= '9';
}

/* Reads a float from the n bytes at s (already checked as JSON), whatever
 * the locale's decimal point. Returns 0 when it overflows a double. */
static int read_double(json_decoder *d, const unsigned char *s, size_t n,
                       double *out)
{
  json_store *st = &d->st;
  char *buf, *end;

  st->len = 0;
  buf = store_reserve(st, n + 1);
  memcpy(buf, s, n);
  buf[n] = '\0';
  *out = strtod(buf, &end);

  if (end != buf + n) {
    /* A locale with another decimal point: write it in and retry. */
    char point[8];
    char *dot = memchr(buf, '.', n);
    snprintf(point, sizeof point, "%.1f", 0.0);
    if (dot != NULL && point[1] != '.') {
      *dot = point[1];
      *out = strtod(buf, &end);
    }
  }
  return !isinf(*out);
}

/* number = [ "-" ] int [ frac ] [ exp ]; pushes an integer when there is
 * neither frac nor exp and the value fits, else a float. */
static void decode_number(json_decoder *d)
{
  const unsigned char *s = d->p, *p = d->p;
  uint64_t mag = 0;
  int neg = 0, overflow = 0, is_float = 0;
  double v;

  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (!is_digit(d, p))
    decode_fail(d, p, "expected a digit");
  if (*p == '0') {
    p++;
    if (is_digit(d, p))
      decode_fail(d, p - 1, "a number cannot start with 0");
  } else {
    while (is_digit(d, p)) {
      unsigned digit = (unsigned)(*p++ - '0');
      if (mag > (UINT64_MAX - digit) / 10)
        overflow = 1;
      else
        mag = mag * 10 + digit;
    }
  }
  if (p < d->end && *p == '.') {
    is_float = 1;
    if (!is_digit(d, ++p))
      decode_fail(d, p, "expected a digit after the decimal point");
    while (is_digit(d, p))
      p++;
  }
  if (p < d->end && (*p == 'e' || *p == 'E')) {
    is_float = 1;
    p++;
    if (p < d->end && (*p == '+' || *p == '-'))
      p++;
    if (!is_digit(d, p))
      decode_fail(d, p, "expected a digit in the exponent");
    while (is_digit(d, p))
      p++;
  }
  d->p = p;

  if (!is_float && !overflow) {
    if (!neg && mag <= (uint64_t)LUA_MAXINTEGER) {
      lua_pushinteger(d->L, (lua_Integer)mag);
      return;
    }
    if (neg && mag <= (uint64_t)LUA_MAXINTEGER + 1) {
      lua_pushinteger(d->L, mag == (uint64_t)LUA_MAXINTEGER + 1
                                ? LUA_MININTEGER
                                : -(lua_Integer)mag);
      return;
    }
  }
  if (!read_double(d, s, (size_t)(p - s), &v))
    decode_fail(d, s, "number out of range");
  lua_pushnumber(d->L, (lua_Number)v);
}

/* Reads the four hex digits at p; returns -1 when they are not. */
static long read_hex4(const json_decoder *d, const unsigned char *p)
{
  long v = 0;

  if (d->end - p < 4)
    return -1;
  for (int i = 0; i < 4; i++) {
    int c = p[i], h;
    if (c >= '0' && c <= '9')
      h = c - '0';
    else if (c >= 'a' && c <= 'f')
      h = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      h = c - 'A' + 10;
    else
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Decodes the escape at d->p (a backslash) into the store. */
static void decode_escape(json_decoder *d)
{
  const unsigned char *at = d->p;
  char out[4];
  long cp, lo;

  if (d->end - at < 2)
    decode_fail(d, at, "unterminated string");
  switch (at[1]) {
  case '"': case '\\': case '/':
    store_putc(&d->st, (char)at[1]);
    d->p += 2;
    return;
  case 'b': store_putc(&d->st, '\b'); d->p += 2; return;
  case 'f': store_putc(&d->st, '\f'); d->p += 2; return;
  case 'n': store_putc(&d->st, '\n'); d->p += 2; return;
  case 'r': store_putc(&d->st, '\r'); d->p += 2; return;
  case 't': store_putc(&d->st, '\t'); d->p += 2; return;
  case 'u':
    break;
  default:
    decode_fail(d, at, "invalid escape in string");
  }

  cp = read_hex4(d, at + 2);
  if (cp < 0)
    decode_fail(d, at, "expected four hex digits after \\u");
  d->p += 6;
  if (cp >= 0xdc00 && cp <= 0xdfff)
    decode_fail(d, at, "lone low surrogate in \\u escape");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    /* A high surrogate must be followed by an escaped low one. */
    if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' ||
        (lo = read_hex4(d, d->p + 2)) < 0xdc00 || lo > 0xdfff)
      decode_fail(d, at, "lone high surrogate in \\u escape");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    d->p += 6;
  }
  store_put(&d->st, out, utf8_encode((unsigned long)cp, out));
}

/* Decodes the string at d->p (a quote) and pushes it. Strings without
 * escapes are pushed straight from the input. */
static void decode_string(json_decoder *d)
{
  const unsigned char *open = d->p, *p = d->p + 1, *run = p;
  json_store *st = &d->st;
  int copied = 0;

  for (;;) {
    unsigned c;

    p += plain_run(p, (size_t)(d->end - p));
    if (p == d->end)
      decode_fail(d, open, "unterminated string");

    c = *p;
    if (json_byte_class[c] == 2) {
      size_t n = utf8_sequence(p, (size_t)(d->end - p));
      if (n == 0)
        decode_fail(d, p, "invalid UTF-8 in string");
      p += n;
    } else if (c == '"') {
      break;
    } else if (c == '\\') {
      if (!copied) {
        st->len = 0;
        copied = 1;
      }
      store_put(st, (const char *)run, (size_t)(p - run));
      d->p = p;
      decode_escape(d);
      p = run = d->p;
    } else {
      decode_fail(d, p, "control character in string");
    }
  }

  if (copied) {
    store_put(st, (const char *)run, (size_t)(p - run));
    lua_pushlstring(d->L, st->text, st->len);
  } else {
    lua_pushlstring(d->L, (const char *)run, (size_t)(p - run));
  }
  d->p = p + 1;
}

/* Matches the literal word at d->p. */
static void decode_word(json_decoder *d, const char *word, size_t n)
{
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    decode_fail(d, d->p, "expected a value");
  d->p += n;
}

static void decode_value(json_decoder *d);

/* Enters an array or object: checks depth and stack room, and reserves
 * the slot of its table (made once its first members are known). Returns
 * that slot. */
static int decode_enter(json_decoder *d)
{
  if (d->depth >= JSON_MAX_DEPTH)
    decode_fail(d, d->p, "arrays and objects nest deeper than 1000 levels");
  d->depth++;
  luaL_checkstack(d->L, 2 * JSON_BATCH + 4, "json.decode");
  d->p++;
  lua_pushnil(d->L);
  return lua_gettop(d->L);
}

/* Makes the table of an array in slot t, sized for the n values pending
 * above it (and room more), and moves them in. */
static void decode_array_table(json_decoder *d, int t, int n, int room)
{
  lua_State *L = d->L;

  lua_createtable(L, room, 0);
  lua_pushvalue(L, d->mt_slot);
  lua_setmetatable(L, -2);
  lua_replace(L, t);
  for (int i = n; i > 0; i--)
    lua_rawseti(L, t, i);
}

/* Arrays and objects gather their first JSON_BATCH members on the stack,
 * so that their table is made at its size instead of growing step by
 * step; longer ones then grow as usual. */
static void decode_array(json_decoder *d)
{
  lua_State *L = d->L;
  int t = decode_enter(d), pending = 0;
  lua_Integer n = 0;

  skip_space(d);
  if (d->p < d->end && *d->p == ']') {
    decode_array_table(d, t, 0, 0);
    d->p++;
    d->depth--;
    return;
  }
  for (;;) {
    decode_value(d);
    n++;
    if (pending < 0) {
      lua_rawseti(L, t, n);
    } else if (++pending == JSON_BATCH) {
      decode_array_table(d, t, pending, 2 * JSON_BATCH);
      pending = -1;
    }
    skip_space(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
      continue;
    }
    if (d->p < d->end && *d->p == ']')
      break;
    decode_fail(d, d->p, "expected ',' or ']'");
  }
  if (pending >= 0)
    decode_array_table(d, t, pending, pending);
  d->p++;
  d->depth--;
}

/* Makes the table of an object in slot t, sized for the n key-value
 * pairs pending above it, and moves them in, in order (the last of equal
 * keys wins). */
static void decode_object_table(json_decoder *d, int t, int n)
{
  lua_State *L = d->L;

  lua_createtable(L, 0, n);
  lua_replace(L, t);
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, t + 1 + 2 * i);
    lua_pushvalue(L, t + 2 + 2 * i);
    lua_rawset(L, t);
  }
  lua_settop(L, t);
}

static void decode_object(json_decoder *d)
{
  lua_State *L = d->L;
  int t = decode_enter(d), pending = 0;

  skip_space(d);
  if (d->p < d->end && *d->p == '}') {
    decode_object_table(d, t, 0);
    d->p++;
    d->depth--;
    return;
  }
  for (;;) {
    skip_space(d);
    if (d->p == d->end || *d->p != '"')
      decode_fail(d, d->p, "expected a string key");
    decode_string(d);
    skip_space(d);
    if (d->p == d->end || *d->p != ':')
      decode_fail(d, d->p, "expected ':'");
    d->p++;
    decode_value(d);
    if (pending < 0) {
      lua_rawset(L, t);
    } else if (++pending == JSON_BATCH) {
      decode_object_table(d, t, pending);
      pending = -1;
    }
    skip_space(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
      continue;
    }
    if (d->p < d->end && *d->p == '}')
      break;
    decode_fail(d, d->p, "expected ',' or '}'");
  }
  if (pending >= 0)
    decode_object_table(d, t, pending);
  d->p++;
  d->depth--;
}

/* Decodes one value at d->p (after whitespace) and pushes it. */
static void decode_value(json_decoder *d)
{
  skip_space(d);
  if (d->p == d->end)
    decode_fail(d, d->p, "unexpected end of input");

  switch (*d->p) {
  case '{':
    decode_object(d);
    break;
  case '[':
    decode_array(d);
    break;
  case '"':
    decode_string(d);
    break;
  case 't':
    decode_word(d, "true", 4);
    lua_pushboolean(d->L, 1);
    break;
  case 'f':
    decode_word(d, "false", 5);
    lua_pushboolean(d->L, 0);
    break;
  case 'n':
    decode_word(d, "null", 4);
    json_push_null(d->L);
    break;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    decode_number(d);
    break;
  default:
    decode_fail(d, d->p, "expected a value");
  }
}

void json_decode(lua_State *L, const char *text, size_t len)
{
  json_decoder d;

  if (text == NULL)
    text = "";
  luaL_checkstack(L, 6, "json.decode");
  d.L = L;
  d.start = d.p = (const unsigned char *)text;
  d.end = d.start + len;
  d.depth = 0;
  store_init(&d.st, L);
  push_array_mt(L);
  d.mt_slot = lua_gettop(L);

  decode_value(&d);
  skip_space(&d);
  if (d.p != d.end)
    decode_fail(&d, d.p, "unexpected data after the value");

  store_finish(&d.st);
}

/* ---- null and the array mark -------------------------------------------- */

void json_push_null(lua_State *L)
{
  lua_pushlightuserdata(L, NULL);
}

int json_is_null(lua_State *L, int idx)
{
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
         lua_touserdata(L, idx) == NULL;
}

void json_mark_array(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  push_array_mt(L);
  lua_setmetatable(L, idx);
}

/* Whether the table at t carries the array mark. */
static int is_marked(lua_State *L, int t)
{
  int marked;

  if (!lua_getmetatable(L, t))
    return 0;
  push_array_mt(L);
  marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

int json_is_marked_array(lua_State *L, int idx)
{
  return lua_istable(L, idx) && is_marked(L, lua_absindex(L, idx));
}

/* ---- the Lua module ------------------------------------------------------ */

/* json.encode(v) -> text; raises with the path of what cannot be
 * encoded. */
static int l_encode(lua_State *L)
{
  luaL_checkany(L, 1);
  json_encode(L, 1, NULL);
  return 1;
}

/* json.decode(text) -> value; raises with the offset of malformed input. */
static int l_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);

  json_decode(L, s, len);
  return 1;
}

/* json.array([t]) -> t marked as an array (a new empty one without t).
 * The mark replaces any metatable t had. */
static int l_array(lua_State *L)
{
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  json_mark_array(L, 1);
  return 1;
}

/* json.is_array(v) -> whether json.encode writes v as an array: a table
 * with the array mark, or one whose keys are exactly 1..n, n > 0. */
static int l_is_array(lua_State *L)
{
  lua_Integer count = 0, max = 0;
  int sequence = 1;

  if (!lua_istable(L, 1)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (is_marked(L, 1)) {
    lua_pushboolean(L, 1);
    return 1;
  }

  lua_settop(L, 1);
  lua_pushnil(L);
  while (sequence && lua_next(L, 1)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      if (lua_tointeger(L, -1) > max)
        max = lua_tointeger(L, -1);
      count++;
    } else {
      sequence = 0;
    }
  }
  lua_settop(L, 1);
  lua_pushboolean(L, sequence && count > 0 && max == count);
  return 1;
}

int luaopen_jobhost_json(lua_State *L)
{
  static const luaL_Reg funcs[] = {
    {"encode", l_encode},
    {"decode", l_decode},
    {"array", l_array},
    {"is_array", l_is_array},
    {NULL, NULL}
  };

  luaL_newlib(L, funcs);
  json_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
