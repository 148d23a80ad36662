/* db_conn.h: the C side of a PostgreSQL connection, below the Lua binding.
 * A db_conn wraps one PGconn in non-blocking mode and knows how to connect
 * asynchronously, wait for the server in short slices (so that a deadline
 * or an interrupt is noticed while a statement runs), cancel, drain and
 * reset. The pool of idle connections, keyed by target, lives here too.
 * Nothing in this layer touches a lua_State. */
#ifndef JOBHOST_DB_CONN_H
#define JOBHOST_DB_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* How deeply db:begin() may nest (the outermost plus savepoints). */
#define DB_TX_MAX 32

/* How a wait for the server ended. */
typedef enum {
  DB_OK = 0,      /* the server answered */
  DB_TIMEOUT,     /* the deadline passed; what ran was cancelled */
  DB_INTERRUPTED, /* host_interrupt_requested; what ran was cancelled */
  DB_LOST         /* the connection failed; it is no longer usable */
} db_status;

/* The bounds of a wait: an absolute deadline in epoch milliseconds (0 for
 * none) and whether host_interrupt_requested is honoured. */
typedef struct {
  int64_t deadline_ms;
  int interruptible;
  int abandon; /* on the deadline, give the connection up (broken) rather
                  than cancel what runs: for a pooled connection whose
                  liveness is being checked */
} db_limits;

typedef struct db_conn db_conn;

struct db_conn {
  PGconn *pg;
  char *target;        /* the pool key: what db.connect was given */
  db_conn *next;       /* in the pool or in the list of leased ones */
  int busy;            /* results of a sent statement are still pending */
  int broken;          /* given up on: close, never pool */
  int stream_savepoint;/* the open stream runs under the rows savepoint */
  int stream_own_tx;   /* the open stream runs in a BEGIN of its own */
  int stream_batched;  /* the open stream is a FETCH on a cursor */
  uint64_t stream_id;  /* the cursor owning the stream, 0 when none */
  uint64_t serial;     /* source of cursor and transaction ids */

  /* While leased to a run (owner != NULL). */
  void *owner;         /* the run's host_run */
  void *box;           /* the Lua userdata box pointing here */
  int tx_depth;        /* open db:begin() levels */
  uint64_t tx_ids[DB_TX_MAX];
  int tx_top_is_begin; /* level 1 was a real BEGIN, not a savepoint */
  int cap_in_force;    /* statement_timeout is the run's cap, not a
                          smaller one of the role or database */
};

/* Connects with keyword/value arrays (NULL-terminated, as
 * PQconnectStartParams takes them), polling the handshake within limits.
 * expand_dbname as for libpq. On success returns a connection in
 * non-blocking mode with the notice receiver installed. On failure
 * returns NULL, writes libpq's message (the SQLSTATE taken out of it) to
 * err and the SQLSTATE, when the server sent one, to sqlstate ("" when
 * not); *status says whether a limit struck. */
db_conn *db_conn_open(const char *const *keywords,
                      const char *const *values, int expand_dbname,
                      const db_limits *limits, char *err, size_t errsize,
                      char sqlstate[6], db_status *status);

/* Closes the connection and frees it. NULL is allowed. */
void db_conn_free(db_conn *c);

/* Whether the connection is still good for statements. */
int db_conn_ok(const db_conn *c);

/* Flushes what was queued by a PQsend* call. On a limit the statement is
 * cancelled and drained. */
db_status db_conn_flush(db_conn *c, const db_limits *limits);

/* Waits until PQgetResult will not block, then stores it in *res (NULL
 * at the end of a statement's results, which clears c->busy). On a limit
 * the statement is cancelled and drained and *res is NULL. */
db_status db_conn_next(db_conn *c, const db_limits *limits,
                       PGresult **res);

/* Waits until data of the COPY OUT in progress is there: returns like
 * PQgetCopyData (length, -1 at the end, -2 on error) in *len with the
 * row in *buf (PQfreemem it). Stops on a limit as db_conn_next does. */
db_status db_conn_copy_data(db_conn *c, const db_limits *limits,
                            char **buf, int *len);

/* Queues COPY IN data, waiting for room in the buffer. */
db_status db_conn_copy_put(db_conn *c, const db_limits *limits,
                           const char *data, size_t len);

/* Asks the server to cancel what the connection runs now. Best effort. */
void db_conn_cancel(db_conn *c);

/* Marks the connection's stream (a db:rows or a COPY) as over, with no
 * statement sent: its savepoint or transaction is the caller's to deal
 * with. */
void db_conn_forget_stream(db_conn *c);

/* Cancels and discards whatever a statement left pending (rows of an
 * abandoned stream, a COPY in progress), waiting at most budget_ms, and
 * undoes what an open stream began: its savepoint is rolled back, its
 * own transaction rolled back. A FETCH whose answer is already here is
 * read, not cancelled. Returns 0 when the connection is idle again, -1
 * when it had to be given up (it is then not ok). */
int db_conn_abort(db_conn *c, int64_t budget_ms);

/* Reads and discards what a statement left pending, without cancelling
 * it (a COPY IN already ended with PQputCopyEnd). As db_conn_abort. */
int db_conn_drain(db_conn *c, int64_t budget_ms);

/* Runs one command (no parameters) to completion within budget_ms,
 * ignoring its result. Returns 0 on success, -1 on any failure. For
 * housekeeping: ROLLBACK, DISCARD ALL, savepoint bookkeeping. */
int db_conn_run(db_conn *c, const char *sql, int64_t budget_ms);

/* The pool. db_pool_take removes and returns the most recently used idle
 * connection for target, or NULL. db_pool_put makes a connection idle
 * for its target (closing it when the pool is full). */
db_conn *db_pool_take(const char *target);
void db_pool_put(db_conn *c);
void db_pool_clear(void);

/* The epoch-ms deadline that comes first of two (0 meaning none). */
int64_t db_deadline_min(int64_t a, int64_t b);

#endif
