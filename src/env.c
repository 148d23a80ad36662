/* env.c: numeric settings read from the environment, with a warning for
 * a value that cannot be used. */
#include "env.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The variables already warned of: a warning a process for each. */
#define WARNED_MAX 32
static const char *warned[WARNED_MAX];
static size_t nwarned;
static pthread_mutex_t warned_lock = PTHREAD_MUTEX_INITIALIZER;

void env_warn(const char *name, const char *value, const char *expected,
              const char *using)
{
  size_t i;
  int seen = 0;

  pthread_mutex_lock(&warned_lock);
  for (i = 0; i < nwarned; i++)
    if (strcmp(warned[i], name) == 0)
      seen = 1;
  if (!seen && nwarned < WARNED_MAX)
    warned[nwarned++] = name;
  pthread_mutex_unlock(&warned_lock);
  if (seen)
    return;
  log_emit(LOG_WARN, "ignoring an environment variable",
           (log_field[]){LOG_S("variable", name), LOG_S("value", value),
                         LOG_S("expected", expected),
                         LOG_S("using", using)},
           4);
}

long env_long(const char *name, long min, long max, long fallback)
{
  const char *s = getenv(name);
  char *end, expected[96], using[32];
  long n;

  if (!s || !*s)
    return fallback;
  errno = 0;
  n = strtol(s, &end, 10);
  /* strtol would skip leading blanks; a value is its digits alone. */
  if ((*s == '-' || (*s >= '0' && *s <= '9')) && errno == 0 &&
      *end == '\0' && end != s && n >= min && n <= max)
    return n;
  snprintf(expected, sizeof expected, "a whole number from %ld to %ld", min,
           max);
  snprintf(using, sizeof using, "%ld", fallback);
  env_warn(name, s, expected, using);
  return fallback;
}
