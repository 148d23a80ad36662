/* spec_runner.c: runs one Lua spec file inside a real host state.
 *
 *   spec_runner FILE
 *
 * spec_helper.lua (beside FILE) defines describe/it and the check
 * functions; FILE registers its cases; each case runs under host_pcall,
 * and db_end_run follows it as it follows a job's run. The last line is
 * "N passed, N failed"; the exit status is 1 when any case failed.
 *
 * The spec also gets a `spec` table:
 *   spec.end_run()          ends the run's connections as a job's end does
 *   spec.isolated(code, o)  runs code in a fresh host state with options
 *                           o.deadline_ms (from now), o.mem_limit (bytes),
 *                           o.dry_run, o.read_only, o.job; returns ok,
 *                           the first result or the error (as text), and
 *                           the stop reason ("timeout", "oom",
 *                           "interrupted") or nil. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "clock.h"
#include "db.h"
#include "host.h"
#include "log.h"

static int spec_end_run(lua_State *L)
{
  db_end_run(L);
  return 0;
}

static const char *stop_name(host_stop stop)
{
  switch (stop) {
  case HOST_TIMEOUT: return "timeout";
  case HOST_OOM: return "oom";
  case HOST_INTERRUPTED: return "interrupted";
  case HOST_RUNNING: break;
  }
  return NULL;
}

static int spec_isolated(lua_State *L)
{
  size_t len;
  const char *code = luaL_checklstring(L, 1, &len);
  host_options o = {0};
  lua_State *S;
  int ok;
  const char *stop;

  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "deadline_ms");
    if (lua_isinteger(L, -1))
      o.deadline_ms = clock_now_ms() + lua_tointeger(L, -1);
    lua_getfield(L, 2, "mem_limit");
    if (lua_isinteger(L, -1))
      o.mem_limit = (size_t)lua_tointeger(L, -1);
    lua_getfield(L, 2, "dry_run");
    o.dry_run = lua_toboolean(L, -1);
    lua_getfield(L, 2, "read_only");
    o.read_only = lua_toboolean(L, -1);
    lua_getfield(L, 2, "job");
    o.job = lua_isstring(L, -1) ? lua_tostring(L, -1) : "spec";
    lua_pop(L, 5);
  }
  S = host_open(&o);
  if (!S)
    return luaL_error(L, "cannot open a host state");
  ok = host_load(S, code, len, "=isolated") == LUA_OK &&
       host_pcall(S, 0, 1) == LUA_OK;
  lua_pushboolean(L, ok);
  lua_pushstring(L, luaL_tolstring(S, -1, NULL));
  stop = stop_name(host_get(S)->stop);
  db_end_run(S);
  host_close(S);
  if (stop)
    lua_pushstring(L, stop);
  else
    lua_pushnil(L);
  return 3;
}

static int run_file(lua_State *L, const char *path)
{
  if (luaL_loadfilex(L, path, "t") != LUA_OK ||
      host_pcall(L, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv)
{
  host_options o = {0};
  lua_State *L;
  char helper[4096];
  const char *slash;
  lua_Integer i, n;
  int passed = 0, failed = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: spec_runner FILE\n");
    return 2;
  }
  log_configure(stderr, LOG_TEXT, LOG_INFO);
  o.job = "spec";
  L = host_open(&o);
  if (!L) {
    fprintf(stderr, "cannot open a host state\n");
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, spec_end_run);
  lua_setfield(L, -2, "end_run");
  lua_pushcfunction(L, spec_isolated);
  lua_setfield(L, -2, "isolated");
  lua_setglobal(L, "spec");

  slash = strrchr(argv[1], '/');
  snprintf(helper, sizeof helper, "%.*sspec_helper.lua",
           slash ? (int)(slash - argv[1] + 1) : 0, argv[1]);
  if (run_file(L, helper) != 0 || run_file(L, argv[1]) != 0) {
    host_close(L);
    return 1;
  }

  lua_getglobal(L, "spec_cases");
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_geti(L, -1, i);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "fn");
    if (host_pcall(L, 0, 0) == LUA_OK) {
      passed++;
      printf("ok     %s\n", lua_tostring(L, -1));
    } else {
      failed++;
      printf("FAILED %s\n  %s\n", lua_tostring(L, -2),
             luaL_tolstring(L, -1, NULL));
      lua_pop(L, 2);
    }
    lua_settop(L, 1);
    db_end_run(L);
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  db_end_run(L);
  host_close(L);
  db_pool_close_all();
  return failed ? 1 : 0;
}
