/* job_outcome.c: how a run ended, in words others can read. Turns the
 * error value a failed run left (a string with a traceback, an error
 * object, anything a job can raise) into a job_outcome, keeps secret
 * values out of it, and writes the failure as the Lambda error body. The
 * error value is the job's own and may misbehave (a __tostring that
 * raises, an __index that loops), so it is read without metamethods or
 * under a protected call. */
#include "job_outcome.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "host.h"
#include "json.h"
#include "redact.h"

/* What an error body may carry. A job can raise an error of any size,
 * with any bytes and (as an error object) any "type": the body must stay
 * well under the Lambda API's limit, be valid JSON, and its type must be
 * a safe header value. */
#define ERROR_TEXT_MAX 16384
#define ERROR_TYPE_MAX 64

/* luaL_tolstring in a protected call: a __tostring that raises, yields
 * or returns no string must not bring the process down. Pushes one
 * string and returns it. */
static int tostring_step(lua_State *L)
{
  luaL_tolstring(L, 1, NULL);
  return 1;
}

const char *job_tostring(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, tostring_step);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "(a %s value whose __tostring failed)",
                    luaL_typename(L, idx));
  }
  return lua_tostring(L, -1);
}

/* Splits a string error with an appended traceback into message and
 * stack lines. */
static void outcome_from_string(job_outcome *out, const char *text)
{
  const char *tb = strstr(text, "\nstack traceback:\n");

  if (tb) {
    out->error_message = strndup(text, (size_t)(tb - text));
    out->stack_trace = strdup(tb + strlen("\nstack traceback:\n"));
  } else {
    out->error_message = strdup(text);
  }
}

static int encode_top(lua_State *L)
{
  json_encode(L, 1, NULL);
  return 1;
}

/* t[name] without metamethods: an error object's __index must not run
 * (or raise) while the host reads it. Pushes the value; returns its
 * type. */
static int rawfield(lua_State *L, int t, const char *name)
{
  lua_pushstring(L, name);
  return lua_rawget(L, t < 0 ? t - 1 : t);
}

/* The message of the error table on top of the stack: its __tostring,
 * else its "message" field, else the table as JSON, else "table: 0x...".
 * The text stays on the stack (anchored) until the caller pops. */
static const char *error_table_text(lua_State *L)
{
  int top = lua_gettop(L), ok;

  if (luaL_getmetafield(L, top, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    return job_tostring(L, top);
  }
  if (rawfield(L, top, "message") == LUA_TSTRING)
    return lua_tostring(L, -1);
  lua_pop(L, 1);

  /* The traceback the host added is not part of the message. */
  rawfield(L, top, "traceback");
  lua_pushnil(L);
  lua_setfield(L, top, "traceback");
  lua_pushcfunction(L, encode_top);
  lua_pushvalue(L, top);
  ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
  lua_pushvalue(L, top + 1);
  lua_setfield(L, top, "traceback");
  if (ok)
    return lua_tostring(L, -1);
  lua_pop(L, 1);
  return job_tostring(L, top);
}

const char *job_error_text(lua_State *L, int idx)
{
  int base;

  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    return job_tostring(L, idx);
  base = lua_gettop(L);
  lua_pushvalue(L, idx);
  error_table_text(L);
  lua_copy(L, -1, base + 1);
  lua_settop(L, base + 1);
  return lua_tostring(L, -1);
}

void job_outcome_from_error(lua_State *L, job_outcome *out)
{
  const char *type = "Job.Error";

  if (lua_type(L, -1) == LUA_TTABLE) {
    int t = lua_gettop(L);
    if (rawfield(L, t, "type") == LUA_TSTRING)
      type = lua_tostring(L, -1);
    out->error_type = strdup(type);
    lua_pop(L, 1);
    out->error_message = strdup(error_table_text(L));
    lua_settop(L, t);
    if (rawfield(L, t, "traceback") == LUA_TSTRING) {
      const char *tb = lua_tostring(L, -1);
      if (strncmp(tb, "stack traceback:\n", 17) == 0)
        tb += 17;
      out->stack_trace = strdup(tb);
    }
    lua_pop(L, 1);
  } else {
    out->error_type = strdup(type);
    outcome_from_string(out, lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                 : "unknown error");
  }

  job_outcome_stopped(L, out);
}

void job_outcome_stopped(lua_State *L, job_outcome *out)
{
  host_run *run = host_get(L);

  /* A stop outranks whatever error the unwinding produced. */
  if (run->stop != HOST_RUNNING) {
    char msg[256];

    out->ok = 0;
    free(out->error_type);
    free(out->error_message);
    if (run->stop == HOST_TIMEOUT) {
      char which[64];

      out->error_type = strdup("Job.Timeout");
      if (run->timeout_s > 0)
        snprintf(which, sizeof which, "%s of %g s",
                 run->timeout_default ? "the default timeout"
                                      : "the job's timeout",
                 run->timeout_s);
      else
        snprintf(which, sizeof which, "the invocation's deadline");
      if (run->stop_early_ms > 0)
        snprintf(msg, sizeof msg, "statement stopped %.1f s before the "
                 "run's deadline (%s), to leave time to roll back and "
                 "report; the run was stopped and its open transaction "
                 "rolled back", (double)run->stop_early_ms / 1000, which);
      else
        snprintf(msg, sizeof msg, "run deadline exceeded (%s); the run was "
                 "stopped and its open transaction rolled back", which);
    } else if (run->stop == HOST_OOM) {
      out->error_type = strdup("Runtime.OutOfMemory");
      snprintf(msg, sizeof msg, "memory limit of %zu MiB exceeded",
               run->mem_limit / (1024 * 1024));
    } else {
      out->error_type = strdup("Job.Interrupted");
      snprintf(msg, sizeof msg, "interrupted: the process was told to "
               "stop (SIGINT or SIGTERM); the run was stopped and its open "
               "transaction rolled back");
    }
    out->error_message = strdup(msg);
  }
}

void job_outcome_fail(job_outcome *out, const char *type, const char *msg)
{
  out->ok = 0;
  out->error_type = strdup(type);
  out->error_message = strdup(msg);
}

/* Replaces *text by its redacted copy when it holds a secret's value; a
 * JSON text stays JSON. */
static void scrub(char **text, size_t *len, int json)
{
  size_t n, have;
  char *clean;

  if (!*text || !redact_active())
    return;
  have = len ? *len : strlen(*text);
  clean = json ? redact_json_copy(*text, have, &n)
               : redact_copy(*text, have, &n);
  if (!clean)
    return;
  free(*text);
  *text = clean;
  if (len)
    *len = n;
}

/* Whether type is a well-formed error type: Category.Reason in letters,
 * digits, '.', '_' and '-'. */
static int error_type_ok(const char *type)
{
  const char *p;

  if (!type || !*type || strlen(type) > ERROR_TYPE_MAX || !strchr(type, '.'))
    return 0;
  for (p = type; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
      return 0;
  return 1;
}

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0
 * when it is not one (RFC 3629: no overlong forms, no surrogates). */
static size_t utf8_width(const unsigned char *s, size_t n)
{
  unsigned char lo = 0x80, hi = 0xBF;
  size_t w, i;

  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    w = 2;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    w = 3;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    w = 4;
  else
    return 0;
  if (s[0] == 0xE0)
    lo = 0xA0;
  else if (s[0] == 0xED)
    hi = 0x9F;
  else if (s[0] == 0xF0)
    lo = 0x90;
  else if (s[0] == 0xF4)
    hi = 0x8F;
  if (n < w || s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < w; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return w;
}

/* A malloc'd copy of text that is valid UTF-8 (each invalid byte becomes
 * '?') and at most max bytes, cut at a character and marked when longer.
 * NULL for NULL text or when memory runs out. */
static char *clean_text(const char *text, size_t max)
{
  static const char cut[] = " [cut]";
  const unsigned char *u = (const unsigned char *)text;
  size_t len, i = 0, n = 0;
  char *copy;

  if (!text)
    return NULL;
  len = strlen(text);
  copy = malloc((len < max ? len : max) + sizeof cut);
  if (!copy)
    return NULL;
  while (i < len) {
    size_t w = utf8_width(u + i, len - i);
    if (n + (w ? w : 1) > max)
      break;
    if (w) {
      memcpy(copy + n, text + i, w);
      n += w;
      i += w;
    } else {
      copy[n++] = '?';
      i++;
    }
  }
  if (i < len)
    memcpy(copy + n, cut, sizeof cut);
  else
    copy[n] = '\0';
  return copy;
}

void job_outcome_free(job_outcome *out)
{
  free(out->result);
  free(out->error_type);
  free(out->error_message);
  free(out->stack_trace);
  memset(out, 0, sizeof *out);
}

const char *job_error_type(const job_outcome *out)
{
  return error_type_ok(out->error_type) ? out->error_type : "Job.Error";
}

char *job_error_json(const job_outcome *out)
{
  lua_State *L = luaL_newstate();
  char *message = clean_text(out->error_message ? out->error_message : "",
                             ERROR_TEXT_MAX);
  char *trace = clean_text(out->stack_trace, ERROR_TEXT_MAX);
  const char *text, *p, *nl;
  char *copy = NULL;
  size_t len;
  lua_Integer i = 0;

  if (!L || !message || (out->stack_trace && !trace))
    goto out;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, job_error_type(out));
  lua_setfield(L, -2, "errorType");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "errorMessage");
  lua_createtable(L, 8, 0);
  json_mark_array(L, -1);
  for (p = trace; p && *p; p = nl ? nl + 1 : NULL) {
    nl = strchr(p, '\n');
    while (*p == '\t' || *p == ' ')
      p++;
    len = nl ? (size_t)(nl - p) : strlen(p);
    if (len == 0 || strncmp(p, "[C]: in ?", len) == 0)
      continue;
    lua_pushlstring(L, p, len);
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "stackTrace");
  lua_pushcfunction(L, encode_top);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    text = lua_tolstring(L, -1, &len);
    copy = malloc(len + 1);
    if (copy)
      memcpy(copy, text, len + 1);
  }

out:
  if (L)
    lua_close(L);
  free(message);
  free(trace);
  return copy;
}

void job_outcome_scrub(job_outcome *out)
{
  scrub(&out->result, &out->result_len, 1);
  scrub(&out->error_message, NULL, 0);
  scrub(&out->stack_trace, NULL, 0);
}
