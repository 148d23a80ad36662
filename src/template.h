/* template.h: the deploy template for a jobs folder (AWS CloudFormation
 * or AWS SAM, as JSON): one Lambda function, its role, its log group, a
 * dead-letter queue, and one EventBridge rule per scheduled job. The
 * `jobhost template` command (cli_template.c) prints what this builds. */
#ifndef JOBHOST_TEMPLATE_H
#define JOBHOST_TEMPLATE_H

#include <stddef.h>

typedef enum { TEMPLATE_CLOUDFORMATION, TEMPLATE_SAM } template_format;

typedef struct {
  template_format format;
  const char *jobs_dir;        /* NULL: job_default_dir() */
  const char *const *secrets;  /* more secrets the role may read (ids or
                                  ARNs), NULL-terminated; may be NULL */
} template_options;

/* Checks every job in the folder (as `jobhost check` does) and builds
 * the template from their specs. Returns 0 with *out a malloc'd,
 * NUL-terminated JSON document the caller frees; or -1 with err set
 * (naming the invalid job and why) and *out NULL. Never raises; a job
 * whose timeout exceeds Lambda's 900 s is logged as a warning. */
int template_build(const template_options *options, char **out, char *err,
                   size_t errlen);

/* Whether a connection target names a secret (an id or ARN) rather than
 * a libpq conninfo string or URI. */
int template_target_is_secret(const char *target);

#endif
