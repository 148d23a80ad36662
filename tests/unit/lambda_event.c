/* lambda_event.c: the routing of Lambda events to jobs, case by case: the
 * event's "job", the handler setting, the rule name in resources[1], and
 * each way an event can be invalid or name no known job. Also the list of
 * names in messages, cut when it does not fit. */
#include <stdio.h>
#include <string.h>

#include "job.h"
#include "lambda_event.h"

static int failures;

/* Routes body with handler among known and checks the outcome: want_job
 * for a routed event (with its via), else want_type with want_phrase in
 * the message. */
static void check(const char *body, const char *handler, const char *want_job,
                  const char *want_via, const char *want_type,
                  const char *want_phrase)
{
  static char *known[] = {"hello", "nightly_purge", "report", NULL};
  lambda_route r;
  int rc = lambda_route_event(body, strlen(body), handler, known, &r);

  if (want_job) {
    if (rc != 0 || strcmp(r.job, want_job) != 0 ||
        strcmp(r.via, want_via) != 0) {
      printf("FAIL %s: want %s via %s, got rc %d job \"%s\" %s %s\n", body,
             want_job, want_via, rc, r.job, r.error_type ? r.error_type : "",
             r.message);
      failures++;
    }
    return;
  }
  if (rc != -1 || !r.error_type || strcmp(r.error_type, want_type) != 0 ||
      !strstr(r.message, want_phrase)) {
    printf("FAIL %s: want %s with \"%s\", got rc %d %s: %s\n", body,
           want_type, want_phrase, rc, r.error_type ? r.error_type : "-",
           r.message);
    failures++;
  }
}

static void check_join(char **names, size_t size, const char *want)
{
  char buf[64];

  job_join_names(names, buf, size);
  if (strcmp(buf, want) != 0) {
    printf("FAIL join into %zu: want \"%s\", got \"%s\"\n", size, want, buf);
    failures++;
  }
}

int main(void)
{
  static char *three[] = {"alpha", "beta", "gamma", NULL};
  static char *none[] = {NULL};
  const char *rule = "{\"resources\": [\"arn:aws:events:eu-west-1:"
                     "123456789012:rule/nightly_purge\"]}";

  /* Routed. */
  check("{\"job\": \"hello\"}", NULL, "hello", "event", NULL, NULL);
  check("{\"job\": \"hello\", \"params\": {}}", "report", "hello", "event",
        NULL, NULL);
  check(rule, NULL, "nightly_purge", "rule", NULL, NULL);
  check(rule, "report", "report", "handler", NULL, NULL);
  check(rule, "bootstrap", "nightly_purge", "rule", NULL, NULL);
  check("{\"resources\": [\"arn:aws-cn:events:cn-north-1:1:rule/bus/"
        "report\"]}",
        NULL, "report", "rule", NULL, NULL);
  check("", "hello", "hello", "handler", NULL, NULL);
  check(" \n", "hello", "hello", "handler", NULL, NULL);
  check("{\"job\": null}", "hello", "hello", "handler", NULL, NULL);
  check("{\"job\": \"report\", \"params\": null}", NULL, "report", "event",
        NULL, NULL);

  /* Invalid events. */
  check("{\"detail\":", NULL, NULL, NULL, "Event.Invalid", "not valid JSON");
  check("[]", NULL, NULL, NULL, "Event.Invalid", "not an array");
  check("null", NULL, NULL, NULL, "Event.Invalid", "not null");
  check("true", NULL, NULL, NULL, "Event.Invalid", "not a boolean");
  check("{\"job\": [\"hello\"]}", NULL, NULL, NULL, "Event.Invalid",
        "must be a string, not an array");
  check("{\"job\": {}}", NULL, NULL, NULL, "Event.Invalid",
        "must be a string, not an object");
  check("{\"job\": \"hello\", \"params\": []}", NULL, NULL, NULL,
        "Event.Invalid", "not an array");
  check("{\"job\": \"hello\", \"params\": 5}", NULL, NULL, NULL,
        "Event.Invalid", "not a number");

  /* No such job. */
  check("{\"job\": \"nope\"}", "hello", NULL, NULL, "Job.NotFound",
        "\"nope\" (from the event's \"job\") not found; the jobs known: "
        "hello, nightly_purge, report");
  check("{\"resources\": [\"arn:aws:events:eu-west-1:1:rule/other\"]}", NULL,
        NULL, NULL, "Job.NotFound", "\"other\" (from the EventBridge rule");
  check("{\"resources\": [\"arn:aws:sns:eu-west-1:1:rule/hello\"]}", NULL,
        NULL, NULL, "Job.NotFound", "names no job");
  check("{\"resources\": [\"arn:aws:events:eu-west-1:1:rule/\"]}", NULL,
        NULL, NULL, "Job.NotFound", "names no job");
  check("{}", "bootstrap", NULL, NULL, "Job.NotFound",
        "the handler \"bootstrap\" is not a job");
  check("{}", NULL, NULL, NULL, "Job.NotFound", "no handler");

  /* Names in messages. */
  check_join(three, 64, "alpha, beta, gamma");
  check_join(three, 18, "alpha, beta, ...");
  check_join(three, 12, "alpha, ...");
  check_join(three, 9, "...");
  check_join(none, 64, "none");

  if (failures)
    printf("%d failures\n", failures);
  else
    printf("all routing cases passed\n");
  return failures ? 1 : 0;
}
