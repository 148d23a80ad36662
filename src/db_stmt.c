/* db_stmt.c: how the db binding runs a statement. Parameters become
 * text (db_types.c), the statement goes out with PQsendQueryParams or
 * PQsendQueryPrepared, and its results are waited for in db_conn.c's
 * sliced poll loop, which cancels it when the run's deadline passes or
 * an interrupt arrives. What goes wrong becomes the binding's errors:
 * server errors as error objects with the SQLSTATE and the other fields
 * of the report, a lost connection as Database.ConnectionError, the
 * deadline as the run's own timeout. */
#include "db_stmt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "db_types.h"
#include "host.h"

#define RESULT_MT "jobhost.db.result"

/* Parameters up to this count need no allocation. */
#define DB_FIXED_PARAMS 16

db_limits db_run_limits(lua_State *L)
{
  db_limits limits = {0};

  limits.deadline_ms = host_get(L)->deadline_ms;
  limits.interruptible = 1;
  return limits;
}

db_box *db_check_box(lua_State *L, int idx)
{
  return (db_box *)luaL_checkudata(L, idx, DB_CONN_MT);
}

/* The connection of the box at idx; raises when it was closed. */
db_conn *db_check_open(lua_State *L, int idx)
{
  db_box *box = db_check_box(L, idx);

  if (!box->conn)
    luaL_error(L, "db: connection closed");
  return box->conn;
}

/* The box of an object whose uservalue 1 is the connection userdata. */
db_box *db_owner_box(lua_State *L, int idx)
{
  db_box *box;

  lua_getiuservalue(L, idx, 1);
  box = (db_box *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return box;
}

/* Pushes a box for a PGresult; its __gc clears it. */
db_result *db_push_result(lua_State *L)
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
int db_raise_status(lua_State *L, db_conn *c, db_status st)
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

int db_raise_libpq(lua_State *L, PGconn *pg, const char *what)
{
  const char *msg = pg ? PQerrorMessage(pg) : "";
  size_t n = strcspn(msg, "\n");

  /* lua_pushfstring has no precision ("%.*s"): the line is cut here. */
  if (n == 0)
    lua_pushliteral(L, "libpq gave no reason");
  else
    lua_pushlstring(L, msg, n);
  return luaL_error(L, "db: %s: %s", what, lua_tostring(L, -1));
}

/* What jobhost adds to two server errors that a job's own call causes and
 * the server's words do not explain, or NULL. */
static const char *binding_hint(const char *state, const char *primary)
{
  static const char no_values[] = "bind message supplies 0 parameters";

  if (!state || !primary)
    return NULL;
  if (strcmp(state, "08P01") == 0 &&
      strncmp(primary, no_values, sizeof no_values - 1) == 0)
    return "no values came with the statement: give them after the SQL, "
           "as in db:query(sql, v1, v2); in the REPL, sql(q, v), since "
           "sql \"q\", v binds nothing";
  if (strcmp(state, "42601") == 0 &&
      strcmp(primary, "cannot insert multiple commands into a prepared "
                      "statement") == 0)
    return "db:query, db:exec and db:rows take one statement a call: "
           "send each statement on its own";
  return NULL;
}

/* Raises a server error as an error object with the report's fields. A
 * statement_timeout that struck because the run's deadline is near (the
 * cap set at acquire) is the run's timeout, not a database error. */
int db_raise_result_error(lua_State *L, db_conn *c, const PGresult *res)
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
  int64_t left;
  int i;

  if (lost)
    c->broken = 1;
  /* The cap striking just before the deadline is the run's timeout,
   * told as what it is: the deadline is still ahead by about the margin.
   * A smaller timeout of the role or database is the database's error. */
  if (state && strcmp(state, "57014") == 0 && c->cap_in_force &&
      (left = host_remaining_ms(L)) <= DB_DEADLINE_MARGIN_MS + 200) {
    host_stop_early(L, left);
    return db_raise_status(L, c, DB_TIMEOUT);
  }

  if (primary && binding_hint(state, primary))
    lua_pushfstring(L, "%s (%s)", primary, binding_hint(state, primary));
  else if (primary)
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
void db_dry_run_guard(lua_State *L, const char *sql)
{
  const char *s;

  if (!host_get(L)->dry_run)
    return;
  s = skip_space(sql);
  if (keyword_is(s, "commit") || keyword_is(s, "end") ||
      keyword_is(s, "abort") ||
      (keyword_is(s, "prepare") &&
       keyword_is(skip_space(s + 7), "transaction"))) {
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

int db_is_cursor_query(const char *sql)
{
  const char *s = skip_space(sql);

  return keyword_is(s, "select") || keyword_is(s, "values") ||
         keyword_is(s, "table") || keyword_is(s, "with");
}

/* Gets the connection of the box at idx ready for a new statement: an
 * unfinished one (a stream the job abandoned, a COPY cut short) is
 * cancelled and drained first. Raises when closed or broken. */
db_conn *db_statement_conn(lua_State *L, int idx)
{
  db_conn *c = db_check_open(L, idx);

  host_check(L);
  if ((c->busy || c->stream_id) &&
      db_conn_abort(c, DB_CLEANUP_BUDGET_MS) != 0)
    db_raise_status(L, c, DB_LOST);
  if (!db_conn_ok(c))
    db_raise_status(L, c, DB_LOST);
  return c;
}

/* Sends a statement: sql with PQsendQueryParams, or the prepared
 * statement name with PQsendQueryPrepared; the parameters are the Lua
 * values at stack slots first..last (nil in the middle counts). */
void db_send_statement(lua_State *L, db_conn *c, const char *sql,
                       const char *name, int first, int last,
                       int single_row)
{
  const char *fixed[DB_FIXED_PARAMS];
  const char **values = fixed;
  int n = last >= first ? last - first + 1 : 0;
  int top = lua_gettop(L);
  int ok, i;
  db_limits limits = db_run_limits(L);
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
    db_raise_status(L, c, DB_LOST);
  c->busy = 1;
  if (single_row && !PQsetSingleRowMode(c->pg))
    luaL_error(L, "db: cannot stream this statement row by row");
  st = db_conn_flush(c, &limits);
  if (st != DB_OK)
    db_raise_status(L, c, st);
}

/* Waits for the results of the statement in flight and pushes a box
 * holding the one that counts (the first error, else the last result).
 * Stops early at a COPY result, leaving the COPY to the caller. Raises
 * the statement's error. Returns the result (owned by the box). */
PGresult *db_collect(lua_State *L, db_conn *c)
{
  return db_collect_rows(L, c, NULL, NULL);
}

PGresult *db_collect_rows(lua_State *L, db_conn *c, db_row_fn *each,
                          void *arg)
{
  db_result *box = db_push_result(L);
  int at = lua_gettop(L);
  db_limits limits = db_run_limits(L);
  ExecStatusType rs;

  for (;;) {
    PGresult *res;
    db_status st = db_conn_next(c, &limits, &res);

    if (st != DB_OK)
      db_raise_status(L, c, st);
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
    if (rs == PGRES_SINGLE_TUPLE && each) {
      each(L, res, arg);
      lua_settop(L, at);
    }
  }
  if (!box->res)
    db_raise_status(L, c, DB_LOST);
  rs = PQresultStatus(box->res);
  if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK &&
      rs != PGRES_EMPTY_QUERY)
    db_raise_result_error(L, c, box->res);
  return box->res;
}

void db_refuse_copy(lua_State *L, const PGresult *res, const char *call)
{
  ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

  if (rs == PGRES_COPY_OUT || rs == PGRES_COPY_IN)
    luaL_error(L, "%s: the statement is a COPY; use db:copy_out or "
                  "db:copy_in", call);
}

/* Runs a command of the binding's own (BEGIN, SAVEPOINT ...) and raises
 * its error. Leaves the stack as it was; returns nothing of the result
 * but whether its command tag was tag (when tag is not NULL). */
int db_run_command(lua_State *L, db_conn *c, const char *sql,
                   const char *tag)
{
  PGresult *res;
  int same;

  db_send_statement(L, c, sql, NULL, 1, 0, 0);
  res = db_collect(L, c);
  same = tag ? strcmp(PQcmdStatus(res), tag) == 0 : 1;
  lua_pop(L, 1);
  return same;
}

/* The affected-row count of a result, 0 when the command has none. */
lua_Integer db_affected_rows(PGresult *res)
{
  const char *n = PQcmdTuples(res);

  return *n ? (lua_Integer)strtoll(n, NULL, 10) : 0;
}

void db_stmt_open(lua_State *L)
{
  if (luaL_newmetatable(L, RESULT_MT)) {
    lua_pushcfunction(L, result_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
