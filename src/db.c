/* db.c: the Lua side of the PostgreSQL binding: the "db" module and the
 * objects a job holds: connections (query, exec, rows, begin, prepare,
 * copy_out, copy_in, escaping), row streams, transactions, prepared
 * statements. Connections are C objects (db_conn.c) leased to a run
 * (db_lease.c): the run sees a userdata box that points at its connection
 * until the run ends or the job closes it; after that every use of the
 * box says "connection closed". Statements run through db_stmt.c.
 *
 * Query results are arrays of rows keyed by column name; one metatable
 * per result, shared by its rows, lists the columns in __columns so that
 * json writes them in order. A column name that repeats an earlier one
 * gets "_2", "_3", ... appended (the first name no column has or took).
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
#include "db_stmt.h"
#include "db_types.h"
#include "host.h"
#include "json.h"

#define DB_CONN_MT "jobhost.db.connection"
#define TX_MT "jobhost.db.transaction"
#define STMT_MT "jobhost.db.statement"
#define COPYBUF_MT "jobhost.db.copybuf"
#define COLUMNS_KEY "jobhost.db.columns"

/* COPY TO data is handed to the job in chunks of about this size. */
#define DB_COPY_CHUNK 65536

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

/* Rows of a COPY TO gathered into one chunk before calling the job. */
typedef struct {
  char *row; /* a PQgetCopyData row not yet copied out (PQfreemem) */
  size_t used;
  char data[DB_COPY_CHUNK];
} db_copybuf;

/* ---- results as Lua tables ---------------------------------------------- */

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

/* The rows of a db:query being gathered: the result table and what its
 * rows share live at fixed stack slots, filled at the first result. */
typedef struct {
  int types_slot, names, mt, out; /* the slots */
  int started;
  int ncols;
  lua_Integer n;
  Oid *types;
  Oid fixed[64];
} query_rows;

/* Fills the slots from the first result: the column names, the row
 * metatable, the result table, the types. */
static void start_rows(lua_State *L, query_rows *q, const PGresult *res)
{
  int i;

  q->started = 1;
  q->ncols = PQnfields(res);
  if (q->ncols > 64) {
    q->types = (Oid *)lua_newuserdatauv(L, (size_t)q->ncols *
                                               sizeof *q->types, 0);
    lua_replace(L, q->types_slot);
  }
  for (i = 0; i < q->ncols; i++)
    q->types[i] = PQftype(res, i);
  db_push_columns(L, res);
  lua_replace(L, q->names);
  db_push_row_metatable(L, q->names);
  lua_replace(L, q->mt);
  lua_createtable(L, 0, 0);
  lua_replace(L, q->out);
}

/* ---- query, exec ---------------------------------------------------------
 * Shared by connections (sql at 2, parameters from 3) and prepared
 * statements (name in the uservalue, parameters from 2). */

/* Appends the row of res to the result (a db_row_fn). */
static void add_row(lua_State *L, const PGresult *res, void *arg)
{
  query_rows *q = arg;

  if (!q->started)
    start_rows(L, q, res);
  db_push_row(L, res, 0, q->ncols, q->types, q->names, q->mt);
  lua_rawseti(L, q->out, ++q->n);
}

/* db:query: the rows arrive one at a time (single-row mode) and become
 * Lua tables as they come, so the result is held once, in the Lua heap,
 * where the run's memory limit counts it; libpq holds one row. The
 * result table and what it shares are made below the collector's box,
 * so that they outlive it. */
static int do_query(lua_State *L, int box_idx, const char *sql,
                    const char *name, int first)
{
  int last = lua_gettop(L);
  db_conn *c = db_statement_conn(L, box_idx);
  query_rows q;
  PGresult *res;

  memset(&q, 0, sizeof q);
  db_send_statement(L, c, sql, name, first, last, 1);
  lua_pushnil(L);
  q.types_slot = lua_gettop(L);
  lua_pushnil(L);
  q.names = lua_gettop(L);
  lua_pushnil(L);
  q.mt = lua_gettop(L);
  lua_pushnil(L);
  q.out = lua_gettop(L);
  q.types = q.fixed;
  res = db_collect_rows(L, c, add_row, &q);
  db_refuse_copy(L, res, "db:query");
  if (!q.started)
    start_rows(L, &q, res);
  mark_result(L, q.out, q.names);
  lua_pushvalue(L, q.out);
  return 1;
}

static int do_exec(lua_State *L, int box_idx, const char *sql,
                   const char *name, int first)
{
  db_conn *c = db_statement_conn(L, box_idx);
  PGresult *res;

  db_send_statement(L, c, sql, name, first, lua_gettop(L), 0);
  res = db_collect(L, c);
  db_refuse_copy(L, res, "db:exec");
  lua_pushinteger(L, db_affected_rows(res));
  return 1;
}

static int conn_query(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  db_check_open(L, 1);
  db_dry_run_guard(L, sql);
  return do_query(L, 1, sql, NULL, 3);
}

static int conn_exec(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  db_check_open(L, 1);
  db_dry_run_guard(L, sql);
  return do_exec(L, 1, sql, NULL, 3);
}

static int conn_rows(lua_State *L)
{
  const char *sql = luaL_checkstring(L, 2);

  db_check_open(L, 1);
  db_dry_run_guard(L, sql);
  return db_rows_start(L, 1, sql, NULL, 3);
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
  db_check_open(L, 1);
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
  return stmt_call(L, db_rows_start);
}

static int conn_prepare(lua_State *L)
{
  const char *name = luaL_checkstring(L, 2);
  const char *sql = luaL_checkstring(L, 3);
  db_conn *c;
  db_limits limits = {0};
  db_status st;

  db_check_open(L, 1);
  db_dry_run_guard(L, sql);
  c = db_statement_conn(L, 1);
  lua_newuserdatauv(L, sizeof(db_stmt), 2);
  luaL_setmetatable(L, STMT_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);

  if (!PQsendPrepare(c->pg, name, sql, 0, NULL))
    db_raise_status(L, c, DB_LOST);
  c->busy = 1;
  limits = db_run_limits(L);
  st = db_conn_flush(c, &limits);
  if (st != DB_OK)
    db_raise_status(L, c, st);
  db_collect(L, c);
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
  db_box *box = db_owner_box(L, 1);
  db_conn *c = box ? box->conn : NULL;

  if (!c || tx->level > c->tx_depth || c->tx_ids[tx->level - 1] != tx->id)
    return NULL;
  return c;
}

static int conn_begin(lua_State *L)
{
  db_conn *c = db_statement_conn(L, 1);
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
  db_run_command(L, c, sql, NULL);
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
  db_statement_conn(L, -1);
  if (tx->savepoint) {
    snprintf(sql, sizeof sql, "RELEASE SAVEPOINT jobhost_tx_%d", tx->level);
    db_run_command(L, c, sql, NULL);
    c->tx_depth = tx->level - 1;
    return 0;
  }
  /* COMMIT ends the transaction whatever it answers; a transaction that
   * had failed answers ROLLBACK, which must not pass for a commit. */
  c->tx_depth = tx->level - 1;
  if (!db_run_command(L, c, "COMMIT", "COMMIT")) {
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
    db_statement_conn(L, -1);
    if (tx->savepoint) {
      db_run_command(L, c, undo, NULL);
      db_run_command(L, c, release_sp, NULL);
    } else {
      db_run_command(L, c, "ROLLBACK", NULL);
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
  db_conn *c = db_statement_conn(L, 1);
  PGresult *res;

  db_dry_run_guard(L, sql);
  db_send_statement(L, c, sql, NULL, 1, 0, 0);
  res = db_collect(L, c);
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
  db_limits limits = {0};
  uint64_t id;
  PGresult *res;

  db_check_open(L, 1);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  b = (db_copybuf *)lua_newuserdatauv(L, sizeof *b, 0);
  b->row = NULL;
  b->used = 0;
  luaL_setmetatable(L, COPYBUF_MT);
  c = start_copy(L, sql, PGRES_COPY_OUT);
  id = c->stream_id;
  limits = db_run_limits(L);

  for (;;) {
    int n = PQgetCopyData(c->pg, &b->row, 1);

    if (n == 0) {
      db_status st;

      /* Nothing more right now: hand over what we have, then wait. */
      copy_deliver(L, c, 3, b, id);
      st = db_conn_copy_data(c, &limits, &b->row, &n);
      if (st != DB_OK) {
        c->stream_id = 0;
        db_raise_status(L, c, st);
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
  res = db_collect(L, c);
  lua_pushinteger(L, db_affected_rows(res));
  return 1;
}

/* Abandons a COPY FROM STDIN: the server fails the COPY with reason. */
static void copy_in_abort(db_conn *c, const char *reason)
{
  db_limits limits = {0};

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
  db_limits limits = {0};
  lua_Integer i;
  PGresult *res;
  uint64_t id;

  db_check_open(L, 1);
  from_table = lua_istable(L, 3);
  if (!from_table)
    luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  c = start_copy(L, sql, PGRES_COPY_IN);
  id = c->stream_id;
  limits = db_run_limits(L);

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
      return db_raise_status(L, c, st);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  c->stream_id = 0;
  for (;;) {
    int r = PQputCopyEnd(c->pg, NULL);
    db_status st;

    if (r < 0)
      return db_raise_status(L, c, DB_LOST);
    st = db_conn_flush(c, &limits);
    if (st != DB_OK)
      return db_raise_status(L, c, st);
    if (r == 1)
      break;
  }
  res = db_collect(L, c);
  lua_pushinteger(L, db_affected_rows(res));
  return 1;
}

/* ---- escaping, closing -------------------------------------------------- */

static int escape(lua_State *L, int identifier)
{
  db_conn *c = db_check_open(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  char *out;

  if (strlen(s) != len)
    return luaL_argerror(L, 2, "string holds a NUL byte");
  out = identifier ? PQescapeIdentifier(c->pg, s, len)
                   : PQescapeLiteral(c->pg, s, len);
  if (!out)
    return db_raise_libpq(L, c->pg, "cannot escape");
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

/* db:close(), __close and __gc: the connection goes back to the pool
 * (reset) and the box is closed. Closing twice does nothing. */
static int conn_close(lua_State *L)
{
  db_box *box = db_check_box(L, 1);
  db_conn *c = box->conn;

  if (c)
    db_lease_end(c);
  return 0;
}

static int conn_tostring(lua_State *L)
{
  db_box *box = db_check_box(L, 1);

  if (!box->conn)
    lua_pushliteral(L, "db connection (closed)");
  else
    lua_pushfstring(L, "db connection (%s@%s/%s)", PQuser(box->conn->pg),
                    PQhost(box->conn->pg), PQdb(box->conn->pg));
  return 1;
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
  static const luaL_Reg cursor_methods[] = {{"close", db_cursor_close},
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
      {DB_CONN_MT, conn_methods, conn_close, conn_close, conn_tostring},
      {DB_CURSOR_MT, cursor_methods, db_cursor_close, db_cursor_gc, NULL},
      {TX_MT, tx_methods, tx_close, NULL, NULL},
      {STMT_MT, stmt_methods, NULL, NULL, NULL},
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
  db_stmt_open(L);
  init_columns(L);

  luaL_newlib(L, module);
  json_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
