/* bench_rows.c: streams a million rows through db:rows (or the same data
 * through db:copy_out) inside a real host state, touching every value in
 * Lua, and prints the time taken and the process's peak RSS. The point is
 * that memory stays bounded: single-row mode and chunked COPY never hold
 * the result, so the peak must not grow with the row count.
 *
 * Usage: bench_rows [--mode rows|copy] [--rows N] [--pad BYTES]
 *                   [--check MB]
 * Connects with libpq's PG* environment. --pad adds a text column of that
 * many bytes to every row (1000 gives rows of about 1 KB). With --check,
 * exits 1 when the peak RSS reaches MB megabytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <lauxlib.h>

#include "clock.h"
#include "db.h"
#include "host.h"
#include "log.h"

/* Five columns like a purge or extract job's: an int8, a numeric (a
 * string in Lua), a text, a timestamptz (text) and a text that is NULL
 * one row in ten. The series is in the select list, so the server
 * streams it too instead of materialising it. */
static const char rows_lua[] =
    "local n, pad = ...\n"
    "local c = require('db').connect('')\n"
    "local null = c.null\n"
    "local count, id_sum, chars, nulls = 0, 0, 0, 0\n"
    "for row in c:rows([[SELECT g::int8 AS id,\n"
    "    (g * 1.25)::numeric(14,2) AS amount, md5(g::text) AS customer,\n"
    "    '2026-01-01'::timestamptz + g * interval '1 s' AS created_at,\n"
    "    CASE WHEN g % 10 = 0 THEN NULL ELSE repeat('x', (g % 50)::int) END\n"
    "      AS note, repeat('y', $2::int) AS pad\n"
    "  FROM (SELECT generate_series(1, $1::int8) AS g) s]], n, pad) do\n"
    "  count = count + 1\n"
    "  id_sum = id_sum + row.id\n"
    "  chars = chars + #row.amount + #row.customer + #row.created_at\n"
    "  if row.note == null then nulls = nulls + 1\n"
    "  else chars = chars + #row.note end\n"
    "  chars = chars + #row.pad\n"
    "end\n"
    "assert(count == n, 'rows: ' .. count)\n"
    "assert(id_sum == n * (n + 1) // 2, 'id sum')\n"
    "return string.format('%d rows, %d chars, %d nulls', count, chars,\n"
    "  nulls)\n";

static const char copy_lua[] =
    "local n, pad = ...\n"
    "local c = require('db').connect('')\n"
    "local bytes, lines, chunks = 0, 0, 0\n"
    "local rows = c:copy_out(string.format([[COPY (SELECT g::int8 AS id,\n"
    "    (g * 1.25)::numeric(14,2) AS amount, md5(g::text) AS customer,\n"
    "    '2026-01-01'::timestamptz + g * interval '1 s' AS created_at,\n"
    "    CASE WHEN g %% 10 = 0 THEN NULL ELSE repeat('x', (g %% 50)::int) END\n"
    "      AS note, repeat('y', %d) AS pad\n"
    "  FROM (SELECT generate_series(1, %d) AS g) s) TO STDOUT]], pad, n),\n"
    "  function(chunk)\n"
    "    chunks = chunks + 1\n"
    "    bytes = bytes + #chunk\n"
    "    for _ in chunk:gmatch('\\n') do lines = lines + 1 end\n"
    "  end)\n"
    "assert(rows == n and lines == n, 'rows: ' .. rows .. ' ' .. lines)\n"
    "return string.format('%d rows, %d bytes in %d chunks', rows, bytes,\n"
    "  chunks)\n";

static long peak_rss_kb(void)
{
  struct rusage ru;

  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return ru.ru_maxrss;
}

int main(int argc, char **argv)
{
  const char *mode = "rows";
  long long nrows = 1000000;
  long check_mb = 0;
  long long pad = 0;
  host_options o = {0};
  const char *code;
  lua_State *L;
  int64_t t0, t1;
  long before, after;
  int i, ok;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
      mode = argv[++i];
    else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
      nrows = strtoll(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--pad") == 0 && i + 1 < argc)
      pad = strtoll(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--check") == 0 && i + 1 < argc)
      check_mb = strtol(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: bench_rows [--mode rows|copy] [--rows N] "
                      "[--pad BYTES] [--check MB]\n");
      return 2;
    }
  }
  code = strcmp(mode, "copy") == 0 ? copy_lua : rows_lua;

  log_configure(stderr, LOG_TEXT, LOG_WARN);
  o.job = "bench_rows";
  L = host_open(&o);
  if (!L) {
    fprintf(stderr, "cannot open a host state\n");
    return 1;
  }
  before = peak_rss_kb();
  t0 = clock_mono_us();
  ok = host_load(L, code, strlen(code), "=bench") == LUA_OK;
  if (ok) {
    lua_pushinteger(L, (lua_Integer)nrows);
    lua_pushinteger(L, (lua_Integer)pad);
    ok = host_pcall(L, 2, 1) == LUA_OK;
  }
  t1 = clock_mono_us();
  after = peak_rss_kb();

  printf("%s: %s\n", mode, luaL_tolstring(L, -1, NULL));
  if (ok) {
    double secs = (double)(t1 - t0) / 1e6;

    printf("time %.2f s (%.0f rows/s), Lua heap peak %.1f MB\n", secs,
           (double)nrows / secs,
           (double)host_get(L)->mem_peak / (1024.0 * 1024.0));
    printf("peak RSS %.1f MB (%.1f MB before the stream)\n",
           (double)after / 1024.0, (double)before / 1024.0);
  }
  db_end_run(L);
  host_close(L);
  db_pool_close_all();
  if (!ok)
    return 1;
  if (check_mb > 0 && after >= check_mb * 1024) {
    printf("peak RSS %.1f MB is over the %ld MB limit\n",
           (double)after / 1024.0, check_mb);
    return 1;
  }
  return 0;
}
