/* bench.c: encodes query-like rows with the host's json module and with
 * lua-cjson 2.1.0 (the library jobs can also require) in the same process
 * and prints the median of several timed runs of each case. The two
 * libraries take turns, run by run, and the time is the process's CPU
 * time, so that other load on the machine weighs on both alike.
 *
 * The rows are what db:query returns for five columns: an int8, a numeric
 * (a string), a text, a timestamptz (text) and a NULL, each row a table
 * whose metatable lists the columns in __columns, all in a marked array.
 * Cases: the whole result in one call, each row in its own call, and
 * decoding the whole text back.
 *
 * Usage: json_bench [ROWS [RUNS]] (defaults 100000 and 7). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>

#include "json.h"

/* The rows and the cases, as a job would write them. */
static const char setup_lua[] =
  "local n = ...\n"
  "local cols = {'id', 'amount', 'customer', 'created_at', 'note'}\n"
  "local mt = {__columns = cols}\n"
  "rows = json.array()\n"
  "for i = 1, n do\n"
  "  rows[i] = setmetatable({\n"
  "    id = 40000000 + i * 7,\n"
  "    amount = string.format('%d.%02d', (i * 7919) % 100000, i % 100),\n"
  "    customer = 'Customer ' .. i .. ' of branch ' .. (i % 97),\n"
  "    created_at = string.format('2025-03-%02d %02d:%02d:%02d.%06d+00',\n"
  "      1 + i % 28, i % 24, i % 60, (i * 7) % 60, (i * 7919) % 1000000),\n"
  "    note = json.null,\n"
  "  }, mt)\n"
  "end\n"
  "text = json.encode(rows)\n"
  "ctext = cjson.encode(rows)\n"
  "cases = {\n"
  "  {'encode all rows, one call',\n"
  "    function() return json.encode(rows) end,\n"
  "    function() return cjson.encode(rows) end},\n"
  "  {'encode each row, one call a row',\n"
  "    function() local enc = json.encode\n"
  "      for i = 1, #rows do enc(rows[i]) end end,\n"
  "    function() local enc = cjson.encode\n"
  "      for i = 1, #rows do enc(rows[i]) end end},\n"
  "  {'decode all rows',\n"
  "    function() return json.decode(text) end,\n"
  "    function() return cjson.decode(ctext) end},\n"
  "}\n";

static double cpu_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return (x > y) - (x < y);
}

/* Calls the function on top of the stack, raising nothing: exits on a
 * Lua error, since a benchmark that fails has nothing to report. */
static void call(lua_State *L, int nargs)
{
  if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
    fprintf(stderr, "json_bench: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

/* Runs the function on top of the stack once, after a full collection,
 * and returns the CPU time it took; pops it. */
static double timed_call(lua_State *L)
{
  double t0;

  lua_gc(L, LUA_GCCOLLECT);
  t0 = cpu_ms();
  call(L, 0);
  return cpu_ms() - t0;
}

int main(int argc, char **argv)
{
  long rows = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
  int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 7;
  double *times[2];
  lua_State *L = luaL_newstate();
  size_t len;

  if (L == NULL || rows < 1 || runs < 1 || runs > 1000)
    return 2;
  times[0] = calloc((size_t)runs, sizeof(double));
  times[1] = calloc((size_t)runs, sizeof(double));
  if (times[0] == NULL || times[1] == NULL)
    return 2;
  luaL_openlibs(L);
  luaL_requiref(L, "json", luaopen_jobhost_json, 1);
  luaL_requiref(L, "cjson", luaopen_cjson, 1);
  lua_settop(L, 0);

  if (luaL_loadstring(L, setup_lua) != LUA_OK) {
    fprintf(stderr, "json_bench: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pushinteger(L, rows);
  call(L, 1);

  lua_getglobal(L, "text");
  lua_tolstring(L, -1, &len);
  printf("%ld rows of 5 columns: json text %zu bytes", rows, len);
  lua_getglobal(L, "ctext");
  lua_tolstring(L, -1, &len);
  printf(", cjson text %zu bytes\n", len);
  printf("median CPU time of %d runs each, after a warm-up, the two "
         "taking turns\n\n", runs);
  lua_settop(L, 0);
  printf("%-34s %10s %10s %8s\n", "case", "json ms", "cjson ms", "ratio");

  lua_getglobal(L, "cases");
  for (lua_Integer c = 1; lua_rawgeti(L, 1, c) == LUA_TTABLE; c++) {
    double median[2];

    for (int r = -1; r < runs; r++) {
      for (int lib = 0; lib < 2; lib++) {
        double t;
        lua_rawgeti(L, 2, lib + 2);
        t = timed_call(L);
        if (r >= 0)
          times[lib][r] = t;
      }
    }
    for (int lib = 0; lib < 2; lib++) {
      qsort(times[lib], (size_t)runs, sizeof(double), compare_double);
      median[lib] = times[lib][runs / 2];
    }
    lua_rawgeti(L, 2, 1);
    printf("%-34s %10.2f %10.2f %8.2f\n", lua_tostring(L, -1), median[0],
           median[1], median[0] / median[1]);
    lua_settop(L, 1);
  }

  free(times[0]);
  free(times[1]);
  lua_close(L);
  return 0;
}
