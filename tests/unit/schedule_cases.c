/* schedule_cases.c: checks every case of the shared test data
 * (../shared/testdata/cases/schedules.json) against the schedule module:
 * the validity, and for a valid expression the exact fire times from the
 * case's start instant. The JSON is read with lua-cjson in a plain Lua
 * state. With no argument every case runs; with an index (0-based) only
 * that case, so tests/schedule.cmake can register one ctest a case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>

#include "schedule.h"

#define MAX_NEXT 16

/* The path of schedules.json from JOBHOST_SHARED or JOBHOST_SOURCE. */
static int cases_path(char *buf, size_t len)
{
  const char *shared = getenv("JOBHOST_SHARED");
  const char *source = getenv("JOBHOST_SOURCE");

  if (shared != NULL && *shared != '\0')
    snprintf(buf, len, "%s/testdata/cases/schedules.json", shared);
  else if (source != NULL && *source != '\0')
    snprintf(buf, len, "%s/../shared/testdata/cases/schedules.json", source);
  else
    return -1;
  return 0;
}

/* Reads a string field of the case table at the top of the stack. */
static const char *field_string(lua_State *L, const char *key)
{
  const char *s;

  lua_getfield(L, -1, key);
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the case table keeps the string alive */
  return s;
}

/* Checks the case table at the top of the stack; returns 0 when it holds. */
static int check_case(lua_State *L, int index)
{
  const char *expr = field_string(L, "expr");
  const char *from_text = field_string(L, "from");
  char err[SCHEDULE_ERR_MAX];
  char got[SCHEDULE_TIME_MAX];
  int64_t from, fires[MAX_NEXT];
  schedule s;
  size_t n, want, i;
  int valid, parsed;

  if (expr == NULL || from_text == NULL) {
    printf("FAIL case %d: no expr or from\n", index);
    return -1;
  }
  lua_getfield(L, -1, "valid");
  valid = lua_toboolean(L, -1);
  lua_pop(L, 1);

  parsed = schedule_parse(expr, &s, err, sizeof err) == 0;
  if (parsed != valid) {
    printf("FAIL case %d %s: expected %s, got %s%s%s\n", index, expr,
           valid ? "valid" : "invalid", parsed ? "valid" : "invalid",
           parsed ? "" : ": ", parsed ? "" : err);
    return -1;
  }
  if (!valid) {
    if (err[0] == '\0') {
      printf("FAIL case %d %s: rejected without a message\n", index, expr);
      return -1;
    }
    printf("ok case %d %s: invalid: %s\n", index, expr, err);
    return 0;
  }

  if (schedule_time_parse(from_text, &from, err, sizeof err) < 0) {
    printf("FAIL case %d: %s\n", index, err);
    return -1;
  }
  lua_getfield(L, -1, "next");
  if (!lua_istable(L, -1)) {
    printf("FAIL case %d %s: a valid case without next\n", index, expr);
    lua_pop(L, 1);
    return -1;
  }
  want = lua_rawlen(L, -1);
  if (want > MAX_NEXT - 1)
    want = MAX_NEXT - 1;
  /* Ask for one more than expected: a schedule must also end where the
   * case says it ends. */
  n = schedule_fires(&s, from, fires, want + (want < 5 ? 1 : 0));
  for (i = 0; i < want || i < n; i++) {
    const char *expected = NULL;

    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    expected = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (i < n)
      schedule_time_format(fires[i], got, sizeof got);
    if (i >= n || expected == NULL || strcmp(expected, got) != 0) {
      printf("FAIL case %d %s from %s: fire %zu expected %s, got %s\n",
             index, expr, from_text, i + 1,
             expected != NULL ? expected : "(none)", i < n ? got : "(none)");
      lua_pop(L, 1);
      return -1;
    }
  }
  lua_pop(L, 1);
  printf("ok case %d %s: %zu fire times\n", index, expr, n);
  return 0;
}

int main(int argc, char **argv)
{
  char path[4096];
  lua_State *L;
  int only = -1, failures = 0, count, i;

  if (argc > 1)
    only = (int)strtol(argv[1], NULL, 10);
  if (cases_path(path, sizeof path) < 0) {
    printf("FAIL: set JOBHOST_SHARED or JOBHOST_SOURCE\n");
    return 1;
  }
  if (access(path, R_OK) != 0 && !getenv("CI")) {
    printf("SKIP: no schedule cases at %s (set JOBHOST_SHARED, the folder "
           "holding testdata/, when configuring with cmake)\n", path);
    return 77;
  }

  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 1);
  lua_pop(L, 1);
  if (luaL_dostring(L, "return function(p)\n"
                       "  local f = assert(io.open(p, 'rb'))\n"
                       "  local text = f:read('a')\n"
                       "  f:close()\n"
                       "  return require('cjson').decode(text)\n"
                       "end") != LUA_OK) {
    printf("FAIL: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_pushstring(L, path);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    printf("FAIL: cannot read %s: %s\n", path,
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "not an array");
    lua_close(L);
    return 1;
  }

  count = (int)lua_rawlen(L, -1);
  if (count == 0 || only >= count) {
    printf("FAIL: %s has %d cases\n", path, count);
    lua_close(L);
    return 1;
  }
  for (i = 0; i < count; i++) {
    if (only >= 0 && i != only)
      continue;
    lua_rawgeti(L, -1, i + 1);
    if (check_case(L, i) < 0)
      failures++;
    lua_pop(L, 1);
  }
  lua_close(L);

  if (only < 0)
    printf("%d of %d cases failed\n", failures, count);
  return failures == 0 ? 0 : 1;
}
