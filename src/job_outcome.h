/* job_outcome.h: turning the end of a run into a job_outcome (job.h),
 * for job.c. Internal to the job contract. */
#ifndef JOBHOST_JOB_OUTCOME_H
#define JOBHOST_JOB_OUTCOME_H

#include <lua.h>

#include "job.h"

/* luaL_tolstring of the value at idx under a protected call: a
 * __tostring that raises, yields or returns no string cannot bring the
 * process down. Pushes one string and returns it. */
const char *job_tostring(lua_State *L, int idx);

/* The text of an error value at idx, as a run's failure shows it: an
 * error table's __tostring, else its "message", else the table as JSON;
 * any other value through job_tostring. Pushes one string and returns
 * it. */
const char *job_error_text(lua_State *L, int idx);

/* Fills out from the error value on top of the stack (left there): its
 * type ("Job.Error" unless an error object says otherwise), message and
 * stack trace; a stopped run (host_run.stop) gives Job.Timeout,
 * Runtime.OutOfMemory or Job.Interrupted whatever the value says. */
void job_outcome_from_error(lua_State *L, job_outcome *out);

/* When the run of L was stopped (host_run.stop), makes out that stop's
 * failure: Job.Timeout, Runtime.OutOfMemory or Job.Interrupted, whatever
 * error it held. */
void job_outcome_stopped(lua_State *L, job_outcome *out);

/* Marks out failed with type and message (copied). */
void job_outcome_fail(job_outcome *out, const char *type, const char *msg);

/* Replaces registered secret values in the result, the message and the
 * stack trace with "[redacted]" (redact.h). */
void job_outcome_scrub(job_outcome *out);

#endif
