/* log.c: the one log sink. A record is a level, a short message and
 * fields; it is written as one line, either text
 *
 *   2026-12-03T19:01:57.123Z INFO run started job=purge dry_run=false
 *
 * or one JSON object (timestamp, level, message, requestId, job, then the
 * fields in the order given). Nothing else in jobhost writes log lines:
 * libpq notices, Lua warnings and a job's ctx.log calls all come here.
 * Records are built in one buffer and written with a single fwrite, so
 * lines from one process never interleave. */
#include "log.h"

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "env.h"
#include "json.h"
#include "redact.h"

/* The most bytes of one string a record carries (CloudWatch takes 256
 * KiB an event): a longer message or field value is cut, marked so. */
#define LOG_MAX_VALUE (32 * 1024)
/* The most fields a record carries; more are dropped. */
#define LOG_MAX_FIELDS 64

static FILE *log_out;
static log_format log_fmt = LOG_TEXT;
static log_level log_min = LOG_INFO;
static char log_request_id[128];
static char log_job[128];

/* Room for a timestamp (clock_format_iso). */
#define STAMP_MAX 32

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO",
                                          "WARN",  "ERROR", "FATAL"};

/* A growable line buffer; on allocation failure it stops growing and the
 * record is cut rather than lost. */
typedef struct {
  char *p;
  size_t len, cap;
  char small[1024];
} line;

static void line_init(line *b)
{
  b->p = b->small;
  b->len = 0;
  b->cap = sizeof b->small;
}

static void line_free(line *b)
{
  if (b->p != b->small)
    free(b->p);
}

static int line_reserve(line *b, size_t extra)
{
  size_t want = b->len + extra + 1;
  size_t cap = b->cap;
  char *p;

  if (want <= b->cap)
    return 1;
  while (cap < want)
    cap *= 2;
  if (b->p == b->small) {
    p = malloc(cap);
    if (p)
      memcpy(p, b->small, b->len);
  } else {
    p = realloc(b->p, cap);
  }
  if (!p)
    return 0;
  b->p = p;
  b->cap = cap;
  return 1;
}

static void line_add(line *b, const char *s, size_t n)
{
  if (!line_reserve(b, n))
    return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void line_adds(line *b, const char *s)
{
  line_add(b, s, strlen(s));
}

static void line_addc(line *b, char c)
{
  line_add(b, &c, 1);
}

/* Appends s as a JSON string body (without quotes). Bytes that are not
 * valid UTF-8 are replaced by U+FFFD so a record is always valid JSON. */
static void line_add_json_escaped(line *b, const char *s)
{
  const unsigned char *u = (const unsigned char *)s;
  char esc[8];

  while (*u) {
    if ((size_t)((const char *)u - s) >= LOG_MAX_VALUE) {
      line_adds(b, " [cut]");
      return;
    }
    unsigned char c = *u;
    size_t n = 0;

    if (c == '"' || c == '\\') {
      line_addc(b, '\\');
      line_addc(b, (char)c);
      u++;
      continue;
    }
    if (c < 0x20) {
      switch (c) {
      case '\n': line_adds(b, "\\n"); break;
      case '\r': line_adds(b, "\\r"); break;
      case '\t': line_adds(b, "\\t"); break;
      default:
        snprintf(esc, sizeof esc, "\\u%04x", c);
        line_adds(b, esc);
      }
      u++;
      continue;
    }
    if (c < 0x80) {
      line_addc(b, (char)c);
      u++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      n = 1;
    else if (c >= 0xE0 && c <= 0xEF)
      n = 2;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 3;
    if (n > 0) {
      size_t i;
      for (i = 1; i <= n; i++)
        if ((u[i] & 0xC0) != 0x80)
          break;
      if (i > n) {
        line_add(b, (const char *)u, n + 1);
        u += n + 1;
        continue;
      }
    }
    line_adds(b, "\xEF\xBF\xBD");
    u++;
  }
}

/* Appends a text-format value: bare when it is a simple word, else quoted
 * with the JSON escapes, so a record stays on one line. */
static void line_add_text_value(line *b, const char *s)
{
  const char *p;
  int bare = *s != '\0';

  if (strlen(s) > 64)
    bare = 0;
  for (p = s; *p && bare; p++)
    if (isspace((unsigned char)*p) || *p == '"' || *p == '=' ||
        (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7F)
      bare = 0;
  if (bare) {
    line_adds(b, s);
    return;
  }
  line_addc(b, '"');
  line_add_json_escaped(b, s);
  line_addc(b, '"');
}

#define NUMBER_MAX 40

/* A number, boolean or non-finite field as the line writes it, into num
 * (NUMBER_MAX bytes). */
static void format_number(const log_field *f, char *num)
{
  if (f->kind == LOG_F_INT) {
    snprintf(num, NUMBER_MAX, "%lld", (long long)f->i);
  } else if (f->kind == LOG_F_BOOL) {
    snprintf(num, NUMBER_MAX, "%s", f->i ? "true" : "false");
  } else if (!isfinite(f->n)) {
    snprintf(num, NUMBER_MAX, "%s",
             isnan(f->n) ? "\"NaN\"" : f->n > 0 ? "\"Infinity\""
                                                : "\"-Infinity\"");
  } else {
    int prec;
    for (prec = 15; prec <= 17; prec++) {
      snprintf(num, NUMBER_MAX, "%.*g", prec, f->n);
      if (strtod(num, NULL) == f->n)
        break;
    }
  }
}

static void line_add_number(line *b, const log_field *f)
{
  char num[NUMBER_MAX];

  format_number(f, num);
  line_adds(b, num);
}

void log_configure(FILE *out, log_format format, log_level min)
{
  log_out = out;
  log_fmt = format;
  log_min = min;
}

void log_configure_from_env(void)
{
  static const char *const fmt_names[] = {"AWS_LAMBDA_LOG_FORMAT",
                                          "JOBHOST_LOG_FORMAT"};
  static const char *const lvl_names[] = {"AWS_LAMBDA_LOG_LEVEL",
                                          "JOBHOST_LOG_LEVEL"};
  const char *bad_fmt = NULL, *bad_lvl = NULL, *bad_fmt_name = NULL,
             *bad_lvl_name = NULL;
  int i, fmt_set = 0, lvl_set = 0;

  /* Lambda's variables first; one that cannot be used gives way to
   * jobhost's own. */
  for (i = 0; i < 2; i++) {
    const char *fmt = getenv(fmt_names[i]), *lvl = getenv(lvl_names[i]);
    int parsed;

    if (!fmt_set && fmt && *fmt) {
      if (strcasecmp(fmt, "json") == 0 || strcasecmp(fmt, "text") == 0) {
        log_fmt = strcasecmp(fmt, "json") == 0 ? LOG_JSON : LOG_TEXT;
        fmt_set = 1;
      } else if (!bad_fmt) {
        bad_fmt = fmt;
        bad_fmt_name = fmt_names[i];
      }
    }
    if (!lvl_set && lvl && *lvl) {
      if ((parsed = log_level_parse(lvl)) >= 0) {
        log_min = (log_level)parsed;
        lvl_set = 1;
      } else if (!bad_lvl) {
        bad_lvl = lvl;
        bad_lvl_name = lvl_names[i];
      }
    }
  }
  /* Told once the sink is set up as far as it can be. */
  if (bad_fmt)
    env_warn(bad_fmt_name, bad_fmt, "json or text",
             log_fmt == LOG_JSON ? "json" : "text");
  if (bad_lvl)
    env_warn(bad_lvl_name, bad_lvl, "trace, debug, info, warn, error or fatal",
             log_level_name(log_min));
}

void log_set_request_id(const char *id)
{
  snprintf(log_request_id, sizeof log_request_id, "%s", id ? id : "");
}

void log_set_job(const char *job)
{
  snprintf(log_job, sizeof log_job, "%s", job ? job : "");
}

int log_level_parse(const char *name)
{
  int i;

  if (strcasecmp(name, "warning") == 0)
    return LOG_WARN;
  if (strcasecmp(name, "off") == 0)
    return LOG_OFF;
  for (i = 0; i <= LOG_FATAL; i++)
    if (strcasecmp(name, level_names[i]) == 0)
      return i;
  return -1;
}

const char *log_level_name(log_level level)
{
  return level <= LOG_FATAL ? level_names[level] : "OFF";
}

int log_enabled(log_level level)
{
  return level >= log_min && level < LOG_OFF;
}

static void emit_json(line *b, const char *ts, log_level level,
                      const char *msg, const log_field *fields, size_t n)
{
  size_t i;

  line_adds(b, "{\"timestamp\":\"");
  line_adds(b, ts);
  line_adds(b, "\",\"level\":\"");
  line_adds(b, level_names[level]);
  line_adds(b, "\",\"message\":\"");
  line_add_json_escaped(b, msg);
  line_addc(b, '"');
  if (log_request_id[0]) {
    line_adds(b, ",\"requestId\":\"");
    line_add_json_escaped(b, log_request_id);
    line_addc(b, '"');
  }
  if (log_job[0]) {
    line_adds(b, ",\"job\":\"");
    line_add_json_escaped(b, log_job);
    line_addc(b, '"');
  }
  for (i = 0; i < n; i++) {
    const log_field *f = &fields[i];
    if (!f->key)
      continue;
    line_adds(b, ",\"");
    line_add_json_escaped(b, f->key);
    line_adds(b, "\":");
    if (f->kind == LOG_F_STR) {
      line_addc(b, '"');
      line_add_json_escaped(b, f->s ? f->s : "");
      line_addc(b, '"');
    } else if (f->kind == LOG_F_JSON) {
      line_adds(b, f->s ? f->s : "null");
    } else {
      line_add_number(b, f);
    }
  }
  line_addc(b, '}');
}

static void emit_text(line *b, const char *ts, log_level level,
                      const char *msg, const log_field *fields, size_t n)
{
  size_t i;

  line_adds(b, ts);
  line_addc(b, ' ');
  line_adds(b, level_names[level]);
  line_addc(b, ' ');
  line_add_json_escaped(b, msg);
  if (log_request_id[0]) {
    line_adds(b, " request_id=");
    line_add_text_value(b, log_request_id);
  }
  if (log_job[0]) {
    line_adds(b, " job=");
    line_add_text_value(b, log_job);
  }
  for (i = 0; i < n; i++) {
    const log_field *f = &fields[i];
    if (!f->key)
      continue;
    line_addc(b, ' ');
    line_adds(b, f->key);
    line_addc(b, '=');
    if (f->kind == LOG_F_STR || f->kind == LOG_F_JSON)
      line_add_text_value(b, f->s ? f->s : "null");
    else
      line_add_number(b, f);
  }
}

/* Builds one record, as it is, into b (initialised), with the time now,
 * which it leaves in ts. */
static void build_record(line *b, char *ts, log_level level,
                         const char *msg, const log_field *fields, size_t n)
{
  clock_format_iso(clock_now_ms(), ts, STAMP_MAX);
  if (log_fmt == LOG_JSON)
    emit_json(b, ts, level, msg ? msg : "", fields, n);
  else
    emit_text(b, ts, level, msg ? msg : "", fields, n);
  line_addc(b, '\n');
}

/* build_record with the message, every field's text and every field's
 * name with registered secret values replaced (redact.h), each in its raw
 * form before it is escaped into the line, so a value shows as
 * [redacted] in either format (a job can make a secret a field's name:
 * {[secret] = 1}). */
static void build_redacted(line *b, char *ts, log_level level,
                           const char *msg, const log_field *fields,
                           size_t n)
{
  log_field copy[LOG_MAX_FIELDS] = {{0}};
  char *owned[2 * LOG_MAX_FIELDS + 1];
  size_t i, k = 0, len;
  char *clean;

  if (n > LOG_MAX_FIELDS)
    n = LOG_MAX_FIELDS;
  if (msg && (clean = redact_copy(msg, strlen(msg), &len))) {
    owned[k++] = clean;
    msg = clean;
  }
  for (i = 0; i < n; i++) {
    copy[i] = fields[i];
    if (copy[i].key &&
        (clean = redact_copy(copy[i].key, strlen(copy[i].key), &len))) {
      owned[k++] = clean;
      copy[i].key = clean;
    }
    /* A number as it would be written: a numeric secret (a PIN) is
     * hidden there too. */
    if (copy[i].kind == LOG_F_INT || copy[i].kind == LOG_F_NUM) {
      char num[NUMBER_MAX];

      format_number(&copy[i], num);
      if ((clean = redact_copy(num, strlen(num), &len))) {
        owned[k++] = clean;
        copy[i].kind = LOG_F_STR;
        copy[i].s = clean;
      }
      continue;
    }
    if (copy[i].kind == LOG_F_JSON && copy[i].s &&
        (clean = redact_json_copy(copy[i].s, strlen(copy[i].s), &len))) {
      owned[k++] = clean;
      copy[i].s = clean;
    } else if (copy[i].kind == LOG_F_STR && copy[i].s &&
               (clean = redact_copy(copy[i].s, strlen(copy[i].s), &len))) {
      owned[k++] = clean;
      copy[i].s = clean;
    }
  }
  build_record(b, ts, level, msg, copy, n);
  while (k > 0)
    free(owned[--k]);
}

/* The record log_emit writes, into b (initialised); its timestamp in
 * ts. */
static void build(line *b, char *ts, log_level level, const char *msg,
                  const log_field *fields, size_t n)
{
  if (redact_active())
    build_redacted(b, ts, level, msg, fields, n);
  else
    build_record(b, ts, level, msg, fields, n);
}

void log_emit(log_level level, const char *msg, const log_field *fields,
              size_t n)
{
  FILE *out = log_out ? log_out : stderr;
  char ts[STAMP_MAX];
  line b;

  if (!log_enabled(level))
    return;
  line_init(&b);
  build(&b, ts, level, msg, fields, n);
  fwrite(b.p, 1, b.len, out);
  fflush(out);
  line_free(&b);
}

char *log_format_record(log_level level, const char *msg,
                        const log_field *fields, size_t n, size_t *len,
                        size_t *stamp_at)
{
  char ts[STAMP_MAX];
  line b;
  char *copy;
  const char *at;

  if (!log_enabled(level))
    return NULL;
  line_init(&b);
  build(&b, ts, level, msg, fields, n);
  copy = malloc(b.len + 1);
  if (copy) {
    memcpy(copy, b.p, b.len);
    copy[b.len] = '\0';
    *len = b.len;
    /* Its first occurrence: the text format starts with it, JSON's
     * first member is it. */
    at = memmem(copy, b.len, ts, CLOCK_ISO_LEN);
    *stamp_at = at ? (size_t)(at - copy) : (size_t)-1;
  }
  line_free(&b);
  return copy;
}

int log_fd(void)
{
  return fileno(log_out ? log_out : stderr);
}

void log_emit_last(log_level level, const char *msg, const log_field *fields,
                   size_t n)
{
  FILE *out = log_out ? log_out : stderr;
  int fd = fileno(out);

  if (ftrylockfile(out) != 0)
    return;
  if (fd >= 0)
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  log_emit(level, msg, fields, n);
  funlockfile(out);
}

/* ---- the Lua module ---------------------------------------------------- */

static int encode_field(lua_State *L)
{
  json_encode(L, 1, NULL);
  return 1;
}

/* Turns the value at the top of the stack into a field. Tables become
 * JSON; a value JSON cannot hold is written as its tostring. The strings
 * stay on the Lua stack until the record is written. */
static void field_from_lua(lua_State *L, const char *key, log_field *f)
{
  f->key = key;
  f->s = NULL;
  /* A string under a key that names a credential (redact.h) is logged as
   * "***", whether or not it is a secret jobhost fetched. */
  if (lua_type(L, -1) == LUA_TSTRING &&
      redact_credential_name(key, strlen(key), 0)) {
    f->kind = LOG_F_STR;
    f->s = "***";
    return;
  }
  switch (lua_type(L, -1)) {
  case LUA_TBOOLEAN:
    f->kind = LOG_F_BOOL;
    f->i = lua_toboolean(L, -1);
    return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, -1)) {
      f->kind = LOG_F_INT;
      f->i = lua_tointeger(L, -1);
    } else {
      f->kind = LOG_F_NUM;
      f->n = lua_tonumber(L, -1);
    }
    return;
  case LUA_TSTRING:
    f->kind = LOG_F_STR;
    f->s = lua_tostring(L, -1);
    return;
  case LUA_TLIGHTUSERDATA:
    if (json_is_null(L, -1)) {
      f->kind = LOG_F_JSON;
      f->s = "null";
      return;
    }
    break;
  default:
    break;
  }
  if (lua_type(L, -1) == LUA_TTABLE) {
    /* A table JSON cannot hold (a cycle, NaN) is logged as its tostring
     * rather than failing the caller. */
    lua_pushcfunction(L, encode_field);
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      f->kind = LOG_F_JSON;
      f->s = lua_tostring(L, -1);
      return;
    }
    lua_pop(L, 1);
  }
  f->kind = LOG_F_STR;
  f->s = luaL_tolstring(L, -1, NULL);
}

static int log_from_lua(lua_State *L, log_level level)
{
  log_field fields[LOG_MAX_FIELDS];
  const char *keys[LOG_MAX_FIELDS];
  size_t n = 0, i;
  const char *msg = luaL_checkstring(L, 1);

  if (!log_enabled(level))
    return 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    /* Keys are sorted so records read the same from run to run. */
    lua_pushnil(L);
    while (lua_next(L, 2) && n < LOG_MAX_FIELDS) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING)
        keys[n++] = lua_tostring(L, -1);
    }
    if (n == LOG_MAX_FIELDS)
      lua_pop(L, 1);
    for (i = 1; i < n; i++) {
      const char *k = keys[i];
      size_t j = i;
      while (j > 0 && strcmp(keys[j - 1], k) > 0) {
        keys[j] = keys[j - 1];
        j--;
      }
      keys[j] = k;
    }
    luaL_checkstack(L, (int)n + 4, "too many log fields");
    for (i = 0; i < n; i++) {
      lua_getfield(L, 2, keys[i]);
      field_from_lua(L, keys[i], &fields[i]);
    }
  }
  log_emit(level, msg, fields, n);
  return 0;
}

static int l_trace(lua_State *L) { return log_from_lua(L, LOG_TRACE); }
static int l_debug(lua_State *L) { return log_from_lua(L, LOG_DEBUG); }
static int l_info(lua_State *L) { return log_from_lua(L, LOG_INFO); }
static int l_warn(lua_State *L) { return log_from_lua(L, LOG_WARN); }
static int l_error(lua_State *L) { return log_from_lua(L, LOG_ERROR); }

/* Lua's warn(): pieces are joined until a piece ends the message;
 * "@on"/"@off" control messages are accepted and ignored. */
static void log_warnf(void *ud, const char *msg, int tocont)
{
  static char pending[1024];
  static size_t len;
  size_t n = strlen(msg);

  (void)ud;
  if (len == 0 && !tocont && msg[0] == '@')
    return;
  if (n > sizeof pending - 1 - len)
    n = sizeof pending - 1 - len;
  memcpy(pending + len, msg, n);
  len += n;
  pending[len] = '\0';
  if (!tocont) {
    log_emit(LOG_WARN, "lua warning", &LOG_S("warning", pending), 1);
    len = 0;
  }
}

int luaopen_jobhost_log(lua_State *L)
{
  static const luaL_Reg fns[] = {{"trace", l_trace}, {"debug", l_debug},
                                 {"info", l_info},   {"warn", l_warn},
                                 {"error", l_error}, {NULL, NULL}};

  luaL_newlib(L, fns);
  lua_setwarnf(L, log_warnf, NULL);
  return 1;
}
