/* job.c: the job contract. Loads jobs/NAME.lua into a fresh host state,
 * checks the spec it returns, merges the params, builds ctx, runs, and
 * turns the way the run ended into a job_outcome: a JSON result, or an
 * error type, message and stack trace. Every caller (the CLI, the Lambda
 * loop, the REPL) runs jobs through job_run, so they all behave alike. */
#include "job.h"
#include "job_outcome.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "clock.h"
#include "db.h"
#include "env.h"
#include "host.h"
#include "json.h"
#include "log.h"
#include "schedule.h"
#include "secrets.h"

/* A spec key, the Lua type it must have, and what it is for. */
typedef struct {
  const char *key;
  int type;
  int required;
} spec_key;

static const spec_key spec_keys[] = {
    {"description", LUA_TSTRING, 0}, {"schedule", LUA_TSTRING, 0},
    {"database", LUA_TSTRING, 0},    {"timeout", LUA_TNUMBER, 0},
    {"memory", LUA_TNUMBER, 0},      {"lock", LUA_TBOOLEAN, 0},
    {"params", LUA_TTABLE, 0},       {"run", LUA_TFUNCTION, 1},
    {NULL, 0, 0}};

const char *job_default_dir(void)
{
  static char dir[4096];
  const char *env = getenv("JOBHOST_JOBS");
  const char *root = getenv("LAMBDA_TASK_ROOT");

  if (env && *env)
    return env;
  if (root && *root) {
    snprintf(dir, sizeof dir, "%s/jobs", root);
    return dir;
  }
  return "jobs";
}

int job_name_valid(const char *name)
{
  const char *p;

  if (!name || !*name || name[0] == '.' || strlen(name) > 128)
    return 0;
  for (p = name; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
      return 0;
  return 1;
}

void job_join_names(char *const *names, char *buf, size_t size)
{
  char *const *p;
  size_t n = 0;

  if (size == 0)
    return;
  buf[0] = '\0';
  if (!names || !*names) {
    snprintf(buf, size, "none");
    return;
  }
  for (p = names; *p; p++) {
    size_t need = strlen(*p) + (p == names ? 0 : 2);

    /* Keep room for ", ..." and the NUL. */
    if (n + need + 6 > size) {
      if (n + 6 <= size)
        snprintf(buf + n, size - n, "%s...", n ? ", " : "");
      return;
    }
    n += (size_t)snprintf(buf + n, size - n, "%s%s", p == names ? "" : ", ",
                          *p);
  }
}

/* ---- loading and validating -------------------------------------------- */

/* Compiles and runs jobs/NAME.lua; on success the spec table is on the
 * stack. On failure pushes nothing and writes err. Returns 0 or -1; *kind
 * tells "Job.NotFound" from "Job.Invalid". */
static int load_spec(lua_State *L, const char *dir, const char *name,
                     const char **kind, char *err, size_t errlen)
{
  char path[4096];
  int status;
  int top = lua_gettop(L);
  int64_t run_deadline, load_deadline;
  struct stat st;

  *kind = "Job.Invalid";
  if (!job_name_valid(name) ||
      (strlen(name) > 4 && strcmp(name + strlen(name) - 4, ".lua") == 0)) {
    const char *base = name ? strrchr(name, '/') : NULL;
    size_t len;

    *kind = "Job.NotFound";
    base = base ? base + 1 : name ? name : "";
    len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".lua") == 0)
      snprintf(err, errlen, "invalid job name \"%s\": name the job (%.*s),"
               " not its file", name, (int)(len - 4), base);
    else
      snprintf(err, errlen, "invalid job name \"%s\" (letters, digits, _ "
               "- and .)", name ? name : "");
    return -1;
  }
  /* require finds Lua modules beside the jobs. */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/lib/?.lua", dir, dir);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  snprintf(path, sizeof path, "%s/%s.lua", dir, name);
  run_deadline = host_get(L)->deadline_ms;
  load_deadline = clock_now_ms() + JOB_LOAD_MS;
  if (run_deadline && run_deadline <= load_deadline)
    load_deadline = 0;
  else
    host_set_deadline(L, load_deadline);
  status = luaL_loadfilex(L, path, "t");
  if (status == LUA_OK)
    status = host_pcall(L, 0, 1);
  if (load_deadline)
    host_set_deadline(L, run_deadline);
  if (status == LUA_ERRFILE && lstat(path, &st) == 0) {
    /* Listed, but nothing to read: not "not found". */
    struct stat target;

    if (S_ISDIR(st.st_mode))
      snprintf(err, errlen, "%s is a folder, not a job's file", path);
    else if (S_ISLNK(st.st_mode) && stat(path, &target) != 0)
      snprintf(err, errlen, "%s is a symbolic link to nothing: %s", path,
               strerror(errno));
    else
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (status == LUA_ERRFILE && stat(dir, &st) != 0) {
    /* No jobs folder at all: say so, not "no jobs in it". */
    *kind = "Job.NotFound";
    lua_pop(L, 1);
    snprintf(err, errlen, "job \"%s\" not found: cannot read the jobs "
             "folder %s: %s (give --jobs DIR or set JOBHOST_JOBS)", name,
             dir, strerror(errno));
    return -1;
  }
  if (status == LUA_ERRFILE) {
    char **known = job_list(dir);
    char names[1024];

    *kind = "Job.NotFound";
    lua_pop(L, 1);
    job_join_names(known, names, sizeof names);
    job_list_free(known);
    snprintf(err, errlen, "job \"%s\" not found: no file %s; the jobs "
             "there: %s", name, path, names);
    return -1;
  }
  if (status != LUA_OK && load_deadline &&
      host_get(L)->stop == HOST_TIMEOUT) {
    /* The load's own bound, not the run's deadline: the file is at
     * fault, and the state may go on (job_spec_open's caller closes it,
     * job_run reports Job.Invalid). */
    host_resume(L);
    snprintf(err, errlen, "%s: did not return its spec within %d s: a job "
             "file's top level only builds the spec, the work belongs in "
             "run", path, JOB_LOAD_MS / 1000);
    lua_settop(L, top);
    return -1;
  }
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);

    /* Lua's own messages name the file; a stop or a refused binary chunk
     * does not. */
    if (lua_type(L, -1) == LUA_TSTRING &&
        strncmp(msg, path, strlen(path)) == 0)
      snprintf(err, errlen, "%s", msg);
    else
      snprintf(err, errlen, "%s: %s", path,
               lua_type(L, -1) == LUA_TSTRING ? msg : job_error_text(L, -1));
    lua_settop(L, top);
    return -1;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: the file must return a table (the job's spec),"
             " not a %s value", path, luaL_typename(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

static const char *lua_type_word(int type)
{
  switch (type) {
  case LUA_TSTRING: return "a string";
  case LUA_TNUMBER: return "a number";
  case LUA_TBOOLEAN: return "a boolean";
  case LUA_TTABLE: return "a table";
  case LUA_TFUNCTION: return "a function";
  }
  return "a value";
}

/* Checks a number of the spec (at the top of the stack): finite, above
 * 0, at most max, whole when integral is set. Returns 0, or -1 with err. */
static int check_spec_number(lua_State *L, const char *dir, const char *name,
                             const char *key, double max, int integral,
                             char *err, size_t errlen)
{
  double v = (double)lua_tonumber(L, -1);

  if (!isfinite(v) || v <= 0 || v > max) {
    snprintf(err, errlen, "%s/%s.lua: \"%s\" must be greater than 0 and at "
             "most %.0f%s, not %.14g", dir, name, key, max,
             strcmp(key, "timeout") == 0 ? " (seconds)" : " (MiB)", v);
    return -1;
  }
  if (integral && v != floor(v)) {
    snprintf(err, errlen, "%s/%s.lua: \"%s\" must be a whole number of "
             "MiB", dir, name, key);
    return -1;
  }
  return 0;
}

/* Checks the default params (at the top of the stack): values an event
 * can override and a result or a log can show, so no functions,
 * coroutines or userdata other than the null value. */
static int check_spec_params(lua_State *L, const char *dir, const char *name,
                             char *err, size_t errlen)
{
  int params = lua_gettop(L);

  if (lua_getmetatable(L, params)) {
    lua_settop(L, params);
    snprintf(err, errlen, "%s/%s.lua: \"params\" must be a plain table, "
             "without a metatable", dir, name);
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, params)) {
    int t = lua_type(L, -1);

    if (t == LUA_TFUNCTION || t == LUA_TTHREAD || t == LUA_TUSERDATA ||
        (t == LUA_TLIGHTUSERDATA && !json_is_null(L, -1))) {
      lua_pop(L, 1);
      snprintf(err, errlen, "%s/%s.lua: param \"%s\" is %s; a param's "
               "default must be a string, number, boolean, table or null",
               dir, name, job_tostring(L, -1), lua_type_word(t));
      lua_settop(L, params);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* The edit distance between a and b (insertions, deletions, changes and
 * swaps of two neighbours), or a large number past 32 bytes. */
static size_t edit_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b), i, j;
  size_t d[33][33];

  if (la > 32 || lb > 32)
    return 99;
  for (i = 0; i <= la; i++)
    d[i][0] = i;
  for (j = 0; j <= lb; j++)
    d[0][j] = j;
  for (i = 1; i <= la; i++) {
    for (j = 1; j <= lb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[la][lb];
}

/* Checks the spec at the top of the stack. Returns 0, or -1 with err
 * naming the file and the key. The spec is read raw: a table with a
 * metatable is refused first, so no metamethod of the job's runs while
 * the host reads it. */
/* Adds one problem of a spec (a message that starts with the file's
 * path) to err: the first as it is, the next after "; " without the
 * path again. */
static void add_problem(char *err, size_t errlen, const char *path,
                        const char *problem, int *problems)
{
  size_t used = strlen(err), skip = strlen(path);

  if ((*problems)++ == 0 || strncmp(problem, path, skip) != 0)
    skip = 0;
  else if (strncmp(problem + skip, ": ", 2) == 0)
    skip += 2;
  snprintf(err + used, errlen - used, "%s%s", used ? "; " : "",
           problem + skip);
}

/* Checks the spec on top of the stack; every problem is told, not only
 * the first. */
static int validate_spec(lua_State *L, const char *dir, const char *name,
                         char *err, size_t errlen)
{
  int spec = lua_gettop(L), problems = 0;
  const spec_key *k;
  char path[4096], one[6144];

  snprintf(path, sizeof path, "%s/%s.lua", dir, name);
  if (lua_getmetatable(L, spec)) {
    lua_settop(L, spec);
    snprintf(err, errlen, "%s: the job's spec must be a plain table, "
             "without a metatable", path);
    return -1;
  }
  err[0] = '\0';
  lua_pushnil(L);
  while (lua_next(L, spec)) {
    lua_pop(L, 1);
    for (k = spec_keys; k->key; k++)
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), k->key) == 0)
        break;
    if (!k->key) {
      int key = lua_gettop(L);
      const char *given = job_tostring(L, key), *near = NULL;
      char hint[64] = "";

      /* A typo of a known key (schedul, timeuot) is named. */
      for (k = spec_keys; k->key && lua_type(L, key) == LUA_TSTRING; k++)
        if (edit_distance(lua_tostring(L, key), k->key) <= 2)
          near = k->key;
      if (near)
        snprintf(hint, sizeof hint, "did you mean \"%s\"? ", near);
      snprintf(one, sizeof one,
               "%s: unknown key \"%s\" in the job's spec (%sknown: "
               "description, schedule, database, timeout, memory, lock, "
               "params, run)",
               path, given, hint);
      add_problem(err, errlen, path, one, &problems);
      lua_settop(L, key);
    }
  }
  for (k = spec_keys; k->key; k++) {
    int t;
    int bad = 0;

    lua_pushstring(L, k->key);
    t = lua_rawget(L, spec);
    if ((t == LUA_TNIL && k->required) || (t != LUA_TNIL && t != k->type)) {
      snprintf(one, sizeof one, "%s: \"%s\" must be %s, not %s", path,
               k->key, lua_type_word(k->type),
               t == LUA_TNIL ? "missing" : luaL_typename(L, -1));
      bad = 1;
    } else if (t == LUA_TNUMBER) {
      int memory = strcmp(k->key, "memory") == 0;

      bad = check_spec_number(L, dir, name, k->key,
                              memory ? JOB_MAX_MEMORY_MB : JOB_MAX_TIMEOUT_S,
                              memory, one, sizeof one) != 0;
    } else if (t == LUA_TTABLE) {
      bad = check_spec_params(L, dir, name, one, sizeof one) != 0;
    } else if (t == LUA_TSTRING && strcmp(k->key, "database") == 0 &&
               lua_rawlen(L, -1) == 0) {
      snprintf(one, sizeof one, "%s: \"database\" is empty: name a "
               "secret or a connection string, or leave it out", path);
      bad = 1;
    } else if (t == LUA_TSTRING && strcmp(k->key, "schedule") == 0) {
      char why[512];

      if (schedule_validate(lua_tostring(L, -1), why, sizeof why) != 0) {
        snprintf(one, sizeof one, "%s: invalid schedule \"%s\": %s", path,
                 lua_tostring(L, -1), why);
        bad = 1;
      }
    }
    if (bad)
      add_problem(err, errlen, path, one, &problems);
    lua_settop(L, spec);
  }
  return problems ? -1 : 0;
}

lua_State *job_spec_open(const char *dir, const char *name, char *err,
                         size_t errlen)
{
  host_options o = {0};
  lua_State *L;
  const char *kind;

  if (!dir)
    dir = job_default_dir();
  o.job = name;
  o.mem_limit = (size_t)JOB_DEFAULT_MEMORY_MB * 1024 * 1024;
  L = host_open(&o);
  if (!L) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (load_spec(L, dir, name, &kind, err, errlen) != 0 ||
      validate_spec(L, dir, name, err, errlen) != 0) {
    job_spec_close(L);
    return NULL;
  }
  return L;
}

void job_spec_close(lua_State *L)
{
  db_end_run(L);
  host_close(L);
}

int job_check(const char *jobs_dir, const char *name, char *err,
              size_t errlen)
{
  lua_State *L = job_spec_open(jobs_dir, name, err, errlen);

  if (!L)
    return -1;
  job_spec_close(L);
  return 0;
}

int job_schedule_of(const char *dir, const char *name, char *out,
                    size_t outlen, char *err, size_t errlen)
{
  lua_State *L = job_spec_open(dir, name, err, errlen);

  if (!L)
    return -1;
  lua_getfield(L, -1, "schedule");
  snprintf(out, outlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
  job_spec_close(L);
  return 0;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The stems of dir's *.lua files whose stem is (valid set) or is not a
 * job name, sorted. */
static char **list_lua(const char *dir, int valid)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL, **grown;
  size_t n = 0, cap = 0;

  if (!d)
    return NULL;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len <= 4 || strcmp(e->d_name + len - 4, ".lua") != 0)
      continue;
    if (n + 2 > cap) {
      cap = cap ? cap * 2 : 16;
      grown = realloc(names, cap * sizeof *names);
      if (!grown)
        goto fail;
      names = grown;
    }
    names[n] = strndup(e->d_name, len - 4);
    if (!names[n])
      goto fail;
    if (!job_name_valid(names[n]) == !!valid) {
      free(names[n]);
      continue;
    }
    n++;
  }
  closedir(d);
  if (!names) {
    names = calloc(1, sizeof *names);
    return names;
  }
  qsort(names, n, sizeof *names, name_cmp);
  names[n] = NULL;
  return names;

fail:
  closedir(d);
  while (n > 0)
    free(names[--n]);
  free(names);
  return NULL;
}

char **job_list(const char *dir)
{
  return list_lua(dir, 1);
}

char **job_list_misnamed(const char *dir)
{
  return list_lua(dir, 0);
}

void job_list_free(char **names)
{
  char **p;

  if (!names)
    return;
  for (p = names; *p; p++)
    free(*p);
  free(names);
}

/* ---- ctx --------------------------------------------------------------- */

static int ctx_remaining_ms(lua_State *L)
{
  int64_t left = host_remaining_ms(L);

  lua_pushinteger(L, left < 0 ? 0 : left);
  return 1;
}

static int ctx_secret(lua_State *L)
{
  secrets_push(L, luaL_checkstring(L, 1));
  return 1;
}

static int ctx_connect(lua_State *L)
{
  db_push_connection(L, luaL_checkstring(L, 1));
  return 1;
}

/* ctx.db connects on first use: __index(ctx, "db"). */
static int ctx_index(lua_State *L)
{
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "db"))
    return 0;
  db_push_connection(L, lua_tostring(L, lua_upvalueindex(1)));
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "db");
  return 1;
}

void job_push_ctx(lua_State *L, const char *database, int event_idx,
                  const char *request_id, const char *scheduled_time)
{
  host_run *run = host_get(L);
  const char *env = getenv("JOBHOST_DATABASE");

  if (event_idx)
    event_idx = lua_absindex(L, event_idx);
  if (!database)
    database = env ? env : "";

  lua_createtable(L, 0, 12);
  lua_pushstring(L, run->job ? run->job : "");
  lua_setfield(L, -2, "job");
  if (request_id) {
    lua_pushstring(L, request_id);
    lua_setfield(L, -2, "request_id");
  }
  if (scheduled_time) {
    lua_pushstring(L, scheduled_time);
    lua_setfield(L, -2, "scheduled_time");
  }
  if (event_idx)
    lua_pushvalue(L, event_idx);
  else
    lua_createtable(L, 0, 0);
  lua_setfield(L, -2, "event");
  lua_pushboolean(L, run->dry_run);
  lua_setfield(L, -2, "dry_run");
  if (run->deadline_ms) {
    lua_pushinteger(L, run->deadline_ms);
    lua_setfield(L, -2, "deadline");
  }
  lua_pushcfunction(L, ctx_remaining_ms);
  lua_setfield(L, -2, "remaining_ms");
  lua_pushcfunction(L, ctx_secret);
  lua_setfield(L, -2, "secret");
  lua_pushcfunction(L, ctx_connect);
  lua_setfield(L, -2, "connect");
  luaL_requiref(L, "log", luaopen_jobhost_log, 0);
  lua_setfield(L, -2, "log");

  lua_createtable(L, 0, 1);
  lua_pushstring(L, database);
  lua_pushcclosure(L, ctx_index, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
}

/* ---- params ------------------------------------------------------------ */

/* Converts the override at the top of the stack to the type of the
 * default at index def; replaces it. Raises naming the param. */
static void coerce_param(lua_State *L, int def, const char *key)
{
  int want = lua_type(L, def);
  const char *s;

  /* A default of json.null has no type to convert to: any value goes,
   * a --param as its string. */
  if (json_is_null(L, def))
    return;
  if (lua_type(L, -1) != LUA_TSTRING || want == LUA_TSTRING)
    goto check;
  s = lua_tostring(L, -1);
  if (want == LUA_TBOOLEAN) {
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
      lua_pushboolean(L, s[0] == 't');
      lua_replace(L, -2);
    }
  } else if (want == LUA_TNUMBER) {
    if (lua_stringtonumber(L, s)) {
      if (lua_isinteger(L, def) && !lua_isinteger(L, -1)) {
        lua_pop(L, 1);
      } else {
        lua_replace(L, -2);
      }
    }
  }

check:
  if (lua_type(L, -1) == LUA_TNUMBER && want == LUA_TSTRING) {
    lua_pushstring(L, lua_tostring(L, -1));
    lua_replace(L, -2);
  }
  if (want == LUA_TNUMBER && lua_type(L, -1) == LUA_TNUMBER) {
    /* Keep the default's subtype: 3.0 for an integer param is 3 (1.5 is
     * an error below, never cut to 1); 3 for a float param is 3.0. */
    int exact;
    lua_Integer i = lua_tointegerx(L, -1, &exact);
    if (lua_isinteger(L, def) && !lua_isinteger(L, -1) && exact) {
      lua_pushinteger(L, i);
      lua_replace(L, -2);
    } else if (!lua_isinteger(L, def) && lua_isinteger(L, -1)) {
      lua_pushnumber(L, (lua_Number)lua_tointeger(L, -1));
      lua_replace(L, -2);
    }
  }
  if ((lua_type(L, -1) != want && !json_is_null(L, -1)) ||
      (want == LUA_TNUMBER && lua_isinteger(L, def) &&
       !lua_isinteger(L, -1))) {
    const char *how = want == LUA_TTABLE
                          ? " (give tables in the event's params)"
                          : "";
    const char *type = luaL_typename(L, -1);
    const char *text;

    /* A string (every --param is one) that does not read as the type. */
    if (lua_type(L, -1) == LUA_TSTRING && want != LUA_TTABLE) {
      const char *what = lua_type_word(want);

      if (want == LUA_TBOOLEAN) {
        what = "true or false";
      } else if (want == LUA_TNUMBER && lua_isinteger(L, def)) {
        what = "a whole number";
        /* 9223372036854775808 reads as a float with no fraction. */
        if (lua_stringtonumber(L, lua_tostring(L, -1))) {
          lua_Number v = lua_tonumber(L, -1);
          if (v == floor(v) && (v >= 0x1p63 || v < -0x1p63))
            what = "a whole number in the 64-bit integer range";
          else if (v == floor(v))
            what = "a whole number written as one (no exponent or point)";
          lua_pop(L, 1);
        }
      }
      luaL_error(L, "param \"%s\": \"%s\" is not %s, as its default is",
                 key, lua_tostring(L, -1), what);
    }
    /* The event's null (only an integer param refuses it) is named as
     * the JSON it came as, not as the userdata that stands for it. */
    if (json_is_null(L, -1))
      luaL_error(L, "param \"%s\" must be an integer like its default, not "
                    "null", key);
    /* A table from the event reads as the JSON it came as. */
    if (lua_istable(L, -1)) {
      text = job_error_text(L, -1);
      type = "a table";
    } else {
      text = luaL_tolstring(L, -1, NULL);
    }
    luaL_error(L, "param \"%s\" must be %s like its default, not %s %s%s%s%s",
               key, lua_isinteger(L, def) ? "an integer" : lua_type_word(want),
               type, lua_istable(L, -2) ? "" : "\"", text,
               lua_istable(L, -2) ? "" : "\"", how);
  }
}

/* Sets params[key] = the value at the top of the stack (popped). */
static void set_param(lua_State *L, int params, const char *key)
{
  if (lua_getfield(L, params, key) == LUA_TNIL) {
    const char *names[64];
    size_t n = 0, i, j;
    luaL_Buffer b;

    /* The message lists the job's params, sorted. */
    lua_pushnil(L);
    while (lua_next(L, params)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING && n < 64)
        names[n++] = lua_tostring(L, -1);
    }
    for (i = 1; i < n; i++)
      for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
        const char *t = names[j];
        names[j] = names[j - 1];
        names[j - 1] = t;
      }
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
      luaL_addstring(&b, i ? ", " : "");
      luaL_addstring(&b, names[i]);
    }
    luaL_pushresult(&b);
    luaL_error(L, "unknown param \"%s\" (the job's params: %s)", key,
               n ? lua_tostring(L, -1) : "none");
  }
  lua_insert(L, -2);
  coerce_param(L, lua_gettop(L) - 1, key);
  lua_setfield(L, params, key);
  lua_pop(L, 1);
}

/* Applies the overrides in the table at the top of the stack (popped). */
static void merge_params(lua_State *L, int params, const char *what)
{
  if (!lua_istable(L, -1))
    luaL_error(L, "%s must be a JSON object", what);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: param names must be strings", what);
    set_param(L, params, lua_tostring(L, -2));
  }
  lua_pop(L, 1);
}

/* ---- the run ----------------------------------------------------------- */

typedef struct {
  const job_request *req;
  const char *dir;
} run_args;

/* Takes the job's session advisory lock on ctx.db (ctx at index ctx):
 * whether it was free. The lock lives until db_end_run resets the
 * connection, on every path out of the run. Raises on database errors. */
static int take_lock(lua_State *L, int ctx, const char *job)
{
  int locked;

  lua_getfield(L, ctx, "db");
  lua_getfield(L, -1, "query");
  lua_insert(L, -2);
  lua_pushliteral(L, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
                     " AS locked");
  lua_pushfstring(L, "jobhost/%s", job);
  lua_call(L, 3, 1);
  lua_geti(L, -1, 1);
  lua_getfield(L, -1, "locked");
  locked = lua_toboolean(L, -1);
  lua_pop(L, 3);
  return locked;
}

/* Decodes the event text (a light userdata, NULL for none): pushes the
 * table, or nil when there is no event. Raises when it is not a JSON
 * object. */
static int decode_event(lua_State *L)
{
  const char *text = lua_touserdata(L, 1);

  if (!text) {
    lua_pushnil(L);
    return 1;
  }
  json_decode(L, text, strlen(text));
  if (!lua_istable(L, -1) || json_is_marked_array(L, -1))
    return luaL_error(L, "it is %s", lua_istable(L, -1) ? "an array"
                                                       : luaL_typename(L, -1));
  return 1;
}

/* The protected body of a run. Stack on entry: the run's arguments, the
 * spec table, the event table or nil. Leaves the encoded result string. */
static int protected_run(lua_State *L)
{
  run_args *a = lua_touserdata(L, 1);
  const job_request *req = a->req;
  host_run *run = host_get(L);
  int spec = 2, event = 0, params, ctx;
  const char *database = req->db_target;
  const char *scheduled;

  if (lua_getfield(L, spec, "memory") == LUA_TNUMBER)
    run->mem_limit = (size_t)(lua_tonumber(L, -1) * 1024 * 1024);
  lua_pop(L, 1);
  if (lua_getfield(L, spec, "timeout") == LUA_TNUMBER) {
    int64_t until = clock_now_ms() + (int64_t)(lua_tonumber(L, -1) * 1000);
    if (!req->deadline_ms || until < req->deadline_ms) {
      host_set_deadline(L, until);
      run->timeout_s = lua_tonumber(L, -1);
    }
  } else if (!req->deadline_ms ||
             run->deadline_ms < req->deadline_ms) {
    run->timeout_s = JOB_DEFAULT_TIMEOUT_S;
    run->timeout_default = 1;
  }
  lua_pop(L, 1);
  if (!database && lua_getfield(L, spec, "database") == LUA_TSTRING)
    database = lua_tostring(L, -1);

  if (lua_istable(L, 3))
    event = 3;

  /* params: a copy of the defaults, then the overrides. */
  lua_createtable(L, 0, 8);
  params = lua_gettop(L);
  if (lua_getfield(L, spec, "params") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, params);
    }
  }
  lua_pop(L, 1);
  if (event) {
    if (lua_getfield(L, event, "params") != LUA_TNIL)
      merge_params(L, params, "the event's params");
    else
      lua_pop(L, 1);
  }
  if (req->params_json) {
    json_decode(L, req->params_json, strlen(req->params_json));
    merge_params(L, params, "params");
  }
  if (req->param_kv) {
    const char *const *kv;
    for (kv = req->param_kv; *kv; kv++) {
      const char *eq = strchr(*kv, '=');
      if (!eq || eq == *kv)
        return luaL_error(L, "param \"%s\" must be KEY=VALUE", *kv);
      lua_pushlstring(L, *kv, (size_t)(eq - *kv));
      lua_pushstring(L, eq + 1);
      set_param(L, params, lua_tostring(L, -2));
      lua_pop(L, 1);
    }
  }

  scheduled = req->scheduled_time;
  if (!scheduled && event && lua_getfield(L, event, "time") == LUA_TSTRING)
    scheduled = lua_tostring(L, -1);
  job_push_ctx(L, database, event, req->request_id, scheduled);
  ctx = lua_gettop(L);

  lua_settop(L, ctx);
  lua_getfield(L, spec, "lock");
  if (lua_toboolean(L, -1) && !take_lock(L, ctx, run->job)) {
    log_emit(LOG_INFO, "run skipped: another run holds the lock", NULL, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "skipped");
  } else {
    lua_getfield(L, spec, "run");
    lua_pushvalue(L, ctx);
    lua_pushvalue(L, params);
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      json_push_null(L);
    }
  }
  if (run->dry_run) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "dry_run");
    lua_insert(L, -2);
    lua_setfield(L, -2, "result");
  }
  json_encode(L, -1, NULL);
  return 1;
}

static size_t env_memory_limit(void)
{
  return (size_t)env_long("JOBHOST_MEMORY_MB", 1, JOB_MAX_MEMORY_MB,
                          JOB_DEFAULT_MEMORY_MB) *
         1024 * 1024;
}

/* Turns a successful outcome whose result is over limit bytes into the
 * failure Job.ResultTooLarge: the result is dropped, its work stays done
 * (committed, unless a dry run). */
static void result_too_large(job_outcome *out, size_t limit)
{
  char msg[256];

  snprintf(msg, sizeof msg,
           "the result is %zu bytes, over the response limit of %zu bytes; "
           "the run's work is done, its result was not sent",
           out->result_len, limit);
  free(out->result);
  out->result = NULL;
  out->result_len = 0;
  job_outcome_fail(out, "Job.ResultTooLarge", msg);
}

int job_run(const job_request *req, job_outcome *out)
{
  host_options o = {0};
  lua_State *L;
  const char *dir = req->jobs_dir ? req->jobs_dir : job_default_dir();
  const char *kind;
  char err[2048];
  run_args args;
  int status;
  int64_t started = clock_mono_us();
  int64_t default_deadline = clock_now_ms() + JOB_DEFAULT_TIMEOUT_S * 1000;

  memset(out, 0, sizeof *out);
  o.job = req->name;
  o.dry_run = req->dry_run;
  o.read_only = req->read_only;
  o.mem_limit = env_memory_limit();
  o.deadline_ms = req->deadline_ms && req->deadline_ms < default_deadline
                      ? req->deadline_ms
                      : default_deadline;
  log_set_job(req->name);
  log_emit(LOG_INFO, "run started",
           (log_field[]){LOG_B("dry_run", req->dry_run)}, 1);

  L = host_open(&o);
  if (!L) {
    job_outcome_fail(out, "Runtime.OutOfMemory", "cannot create a Lua state");
    goto done;
  }
  if (load_spec(L, dir, req->name, &kind, err, sizeof err) != 0 ||
      validate_spec(L, dir, req->name, err, sizeof err) != 0) {
    job_outcome_fail(out, kind, err);
    job_outcome_stopped(L, out);
    goto close;
  }
  if (req->deadline_ms)
    host_set_deadline(L, req->deadline_ms);

  /* The event, decoded apart so that a bad one is told from a bad job. */
  lua_pushcfunction(L, decode_event);
  lua_pushlightuserdata(L, (void *)req->event_json);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(err, sizeof err, "the event is not a JSON object: %s",
             lua_tostring(L, -1));
    job_outcome_fail(out, "Event.Invalid", err);
    goto close;
  }

  args.req = req;
  args.dir = dir;
  lua_pushcfunction(L, protected_run);
  lua_insert(L, -3);
  lua_pushlightuserdata(L, &args);
  lua_insert(L, -3);
  status = host_pcall(L, 3, 1);
  if (status == LUA_OK && host_get(L)->stop != HOST_RUNNING) {
    /* The job caught the stop (an xpcall as its last call) and returned:
     * the run still failed. */
    lua_pop(L, 1);
    lua_pushstring(L, host_stop_message(L, host_get(L)->stop));
    status = LUA_ERRRUN;
  }
  if (status == LUA_OK) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    out->result = malloc(len + 1);
    if (out->result) {
      memcpy(out->result, s, len + 1);
      out->result_len = len;
      out->ok = 1;
    } else {
      job_outcome_fail(out, "Runtime.OutOfMemory", "cannot hold the result");
    }
  } else {
    job_outcome_from_error(L, out);
  }

close:
  db_end_run(L);
  out->mem_peak = host_get(L)->mem_peak;
  host_close(L);

done:
  job_outcome_scrub(out);
  if (out->ok && req->result_limit && out->result_len > req->result_limit)
    result_too_large(out, req->result_limit);
  out->duration_us = clock_mono_us() - started;
  if (out->ok) {
    log_emit(LOG_INFO, "run finished",
             (log_field[]){LOG_S("outcome", "success"),
                           LOG_I("duration_ms", out->duration_us / 1000),
                           LOG_I("result_bytes", out->result_len)},
             3);
  } else {
    log_emit(LOG_ERROR, "run failed",
             (log_field[]){LOG_S("outcome", "failure"),
                           LOG_I("duration_ms", out->duration_us / 1000),
                           LOG_S("error_type", job_error_type(out)),
                           LOG_S("error", out->error_message)},
             4);
  }
  log_set_job(NULL);
  return out->ok ? 0 : -1;
}

