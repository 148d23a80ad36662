/* main.c: the jobhost binary. Picks the command from the arguments, or the
 * Lambda runtime when the binary runs as `bootstrap` (a provided.al2023
 * function) or with no command under AWS_LAMBDA_RUNTIME_API. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_schedule.h"
#include "cli_template.h"
#include "env.h"
#include "lambda.h"
#include "log.h"
#include "redact.h"
#include "repl.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"run", cli_run, "run a job once, here"},
    {"check", cli_check, "compile and validate jobs and their schedules"},
    {"schedule", cli_schedule, "validate a schedule, print its fire times"},
    {"template", cli_template, "write the deploy template for the jobs"},
    {"repl", repl_main, "interactive Lua with a job's ctx, for writing jobs"},
    {"version", cli_version, "print the version"},
    {"lambda", lambda_main, "serve as an AWS Lambda custom runtime"},
    {NULL, NULL, NULL}};

static void usage(FILE *out)
{
  const command *c;

  fputs("usage: jobhost COMMAND [ARGS]\n\n"
        "Runs PostgreSQL jobs written in Lua, here or as an AWS Lambda\n"
        "custom runtime.\n\ncommands:\n",
        out);
  for (c = commands; c->name; c++)
    fprintf(out, "  %-10s %s\n", c->name, c->summary);
  fputs("\n`jobhost COMMAND --help` tells more.\n", out);
}

/* Credentials the process was given in its environment are never shown,
 * even when a job reads one with os.getenv and logs or returns it. */
static void redact_environment(void)
{
  static const char *const names[] = {"AWS_SECRET_ACCESS_KEY",
                                      "AWS_SESSION_TOKEN", "PGPASSWORD",
                                      NULL};
  const char *const *n;

  for (n = names; *n; n++) {
    const char *v = getenv(*n);
    if (v)
      redact_add(v, strlen(v));
  }
}

static const command *find(const char *name)
{
  const command *c;

  for (c = commands; c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

/* How every command ends. The output is flushed and checked here, so a
 * result that could not be written (a full disk, a closed pipe) fails the
 * command instead of vanishing. Then the process leaves without the
 * libraries' exit handlers and destructors: OpenSSL's cleanup alone is
 * some 1.3 million instructions and 0.4 MB of pages touched at the end of
 * each cold run, for memory the kernel takes back anyway; nothing of
 * jobhost's own waits for exit. Under the sanitizers the normal exit
 * runs, for the leak check. */
static int finish(int rc)
{
  env_flush();
  if (fflush(stdout) != 0 || ferror(stdout)) {
    /* A log record, so that a reader of JSON logs sees it after the
     * run's own "run finished". */
    log_emit(LOG_ERROR, "writing the output failed",
             (log_field[]){LOG_S("error", strerror(errno ? errno : EIO))},
             1);
    if (rc == 0)
      rc = 1;
  }
  fflush(stderr);
#ifndef __SANITIZE_ADDRESS__
  _exit(rc);
#endif
  return rc;
}

/* A standard descriptor started closed (`jobhost run >&-`) would be the
 * next one opened, a database socket, say, and what is written to
 * stdout would go there: each closed one is held open, stdin by
 * /dev/null, stdout and stderr by /dev/full, where writes still fail as
 * on the closed descriptor (a result that cannot be written fails the
 * run). */
static void hold_standard_descriptors(void)
{
  int fd;

  for (fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int null = fd == 0 ? open("/dev/null", O_RDONLY)
                         : open("/dev/full", O_WRONLY);

      if (null < 0)
        null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

      if (null >= 0 && null != fd) {
        dup2(null, fd);
        close(null);
      }
    }
  }
}

int main(int argc, char **argv)
{
  const char *base = strrchr(argv[0], '/');
  const command *c;
  char *lambda_argv[] = {"lambda", NULL};
  const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
  int bootstrap;

  hold_standard_descriptors();
  base = base ? base + 1 : argv[0];
  /* Serving as the Lambda runtime without being asked by name. */
  bootstrap = strcmp(base, "bootstrap") == 0 || (argc < 2 && api && *api);
  log_configure(stderr, LOG_TEXT, LOG_INFO);
  /* The Lambda runtime sets its own sink (stdout) before reading the
   * environment's log settings, so that a warning about one lands there
   * with the rest. */
  if (!bootstrap && !(argc > 1 && strcmp(argv[1], "lambda") == 0)) {
    /* `run` reads its --log-format and --log-level next: a warning about
     * the environment's waits for them (cli_run flushes it). */
    if (argc > 1 && strcmp(argv[1], "run") == 0)
      env_defer();
    log_configure_from_env();
  }
  redact_environment();

  if (bootstrap) {
    c = find("lambda");
    if (c)
      return finish(c->run(1, lambda_argv));
  }
  if (argc < 2) {
    usage(stderr);
    return finish(2);
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return finish(0);
  }
  if (strcmp(argv[1], "--version") == 0)
    return finish(cli_version(argc - 1, argv + 1));
  c = find(argv[1]);
  if (!c) {
    fprintf(stderr, "jobhost: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return finish(2);
  }
  return finish(c->run(argc - 1, argv + 1));
}
