/* schedule_check.h: the small check harness the schedule unit tests
 * share: CHECK counts and reports, at() reads an ISO-8601 instant. Each
 * test program includes it once. */
#ifndef JOBHOST_SCHEDULE_CHECK_H
#define JOBHOST_SCHEDULE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "schedule.h"

static int failures;
static int checks;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    checks++;                                                                  \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                              \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* The instant iso names; a bad one in a test ends the program. */
static int64_t at(const char *iso)
{
  char err[SCHEDULE_ERR_MAX];
  int64_t t = 0;

  if (schedule_time_parse(iso, &t, err, sizeof err) < 0) {
    printf("FAIL bad instant in the test: %s\n", err);
    exit(1);
  }
  return t;
}

/* Prints the tally; the exit status of the test program. */
static int check_report(void)
{
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}

#endif
