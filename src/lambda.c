/* lambda.c: `jobhost lambda`, the AWS Lambda custom runtime. At init it
 * loads and checks every job, reporting init/error and exiting when one
 * cannot be loaded; then it loops: take the next invocation from the
 * Runtime API, route its event to a job, run the job under the
 * invocation's deadline, post the result or exactly one error.
 *
 * What lives across invocations: the Runtime API connection (lambda_api),
 * the database connections (the db pool, reset by job_run after each run)
 * and fetched secrets. Each run still gets a fresh Lua state.
 *
 * The deadline: a job runs until Lambda-Runtime-Deadline-Ms less a margin
 * (JOBHOST_DEADLINE_MARGIN_MS, 500 ms by default), so that when time runs
 * out the host has that margin to cancel the statement, roll back and post
 * Job.Timeout before Lambda kills the process. A run stuck in a call into
 * C past its deadline is the watchdog's (watchdog.h): half the margin
 * later it posts Job.Timeout on a connection of its own and ends the
 * process. */
#include "lambda.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "env.h"
#include "host.h"
#include "job.h"
#include "lambda_api.h"
#include "lambda_event.h"
#if JOBHOST_LAZY
#include "lazy.h"
#endif
#include "log.h"
#include "watchdog.h"

/* The largest response the Runtime API takes, in bytes. */
#define LAMBDA_RESPONSE_LIMIT ((size_t)6291556)
#define LAMBDA_DEFAULT_MARGIN_MS 500
/* Under twice this margin the watchdog is off: there would be no time to
 * post before Lambda's own timeout. */
#define LAMBDA_MIN_STUCK_GRACE_MS 20

typedef struct {
  lambda_api *api;
  const char *jobs_dir;
  char **known;        /* the jobs found at init, sorted */
  const char *handler; /* _HANDLER, or NULL */
  const char *api_host;
  int64_t margin_ms;
  /* The invocation being run, or at init the job being checked, for the
   * watchdog; set before a deadline arms it. */
  const char *volatile request_id;
  const char *volatile loading;
} runtime;

/* Raised by SIGTERM (Lambda sends it at shutdown when extensions are
 * registered, `docker stop` always): abandon the wait for `next`, stop a
 * running job (through host_interrupt_requested), then exit. */
static volatile sig_atomic_t stop_requested;

static void on_terminate(int sig)
{
  (void)sig;
  stop_requested = 1;
  host_interrupt();
}

static void install_signals(void)
{
  host_catch_signal(SIGTERM, on_terminate);
  host_catch_signal(SIGINT, on_terminate);
  /* A post to a closed connection must not kill the process. */
  host_catch_signal(SIGPIPE, SIG_IGN);
}

/* JOBHOST_DEADLINE_MARGIN_MS when it is a number from 0 to 60000, else
 * the default. */
static int64_t deadline_margin(void)
{
  return env_long("JOBHOST_DEADLINE_MARGIN_MS", 0, 60000,
                  LAMBDA_DEFAULT_MARGIN_MS);
}

/* Posts the failure in out through api: to invocation/ID/error, or
 * init/error when request_id is NULL. job_error_json makes the body safe
 * to post. */
static lambda_api_status post_failure(lambda_api *api, const char *request_id,
                                      const job_outcome *out)
{
  static const char no_memory[] =
      "{\"errorType\":\"Runtime.OutOfMemory\",\"errorMessage\":"
      "\"no memory to encode the error\",\"stackTrace\":[]}";
  char *body = job_error_json(out);
  lambda_api_status status;

  if (body)
    status = lambda_api_fail(api, request_id, job_error_type(out), body,
                             strlen(body));
  else
    status = lambda_api_fail(api, request_id, "Runtime.OutOfMemory",
                             no_memory, sizeof no_memory - 1);
  free(body);
  return status;
}

/* The watchdog's handler: the invocation's run is stuck past its
 * deadline, in a call into C that the host cannot stop. Posts Job.Timeout
 * for it on a connection of its own (the loop's client belongs to the
 * stuck thread), logs it and ends the process before Lambda's own
 * timeout would; Lambda starts a fresh runtime for the next invocation,
 * and the database rolls back what the run had open when its connection
 * drops. */
static void invocation_stuck(void *arg)
{
  runtime *rt = arg;
  const char *request_id = rt->request_id, *loading = rt->loading;
  lambda_api *api = lambda_api_new(rt->api_host, NULL);
  job_outcome out = {0};
  char msg[512];

  out.error_type = "Job.Timeout";
  out.error_message = JOB_STUCK_MESSAGE;
  if (!request_id && loading) {
    /* At init: the job's own top-level code is what is stuck. */
    snprintf(msg, sizeof msg,
             "%s/%s.lua cannot be loaded: its top-level code %s",
             rt->jobs_dir, loading, JOB_STUCK_REASON);
    out.error_type = "Job.Invalid";
    out.error_message = msg;
  }
  if (api && (request_id || loading))
    post_failure(api, request_id, &out);
  log_emit_last(LOG_ERROR, "invocation failed",
                (log_field[]){LOG_S("outcome", "failure"),
                              LOG_S("error_type", out.error_type),
                              LOG_S("error", out.error_message)},
                3);
  log_emit_last(LOG_FATAL,
                "runtime exiting: a run is stuck past its deadline", NULL,
                0);
  _exit(1);
}

#if JOBHOST_LAZY
/* A library loaded at first call (src/lazy.c) could not be loaded: the
 * call that needed it has no result to give, and the process ends. The
 * invocation under way is failed with Runtime.LibraryNotLoaded first, on
 * a connection of its own, so that Lambda reports what and where rather
 * than an exit alone. */
static void library_not_loaded(char *message, void *arg)
{
  runtime *rt = arg;
  const char *request_id = rt->request_id;
  lambda_api *api = lambda_api_new(rt->api_host, NULL);
  job_outcome out = {0};

  out.error_type = "Runtime.LibraryNotLoaded";
  out.error_message = message;
  if (api && request_id)
    post_failure(api, request_id, &out);
}
#endif

/* ---- init -------------------------------------------------------------- */

/* Appends "; " and text to msg (a buffer of size bytes), cutting with
 * "..." when full. */
static void append_message(char *msg, size_t size, const char *text)
{
  size_t n = strlen(msg);

  if (n + 4 >= size)
    return;
  snprintf(msg + n, size - n, "%s%s", n ? "; " : "", text);
  if (strlen(msg) == size - 1)
    memcpy(msg + size - 4, "...", 4);
}

/* Lists and checks every job. An invalid job fails the whole init: a
 * function that starts with a broken job would fail each of that job's
 * scheduled runs later, far from the deploy that broke it; failing at
 * init makes the deploy itself fail, with the file named. Returns 0, or
 * -1 with the failure in out (malloc'd strings). */
static int load_jobs(runtime *rt, job_outcome *out)
{
  char msg[4096] = "", err[2048];
  char **p;
  int bad = 0, total = 0;

  memset(out, 0, sizeof *out);
  rt->known = job_list(rt->jobs_dir);
  if (!rt->known) {
    snprintf(msg, sizeof msg, "cannot read the jobs folder %s: %s",
             rt->jobs_dir, strerror(errno));
    out->error_type = strdup("Job.NotFound");
    goto fail;
  }
  if (!rt->known[0]) {
    snprintf(msg, sizeof msg, "no jobs in %s (each job is a file NAME.lua)",
             rt->jobs_dir);
    out->error_type = strdup("Job.NotFound");
    goto fail;
  }

  for (p = rt->known; *p; p++) {
    int rc;

    total++;
    rt->loading = *p;
    rc = job_check(rt->jobs_dir, *p, err, sizeof err);
    rt->loading = NULL;
    if (rc == 0)
      continue;
    bad++;
    log_emit(LOG_ERROR, "job cannot be loaded",
             (log_field[]){LOG_S("job", *p), LOG_S("error", err)}, 2);
    append_message(msg, sizeof msg, err);
  }
  if (bad) {
    char full[sizeof msg + 64];
    snprintf(full, sizeof full, "%d of %d jobs cannot be loaded: %s", bad,
             total, msg);
    out->error_type = strdup("Job.Invalid");
    out->error_message = strdup(full);
    return -1;
  }
  return 0;

fail:
  out->error_message = strdup(msg);
  return -1;
}

/* Logs that init is done: the jobs known, how long init took, and how
 * the handler setting is taken. A handler that names no job is common
 * (deploy tools require some value), so it is told, not warned about. */
static void log_ready(const runtime *rt, int64_t started_us)
{
  char names[1024];

  if (rt->handler && *rt->handler && !lambda_job_known(rt->known,
                                                       rt->handler))
    log_emit(LOG_INFO, "handler names no job: routing by the event",
             (log_field[]){LOG_S("handler", rt->handler)}, 1);
  job_join_names(rt->known, names, sizeof names);
  log_emit(LOG_INFO, "runtime ready",
           (log_field[]){LOG_S("jobs", names),
                         LOG_I("init_us", clock_mono_us() - started_us)},
           2);
}

/* ---- one invocation ---------------------------------------------------- */

/* The _X_AMZN_TRACE_ID entry of the environment, in a buffer of our own.
 * setenv would keep every value ever set (glibc cannot know when an old
 * one is no longer referenced), which leaks one trace id an invocation
 * for the life of a warm process; putenv of this buffer reuses it. */
static char *trace_entry;
static size_t trace_cap;

/* Sets _X_AMZN_TRACE_ID to id, or unsets it when id is NULL. */
static void set_trace_id(const char *id)
{
  static const char name[] = "_X_AMZN_TRACE_ID=";
  size_t need;

  if (!id) {
    unsetenv("_X_AMZN_TRACE_ID");
    return;
  }
  need = sizeof name + strlen(id);
  if (need > trace_cap) {
    size_t cap = need < 256 ? 256 : need;
    char *grown = malloc(cap);

    if (!grown) {
      unsetenv("_X_AMZN_TRACE_ID");
      return;
    }
    snprintf(grown, cap, "%s%s", name, id);
    /* The environment lets go of the old buffer before it is freed. */
    putenv(grown);
    free(trace_entry);
    trace_entry = grown;
    trace_cap = cap;
    return;
  }
  snprintf(trace_entry, trace_cap, "%s%s", name, id);
  putenv(trace_entry);
}

/* Runs the job the event routes to and posts the outcome: exactly one
 * response or one error per invocation. */
static lambda_api_status handle(runtime *rt, const lambda_invocation *inv)
{
  lambda_route route;
  job_request req = {0};
  job_outcome out;
  lambda_api_status status;

  log_set_request_id(inv->request_id);
  set_trace_id(inv->trace_id);

  if (lambda_route_event(inv->body, inv->body_len, rt->handler, rt->known,
                         &route) != 0) {
    /* Nothing was run: the outcome is ours, its strings on the stack. */
    memset(&out, 0, sizeof out);
    out.error_type = (char *)route.error_type;
    out.error_message = route.message;
    log_emit(LOG_ERROR, "invocation failed",
             (log_field[]){LOG_S("outcome", "failure"),
                           LOG_S("error_type", route.error_type),
                           LOG_S("error", route.message)},
             3);
    status = post_failure(rt->api, inv->request_id, &out);
    goto done;
  }
  log_emit(LOG_DEBUG, "invocation routed",
           (log_field[]){LOG_S("job", route.job), LOG_S("via", route.via)},
           2);

  req.jobs_dir = rt->jobs_dir;
  req.name = route.job;
  req.event_json = inv->body_len ? inv->body : "{}";
  req.request_id = inv->request_id;
  if (inv->deadline_ms)
    req.deadline_ms = inv->deadline_ms - rt->margin_ms;
  /* Sending more would only earn a 413 and leave the invocation without a
   * useful error: the run fails saying so instead. */
  req.result_limit = LAMBDA_RESPONSE_LIMIT;

  rt->request_id = inv->request_id;
  if (job_run(&req, &out) != 0) {
    status = post_failure(rt->api, inv->request_id, &out);
  } else {
    status = lambda_api_respond(rt->api, inv->request_id, out.result,
                                out.result_len);
  }
  job_outcome_free(&out);
  rt->request_id = NULL;

done:
  log_set_request_id(NULL);
  return status;
}

/* ---- the command ------------------------------------------------------- */

int lambda_main(int argc, char **argv)
{
  runtime rt = {0};
  lambda_invocation inv;
  job_outcome failure = {0};
  const char *api_host = getenv("AWS_LAMBDA_RUNTIME_API");
  int64_t started = clock_mono_us();
  int i, rc = 1;

  log_configure(stdout, LOG_TEXT, LOG_INFO);
  log_configure_from_env();

  rt.jobs_dir = job_default_dir();
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
      rt.jobs_dir = argv[++i];
    } else {
      log_emit(strcmp(argv[i], "--help") ? LOG_ERROR : LOG_INFO,
               "usage: jobhost lambda [--jobs DIR]; serves the Lambda "
               "Runtime API named by AWS_LAMBDA_RUNTIME_API",
               NULL, 0);
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  if (!api_host || !*api_host) {
    log_emit(LOG_FATAL,
             "AWS_LAMBDA_RUNTIME_API is not set: this command serves a "
             "Lambda function; to run a job here, use jobhost run JOB",
             NULL, 0);
    return 2;
  }

  install_signals();
  rt.api_host = api_host;
  rt.margin_ms = deadline_margin();
  /* Half the margin for the host's own stop; the other half to post. */
  if (rt.margin_ms >= 2 * LAMBDA_MIN_STUCK_GRACE_MS)
    watchdog_set_handler(invocation_stuck, &rt, rt.margin_ms / 2);
#if JOBHOST_LAZY
  lazy_on_failure(library_not_loaded, &rt);
#endif
  rt.handler = getenv("_HANDLER");
  rt.api = lambda_api_new(api_host, &stop_requested);
  if (!rt.api) {
    log_emit(LOG_FATAL, "no memory for the runtime api client", NULL, 0);
    return 1;
  }

  if (load_jobs(&rt, &failure) != 0) {
    log_emit(LOG_FATAL, "init failed",
             (log_field[]){LOG_S("error_type", failure.error_type),
                           LOG_S("error", failure.error_message)},
             2);
    post_failure(rt.api, NULL, &failure);
    job_outcome_free(&failure);
    goto out;
  }
  log_ready(&rt, started);

  for (;;) {
    lambda_api_status status;

    if (stop_requested) {
      rc = 0;
      break;
    }
    status = lambda_api_next(rt.api, &inv);
    if (status == LAMBDA_API_FATAL) {
      rc = stop_requested ? 0 : 1;
      break;
    }
    if (status == LAMBDA_API_REJECTED)
      continue;

    status = handle(&rt, &inv);
    lambda_invocation_free(&inv);
    if (status == LAMBDA_API_FATAL)
      break;
  }
  if (stop_requested)
    log_emit(LOG_INFO, "runtime stopping on a signal", NULL, 0);

out:
  set_trace_id(NULL);
  free(trace_entry);
  db_pool_close_all();
  job_list_free(rt.known);
  lambda_api_free(rt.api);
  return rc;
}
