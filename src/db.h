/* db.h: the PostgreSQL binding. Connections live in C, in a pool keyed by
 * their target, so that a warm process (a Lambda container, the REPL)
 * reuses them across runs; a run sees them as "db" userdata. */
#ifndef JOBHOST_DB_H
#define JOBHOST_DB_H

#include <lua.h>

/* Pushes a connection object for target: a conninfo string or URI ("host=
 * ... dbname=...", "postgresql://..."), a secret id or ARN (resolved with
 * secrets_db_params), or "" for libpq's own PG* environment. Reuses a
 * pooled connection when one for the same target is idle and still alive,
 * else connects. Applies the session settings (TimeZone, DateStyle,
 * extra_float_digits, application_name=jobhost/JOB), the run's deadline as
 * a statement_timeout cap, read-only and dry-run modes. Raises an error
 * object of type Database.ConnectionError (or Database.AuthFailed) when it
 * cannot connect. */
void db_push_connection(lua_State *L, const char *target);

/* Ends a run for every connection it used: rolls back what is open (the
 * dry-run transaction too), resets the session (DISCARD ALL, so no
 * setting, prepared statement, temp table or advisory lock carries over)
 * and puts healthy connections back in the pool (or closes them, see
 * db_pool_reuse); broken ones are closed.
 * Lua objects still pointing at them become closed. */
void db_end_run(lua_State *L);

/* Closes every pooled connection (at exit). */
void db_pool_close_all(void);

/* With reuse 0, a run's connections are closed when it ends, with no
 * session reset first, for a process that runs one job and exits; the
 * default, 1, pools them for the next run. */
void db_pool_reuse(int reuse);

/* Module "db": db.null, db.connect(target), escape helpers that need no
 * connection are methods on connections. */
int luaopen_jobhost_db(lua_State *L);

#endif
