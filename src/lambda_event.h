/* lambda_event.h: what an invocation's event asks for. Checks that the
 * event is a JSON object of the expected shape and picks the job to run:
 * the event's "job", else the function's handler setting, else the name
 * of the EventBridge rule in resources[1]. */
#ifndef JOBHOST_LAMBDA_EVENT_H
#define JOBHOST_LAMBDA_EVENT_H

#include <stddef.h>

/* The outcome of routing. When error_type is NULL, job names a job that
 * is in the known list and via says where the name came from; otherwise
 * error_type is "Event.Invalid" or "Job.NotFound" and message says why
 * (naming the jobs known for Job.NotFound). */
typedef struct {
  char job[160];
  const char *via;        /* "event", "handler" or "rule" */
  const char *error_type; /* NULL when routed */
  char message[2048];
} lambda_route;

/* Routes the event body (len bytes, need not be NUL-terminated) among
 * the known jobs (a NULL-terminated sorted list, as job_list gives).
 * handler is the _HANDLER setting or NULL; it counts only when it names a
 * known job, since deploy tools fill the handler with placeholders such
 * as "bootstrap". An empty body is taken as the empty object {}. Returns
 * 0 when routed, -1 with out->error_type set. Never raises. */
int lambda_route_event(const char *body, size_t len, const char *handler,
                       char *const *known, lambda_route *out);

/* Whether name is in the NULL-terminated list known. */
int lambda_job_known(char *const *known, const char *name);


#endif
