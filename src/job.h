/* job.h: the job contract. A job is jobs/NAME.lua returning a spec table
 * (description, schedule, database, timeout, memory, lock, params, run).
 * job_run loads it into a fresh host state, validates the spec, merges
 * params, builds ctx, calls run(ctx, params) and encodes the result; the
 * CLI, the Lambda loop and the REPL all run jobs through it. */
#ifndef JOBHOST_JOB_H
#define JOBHOST_JOB_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Default and ceiling for a spec's timeout, in seconds; default heap
 * limit in MiB (JOBHOST_MEMORY_MB overrides the default). */
#define JOB_DEFAULT_TIMEOUT_S 300
#define JOB_DEFAULT_MEMORY_MB 256
/* The largest timeout (s) and heap limit (MiB) a spec may ask for: a day
 * for local runs (Lambda's own ceiling is 900 s, which check warns of),
 * and 64 GiB. */
#define JOB_MAX_TIMEOUT_S 86400
#define JOB_MAX_MEMORY_MB 65536
/* The time a job file's top level has to return its spec (ms), within
 * the run's own deadline: building a table takes microseconds, and
 * Lambda gives its whole init, every job file loaded, 10 s. */
#define JOB_LOAD_MS 2000

/* The error of a run the watchdog (watchdog.h) ended, as Job.Timeout;
 * the reason alone also serves a job's top-level code at load. */
#define JOB_STUCK_REASON                                                    \
  "did not stop at its deadline: a call did not return (a C function "    \
  "such as a long pattern match, a read that never ends, or a database "  \
  "server that stopped answering even the cancel), so the process was "   \
  "ended"
#define JOB_STUCK_MESSAGE "the run " JOB_STUCK_REASON

/* What to run. Everything but name may be NULL or 0. */
typedef struct {
  const char *jobs_dir;       /* default: job_default_dir() */
  const char *name;           /* the job: [A-Za-z0-9_.-]+ */
  const char *event_json;     /* the event (ctx.event); its "params"
                                 override the spec's, its "time" is
                                 ctx.scheduled_time */
  const char *params_json;    /* a JSON object of param overrides */
  const char *const *param_kv; /* "k=v" overrides from the CLI, NULL-ended */
  const char *request_id;
  const char *scheduled_time; /* the event's time */
  const char *db_target;      /* overrides the spec's database */
  int64_t deadline_ms;        /* epoch ms; 0: the spec's timeout alone */
  size_t result_limit;        /* bytes a result may have (the redacted
                                 JSON); 0: no limit. Over it the run
                                 fails with Job.ResultTooLarge */
  int dry_run;
  int read_only;
} job_request;

/* How a run ended. On success result holds the JSON result; on failure
 * error_type ("Job.Error", "Job.Timeout", "Database.Error", ...),
 * error_message and stack_trace (lines joined by '\n') are set. */
typedef struct {
  int ok;
  char *result;
  size_t result_len;
  char *error_type;
  char *error_message;
  char *stack_trace;
  int64_t duration_us;
  size_t mem_peak;
} job_outcome;

/* Runs one job to the end. Never raises; returns 0 when the job succeeded,
 * -1 when it failed (see out). Free out with job_outcome_free. */
int job_run(const job_request *req, job_outcome *out);
void job_outcome_free(job_outcome *out);

/* The failure as the Lambda error body: {"errorType", "errorMessage",
 * "stackTrace": [lines]}, always valid JSON: the message and the trace
 * are made valid UTF-8 ('?' for a bad byte) and cut at 16 KiB, and the
 * type is job_error_type's. malloc'd; NULL only when memory ran out. */
char *job_error_json(const job_outcome *out);

/* The outcome's error type when it is well formed (Category.Reason in
 * letters, digits, '.', '_', '-'; at most 64 bytes), else "Job.Error":
 * safe as an HTTP header value. */
const char *job_error_type(const job_outcome *out);

/* The jobs folder: JOBHOST_JOBS, else $LAMBDA_TASK_ROOT/jobs, else
 * "jobs". */
const char *job_default_dir(void);

/* Whether name is a well-formed job name. */
int job_name_valid(const char *name);

/* Loads and validates one job without running it: the file compiles,
 * returns a valid spec and its schedule is accepted. Returns 0, or -1
 * with err set to a message naming the file, line or key. */
int job_check(const char *jobs_dir, const char *name, char *err,
              size_t errlen);

/* Opens a fresh host state, loads jobs/NAME.lua from dir (NULL: the
 * default folder) and validates its spec, as job_check does. Returns the
 * state with the spec table on top of its stack, or NULL with err set.
 * Close it with job_spec_close. */
lua_State *job_spec_open(const char *dir, const char *name, char *err,
                         size_t errlen);
void job_spec_close(lua_State *L);

/* Reads the schedule a job in dir (NULL: job_default_dir) declares into
 * out ("" when it has none). Returns 0, or -1 with err set. */
int job_schedule_of(const char *dir, const char *name, char *out,
                    size_t outlen, char *err, size_t errlen);

/* Lists the job names in dir, sorted: a NULL-terminated malloc'd array
 * of malloc'd strings (free with job_list_free), or NULL on error. */
char **job_list(const char *dir);
/* The same for the *.lua files in dir that are no job because their name
 * is not a job name (job_name_valid): "with space" for "with space.lua". */
char **job_list_misnamed(const char *dir);
void job_list_free(char **names);

/* Builds the ctx table a job or the REPL sees and pushes it. The state
 * must come from host_open; database is the default target (may be
 * NULL); event_idx is a stack index of the event table or 0. */
void job_push_ctx(lua_State *L, const char *database, int event_idx,
                  const char *request_id, const char *scheduled_time);

/* Writes "a, b, c" (or "none") into buf, cut with "..." when it does not
 * fit. */
void job_join_names(char *const *names, char *buf, size_t size);

#endif
