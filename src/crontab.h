/* crontab.h: turns a classic five-field crontab line into the EventBridge
 * cron() expression that fires at the same instants: day-of-week
 * renumbered (crontab 0-7 with 0 and 7 Sunday, EventBridge 1-7 from
 * Sunday), '?' placed, a year field added, and times shifted from the
 * line's time zone to UTC. What one EventBridge rule cannot express is an
 * error; a zone whose offset changes (daylight saving) gets a warning
 * where the rule fires while the other offset holds, since a UTC rule
 * then drifts by the change in local time. */
#ifndef JOBHOST_CRONTAB_H
#define JOBHOST_CRONTAB_H

#include <stddef.h>
#include <stdint.h>

#define CRONTAB_EXPR_MAX 512
#define CRONTAB_WARNING_MAX 2048

typedef struct {
  char expr[CRONTAB_EXPR_MAX];       /* the EventBridge cron() expression */
  char warning[CRONTAB_WARNING_MAX]; /* lines ending in '\n'; "" if none */
} crontab_rule;

/* Converts one crontab line ("15 3 * * 1-5", "@daily", "*\/10 * * * *";
 * a command after the five fields is ignored). zone names the tz database
 * zone the line's times are in; NULL or "UTC" for UTC. The offset in
 * effect at `ref` (epoch seconds) is the one converted. Each period of
 * another offset in the year after `ref` in which the rule fires is
 * reported in out->warning with the local drift and the expression that
 * would hold then; when the rule fires in none, the first such period of
 * the following years (eight in all) is. A rule that never fires at or
 * after `ref` (31 February) is warned of instead. Returns 0, or -1 with a
 * message in err naming the field and what cannot be expressed. Sets and
 * restores the process's TZ (see schedule_zone_offsets). */
int crontab_convert(const char *line, const char *zone, int64_t ref,
                    crontab_rule *out, char *err, size_t errlen);

#endif
