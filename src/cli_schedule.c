/* cli_schedule.c: `jobhost schedule`, the schedule preview. Validates an
 * EventBridge cron()/rate() expression (given, or a job's declared
 * schedule) and prints its next fire times in UTC, with --tz also in a
 * local zone, warning where daylight saving moves the local time; or
 * turns a crontab line into the EventBridge expression. The work is done
 * by schedule.c and crontab.c; this file reads arguments and prints. */
#include "cli_schedule.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crontab.h"
#include "job.h"
#include "schedule.h"

#define DEFAULT_COUNT 5
#define MAX_COUNT 10000

/* Exit statuses. */
enum { EXIT_OK = 0, EXIT_INVALID = 1, EXIT_USAGE = 2 };

typedef struct {
  const char *target;  /* EXPR or JOB */
  const char *crontab; /* --from-crontab LINE */
  const char *jobs_dir; /* --jobs */
  const char *zone;    /* --tz */
  int64_t from;        /* --from, else now */
  long count;          /* --count */
  int count_given;     /* --count was on the command line */
} options;

static const char *const weekday_abbr[] = {"Sun", "Mon", "Tue", "Wed",
                                           "Thu", "Fri", "Sat"};

static void usage(FILE *out)
{
  fputs("usage: jobhost schedule EXPR [--count N] [--from ISO8601] "
        "[--tz ZONE]\n"
        "       jobhost schedule JOB [--count N] [--from ISO8601] "
        "[--tz ZONE] [--jobs DIR]\n"
        "       jobhost schedule --from-crontab 'LINE' [--tz ZONE] "
        "[--from ISO8601] [--count N]\n"
        "\n"
        "Validates an EventBridge schedule expression as a scheduled rule\n"
        "reads it and prints its next fire times in UTC, one a line:\n"
        "  cron(minutes hours day-of-month month day-of-week year)\n"
        "    exactly one day field is '?'; day-of-week 1-7 is SUN-SAT;\n"
        "    L, LW, nW in day-of-month; L, nL, n#k in day-of-week\n"
        "  rate(N minute|minutes|hour|hours|day|days)\n"
        "    fires every N units after the rule is created (--from)\n"
        "JOB previews the schedule that jobs/JOB.lua declares (the\n"
        "expression on stderr, the times on stdout).\n"
        "\n"
        "options:\n"
        "  --count N            how many fire times (default 5, at most "
        "10000)\n"
        "  --from ISO8601       the start instant (default now); a cron()\n"
        "                       fire at that instant counts\n"
        "  --jobs DIR           where JOB lives (default: $JOBHOST_JOBS or\n"
        "                       ./jobs)\n"
        "  --tz ZONE            also show each time in a tz database zone\n"
        "                       (Europe/Berlin) and warn where daylight\n"
        "                       saving moves the local time\n"
        "  --from-crontab LINE  print the EventBridge expression of a\n"
        "                       five-field crontab line whose times are in\n"
        "                       --tz (default UTC), then with --count its\n"
        "                       fire times\n"
        "\n"
        "Exit 0 when valid, 1 when the expression is invalid (the reason\n"
        "on stderr), 2 on bad usage.\n",
        out);
}

/* Reads the value of an option given as "--name VALUE" or "--name=VALUE".
 * Returns the value, or NULL when argv[*i] is not this option; sets
 * *missing when the option has no value. */
static const char *option_value(int argc, char **argv, int *i, const char *name,
                                int *missing)
{
  size_t len = strlen(name);

  if (strncmp(argv[*i], name, len) != 0)
    return NULL;
  if (argv[*i][len] == '=')
    return argv[*i] + len + 1;
  if (argv[*i][len] != '\0')
    return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}

/* Fills opts from the arguments. Returns -1 with a message printed on bad
 * usage (-2 when nothing was given at all), 1 when --help was asked for,
 * else 0. */
static int parse_args(int argc, char **argv, options *opts)
{
  char err[SCHEDULE_ERR_MAX];
  const char *from = NULL, *count = NULL, *value;
  int i;

  memset(opts, 0, sizeof *opts);
  opts->count = DEFAULT_COUNT;
  for (i = 1; i < argc; i++) {
    int missing = 0;

    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return 1;
    if ((value = option_value(argc, argv, &i, "--count", &missing)))
      count = value;
    else if ((value = option_value(argc, argv, &i, "--from", &missing)))
      from = value;
    else if ((value = option_value(argc, argv, &i, "--tz", &missing)))
      opts->zone = value;
    else if ((value = option_value(argc, argv, &i, "--from-crontab", &missing)))
      opts->crontab = value;
    else if ((value = option_value(argc, argv, &i, "--jobs", &missing)))
      opts->jobs_dir = value;
    else if (missing) {
      fprintf(stderr, "jobhost schedule: %s needs a value\n", argv[i]);
      return -1;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      fprintf(stderr, "jobhost schedule: unknown option %s\n", argv[i]);
      return -1;
    } else if (opts->target != NULL) {
      fprintf(stderr, "jobhost schedule: one expression or job at a time "
                      "(quote the expression: 'cron(0 10 * * ? *)')\n");
      return -1;
    } else {
      opts->target = argv[i];
    }
  }

  if ((opts->target == NULL) == (opts->crontab == NULL)) {
    fprintf(stderr, "jobhost schedule: give an expression, a job or "
                    "--from-crontab LINE\n");
    return -2;
  }
  if (count != NULL) {
    char *end;

    opts->count_given = 1;
    errno = 0;
    opts->count = strtol(count, &end, 10);
    if (errno != 0 || *end != '\0' || end == count || opts->count < 1 ||
        opts->count > MAX_COUNT) {
      fprintf(stderr,
              "jobhost schedule: --count must be a number from 1 "
              "to %d\n",
              MAX_COUNT);
      return -1;
    }
  }
  if (from == NULL) {
    opts->from = clock_now_ms() / 1000;
  } else if (schedule_time_parse(from, &opts->from, err, sizeof err) < 0) {
    fprintf(stderr, "jobhost schedule: --from: %s\n", err);
    return -1;
  }
  if (opts->zone != NULL &&
      schedule_zone_check(opts->zone, err, sizeof err) < 0) {
    fprintf(stderr, "jobhost schedule: %s\n", err);
    return -1;
  }
  return 0;
}

/* Prints n fire times, and with a zone their local times, warning on
 * stderr wherever the zone's offset changes between two fires. */
static int print_fires(const options *opts, const int64_t *fires, size_t n)
{
  char utc[SCHEDULE_TIME_MAX], before[SCHEDULE_TIME_MAX], off[16], prev_off[16],
      err[SCHEDULE_ERR_MAX];
  int32_t *offsets = NULL;
  size_t i;

  if (opts->zone != NULL) {
    offsets = malloc((n > 0 ? n : 1) * sizeof *offsets);
    if (offsets == NULL) {
      fprintf(stderr, "jobhost schedule: out of memory\n");
      return EXIT_INVALID;
    }
    if (schedule_zone_offsets(opts->zone, fires, offsets, n, err, sizeof err) <
        0) {
      fprintf(stderr, "jobhost schedule: %s\n", err);
      free(offsets);
      return EXIT_USAGE;
    }
  }

  for (i = 0; i < n; i++) {
    schedule_civil local, prev;

    schedule_time_format(fires[i], utc, sizeof utc);
    if (offsets == NULL) {
      printf("%s\n", utc);
      continue;
    }
    schedule_civil_of(fires[i], offsets[i], &local);
    schedule_offset_format(offsets[i], off, sizeof off);
    printf("%s  %s %04d-%02d-%02d %02d:%02d %s\n", utc,
           weekday_abbr[local.weekday - 1], local.year, local.month, local.day,
           local.hour, local.minute, off);
    if (i == 0 || offsets[i] == offsets[i - 1])
      continue;

    /* The rule stays in UTC, so the local time moves with the offset. */
    schedule_civil_of(fires[i - 1], offsets[i - 1], &prev);
    schedule_time_format(fires[i - 1], before, sizeof before);
    schedule_offset_format(offsets[i - 1], prev_off, sizeof prev_off);
    fflush(stdout);
    fprintf(stderr,
            "jobhost schedule: warning: %s changes from %s to %s "
            "(daylight saving) between %s and %s; the rule stays in UTC, so "
            "its local time moves from %02d:%02d to %02d:%02d\n",
            opts->zone, prev_off, off, before, utc, prev.hour, prev.minute,
            local.hour, local.minute);
  }
  free(offsets);
  return EXIT_OK;
}

/* Previews an expression; `source` names where it came from in messages
 * (NULL for the command line). */
static int preview(const options *opts, const char *expr, const char *source)
{
  char err[SCHEDULE_ERR_MAX], from[SCHEDULE_TIME_MAX];
  int64_t *fires;
  schedule s;
  size_t n;
  int rc;

  if (schedule_parse(expr, &s, err, sizeof err) < 0) {
    if (source != NULL)
      fprintf(stderr, "jobhost schedule: %s: invalid schedule \"%s\": %s\n",
              source, expr, err);
    else
      fprintf(stderr, "jobhost schedule: invalid schedule \"%s\": %s\n", expr,
              err);
    return EXIT_INVALID;
  }

  fires = malloc((size_t)opts->count * sizeof *fires);
  if (fires == NULL) {
    fprintf(stderr, "jobhost schedule: out of memory\n");
    return EXIT_INVALID;
  }
  n = schedule_fires(&s, opts->from, fires, (size_t)opts->count);
  rc = print_fires(opts, fires, n);
  if (rc == EXIT_OK && n < (size_t)opts->count) {
    schedule_time_format(opts->from, from, sizeof from);
    fflush(stdout);
    if (n == 0)
      fprintf(stderr,
              "jobhost schedule: warning: no fire time at or after %s (%s)\n",
              from, schedule_end_reason(&s, opts->from));
    else
      fprintf(stderr,
              "jobhost schedule: the schedule ends after %zu fire "
              "time%s\n",
              n, n == 1 ? "" : "s");
  }
  free(fires);
  return rc;
}

/* Prints the EventBridge expression of a crontab line. */
static int from_crontab(const options *opts)
{
  char err[SCHEDULE_ERR_MAX];
  crontab_rule rule;
  const char *line, *end;

  if (crontab_convert(opts->crontab, opts->zone, opts->from, &rule, err,
                      sizeof err) < 0) {
    fprintf(stderr, "jobhost schedule: %s\n", err);
    return EXIT_INVALID;
  }
  /* What we print must be what we accept. */
  if (schedule_validate(rule.expr, err, sizeof err) < 0) {
    fprintf(stderr,
            "jobhost schedule: the conversion gave %s, which is "
            "invalid: %s\n",
            rule.expr, err);
    return EXIT_INVALID;
  }
  printf("%s\n", rule.expr);
  fflush(stdout);
  /* Each warning line ends in a newline. */
  for (line = rule.warning; (end = strchr(line, '\n')) != NULL; line = end + 1)
    fprintf(stderr, "jobhost schedule: warning: %.*s\n", (int)(end - line),
            line);

  /* With --count, the new rule's fire times follow it. */
  return opts->count_given ? preview(opts, rule.expr, NULL) : EXIT_OK;
}

/* Whether target names a job rather than an expression. */
static int is_job_name(const char *target)
{
  return strncmp(target, "cron(", 5) != 0 && strncmp(target, "rate(", 5) != 0 &&
         job_name_valid(target);
}

int cli_schedule(int argc, char **argv)
{
  char expr[1024], err[2048], source[1024];
  options opts;
  int rc = parse_args(argc, argv, &opts);

  /* A mistake in one option is told in one line, not buried under the
   * whole usage. */
  if (rc == -1)
    fputs("`jobhost schedule --help` tells more\n", stderr);
  if (rc != 0 && rc != -1)
    usage(rc > 0 ? stdout : stderr);
  if (rc != 0)
    return rc > 0 ? EXIT_OK : EXIT_USAGE;
  if (opts.crontab != NULL)
    return from_crontab(&opts);
  if (!is_job_name(opts.target))
    return preview(&opts, opts.target, NULL);

  if (job_schedule_of(opts.jobs_dir, opts.target, expr, sizeof expr, err,
                      sizeof err) < 0) {
    fprintf(stderr, "jobhost schedule: %s\n", err);
    return EXIT_INVALID;
  }
  snprintf(source, sizeof source, "%s/%s.lua",
           opts.jobs_dir ? opts.jobs_dir : job_default_dir(), opts.target);
  if (expr[0] == '\0') {
    fprintf(stderr, "jobhost schedule: %s declares no schedule\n", source);
    return EXIT_INVALID;
  }
  /* Which expression the times are of; stdout stays the times alone. */
  fprintf(stderr, "jobhost schedule: %s: %s\n", source, expr);
  return preview(&opts, expr, source);
}
