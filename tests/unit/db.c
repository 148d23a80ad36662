/* db.c (test): what the db binding does that a spec cannot see from inside
 * Lua: server notices land in the log sink and never on stderr; Ctrl-C
 * (host_interrupt_requested) cancels a running statement; a rotated
 * password is fetched again and the connection retried, and no password
 * reaches a log record or an error. Runs against the throwaway cluster
 * whose settings are in $JOBHOST_TEST_PGENV. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "clock.h"
#include "db.h"
#include "host.h"
#include "log.h"
#include "secrets.h"

#define PASSWORD_A "rotA-9f3b2c71"
#define PASSWORD_B "p@ss word/'\\#-after"
#define PASSWORD_C "wrong-c-5d1e"
#define PASSWORD_D "never-told-d-77aa"

static int failures;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      failures++;                                                             \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,       \
              #cond);                                                         \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
    }                                                                         \
  } while (0)

/* Puts the cluster's PG* settings into the environment. */
static int load_pg_env(void)
{
  const char *path = getenv("JOBHOST_TEST_PGENV");
  char line[1024];
  FILE *f;

  if (!path || !(f = fopen(path, "r"))) {
    fprintf(stderr, "JOBHOST_TEST_PGENV is not a readable file\n");
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char *eq = strchr(line, '=');

    line[strcspn(line, "\n")] = '\0';
    if (!eq)
      continue;
    *eq = '\0';
    setenv(line, eq + 1, 1);
  }
  fclose(f);
  return 0;
}

/* Runs code in a fresh host state as a job's run: host_pcall, then
 * db_end_run. Returns whether it succeeded; out gets the result or the
 * error as text, *stop the stop reason. */
static int run_lua(const char *code, char *out, size_t outsize,
                   host_stop *stop)
{
  host_options o = {0};
  lua_State *L;
  int ok;

  o.job = "unit";
  o.deadline_ms = clock_now_ms() + 60000;
  L = host_open(&o);
  if (!L)
    return 0;
  ok = host_load(L, code, strlen(code), "=test") == LUA_OK &&
       host_pcall(L, 0, 1) == LUA_OK;
  snprintf(out, outsize, "%s", luaL_tolstring(L, -1, NULL));
  if (stop)
    *stop = host_get(L)->stop;
  db_end_run(L);
  host_close(L);
  return ok;
}

/* The whole of a FILE written so far, in a static buffer. */
static const char *contents(FILE *f)
{
  static char buf[65536];
  size_t n;

  fflush(f);
  rewind(f);
  n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  return buf;
}

/* The line of text holding needle, in a static buffer ("" when none). */
static const char *line_with(const char *text, const char *needle)
{
  static char buf[4096];
  const char *p = strstr(text, needle);
  const char *start, *end;

  buf[0] = '\0';
  if (!p)
    return buf;
  for (start = p; start > text && start[-1] != '\n'; start--)
    ;
  end = strchr(p, '\n');
  if (!end)
    end = p + strlen(p);
  snprintf(buf, sizeof buf, "%.*s", (int)(end - start), start);
  return buf;
}

static void test_notices(void)
{
  FILE *logf = tmpfile();
  FILE *errf = tmpfile();
  int saved = dup(2);
  char out[1024];
  const char *text;
  int ok;

  log_configure(logf, LOG_JSON, LOG_DEBUG);
  dup2(fileno(errf), 2);
  ok = run_lua("local c = require('db').connect('')\n"
               "c:exec('DROP TABLE IF EXISTS tmp_x')\n"
               "c:exec([[DO $$ BEGIN RAISE NOTICE 'purged %', 42;\n"
               "  RAISE WARNING 'careful' USING HINT = 'look';\n"
               "END $$]])\n"
               "c:exec('SET client_min_messages = debug1')\n"
               "c:exec([[DO $$ BEGIN RAISE DEBUG 'fine detail'; END $$]])\n"
               "return 'done'",
               out, sizeof out, NULL);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  log_configure(stderr, LOG_TEXT, LOG_INFO);

  CHECK(ok, "%s", out);
  text = contents(logf);
  CHECK(strstr(line_with(text, "purged 42"), "\"level\":\"INFO\"") &&
            strstr(line_with(text, "purged 42"), "\"sqlstate\":\"00000\"") &&
            strstr(line_with(text, "purged 42"), "\"severity\":\"NOTICE\""),
        "%s", text);
  CHECK(strstr(line_with(text, "careful"), "\"level\":\"WARN\"") &&
            strstr(line_with(text, "careful"), "\"sqlstate\":\"01000\"") &&
            strstr(line_with(text, "careful"), "\"hint\":\"look\""),
        "%s", text);
  CHECK(strstr(line_with(text, "tmp_x"), "\"level\":\"INFO\""), "%s", text);
  CHECK(strstr(line_with(text, "fine detail"), "\"level\":\"DEBUG\""), "%s",
        text);
  CHECK(contents(errf)[0] == '\0', "stderr got: %s", contents(errf));
  fclose(logf);
  fclose(errf);
}

static void on_alarm(int sig)
{
  (void)sig;
  host_interrupt_requested = 1;
}

static void test_interrupt(void)
{
  struct itimerval t = {{0, 0}, {0, 300000}};
  host_stop stop = HOST_RUNNING;
  char out[1024];
  int64_t start = clock_now_ms();
  int ok;

  signal(SIGALRM, on_alarm);
  setitimer(ITIMER_REAL, &t, NULL);
  ok = run_lua("local c = require('db').connect('')\n"
               "c:exec('CREATE TABLE IF NOT EXISTS intr (id int)')\n"
               "local tx <close> = c:begin()\n"
               "c:exec('INSERT INTO intr VALUES (1)')\n"
               "pcall(c.exec, c, 'SELECT pg_sleep(20)')\n"
               "return 'not stopped'",
               out, sizeof out, &stop);
  signal(SIGALRM, SIG_DFL);
  CHECK(!ok, "%s", out);
  CHECK(stop == HOST_INTERRUPTED, "stop %d: %s", (int)stop, out);
  CHECK(strstr(out, "interrupted") != NULL, "%s", out);
  CHECK(clock_now_ms() - start < 5000, "took %lld ms",
        (long long)(clock_now_ms() - start));
  CHECK(host_interrupt_requested == 0, "the flag was consumed");

  ok = run_lua("local c = require('db').connect('')\n"
               "local n = c:query('SELECT count(*) AS n FROM intr')[1].n\n"
               "c:exec('DROP TABLE intr')\n"
               "return n",
               out, sizeof out, NULL);
  CHECK(ok && strcmp(out, "0") == 0, "%s", out);
}

/* Writes the secrets file with one RDS-style secret "rot". */
static void write_secret(const char *path, const char *password)
{
  FILE *f = fopen(path, "w");
  const char *p;

  if (!f)
    return;
  fprintf(f, "{\"rot\": {\"engine\": \"postgres\", \"host\": \"%s\", "
             "\"port\": %s, \"username\": \"jobhost_rot\", "
             "\"dbname\": \"%s\", \"password\": \"",
          getenv("PGHOST"), getenv("PGPORT"), getenv("PGDATABASE"));
  for (p = password; *p; p++) {
    if (*p == '"' || *p == '\\')
      fputc('\\', f);
    fputc(*p, f);
  }
  fputs("\"}}\n", f);
  fclose(f);
}

/* Sets the role's password through the superuser's socket, creating
 * the role the first time. */
static int set_password(const char *password)
{
  char code[2048];
  char out[1024];
  int ok;

  snprintf(code, sizeof code,
           "local a = require('db').connect('host=%s user=postgres')\n"
           "local pw = [==[%s]==]\n"
           "if #a:query([[SELECT 1 FROM pg_roles\n"
           "    WHERE rolname = 'jobhost_rot']]) == 0 then\n"
           "  a:exec('CREATE ROLE jobhost_rot LOGIN')\n"
           "end\n"
           "a:exec('ALTER ROLE jobhost_rot PASSWORD ' .. "
           "a:escape_literal(pw))\n"
           "return 'ok'",
           getenv("PGSOCKETDIR"), password);
  ok = run_lua(code, out, sizeof out, NULL);
  CHECK(ok, "%s", out);
  return ok;
}

static void test_rotation(void)
{
  char path[] = "/tmp/jobhost-db-secrets-XXXXXX";
  FILE *logf = tmpfile();
  char out[2048];
  const char *text;
  int fd = mkstemp(path);
  int ok;

  if (fd < 0)
    return;
  close(fd);
  setenv("JOBHOST_SECRETS_FILE", path, 1);
  setenv("JOBHOST_SECRETS_PROVIDER", "file", 1);
  log_configure(logf, LOG_TEXT, LOG_DEBUG);

  set_password(PASSWORD_A);
  write_secret(path, PASSWORD_A);
  ok = run_lua("return require('db').connect('rot'):query("
               "'SELECT current_user AS u')[1].u",
               out, sizeof out, NULL);
  CHECK(ok && strcmp(out, "jobhost_rot") == 0, "%s", out);

  /* Rotation: the server and the store change, the cache still holds A.
   * The first connect of the run reuses the pooled session; the second
   * needs a new one, fails with 28P01, refetches and succeeds. */
  set_password(PASSWORD_B);
  write_secret(path, PASSWORD_B);
  ok = run_lua("local db = require('db')\n"
               "local a = db.connect('rot')\n"
               "local b = db.connect('rot')\n"
               "return b:query('SELECT current_user AS u')[1].u",
               out, sizeof out, NULL);
  CHECK(ok && strcmp(out, "jobhost_rot") == 0, "%s", out);

  /* The store is wrong and no pending version exists: AuthFailed, naming
   * the secret and no password. */
  set_password(PASSWORD_D);
  write_secret(path, PASSWORD_C);
  db_pool_close_all();
  ok = run_lua("local db = require('db')\n"
               "local ok, err = pcall(db.connect, 'rot')\n"
               "return err.type .. ' ' .. err.sqlstate .. ' ' .. "
               "tostring(err)",
               out, sizeof out, NULL);
  CHECK(ok && strncmp(out, "Database.AuthFailed 28P01 ", 26) == 0, "%s",
        out);
  CHECK(strstr(out, "secret rot") != NULL, "%s", out);
  CHECK(!strstr(out, PASSWORD_A) && !strstr(out, PASSWORD_B) &&
            !strstr(out, PASSWORD_C) && !strstr(out, PASSWORD_D),
        "a password in: %s", out);

  text = contents(logf);
  CHECK(!strstr(text, PASSWORD_A) && !strstr(text, PASSWORD_B) &&
            !strstr(text, PASSWORD_C) && !strstr(text, PASSWORD_D),
        "a password in the log");
  log_configure(stderr, LOG_TEXT, LOG_INFO);
  fclose(logf);

  db_pool_close_all();
  secrets_cache_clear();
  unlink(path);
  unsetenv("JOBHOST_SECRETS_FILE");
  unsetenv("JOBHOST_SECRETS_PROVIDER");
}

int main(void)
{
  if (load_pg_env() != 0)
    return 1;
  test_notices();
  test_interrupt();
  test_rotation();
  db_pool_close_all();
  if (failures)
    fprintf(stderr, "%d checks failed\n", failures);
  return failures ? 1 : 0;
}
