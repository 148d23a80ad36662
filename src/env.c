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

/* Warnings held back by env_defer until env_flush. */
#define HELD_MAX 8
typedef struct {
  const char *name;
  char *value, *expected, *using;
} held_warning;
static held_warning held[HELD_MAX];
static size_t nheld;
static int deferring;

static void emit(const char *name, const char *value, const char *expected,
                 const char *using)
{
  log_emit(LOG_WARN, "ignoring an environment variable",
           (log_field[]){LOG_S("variable", name), LOG_S("value", value),
                         LOG_S("expected", expected),
                         LOG_S("using", using)},
           4);
}

static void release(held_warning *h)
{
  free(h->value);
  free(h->expected);
  free(h->using);
  memset(h, 0, sizeof *h);
}

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
  if (!seen && deferring && nheld < HELD_MAX) {
    held_warning *h = &held[nheld];

    h->name = name;
    h->value = strdup(value);
    h->expected = strdup(expected);
    h->using = strdup(using);
    if (h->value && h->expected && h->using) {
      nheld++;
      seen = 1;
    } else {
      release(h);
    }
  }
  pthread_mutex_unlock(&warned_lock);
  if (!seen)
    emit(name, value, expected, using);
}

void env_defer(void)
{
  deferring = 1;
}

void env_drop(const char *name)
{
  size_t i, k = 0;

  pthread_mutex_lock(&warned_lock);
  for (i = 0; i < nheld; i++) {
    if (strcmp(held[i].name, name) == 0)
      release(&held[i]);
    else
      held[k++] = held[i];
  }
  nheld = k;
  pthread_mutex_unlock(&warned_lock);
}

void env_flush(void)
{
  size_t i;

  pthread_mutex_lock(&warned_lock);
  deferring = 0;
  for (i = 0; i < nheld; i++) {
    emit(held[i].name, held[i].value, held[i].expected, held[i].using);
    release(&held[i]);
  }
  nheld = 0;
  pthread_mutex_unlock(&warned_lock);
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
