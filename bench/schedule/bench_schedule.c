/* bench_schedule.c: how long the schedule engine takes to list 1,000 fire
 * times, for expressions from the densest (every minute) to the sparsest
 * (a rule that never fires, which must search through 2199 to say so).
 * Each figure is the best of several rounds, parse included. With
 * --check MS it exits 1 when any expression takes MS milliseconds or more
 * (the target is 10 ms).
 *
 * Build and run: cmake --build BUILD --target bench-schedule */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

#define FIRES 1000
#define ROUNDS 25

static double now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
  static const char *const exprs[] = {
      "cron(* * * * ? *)",
      "cron(0/15 8-17 ? * MON-FRI *)",
      "cron(5,35 14 * * ? *)",
      "cron(0 9 ? * 2#1 *)",
      "cron(15 10 ? * 6L *)",
      "cron(0 6 15W * ? *)",
      "cron(0 0 LW * ? *)",
      "cron(0 22-2 ? * FRI-MON 2025-2199/2)",
      "cron(0 0 29 2 ? *)",
      "cron(0 0 ? 2 5#5 *)",
      "cron(0 0 31 2 ? *)",
      "rate(5 minutes)",
  };
  static int64_t fires[FIRES];
  char err[SCHEDULE_ERR_MAX], last[SCHEDULE_TIME_MAX];
  double limit = 0, worst = 0;
  int64_t from = 1740787200; /* 2025-03-01T00:00:00Z */
  size_t e;

  if (argc == 3 && strcmp(argv[1], "--check") == 0)
    limit = strtod(argv[2], NULL);

  printf("%-38s %6s %-21s %10s\n", "expression", "fires", "last fire",
         "ms/1000");
  for (e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
    double best = 1e9;
    size_t n = 0;
    int r;

    for (r = 0; r < ROUNDS; r++) {
      double start = now_ms(), took;
      schedule s;

      if (schedule_parse(exprs[e], &s, err, sizeof err) < 0) {
        printf("%s: %s\n", exprs[e], err);
        return 1;
      }
      n = schedule_fires(&s, from, fires, FIRES);
      took = now_ms() - start;
      if (took < best)
        best = took;
    }
    if (n > 0)
      schedule_time_format(fires[n - 1], last, sizeof last);
    else
      snprintf(last, sizeof last, "(none)");
    printf("%-38s %6zu %-21s %10.3f\n", exprs[e], n, last, best);
    if (best > worst)
      worst = best;
  }
  printf("slowest: %.3f ms for up to %d fire times\n", worst, FIRES);

  if (limit > 0 && worst >= limit) {
    printf("FAIL: %.3f ms is not under %.1f ms\n", worst, limit);
    return 1;
  }
  return 0;
}
