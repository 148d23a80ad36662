/* cli.c: `jobhost run`, `jobhost check` and `jobhost version`: the local
 * face of the job contract. run prints the result (or the error) as JSON
 * on stdout and the log on stderr. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <lua.h>

#include "clock.h"
#include "db.h"
#include "env.h"
#include "host.h"
#include "job.h"
#if JOBHOST_LAZY
#include "lazy.h"
#endif
#include "log.h"
#include "schedule.h"
#include "watchdog.h"

#define MAX_PARAMS 64
/* The longest a Lambda function may run. */
#define LAMBDA_MAX_TIMEOUT_S 900

static void run_usage(FILE *out)
{
  fputs("usage: jobhost run JOB [options]\n"
        "\n"
        "Runs jobs/JOB.lua once, here, and prints its result as JSON on\n"
        "stdout; the log goes to stderr. Exit 0 on success, 1 when the job\n"
        "failed, 2 on bad usage.\n"
        "\n"
        "options:\n"
        "  --param KEY=VALUE  override a param (repeatable); the value is\n"
        "                     converted to the type of the param's default\n"
        "  --event JSON|@FILE the event the job sees as ctx.event; its\n"
        "                     \"params\" override the job's params\n"
        "  --db CONNINFO      connect ctx.db here instead of the job's\n"
        "                     database (a conninfo, URI or secret id)\n"
        "  --dry-run          roll back every change at the end\n"
        "  --jobs DIR         where jobs live (default: $JOBHOST_JOBS or\n"
        "                     ./jobs)\n"
        "  --log-format text|json, --log-level trace|debug|info|warn|error\n"
        "  -- JOB             a job whose name starts with '-'\n"
        "\n"
        "SIGINT or SIGTERM stops the run as its deadline does\n"
        "(Job.Interrupted); a second one ends the process at once.\n",
        out);
}

char *cli_read_file(const char *path, unsigned long *len)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL, *grown;
  size_t n = 0, cap = 0, got;

  if (!f)
    return NULL;
  for (;;) {
    if (cap - n < 4096) {
      cap = cap ? cap * 2 : 8192;
      grown = realloc(buf, cap);
      if (!grown) {
        free(buf);
        buf = NULL;
        goto out;
      }
      buf = grown;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    free(buf);
    buf = NULL;
    goto out;
  }
  buf[n] = '\0';
  if (len)
    *len = n;

out:
  fclose(f);
  return buf;
}

/* Handles the options every command shares; returns 1 when argv[*i] was
 * one (consuming its value), 0 when not, -1 on a bad value. */
static int common_option(int argc, char **argv, int *i)
{
  const char *opt = argv[*i];
  int level;

  if (strcmp(opt, "--log-format") == 0 && *i + 1 < argc) {
    const char *v = argv[++*i];
    if (strcmp(v, "json") && strcmp(v, "text"))
      return -1;
    log_configure(stderr, strcmp(v, "json") ? LOG_TEXT : LOG_JSON,
                  log_enabled(LOG_DEBUG)  ? LOG_DEBUG
                  : log_enabled(LOG_INFO) ? LOG_INFO
                                          : LOG_WARN);
    return 1;
  }
  if (strcmp(opt, "--log-level") == 0 && *i + 1 < argc) {
    level = log_level_parse(argv[++*i]);
    if (level < 0)
      return -1;
    setenv("JOBHOST_LOG_LEVEL", argv[*i], 1);
    log_configure_from_env();
    return 1;
  }
  return 0;
}

/* SIGINT or SIGTERM during `jobhost run`: the first stops the run as the
 * deadline does (a statement is cancelled, the transaction rolled back,
 * the run fails with Job.Interrupted, so that a lock the run held is
 * released at once); a second ends the process at once, for a run stuck
 * where no stop reaches it. */
static volatile sig_atomic_t run_signals;

static void on_run_signal(int sig)
{
  if (run_signals++ == 0) {
    host_interrupt();
    return;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/* How long after its deadline a run's own stop (a statement cancelled, a
 * transaction rolled back) may take before the watchdog ends it. */
#define RUN_STUCK_GRACE_MS 1000

/* What the watchdog writes for `jobhost run`, built before it may be
 * needed: the failure as a failed run prints it, and its log record. */
static char *stuck_body, *stuck_record;
static size_t stuck_body_len, stuck_record_len, stuck_stamp_at;

/* The watchdog's preparation (outside any signal, at the run's first
 * arm, when the log knows the job). */
static void run_stuck_prepare(void *unused)
{
  job_outcome out = {0};
  char *body;

  (void)unused;
  out.error_type = "Job.Timeout";
  out.error_message = JOB_STUCK_MESSAGE;
  body = job_error_json(&out);
  if (body) {
    stuck_body_len = strlen(body);
    stuck_body = realloc(body, stuck_body_len + 2);
    if (stuck_body)
      memcpy(stuck_body + stuck_body_len++, "\n", 2);
    else
      free(body);
  }
  stuck_record = log_format_record(
      LOG_ERROR, "run failed",
      (log_field[]){LOG_S("outcome", "failure"),
                    LOG_S("error_type", out.error_type),
                    LOG_S("error", out.error_message)},
      3, &stuck_record_len, &stuck_stamp_at);
}

/* Writes all of buf to fd, made non-blocking (the stuck thread may sit in
 * a write to a full pipe), giving up at give_up (CLOCK_MONOTONIC µs). */
static void write_until(int fd, const char *buf, size_t len, int64_t give_up)
{
  size_t done = 0;

  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (done < len && clock_mono_us() < give_up) {
    ssize_t n = write(fd, buf + done, len - done);

    if (n > 0) {
      done += (size_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLOUT, 0};

      poll(&p, 1, 100);
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
}

/* The watchdog's handler for `jobhost run`, in the timer's signal on the
 * stuck thread: the run is stuck past its deadline. Prints the failure
 * and logs it as a failed run does, with write(2) rather than stdio (the
 * stuck thread may hold stdout's lock), each given up after a second,
 * and ends the process. Async-signal-safe. */
static void run_stuck(void *unused)
{
  int64_t give_up = clock_mono_us() + 1000000;

  (void)unused;
  if (stuck_body)
    write_until(STDOUT_FILENO, stuck_body, stuck_body_len, give_up);
  if (stuck_record) {
    if (stuck_stamp_at != (size_t)-1) {
      char stamp[CLOCK_ISO_LEN + 1];

      clock_format_iso(clock_now_ms(), stamp, sizeof stamp);
      memcpy(stuck_record + stuck_stamp_at, stamp, CLOCK_ISO_LEN);
    }
    write_until(log_fd(), stuck_record, stuck_record_len,
                clock_mono_us() + 1000000);
  }
  _exit(1);
}

#if JOBHOST_LAZY
/* A library loaded at first call (src/lazy.c) could not be loaded: the
 * run ends with the process (status 127), and prints its failure as a
 * failed run does. */
static void run_library_not_loaded(char *message, void *unused)
{
  job_outcome out = {0};
  char *body;

  (void)unused;
  out.error_type = "Runtime.LibraryNotLoaded";
  out.error_message = message;
  body = job_error_json(&out);
  if (body) {
    fflush(stdout);
    write_until(STDOUT_FILENO, body, strlen(body),
                clock_mono_us() + 1000000);
    write_until(STDOUT_FILENO, "\n", 1, clock_mono_us() + 1000000);
  }
  free(body);
}
#endif

int cli_run(int argc, char **argv)
{
  job_request req = {0};
  job_outcome out;
  const char *params[MAX_PARAMS + 1];
  char *event = NULL;
  int nparams = 0, i, rc = 2, fmt_given = 0, lvl_given = 0;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    int common = common_option(argc, argv, &i);

    if (common > 0) {
      fmt_given |= strcmp(a, "--log-format") == 0;
      lvl_given |= strcmp(a, "--log-level") == 0;
    }
    if (common < 0) {
      fprintf(stderr, "jobhost run: bad value \"%s\" for %s: %s\n",
              argv[i], a,
              strcmp(a, "--log-format") == 0
                  ? "text or json"
                  : "trace, debug, info, warn, error or fatal");
      goto out;
    }
    if (common)
      continue;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      run_usage(stdout);
      rc = 0;
      goto out;
    } else if (strcmp(a, "--dry-run") == 0) {
      req.dry_run = 1;
    } else if (strcmp(a, "--param") == 0 && i + 1 < argc) {
      if (nparams == MAX_PARAMS) {
        fprintf(stderr, "jobhost run: at most %d --param\n", MAX_PARAMS);
        goto out;
      }
      if (!strchr(argv[i + 1], '=') || argv[i + 1][0] == '=') {
        fprintf(stderr,
                "jobhost run: --param takes KEY=VALUE, not \"%s\"\n",
                argv[i + 1]);
        goto out;
      }
      params[nparams++] = argv[++i];
    } else if (strcmp(a, "--event") == 0 && i + 1 < argc) {
      const char *v = argv[++i];
      free(event);
      if (v[0] == '@') {
        event = cli_read_file(v + 1, NULL);
        if (!event) {
          fprintf(stderr, "jobhost run: cannot read event file %s: %s\n",
                  v + 1, strerror(errno));
          goto out;
        }
      } else {
        event = strdup(v);
      }
    } else if (strcmp(a, "--db") == 0 && i + 1 < argc) {
      req.db_target = argv[++i];
    } else if (strcmp(a, "--jobs") == 0 && i + 1 < argc) {
      req.jobs_dir = argv[++i];
    } else if (strcmp(a, "--") == 0 && i + 1 < argc && !req.name) {
      /* The job's name follows, even one that starts with '-'. */
      req.name = argv[++i];
    } else if (i + 1 == argc &&
               (strcmp(a, "--param") == 0 || strcmp(a, "--event") == 0 ||
                strcmp(a, "--db") == 0 || strcmp(a, "--jobs") == 0)) {
      fprintf(stderr, "jobhost run: %s needs a value (%s)\n", a,
              strcmp(a, "--param") == 0   ? "KEY=VALUE"
              : strcmp(a, "--event") == 0 ? "JSON or @FILE"
              : strcmp(a, "--db") == 0    ? "a secret id or conninfo"
                                          : "a folder");
      goto out;
    } else if (a[0] == '-') {
      fprintf(stderr, "jobhost run: unknown option %s\n", a);
      run_usage(stderr);
      goto out;
    } else if (!req.name) {
      req.name = a;
    } else {
      fprintf(stderr, "jobhost run: one job at a time (got %s and %s)\n",
              req.name, a);
      goto out;
    }
  }
  /* The environment's log settings an option overrode are not warned of;
   * the other warnings go out in the format now in force. */
  if (fmt_given) {
    env_drop("AWS_LAMBDA_LOG_FORMAT");
    env_drop("JOBHOST_LOG_FORMAT");
  }
  if (lvl_given) {
    env_drop("AWS_LAMBDA_LOG_LEVEL");
    env_drop("JOBHOST_LOG_LEVEL");
  }
  env_flush();
  if (!req.name) {
    run_usage(stderr);
    goto out;
  }
  params[nparams] = NULL;
  req.param_kv = params;
  req.event_json = event;

  /* One run and the process exits: no session reset for a next run. */
  db_pool_reuse(0);
  watchdog_set_signal_handler(run_stuck, run_stuck_prepare, NULL,
                              RUN_STUCK_GRACE_MS);
#if JOBHOST_LAZY
  lazy_on_failure(run_library_not_loaded, NULL);
#endif
  host_catch_signal(SIGINT, on_run_signal);
  host_catch_signal(SIGTERM, on_run_signal);
  if (job_run(&req, &out) == 0) {
    fwrite(out.result, 1, out.result_len, stdout);
    fputc('\n', stdout);
    rc = 0;
  } else {
    char *body = job_error_json(&out);
    if (body)
      printf("%s\n", body);
    free(body);
    /* A bad --event is the caller's mistake, not the job's. */
    rc = strcmp(job_error_type(&out), "Event.Invalid") == 0 ? 2 : 1;
  }
  fflush(stdout);
  job_outcome_free(&out);
  db_pool_close_all();

out:
  env_flush();
  free(event);
  return rc;
}

/* Warns of a schedule (in the spec on top of the stack) that EventBridge
 * accepts but that fires no more from now on: the rule would never run
 * the job. */
static void warn_if_never_fires(lua_State *L)
{
  schedule s;
  int64_t now = clock_now_ms() / 1000, fire;
  char err[SCHEDULE_ERR_MAX];

  if (lua_getfield(L, -1, "schedule") == LUA_TSTRING &&
      schedule_parse(lua_tostring(L, -1), &s, err, sizeof err) == 0 &&
      !schedule_next(&s, now, &fire))
    printf("  warning: schedule %s never fires from now on: %s\n",
           lua_tostring(L, -1), schedule_end_reason(&s, now));
  lua_pop(L, 1);
}

int cli_check(int argc, char **argv)
{
  const char *dir = NULL;
  char **all = NULL, **misnamed;
  char **names;
  char err[2048];
  int i, named = 0, failed = 0, checked = 0;
  lua_State *L;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      puts("usage: jobhost check [--jobs DIR] [JOB...]\n"
           "\n"
           "Compiles each job (every job in the jobs folder when none is\n"
           "named), validates its spec and its schedule, and reports each\n"
           "problem with the file and the reason. Exit 0 when all are\n"
           "valid, 1 otherwise.");
      return 0;
    }
    if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
      dir = argv[++i];
      argv[i - 1] = argv[i] = NULL;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "jobhost check: unknown option %s\n", argv[i]);
      return 2;
    } else {
      named++;
    }
  }
  if (!dir)
    dir = job_default_dir();
  if (named) {
    names = argv + 1;
  } else {
    all = job_list(dir);
    if (!all) {
      fprintf(stderr,
              "jobhost check: cannot read the jobs folder %s: %s (give "
              "--jobs DIR or set JOBHOST_JOBS)\n",
              dir, strerror(errno));
      return 1;
    }
    names = all;
    /* As the Lambda runtime's init refuses it: a deploy of it serves
     * nothing. */
    if (!all[0]) {
      fprintf(stderr, "jobhost check: no jobs in %s (each job is a file "
              "NAME.lua)\n", dir);
      failed++;
    }
    misnamed = job_list_misnamed(dir);
    for (i = 0; misnamed && misnamed[i]; i++)
      printf("skipped %s.lua\n  warning: not a job: a job's name is made "
             "of letters, digits, '_', '-' and '.' and does not start with "
             "'.'; no run, rule or runtime sees this file\n",
             misnamed[i]);
    job_list_free(misnamed);
  }
  for (i = 0; named ? i < argc - 1 : names[i] != NULL; i++) {
    if (!names[i])
      continue;
    checked++;
    L = job_spec_open(dir, names[i], err, sizeof err);
    if (L) {
      printf("ok      %s\n", names[i]);
      if (lua_getfield(L, -1, "timeout") == LUA_TNUMBER &&
          lua_tonumber(L, -1) > LAMBDA_MAX_TIMEOUT_S)
        printf("  warning: timeout %g s is over Lambda's %d s ceiling; on "
               "Lambda the function's timeout ends the run first\n",
               lua_tonumber(L, -1), LAMBDA_MAX_TIMEOUT_S);
      lua_pop(L, 1);
      warn_if_never_fires(L);
      job_spec_close(L);
    } else {
      printf("INVALID %s\n  %s\n", names[i], err);
      failed++;
    }
  }
  printf("%d job%s checked, %d invalid\n", checked, checked == 1 ? "" : "s",
         failed);
  job_list_free(all);
  return failed ? 1 : 0;
}

int cli_version(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  printf("jobhost %s (%s, libpq %d)\n", JOBHOST_VERSION, LUA_RELEASE,
         PQlibVersion());
  return 0;
}
