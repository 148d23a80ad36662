/* db.c: the Lua binding for PostgreSQL ("db" module, connection objects,
 * transactions, prepared statements, row streams, COPY). Connections are
 * C objects (db_conn.c) leased to a run: the run sees a userdata box that
 * points at its connection until the run ends (db_end_run) or the job
 * closes it; after that every use of the box says "connection closed".
 *
 * Every statement goes out with PQsendQueryParams or PQsendQueryPrepared
 * (text parameters, type OID 0) and is waited for in db_conn.c's sliced
 * poll loop, which cancels it when the run's deadline passes or an
 * interrupt arrives. Server errors become error objects (host_push_error)
 * carrying the SQLSTATE and the other fields of the error report.
 *
 * Resource rule: whatever C memory a function holds across a call that
 * can raise lives in a userdata box whose __gc frees it (PGresult boxes,
 * the cursor's current row, the COPY chunk buffer). */
#include "db.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "clock.h"
#include "db_conn.h"
#include "db_types.h"
#include "host.h"
#include "json.h"
#include "secrets.h"

#define CONN_MT "jobhost.db.connection"
#define CURSOR_MT "jobhost.db.cursor"
#define TX_MT "jobhost.db.transaction"
#define STMT_MT "jobhost.db.statement"
#define RESULT_MT "jobhost.db.result"
#define COPYBUF_MT "jobhost.db.copybuf"
#define COLUMNS_KEY "jobhost.db.columns"

/* statement_timeout is capped at the time left less this margin, so the
 * server gives up on its own before the run's deadline. */
#define DB_DEADLINE_MARGIN_MS 1000

/* How long housekeeping (rollback, reset, cancel) may take. */
#define DB_CLEANUP_BUDGET_MS 5000

/* Default bound on one connection attempt, seconds
 * (JOBHOST_CONNECT_TIMEOUT overrides). */
#define DB_CONNECT_TIMEOUT_S 10

/* COPY TO data is handed to the job in chunks of about this size. */
#define DB_COPY_CHUNK 65536

/* Parameters up to this count need no allocation. */
#define DB_FIXED_PARAMS 16

/* The Lua side of a connection. */
typedef struct {
  db_conn *conn; /* NULL once closed or its run ended */
} db_box;

/* A db:rows() stream. Uservalue 1: the connection's box; 2: the row
 * metatable, made at the first row. */
typedef struct {
  uint64_t id;   /* equals conn->stream_id while the stream is ours */
  PGresult *res; /* the row being turned into a table */
  int done;
  int ncols;
} db_cursor;

/* A db:begin() transaction. Uservalue 1: the connection's box. */
typedef struct {
  uint64_t id;
  int level;     /* 1 for the outermost */
  int savepoint; /* 0: BEGIN/COMMIT; 1: SAVEPOINT/RELEASE */
} db_tx;

/* A db:prepare() statement. Uservalue 1: the box; 2: its name. */
typedef struct {
  int unused;
} db_stmt;

typedef struct {
  PGresult *res;
} db_result;

/* Rows of a COPY TO gathered into one chunk before calling the job. */
typedef struct {
  char *row; /* a PQgetCopyData row not yet copied out (PQfreemem) */
  size_t used;
  char data[DB_COPY_CHUNK];
} db_copybuf;

/* Connections leased to runs, whatever their state. */
static db_conn *leased;

static void release(db_conn *c);

/* ---- small helpers ------------------------------------------------------ */

static db_limits run_limits(lua_State *L)
{
  db_limits limits;

  limits.deadline_ms = host_get(L)->deadline_ms;
  limits.interruptible = 1;
  return limits;
}

static db_box *check_box(lua_State *L, int idx)
{
  return (db_box *)luaL_checkudata(L, idx, CONN_MT);
}

/* The connection of the box at idx; raises when it was closed. */
static db_conn *check_open(lua_State *L, int idx)
{
  db_box *box = check_box(L, idx);

  if (!box->conn)
    luaL_error(L, "db: connection closed");
  return box->conn;
}

/* The box of an object whose uservalue 1 is the connection userdata. */
static db_box *owner_box(lua_State *L, int idx)
{
  db_box *box;

  lua_getiuservalue(L, idx, 1);
  box = (db_box *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return box;
}

/* Pushes a box for a PGresult; its __gc clears it. */
static db_result *push_result_box(lua_State *L)
{
  db_result *r = (db_result *)lua_newuserdatauv(L, sizeof *r, 0);

  r->res = NULL;
  luaL_setmetatable(L, RESULT_MT);
  return r;
}

static int result_gc(lua_State *L)
{
  db_result *r = (db_result *)luaL_checkudata(L, 1, RESULT_MT);

  if (r->res) {
    PQclear(r->res);
    r->res = NULL;
  }
  return 0;
}

static void unlink_leased(db_conn *c)
{
  db_conn **p;

  for (p = &leased; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      c->next = NULL;
      return;
    }
  }
}

/* libpq's last error without the trailing newline. */
static void push_conn_message(lua_State *L, db_conn *c)
{
  const char *msg = c && c->pg ? PQerrorMessage(c->pg) : "";
  size_t n = strlen(msg);

  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
    n--;
  if (n == 0)
    lua_pushliteral(L, "connection to the database lost");
  else
    lua_pushlstring(L, msg, n);
}

/* Raises the error of a stop reason: the run's own timeout or interrupt
 * (through the host, so no pcall can keep the run going), or a
 * Database.ConnectionError. */
static int raise_status(lua_State *L, db_conn *c, db_status st)
{
  switch (st) {
  case DB_TIMEOUT:
    host_stop_run(L, HOST_TIMEOUT);
    break;
  case DB_INTERRUPTED:
    host_interrupt_requested = 0;
    host_stop_run(L, HOST_INTERRUPTED);
    break;
  case DB_LOST:
  case DB_OK:
    push_conn_message(L, c);
    host_push_error(L, "Database.ConnectionError", lua_tostring(L, -1));
    return lua_error(L);
  }
  host_check(L);
  return luaL_error(L, "%s", host_stop_message(L, host_get(L)->stop));
}

/* Raises a server error as an error object with the report's fields. A
 * statement_timeout that struck because the run's deadline is near (the
 * cap set at acquire) is the run's timeout, not a database error. */
static int raise_result_error(lua_State *L, db_conn *c, const PGresult *res)
{
  static const struct {
    const char *key;
    int code;
  } fields[] = {{"severity", PG_DIAG_SEVERITY_NONLOCALIZED},
                {"detail", PG_DIAG_MESSAGE_DETAIL},
                {"hint", PG_DIAG_MESSAGE_HINT},
                {"constraint", PG_DIAG_CONSTRAINT_NAME},
                {"schema", PG_DIAG_SCHEMA_NAME},
                {"table", PG_DIAG_TABLE_NAME},
                {"column", PG_DIAG_COLUMN_NAME},
                {"where", PG_DIAG_CONTEXT},
                {NULL, 0}};
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *primary =
      res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *pos =
      res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
  int lost = !c->pg || PQstatus(c->pg) == CONNECTION_BAD;
  int i;

  if (lost)
    c->broken = 1;
  if (state && strcmp(state, "57014") == 0 &&
      host_remaining_ms(L) <= DB_DEADLINE_MARGIN_MS + 200)
    return raise_status(L, c, DB_TIMEOUT);

  if (primary)
    lua_pushstring(L, primary);
  else
    push_conn_message(L, c);
  host_push_error(L, lost ? "Database.ConnectionError" : "Database.Error",
                  lua_tostring(L, -1));
  if (state) {
    lua_pushstring(L, state);
    lua_setfield(L, -2, "sqlstate");
  }
  for (i = 0; res && fields[i].key; i++) {
    const char *v = PQresultErrorField(res, fields[i].code);

    if (v) {
      lua_pushstring(L, v);
      lua_setfield(L, -2, fields[i].key);
    }
  }
  if (pos) {
    lua_pushinteger(L, (lua_Integer)strtol(pos, NULL, 10));
    lua_setfield(L, -2, "position");
  }
  return lua_error(L);
}

/* ---- statements --------------------------------------------------------- */

/* Skips blanks and SQL comments. */
static const char *skip_space(const char *s)
{
  for (;;) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' ||
           *s == '\f' || *s == '(')
      s++;
    if (s[0] == '-' && s[1] == '-') {
      s += strcspn(s, "\n");
    } else if (s[0] == '/' && s[1] == '*') {
      const char *end = strstr(s + 2, "*/");

      s = end ? end + 2 : s + strlen(s);
    } else {
      return s;
    }
  }
}

/* Whether s starts with the keyword word (any case), as a whole word. */
static int keyword_is(const char *s, const char *word)
{
  size_t n = strlen(word);

  return strncasecmp(s, word, n) == 0 &&
         !(s[n] == '_' || (s[n] >= 'a' && s[n] <= 'z') ||
           (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9'));
}

/* In a dry run the job's statements run inside the run's transaction; a
 * raw COMMIT would make them permanent, so it and its kin are refused. */
static void dry_run_guard(lua_State *L, const char *sql)
{
  const char *s;

  if (!host_get(L)->dry_run)
    return;
  s = skip_space(sql);
  if (keyword_is(s, "commit") || keyword_is(s, "end") ||
      keyword_is(s, "abort") || keyword_is(s, "prepare")) {
    luaL_error(L, "db: a dry run cannot end its transaction; use "
                  "db:begin() and tx:commit()");
  }
  if (keyword_is(s, "rollback")) {
    const char *t = skip_space(s + 8);

    if (keyword_is(t, "work") || keyword_is(t, "transaction"))
      t = skip_space(t + (keyword_is(t, "work") ? 4 : 11));
    if (!keyword_is(t, "to"))
      luaL_error(L, "db: a dry run cannot end its transaction; use "
                    "db:begin() and tx:rollback()");
  }
}

/* Gets the connection of the box at idx ready for a new statement: an
 * unfinished one (a stream the job abandoned, a COPY cut short) is
 * cancelled and drained first. Raises when closed or broken. */
static db_conn *statement_conn(lua_State *L, int idx)
{
  db_conn *c = check_open(L, idx);

  host_check(L);
  if (c->busy && db_conn_abort(c, DB_CLEANUP_BUDGET_MS) != 0)
    raise_status(L, c, DB_LOST);
  if (!db_conn_ok(c))
    raise_status(L, c, DB_LOST);
  return c;
}

/* Sends a statement: sql with PQsendQueryParams, or the prepared
 * statement name with PQsendQueryPrepared; the parameters are the Lua
 * values at stack slots first..last (nil in the middle counts). */
static void send_statement(lua_State *L, db_conn *c, const char *sql,
                           const char *name, int first, int last,
                           int single_row)
{
  const char *fixed[DB_FIXED_PARAMS];
  const char **values = fixed;
  int n = last >= first ? last - first + 1 : 0;
  int top = lua_gettop(L);
  int ok, i;
  db_limits limits = run_limits(L);
  db_status st;

  if (n > 65535)
    luaL_error(L, "db: too many parameters (%d, at most 65535)", n);
  if (n > DB_FIXED_PARAMS)
    values = (const char **)lua_newuserdatauv(L, (size_t)n * sizeof *values,
                                              0);
  luaL_checkstack(L, n + LUA_MINSTACK, "too many parameters");
  for (i = 0; i < n; i++)
    values[i] = db_push_param(L, first + i, i + 1);

  if (name)
    ok = PQsendQueryPrepared(c->pg, name, n, values, NULL, NULL, 0);
  else
    ok = PQsendQueryParams(c->pg, sql, n, NULL, values, NULL, NULL, 0);
  lua_settop(L, top);
  if (!ok)
    raise_status(L, c, DB_LOST);
  c->busy = 1;
  if (single_row && !PQsetSingleRowMode(c->pg))
    luaL_error(L, "db: cannot stream this statement row by row");
  st = db_conn_flush(c, &limits);
  if (st != DB_OK)
    raise_status(L, c, st);
}

/* Waits for the results of the statement in flight and pushes a box
 * holding the one that counts (the first error, else the last result).
 * Stops early at a COPY result, leaving the COPY to the caller. Raises
 * the statement's error. Returns the result (owned by the box). */
static PGresult *collect(lua_State *L, db_conn *c)
{
  db_result *box = push_result_box(L);
  db_limits limits = run_limits(L);
  ExecStatusType rs;

  for (;;) {
    PGresult *res;
    db_status st = db_conn_next(c, &limits, &res);

    if (st != DB_OK)
      raise_status(L, c, st);
    if (!res)
      break;
    rs = PQresultStatus(res);
    if (box->res && PQresultStatus(box->res) == PGRES_FATAL_ERROR) {
      PQclear(res);
      continue;
    }
    if (box->res)
      PQclear(box->res);
    box->res = res;
    if (rs == PGRES_COPY_OUT || rs == PGRES_COPY_IN)
      return res;
  }
  if (!box->res)
    raise_status(L, c, DB_LOST);
  rs = PQresultStatus(box->res);
  if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK &&
      rs != PGRES_EMPTY_QUERY)
    raise_result_error(L, c, box->res);
  return box->res;
}

/* Runs a command of the binding's own (BEGIN, SAVEPOINT ...) and raises
 * its error. Leaves the stack as it was; returns nothing of the result
 * but whether its command tag was tag (when tag is not NULL). */
static int run_command(lua_State *L, db_conn *c, const char *sql,
                       const char *tag)
{
  PGresult *res;
  int same;

  send_statement(L, c, sql, NULL, 1, 0, 0);
  res = collect(L, c);
  same = tag ? strcmp(PQcmdStatus(res), tag) == 0 : 1;
  lua_pop(L, 1);
  return same;
}

/* The affected-row count of a result, 0 when the command has none. */
static lua_Integer affected_rows(PGresult *res)
{
  const char *n = PQcmdTuples(res);

  return *n ? (lua_Integer)strtoll(n, NULL, 10) : 0;
}

/* ---- results as Lua tables ---------------------------------------------- */

/* Pushes the column names of res as an array. A name that repeats an
 * earlier one ("SELECT a.id, b.id") gets "_2", "_3", ... (the first free
 * one) appended, so that no column is lost from a row; the array shows
 * the keys as they are. */
static void push_columns(lua_State *L, const PGresult *res)
{
  int n = PQnfields(res);
  int i;

  lua_createtable(L, n, 0);
  lua_createtable(L, 0, n); /* names taken */
  for (i = 0; i < n; i++) {
    const char *name = PQfname(res, i);

    lua_pushstring(L, name);
    if (lua_rawget(L, -2) != LUA_TNIL) {
      int k;

      lua_pop(L, 1);
      for (k = 2;; k++) {
        lua_pushfstring(L, "%s_%d", name, k);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TNIL) {
          lua_pop(L, 1);
          break;
        }
        lua_pop(L, 2);
      }
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, name);
    }
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -4);
    lua_rawseti(L, -3, i + 1);
  }
  lua_pop(L, 1);
}

/* Pushes the metatable shared by the rows of one result: __columns gives
 * json the column order. names is a stack index. */
static void push_row_metatable(lua_State *L, int names)
{
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, names);
  lua_setfield(L, -2, "__columns");
}

/* Pushes row r of res as a table keyed by the names at stack index names,
 * with the metatable at stack index mt. */
static void push_row(lua_State *L, const PGresult *res, int r, int ncols,
                     const Oid *types, int names, int mt)
{
  int i;

  lua_createtable(L, 0, ncols);
  for (i = 0; i < ncols; i++) {
    lua_rawgeti(L, names, i + 1);
    db_push_value(L, res, r, i, types[i]);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
}

/* Marks the array at idx for json (so that no rows encode as []) and
 * gives it res.columns. json recognises arrays by its one shared
 * metatable, so the names cannot live in a metatable of the result's
 * own: they go into a weak table that the shared metatable's __index
 * (installed by luaopen_jobhost_db) reads. */
static void mark_result(lua_State *L, int idx, int names)
{
  idx = lua_absindex(L, idx);
  json_mark_array(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, COLUMNS_KEY);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, names);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* __index of json's array metatable: res.columns of a query result. */
static int array_index(lua_State *L)
{
  const char *key = lua_tostring(L, 2);

  if (lua_type(L, 2) != LUA_TSTRING || strcmp(key, "columns") != 0)
    return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, COLUMNS_KEY);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  return 1;
}

/* Sets up res.columns: the weak table of column lists and the __index of
 * json's array metatable, unless that has one already. */
static void init_columns(lua_State *L)
{
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, COLUMNS_KEY);

  lua_createtable(L, 0, 0);
  json_mark_array(L, -1);
  if (lua_getmetatable(L, -1)) {
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pushliteral(L, "__index");
      lua_pushcfunction(L, array_index);
      lua_rawset(L, -4);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* Pushes the rows of res as db:query returns them. */
static void push_rows(lua_State *L, const PGresult *res)
{
  int nrows = PQntuples(res);
  int ncols = PQnfields(res);
  Oid fixed[64];
  Oid *types = fixed;
  int names, mt, out, r, i;

  if (ncols > 64)
    types = (Oid *)lua_newuserdatauv(L, (size_t)ncols * sizeof *types, 0);
  for (i = 0; i < ncols; i++)
    types[i] = PQftype(res, i);
  push_columns(L, res);
  names = lua_gettop(L);
  push_row_metatable(L, names);
  mt = lua_gettop(L);
  lua_createtable(L, nrows, 0);
  out = lua_gettop(L);
  for (r = 0; r < nrows; r++) {
    push_row(L, res, r, ncols, types, names, mt);
    lua_rawseti(L, out, r + 1);
  }
  mark_result(L, out, names);
}

/* ---- query, exec ---------------------------------------------------------
 * Shared by connections (sql at 2, parameters from 3) and prepared
 * statements (name in the uservalue, parameters from 2). */

static int do_query(lua_State *L, int box_idx, const char *sql,
                    const char *name, int first)
{
  db_conn *c = statement_conn(L, box_idx);
  PGresult *res;

  send_statement(L, c, sql, name, first, lua_gettop(L), 0);
  res = collect(L, c);
  push_rows(L, res);
  return 1;
}

static int do_exec(lua_State *L, int box_idx, const char *sql,
                   const char *name, int first)
{
  db_conn *c = statement_conn(L, box_idx);
  PGresult *res;

  send_statement(L, c, sql, name, first, lua_gettop(L), 0);
  res = collect(L, c);
  lua_pushinteger(L, affected_rows(res));
  return 1;
}

static int conn_query(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  check_open(L, 1);
  dry_run_guard(L, sql);
  return do_query(L, 1, sql, NULL, 3);
}

static int conn_exec(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  check_open(L, 1);
  dry_run_guard(L, sql);
  return do_exec(L, 1, sql, NULL, 3);
}

/* ---- rows: streaming ---------------------------------------------------- */

static db_cursor *check_cursor(lua_State *L, int idx)
{
  return (db_cursor *)luaL_checkudata(L, idx, CURSOR_MT);
}

/* Ends a stream that ran to its end: reads the end of the results and
 * lets go of the rows savepoint. */
static void finish_stream(lua_State *L, db_conn *c)
{
  int savepoint = c->stream_savepoint;

  c->stream_id = 0;
  c->stream_savepoint = 0;
  if (savepoint)
    run_command(L, c, "RELEASE SAVEPOINT jobhost_rows", NULL);
}

/* The iterator: the next row, or nothing at the end. */
static int cursor_next(lua_State *L)
{
  db_cursor *cur = check_cursor(L, 1);
  db_box *box;
  db_conn *c;
  db_limits limits;
  db_status st;
  ExecStatusType rs;

  if (cur->done)
    return 0;
  box = owner_box(L, 1);
  c = box ? box->conn : NULL;
  if (!c || c->stream_id != cur->id) {
    cur->done = 1;
    return luaL_error(L, "db:rows: the stream was closed (its connection "
                         "closed, or another statement ran on it)");
  }
  if (cur->res) {
    PQclear(cur->res);
    cur->res = NULL;
  }
  limits = run_limits(L);
  st = db_conn_next(c, &limits, &cur->res);
  if (st != DB_OK) {
    cur->done = 1;
    c->stream_id = 0;
    return raise_status(L, c, st);
  }
  rs = cur->res ? PQresultStatus(cur->res) : PGRES_FATAL_ERROR;

  if (rs == PGRES_SINGLE_TUPLE) {
    int ncols = PQnfields(cur->res);
    Oid fixed[64];
    Oid *types = fixed;
    int names, mt, i;

    /* The row metatable is made at the first row and kept; the names
     * are its __columns. */
    if (lua_getiuservalue(L, 1, 2) == LUA_TNIL) {
      lua_pop(L, 1);
      push_columns(L, cur->res);
      push_row_metatable(L, lua_gettop(L));
      lua_remove(L, -2);
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, 1, 2);
    }
    mt = lua_gettop(L);
    lua_getfield(L, mt, "__columns");
    names = lua_gettop(L);
    if (ncols > 64)
      types = (Oid *)lua_newuserdatauv(L, (size_t)ncols * sizeof *types, 0);
    for (i = 0; i < ncols; i++)
      types[i] = PQftype(cur->res, i);
    push_row(L, cur->res, 0, ncols, types, names, mt);
    PQclear(cur->res);
    cur->res = NULL;
    return 1;
  }

  /* The end of the rows, or an error: read the end of the results. */
  cur->done = 1;
  for (;;) {
    PGresult *more;

    st = db_conn_next(c, &limits, &more);
    if (st != DB_OK) {
      c->stream_id = 0;
      return raise_status(L, c, st);
    }
    if (!more)
      break;
    PQclear(more);
  }
  if (rs == PGRES_TUPLES_OK) {
    PQclear(cur->res);
    cur->res = NULL;
    finish_stream(L, c);
    return 0;
  }
  /* A failed statement inside a transaction fails the transaction, as
   * everywhere else; the savepoint goes with it. */
  c->stream_id = 0;
  c->stream_savepoint = 0;
  return raise_result_error(L, c, cur->res);
}

/* cursor:close(), and __close when the generic for ends or breaks: a
 * stream not read to its end is cancelled and drained. Never raises. */
static int cursor_close(lua_State *L)
{
  db_cursor *cur = check_cursor(L, 1);
  db_box *box;

  if (cur->res) {
    PQclear(cur->res);
    cur->res = NULL;
  }
  if (cur->done)
    return 0;
  cur->done = 1;
  box = owner_box(L, 1);
  if (box && box->conn && box->conn->stream_id == cur->id)
    (void)db_conn_abort(box->conn, DB_CLEANUP_BUDGET_MS);
  return 0;
}

static int cursor_gc(lua_State *L)
{
  db_cursor *cur = check_cursor(L, 1);

  if (cur->res) {
    PQclear(cur->res);
    cur->res = NULL;
  }
  return 0;
}

/* Starts a stream and returns the generic-for values: iterator, state,
 * nil, and the cursor again as the to-be-closed value. */
static int do_rows(lua_State *L, int box_idx, const char *sql,
                   const char *name, int first)
{
  int last = lua_gettop(L);
  db_conn *c = statement_conn(L, box_idx);
  db_cursor *cur;

  cur = (db_cursor *)lua_newuserdatauv(L, sizeof *cur, 2);
  memset(cur, 0, sizeof *cur);
  cur->done = 1;
  luaL_setmetatable(L, CURSOR_MT);
  lua_pushvalue(L, box_idx);
  lua_setiuservalue(L, -2, 1);

  /* Inside a transaction, a cancelled stream must not fail it: the
   * stream runs under a savepoint that a cancel rolls back to. */
  if (PQtransactionStatus(c->pg) == PQTRANS_INTRANS) {
    run_command(L, c, "SAVEPOINT jobhost_rows", NULL);
    c->stream_savepoint = 1;
  }
  send_statement(L, c, sql, name, first, last, 1);
  cur->id = ++c->serial;
  cur->done = 0;
  c->stream_id = cur->id;

  lua_pushcfunction(L, cursor_next);
  lua_pushvalue(L, -2);
  lua_pushnil(L);
  lua_pushvalue(L, -4);
  return 4;
}

static int conn_rows(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  check_open(L, 1);
  dry_run_guard(L, sql);
  return do_rows(L, 1, sql, NULL, 3);
}

/* ---- prepared statements ------------------------------------------------ */

/* stmt:query/exec/rows(...): the stack is rearranged to the shape of
 * the connection methods (box at 1, the name at 2, parameters from 3). */
static int stmt_call(lua_State *L, int (*fn)(lua_State *, int, const char *,
                                             const char *, int))
{
  const char *name;

  luaL_checkudata(L, 1, STMT_MT);
  lua_getiuservalue(L, 1, 2);
  name = lua_tostring(L, -1);
  lua_insert(L, 2);
  lua_getiuservalue(L, 1, 1);
  lua_replace(L, 1);
  check_open(L, 1);
  return fn(L, 1, NULL, name, 3);
}

static int stmt_query(lua_State *L)
{
  return stmt_call(L, do_query);
}

static int stmt_exec(lua_State *L)
{
  return stmt_call(L, do_exec);
}

static int stmt_rows(lua_State *L)
{
  return stmt_call(L, do_rows);
}

static int conn_prepare(lua_State *L)
{
  const char *name = luaL_checkstring(L, 2);
  const char *sql = luaL_checkstring(L, 3);
  db_conn *c;
  db_limits limits;
  db_status st;

  check_open(L, 1);
  dry_run_guard(L, sql);
  c = statement_conn(L, 1);
  lua_newuserdatauv(L, sizeof(db_stmt), 2);
  luaL_setmetatable(L, STMT_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);

  if (!PQsendPrepare(c->pg, name, sql, 0, NULL))
    raise_status(L, c, DB_LOST);
  c->busy = 1;
  limits = run_limits(L);
  st = db_conn_flush(c, &limits);
  if (st != DB_OK)
    raise_status(L, c, st);
  collect(L, c);
  lua_pop(L, 1);
  return 1;
}

static int stmt_name(lua_State *L)
{
  luaL_checkudata(L, 1, STMT_MT);
  lua_getiuservalue(L, 1, 2);
  return 1;
}

/* ---- transactions ------------------------------------------------------- */

static db_tx *check_tx(lua_State *L)
{
  return (db_tx *)luaL_checkudata(L, 1, TX_MT);
}

/* The connection of a transaction still open, or NULL. */
static db_conn *tx_conn(lua_State *L, db_tx *tx)
{
  db_box *box = owner_box(L, 1);
  db_conn *c = box ? box->conn : NULL;

  if (!c || tx->level > c->tx_depth || c->tx_ids[tx->level - 1] != tx->id)
    return NULL;
  return c;
}

static int conn_begin(lua_State *L)
{
  db_conn *c = statement_conn(L, 1);
  db_tx *tx;
  char sql[64];

  /* A job's raw COMMIT or ROLLBACK ended every level we knew of. */
  if (PQtransactionStatus(c->pg) == PQTRANS_IDLE)
    c->tx_depth = 0;
  if (c->tx_depth >= DB_TX_MAX)
    return luaL_error(L, "db:begin: more than %d nested transactions",
                      DB_TX_MAX);
  tx = (db_tx *)lua_newuserdatauv(L, sizeof *tx, 1);
  tx->id = 0;
  tx->level = c->tx_depth + 1;
  tx->savepoint = PQtransactionStatus(c->pg) != PQTRANS_IDLE;
  luaL_setmetatable(L, TX_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);

  /* Outside a transaction: BEGIN. Inside one (ours, the dry run's, or a
   * job's own BEGIN): a savepoint named after the level. */
  if (tx->savepoint)
    snprintf(sql, sizeof sql, "SAVEPOINT jobhost_tx_%d", tx->level);
  else
    snprintf(sql, sizeof sql, "BEGIN");
  run_command(L, c, sql, NULL);
  tx->id = ++c->serial;
  c->tx_depth = tx->level;
  c->tx_ids[tx->level - 1] = tx->id;
  return 1;
}

static int tx_commit(lua_State *L)
{
  db_tx *tx = check_tx(L);
  db_conn *c = tx_conn(L, tx);
  char sql[64];

  if (!c)
    return luaL_error(L, "db: transaction already finished");
  if (tx->level != c->tx_depth)
    return luaL_error(L, "db: commit with an inner transaction still open");
  lua_getiuservalue(L, 1, 1);
  statement_conn(L, -1);
  if (tx->savepoint) {
    snprintf(sql, sizeof sql, "RELEASE SAVEPOINT jobhost_tx_%d", tx->level);
    run_command(L, c, sql, NULL);
    c->tx_depth = tx->level - 1;
    return 0;
  }
  /* COMMIT ends the transaction whatever it answers; a transaction that
   * had failed answers ROLLBACK, which must not pass for a commit. */
  c->tx_depth = tx->level - 1;
  if (!run_command(L, c, "COMMIT", "COMMIT")) {
    host_push_error(L, "Database.Error",
                    "transaction rolled back: a statement in it failed");
    lua_pushliteral(L, "25P02");
    lua_setfield(L, -2, "sqlstate");
    return lua_error(L);
  }
  return 0;
}

/* Rolls back the transaction. loud: raise on failure (tx:rollback());
 * else a failure only gives the connection up (__close, which must not
 * replace the error that is unwinding). */
static int tx_undo(lua_State *L, int loud)
{
  db_tx *tx = check_tx(L);
  db_conn *c = tx_conn(L, tx);
  char undo[64], release_sp[64], both[160];

  if (!c)
    return 0;
  c->tx_depth = tx->level - 1;
  snprintf(undo, sizeof undo, "ROLLBACK TO SAVEPOINT jobhost_tx_%d",
           tx->level);
  snprintf(release_sp, sizeof release_sp, "RELEASE SAVEPOINT jobhost_tx_%d",
           tx->level);

  if (loud) {
    lua_getiuservalue(L, 1, 1);
    statement_conn(L, -1);
    if (tx->savepoint) {
      run_command(L, c, undo, NULL);
      run_command(L, c, release_sp, NULL);
    } else {
      run_command(L, c, "ROLLBACK", NULL);
    }
    return 0;
  }
  if (tx->savepoint)
    snprintf(both, sizeof both, "%s; %s", undo, release_sp);
  else
    snprintf(both, sizeof both, "ROLLBACK");
  if (c->busy)
    (void)db_conn_abort(c, DB_CLEANUP_BUDGET_MS);
  if (db_conn_run(c, both, DB_CLEANUP_BUDGET_MS) != 0)
    c->broken = 1;
  return 0;
}

static int tx_rollback(lua_State *L)
{
  return tx_undo(L, 1);
}

static int tx_close(lua_State *L)
{
  return tx_undo(L, 0);
}

/* ---- COPY --------------------------------------------------------------- */

static int copybuf_gc(lua_State *L)
{
  db_copybuf *b = (db_copybuf *)luaL_checkudata(L, 1, COPYBUF_MT);

  if (b->row) {
    PQfreemem(b->row);
    b->row = NULL;
  }
  return 0;
}

/* Sends a COPY statement and waits for the server to enter the COPY
 * state wanted (PGRES_COPY_OUT or PGRES_COPY_IN). Raises the statement's
 * error, or a plain error when sql is not that kind of COPY. */
static db_conn *start_copy(lua_State *L, const char *sql, ExecStatusType want)
{
  db_conn *c = statement_conn(L, 1);
  PGresult *res;

  dry_run_guard(L, sql);
  send_statement(L, c, sql, NULL, 1, 0, 0);
  res = collect(L, c);
  if (PQresultStatus(res) != want) {
    lua_pop(L, 1);
    luaL_error(L, "db:%s: the statement is not a COPY %s", 
               want == PGRES_COPY_OUT ? "copy_out" : "copy_in",
               want == PGRES_COPY_OUT ? "TO STDOUT" : "FROM STDIN");
  }
  lua_pop(L, 1);
  c->stream_id = ++c->serial;
  return c;
}

/* Calls the job's function (at stack index fn) with the chunk gathered so
 * far; on its error the COPY is abandoned and the error raised again. */
static void copy_deliver(lua_State *L, db_conn *c, int fn, db_copybuf *b,
                         uint64_t id)
{
  if (b->used == 0)
    return;
  lua_pushvalue(L, fn);
  lua_pushlstring(L, b->data, b->used);
  b->used = 0;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    if (c->stream_id == id)
      (void)db_conn_abort(c, DB_CLEANUP_BUDGET_MS);
    lua_error(L);
  }
  if (c->stream_id != id)
    luaL_error(L, "db:copy_out: the COPY was ended by another statement "
                  "on its connection");
}

static int conn_copy_out(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);
  db_conn *c;
  db_copybuf *b;
  db_limits limits;
  uint64_t id;
  lua_Integer rows = 0;
  PGresult *res;

  check_open(L, 1);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  b = (db_copybuf *)lua_newuserdatauv(L, sizeof *b, 0);
  b->row = NULL;
  b->used = 0;
  luaL_setmetatable(L, COPYBUF_MT);
  c = start_copy(L, sql, PGRES_COPY_OUT);
  id = c->stream_id;
  limits = run_limits(L);

  for (;;) {
    int n = PQgetCopyData(c->pg, &b->row, 1);

    if (n == 0) {
      db_status st;

      /* Nothing more right now: hand over what we have, then wait. */
      copy_deliver(L, c, 3, b, id);
      st = db_conn_copy_data(c, &limits, &b->row, &n);
      if (st != DB_OK) {
        c->stream_id = 0;
        raise_status(L, c, st);
      }
    }
    if (n < 0)
      break;
    if (b->used + (size_t)n > sizeof b->data)
      copy_deliver(L, c, 3, b, id);
    if ((size_t)n > sizeof b->data) {
      lua_pushvalue(L, 3);
      lua_pushlstring(L, b->row, (size_t)n);
      PQfreemem(b->row);
      b->row = NULL;
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        if (c->stream_id == id)
          (void)db_conn_abort(c, DB_CLEANUP_BUDGET_MS);
        return lua_error(L);
      }
      if (c->stream_id != id)
        return luaL_error(L, "db:copy_out: the COPY was ended by another "
                             "statement on its connection");
    } else {
      memcpy(b->data + b->used, b->row, (size_t)n);
      b->used += (size_t)n;
      PQfreemem(b->row);
      b->row = NULL;
    }
  }
  if (b->row) {
    PQfreemem(b->row);
    b->row = NULL;
  }
  copy_deliver(L, c, 3, b, id);

  c->stream_id = 0;
  res = collect(L, c);
  (void)res;
  rows = affected_rows(res);
  lua_pushinteger(L, rows);
  return 1;
}

/* Abandons a COPY FROM STDIN: the server fails the COPY with reason. */
static void copy_in_abort(db_conn *c, const char *reason)
{
  db_limits limits;

  c->stream_id = 0;
  limits.deadline_ms = clock_now_ms() + DB_CLEANUP_BUDGET_MS;
  limits.interruptible = 0;
  if (PQputCopyEnd(c->pg, reason) < 0 ||
      db_conn_flush(c, &limits) != DB_OK ||
      db_conn_drain(c, DB_CLEANUP_BUDGET_MS) != 0)
    c->broken = 1;
}

static int conn_copy_in(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);
  int from_table;
  db_conn *c;
  db_limits limits;
  lua_Integer i;
  PGresult *res;
  uint64_t id;

  check_open(L, 1);
  from_table = lua_istable(L, 3);
  if (!from_table)
    luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  c = start_copy(L, sql, PGRES_COPY_IN);
  id = c->stream_id;
  limits = run_limits(L);

  for (i = 1;; i++) {
    const char *chunk;
    size_t len;
    db_status st;

    if (from_table) {
      lua_rawgeti(L, 3, i);
    } else {
      lua_pushvalue(L, 3);
      if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        if (c->stream_id == id)
          copy_in_abort(c, "the copy_in source failed");
        return lua_error(L);
      }
      if (c->stream_id != id)
        return luaL_error(L, "db:copy_in: the COPY was ended by another "
                             "statement on its connection");
    }
    if (lua_isnil(L, -1))
      break;
    if (lua_type(L, -1) != LUA_TSTRING) {
      copy_in_abort(c, "the copy_in source gave a non-string");
      return luaL_error(L, "db:copy_in: chunk %d is a %s, not a string",
                        (int)i, luaL_typename(L, -1));
    }
    chunk = lua_tolstring(L, -1, &len);
    st = db_conn_copy_put(c, &limits, chunk, len);
    if (st != DB_OK) {
      c->stream_id = 0;
      return raise_status(L, c, st);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  c->stream_id = 0;
  for (;;) {
    int r = PQputCopyEnd(c->pg, NULL);
    db_status st;

    if (r < 0)
      return raise_status(L, c, DB_LOST);
    st = db_conn_flush(c, &limits);
    if (st != DB_OK)
      return raise_status(L, c, st);
    if (r == 1)
      break;
  }
  res = collect(L, c);
  lua_pushinteger(L, affected_rows(res));
  return 1;
}

/* ---- escaping, closing -------------------------------------------------- */

static int escape(lua_State *L, int identifier)
{
  db_conn *c = check_open(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  char *out;

  if (strlen(s) != len)
    return luaL_argerror(L, 2, "string holds a NUL byte");
  out = identifier ? PQescapeIdentifier(c->pg, s, len)
                   : PQescapeLiteral(c->pg, s, len);
  if (!out) {
    push_conn_message(L, c);
    return luaL_error(L, "db: cannot escape: %s", lua_tostring(L, -1));
  }
  lua_pushstring(L, out);
  PQfreemem(out);
  return 1;
}

static int conn_escape_literal(lua_State *L)
{
  return escape(L, 0);
}

static int conn_escape_identifier(lua_State *L)
{
  return escape(L, 1);
}

/* db:close(): the connection goes back to the pool (reset) and the box
 * is closed. Closing twice does nothing. */
static int conn_close(lua_State *L)
{
  db_box *box = check_box(L, 1);
  db_conn *c = box->conn;

  if (c) {
    unlink_leased(c);
    release(c);
  }
  return 0;
}

static int conn_tostring(lua_State *L)
{
  db_box *box = check_box(L, 1);

  if (!box->conn)
    lua_pushliteral(L, "db connection (closed)");
  else
    lua_pushfstring(L, "db connection (%s@%s/%s)", PQuser(box->conn->pg),
                    PQhost(box->conn->pg), PQdb(box->conn->pg));
  return 1;
}

/* ---- connecting --------------------------------------------------------- */

/* Appends s to the options string, a backslash before spaces and
 * backslashes as libpq's options syntax wants. */
static void options_add(luaL_Buffer *b, const char *s)
{
  for (; *s; s++) {
    if (*s == ' ' || *s == '\\')
      luaL_addchar(b, '\\');
    luaL_addchar(b, *s);
  }
}

/* Pushes the options keyword's value: whatever the target asked for
 * (base, may be NULL) and the session settings. Being startup options,
 * they are the session's defaults: RESET ALL and DISCARD ALL return to
 * them. */
static void push_options(lua_State *L, const char *base)
{
  const char *tz = getenv("JOBHOST_TIMEZONE");
  luaL_Buffer b;

  luaL_buffinit(L, &b);
  if (base && *base) {
    luaL_addstring(&b, base);
    luaL_addchar(&b, ' ');
  }
  luaL_addstring(&b, "-c TimeZone=");
  options_add(&b, tz && *tz ? tz : "UTC");
  luaL_addstring(&b, " -c DateStyle=ISO -c extra_float_digits=3");
  luaL_pushresult(&b);
}

typedef enum { TARGET_ENV, TARGET_CONNINFO, TARGET_SECRET } target_kind;

static target_kind classify(const char *target)
{
  if (!*target)
    return TARGET_ENV;
  if (strncmp(target, "postgresql://", 13) == 0 ||
      strncmp(target, "postgres://", 11) == 0 || strchr(target, '='))
    return TARGET_CONNINFO;
  return TARGET_SECRET;
}

static int64_t connect_timeout_ms(void)
{
  const char *s = getenv("JOBHOST_CONNECT_TIMEOUT");
  char *end;
  long v;

  if (s && *s) {
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno == 0 && *end == '\0' && v > 0 && v < 3600)
      return (int64_t)v * 1000;
  }
  return DB_CONNECT_TIMEOUT_S * 1000;
}

/* One connection attempt with the target's keywords plus ours. */
typedef struct {
  char err[512];
  char sqlstate[6];
  db_status status;
} attempt;

static db_conn *try_connect(lua_State *L, const char *const *kw,
                            const char *const *vals, int expand, attempt *a)
{
  db_limits limits;

  limits.deadline_ms = db_deadline_min(host_get(L)->deadline_ms,
                                       clock_now_ms() + connect_timeout_ms());
  limits.interruptible = 1;
  return db_conn_open(kw, vals, expand, &limits, a->err, sizeof a->err,
                      a->sqlstate, &a->status);
}

static int is_auth_failure(const attempt *a)
{
  return strcmp(a->sqlstate, "28P01") == 0 ||
         strcmp(a->sqlstate, "28000") == 0;
}

/* Raises the error of a failed attempt. */
static int raise_attempt(lua_State *L, const attempt *a, const char *secret)
{
  if (a->status == DB_TIMEOUT && host_remaining_ms(L) <= 0)
    return raise_status(L, NULL, DB_TIMEOUT);
  if (a->status == DB_INTERRUPTED)
    return raise_status(L, NULL, DB_INTERRUPTED);
  if (is_auth_failure(a)) {
    if (secret)
      lua_pushfstring(L, "authentication failed with secret %s (also after "
                         "fetching it again): %s", secret, a->err);
    else
      lua_pushstring(L, a->err);
    host_push_error(L, "Database.AuthFailed", lua_tostring(L, -1));
  } else {
    host_push_error(L, "Database.ConnectionError", a->err);
  }
  if (a->sqlstate[0]) {
    lua_pushstring(L, a->sqlstate);
    lua_setfield(L, -2, "sqlstate");
  }
  return lua_error(L);
}

/* Connects to an env or conninfo target. */
static db_conn *connect_plain(lua_State *L, const char *target,
                              target_kind kind)
{
  const char *kw[4], *vals[4];
  const char *base = NULL;
  PQconninfoOption *opts = NULL;
  attempt a;
  db_conn *c;
  int n = 0;

  if (kind == TARGET_CONNINFO) {
    char *msg = NULL;
    PQconninfoOption *o;

    /* libpq's parse errors quote pieces of the string, which may be a
     * password: say only that it did not parse. */
    opts = PQconninfoParse(target, &msg);
    if (msg)
      PQfreemem(msg);
    if (!opts) {
      host_push_error(L, "Database.ConnectionError",
                      "invalid connection string (it does not parse as "
                      "key=value pairs or a postgresql:// URI)");
      lua_error(L);
    }
    for (o = opts; o->keyword; o++)
      if (strcmp(o->keyword, "options") == 0 && o->val)
        base = o->val;
    kw[n] = "dbname";
    vals[n++] = target;
  } else {
    base = getenv("PGOPTIONS");
  }
  push_options(L, base);
  if (opts)
    PQconninfoFree(opts);
  kw[n] = "options";
  vals[n++] = lua_tostring(L, -1);
  kw[n] = "application_name";
  vals[n++] = "jobhost";
  kw[n] = NULL;
  vals[n] = NULL;

  c = try_connect(L, kw, vals, kind == TARGET_CONNINFO, &a);
  lua_pop(L, 1);
  if (!c)
    raise_attempt(L, &a, NULL);
  return c;
}

/* Connects with a secret's keywords; on an authentication failure the
 * secret is fetched again (it may have been rotated), then its pending
 * version is tried once. */
static db_conn *connect_secret(lua_State *L, const char *id)
{
  static const secrets_mode modes[] = {SECRETS_CACHED, SECRETS_REFRESH,
                                       SECRETS_PENDING};
  attempt a;
  size_t m;

  push_options(L, NULL);
  memset(&a, 0, sizeof a);
  for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    secrets_db_params p;
    secrets_error err;
    const char **kw = NULL, **vals = NULL;
    db_conn *c = NULL;
    size_t n = 0, i, k = 0;

    if (secrets_db_params_get_until(id, modes[m], host_get(L)->deadline_ms,
                                    &p, &err) != 0) {
      if (host_remaining_ms(L) <= 0)
        raise_status(L, NULL, DB_TIMEOUT);
      if (m == 0) {
        host_push_error(L, err.type, err.message);
        lua_error(L);
      }
      break; /* no newer or pending version: the auth failure stands */
    }
    while (p.keywords[n])
      n++;
    kw = calloc(n + 3, sizeof *kw);
    vals = calloc(n + 3, sizeof *vals);
    if (kw && vals) {
      for (i = 0; i < n; i++) {
        if (strcmp(p.keywords[i], "options") == 0)
          continue;
        kw[k] = p.keywords[i];
        vals[k++] = p.values[i];
      }
      kw[k] = "options";
      vals[k++] = lua_tostring(L, -1);
      kw[k] = "application_name";
      vals[k++] = "jobhost";
      c = try_connect(L, kw, vals, 0, &a);
    } else {
      snprintf(a.err, sizeof a.err, "out of memory");
      a.status = DB_LOST;
    }
    free(kw);
    free(vals);
    secrets_db_params_free(&p);
    if (c) {
      lua_pop(L, 1);
      return c;
    }
    if (!is_auth_failure(&a))
      break;
  }
  lua_pop(L, 1);
  raise_attempt(L, &a, id);
  return NULL;
}

/* ---- leasing ------------------------------------------------------------ */

/* Per run: application_name, the statement_timeout cap (never raising a
 * smaller one the role or database set), read-only mode; then the dry
 * run's transaction. One round trip, which also proves a pooled
 * connection alive. Returns 0, or -1 (nothing raised) when retry is set
 * and the connection turned out dead. */
static int setup_run(lua_State *L, db_conn *c, int retry)
{
  static const char *const sql =
      "SELECT set_config('application_name', $1, false),"
      " set_config('statement_timeout', CASE"
      "   WHEN $2::int8 < 0 OR (s.setting::int8 > 0"
      "        AND s.setting::int8 <= $2::int8) THEN s.setting"
      "   ELSE ($2::int8)::text END, false),"
      " set_config('default_transaction_read_only',"
      "   coalesce($3, current_setting('default_transaction_read_only')),"
      "   false)"
      " FROM pg_settings s WHERE s.name = 'statement_timeout'";
  host_run *run = host_get(L);
  int64_t left = host_remaining_ms(L);
  int64_t cap = -1;
  char capbuf[32];
  const char *values[3];
  db_limits limits = run_limits(L);
  db_result *box;
  int ok;

  if (left != INT64_MAX) {
    cap = left > 2 * DB_DEADLINE_MARGIN_MS ? left - DB_DEADLINE_MARGIN_MS
                                           : left / 2;
    if (cap < 1)
      cap = 1;
    if (cap > INT32_MAX)
      cap = INT32_MAX;
  }
  snprintf(capbuf, sizeof capbuf, "%lld", (long long)cap);
  lua_pushfstring(L, "jobhost/%s", run->job ? run->job : "repl");
  values[0] = lua_tostring(L, -1);
  values[1] = capbuf;
  values[2] = run->read_only ? "on" : NULL;

  ok = PQsendQueryParams(c->pg, sql, 3, NULL, values, NULL, NULL, 0);
  lua_pop(L, 1);
  box = push_result_box(L);
  if (ok) {
    c->busy = 1;
    if (db_conn_flush(c, &limits) == DB_OK) {
      for (;;) {
        PGresult *res;
        db_status st = db_conn_next(c, &limits, &res);

        if (st == DB_TIMEOUT || st == DB_INTERRUPTED)
          raise_status(L, c, st);
        if (st != DB_OK || !res)
          break;
        if (box->res)
          PQclear(box->res);
        box->res = res;
      }
    }
  }
  if (!db_conn_ok(c) || !box->res) {
    if (retry)
      return lua_pop(L, 1), -1;
    raise_status(L, c, DB_LOST);
  }
  if (PQresultStatus(box->res) != PGRES_TUPLES_OK)
    raise_result_error(L, c, box->res);
  lua_pop(L, 1);

  if (run->dry_run)
    run_command(L, c, "BEGIN", NULL);
  return 0;
}

/* Ties c to the run of L and to the box. */
static void lease(lua_State *L, db_box *box, db_conn *c)
{
  c->owner = host_get(L);
  c->box = box;
  c->tx_depth = 0;
  c->next = leased;
  leased = c;
  box->conn = c;
}

/* Ends a lease (c is unlinked already): the box closes, the session is
 * reset, the connection goes back to the pool or is closed. Never
 * raises. */
static void release(db_conn *c)
{
  if (c->box)
    ((db_box *)c->box)->conn = NULL;
  c->box = NULL;
  c->owner = NULL;
  if (db_conn_ok(c) && c->busy)
    (void)db_conn_abort(c, DB_CLEANUP_BUDGET_MS);
  if (db_conn_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    (void)db_conn_run(c, "ROLLBACK", DB_CLEANUP_BUDGET_MS);
  /* No setting, prepared statement, temporary table, advisory lock or
   * LISTEN of this run reaches the next one. */
  if (db_conn_ok(c) &&
      db_conn_run(c, "DISCARD ALL", DB_CLEANUP_BUDGET_MS) != 0)
    c->broken = 1;
  db_pool_put(c);
}

static int conn_gc(lua_State *L)
{
  db_box *box = check_box(L, 1);

  if (box->conn) {
    db_conn *c = box->conn;

    unlink_leased(c);
    release(c);
  }
  return 0;
}

void db_push_connection(lua_State *L, const char *target)
{
  db_box *box = (db_box *)lua_newuserdatauv(L, sizeof *box, 0);
  target_kind kind = classify(target);
  db_conn *c;

  box->conn = NULL;
  luaL_setmetatable(L, CONN_MT);
  host_check(L);

  /* A pooled connection first; the server may have closed it while the
   * process sat frozen, then a new one. */
  c = db_pool_take(target);
  if (c) {
    lease(L, box, c);
    if (setup_run(L, c, 1) == 0)
      return;
    unlink_leased(c);
    box->conn = NULL;
    db_conn_free(c);
  }

  if (kind == TARGET_SECRET)
    c = connect_secret(L, target);
  else
    c = connect_plain(L, target, kind);
  c->target = strdup(target);
  if (!c->target) {
    db_conn_free(c);
    luaL_error(L, "db: out of memory");
  }
  lease(L, box, c);
  setup_run(L, c, 0);
}

void db_end_run(lua_State *L)
{
  void *owner = host_get(L);
  db_conn **p = &leased;

  while (*p) {
    db_conn *c = *p;

    if (c->owner != owner) {
      p = &c->next;
      continue;
    }
    *p = c->next;
    c->next = NULL;
    release(c);
  }
}

void db_pool_close_all(void)
{
  db_pool_clear();
}

/* ---- the module --------------------------------------------------------- */

static int db_connect(lua_State *L)
{
  db_push_connection(L, luaL_optstring(L, 1, ""));
  return 1;
}

int luaopen_jobhost_db(lua_State *L)
{
  static const luaL_Reg conn_methods[] = {
      {"query", conn_query},
      {"exec", conn_exec},
      {"rows", conn_rows},
      {"begin", conn_begin},
      {"prepare", conn_prepare},
      {"copy_out", conn_copy_out},
      {"copy_in", conn_copy_in},
      {"escape_literal", conn_escape_literal},
      {"escape_identifier", conn_escape_identifier},
      {"close", conn_close},
      {NULL, NULL}};
  static const luaL_Reg cursor_methods[] = {{"close", cursor_close},
                                            {NULL, NULL}};
  static const luaL_Reg tx_methods[] = {{"commit", tx_commit},
                                        {"rollback", tx_rollback},
                                        {NULL, NULL}};
  static const luaL_Reg stmt_methods[] = {{"query", stmt_query},
                                          {"exec", stmt_exec},
                                          {"rows", stmt_rows},
                                          {"name", stmt_name},
                                          {NULL, NULL}};
  static const luaL_Reg module[] = {{"connect", db_connect}, {NULL, NULL}};

  static const struct {
    const char *name;
    const luaL_Reg *methods; /* NULL: no methods */
    lua_CFunction close, gc, tostring;
  } classes[] = {
      {CONN_MT, conn_methods, conn_close, conn_gc, conn_tostring},
      {CURSOR_MT, cursor_methods, cursor_close, cursor_gc, NULL},
      {TX_MT, tx_methods, tx_close, NULL, NULL},
      {STMT_MT, stmt_methods, NULL, NULL, NULL},
      {RESULT_MT, NULL, NULL, result_gc, NULL},
      {COPYBUF_MT, NULL, NULL, copybuf_gc, NULL},
  };
  size_t i;

  for (i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    if (!luaL_newmetatable(L, classes[i].name)) {
      lua_pop(L, 1);
      continue;
    }
    if (classes[i].methods) {
      lua_newtable(L);
      luaL_setfuncs(L, classes[i].methods, 0);
      if (classes[i].methods == conn_methods) {
        /* ctx.db.null works as db.null does. */
        json_push_null(L);
        lua_setfield(L, -2, "null");
      }
      lua_setfield(L, -2, "__index");
    }
    if (classes[i].close) {
      lua_pushcfunction(L, classes[i].close);
      lua_setfield(L, -2, "__close");
    }
    if (classes[i].gc) {
      lua_pushcfunction(L, classes[i].gc);
      lua_setfield(L, -2, "__gc");
    }
    if (classes[i].tostring) {
      lua_pushcfunction(L, classes[i].tostring);
      lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
  }
  init_columns(L);

  luaL_newlib(L, module);
  json_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
