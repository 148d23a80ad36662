/* repl.c: `jobhost repl`, the prompt where jobs are written. One host
 * state lives for the whole session and holds the ctx a job gets, so SQL
 * and Lua can be tried against a real database line by line; connections
 * are read-only unless --write is given. The formatting of values (query
 * results as psql-like tables) and the small input rewrites are Lua, in
 * lua/repl.lua; this file reads input, runs it, and writes the output.
 *
 * Input comes from libedit with history when standard input is a
 * terminal, else it is a script read line by line, with the same output
 * and no prompts. An input is run when it compiles; a syntax error at
 * <eof> means it is not finished and the next line is appended.
 *
 * Ctrl-C sets host_interrupt_requested. The host's count hook and the
 * database wait loop notice it, cancel what runs and stop the state; once
 * the stop has unwound here, host_resume lets the same state run again,
 * so the session's globals survive. At the prompt Ctrl-C drops the line
 * being typed. An input stuck in a call into C that Ctrl-C cannot reach
 * ends the session at a second Ctrl-C (on_signal).
 *
 * SIGTERM, and SIGINT in a script, stop what runs the same way (a
 * statement is cancelled on the server) and then end the session, with
 * the status a shell gives a process a signal ended: 128 + the signal. */
#include "repl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "db.h"
#include "env.h"
#include "host.h"
#include "job.h"
#include "redact.h"
#include "repl_edit.h"

/* The Lua heap the session may use when JOBHOST_MEMORY_MB does not say.
 * Larger than a job's default: a session accumulates results. */
#define REPL_MEMORY_MB 1024

/* Entries kept in the history file. */
#define REPL_HISTORY_MAX 1000

/* Words a command line may have (.run JOB k=v ...). */
#define REPL_MAX_WORDS 64

/* The registry field holding the lua/repl.lua module table. */
#define REPL_MODULE_KEY "jobhost.repl"

/* The registry field holding the candidates of the last Tab. */
#define REPL_CANDIDATES_KEY "jobhost.repl.candidates"

/* The metatable of the box that holds job names for .jobs. */
#define REPL_NAMES_MT "jobhost.repl.names"

/* SQLSTATE read_only_sql_transaction: a write on a read-only connection. */
#define READ_ONLY_SQLSTATE "25006"

/* The signal that ends the session once what runs has stopped (SIGTERM,
 * or SIGINT in a script), or 0. Set by on_signal. */
static volatile sig_atomic_t leave_signal;

/* Set while a script waits for its next line: nothing runs then, so a
 * signal that ends the session may end the process at once. */
static volatile sig_atomic_t script_waiting;

typedef struct {
  lua_State *L;
  const char *target;   /* --db or --secret; NULL: the default target */
  const char *jobs_dir;
  int write;            /* --write: connections may change data */
  int interactive;      /* standard input is a terminal */
  int failures;         /* inputs that failed */
  int restart;          /* the state must be replaced before the next
                           input (its heap is full of globals) */
  char *history;        /* the history file, or NULL for none */
  char prompt[32];
  char prompt_more[32];
} repl;

/* How one input went. */
typedef enum { EVAL_DONE, EVAL_FAILED, EVAL_MORE } eval_status;

static void usage(FILE *out)
{
  fputs("usage: jobhost repl [--db TARGET | --secret ID] [--write]"
        " [--jobs DIR]\n"
        "\n"
        "Interactive Lua with the ctx a job gets, for writing jobs:\n"
        "query results print as tables, .run JOB runs a job dry.\n"
        "\n"
        "options:\n"
        "  --db TARGET     connect ctx.db here (a conninfo string, a URI or\n"
        "                  a secret id)\n"
        "  --secret ID     connect ctx.db with this secret (id or ARN)\n"
        "                  default: $JOBHOST_DATABASE, else libpq's PG*\n"
        "                  environment\n"
        "  --write         allow changes; connections are read-only\n"
        "                  (default_transaction_read_only) without it\n"
        "  --jobs DIR      where jobs live (default: $JOBHOST_JOBS or"
        " ./jobs)\n"
        "\n"
        "Without a terminal, reads a script from standard input and\n"
        "exits 1 when any input failed; SIGINT or SIGTERM stops it where\n"
        "it is (exit status 130 or 143). History: ~/.jobhost_history\n"
        "($JOBHOST_HISTORY names another file; empty for none).\n",
        out);
}

static const char help_text[] =
    "Type Lua; an expression's value is printed (`1 + 1` prints 2) and\n"
    "kept in _. An input that is not finished continues on the next\n"
    "line. Tab completes names (ctx.lo -> ctx.log). Ctrl-C stops what\n"
    "runs (or drops the line); Ctrl-D leaves.\n"
    "\n"
    "  ctx                 the ctx a job gets: ctx.db, ctx.connect(t),\n"
    "                      ctx.secret(id), ctx.log.info(msg, fields), ...\n"
    "  sql(q, ...)         ctx.db:query(q, ...), for short\n"
    "  json, db            the json and db modules (db.null is NULL)\n"
    "  jobs.NAME           the spec of jobs/NAME.lua, loaded on first use:\n"
    "                      jobs.NAME.run(ctx, jobs.NAME.params)\n"
    "\n"
    "Connections are read-only unless the REPL was started with --write.\n"
    "A `local` outside any block of an input stays for the session (as\n"
    "a global; <close> is refused), so job code can be pasted line by\n"
    "line. Query results print as tables: NULL shows as \xe2\x88\x85, an\n"
    "empty string as nothing, the first 100 rows; other values as\n"
    "JSON-like text.\n"
    "\n"
    "  .run JOB [k=v ...]  run jobs/JOB.lua dry: every change is rolled\n"
    "                      back; shows its log and its result\n"
    "  .jobs               list the jobs, their schedules and descriptions\n"
    "  .reload             forget loaded jobs.NAME specs and required\n"
    "                      modules, so edited files are read again\n"
    "  .help               this text\n"
    "  .quit               leave (as Ctrl-D does)\n";

/* ---- the Lua side -------------------------------------------------------- */

/* Pushes the function name of lua/repl.lua. Cannot raise: the module
 * table and its field names exist from setup on. */
static void push_helper(lua_State *L, const char *name)
{
  lua_getfield(L, LUA_REGISTRYINDEX, REPL_MODULE_KEY);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Calls helper name with the nargs values at the top of the stack, under
 * host_pcall. Leaves nresults values or the error; returns the status. */
static int call_helper(lua_State *L, const char *name, int nargs,
                       int nresults)
{
  push_helper(L, name);
  lua_insert(L, -nargs - 1);
  return host_pcall(L, nargs, nresults);
}

/* A helper call whose one argument is text held in C. */
typedef struct {
  const char *helper;
  const char *text;
  size_t len;
  int nresults;
} text_call;

/* Lua: helper(text), so that copying the text into the state (which
 * can fail when the heap is full) happens under protection. */
static int call_with_text(lua_State *L)
{
  const text_call *c = lua_touserdata(L, 1);

  push_helper(L, c->helper);
  lua_pushlstring(L, c->text, c->len);
  lua_call(L, 1, c->nresults);
  return c->nresults;
}

/* Calls helper with text as its argument under host_pcall. Leaves
 * nresults values or the error; returns the status. */
static int call_helper_text(lua_State *L, const char *helper,
                            const char *text, size_t len, int nresults)
{
  text_call c;

  c.helper = helper;
  c.text = text;
  c.len = len;
  c.nresults = nresults;
  lua_pushcfunction(L, call_with_text);
  lua_pushlightuserdata(L, &c);
  return host_pcall(L, 1, nresults);
}

/* Writes prefix, the string at the top of the stack (left there) and a
 * newline to out. What the REPL shows passes the same redaction as the
 * log: a registered secret value shows as "[redacted]", so one printed
 * by mistake stays off the screen. */
static void emit(lua_State *L, FILE *out, const char *prefix)
{
  size_t len, shown_len;
  const char *text = lua_tolstring(L, -1, &len);
  char *shown;

  if (!text) {
    text = "(a value that cannot be shown)";
    len = strlen(text);
  }
  shown = redact_active() ? redact_copy(text, len, &shown_len) : NULL;
  fputs(prefix, out);
  if (shown)
    fwrite(shown, 1, shown_len, out);
  else
    fwrite(text, 1, len, out);
  fputc('\n', out);
  free(shown);
}

/* __gc of the box holding job_list's names while jobs_of works. */
static int names_gc(lua_State *L)
{
  char ***box = lua_touserdata(L, 1);

  job_list_free(*box);
  *box = NULL;
  return 0;
}

/* Lua: jobs_of(dir) -> an array of {name = NAME, error = nil or why the
 * job is invalid}, sorted by name. Raises when the folder cannot be read.
 * The names live in a box until copied, so an error cannot leak them. */
static int jobs_of(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  char ***box = lua_newuserdatauv(L, sizeof *box, 0);
  char err[2048];
  lua_Integer i;

  *box = NULL;
  luaL_setmetatable(L, REPL_NAMES_MT);
  *box = job_list(dir);
  if (!*box)
    return luaL_error(L, "cannot read the jobs folder %s: %s", dir,
                      strerror(errno));
  lua_newtable(L);
  for (i = 0; (*box)[i]; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, (*box)[i]);
    lua_setfield(L, -2, "name");
    if (job_check(dir, (*box)[i], err, sizeof err) != 0) {
      lua_pushstring(L, err);
      lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* "nil" or "a TYPE", for the value at idx. */
static const char *a_type(lua_State *L, int idx)
{
  if (lua_isnil(L, idx))
    return "nil";
  return lua_pushfstring(L, "a %s", luaL_typename(L, idx));
}

/* The protected part of sql(): ctx.db:query(q, ...) with the arguments
 * at 1..n, once ctx is found to be a table still and ctx.db something
 * with a query method. Called from C only, so its errors, and those of
 * query, carry no position. */
static int sql_query(lua_State *L)
{
  int n = lua_gettop(L);

  lua_pushglobaltable(L);
  if (lua_getfield(L, -1, "ctx") != LUA_TTABLE)
    return luaL_error(L, "sql: ctx is %s, not a context any more: "
                      "sql(q, ...) runs ctx.db:query(q, ...)",
                      a_type(L, -1));
  lua_getfield(L, -1, "db");
  if ((!lua_istable(L, -1) && !lua_isuserdata(L, -1)) ||
      lua_getfield(L, -1, "query") != LUA_TFUNCTION)
    return luaL_error(L, "sql: ctx.db is %s, not a connection",
                      a_type(L, n + 3));
  lua_insert(L, 1);
  lua_insert(L, 2);
  lua_settop(L, n + 2);
  lua_call(L, n + 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Lua: sql(q, ...) -> ctx.db:query(q, ...), the session's short form.
 * Its errors name the caller's line, as query's do when a job calls it:
 * sql_query runs under lua_pcall and a message it raises (which has no
 * position) gets the caller's, where a helper written in Lua would put
 * its own. An error object (Database.Error) and a stop pass as they
 * are. Raises. */
static int repl_sql(lua_State *L)
{
  int n = lua_gettop(L), status;

  luaL_checkstring(L, 1);
  lua_pushcfunction(L, sql_query);
  lua_insert(L, 1);
  status = lua_pcall(L, n, LUA_MULTRET, 0);
  if (status == LUA_OK)
    return lua_gettop(L);
  if (status == LUA_ERRRUN && lua_type(L, -1) == LUA_TSTRING &&
      host_get(L)->stop == HOST_RUNNING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* The protected part of opening the session's state: the module, the
 * jobs folder on package.path, the globals (ctx, json, db, sql, jobs). */
static int setup_state(lua_State *L)
{
  repl *r = lua_touserdata(L, 1);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "repl");
  lua_call(L, 1, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, REPL_MODULE_KEY);
  luaL_newmetatable(L, REPL_NAMES_MT);
  lua_pushcfunction(L, names_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  /* At the prompt, print prints and io writes to the terminal. */
  lua_getfield(L, LUA_REGISTRYINDEX, HOST_PRINT_KEY);
  lua_setglobal(L, "print");
  lua_getglobal(L, "io");
  lua_getfield(L, LUA_REGISTRYINDEX, HOST_IO_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -5);
  }
  lua_pop(L, 2);

  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;", r->jobs_dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  push_helper(L, "install");
  job_push_ctx(L, r->target, 0, NULL, NULL);
  lua_pushstring(L, r->jobs_dir);
  lua_pushcfunction(L, jobs_of);
  lua_pushcfunction(L, repl_sql);
  lua_call(L, 4, 0);
  return 0;
}

/* The session's heap limit in MiB: JOBHOST_MEMORY_MB, else
 * REPL_MEMORY_MB. */
static long memory_limit_mb(void)
{
  return env_long("JOBHOST_MEMORY_MB", 1, JOB_MAX_MEMORY_MB, REPL_MEMORY_MB);
}

/* Opens the session's state. Returns 0, or -1 with a message written. */
static int open_state(repl *r)
{
  host_options o = {0};

  o.mem_limit = (size_t)memory_limit_mb() * 1024 * 1024;
  o.job = "repl";
  o.read_only = !r->write;
  r->L = host_open(&o);
  if (!r->L) {
    fputs("jobhost repl: cannot create a Lua state\n", stderr);
    return -1;
  }
  lua_pushcfunction(r->L, setup_state);
  lua_pushlightuserdata(r->L, r);
  if (host_pcall(r->L, 1, 0) != LUA_OK) {
    fprintf(stderr, "jobhost repl: %s\n", lua_tostring(r->L, -1));
    host_close(r->L);
    r->L = NULL;
    return -1;
  }
  return 0;
}

/* Ends the session's run (rolls back what is open, returns connections
 * to the pool) and closes the state. */
static void close_state(repl *r)
{
  if (!r->L)
    return;
  db_end_run(r->L);
  host_close(r->L);
  r->L = NULL;
}

/* Replaces the session's state with a fresh one. Returns 0, or -1 when
 * none could be had (the session must end). */
static int restart_state(repl *r)
{
  r->restart = 0;
  close_state(r);
  return open_state(r);
}

/* ---- errors -------------------------------------------------------------- */

/* Whether the error at idx is a write refused by a read-only connection:
 * an error object with SQLSTATE 25006, or its text. */
static int is_read_only_error(lua_State *L, int idx)
{
  int found = 0;

  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_pushliteral(L, "sqlstate");
    if (lua_rawget(L, idx) == LUA_TSTRING)
      found = strcmp(lua_tostring(L, -1), READ_ONLY_SQLSTATE) == 0;
    lua_pop(L, 1);
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    found = strstr(lua_tostring(L, idx), "[" READ_ONLY_SQLSTATE "]") != NULL;
  }
  return found;
}

/* Writes the error at the top of the stack (popped) to stderr: its
 * message and traceback, and for a refused write, how to allow it. A
 * stopped state is resumed first, so the session goes on. */
static void report_error(repl *r)
{
  lua_State *L = r->L;
  host_stop stop = host_get(L)->stop;
  int read_only;

  r->failures++;
  if (stop != HOST_RUNNING) {
    lua_pop(L, 1);
    host_resume(L);
    host_interrupt_requested = 0;
    if (stop == HOST_INTERRUPTED && leave_signal) {
      fputs("\ninterrupted: the input was stopped\n", stderr);
    } else if (stop == HOST_INTERRUPTED) {
      fputs("\ninterrupted: the input was stopped; globals are kept\n",
            stderr);
    } else if (stop == HOST_OOM) {
      host_run *run = host_get(L);
      size_t limit_mb = run->mem_limit / (1024 * 1024);

      lua_gc(L, LUA_GCCOLLECT);
      if (run->mem_used <= run->mem_limit / 4 * 3) {
        fprintf(stderr, "error: memory limit of %zu MiB reached; the input"
                " was stopped\n", limit_mb);
        return;
      }
      /* The session's own globals fill the heap: not even the next input
       * could be compiled. Only a fresh state gets the session going;
       * the loop makes it once this input is done with the old one. */
      fprintf(stderr, "error: memory limit of %zu MiB reached and the "
              "session's globals hold most of it: the session starts "
              "afresh (globals are gone, ctx is new)\n", limit_mb);
      r->restart = 1;
    } else {
      fprintf(stderr, "error: %s\n", host_stop_message(L, stop));
    }
    return;
  }

  read_only = !r->write && is_read_only_error(L, -1);
  if (call_helper(L, "error_text", 1, 1) == LUA_OK) {
    emit(L, stderr, "error: ");
  } else {
    /* Formatting the error failed too (its __tostring raised): say what
     * can be said without running more of it. */
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushliteral(L, "(an error that cannot be shown)");
    }
    emit(L, stderr, "error: ");
    if (host_get(L)->stop != HOST_RUNNING)
      host_resume(L);
  }
  lua_pop(L, 1);
  if (read_only)
    fputs("hint: the REPL's connections are read-only; start it with"
          " `jobhost repl --write` to allow changes\n",
          stderr);
}

/* ---- running an input ---------------------------------------------------- */

/* Forgets an interrupt that came before the input (its Ctrl-C was
 * answered at the prompt). Returns 0, or -1 when a signal has ended the
 * session and the input must not run. The flag is cleared before
 * leave_signal is read, so a signal between the two stops the input. */
static int start_input(void)
{
  host_interrupt_requested = 0;
  return leave_signal ? -1 : 0;
}

/* Compiles an input with lua/repl.lua's compile(): first as `return
 * INPUT`, so an expression's value comes back, then as it is (its
 * locals outside any block made globals). Pushes the function and
 * returns LUA_OK; or pushes the syntax error (or why a local cannot
 * stay) and returns LUA_ERRSYNTAX, *incomplete telling whether the
 * input ended too soon (more lines may finish it); or pushes the error
 * of the helper itself and returns its status. */
static int compile(repl *r, const char *code, int *incomplete)
{
  lua_State *L = r->L;
  int status = call_helper_text(L, "compile", code, strlen(code), 3);

  *incomplete = 0;
  if (status != LUA_OK)
    return status;
  if (lua_isfunction(L, -3)) {
    lua_pop(L, 2);
    return LUA_OK;
  }
  *incomplete = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_remove(L, -2);
  return LUA_ERRSYNTAX;
}

/* Shows the n values at the top of the stack on stdout (popped) and
 * keeps the first in _. */
static void show_values(repl *r, int n)
{
  lua_State *L = r->L;

  if (n == 0)
    return;
  lua_pushinteger(L, n);
  lua_insert(L, -n - 1);
  if (call_helper(L, "show", n + 1, 1) != LUA_OK) {
    report_error(r);
    return;
  }
  emit(L, stdout, "");
  lua_pop(L, 1);
}

/* Runs one input. at_end: no more lines can come, so an unfinished
 * input is an error rather than a reason to wait. */
static eval_status evaluate(repl *r, const char *code, int at_end)
{
  lua_State *L = r->L;
  int status, incomplete;

  lua_settop(L, 0);
  status = compile(r, code, &incomplete);
  if (status == LUA_ERRSYNTAX && !at_end && incomplete) {
    lua_settop(L, 0);
    return EVAL_MORE;
  }
  if (status == LUA_ERRSYNTAX) {
    emit(L, stderr, "error: ");
    r->failures++;
    lua_settop(L, 0);
    return EVAL_FAILED;
  }
  if (status != LUA_OK) {
    report_error(r);
    lua_settop(L, 0);
    return EVAL_FAILED;
  }

  if (start_input() != 0) {
    lua_settop(L, 0);
    return EVAL_FAILED;
  }
  status = host_pcall(L, 0, LUA_MULTRET);
  if (status != LUA_OK) {
    report_error(r);
    lua_settop(L, 0);
    return EVAL_FAILED;
  }
  show_values(r, lua_gettop(L));
  lua_settop(L, 0);
  return EVAL_DONE;
}

/* ---- commands ------------------------------------------------------------ */

/* Splits line into words in place: blanks separate, '...' and "..."
 * quote (the quotes are dropped). Returns the number of words; at most
 * max are stored, and -1 tells that there were more or a quote was left
 * open. */
static int split_words(char *line, char **words, int max)
{
  char *src = line, *dst = line;
  int n = 0;

  for (;;) {
    char quote = 0;

    while (*src == ' ' || *src == '\t')
      src++;
    if (!*src)
      return n;
    if (n == max)
      return -1;
    words[n++] = dst;
    while (*src && (quote || (*src != ' ' && *src != '\t'))) {
      if (quote && *src == quote)
        quote = 0;
      else if (!quote && (*src == '\'' || *src == '"'))
        quote = *src;
      else
        *dst++ = *src;
      src++;
    }
    if (quote)
      return -1;
    if (*src)
      src++;
    *dst++ = '\0';
  }
}

/* .run JOB [k=v ...]: the job's dry run, as `jobhost run --dry-run`. */
static void cmd_run(repl *r, int argc, char **argv)
{
  job_request req = {0};
  job_outcome out;
  const char *kv[REPL_MAX_WORDS + 1];
  int i, n = 0;

  if (argc < 2) {
    fputs("usage: .run JOB [KEY=VALUE ...]\n", stderr);
    r->failures++;
    return;
  }
  for (i = 2; i < argc; i++) {
    if (!strchr(argv[i], '=') || argv[i][0] == '=') {
      fprintf(stderr, "error: \"%s\" is not KEY=VALUE\n", argv[i]);
      r->failures++;
      return;
    }
    kv[n++] = argv[i];
  }
  kv[n] = NULL;

  req.jobs_dir = r->jobs_dir;
  req.name = argv[1];
  req.param_kv = kv;
  req.db_target = r->target;
  req.dry_run = 1;
  if (start_input() != 0)
    return;
  fflush(stdout);
  if (job_run(&req, &out) == 0) {
    lua_State *L = r->L;

    lua_settop(L, 0);
    if (call_helper_text(L, "show_result", out.result, out.result_len, 1) ==
        LUA_OK) {
      printf("dry run of %s, rolled back after %lld ms; its result:\n",
             req.name, (long long)(out.duration_us / 1000));
      emit(L, stdout, "");
    } else {
      report_error(r);
    }
    lua_settop(L, 0);
  } else {
    r->failures++;
    fprintf(stderr, "dry run of %s failed: %s: %s\n", req.name,
            out.error_type ? out.error_type : "Job.Error",
            out.error_message ? out.error_message : "");
    /* A trace of C frames alone ("[C]: in ?") tells nothing. */
    if (out.stack_trace && strstr(out.stack_trace, ".lua:"))
      fprintf(stderr, "stack traceback:\n%s\n", out.stack_trace);
  }
  host_interrupt_requested = 0;
  job_outcome_free(&out);
}

/* .jobs: each job's name, schedule and description, or why it is
 * invalid. */
static void cmd_jobs(repl *r)
{
  lua_State *L = r->L;

  lua_settop(L, 0);
  if (call_helper_text(L, "jobs_listing", r->jobs_dir, strlen(r->jobs_dir),
                       1) != LUA_OK) {
    report_error(r);
    return;
  }
  emit(L, stdout, "");
  lua_settop(L, 0);
}

static void cmd_reload(repl *r)
{
  lua_State *L = r->L;

  lua_settop(L, 0);
  if (call_helper(L, "reload", 0, 1) != LUA_OK) {
    report_error(r);
    return;
  }
  printf("forgot %lld loaded job spec(s) and module(s); they are read "
         "again on next use\n",
         (long long)lua_tointeger(L, -1));
  lua_settop(L, 0);
}

/* Runs a command line (".name args"). Returns 1 when the session should
 * end. */
static int command(repl *r, char *line)
{
  char *words[REPL_MAX_WORDS];
  int n = split_words(line + 1, words, REPL_MAX_WORDS);

  if (n < 0) {
    fputs("error: too many words or an unclosed quote\n", stderr);
    r->failures++;
    return 0;
  }
  if (n == 0)
    return 0;
  if (strcmp(words[0], "run") == 0)
    cmd_run(r, n, words);
  else if (strcmp(words[0], "jobs") == 0)
    cmd_jobs(r);
  else if (strcmp(words[0], "reload") == 0)
    cmd_reload(r);
  else if (strcmp(words[0], "help") == 0)
    fputs(help_text, stdout);
  else if (strcmp(words[0], "quit") == 0 || strcmp(words[0], "exit") == 0)
    return 1;
  else {
    fprintf(stderr, "error: unknown command .%s (.help lists them)\n",
            words[0]);
    r->failures++;
  }
  return 0;
}

/* Whether line is a command: a dot, then a letter. (".5" is Lua.) */
static int is_command(const char *line)
{
  while (*line == ' ' || *line == '\t')
    line++;
  return line[0] == '.' && ((line[1] >= 'a' && line[1] <= 'z') ||
                            (line[1] >= 'A' && line[1] <= 'Z'));
}

/* ---- completion ---------------------------------------------------------- */

/* Tab completes the word before the cursor: a global, or a field or method
 * reached through fields ("ctx.log.in" -> "ctx.log.info", "db:qu" ->
 * "db:query" once db is a connection). lua/repl.lua's complete() finds the
 * candidates reading tables raw, so completing never runs a metamethod
 * (ctx.db would connect). libedit's callbacks take no context, hence the
 * session in a file-level variable while the prompt is up. */
static repl *completing;

/* libedit's generator: the state-th candidate for text, malloc'd, or
 * NULL after the last. The candidates are computed at state 0 and kept
 * in the registry until the next completion. */
static char *next_candidate(const char *text, int state)
{
  lua_State *L;
  char *found = NULL;

  if (!completing || !completing->L)
    return NULL;
  L = completing->L;
  if (state == 0) {
    lua_settop(L, 0);
    if (call_helper_text(L, "complete", text, strlen(text), 1) != LUA_OK ||
        !lua_istable(L, -1)) {
      lua_settop(L, 0);
      lua_pushnil(L);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, REPL_CANDIDATES_KEY);
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, REPL_CANDIDATES_KEY) == LUA_TTABLE &&
      lua_rawgeti(L, -1, state + 1) == LUA_TSTRING)
    found = strdup(lua_tostring(L, -1));
  lua_settop(L, 0);
  return found;
}

/* ---- input --------------------------------------------------------------- */

/* A Ctrl-C that the running input has not answered for this long, and
 * then another: the input is in a call into C that does not come back to
 * Lua (a pathological pattern match), where no stop can reach it. */
#define REPL_STUCK_MS 1000

/* Whether SIGINT ends the session (a script) rather than stopping the
 * input (a terminal). Set before the handlers are. */
static int sigint_leaves;

/* What is written when a signal ends the session; the handler may have
 * to write it itself, with write(2). */
static const char *leave_message(int sig)
{
  if (!sigint_leaves)
    return "jobhost repl: SIGTERM: leaving the session\n";
  return sig == SIGINT
             ? "jobhost repl: SIGINT: the script stops here\n"
             : "jobhost repl: SIGTERM: the script stops here\n";
}

/* SIGINT and SIGTERM stop the input. SIGTERM, and SIGINT in a script,
 * then end the session (leave_signal); a script waiting for its next
 * line, where nothing runs, ends at once. A signal while an earlier one
 * has gone unanswered for REPL_STUCK_MS ends the session, as nothing
 * else would short of a kill; the server rolls back an open transaction
 * when the connection drops. Only async-signal-safe calls here. */
static void on_signal(int sig)
{
  static const char stuck[] =
      "\njobhost repl: interrupted again while a call into C does not "
      "return; leaving the session\n";
  static struct timespec first;
  struct timespec now;
  ssize_t told;

  if (!leave_signal && (sig == SIGTERM || sigint_leaves))
    leave_signal = sig;
  if (leave_signal && script_waiting) {
    const char *msg = leave_message(leave_signal);

    told = write(STDERR_FILENO, msg, strlen(msg));
    (void)told;
    _exit(128 + leave_signal);
  }
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (host_interrupt_requested) {
    if ((now.tv_sec - first.tv_sec) * 1000 +
            (now.tv_nsec - first.tv_nsec) / 1000000 >= REPL_STUCK_MS) {
      told = write(STDERR_FILENO, stuck, sizeof stuck - 1);
      (void)told;
      _exit(128 + (leave_signal ? leave_signal : sig));
    }
    return;
  }
  first = now;
  host_interrupt();
}

/* Catches SIGINT and SIGTERM without SA_RESTART, so a blocking read or
 * poll returns and the flag is seen at once. */
static void catch_signals(int interactive)
{
  sigint_leaves = !interactive;
  host_catch_signal(SIGINT, on_signal);
  host_catch_signal(SIGTERM, on_signal);
}

/* The history file: $JOBHOST_HISTORY (empty: none), else
 * ~/.jobhost_history. malloc'd, or NULL. */
static char *history_path(void)
{
  const char *env = getenv("JOBHOST_HISTORY");
  const char *home = getenv("HOME");
  char *path;
  size_t len;

  if (env)
    return *env ? strdup(env) : NULL;
  if (!home || !*home)
    return NULL;
  len = strlen(home) + sizeof "/.jobhost_history";
  path = malloc(len);
  if (path)
    snprintf(path, len, "%s/.jobhost_history", home);
  return path;
}

/* The largest history file read: REPL_HISTORY_MAX lines are far less. */
#define HISTORY_FILE_MAX (16L * 1024 * 1024)

/* Whether path can serve as the history file: missing (it is created), or
 * a regular file of a sane size. Anything else (a device, a FIFO, a
 * directory) would be read without end or written over; the REPL then
 * keeps no history, saying so. */
static int history_usable(const char *path)
{
  static const char header[] = "_HiStOrY_V2_\n";
  char head[sizeof header - 1];
  struct stat st;
  FILE *f;
  size_t got;

  if (stat(path, &st) != 0) {
    /* Missing: created on the first input, if its folder exists. */
    int ok = errno == ENOENT;
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;

    if (ok && slash && slash != dir) {
      *slash = '\0';
      ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
      if (!ok)
        fprintf(stderr, "jobhost repl: the folder of the history file %s "
                "does not exist; no history is kept\n", path);
    }
    free(dir);
    return ok;
  }
  if (!S_ISREG(st.st_mode)) {
    fprintf(stderr, "jobhost repl: history file %s is not a regular file; "
            "no history is kept (set JOBHOST_HISTORY to a file, or empty "
            "for none)\n", path);
    return 0;
  }
  if (st.st_size > HISTORY_FILE_MAX) {
    fprintf(stderr, "jobhost repl: history file %s is over %ld MB; no "
            "history is kept\n", path, HISTORY_FILE_MAX / (1024 * 1024));
    return 0;
  }
  /* A file of something else would be written over with the history. */
  if (st.st_size > 0) {
    f = fopen(path, "r");
    got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
      fclose(f);
    if (got != sizeof head || memcmp(head, header, sizeof head) != 0) {
      fprintf(stderr, "jobhost repl: %s is not a history file; it is left "
              "as it is and no history is kept (set JOBHOST_HISTORY to "
              "another file)\n", path);
      return 0;
    }
  }
  return 1;
}

/* Adds an input to the history and saves it, readable by its owner
 * alone (inputs may hold conninfo strings). An input that starts with a
 * space is not kept, as in shells. */
static void remember(repl *r, const char *input)
{
  if (!r->interactive || input[0] == ' ' || input[0] == '\0')
    return;
  repl_edit_remember(input, r->history);
}

/* Reads one line without its newline: from libedit in a terminal, else
 * from stdin. malloc'd; NULL at the end of input or once a signal has
 * ended the session. *interrupted is set when Ctrl-C dropped the line
 * being typed. */
static char *read_line(repl *r, const char *prompt, int *interrupted)
{
  char *line;

  *interrupted = 0;
  fflush(stdout);
  if (!r->interactive) {
    /* Set before leave_signal is read: a signal after the test finds
     * script_waiting and ends the process, one before it is seen here. */
    script_waiting = 1;
    line = leave_signal ? NULL : repl_edit_plain_line();
    script_waiting = 0;
    return line;
  }
  if (leave_signal)
    return NULL;
  line = repl_edit_readline(prompt);
  if (!line && host_interrupt_requested && !leave_signal) {
    host_interrupt_requested = 0;
    *interrupted = 1;
    fputc('\n', stdout);
  }
  return line;
}

/* Appends line to the unfinished input *buf (a newline between).
 * Returns 0, or -1 when memory ran out. */
static int append_line(char **buf, const char *line)
{
  size_t have = strlen(*buf), add = strlen(line);
  char *grown = realloc(*buf, have + add + 2);

  if (!grown)
    return -1;
  grown[have] = '\n';
  memcpy(grown + have + 1, line, add + 1);
  *buf = grown;
  return 0;
}

static int is_blank(const char *s)
{
  return s[strspn(s, " \t\r\n")] == '\0';
}

/* The read-run-print loop, until the end of input or .quit. */
static void loop(repl *r)
{
  char *buf = NULL; /* the input so far, when it spans lines */

  for (;;) {
    int interrupted;
    char *line = read_line(r, buf ? r->prompt_more : r->prompt,
                           &interrupted);

    if (interrupted) {
      free(buf);
      buf = NULL;
      continue;
    }
    if (!line)
      break;
    if (!buf) {
      if (is_blank(line)) {
        free(line);
        continue;
      }
      if (is_command(line)) {
        int quit;
        remember(r, line);
        quit = command(r, strchr(line, '.'));
        free(line);
        fflush(stdout);
        if (quit || leave_signal ||
            (r->restart && restart_state(r) != 0))
          goto out;
        continue;
      }
      buf = line;
    } else {
      int failed = append_line(&buf, line);
      free(line);
      if (failed) {
        fputs("error: out of memory\n", stderr);
        free(buf);
        buf = NULL;
        r->failures++;
        continue;
      }
    }
    if (evaluate(r, buf, 0) == EVAL_MORE && !leave_signal)
      continue;
    remember(r, buf);
    free(buf);
    buf = NULL;
    fflush(stdout);
    if (leave_signal || (r->restart && restart_state(r) != 0))
      goto out;
  }

  /* The input ended in the middle of a chunk: in a script that is an
   * error worth its message; in a terminal Ctrl-D just leaves. A signal
   * that ended the session leaves it unfinished. */
  if (buf && !r->interactive && !leave_signal)
    evaluate(r, buf, 1);
  if (r->interactive)
    fputc('\n', stdout);

out:
  free(buf);
  fflush(stdout);
}

/* The banner of a terminal session: where ctx.db goes (never the
 * conninfo itself, which may hold a password) and whether writes are
 * allowed. */
static void banner(const repl *r, const char *secret)
{
  const char *env = getenv("JOBHOST_DATABASE");
  char *where = realpath(r->jobs_dir, NULL);

  printf("jobhost repl: Lua with the ctx a job gets; the jobs folder is "
         "%s\n",
         where ? where : r->jobs_dir);
  free(where);
  if (secret)
    printf("ctx.db: the secret \"%s\"", secret);
  else if (r->target)
    fputs("ctx.db: the --db connection", stdout);
  else if (env && *env)
    fputs("ctx.db: $JOBHOST_DATABASE", stdout);
  else
    fputs("ctx.db: libpq's PG* environment", stdout);
  if (r->write)
    fputs(", writes ALLOWED (--write)\n", stdout);
  else
    fputs(", read-only (start with --write to allow changes)\n", stdout);
  fputs(".help for help, Ctrl-C stops what runs, Ctrl-D leaves.\n",
        stdout);
}

int repl_main(int argc, char **argv)
{
  repl r;
  const char *db = NULL, *secret = NULL;
  int i;

  memset(&r, 0, sizeof r);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];

    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--db") == 0 && i + 1 < argc) {
      db = argv[++i];
    } else if (strcmp(a, "--secret") == 0 && i + 1 < argc) {
      secret = argv[++i];
    } else if (strcmp(a, "--jobs") == 0 && i + 1 < argc) {
      r.jobs_dir = argv[++i];
    } else if (strcmp(a, "--write") == 0) {
      r.write = 1;
    } else {
      fprintf(stderr, "jobhost repl: unknown option %s\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (db && secret) {
    fputs("jobhost repl: give --db or --secret, not both\n", stderr);
    return 2;
  }
  r.target = db ? db : secret;
  if (!r.jobs_dir)
    r.jobs_dir = job_default_dir();
  r.interactive = isatty(STDIN_FILENO);
  snprintf(r.prompt, sizeof r.prompt, "%s", r.write ? "jobhost[write]> "
                                                   : "jobhost> ");
  snprintf(r.prompt_more, sizeof r.prompt_more, "%*s", (int)strlen(r.prompt),
           "...> ");

  if (open_state(&r) != 0)
    return 1;
  if (r.interactive) {
    r.history = history_path();
    if (r.history && !history_usable(r.history)) {
      free(r.history);
      r.history = NULL;
    }
    completing = &r;
    if (repl_edit_open(REPL_HISTORY_MAX, r.history, next_candidate) != 0)
      fputs("jobhost repl: libedit not found; lines are read without "
            "editing or history\n", stderr);
    banner(&r, secret);
  }
  catch_signals(r.interactive);

  loop(&r);

  if (leave_signal)
    fputs(leave_message(leave_signal), stderr);
  close_state(&r);
  db_pool_close_all();
  free(r.history);
  if (leave_signal)
    return 128 + leave_signal;
  return r.failures && !r.interactive ? 1 : 0;
}
