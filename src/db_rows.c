/* db_rows.c: db:rows(), a statement's rows streamed to a generic for,
 * never the whole result in memory.
 *
 * A query (SELECT, VALUES, TABLE, WITH) runs as a cursor of the
 * binding's own, DECLARE jobhost_rows NO SCROLL CURSOR, read in batches
 * with FETCH. As soon as a batch is taken up the FETCH of the next one
 * is sent, so the server works while the job reads; a batch is sized to
 * about ROWS_BATCH_BYTES from the rows seen so far, so wide rows come a
 * few at a time and narrow ones by thousands. Outside a transaction the
 * stream opens its own (BEGIN, COMMIT at the end); inside one it runs
 * under the savepoint jobhost_rows, so that a break rolls back only the
 * stream. Everything else (a prepared statement, INSERT ... RETURNING,
 * a query DECLARE refuses) streams in libpq's single-row mode, a
 * PGresult a row, under the same savepoint rule.
 *
 * One stream at a time runs on a connection: any other statement on it
 * ends the stream first (db_statement_conn), and the stream's next step
 * then raises. The iterator is a C closure over the cursor, so a row
 * costs no metatable check; the column names, the row metatable and the
 * column types are taken once, at the first result.
 *
 * Resource rule: the PGresult being handed out lives in the cursor
 * userdata, whose __gc clears it, so no error can leak it. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "db_stmt.h"
#include "db_types.h"
#include "host.h"

#define CURSOR_NAME "jobhost_rows"

/* The first FETCH asks for this many rows: a small result costs little,
 * the first row comes soon, and rows of megabytes come a few at a time. */
#define ROWS_FIRST_BATCH 16

/* Later batches hold about this many bytes, judged by the widest row
 * seen in the batch before, and grow at most twofold a batch, so that
 * wide rows after narrow ones come in a small batch; within the bounds
 * below. */
#define ROWS_BATCH_BYTES (1 << 20)
#define ROWS_MAX_BATCH 5000
#define ROWS_SAMPLE 64

/* Column types up to this count live in the cursor itself. */
#define ROWS_FIXED_TYPES 32

/* The iterator's upvalues. */
#define UV_CURSOR 1
#define UV_BOX 2
#define UV_MT 3    /* the row metatable, from the first result */
#define UV_NAMES 4 /* the column names, from the first result */
#define UV_TYPES 5 /* the types' userdata, past ROWS_FIXED_TYPES */

/* A db:rows() stream. Uservalue 1: the connection's box. */
typedef struct {
  uint64_t id;   /* equals conn->stream_id while the stream runs */
  PGresult *res; /* single-row: the row; batched: the batch in hand */
  int done;      /* nothing more to hand out */
  int batched;   /* rows come from FETCH on the cursor */
  int last;      /* res is the last batch; the cursor is closed */
  int row;       /* the next row of res to hand out */
  int batch;     /* the rows the FETCH in flight asks for */
  int ncols;     /* -1 until the first result */
  Oid *types;
  Oid fixed[ROWS_FIXED_TYPES];
} db_cursor;

static void clear_result(db_cursor *cur)
{
  if (cur->res) {
    PQclear(cur->res);
    cur->res = NULL;
  }
}

/* The stream's connection; raises when another statement or the end of
 * the connection took the stream away. */
static db_conn *stream_conn(lua_State *L, db_cursor *cur)
{
  db_box *box = (db_box *)lua_touserdata(L, lua_upvalueindex(UV_BOX));
  db_conn *c = box->conn;

  if (!c || c->stream_id != cur->id) {
    cur->done = 1;
    clear_result(cur);
    luaL_error(L, "db:rows: the stream was closed (its connection "
                  "closed, or another statement ran on it)");
  }
  return c;
}

/* A wait for the stream's results ended on a limit or a lost
 * connection (db_conn.c has cancelled and undone the stream): raises. */
static int stream_stopped(lua_State *L, db_cursor *cur, db_conn *c,
                          db_status st)
{
  cur->done = 1;
  db_conn_forget_stream(c);
  return db_raise_status(L, c, st);
}

/* Takes the column names, the row metatable and the types from the
 * first result into the iterator's upvalues. */
static void take_columns(lua_State *L, db_cursor *cur, const PGresult *res)
{
  int n = PQnfields(res);
  int i;

  if (n > ROWS_FIXED_TYPES) {
    cur->types = (Oid *)lua_newuserdatauv(L, (size_t)n * sizeof(Oid), 0);
    lua_replace(L, lua_upvalueindex(UV_TYPES));
  }
  for (i = 0; i < n; i++)
    cur->types[i] = PQftype(res, i);
  db_push_columns(L, res);
  db_push_row_metatable(L, lua_gettop(L));
  lua_replace(L, lua_upvalueindex(UV_MT));
  lua_replace(L, lua_upvalueindex(UV_NAMES));
  cur->ncols = n;
}

static int push_row(lua_State *L, db_cursor *cur)
{
  if (cur->ncols < 0)
    take_columns(L, cur, cur->res);
  db_push_row(L, cur->res, cur->row++, cur->ncols, cur->types,
              lua_upvalueindex(UV_NAMES), lua_upvalueindex(UV_MT));
  return 1;
}

/* ---- batches from a cursor ---------------------------------------------- */

/* Reads the results of the statement in flight to their end, keeping the
 * first in *keep (which must be NULL) and clearing the rest. */
static db_status take_results(db_conn *c, const db_limits *limits,
                              PGresult **keep)
{
  for (;;) {
    PGresult *res;
    db_status st = db_conn_next(c, limits, &res);

    if (st != DB_OK || !res)
      return st;
    if (*keep)
      PQclear(res);
    else
      *keep = res;
  }
}

/* Sends the FETCH of the next batch. */
static void send_fetch(lua_State *L, db_conn *c, int count)
{
  char sql[64];

  snprintf(sql, sizeof sql, "FETCH %d FROM " CURSOR_NAME, count);
  db_send_statement(L, c, sql, NULL, 1, 0, 0);
}

/* The size of the batch after res, which asked for asked rows: about
 * ROWS_BATCH_BYTES of the widest of up to ROWS_SAMPLE rows spread over
 * res (with libpq's 16 bytes a value), at most twice asked. */
static int next_batch_size(const PGresult *res, int asked)
{
  int nrows = PQntuples(res);
  int ncols = PQnfields(res);
  int step = nrows > ROWS_SAMPLE ? nrows / ROWS_SAMPLE : 1;
  size_t widest = 1, n;
  int r, i;

  for (r = 0; r < nrows; r += step) {
    size_t bytes = 0;

    for (i = 0; i < ncols; i++)
      bytes += (size_t)PQgetlength(res, r, i) + 16;
    if (bytes > widest)
      widest = bytes;
  }
  n = ROWS_BATCH_BYTES / widest;
  if (n > (size_t)asked * 2)
    n = (size_t)asked * 2;
  if (n < 1)
    n = 1;
  if (n > ROWS_MAX_BATCH)
    n = ROWS_MAX_BATCH;
  return (int)n;
}

/* A FETCH failed: the stream's own transaction is rolled back (inside a
 * job's transaction the failure fails that transaction, as any failed
 * statement does), then the error is raised. */
static int fail_batch(lua_State *L, db_cursor *cur, db_conn *c)
{
  int own_tx = c->stream_own_tx;

  cur->done = 1;
  db_conn_forget_stream(c);
  if (own_tx && db_conn_run(c, "ROLLBACK", DB_CLEANUP_BUDGET_MS) != 0)
    c->broken = 1;
  return db_raise_result_error(L, c, cur->res);
}

/* Takes the answer to the FETCH in flight, sends the next FETCH or,
 * after the last batch, closes the cursor, and hands out the first row
 * of the batch. */
static int next_batch(lua_State *L, db_cursor *cur)
{
  db_conn *c = stream_conn(L, cur);
  db_limits limits = db_run_limits(L);
  int asked = cur->batch;
  int nrows;
  db_status st;

  clear_result(cur);
  st = take_results(c, &limits, &cur->res);
  if (st != DB_OK)
    return stream_stopped(L, cur, c, st);
  if (!cur->res || PQresultStatus(cur->res) != PGRES_TUPLES_OK)
    return fail_batch(L, cur, c);

  nrows = PQntuples(cur->res);
  cur->row = 0;
  if (nrows == asked) {
    cur->batch = next_batch_size(cur->res, asked);
    send_fetch(L, c, cur->batch);
  } else {
    /* The last batch: the statement is over before its rows are read,
     * so another statement on the connection no longer ends them. */
    int own_tx = c->stream_own_tx;

    db_conn_forget_stream(c);
    cur->last = 1;
    if (own_tx) {
      db_run_command(L, c, "COMMIT", NULL);
    } else {
      db_run_command(L, c, "CLOSE " CURSOR_NAME, NULL);
      db_run_command(L, c, "RELEASE SAVEPOINT jobhost_rows", NULL);
    }
  }
  if (nrows == 0) {
    cur->done = 1;
    clear_result(cur);
    return 0;
  }
  return push_row(L, cur);
}

/* Runs BEGIN or SAVEPOINT, DECLARE and the first FETCH. Returns 1 when
 * the stream runs as a cursor; 0 when DECLARE refused the statement,
 * which then still has to run (with the savepoint kept, in_tx). */
static int open_cursor(lua_State *L, db_conn *c, const char *sql, int first,
                       int last, int in_tx)
{
  db_result *box;
  db_limits limits = db_run_limits(L);
  db_status st;
  int declared;

  db_run_command(L, c, in_tx ? "SAVEPOINT jobhost_rows" : "BEGIN", NULL);
  c->stream_savepoint = in_tx;
  c->stream_own_tx = !in_tx;

  lua_pushfstring(L, "DECLARE " CURSOR_NAME " NO SCROLL CURSOR FOR %s", sql);
  db_send_statement(L, c, lua_tostring(L, -1), NULL, first, last, 0);
  lua_pop(L, 1);
  box = db_push_result(L);
  st = take_results(c, &limits, &box->res);
  if (st != DB_OK)
    return db_raise_status(L, c, st);
  declared = box->res && PQresultStatus(box->res) == PGRES_COMMAND_OK;
  lua_pop(L, 1);
  if (declared) {
    c->stream_batched = 1;
    send_fetch(L, c, ROWS_FIRST_BATCH);
    return 1;
  }

  /* DECLARE fails only before the statement ran (a parse or planning
   * error, SELECT ... INTO, a WITH that writes): undo it, and let the
   * statement run as it was written, giving its own error if any. */
  c->stream_savepoint = 0;
  c->stream_own_tx = 0;
  db_run_command(L, c, in_tx ? "ROLLBACK TO SAVEPOINT jobhost_rows"
                             : "ROLLBACK", NULL);
  return 0;
}

/* ---- rows one at a time ------------------------------------------------- */

/* The next row in single-row mode, or the end of the results. */
static int next_single(lua_State *L, db_cursor *cur)
{
  db_conn *c = stream_conn(L, cur);
  db_limits limits = db_run_limits(L);
  db_status st;
  ExecStatusType rs;

  clear_result(cur);
  st = db_conn_next(c, &limits, &cur->res);
  if (st != DB_OK)
    return stream_stopped(L, cur, c, st);
  rs = cur->res ? PQresultStatus(cur->res) : PGRES_FATAL_ERROR;
  if (rs == PGRES_SINGLE_TUPLE) {
    cur->row = 0;
    return push_row(L, cur);
  }
  if (rs == PGRES_COPY_OUT || rs == PGRES_COPY_IN) {
    /* The COPY stays pending; the next statement cancels it. */
    cur->done = 1;
    db_refuse_copy(L, cur->res, "db:rows");
  }

  /* The end of the rows, or an error: read the end of the results. */
  cur->done = 1;
  for (;;) {
    PGresult *more;

    st = db_conn_next(c, &limits, &more);
    if (st != DB_OK)
      return stream_stopped(L, cur, c, st);
    if (!more)
      break;
    PQclear(more);
  }
  /* A statement that returns no rows (UPDATE, SELECT ... INTO) ends
   * the stream at once. */
  if (rs == PGRES_TUPLES_OK || rs == PGRES_COMMAND_OK ||
      rs == PGRES_EMPTY_QUERY) {
    int savepoint = c->stream_savepoint;

    clear_result(cur);
    db_conn_forget_stream(c);
    if (savepoint)
      db_run_command(L, c, "RELEASE SAVEPOINT jobhost_rows", NULL);
    return 0;
  }
  /* A failed statement inside a transaction fails the transaction, as
   * everywhere else; the savepoint goes with it. */
  db_conn_forget_stream(c);
  return db_raise_result_error(L, c, cur->res);
}

/* ---- the iterator ------------------------------------------------------- */

/* The generic for's iterator: the next row, or nothing at the end. */
static int cursor_next(lua_State *L)
{
  db_cursor *cur = (db_cursor *)lua_touserdata(L, lua_upvalueindex(UV_CURSOR));

  if (cur->done)
    return 0;
  if (!cur->batched)
    return next_single(L, cur);
  if (cur->res && cur->row < PQntuples(cur->res)) {
    if (!cur->last)
      (void)stream_conn(L, cur);
    return push_row(L, cur);
  }
  if (cur->last) {
    cur->done = 1;
    clear_result(cur);
    return 0;
  }
  return next_batch(L, cur);
}

/* cursor:close(), and __close when the generic for ends or breaks: a
 * stream not read to its end is ended (its FETCH or its rows cancelled,
 * its savepoint or transaction rolled back). Never raises. */
int db_cursor_close(lua_State *L)
{
  db_cursor *cur = (db_cursor *)luaL_checkudata(L, 1, DB_CURSOR_MT);
  db_box *box;

  clear_result(cur);
  if (cur->done)
    return 0;
  cur->done = 1;
  box = db_owner_box(L, 1);
  if (box && box->conn && box->conn->stream_id == cur->id)
    (void)db_conn_abort(box->conn, DB_CLEANUP_BUDGET_MS);
  return 0;
}

int db_cursor_gc(lua_State *L)
{
  clear_result((db_cursor *)luaL_checkudata(L, 1, DB_CURSOR_MT));
  return 0;
}

int db_rows_start(lua_State *L, int box_idx, const char *sql,
                  const char *name, int first)
{
  int last = lua_gettop(L);
  db_conn *c = db_statement_conn(L, box_idx);
  PGTransactionStatusType ts = PQtransactionStatus(c->pg);
  int in_tx = ts == PQTRANS_INTRANS;
  int try_cursor =
      !name && (ts == PQTRANS_IDLE || in_tx) && db_is_cursor_query(sql);
  db_cursor *cur;

  box_idx = lua_absindex(L, box_idx);
  cur = (db_cursor *)lua_newuserdatauv(L, sizeof *cur, 1);
  memset(cur, 0, sizeof *cur);
  cur->done = 1;
  cur->ncols = -1;
  cur->types = cur->fixed;
  cur->batch = ROWS_FIRST_BATCH;
  luaL_setmetatable(L, DB_CURSOR_MT);
  lua_pushvalue(L, box_idx);
  lua_setiuservalue(L, -2, 1);

  /* The stream is the connection's from here: should anything below
   * raise, the next statement or the end of the run undoes what it
   * began. */
  cur->id = ++c->serial;
  c->stream_id = cur->id;
  if (try_cursor)
    cur->batched = open_cursor(L, c, sql, first, last, in_tx);
  if (!cur->batched) {
    /* Inside a transaction a cancelled stream must not fail it: the
     * stream runs under a savepoint that a cancel rolls back to (kept
     * from open_cursor when it tried). */
    if (in_tx && !try_cursor)
      db_run_command(L, c, "SAVEPOINT jobhost_rows", NULL);
    c->stream_savepoint = in_tx;
    db_send_statement(L, c, sql, name, first, last, 1);
  }
  cur->done = 0;

  lua_pushvalue(L, -1);
  lua_pushvalue(L, box_idx);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushcclosure(L, cursor_next, 5);
  lua_pushvalue(L, -2);
  lua_pushnil(L);
  lua_pushvalue(L, -4);
  return 4;
}
