/* crontab.c: migrates classic crontab lines to EventBridge cron()
 * expressions. The line's five fields become bit sets (crontab syntax:
 * lists, ranges, '*', steps, names, @macros); the local times are moved
 * to UTC minute by minute of the day, and the result must again be a
 * product of a minute set and an hour set with one day shift, or it cannot
 * be one rule. The day fields follow: a shift across midnight moves the
 * weekdays, or the days of the month where that stays exact. */
#include "crontab.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "schedule.h"

enum { C_MINUTE, C_HOUR, C_DOM, C_MONTH, C_DOW, C_COUNT };

/* What each crontab field takes; day-of-week 7 is Sunday again. */
typedef struct {
  const char *name;
  int min, max;
  const char *const *names; /* names for min.., or NULL */
  int name_count;
} cfield_spec;

static const cfield_spec cfield_specs[C_COUNT] = {
    {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},
    {"month", 1, 12, schedule_month_names, 12},
    {"day-of-week", 0, 7, schedule_weekday_names, 7},
};

/* The @ shorthands and their five fields. */
static const struct {
  const char *name;
  const char *fields;
} macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* A parsed line: bit v for value v of each field; day-of-week bits 0-6
 * (Sunday 0). star_dom/star_dow: the field begins with '*', which for
 * crontab means it does not restrict the day (see build). */
typedef struct {
  uint64_t minutes;
  uint32_t hours;
  uint32_t days;
  uint16_t months;
  uint8_t weekdays;
  int star_dom, star_dow;
} cron_line;

#define ALL_DAYS (((UINT32_C(1) << 31) - 1) << 1)
#define ALL_MONTHS ((uint16_t)(((1u << 12) - 1) << 1))
#define ALL_WEEKDAYS ((uint8_t)((1u << 7) - 1))

/* Appends formatted text to buf (a NUL-terminated string of size len). */
static void append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t len, const char *fmt, ...)
{
  size_t used = strlen(buf);
  va_list ap;

  if (used + 1 >= len)
    return;
  va_start(ap, fmt);
  vsnprintf(buf + used, len - used, fmt, ap);
  va_end(ap);
}

/* ---- parsing a crontab line -------------------------------------------- */

/* Reads a number or name of field fs at *p. */
static int cparse_value(const cfield_spec *fs, const char **p, int *value,
                        char *err, size_t errlen)
{
  const char *s = *p;
  int v = 0, digits = 0, i;

  if (isdigit((unsigned char)*s)) {
    while (isdigit((unsigned char)*s)) {
      if (++digits > 2)
        return schedule_fail(err, errlen,
                             "crontab %s: '%s' is out of range %d-%d", fs->name,
                             *p, fs->min, fs->max);
      v = v * 10 + (*s++ - '0');
    }
    if (v < fs->min || v > fs->max)
      return schedule_fail(err, errlen, "crontab %s: %d is out of range %d-%d",
                           fs->name, v, fs->min, fs->max);
    *value = v;
    *p = s;
    return 0;
  }
  for (i = 0; i < fs->name_count; i++) {
    if (strncasecmp(s, fs->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
      *value = fs->min + i;
      *p = s + 3;
      return 0;
    }
  }
  return schedule_fail(err, errlen, "crontab %s: unexpected '%s'", fs->name,
                       *p);
}

/* Reads the k of "/k". */
static int cparse_step(const cfield_spec *fs, const char **p, int *step,
                       char *err, size_t errlen)
{
  const char *s = *p;
  int v = 0, digits = 0;

  while (isdigit((unsigned char)*s) && digits < 3) {
    v = v * 10 + (*s++ - '0');
    digits++;
  }
  if (digits == 0 || v < 1 || v > fs->max)
    return schedule_fail(err, errlen,
                         "crontab %s: the step after '/' must be a "
                         "number from 1 to %d",
                         fs->name, fs->max);
  *step = v;
  *p = s;
  return 0;
}

/* Parses a crontab field (a comma list of "*", "*\/k", "a", "a-b",
 * "a-b/k") into a bit set of values. */
static int cparse_field(const cfield_spec *fs, const char *text, uint64_t *set,
                        char *err, size_t errlen)
{
  const char *p = text;

  *set = 0;
  for (;;) {
    int first, last, step = 1, v;

    if (*p == '*') {
      p++;
      first = fs->min;
      last = fs->max;
    } else {
      if (cparse_value(fs, &p, &first, err, errlen) < 0)
        return -1;
      last = first;
      if (*p == '-') {
        p++;
        if (cparse_value(fs, &p, &last, err, errlen) < 0)
          return -1;
        if (last < first)
          return schedule_fail(err, errlen,
                               "crontab %s: the range in '%s' runs "
                               "backwards",
                               fs->name, text);
      } else if (*p == '/') {
        return schedule_fail(err, errlen,
                             "crontab %s: a step needs '*' or a range "
                             "before '/' (got '%s')",
                             fs->name, text);
      }
    }
    if (*p == '/') {
      p++;
      if (cparse_step(fs, &p, &step, err, errlen) < 0)
        return -1;
    }
    for (v = first; v <= last; v += step)
      *set |= UINT64_C(1) << v;

    if (*p == '\0')
      return 0;
    if (*p != ',' || p[1] == '\0')
      return schedule_fail(err, errlen, "crontab %s: unexpected '%s' in '%s'",
                           fs->name, p, text);
    p++;
  }
}

/* Splits and parses a line, expanding an @ shorthand first. */
static int parse_line(const char *line, cron_line *out, char *err,
                      size_t errlen)
{
  char buf[1024];
  char *field[C_COUNT];
  char *p;
  uint64_t set;
  size_t i;
  int count = 0;

  while (isspace((unsigned char)*line))
    line++;
  if (*line == '@') {
    size_t len = strcspn(line, " \t");

    for (i = 0; i < sizeof macros / sizeof macros[0]; i++)
      if (strlen(macros[i].name) == len &&
          strncmp(line, macros[i].name, len) == 0)
        break;
    if (strncmp(line, "@reboot", len) == 0 && len == 7)
      return schedule_fail(err, errlen,
                           "crontab: @reboot runs at boot, not on a "
                           "schedule; EventBridge cannot express it");
    if (i == sizeof macros / sizeof macros[0])
      return schedule_fail(err, errlen,
                           "crontab: unknown shorthand '%.*s' (known: "
                           "@yearly, @annually, @monthly, @weekly, @daily, "
                           "@midnight, @hourly)",
                           (int)len, line);
    line = macros[i].fields;
  }
  if (*line == '#' || *line == '\0')
    return schedule_fail(err, errlen,
                         "crontab: the line is empty or a comment");
  if (strlen(line) >= sizeof buf)
    return schedule_fail(err, errlen, "crontab: the line is too long");
  snprintf(buf, sizeof buf, "%s", line);

  for (p = buf; count < C_COUNT;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0')
      break;
    field[count++] = p;
    p += strcspn(p, " \t");
    if (*p != '\0')
      *p++ = '\0';
  }
  if (count < C_COUNT)
    return schedule_fail(err, errlen,
                         "crontab: needs five fields (minute hour "
                         "day-of-month month day-of-week), found %d",
                         count);
  if (strchr(field[0], '=') != NULL)
    return schedule_fail(err, errlen,
                         "crontab: '%s' sets a variable; it is not a "
                         "schedule line",
                         field[0]);

  memset(out, 0, sizeof *out);
  for (i = 0; i < C_COUNT; i++) {
    if (cparse_field(&cfield_specs[i], field[i], &set, err, errlen) < 0)
      return -1;
    switch (i) {
    case C_MINUTE: out->minutes = set; break;
    case C_HOUR: out->hours = (uint32_t)set; break;
    case C_DOM: out->days = (uint32_t)set; break;
    case C_MONTH: out->months = (uint16_t)set; break;
    default:
      /* 7 is Sunday as well as 0. */
      out->weekdays = (uint8_t)((set | (set >> 7)) & ALL_WEEKDAYS);
      break;
    }
  }
  out->star_dom = field[C_DOM][0] == '*';
  out->star_dow = field[C_DOW][0] == '*';

  /* cron ORs two restricted day fields: one that names every day makes
   * every day match. */
  if (!out->star_dom && !out->star_dow &&
      (out->days == ALL_DAYS || out->weekdays == ALL_WEEKDAYS)) {
    out->days = ALL_DAYS;
    out->weekdays = ALL_WEEKDAYS;
  }
  return 0;
}

/* ---- writing EventBridge fields ---------------------------------------- */

/* Writes the values of set (bits min..max, value v at bit v + shift) as
 * an EventBridge field: "*", "a/k", "a-b/k" or a list of values and
 * ranges. */
static void emit_field(uint64_t set, int min, int max, int shift, char *buf,
                       size_t len)
{
  int values[64];
  int n = 0, v, i, step;

  for (v = min; v <= max; v++)
    if (set & (UINT64_C(1) << (v - shift)))
      values[n++] = v;
  buf[0] = '\0';
  if (n == max - min + 1) {
    append(buf, len, "*");
    return;
  }

  /* Three or more values an equal step apart read best as an increment. */
  step = n >= 3 ? values[1] - values[0] : 0;
  for (i = 2; i < n && step > 1; i++)
    if (values[i] - values[i - 1] != step)
      step = 0;
  if (step > 1) {
    if (values[n - 1] + step > max)
      append(buf, len, "%d/%d", values[0], step);
    else
      append(buf, len, "%d-%d/%d", values[0], values[n - 1], step);
    return;
  }

  for (i = 0; i < n;) {
    int j = i;

    while (j + 1 < n && values[j + 1] == values[j] + 1)
      j++;
    if (j - i >= 2)
      append(buf, len, "%s%d-%d", i > 0 ? "," : "", values[i], values[j]);
    else
      for (v = i; v <= j; v++)
        append(buf, len, "%s%d", v > 0 ? "," : "", values[v]);
    i = j + 1;
  }
}

/* ---- conversion -------------------------------------------------------- */

/* Days that exist in every month, and whose neighbour does too. */
#define DAYS_2_TO_28 ((((UINT32_C(1) << 29) - 1)) & ~UINT32_C(3))
#define DAYS_1_TO_27 ((((UINT32_C(1) << 28) - 1)) & ~UINT32_C(1))

/* A line moved to UTC: the sets the EventBridge fields are written
 * from. */
typedef struct {
  uint64_t minutes;
  uint32_t hours;
  uint32_t days;    /* DOM values, when the line restricts them */
  int last_day;     /* the day-of-month is L */
  uint16_t months;
  uint8_t weekdays; /* crontab numbering, Sunday 0 */
} utc_rule;

/* crontab runs on a day matching either day field when both are
 * restricted, and on a day matching both when one begins with '*' but
 * still restricts (as "*\/2"). One EventBridge rule reads exactly one. */
static int check_day_fields(const cron_line *line, char *err, size_t errlen)
{
  if (line->days == ALL_DAYS || line->weekdays == ALL_WEEKDAYS)
    return 0;
  if (!line->star_dom && !line->star_dow)
    return schedule_fail(err, errlen,
                         "crontab day-of-month, day-of-week: both are "
                         "restricted, so cron runs on a day matching "
                         "either; EventBridge reads only one of them: "
                         "write one rule for each");
  return schedule_fail(err, errlen,
                       "crontab day-of-month, day-of-week: both restrict "
                       "the day and cron needs both to match; one "
                       "EventBridge rule reads only one of them");
}

/* Moves every local time of the day (hour x minute) to UTC at `offset`.
 * The UTC times must again be a product of a minute set and an hour set.
 * *shift is the day they move to (-1, 0, 1), or 2 when they move to
 * different days. */
static int shift_times(const cron_line *line, int32_t offset,
                       const char *off, utc_rule *r, int *shift, char *err,
                       size_t errlen)
{
  int h, m, count = 0, days_seen = 0;

  for (h = 0; h < 24; h++) {
    if (!(line->hours & (UINT32_C(1) << h)))
      continue;
    for (m = 0; m < 60; m++) {
      int u, day;

      if (!(line->minutes & (UINT64_C(1) << m)))
        continue;
      u = h * 60 + m - offset / 60;
      day = u < 0 ? -1 : u >= 1440 ? 1 : 0;
      u -= day * 1440;
      days_seen |= 1 << (day + 1);
      r->minutes |= UINT64_C(1) << (u % 60);
      r->hours |= UINT32_C(1) << (u / 60);
      count++;
    }
  }

  /* Distinct local times stay distinct, so the UTC times fill the product
   * of their minutes and hours exactly when the counts agree. */
  if (__builtin_popcountll(r->minutes) * __builtin_popcount(r->hours) !=
      count)
    return schedule_fail(err, errlen,
                         "crontab: at offset %s the times do not keep the "
                         "same minutes in every hour in UTC; one "
                         "EventBridge rule cannot express them",
                         off);
  *shift = days_seen == 1 ? -1 : days_seen == 2 ? 0 : days_seen == 4 ? 1 : 2;
  return 0;
}

/* Moves the day fields by the day shift of the times, where the result is
 * exact in every month. */
static int shift_days(const cron_line *line, int shift, const char *off,
                      utc_rule *r, char *err, size_t errlen)
{
  int every_day = line->days == ALL_DAYS && line->weekdays == ALL_WEEKDAYS;
  const char *which = shift < 0 ? "previous" : "next";

  r->days = line->days;
  r->months = line->months;
  r->weekdays = line->weekdays;
  if (shift == 0)
    return 0;

  if (shift == 2) {
    /* Some times move to another day than others: fine only when every
     * day of every month runs. */
    if (every_day && line->months == ALL_MONTHS)
      return 0;
    return schedule_fail(err, errlen,
                         "crontab: at offset %s some of the times fall on "
                         "another UTC day than the others, and the line "
                         "does not run every day: write one rule for each "
                         "part",
                         off);
  }

  /* Without a day-of-month, the first or last day of a month moves into
   * its neighbour, which a month set cannot follow. */
  if (line->days == ALL_DAYS && line->months != ALL_MONTHS)
    return schedule_fail(err, errlen,
                         "crontab month: at offset %s the times fall on the "
                         "%s UTC day, which moves some of them into another "
                         "month; one EventBridge rule cannot express it",
                         off, which);
  if (every_day)
    return 0;

  if (line->days == ALL_DAYS) {
    /* Only weekdays restrict the day: they turn with the shift. */
    unsigned w = r->weekdays;

    w = shift > 0 ? (w << 1) | (w >> 6) : (w >> 1) | (w << 6);
    r->weekdays = (uint8_t)(w & ALL_WEEKDAYS);
  } else if (shift < 0 && line->days == (UINT32_C(1) << 1)) {
    /* The 1st moves to the last day of the month before. */
    r->last_day = 1;
    r->months = (uint16_t)(((r->months >> 1) | ((r->months & 2) << 11)) &
                           ALL_MONTHS);
  } else if (shift < 0 && (line->days & ~DAYS_2_TO_28) == 0) {
    r->days >>= 1;
  } else if (shift > 0 && (line->days & ~DAYS_1_TO_27) == 0) {
    r->days <<= 1;
  } else {
    return schedule_fail(err, errlen,
                         "crontab day-of-month: at offset %s the times fall "
                         "on the %s UTC day, and not every month has the "
                         "day before or after the days named; one "
                         "EventBridge rule cannot express it",
                         off, which);
  }
  return 0;
}

/* Writes the EventBridge expression of r: '?' in the day field the line
 * does not restrict, crontab weekdays renumbered, any year. */
static int write_rule(const cron_line *line, const utc_rule *r, char *expr,
                      size_t exprlen, char *err, size_t errlen)
{
  char fmin[256], fhour[128], fdom[128], fmon[64], fdow[32];

  emit_field(r->minutes, 0, 59, 0, fmin, sizeof fmin);
  emit_field(r->hours, 0, 23, 0, fhour, sizeof fhour);
  emit_field(r->months, 1, 12, 0, fmon, sizeof fmon);
  snprintf(fdom, sizeof fdom, "?");
  snprintf(fdow, sizeof fdow, "?");
  if (r->last_day)
    snprintf(fdom, sizeof fdom, "L");
  else if (line->days != ALL_DAYS)
    emit_field(r->days, 1, 31, 0, fdom, sizeof fdom);
  else if (line->weekdays != ALL_WEEKDAYS)
    emit_field(r->weekdays, 1, 7, 1, fdow, sizeof fdow); /* w -> w + 1 */
  else
    snprintf(fdom, sizeof fdom, "*");

  if ((size_t)snprintf(expr, exprlen, "cron(%s %s %s %s %s *)", fmin, fhour,
                       fdom, fmon, fdow) >= exprlen)
    return schedule_fail(err, errlen, "crontab: the expression is too long");
  return 0;
}

/* Builds the UTC expression of line for a zone at `offset` seconds east of
 * UTC. */
static int build(const cron_line *line, int32_t offset, char *expr,
                 size_t exprlen, char *err, size_t errlen)
{
  utc_rule r;
  char off[16];
  int shift = 0;

  memset(&r, 0, sizeof r);
  schedule_offset_format(offset, off, sizeof off);
  if (offset % 60 != 0)
    return schedule_fail(err, errlen,
                         "crontab: the zone's offset %s is not a whole "
                         "minute",
                         off);

  if (check_day_fields(line, err, errlen) < 0 ||
      shift_times(line, offset, off, &r, &shift, err, errlen) < 0 ||
      shift_days(line, shift, off, &r, err, errlen) < 0)
    return -1;
  return write_rule(line, &r, expr, exprlen, err, errlen);
}

/* The offsets are read an hour apart: the year after ref, whose changes
 * are all reported, then up to HORIZON_YEARS in all for a rule that meets
 * no other offset in that year (a date near the change, which moves with
 * the weekdays from year to year; 29 February). */
#define YEAR_HOURS (366 * 24)
#define HORIZON_YEARS 8
#define SEGMENTS_MAX 32

/* The zone's offsets over the `hours` hours after ref, as segments:
 * starts[i] is the first instant of offsets[i], starts[0] is ref. Hourly
 * samples find each change; a bisection then finds its second. Returns
 * the count (at most max), or 0 with a message in err. */
static size_t offset_segments(const char *zone, int64_t ref, int64_t hours,
                              int64_t *starts, int32_t *offsets, size_t max,
                              char *err, size_t errlen)
{
  enum { CHUNK = 31 * 24 };
  int64_t when[CHUNK], before = ref, done = 0;
  int32_t off[CHUNK], before_off;
  size_t count = 0, n, i;

  if (schedule_zone_offsets(zone, &ref, &before_off, 1, err, errlen) < 0)
    return 0;
  starts[count] = ref;
  offsets[count++] = before_off;

  /* A month of samples a call: one TZ switch each, little stack. */
  for (; done < hours && count < max; done += (int64_t)n) {
    n = hours - done < CHUNK ? (size_t)(hours - done) : CHUNK;
    for (i = 0; i < n; i++)
      when[i] = ref + (done + (int64_t)i + 1) * 3600;
    if (schedule_zone_offsets(zone, when, off, n, err, errlen) < 0)
      return 0;

    for (i = 0; i < n && count < max; i++) {
      int64_t lo = before, hi = when[i];
      int32_t o;

      if (off[i] != before_off) {
        while (hi - lo > 1) {
          int64_t mid = lo + (hi - lo) / 2;

          if (schedule_zone_offsets(zone, &mid, &o, 1, err, errlen) < 0)
            return 0;
          if (o == before_off)
            lo = mid;
          else
            hi = mid;
        }
        starts[count] = hi;
        offsets[count++] = off[i];
      }
      before = when[i];
      before_off = off[i];
    }
  }
  return count;
}

/* Whether s fires at least once at or after `from` and before `until`. */
static int fires_between(const schedule *s, int64_t from, int64_t until)
{
  int64_t fire;

  return schedule_next(s, from, &fire) && fire < until;
}

/* Appends to out->warning that out->expr, kept for offset `base`, fires
 * at other local times from `from` to `until` (-1: past what was read,
 * told by `beyond`) while the zone is at `offset`. Nothing when the rule
 * reads the same at that offset (every hour, every five minutes). */
static void warn_drift(const cron_line *line, const char *zone,
                       int32_t base, int32_t offset, int64_t from,
                       int64_t until, const char *beyond, crontab_rule *out)
{
  char alt[CRONTAB_EXPR_MAX], why[SCHEDULE_ERR_MAX];
  char start[SCHEDULE_TIME_MAX], end[32];
  char base_text[16], now[16], drift_text[48];
  int32_t drift = offset - base;
  int32_t size = drift < 0 ? -drift : drift;
  int alt_ok = build(line, offset, alt, sizeof alt, why, sizeof why) == 0;

  if (alt_ok && strcmp(alt, out->expr) == 0)
    return;
  schedule_offset_format(base, base_text, sizeof base_text);
  schedule_offset_format(offset, now, sizeof now);
  schedule_time_format(from, start, sizeof start);
  if (until >= 0)
    schedule_time_format(until, end, sizeof end);
  else
    snprintf(end, sizeof end, "%s", beyond);
  if (size % 3600 == 0)
    snprintf(drift_text, sizeof drift_text, "%d hour%s", (int)(size / 3600),
             size == 3600 ? "" : "s");
  else
    snprintf(drift_text, sizeof drift_text, "%d minutes", (int)(size / 60));

  append(out->warning, sizeof out->warning,
         "%s observes daylight saving: the rule keeps the local times at "
         "offset %s; from %s to %s (offset %s) it fires %s %s in local "
         "time",
         zone, base_text, start, end, now, drift_text,
         drift > 0 ? "later" : "earlier");
  if (alt_ok)
    append(out->warning, sizeof out->warning, "; %s keeps them then\n", alt);
  else
    append(out->warning, sizeof out->warning, "; at that offset: %s\n", why);
}

/* Warns of each period of another offset in the year after ref in which
 * the rule fires: only its fires then come at other local times. When it
 * fires in none, the years after are searched for the first such period,
 * so a date the change reaches only in some years is still told. */
static int warn_drifts(const cron_line *line, const schedule *rule,
                       const char *zone, int64_t ref, const int64_t *starts,
                       const int32_t *offsets, size_t segments,
                       crontab_rule *out, char *err, size_t errlen)
{
  int64_t year_end = ref + (int64_t)YEAR_HOURS * 3600;
  int64_t horizon_end = ref + (int64_t)HORIZON_YEARS * YEAR_HOURS * 3600;
  int64_t later_starts[SEGMENTS_MAX];
  int32_t later_offsets[SEGMENTS_MAX];
  size_t i, later;
  int met = 0;

  for (i = 1; i < segments; i++) {
    int64_t until = i + 1 < segments ? starts[i + 1] : year_end;

    if (offsets[i] == offsets[0] || !fires_between(rule, starts[i], until))
      continue;
    met = 1;
    warn_drift(line, zone, offsets[0], offsets[i], starts[i],
               i + 1 < segments ? starts[i + 1] : -1, "beyond a year", out);
  }
  if (met || segments == 1)
    return 0;

  later = offset_segments(zone, year_end, (horizon_end - year_end) / 3600,
                          later_starts, later_offsets, SEGMENTS_MAX, err,
                          errlen);
  if (later == 0)
    return -1;
  for (i = 0; i < later; i++) {
    int64_t until = i + 1 < later ? later_starts[i + 1] : horizon_end;

    if (later_offsets[i] == offsets[0] ||
        !fires_between(rule, later_starts[i], until))
      continue;
    /* The first segment goes on from the year's last one. */
    warn_drift(line, zone, offsets[0], later_offsets[i],
               i == 0 ? starts[segments - 1] : later_starts[i],
               i + 1 < later ? later_starts[i + 1] : -1,
               "beyond the years read", out);
    break;
  }
  return 0;
}

int crontab_convert(const char *line, const char *zone, int64_t ref,
                    crontab_rule *out, char *err, size_t errlen)
{
  cron_line parsed;
  schedule rule;
  int64_t starts[SEGMENTS_MAX], fire;
  int32_t offsets[SEGMENTS_MAX];
  size_t segments = 1;
  char why[SCHEDULE_ERR_MAX], when[SCHEDULE_TIME_MAX];

  out->expr[0] = '\0';
  out->warning[0] = '\0';
  if (parse_line(line, &parsed, err, errlen) < 0)
    return -1;

  offsets[0] = 0;
  if (zone != NULL && strcmp(zone, "UTC") != 0) {
    segments = offset_segments(zone, ref, YEAR_HOURS, starts, offsets,
                               SEGMENTS_MAX, err, errlen);
    if (segments == 0)
      return -1;
  }
  if (build(&parsed, offsets[0], out->expr, sizeof out->expr, err, errlen) < 0)
    return -1;
  /* The fire times decide the warnings, so the rule is read as
   * EventBridge would read it. */
  if (schedule_parse(out->expr, &rule, why, sizeof why) < 0)
    return schedule_fail(err, errlen,
                         "crontab: the conversion gave %s, which is "
                         "invalid: %s",
                         out->expr, why);

  /* A line that names only days no month has (31 February) gives a rule
   * EventBridge accepts and that never runs the job: jobhost check warns
   * of such a schedule, and so does the conversion. It drifts nowhere. */
  if (!schedule_next(&rule, ref, &fire)) {
    schedule_time_format(ref, when, sizeof when);
    append(out->warning, sizeof out->warning,
           "schedule %s never fires at or after %s: %s\n", out->expr, when,
           schedule_end_reason(&rule, ref));
    return 0;
  }
  return warn_drifts(&parsed, &rule, zone, ref, starts, offsets, segments,
                     out, err, errlen);
}
