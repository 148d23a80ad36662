/* env.h: numeric settings read from the environment. */
#ifndef JOBHOST_ENV_H
#define JOBHOST_ENV_H

/* The whole number in the environment variable name when it is set and
 * lies in [min, max]; fallback when it is unset or empty. A value that is
 * not such a number is not used: fallback is, and a warning naming the
 * variable, its value and the range is logged, once a process for each
 * variable, so a typo (JOBHOST_MEMORY_MB=1G) does not pass unnoticed.
 * These variables hold settings, never secrets. */
long env_long(const char *name, long min, long max, long fallback);

/* Logs the same warning for a variable whose value is not one of the
 * words it takes (expected: "json or text", say). */
void env_warn(const char *name, const char *value, const char *expected,
              const char *using);

/* Holds warnings back until env_flush, for a command that reads its own
 * log options after the environment's: env_drop forgets the ones about a
 * variable an option has overridden, env_flush writes the rest (in the
 * log format then in force) and stops holding. name must outlive the
 * process (a literal). */
void env_defer(void);
void env_drop(const char *name);
void env_flush(void);

#endif
