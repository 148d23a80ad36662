/* cli_template.c: `jobhost template`, the command-line face of
 * template.c: reads the options, builds the deploy template for the jobs
 * folder and prints it, or says which job stands in the way. */
#include "cli_template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

#define MAX_SECRETS 256

static void usage(FILE *out)
{
  fputs("usage: jobhost template [--format cloudformation|sam] "
        "[--jobs DIR]\n"
        "                        [--secret ID]...\n"
        "\n"
        "Checks every job in the jobs folder and writes a deploy template\n"
        "(JSON) for them on stdout: the Lambda function (provided.al2023),\n"
        "its role, log group and dead-letter queue, and one EventBridge\n"
        "rule per scheduled job. Exit 0 when written, 1 when a job is\n"
        "invalid, 2 on bad usage.\n"
        "\n"
        "options:\n"
        "  --format F   cloudformation (the default: the zip from S3 with\n"
        "               CodeBucket, or an ECR image with ImageUri) or sam\n"
        "               (sam deploy, with jobhost-lambda.zip beside the\n"
        "               template)\n"
        "  --jobs DIR   where jobs live (default: $JOBHOST_JOBS or ./jobs)\n"
        "  --secret ID  also allow reading this secret (an id or ARN), for\n"
        "               jobs that pass it to ctx.secret or ctx.connect;\n"
        "               repeatable\n",
        out);
}

int cli_template(int argc, char **argv)
{
  template_options o;
  const char *secrets[MAX_SECRETS + 1];
  char err[4096];
  char *text = NULL;
  size_t n_secrets = 0;
  int i;

  memset(&o, 0, sizeof o);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];

    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--format") == 0 && i + 1 < argc) {
      a = argv[++i];
      if (strcmp(a, "sam") == 0) {
        o.format = TEMPLATE_SAM;
      } else if (strcmp(a, "cloudformation") == 0) {
        o.format = TEMPLATE_CLOUDFORMATION;
      } else {
        fprintf(stderr, "jobhost template: --format is cloudformation or "
                "sam, not \"%s\"\n", a);
        return 2;
      }
    } else if (strcmp(a, "--jobs") == 0 && i + 1 < argc) {
      o.jobs_dir = argv[++i];
    } else if (strcmp(a, "--secret") == 0 && i + 1 < argc) {
      a = argv[++i];
      if (n_secrets == MAX_SECRETS || !template_target_is_secret(a)) {
        fprintf(stderr, "jobhost template: --secret takes a secret id or "
                "ARN, not \"%s\"\n", a);
        return 2;
      }
      secrets[n_secrets++] = a;
    } else if (i + 1 == argc && (strcmp(a, "--format") == 0 ||
                                 strcmp(a, "--jobs") == 0 ||
                                 strcmp(a, "--secret") == 0)) {
      fprintf(stderr, "jobhost template: %s needs a value\n", a);
      return 2;
    } else {
      fprintf(stderr, "jobhost template: unknown argument %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  secrets[n_secrets] = NULL;
  o.secrets = secrets;

  if (template_build(&o, &text, err, sizeof err) != 0) {
    fprintf(stderr, "jobhost template: %s\n", err);
    return 1;
  }
  fputs(text, stdout);
  free(text);
  if (fflush(stdout) != 0) {
    fprintf(stderr, "jobhost template: cannot write the template: %s\n",
            strerror(errno));
    return 1;
  }
  return 0;
}
