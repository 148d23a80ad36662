/* db_stmt.h: the statement machinery shared by the db binding's files
 * (db.c: the Lua objects; db_lease.c: connecting and leasing): the
 * connection's userdata box, sending a statement with its parameters,
 * waiting for its results, and raising what went wrong as the binding's
 * errors. Internal to the binding. */
#ifndef JOBHOST_DB_STMT_H
#define JOBHOST_DB_STMT_H

#include <libpq-fe.h>
#include <lua.h>

#include "db_conn.h"

/* The metatable of connection userdata. */
#define DB_CONN_MT "jobhost.db.connection"

/* statement_timeout is capped at the time left less this margin, so the
 * server gives up on its own before the run's deadline. */
#define DB_DEADLINE_MARGIN_MS 1000

/* How long housekeeping (rollback, reset, cancel, drain) may take. */
#define DB_CLEANUP_BUDGET_MS 5000

/* The Lua side of a connection: a full userdata with DB_CONN_MT. */
typedef struct {
  db_conn *conn; /* NULL once closed or its run ended */
} db_box;

/* A PGresult owned by a userdata, so that an error cannot leak it. */
typedef struct {
  PGresult *res;
} db_result;

/* Registers the metatables this file's userdata need. Call from the
 * module's luaopen. */
void db_stmt_open(lua_State *L);

/* The limits of a statement of L's run: its deadline, interruptible. */
db_limits db_run_limits(lua_State *L);

/* The box at idx (raises when it is not a connection), and its open
 * connection (raises "db: connection closed" when it has none). */
db_box *db_check_box(lua_State *L, int idx);
db_conn *db_check_open(lua_State *L, int idx);

/* The connection box of the object at idx, whose uservalue 1 holds the
 * connection userdata; NULL when it does not. */
db_box *db_owner_box(lua_State *L, int idx);

/* Pushes an empty result box; its __gc clears what it holds. */
db_result *db_push_result(lua_State *L);

/* Raises for a wait that did not end DB_OK: the run's own timeout or
 * interrupt through the host (so no pcall keeps the run going), else a
 * Database.ConnectionError with libpq's message. c may be NULL. Does
 * not return. */
int db_raise_status(lua_State *L, db_conn *c, db_status st);

/* Raises "db: " what ": " and the first line of libpq's last message on
 * pg (may be NULL), for a libpq call that failed on the binding's side
 * (an escape, a quote): a plain message, not an error object. Does not
 * return. */
int db_raise_libpq(lua_State *L, PGconn *pg, const char *what);

/* Raises the error of res (may be NULL: the connection's message) as an
 * error object: type Database.Error, or Database.ConnectionError when the
 * connection is gone; fields sqlstate, severity, message, detail, hint,
 * constraint, schema, table, column, where, position when the server sent
 * them. A statement_timeout that struck because the run's deadline is
 * near is the run's timeout instead. Does not return. */
int db_raise_result_error(lua_State *L, db_conn *c, const PGresult *res);

/* In a dry run, raises for a statement that would end the run's
 * transaction (COMMIT, END, ABORT, PREPARE TRANSACTION, ROLLBACK but not
 * ROLLBACK TO). */
void db_dry_run_guard(lua_State *L, const char *sql);

/* Whether sql is a query that a cursor can run (it starts with SELECT,
 * VALUES, TABLE or WITH, after blanks, comments and parentheses). The
 * server has the last word: DECLARE still refuses SELECT ... INTO and a
 * WITH that modifies data. */
int db_is_cursor_query(const char *sql);

/* The open connection of the box at idx, ready for a statement: an
 * unfinished one (an abandoned stream, a COPY cut short) is cancelled and
 * drained first. Checks the run's deadline. Raises when closed, broken or
 * out of time. */
db_conn *db_statement_conn(lua_State *L, int idx);

/* Sends sql (PQsendQueryParams), or the prepared statement name when
 * not NULL (PQsendQueryPrepared), with the Lua values at stack slots
 * first..last as text parameters of type OID 0; single_row asks for
 * single-row mode. Flushes within the run's limits. Raises on bad
 * parameters, a lost connection, the deadline. */
void db_send_statement(lua_State *L, db_conn *c, const char *sql,
                       const char *name, int first, int last,
                       int single_row);

/* Waits for the results of the statement in flight and pushes a result
 * box holding the one that counts (the first error, else the last).
 * Returns at once at a COPY result, leaving the COPY to the caller.
 * Raises the statement's error. Returns the result (the box owns it). */
PGresult *db_collect(lua_State *L, db_conn *c);

/* Raises "CALL: the statement is a COPY; use db:copy_out or db:copy_in"
 * when res is a COPY's start, which only those two calls can carry on
 * (the COPY stays pending; the next statement cancels it). */
void db_refuse_copy(lua_State *L, const PGresult *res, const char *call);

/* Called by db_collect_rows with each row of a statement sent in
 * single-row mode (res holds the one row, and stays the box's). It may
 * push values; the stack is set back after it. It may raise. */
typedef void db_row_fn(lua_State *L, const PGresult *res, void *arg);

/* db_collect for a statement sent in single-row mode: each row's result
 * goes to each before the next is read, so only one row is held. */
PGresult *db_collect_rows(lua_State *L, db_conn *c, db_row_fn *each,
                          void *arg);

/* Runs a statement of the binding's own (BEGIN, SAVEPOINT, ...) to its
 * end, raising its error; the stack is left as it was. Returns whether
 * the command tag equals tag (1 when tag is NULL). */
int db_run_command(lua_State *L, db_conn *c, const char *sql,
                   const char *tag);

/* The affected-row count of a result (PQcmdTuples), 0 when it has none. */
lua_Integer db_affected_rows(PGresult *res);

/* From db_rows.c: db:rows() on the connection box at box_idx, for sql
 * or (when name is not NULL) the prepared statement name, with the
 * parameters from stack slot first to the top. Returns the generic-for
 * values: the iterator, the cursor, nil and the cursor again as the
 * to-be-closed value (4). Raises as a statement does. */
int db_rows_start(lua_State *L, int box_idx, const char *sql,
                  const char *name, int first);

/* From db_rows.c: a db:rows() stream's metatable (registered with the
 * module's classes in db.c), its close (cursor:close() and __close: a
 * stream not read to its end is ended; never raises) and its __gc. */
#define DB_CURSOR_MT "jobhost.db.cursor"
int db_cursor_close(lua_State *L);
int db_cursor_gc(lua_State *L);

/* From db_lease.c: ends the lease of c (the job closed its connection
 * or the userdata was collected): its box closes, the session is reset,
 * and it goes back to the pool or is closed. Never raises. */
void db_lease_end(db_conn *c);

#endif
