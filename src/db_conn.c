/* db_conn.c: PostgreSQL connections below the Lua binding. Everything here
 * runs libpq asynchronously: the handshake through PQconnectPoll, every
 * statement through PQsend* and a poll() loop on the connection's socket.
 * The loop sleeps at most DB_SLICE_MS at a time, so a deadline or an
 * interrupt (Ctrl-C in the REPL) is noticed within a tenth of a second
 * even while the server works on a long statement; what runs then is
 * cancelled and its results drained, leaving the connection usable.
 *
 * Also here: the notice receiver (server notices become log records) and
 * the pool of idle connections that outlives runs. */
#include "db_conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "host.h"
#include "log.h"

/* The longest single sleep in a wait loop. */
#define DB_SLICE_MS 100

/* How long cancelling and draining may take before a connection is given
 * up (closing it makes the server roll back on its own). */
#define DB_ABORT_BUDGET_MS 5000

/* Idle connections kept per target and in all. */
#define DB_POOL_PER_TARGET 4
#define DB_POOL_MAX 16

static db_conn *pool;

int64_t db_deadline_min(int64_t a, int64_t b)
{
  if (!a)
    return b;
  if (!b)
    return a;
  return a < b ? a : b;
}

/* ---- notices ------------------------------------------------------------ */

/* A server notice (RAISE NOTICE, "table does not exist, skipping", ...)
 * becomes one log record; libpq's default would print it to stderr. */
static void on_notice(void *arg, const PGresult *res)
{
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
  log_level level = LOG_INFO;
  log_field fields[4];

  (void)arg;
  if (!sev)
    sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
  if (sev && strcmp(sev, "WARNING") == 0)
    level = LOG_WARN;
  else if (sev && strncmp(sev, "DEBUG", 5) == 0)
    level = LOG_DEBUG;

  fields[0] = LOG_S(state ? "sqlstate" : NULL, state);
  fields[1] = LOG_S(sev ? "severity" : NULL, sev);
  fields[2] = LOG_S(detail ? "detail" : NULL, detail);
  fields[3] = LOG_S(hint ? "hint" : NULL, hint);
  log_emit(level, msg ? msg : "database notice", fields, 4);
}

/* ---- waiting ------------------------------------------------------------ */

/* Which limit has struck, if any. */
static db_status check_limits(const db_limits *limits)
{
  if (limits->interruptible && host_interrupt_requested)
    return DB_INTERRUPTED;
  if (limits->deadline_ms && clock_now_ms() >= limits->deadline_ms)
    return DB_TIMEOUT;
  return DB_OK;
}

/* Sleeps until the socket is ready for events, one slice at most and not
 * past deadline_ms. Returns the poll revents (0 when the slice ran out),
 * or -1 when the socket is gone or poll failed. */
static int wait_socket(PGconn *pg, short events, int64_t deadline_ms)
{
  struct pollfd p;
  int timeout = DB_SLICE_MS;
  int sock = PQsocket(pg);
  int r;

  if (sock < 0)
    return -1;
  if (deadline_ms) {
    int64_t left = deadline_ms - clock_now_ms();

    if (left < timeout)
      timeout = left < 0 ? 0 : (int)left;
  }
  p.fd = sock;
  p.events = events;
  p.revents = 0;
  r = poll(&p, 1, timeout);
  if (r < 0)
    return errno == EINTR ? 0 : -1;
  if (r == 0)
    return 0;
  if (p.revents & POLLNVAL)
    return -1;
  /* On POLLERR and POLLHUP libpq reads the reason: report readable. */
  if (p.revents & (POLLERR | POLLHUP))
    return p.revents | POLLIN;
  return p.revents;
}

/* Waits, within the limits, until the socket is readable, and reads what
 * arrived into libpq's buffer. */
static db_status read_more(db_conn *c, const db_limits *limits)
{
  db_status st = check_limits(limits);
  int ready;

  if (st != DB_OK)
    return st;
  ready = wait_socket(c->pg, POLLIN, limits->deadline_ms);
  if (ready < 0)
    return DB_LOST;
  if (ready > 0 && !PQconsumeInput(c->pg))
    return DB_LOST;
  return DB_OK;
}

/* Reads what arrived until PQisBusy says a result (or a single row) can
 * be had without blocking. Does not cancel on a limit. */
static db_status await_input(db_conn *c, const db_limits *limits)
{
  for (;;) {
    db_status st;

    if (!PQisBusy(c->pg))
      return DB_OK;
    st = read_more(c, limits);
    if (st != DB_OK)
      return st;
  }
}

/* Sends what libpq has queued. Does not cancel on a limit. */
static db_status flush_output(db_conn *c, const db_limits *limits)
{
  for (;;) {
    db_status st;
    int ready;
    int r = PQflush(c->pg);

    if (r == 0)
      return DB_OK;
    if (r < 0)
      return DB_LOST;
    st = check_limits(limits);
    if (st != DB_OK)
      return st;
    ready = wait_socket(c->pg, POLLIN | POLLOUT, limits->deadline_ms);
    if (ready < 0)
      return DB_LOST;
    /* The server may be talking (notices, an error); reading makes room
     * for it to go on reading us. */
    if ((ready & POLLIN) && !PQconsumeInput(c->pg))
      return DB_LOST;
  }
}

/* Maps a wait's outcome to what the caller sees: on a limit, cancels and
 * drains (or gives the connection up, when the limits say so); on a lost
 * connection, marks it broken. */
static db_status settle(db_conn *c, const db_limits *limits, db_status st)
{
  if (st == DB_TIMEOUT && limits->abandon) {
    c->broken = 1;
  } else if (st == DB_TIMEOUT || st == DB_INTERRUPTED) {
    if (db_conn_abort(c, DB_ABORT_BUDGET_MS) != 0)
      c->broken = 1;
  } else if (st == DB_LOST) {
    c->broken = 1;
  }
  return st;
}

db_status db_conn_flush(db_conn *c, const db_limits *limits)
{
  return settle(c, limits, flush_output(c, limits));
}

db_status db_conn_next(db_conn *c, const db_limits *limits, PGresult **res)
{
  db_status st;

  *res = NULL;
  st = await_input(c, limits);
  if (st != DB_OK)
    return settle(c, limits, st);
  *res = PQgetResult(c->pg);
  if (!*res) {
    c->busy = 0;
    if (PQstatus(c->pg) == CONNECTION_BAD)
      c->broken = 1;
  }
  return DB_OK;
}

/* Waits for a row of COPY OUT data. Does not cancel on a limit. */
static db_status await_copy_data(db_conn *c, const db_limits *limits,
                                 char **buf, int *len)
{
  for (;;) {
    db_status st;
    int n = PQgetCopyData(c->pg, buf, 1);

    if (n != 0) {
      *len = n;
      return DB_OK;
    }
    st = read_more(c, limits);
    if (st != DB_OK)
      return st;
  }
}

db_status db_conn_copy_data(db_conn *c, const db_limits *limits, char **buf,
                            int *len)
{
  return settle(c, limits, await_copy_data(c, limits, buf, len));
}

db_status db_conn_copy_put(db_conn *c, const db_limits *limits,
                           const char *data, size_t len)
{
  while (len > 0) {
    /* PQputCopyData takes an int; big chunks go in slices. */
    int n = len > (1u << 30) ? (1 << 30) : (int)len;
    int r = PQputCopyData(c->pg, data, n);

    if (r < 0)
      return settle(c, limits, DB_LOST);
    if (r == 0) {
      /* The output buffer is full: let the socket take some. */
      db_status st = flush_output(c, limits);

      if (st != DB_OK)
        return settle(c, limits, st);
      continue;
    }
    data += n;
    len -= (size_t)n;
  }
  return DB_OK;
}

/* ---- cancelling --------------------------------------------------------- */

void db_conn_cancel(db_conn *c)
{
  PGcancel *cancel;
  char errbuf[256];

  if (!c->pg)
    return;
  cancel = PQgetCancel(c->pg);
  if (!cancel)
    return;
  /* A failed cancel shows up as the statement running on; the drain's
   * budget then gives the connection up. */
  (void)PQcancel(cancel, errbuf, (int)sizeof errbuf);
  PQfreeCancel(cancel);
}

/* Discards a COPY OUT's remaining data. */
static db_status discard_copy_out(db_conn *c, const db_limits *limits)
{
  for (;;) {
    char *buf = NULL;
    int n = 0;
    db_status st = await_copy_data(c, limits, &buf, &n);

    if (buf)
      PQfreemem(buf);
    if (st != DB_OK)
      return st;
    if (n < 0)
      return DB_OK;
  }
}

/* Reads and discards results until the connection is idle. */
static int drain(db_conn *c, const db_limits *limits)
{
  for (;;) {
    PGresult *res;
    ExecStatusType rs;

    if (flush_output(c, limits) != DB_OK ||
        await_input(c, limits) != DB_OK)
      return -1;
    res = PQgetResult(c->pg);
    if (!res)
      break;
    rs = PQresultStatus(res);
    PQclear(res);
    if (rs == PGRES_COPY_OUT) {
      if (discard_copy_out(c, limits) != DB_OK)
        return -1;
    } else if (rs == PGRES_COPY_IN) {
      if (PQputCopyEnd(c->pg, "cancelled by jobhost") < 0)
        return -1;
    } else if (rs == PGRES_COPY_BOTH) {
      return -1;
    }
  }
  c->busy = 0;
  return PQstatus(c->pg) == CONNECTION_OK ? 0 : -1;
}

void db_conn_forget_stream(db_conn *c)
{
  c->stream_id = 0;
  c->stream_savepoint = 0;
  c->stream_own_tx = 0;
  c->stream_batched = 0;
}

int db_conn_abort(db_conn *c, int64_t budget_ms)
{
  db_limits limits = {0};
  int rc = 0;

  limits.deadline_ms = clock_now_ms() + budget_ms;
  limits.interruptible = 0;
  if (!db_conn_ok(c)) {
    rc = -1;
    goto out;
  }
  if (c->busy) {
    /* A batch's FETCH that has answered ran to its end: reading it is
     * cheaper than a cancel, which opens a connection of its own. */
    int answered = c->stream_batched && PQconsumeInput(c->pg) &&
                   !PQisBusy(c->pg);

    if (!answered)
      db_conn_cancel(c);
    if (drain(c, &limits) != 0) {
      rc = -1;
      goto out;
    }
  }
  if (c->stream_savepoint) {
    /* A cancelled stream inside a transaction: the cancel failed only
     * the savepoint taken for it, the transaction goes on. */
    c->stream_savepoint = 0;
    rc = db_conn_run(c,
                     "ROLLBACK TO SAVEPOINT jobhost_rows; "
                     "RELEASE SAVEPOINT jobhost_rows",
                     limits.deadline_ms - clock_now_ms());
  } else if (c->stream_own_tx) {
    c->stream_own_tx = 0;
    rc = db_conn_run(c, "ROLLBACK", limits.deadline_ms - clock_now_ms());
  }

out:
  db_conn_forget_stream(c);
  if (rc != 0)
    c->broken = 1;
  return rc;
}

int db_conn_drain(db_conn *c, int64_t budget_ms)
{
  db_limits limits = {0};

  limits.deadline_ms = clock_now_ms() + budget_ms;
  limits.interruptible = 0;
  db_conn_forget_stream(c);
  if (!db_conn_ok(c) || (c->busy && drain(c, &limits) != 0)) {
    c->broken = 1;
    return -1;
  }
  return 0;
}

int db_conn_run(db_conn *c, const char *sql, int64_t budget_ms)
{
  db_limits limits = {0};
  int failed = 0;

  limits.deadline_ms = clock_now_ms() + (budget_ms > 0 ? budget_ms : 1);
  limits.interruptible = 0;
  if (!db_conn_ok(c) || c->busy || !PQsendQuery(c->pg, sql))
    return -1;
  c->busy = 1;
  if (flush_output(c, &limits) != DB_OK)
    goto lost;
  for (;;) {
    PGresult *res;
    ExecStatusType rs;

    if (await_input(c, &limits) != DB_OK)
      goto lost;
    res = PQgetResult(c->pg);
    if (!res)
      break;
    rs = PQresultStatus(res);
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)
      failed = 1;
    PQclear(res);
    if (rs == PGRES_COPY_IN || rs == PGRES_COPY_OUT ||
        rs == PGRES_COPY_BOTH)
      goto lost;
  }
  c->busy = 0;
  return failed || PQstatus(c->pg) != CONNECTION_OK ? -1 : 0;

lost:
  c->broken = 1;
  return -1;
}

/* ---- connecting --------------------------------------------------------- */

/* Copies libpq's connection error into err without what verbose mode
 * added: the "28P01: " after the severity goes to sqlstate, LOCATION
 * lines go away. The message names hosts and users, never a password. */
static void clean_error(const char *msg, char *err, size_t errsize,
                        char sqlstate[6])
{
  size_t o = 0;
  const char *p = msg;

  sqlstate[0] = '\0';
  while (*p && o + 1 < errsize) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) + 1 : strlen(p);

    if (strncmp(p, "LOCATION:", 9) == 0) {
      p += n;
      continue;
    }
    while (n > 0 && o + 1 < errsize) {
      /* "FATAL:  28P01: password ..." */
      if (p[0] == ':' && p[1] == ' ' && p[2] == ' ' && n >= 10 &&
          strspn(p + 3, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") >= 5 &&
          p[8] == ':' && p[9] == ' ') {
        if (!sqlstate[0]) {
          memcpy(sqlstate, p + 3, 5);
          sqlstate[5] = '\0';
        }
        err[o++] = ':';
        if (o + 1 < errsize)
          err[o++] = ' ';
        p += 10;
        n -= 10;
        continue;
      }
      err[o++] = *p++;
      n--;
    }
    p += n;
  }
  while (o > 0 && (err[o - 1] == '\n' || err[o - 1] == ' '))
    o--;
  err[o] = '\0';
}

db_conn *db_conn_open(const char *const *keywords, const char *const *values,
                      int expand_dbname, const db_limits *limits, char *err,
                      size_t errsize, char sqlstate[6], db_status *status)
{
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  db_conn *c = NULL;
  PGconn *pg;

  *status = DB_OK;
  sqlstate[0] = '\0';
  pg = PQconnectStartParams(keywords, values, expand_dbname);
  if (!pg) {
    snprintf(err, errsize, "out of memory");
    *status = DB_LOST;
    return NULL;
  }
  /* Before the first byte is exchanged: a notice during the handshake
   * goes to the log too, and the error names its SQLSTATE. */
  PQsetNoticeReceiver(pg, on_notice, NULL);
  PQsetErrorVerbosity(pg, PQERRORS_VERBOSE);

  while (PQstatus(pg) != CONNECTION_BAD && poll_status != PGRES_POLLING_OK &&
         poll_status != PGRES_POLLING_FAILED) {
    int ready;

    *status = check_limits(limits);
    if (*status != DB_OK)
      goto fail;
    ready = wait_socket(pg,
                        poll_status == PGRES_POLLING_READING ? POLLIN
                                                             : POLLOUT,
                        limits->deadline_ms);
    /* Ready, or the socket failed: libpq finds out which. */
    if (ready != 0)
      poll_status = PQconnectPoll(pg);
  }
  if (PQstatus(pg) != CONNECTION_OK) {
    *status = DB_LOST;
    goto fail;
  }

  PQsetErrorVerbosity(pg, PQERRORS_DEFAULT);
  if (PQsetnonblocking(pg, 1) != 0) {
    *status = DB_LOST;
    goto fail;
  }
  c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errsize, "out of memory");
    *status = DB_LOST;
    PQfinish(pg);
    return NULL;
  }
  c->pg = pg;
  return c;

fail:
  if (*status == DB_TIMEOUT)
    snprintf(err, errsize, "timed out connecting to the database");
  else if (*status == DB_INTERRUPTED)
    snprintf(err, errsize, "interrupted while connecting");
  else
    clean_error(PQerrorMessage(pg), err, errsize, sqlstate);
  PQfinish(pg);
  return NULL;
}

void db_conn_free(db_conn *c)
{
  if (!c)
    return;
  if (c->pg)
    PQfinish(c->pg);
  free(c->target);
  free(c);
}

int db_conn_ok(const db_conn *c)
{
  return c && c->pg && !c->broken && PQstatus(c->pg) == CONNECTION_OK;
}

/* ---- the pool ----------------------------------------------------------- */

db_conn *db_pool_take(const char *target)
{
  db_conn **p;

  for (p = &pool; *p; p = &(*p)->next) {
    if (strcmp((*p)->target, target) == 0) {
      db_conn *c = *p;

      *p = c->next;
      c->next = NULL;
      return c;
    }
  }
  return NULL;
}

void db_pool_put(db_conn *c)
{
  db_conn *p;
  int same = 0, all = 0;

  for (p = pool; p; p = p->next) {
    all++;
    if (strcmp(p->target, c->target) == 0)
      same++;
  }
  if (!db_conn_ok(c) || c->busy || same >= DB_POOL_PER_TARGET ||
      all >= DB_POOL_MAX) {
    db_conn_free(c);
    return;
  }
  c->owner = NULL;
  c->box = NULL;
  c->tx_depth = 0;
  c->next = pool;
  pool = c;
}

void db_pool_clear(void)
{
  while (pool) {
    db_conn *c = pool;

    pool = c->next;
    db_conn_free(c);
  }
}
