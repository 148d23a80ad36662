/* db_lease.c: connections leased to runs. db_push_connection finds a
 * pooled connection for the target or connects (keyword/value arrays,
 * never a hand-built conninfo; a secret's keywords come from the secrets
 * layer, fetched again when the server refuses the password), sets the
 * run up on it (application_name, the statement_timeout cap, read-only
 * and dry-run modes) and ties it to a userdata box. db_end_run and
 * db_lease_end take it back: rollback, DISCARD ALL, and back to the
 * pool, or closed when broken. */
#include "db.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "clock.h"
#include "db_stmt.h"
#include "env.h"
#include "host.h"
#include "log.h"
#include "secrets.h"

/* Default bound on one connection attempt, seconds
 * (JOBHOST_CONNECT_TIMEOUT overrides). */
#define DB_CONNECT_TIMEOUT_S 10
/* How long a pooled connection has to answer the per-run setup before it
 * is given up and a new one made. */
#define DB_POOL_CHECK_MS 2000
/* How often the server looks, while a statement runs, whether jobhost is
 * still there (client_connection_check_interval, PostgreSQL 14 and
 * later): a run killed outright (SIGKILL, a Lambda sandbox torn down)
 * has its statement ended and its locks freed within this, not when the
 * statement would have finished. */
#define DB_CLIENT_CHECK_MS 2000

/* The box of a parsed connection string, freed by its __gc. */
#define CONNINFO_MT "jobhost.db.conninfo"

/* Connections leased to runs, whatever their state. */
static db_conn *leased;
/* Whether released connections go back to the pool (db_pool_reuse). */
static int pool_reuse = 1;

static void release(db_conn *c);

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
  return (int64_t)env_long("JOBHOST_CONNECT_TIMEOUT", 1, 3599,
                           DB_CONNECT_TIMEOUT_S) *
         1000;
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
  db_limits limits = {0};

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

/* Whether the server refused the TimeZone that push_options set from
 * JOBHOST_TIMEZONE (rather than one in the target's own options). */
static int refused_timezone(lua_State *L, const attempt *a)
{
  const char *tz = getenv("JOBHOST_TIMEZONE");
  int refused;

  if (!tz || !*tz || strcmp(a->sqlstate, "22023") != 0 ||
      !strstr(a->err, "\"TimeZone\""))
    return 0;
  lua_pushfstring(L, "\"%s\"", tz);
  refused = strstr(a->err, lua_tostring(L, -1)) != NULL;
  lua_pop(L, 1);
  return refused;
}

/* Whether nothing says where the database is: the target is libpq's
 * environment and none of libpq's variables (PGHOST, PGDATABASE,
 * PGSERVICE, ...) is set, so libpq tried its compiled-in default. */
static int no_database_configured(const char *target)
{
  PQconninfoOption *defaults, *o;
  int none = 1;

  if (*target)
    return 0;
  defaults = PQconndefaults();
  if (!defaults)
    return 0;
  for (o = defaults; o->keyword; o++)
    if (o->envvar && getenv(o->envvar))
      none = 0;
  PQconninfoFree(defaults);
  return none;
}

/* Raises the error of a failed attempt: libpq's message, with what
 * jobhost knows of the cause added on lines of their own (JOBHOST_TIMEZONE
 * as the time zone the server refused; no database configured when the
 * target is libpq's environment and nothing set it). */
static int raise_attempt(lua_State *L, const attempt *a, const char *secret,
                         const char *target)
{
  int auth = is_auth_failure(a), tz;
  luaL_Buffer b;

  if (a->status == DB_TIMEOUT && host_remaining_ms(L) <= 0)
    return db_raise_status(L, NULL, DB_TIMEOUT);
  if (a->status == DB_INTERRUPTED)
    return db_raise_status(L, NULL, DB_INTERRUPTED);

  tz = refused_timezone(L, a);
  luaL_buffinit(L, &b);
  if (auth && secret) {
    lua_pushfstring(L, "authentication failed with secret %s (also after "
                       "fetching it again): ", secret);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, a->err);
  if (tz)
    luaL_addstring(&b, "\n(the session's TimeZone comes from "
                       "JOBHOST_TIMEZONE: set it to a zone the server knows, "
                       "as in pg_timezone_names, or unset it for UTC)");
  if (target && no_database_configured(target))
    luaL_addstring(&b, "\n(no database is configured, so libpq tried its "
                       "default: give the job a database in its spec, pass "
                       "--db, or set JOBHOST_DATABASE or libpq's PG* "
                       "variables)");
  luaL_pushresult(&b);
  host_push_error(L, auth ? "Database.AuthFailed" : "Database.ConnectionError",
                  lua_tostring(L, -1));
  if (a->sqlstate[0]) {
    lua_pushstring(L, a->sqlstate);
    lua_setfield(L, -2, "sqlstate");
  }
  return lua_error(L);
}

static int conninfo_gc(lua_State *L)
{
  PQconninfoOption **box = (PQconninfoOption **)lua_touserdata(L, 1);

  if (*box) {
    PQconninfoFree(*box);
    *box = NULL;
  }
  return 0;
}

/* The option libpq's parse error names, when it names an unknown option
 * (`invalid connection option "bogus"`, `invalid URI query parameter:
 * "bogus"`) and that looks like an option's name: copied to out, else
 * out is empty. Other parse errors quote pieces of the string, which may
 * be a password, and are never shown. */
static void unknown_option(const char *msg, char *out, size_t outlen)
{
  static const char *const forms[] = {"invalid connection option \"",
                                      "invalid URI query parameter: \"",
                                      NULL};
  size_t i, n;

  out[0] = '\0';
  for (i = 0; msg && forms[i]; i++) {
    const char *name;

    if (strncmp(msg, forms[i], strlen(forms[i])) != 0)
      continue;
    name = msg + strlen(forms[i]);
    n = strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    if (n > 0 && n < outlen && n <= 64 && name[n] == '"')
      snprintf(out, outlen, "%.*s", (int)n, name);
    return;
  }
}

/* Parses a connection string into a box on the stack. libpq's parse
 * errors quote pieces of the string, which may be a password: the error
 * raised says only that it did not parse, or which option is unknown. */
static PQconninfoOption *push_conninfo(lua_State *L, const char *target)
{
  PQconninfoOption **box =
      (PQconninfoOption **)lua_newuserdatauv(L, sizeof *box, 0);
  char *msg = NULL;

  *box = NULL;
  if (luaL_newmetatable(L, CONNINFO_MT)) {
    lua_pushcfunction(L, conninfo_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  *box = PQconninfoParse(target, &msg);
  if (!*box) {
    char option[72];

    unknown_option(msg, option, sizeof option);
    if (msg)
      PQfreemem(msg);
    if (option[0])
      lua_pushfstring(L, "invalid connection string: unknown option "
                         "\"%s\" (libpq's keywords: host, port, dbname, "
                         "user, password, sslmode, ...)", option);
    else
      lua_pushliteral(L, "invalid connection string (it does not parse as "
                         "key=value pairs or a postgresql:// URI)");
    host_push_error(L, "Database.ConnectionError", lua_tostring(L, -1));
    lua_error(L);
  }
  if (msg)
    PQfreemem(msg);
  return *box;
}

/* GSSAPI encryption is off unless the target, PGGSSENCMODE or a service
 * file asks for it: RDS and Aurora do not offer it, and libpq's default
 * ("prefer") loads the Kerberos libraries and probes for credentials at
 * every connect. Set first, so a target's own gssencmode overrides it;
 * not set at all where a service is named (service= or PGSERVICE), since
 * libpq lets a keyword given here win over the service file's, and the
 * service's gssencmode would be lost. */
#define GSSENC_DEFAULT "disable"

/* Connects to an env or conninfo target. */
static db_conn *connect_plain(lua_State *L, const char *target,
                              target_kind kind)
{
  const char *kw[5], *vals[5];
  const char *base = NULL, *service = getenv("PGSERVICE");
  attempt a;
  db_conn *c;
  int n = 0;

  if (kind == TARGET_CONNINFO) {
    PQconninfoOption *o;

    /* The target's own options go first; ours follow and win. */
    for (o = push_conninfo(L, target); o->keyword; o++) {
      if (strcmp(o->keyword, "options") == 0 && o->val)
        base = o->val;
      if (strcmp(o->keyword, "service") == 0 && o->val)
        service = o->val;
    }
  } else {
    base = getenv("PGOPTIONS");
    lua_pushnil(L);
  }

  if (!getenv("PGGSSENCMODE") && !(service && *service)) {
    kw[n] = "gssencmode";
    vals[n++] = GSSENC_DEFAULT;
  }
  if (kind == TARGET_CONNINFO) {
    kw[n] = "dbname";
    vals[n++] = target;
  }
  push_options(L, base);
  kw[n] = "options";
  vals[n++] = lua_tostring(L, -1);
  kw[n] = "application_name";
  vals[n++] = "jobhost";
  kw[n] = NULL;
  vals[n] = NULL;

  c = try_connect(L, kw, vals, kind == TARGET_CONNINFO, &a);
  lua_pop(L, 2);
  if (!c)
    raise_attempt(L, &a, NULL, target);
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
        db_raise_status(L, NULL, DB_TIMEOUT);
      /* A fetch a signal cut short is the run's interruption. */
      host_check(L);
      if (m == 0) {
        host_push_error(L, err.type, err.message);
        lua_error(L);
      }
      break; /* no newer or pending version: the auth failure stands */
    }
    while (p.keywords[n])
      n++;
    kw = calloc(n + 4, sizeof *kw);
    vals = calloc(n + 4, sizeof *vals);
    if (kw && vals) {
      if (!getenv("PGGSSENCMODE")) {
        kw[k] = "gssencmode";
        vals[k++] = GSSENC_DEFAULT;
      }
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
      if (m > 0)
        log_emit(LOG_INFO, "connected with the secret fetched again",
                 (log_field[]){LOG_S("secret", id),
                               LOG_S("stage", m == 1 ? "AWSCURRENT"
                                                     : "AWSPENDING")},
                 2);
      lua_pop(L, 1);
      return c;
    }
    if (!is_auth_failure(&a))
      break;
    /* A rotation under way: said, so that a DBA sees it in the log. */
    if (m + 1 < sizeof modes / sizeof modes[0])
      log_emit(LOG_WARN, "the database refused the secret's credentials",
               (log_field[]){LOG_S("secret", id),
                             LOG_S("next", m == 0 ? "fetch it again"
                                                  : "try its AWSPENDING "
                                                    "version")},
               2);
  }
  lua_pop(L, 1);
  raise_attempt(L, &a, id, NULL);
  return NULL;
}

/* ---- leasing ------------------------------------------------------------ */

/* A time setting as SHOW prints it (a whole number and, unless it is 0,
 * the largest unit that divides it: ms, s, min, h, d) in milliseconds.
 * Returns 0, or -1 for any other form. */
static int setting_ms(const char *s, int64_t *ms)
{
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"", 1},           {"ms", 1},          {"s", 1000},
               {"min", 60000},    {"h", 3600000},     {"d", 86400000},
               {NULL, 0}};
  int64_t n = 0;
  int i;

  if (*s < '0' || *s > '9')
    return -1;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (n > (INT64_MAX / 86400000 - 9) / 10)
      return -1;
    n = n * 10 + (*s - '0');
  }
  for (i = 0; units[i].unit; i++) {
    if (strcmp(s, units[i].unit) == 0) {
      *ms = n * units[i].ms;
      return 0;
    }
  }
  return -1;
}

/* Per run: application_name, the statement_timeout cap (never raising a
 * smaller one the role or database set), read-only mode; then the dry
 * run's transaction. One round trip, which also proves a pooled
 * connection alive.
 *
 * The round trip is one simple query of utility statements: SHOW the
 * timeout in force, then SET the cap, application_name and read-only
 * mode. A timeout the role or database set that is smaller than the cap
 * is put back by a second statement. Utility statements look nothing up
 * in the catalog, where the first statement on a new backend pays for
 * every function and cast it names: set_config() and current_setting()
 * in a SELECT cost 0.7 ms there, this form 0.3 ms, most of it the
 * backend's first transaction. Returns 0, or -1 (nothing raised) when
 * retry is set and the connection turned out dead, or did not answer
 * within DB_POOL_CHECK_MS (a backend or a network path that went silent,
 * as after a failover): it is given up without a cancel, and the caller
 * connects anew. */
static int setup_run(lua_State *L, db_conn *c, int retry)
{
  host_run *run = host_get(L);
  int64_t left = host_remaining_ms(L);
  int64_t cap = -1, shown = -1;
  int role_smaller;
  db_limits limits = db_run_limits(L);
  char timeout[96] = "", check[64] = "";
  db_result *box;
  char *name;
  int ok;

  if (left != INT64_MAX) {
    cap = left > 2 * DB_DEADLINE_MARGIN_MS ? left - DB_DEADLINE_MARGIN_MS
                                           : left / 2;
    if (cap < 1)
      cap = 1;
    if (cap > INT32_MAX)
      cap = INT32_MAX;
  }
  if (retry) {
    limits.deadline_ms = db_deadline_min(limits.deadline_ms,
                                         clock_now_ms() + DB_POOL_CHECK_MS);
    limits.abandon = 1;
  }
  if (cap >= 0)
    snprintf(timeout, sizeof timeout,
             "SHOW statement_timeout; SET statement_timeout = %lld; ",
             (long long)cap);
  lua_pushfstring(L, "jobhost/%s", run->job ? run->job : "repl");
  name = PQescapeLiteral(c->pg, lua_tostring(L, -1), lua_rawlen(L, -1));
  lua_pop(L, 1);
  if (!name)
    db_raise_libpq(L, c->pg, "cannot quote the application name");
  if (PQserverVersion(c->pg) >= 140000)
    snprintf(check, sizeof check, "; SET client_connection_check_interval = %d",
             DB_CLIENT_CHECK_MS);
  lua_pushfstring(L, "%sSET application_name = %s%s%s", timeout, name,
                  run->read_only ? "; SET default_transaction_read_only = on"
                                 : "",
                  check);
  PQfreemem(name);

  ok = PQsendQuery(c->pg, lua_tostring(L, -1));
  lua_pop(L, 1);
  box = db_push_result(L);
  if (ok) {
    c->busy = 1;
    if (db_conn_flush(c, &limits) == DB_OK) {
      for (;;) {
        PGresult *res;
        db_status st = db_conn_next(c, &limits, &res);

        /* Given up (broken) without a cancel, which a silent backend
         * would not answer either: replaced, unless the run's own
         * deadline is what passed. */
        if (st == DB_TIMEOUT && limits.abandon) {
          if (host_remaining_ms(L) <= 0)
            db_raise_status(L, c, st);
          log_emit(LOG_WARN, "pooled connection did not answer: replaced",
                   &LOG_I("waited_ms", DB_POOL_CHECK_MS), 1);
          break;
        }
        if (st == DB_TIMEOUT || st == DB_INTERRUPTED)
          db_raise_status(L, c, st);
        if (st != DB_OK || !res)
          break;
        /* SHOW's one value, before the SET changes it. */
        if (shown < 0 && PQresultStatus(res) == PGRES_TUPLES_OK &&
            PQntuples(res) == 1 && PQnfields(res) == 1 &&
            setting_ms(PQgetvalue(res, 0, 0), &shown) != 0)
          shown = -1;
        if (box->res)
          PQclear(box->res);
        box->res = res;
      }
    }
  }
  if (!db_conn_ok(c) || !box->res) {
    if (retry)
      return lua_pop(L, 1), -1;
    db_raise_status(L, c, DB_LOST);
  }
  /* The last result: an error ends the statements after it. */
  if (PQresultStatus(box->res) != PGRES_COMMAND_OK)
    db_raise_result_error(L, c, box->res);
  lua_pop(L, 1);
  role_smaller = cap >= 0 && shown > 0 && shown < cap;
  c->cap_in_force = cap >= 0 && !role_smaller;
  if (role_smaller) {
    char set[64];

    snprintf(set, sizeof set, "SET statement_timeout = %lld",
             (long long)shown);
    db_run_command(L, c, set, NULL);
  }

  if (run->dry_run)
    db_run_command(L, c, "BEGIN", NULL);
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
  if (db_conn_ok(c) && (c->busy || c->stream_id))
    (void)db_conn_abort(c, DB_CLEANUP_BUDGET_MS);
  if (db_conn_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    (void)db_conn_run(c, "ROLLBACK", DB_CLEANUP_BUDGET_MS);
  /* No setting, prepared statement, temporary table, advisory lock or
   * LISTEN of this run reaches the next one. A process that will not
   * run another closes the connection instead: the session ends with it. */
  if (!pool_reuse) {
    db_conn_free(c);
    return;
  }
  if (db_conn_ok(c) &&
      db_conn_run(c, "DISCARD ALL", DB_CLEANUP_BUDGET_MS) != 0)
    c->broken = 1;
  db_pool_put(c);
}

void db_push_connection(lua_State *L, const char *target)
{
  db_box *box = (db_box *)lua_newuserdatauv(L, sizeof *box, 0);
  target_kind kind = classify(target);
  db_conn *c;

  box->conn = NULL;
  /* The metatables come with the module; a state that never opened it
   * gets it now, so the box has its __gc before anything can raise. */
  if (luaL_getmetatable(L, DB_CONN_MT) == LUA_TNIL) {
    lua_pop(L, 1);
    luaL_requiref(L, "db", luaopen_jobhost_db, 0);
    luaL_getmetatable(L, DB_CONN_MT);
    lua_remove(L, -2);
  }
  lua_setmetatable(L, -2);
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

void db_pool_reuse(int reuse)
{
  pool_reuse = reuse;
}

void db_pool_close_all(void)
{
  db_pool_clear();
}

void db_lease_end(db_conn *c)
{
  unlink_leased(c);
  release(c);
}
