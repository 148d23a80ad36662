/* schedule.h: EventBridge schedule expressions, cron() and rate(), as a
 * scheduled rule reads them: parsing, validation with a message naming the
 * rule broken and the field, and the fire times after an instant, in UTC.
 * Also the small time helpers the schedule commands share: ISO-8601
 * instants and the UTC offsets of a tz database zone.
 *
 * Instants are whole seconds since the Unix epoch (int64_t). Nothing here
 * prints, logs or raises a Lua error; errors come back as messages. */
#ifndef JOBHOST_SCHEDULE_H
#define JOBHOST_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

/* The years a cron() year field can name. */
#define SCHEDULE_YEAR_MIN 1970
#define SCHEDULE_YEAR_MAX 2199

/* A buffer this long holds any message of this module. */
#define SCHEDULE_ERR_MAX 256

/* A buffer this long holds an ISO-8601 instant ("2025-03-01T10:00:00Z"). */
#define SCHEDULE_TIME_MAX 24

typedef enum { SCHEDULE_CRON, SCHEDULE_RATE } schedule_kind;

/* How the day-of-month field picks days. */
typedef enum {
  SCHEDULE_DOM_ANY,            /* '?': day-of-week decides */
  SCHEDULE_DOM_SET,            /* values, ranges, lists, '*', increments */
  SCHEDULE_DOM_LAST,           /* L: the last day of the month */
  SCHEDULE_DOM_LAST_WEEKDAY,   /* LW: the last Monday-Friday of the month */
  SCHEDULE_DOM_NEAREST_WEEKDAY /* nW: the weekday nearest day n */
} schedule_dom_mode;

/* How the day-of-week field picks days. */
typedef enum {
  SCHEDULE_DOW_ANY,  /* '?': day-of-month decides */
  SCHEDULE_DOW_SET,  /* values (1 = SUN .. 7 = SAT), ranges, lists, L */
  SCHEDULE_DOW_LAST, /* nL: the last weekday n of the month */
  SCHEDULE_DOW_NTH   /* n#k: the kth weekday n of the month */
} schedule_dow_mode;

/* A parsed expression. Each cron field is a bit set, so finding the next
 * fire is a few "next set bit" steps per field, never a scan by minute. */
typedef struct {
  schedule_kind kind;
  int64_t rate_seconds; /* rate(): the interval */
  uint64_t minutes;     /* bit m set: minute m fires (0-59) */
  uint32_t hours;       /* bit h: hour h (0-23) */
  uint32_t days;        /* bit d: day-of-month d (1-31), DOM_SET only */
  uint16_t months;      /* bit m: month m (1-12) */
  uint8_t weekdays;     /* bit w: weekday w (1 = SUN .. 7), DOW_SET only */
  uint64_t years[4];    /* bit y - 1970: year y (1970-2199) */
  schedule_dom_mode dom_mode;
  schedule_dow_mode dow_mode;
  int dom_day; /* nW: n */
  int dow_day; /* nL, n#k: n (1-7) */
  int dow_nth; /* n#k: k (1-5) */
} schedule;

/* Parses expr ("cron(...)" or "rate(...)", exactly as EventBridge takes
 * it) into *out. Returns 0, or -1 with a message in err (at most errlen
 * bytes, always terminated when errlen > 0) that names the field and the
 * rule broken, e.g. "minutes: 60 is out of range 0-59". */
int schedule_parse(const char *expr, schedule *out, char *err, size_t errlen);

/* 0 when EventBridge accepts expr for a scheduled rule; else -1 and a
 * message as schedule_parse gives. */
int schedule_validate(const char *expr, char *err, size_t errlen);

/* The first cron() fire at or after `from` (a fire at the minute of `from`
 * counts only when `from` has no seconds). Returns 1 and sets *fire, or 0
 * when none is left (the year field runs out, at the latest after 2199).
 * For rate() it is the first fire of a rule created at `from`. */
int schedule_next(const schedule *s, int64_t from, int64_t *fire);

/* Why s fires no more at or after `from` (when schedule_next found
 * none): a static phrase such as "the year field has run out". */
const char *schedule_end_reason(const schedule *s, int64_t from);

/* Writes up to n fire times of a rule whose start instant is `from` into
 * out, in order: for cron() those at or after `from`, for rate() `from`
 * plus 1, 2, ... intervals. Returns how many were written (fewer than n
 * when the schedule ends). */
size_t schedule_fires(const schedule *s, int64_t from, int64_t *out, size_t n);

/* Parses an ISO-8601 instant: "YYYY-MM-DDTHH:MM[:SS]" followed by "Z",
 * "+HH:MM", "-HH:MM" or nothing (taken as UTC); a space may stand for the
 * T. Returns 0 and sets *t, or -1 with a message in err that says what
 * is wrong: not that form, a date or time of day that does not exist
 * (30 February, 24:00), an offset past 23:59, a year before 1970. */
int schedule_time_parse(const char *text, int64_t *t, char *err, size_t errlen);

/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into buf (SCHEDULE_TIME_MAX bytes
 * are enough). */
void schedule_time_format(int64_t t, char *buf, size_t len);

/* Breaks t, shifted by offset seconds, into calendar fields: year, month
 * (1-12), day (1-31), hour, minute, second and weekday (1 = SUN .. 7). */
typedef struct {
  int year, month, day, hour, minute, second, weekday;
} schedule_civil;
void schedule_civil_of(int64_t t, int32_t offset, schedule_civil *out);

/* The three-letter names EventBridge takes: months JAN-DEC (index 0 is
 * January), weekdays SUN-SAT (index 0 is Sunday). */
extern const char *const schedule_month_names[12];
extern const char *const schedule_weekday_names[7];

/* Formats an offset east of UTC in seconds as "+01:00" or "-05:30". */
void schedule_offset_format(int32_t offset, char *buf, size_t len);

/* Writes a printf-style message into err (when errlen > 0) and returns -1:
 * the error convention of this module and of crontab.c. */
int schedule_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 when zone names a zone of the system tz database ("UTC",
 * "Europe/Berlin"); else -1 with a message in err. */
int schedule_zone_check(const char *zone, char *err, size_t errlen);

/* The zone's UTC offsets (seconds east of UTC) at the n instants of t into
 * offsets. Returns 0, or -1 with a message when the zone is unknown. Uses
 * the C library's TZ handling: it sets and restores the process's TZ, so
 * it must not run beside other threads' local-time calls. */
int schedule_zone_offsets(const char *zone, const int64_t *t, int32_t *offsets,
                          size_t n, char *err, size_t errlen);

#endif
