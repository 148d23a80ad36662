/* bench_redact.c: what hiding secrets costs each text the process
 * writes, by how many values are registered. A warm Lambda process that
 * fetches new versions of its secrets for weeks gathers thousands, each
 * with its escaped forms; every log line, result and error is scrubbed
 * against all of them. Prints microseconds a text, the best of several
 * rounds, for a log line without a secret, one holding one, and a 1 MB
 * JSON result.
 *
 * Build and run: cmake --build BUILD --target bench-redact */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redact.h"

#define ROUNDS 7

static double now_us(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The best time of ROUNDS, in µs a call, of redact_copy over text. */
static double best_us(const char *text, size_t len, int calls)
{
  double best = 1e30;
  int r, i;

  for (r = 0; r < ROUNDS; r++) {
    double t0 = now_us();

    for (i = 0; i < calls; i++) {
      size_t n;
      char *out = redact_copy(text, len, &n);

      free(out);
    }
    t0 = (now_us() - t0) / calls;
    if (t0 < best)
      best = t0;
  }
  return best;
}

int main(void)
{
  static const int counts[] = {0, 4, 50, 500, 5000};
  const char *line = "2026-12-04T11:36:27.845Z INFO batch deleted "
                     "job=purge_history rows=2000 batch=17 cutoff=\"2026-"
                     "09-05 00:00:00+00\" duration_ms=41";
  char leaky[512], value[64];
  char *result;
  size_t big = 1 << 20, i;
  int c, registered = 0;

  /* A JSON result of rows, as a job returns it. */
  result = malloc(big + 64);
  if (!result)
    return 1;
  for (i = 0; i + 64 < big;)
    i += (size_t)snprintf(result + i, big - i,
                          "{\"id\":%zu,\"name\":\"customer-%zu\"},", i, i * 7);
  result[i] = '\0';
  snprintf(leaky, sizeof leaky, "%s password=\"pw-0000-\\\"quoted\\\"\"",
           line);

  printf("%-8s %14s %14s %16s\n", "values", "line (us)", "leaky (us)",
         "1 MB result (us)");
  for (c = 0; c < (int)(sizeof counts / sizeof counts[0]); c++) {
    while (registered < counts[c]) {
      snprintf(value, sizeof value, "pw-%04d-\"quoted\"", registered++);
      if (redact_add(value, strlen(value)) != 0)
        return 1;
    }
    printf("%-8d %14.2f %14.2f %16.0f\n", counts[c],
           best_us(line, strlen(line), 2000),
           best_us(leaky, strlen(leaky), 2000),
           best_us(result, strlen(result), counts[c] > 500 ? 1 : 5));
  }
  free(result);
  return 0;
}
