/* clock.c: the ISO-8601 formatter against the C library's gmtime_r. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static int failures, checks;

static void expect(int64_t ms)
{
  char got[64], want[64];
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;

  checks++;
  gmtime_r(&secs, &tm);
  snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(ms % 1000));
  clock_format_iso(ms, got, sizeof got);
  if (strcmp(got, want) != 0) {
    printf("FAILED: %lld gave %s, want %s\n", (long long)ms, got, want);
    failures++;
  }
}

int main(void)
{
  /* Edges of days, months, leap years (2000 is one, 2100 is not), and
   * the last millisecond of 9999. */
  static const int64_t fixed[] = {
      0,              999,            86399999,       86400000,
      951782400000,   951868799999,   951868800000,   4107542399999,
      4107542400000,  4107628800000,  1796384487845,  1709164800000,
      1709251199999,  253402300799999};
  char small[8];
  unsigned long i;
  unsigned int seed = 20261204;

  for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    expect(fixed[i]);
  /* Every day of four centuries, at a time of day that moves. */
  for (i = 0; i < 146097; i++)
    expect((int64_t)i * 86400000 + (int64_t)(i * 7919 % 86400000));
  for (i = 0; i < 100000; i++) {
    int64_t ms = (int64_t)(rand_r(&seed) % 2000000) * 126230400 +
                 rand_r(&seed) % 1000;

    expect(ms % 253402300800000);
  }

  /* A buffer too small is cut, still terminated. */
  checks++;
  clock_format_iso(0, small, sizeof small);
  if (strcmp(small, "1970-01") != 0) {
    printf("FAILED: cut to 8 bytes gave %s\n", small);
    failures++;
  }
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
