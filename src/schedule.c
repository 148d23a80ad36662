/* schedule.c: EventBridge cron() and rate() expressions for scheduled
 * rules. The parser turns each cron field into a bit set and records the
 * day specials (L, LW, nW, nL, n#k); the fire search then walks year,
 * month, day, hour and minute, jumping to the next set bit of each, so a
 * schedule that fires once a year costs as little as one that fires every
 * minute. All calendar arithmetic is proleptic Gregorian in UTC; the zone
 * helpers at the end only serve the --tz displays of the CLI. */
#include "schedule.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Longest expression accepted; a list of every minute fits with room. */
#define EXPR_MAX 1024

enum { F_MINUTES, F_HOURS, F_DOM, F_MONTH, F_DOW, F_YEAR, F_COUNT };

const char *const schedule_month_names[12] = {"JAN", "FEB", "MAR", "APR",
                                              "MAY", "JUN", "JUL", "AUG",
                                              "SEP", "OCT", "NOV", "DEC"};
const char *const schedule_weekday_names[7] = {"SUN", "MON", "TUE", "WED",
                                               "THU", "FRI", "SAT"};

/* What each cron field takes. Values are stored in a bit set at bit
 * (value - base): base is 0 except for the year. */
typedef struct {
  const char *name;         /* the field's name in messages */
  int min, max;             /* the value range */
  int base;                 /* bit of value v is v - base */
  const char *const *names; /* names for min..max, or NULL */
  const char *name_hint;    /* "JAN-DEC" */
  int step_max;             /* the largest '/' increment; 0: none */
} field_spec;

/* An increment may be as large as the field's largest value (the year's:
 * its span); larger ones could name only the start. */
static const field_spec field_specs[F_COUNT] = {
    {"minutes", 0, 59, 0, NULL, NULL, 59},
    {"hours", 0, 23, 0, NULL, NULL, 23},
    {"day-of-month", 1, 31, 0, NULL, NULL, 31},
    {"month", 1, 12, 0, schedule_month_names, "JAN-DEC", 12},
    /* EventBridge lists no '/' among the day-of-week wildcards. */
    {"day-of-week", 1, 7, 0, schedule_weekday_names, "SUN-SAT", 0},
    {"year", SCHEDULE_YEAR_MIN, SCHEDULE_YEAR_MAX, SCHEDULE_YEAR_MIN, NULL,
     NULL, SCHEDULE_YEAR_MAX - SCHEDULE_YEAR_MIN},
};

/* A field's values while parsing: up to 256 bits. */
typedef struct {
  uint64_t w[4];
} bitset;

int schedule_fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (err != NULL && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

void schedule_offset_format(int32_t offset, char *buf, size_t len)
{
  int32_t size = offset < 0 ? -offset : offset;

  snprintf(buf, len, "%c%02d:%02d", offset < 0 ? '-' : '+', (int)(size / 3600),
           (int)(size / 60 % 60));
}

/* ---- calendar arithmetic ---------------------------------------------- */

/* Days from 1970-01-01 to the given date. Years are counted from March so
 * that the leap day falls at the end of a counted year; 400 years make an
 * era of exactly 146097 days. */
static int64_t days_from_civil(int year, int month, int day)
{
  int64_t y = (int64_t)year - (month <= 2);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t year_of_era = y - era * 400;
  int64_t month_from_march = (month + 9) % 12;
  int64_t day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
  int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;

  return era * 146097 + day_of_era - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t day_of_era = z - era * 146097;
  int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 -
                         day_of_era / 146096) /
                        365;
  int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  int64_t month_from_march = (5 * day_of_year + 2) / 153;
  int m = (int)(month_from_march < 10 ? month_from_march + 3
                                      : month_from_march - 9);

  *day = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
  *month = m;
  *year = (int)(year_of_era + era * 400 + (m <= 2));
}

static int is_leap(int year)
{
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month)
{
  static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

  return month == 2 && is_leap(year) ? 29 : len[month - 1];
}

/* Weekday of a day count since the epoch: 1 = SUN .. 7 = SAT. The epoch
 * was a Thursday. */
static int weekday_of_days(int64_t days)
{
  int64_t w = (days + 4) % 7;

  return (int)(w < 0 ? w + 7 : w) + 1;
}

static int64_t floor_div(int64_t a, int64_t b)
{
  int64_t q = a / b;

  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void schedule_civil_of(int64_t t, int32_t offset, schedule_civil *out)
{
  int64_t local = t + offset;
  int64_t days = floor_div(local, 86400);
  int64_t secs = local - days * 86400;

  civil_from_days(days, &out->year, &out->month, &out->day);
  out->hour = (int)(secs / 3600);
  out->minute = (int)(secs / 60 % 60);
  out->second = (int)(secs % 60);
  out->weekday = weekday_of_days(days);
}

/* ---- bit sets ----------------------------------------------------------- */

/* The lowest set bit of mask at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
  if (from < 0)
    from = 0;
  if (from >= 64)
    return -1;
  mask &= ~UINT64_C(0) << from;
  return mask == 0 ? -1 : __builtin_ctzll(mask);
}

static void bitset_add(bitset *b, int bit)
{
  b->w[bit / 64] |= UINT64_C(1) << (bit % 64);
}

/* The first year at or after `year` that the year field names, or -1. */
static int next_year(const schedule *s, int year)
{
  int bit;

  if (year < SCHEDULE_YEAR_MIN)
    year = SCHEDULE_YEAR_MIN;
  for (bit = year - SCHEDULE_YEAR_MIN; bit < 256; bit = (bit / 64 + 1) * 64) {
    int found = next_bit(s->years[bit / 64], bit % 64);

    if (found >= 0)
      return SCHEDULE_YEAR_MIN + (bit / 64) * 64 + found;
  }
  return -1;
}

/* ---- parsing ------------------------------------------------------------ */

/* Reads one value of field fs at *p: a number or, where the field has
 * them, a three-letter name in any case. Advances *p past it. */
static int parse_value(const field_spec *fs, const char **p, int *value,
                       char *err, size_t errlen)
{
  const char *s = *p;
  long v = 0;
  int digits = 0;

  if (isdigit((unsigned char)*s)) {
    while (isdigit((unsigned char)*s)) {
      if (++digits > 4)
        return schedule_fail(err, errlen, "%s: '%s' is out of range %d-%d",
                             fs->name, *p, fs->min, fs->max);
      v = v * 10 + (*s++ - '0');
    }
    if (v < fs->min || v > fs->max)
      return schedule_fail(err, errlen, "%s: %ld is out of range %d-%d",
                           fs->name, v, fs->min, fs->max);
    *value = (int)v;
    *p = s;
    return 0;
  }

  if (isalpha((unsigned char)*s)) {
    int i, count = fs->max - fs->min + 1;

    if (fs->names != NULL && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
      for (i = 0; i < count; i++) {
        if (strncasecmp(s, fs->names[i], 3) == 0) {
          *value = fs->min + i;
          *p = s + 3;
          return 0;
        }
      }
    }
    if (fs->names != NULL)
      return schedule_fail(err, errlen,
                           "%s: unknown name in '%s' (names are %s)", fs->name,
                           *p, fs->name_hint);
    return schedule_fail(err, errlen, "%s: '%s' is not a number", fs->name, *p);
  }

  if (*s == '\0')
    return schedule_fail(err, errlen, "%s: a value is missing", fs->name);
  return schedule_fail(err, errlen, "%s: unexpected '%c' in '%s'", fs->name, *s,
                       *p);
}

/* Reads the k of an increment "/k". */
static int parse_step(const field_spec *fs, const char **p, int *step,
                      char *err, size_t errlen)
{
  const char *s = *p;
  int limit = fs->step_max;
  long v = 0;
  int digits = 0;

  if (limit == 0)
    return schedule_fail(err, errlen, "%s: increments ('/') are not allowed",
                         fs->name);
  while (isdigit((unsigned char)*s)) {
    if (++digits > 4)
      break;
    v = v * 10 + (*s++ - '0');
  }
  if (digits == 0 || digits > 4 || v < 1 || v > limit)
    return schedule_fail(err, errlen,
                         "%s: the increment after '/' must be a number "
                         "from 1 to %d",
                         fs->name, limit);
  *step = (int)v;
  *p = s;
  return 0;
}

/* Adds the values from `first` through `last` (wrapping past the field's
 * maximum to its minimum when first > last), every step-th one. */
static void add_range(const field_spec *fs, bitset *set, int first, int last,
                      int step)
{
  int span = fs->max - fs->min + 1;
  int count = (last - first + span) % span + 1;
  int i;

  for (i = 0; i < count; i += step)
    bitset_add(set, fs->min + (first - fs->min + i) % span - fs->base);
}

/* Parses one element of a list: "*", "*\/k", "a", "a-b", "a/k", "a-b/k". */
static int parse_element(const field_spec *fs, const char *elem, bitset *set,
                         char *err, size_t errlen)
{
  const char *p = elem;
  int first, last, step = 1, is_range = 0;

  if (*p == '*') {
    p++;
    first = fs->min;
    last = fs->max;
    if (*p == '/') {
      p++;
      if (parse_step(fs, &p, &step, err, errlen) < 0)
        return -1;
    }
  } else {
    if (parse_value(fs, &p, &first, err, errlen) < 0)
      return -1;
    last = first;
    if (*p == '-') {
      p++;
      is_range = 1;
      if (parse_value(fs, &p, &last, err, errlen) < 0)
        return -1;
    }
    if (*p == '/') {
      p++;
      if (parse_step(fs, &p, &step, err, errlen) < 0)
        return -1;
      if (!is_range)
        last = fs->max; /* "a/k": from a up to the maximum */
    }
  }

  if (*p != '\0')
    return schedule_fail(err, errlen, "%s: unexpected '%c' in '%s'", fs->name,
                         *p, elem);
  add_range(fs, set, first, last, step);
  return 0;
}

/* Parses a comma list of elements into set. */
static int parse_list(const field_spec *fs, const char *text, bitset *set,
                      char *err, size_t errlen)
{
  char elem[EXPR_MAX];
  const char *p = text;

  memset(set, 0, sizeof *set);
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

    if (len == 0)
      return schedule_fail(err, errlen, "%s: empty element in list '%s'",
                           fs->name, text);
    memcpy(elem, p, len);
    elem[len] = '\0';
    if (strcmp(elem, "?") == 0)
      return schedule_fail(err, errlen, "%s: '?' must stand alone in its field",
                           fs->name);
    if (parse_element(fs, elem, set, err, errlen) < 0)
      return -1;
    if (comma == NULL)
      return 0;
    p = comma + 1;
  }
}

/* Reads an unsigned number that makes up all of text, or -1. */
static long whole_number(const char *text, size_t len)
{
  long v = 0;
  size_t i;

  if (len == 0 || len > 4)
    return -1;
  for (i = 0; i < len; i++) {
    if (!isdigit((unsigned char)text[i]))
      return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

/* The day-of-month field: '?', L, LW, nW or an ordinary list. */
static int parse_dom(schedule *s, const char *text, char *err, size_t errlen)
{
  const field_spec *fs = &field_specs[F_DOM];
  size_t len = strlen(text);
  bitset set;

  if (strcmp(text, "?") == 0) {
    s->dom_mode = SCHEDULE_DOM_ANY;
    return 0;
  }
  if (strpbrk(text, "LlWw") == NULL) {
    if (parse_list(fs, text, &set, err, errlen) < 0)
      return -1;
    s->dom_mode = SCHEDULE_DOM_SET;
    s->days = (uint32_t)set.w[0];
    return 0;
  }

  if (strcasecmp(text, "L") == 0) {
    s->dom_mode = SCHEDULE_DOM_LAST;
    return 0;
  }
  if (strcasecmp(text, "LW") == 0) {
    s->dom_mode = SCHEDULE_DOM_LAST_WEEKDAY;
    return 0;
  }
  if (len >= 2 && toupper((unsigned char)text[len - 1]) == 'W') {
    long day = whole_number(text, len - 1);

    if (day >= 0) {
      if (day < 1 || day > 31)
        return schedule_fail(err, errlen,
                             "day-of-month: in nW, n must be from 1 to "
                             "31 (got %ld)",
                             day);
      s->dom_mode = SCHEDULE_DOM_NEAREST_WEEKDAY;
      s->dom_day = (int)day;
      return 0;
    }
  }
  return schedule_fail(err, errlen,
                       "day-of-month: 'L' and 'W' stand alone in the "
                       "field, as L, LW or nW (got '%s')",
                       text);
}

/* Reads a weekday (number or name) that makes up all of text[0..len). */
static int weekday_value(const char *text, size_t len, int *value, char *err,
                         size_t errlen)
{
  const field_spec *fs = &field_specs[F_DOW];
  char buf[EXPR_MAX];
  const char *p = buf;

  memcpy(buf, text, len);
  buf[len] = '\0';
  if (parse_value(fs, &p, value, err, errlen) < 0)
    return -1;
  if (*p != '\0')
    return schedule_fail(err, errlen,
                         "day-of-week: '%s' is not a weekday (1-7 or "
                         "SUN-SAT)",
                         buf);
  return 0;
}

/* The day-of-week field: '?', L, nL, n#k or an ordinary list. */
static int parse_dow(schedule *s, const char *text, char *err, size_t errlen)
{
  const field_spec *fs = &field_specs[F_DOW];
  size_t len = strlen(text);
  const char *hash = strchr(text, '#');
  bitset set;

  if (strcmp(text, "?") == 0) {
    s->dow_mode = SCHEDULE_DOW_ANY;
    return 0;
  }

  if (hash != NULL) {
    long nth;

    if (strchr(text, ',') != NULL || strchr(hash + 1, '#') != NULL)
      return schedule_fail(
          err, errlen,
          "day-of-week: only one '#' expression may "
          "appear in the field, and nothing beside it (got '%s')",
          text);
    if (weekday_value(text, (size_t)(hash - text), &s->dow_day, err, errlen) <
        0)
      return -1;
    nth = whole_number(hash + 1, strlen(hash + 1));
    if (nth < 1 || nth > 5)
      return schedule_fail(err, errlen,
                           "day-of-week: in n#k, k must be from 1 to 5 "
                           "(got '%s')",
                           hash + 1);
    s->dow_mode = SCHEDULE_DOW_NTH;
    s->dow_nth = (int)nth;
    return 0;
  }

  if (strpbrk(text, "Ll") != NULL) {
    if (strcasecmp(text, "L") == 0) {
      /* L alone is the last day of the week: Saturday. */
      s->dow_mode = SCHEDULE_DOW_SET;
      s->weekdays = (uint8_t)(1u << 7);
      return 0;
    }
    if (len >= 2 && toupper((unsigned char)text[len - 1]) == 'L' &&
        strpbrk(text, ",-/*") == NULL) {
      if (weekday_value(text, len - 1, &s->dow_day, err, errlen) < 0)
        return -1;
      s->dow_mode = SCHEDULE_DOW_LAST;
      return 0;
    }
    return schedule_fail(err, errlen,
                         "day-of-week: 'L' stands alone in the field, "
                         "as L or nL (got '%s')",
                         text);
  }

  if (parse_list(fs, text, &set, err, errlen) < 0)
    return -1;
  s->dow_mode = SCHEDULE_DOW_SET;
  s->weekdays = (uint8_t)set.w[0];
  return 0;
}

/* Parses the six fields of a cron() expression (text between the
 * parentheses). */
static int parse_cron(const char *body, schedule *s, char *err, size_t errlen)
{
  char buf[EXPR_MAX];
  char *field[F_COUNT];
  char *p = buf;
  int count = 0, i;
  bitset set;

  snprintf(buf, sizeof buf, "%s", body);
  for (;;) {
    while (*p == ' ' || *p == '\t')
      *p++ = '\0';
    if (*p == '\0')
      break;
    if (count < F_COUNT)
      field[count] = p;
    count++;
    while (*p != '\0' && *p != ' ' && *p != '\t')
      p++;
  }
  if (count != F_COUNT)
    return schedule_fail(err, errlen,
                         "cron(): needs exactly 6 fields (minutes hours "
                         "day-of-month month day-of-week year), found %d%s",
                         count,
                         count == 5   ? " (the year is missing?)"
                         : count == 7 ? " (a seconds field first?)"
                                      : "");

  for (i = 0; i < F_COUNT; i++) {
    if (i != F_DOM && i != F_DOW && strchr(field[i], '?') != NULL)
      return schedule_fail(err, errlen,
                           "%s: '?' is allowed only in day-of-month or "
                           "day-of-week",
                           field_specs[i].name);
  }

  if (parse_list(&field_specs[F_MINUTES], field[F_MINUTES], &set, err, errlen) <
      0)
    return -1;
  s->minutes = set.w[0];
  if (parse_list(&field_specs[F_HOURS], field[F_HOURS], &set, err, errlen) < 0)
    return -1;
  s->hours = (uint32_t)set.w[0];
  if (parse_dom(s, field[F_DOM], err, errlen) < 0)
    return -1;
  if (parse_list(&field_specs[F_MONTH], field[F_MONTH], &set, err, errlen) < 0)
    return -1;
  s->months = (uint16_t)set.w[0];
  if (parse_dow(s, field[F_DOW], err, errlen) < 0)
    return -1;
  if (parse_list(&field_specs[F_YEAR], field[F_YEAR], &set, err, errlen) < 0)
    return -1;
  memcpy(s->years, set.w, sizeof s->years);

  /* EventBridge takes the day from exactly one of the two day fields. */
  if (s->dom_mode == SCHEDULE_DOM_ANY && s->dow_mode == SCHEDULE_DOW_ANY)
    return schedule_fail(err, errlen,
                         "day-of-month, day-of-week: exactly one of the "
                         "two must be '?', not both");
  if (s->dom_mode != SCHEDULE_DOM_ANY && s->dow_mode != SCHEDULE_DOW_ANY)
    return schedule_fail(
        err, errlen,
        "day-of-month, day-of-week: exactly one of the "
        "two must be '?' (got '%s' and '%s'); put '?' in the field "
        "that does not pick the days",
        field[F_DOM], field[F_DOW]);
  return 0;
}

/* Whether s (len bytes) reads like a classic crontab schedule: five
 * fields of digits and * , - / or an @ shorthand, with no parentheses. */
static int looks_like_crontab(const char *s, size_t len)
{
  size_t i, fields = 0;
  int in_field = 0;

  if (len > 1 && s[0] == '@')
    return 1;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (c == ' ' || c == '\t') {
      in_field = 0;
    } else if (isdigit((unsigned char)c) || strchr("*,-/", c)) {
      fields += !in_field;
      in_field = 1;
    } else {
      return 0;
    }
  }
  return fields == 5;
}

/* Parses the "Value Unit" of a rate() expression. */
static int parse_rate(const char *body, schedule *s, char *err, size_t errlen)
{
  static const struct {
    const char *one, *many;
    int64_t seconds;
  } units[] = {{"minute", "minutes", 60},
               {"hour", "hours", 3600},
               {"day", "days", 86400}};
  const char *p = body;
  const char *unit;
  int64_t value = 0;
  size_t i;
  int digits = 0;

  while (*p == ' ')
    p++;
  while (isdigit((unsigned char)*p)) {
    if (++digits > 9)
      return schedule_fail(err, errlen,
                           "rate(): the value is too large (at most "
                           "999999999)");
    value = value * 10 + (*p++ - '0');
  }
  if (digits == 0 || (*p != ' ' && *p != '\0'))
    return schedule_fail(err, errlen,
                         "rate(): the value must be a positive integer, "
                         "as in rate(5 minutes)");
  if (value == 0)
    return schedule_fail(err, errlen,
                         "rate(): the value must be a positive integer, "
                         "not 0");
  while (*p == ' ')
    p++;
  unit = p;
  while (*p != '\0' && *p != ' ')
    p++;
  for (i = 0; i < sizeof units / sizeof units[0]; i++) {
    size_t len = (size_t)(p - unit);
    int is_one =
        strlen(units[i].one) == len && strncmp(unit, units[i].one, len) == 0;
    int is_many =
        strlen(units[i].many) == len && strncmp(unit, units[i].many, len) == 0;

    if (!is_one && !is_many)
      continue;
    while (*p == ' ')
      p++;
    if (*p != '\0')
      return schedule_fail(err, errlen,
                           "rate(): unexpected '%s' after the unit", p);
    if (value == 1 && is_many)
      return schedule_fail(err, errlen,
                           "rate(): value 1 needs the singular unit: "
                           "rate(1 %s)",
                           units[i].one);
    if (value > 1 && is_one)
      return schedule_fail(err, errlen,
                           "rate(): a value above 1 needs the plural "
                           "unit: rate(%lld %s)",
                           (long long)value, units[i].many);
    s->kind = SCHEDULE_RATE;
    s->rate_seconds = value * units[i].seconds;
    return 0;
  }
  if (p == unit)
    return schedule_fail(err, errlen,
                         "rate(): the unit is missing: minute(s), "
                         "hour(s) or day(s)");
  return schedule_fail(err, errlen,
                       "rate(): the unit must be minute(s), hour(s) or "
                       "day(s), not '%.*s'",
                       (int)(p - unit), unit);
}

int schedule_parse(const char *expr, schedule *out, char *err, size_t errlen)
{
  char body[EXPR_MAX];
  const char *start = expr;
  const char *end;
  size_t len;
  int is_cron;

  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (expr == NULL)
    return schedule_fail(err, errlen, "no schedule expression");

  while (isspace((unsigned char)*start))
    start++;
  end = start + strlen(start);
  while (end > start && isspace((unsigned char)end[-1]))
    end--;
  len = (size_t)(end - start);
  if (len >= EXPR_MAX)
    return schedule_fail(err, errlen,
                         "the expression is too long (at most %d "
                         "characters)",
                         EXPR_MAX - 1);

  if (len >= 5 && strncmp(start, "cron(", 5) == 0)
    is_cron = 1;
  else if (len >= 5 && strncmp(start, "rate(", 5) == 0)
    is_cron = 0;
  else
    return schedule_fail(
        err, errlen,
        "not a schedule expression: expected "
        "cron(minutes hours day-of-month month day-of-week year) "
        "or rate(value unit)%s",
        looks_like_crontab(start, len)
            ? "; this looks like a crontab line: `jobhost schedule "
              "--from-crontab 'LINE'` converts it"
            : "");

  if (end[-1] != ')') {
    const char *close = memchr(start, ')', len);

    if (close != NULL)
      return schedule_fail(err, errlen, "%s: unexpected '%.*s' after the "
                           "closing parenthesis", is_cron ? "cron()" : "rate()",
                           (int)(end - close - 1), close + 1);
    return schedule_fail(err, errlen, "%s: missing closing parenthesis",
                         is_cron ? "cron()" : "rate()");
  }
  memcpy(body, start + 5, len - 6);
  body[len - 6] = '\0';
  if (strpbrk(body, "()") != NULL)
    return schedule_fail(err, errlen, "%s: unexpected parenthesis inside",
                         is_cron ? "cron()" : "rate()");

  if (!is_cron)
    return parse_rate(body, out, err, errlen);
  out->kind = SCHEDULE_CRON;
  return parse_cron(body, out, err, errlen);
}

int schedule_validate(const char *expr, char *err, size_t errlen)
{
  schedule s;

  return schedule_parse(expr, &s, err, errlen);
}

/* ---- fire times --------------------------------------------------------- */

/* The days of year-month that the day fields pick: bit d for day d. */
static uint64_t day_mask(const schedule *s, int year, int month)
{
  int len = days_in_month(year, month);
  int64_t first_days = days_from_civil(year, month, 1);
  int first = weekday_of_days(first_days);       /* weekday of the 1st */
  int last = (first - 1 + len - 1) % 7 + 1;      /* of the last day */
  uint64_t all = (UINT64_C(1) << (len + 1)) - 2; /* bits 1..len */
  int day, w;

  switch (s->dom_mode) {
  case SCHEDULE_DOM_SET: return s->days & all;
  case SCHEDULE_DOM_LAST: return UINT64_C(1) << len;
  case SCHEDULE_DOM_LAST_WEEKDAY:
    day = last == 7 ? len - 1 : last == 1 ? len - 2 : len;
    return UINT64_C(1) << day;
  case SCHEDULE_DOM_NEAREST_WEEKDAY:
    /* A day the month lacks does not exist, so nothing moves to it. */
    day = s->dom_day;
    if (day > len)
      return 0;
    w = (first - 1 + day - 1) % 7 + 1;
    if (w == 7) /* Saturday: Friday, or Monday the 3rd for the 1st */
      day = day == 1 ? 3 : day - 1;
    else if (w == 1) /* Sunday: Monday, or Friday for the last day */
      day = day == len ? day - 2 : day + 1;
    return UINT64_C(1) << day;
  case SCHEDULE_DOM_ANY: break;
  }

  switch (s->dow_mode) {
  case SCHEDULE_DOW_SET: {
    uint64_t mask = 0;

    for (w = 1; w <= 7; w++) {
      if (!(s->weekdays & (1u << w)))
        continue;
      for (day = 1 + (w - first + 7) % 7; day <= len; day += 7)
        mask |= UINT64_C(1) << day;
    }
    return mask;
  }
  case SCHEDULE_DOW_LAST:
    return UINT64_C(1) << (len - (last - s->dow_day + 7) % 7);
  case SCHEDULE_DOW_NTH:
    day = 1 + (s->dow_day - first + 7) % 7 + 7 * (s->dow_nth - 1);
    return day <= len ? UINT64_C(1) << day : 0;
  case SCHEDULE_DOW_ANY: break;
  }
  return all;
}

/* The first cron() fire at or after t (t >= 0, a whole minute). Each step
 * either returns or moves a field forward and resets the smaller ones, so
 * the loop is bounded by the months left before 2199. */
static int cron_next(const schedule *s, int64_t t, int64_t *fire)
{
  schedule_civil c;
  int year, month, day, hour, minute;

  schedule_civil_of(t, 0, &c);
  year = c.year;
  month = c.month;
  day = c.day;
  hour = c.hour;
  minute = c.minute;

  for (;;) {
    int found = next_year(s, year);

    if (found < 0)
      return 0;
    if (found != year) {
      year = found;
      month = 1, day = 1, hour = 0, minute = 0;
    }

    found = next_bit(s->months, month);
    if (found < 0) {
      year++;
      month = 1, day = 1, hour = 0, minute = 0;
      continue;
    }
    if (found != month) {
      month = found;
      day = 1, hour = 0, minute = 0;
    }

    found = next_bit(day_mask(s, year, month), day);
    if (found < 0) {
      month++;
      day = 1, hour = 0, minute = 0;
      continue;
    }
    if (found != day) {
      day = found;
      hour = 0, minute = 0;
    }

    found = next_bit(s->hours, hour);
    if (found < 0) {
      day++;
      hour = 0, minute = 0;
      continue;
    }
    if (found != hour) {
      hour = found;
      minute = 0;
    }

    found = next_bit(s->minutes, minute);
    if (found < 0) {
      hour++;
      minute = 0;
      continue;
    }
    *fire =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + found * 60;
    return 1;
  }
}

/* rate() fires are not listed past the end of year 9999. */
#define RATE_LAST INT64_C(253402300799)

int schedule_next(const schedule *s, int64_t from, int64_t *fire)
{
  int64_t t;

  if (s->kind == SCHEDULE_RATE) {
    if (from > RATE_LAST - s->rate_seconds)
      return 0;
    *fire = from + s->rate_seconds;
    return 1;
  }

  /* Round up to a whole minute: a fire at :00 of a minute whose seconds
   * have begun is before the start instant. */
  t = from < 0 ? 0 : from;
  t = floor_div(t + 59, 60) * 60;
  return cron_next(s, t, fire);
}

const char *schedule_end_reason(const schedule *s, int64_t from)
{
  schedule_civil at;

  if (s->kind == SCHEDULE_RATE)
    return "its next fire would be after the year 9999";
  schedule_civil_of(from, 0, &at);
  if (next_year(s, at.year) < 0)
    return "the year field has run out";
  return "no date left in the years it names matches its day-of-month, "
         "month and day-of-week fields, as with 31 February";
}

size_t schedule_fires(const schedule *s, int64_t from, int64_t *out, size_t n)
{
  size_t count = 0;
  int64_t t = from;

  while (count < n) {
    int64_t fire;

    if (!schedule_next(s, t, &fire))
      break;
    out[count++] = fire;
    t = s->kind == SCHEDULE_RATE ? fire : fire + 60;
  }
  return count;
}

/* ---- instants ----------------------------------------------------------- */

/* Reads exactly `digits` digits at *p. */
static int read_digits(const char **p, int digits, int *value)
{
  int v = 0;

  while (digits-- > 0) {
    if (!isdigit((unsigned char)**p))
      return -1;
    v = v * 10 + (*(*p)++ - '0');
  }
  *value = v;
  return 0;
}

/* The months as messages about a date name them. */
static const char *const month_full_names[12] = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};

int schedule_time_parse(const char *text, int64_t *t, char *err, size_t errlen)
{
  const char *p = text;
  int y, mo, d, h, mi, sec = 0, oh = 0, om = 0, sign = 0;

  if (read_digits(&p, 4, &y) < 0 || *p++ != '-' ||
      read_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
      read_digits(&p, 2, &d) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
    goto bad;
  p++;
  if (read_digits(&p, 2, &h) < 0 || *p++ != ':' || read_digits(&p, 2, &mi) < 0)
    goto bad;
  if (*p == ':') {
    p++;
    if (read_digits(&p, 2, &sec) < 0)
      goto bad;
    if (*p == '.') /* fractions of a second do not change the minute */
      for (p++; isdigit((unsigned char)*p); p++)
        ;
  }
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    sign = *p++ == '+' ? 1 : -1;
    if (read_digits(&p, 2, &oh) < 0)
      goto bad;
    if (*p == ':')
      p++;
    if (read_digits(&p, 2, &om) < 0)
      goto bad;
  }
  if (*p != '\0')
    goto bad;

  /* Each field that is out of range is named: blaming the year for 30
   * February sends the reader to the wrong field. */
  if (mo < 1 || mo > 12)
    return schedule_fail(err, errlen,
                         "'%s' is not a valid date: there is no month %02d",
                         text, mo);
  if (d < 1)
    return schedule_fail(err, errlen,
                         "'%s' is not a valid date: there is no day 00",
                         text);
  if (d > days_in_month(y, mo))
    return schedule_fail(err, errlen,
                         "'%s' is not a valid date: %s %04d has no day %d "
                         "(it has %d days)",
                         text, month_full_names[mo - 1], y, d,
                         days_in_month(y, mo));
  if (h > 23 || mi > 59 || sec > 59)
    return schedule_fail(err, errlen,
                         "'%s' is not a valid time of day (00:00:00 to "
                         "23:59:59)",
                         text);
  if (oh > 23 || om > 59)
    return schedule_fail(err, errlen,
                         "'%s' is not a valid offset from UTC (at most "
                         "23:59 either way)",
                         text);
  if (y < SCHEDULE_YEAR_MIN)
    return schedule_fail(err, errlen,
                         "'%s' is not a valid instant (year 1970 or "
                         "later)",
                         text);
  *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
       sign * (oh * 3600 + om * 60);
  return 0;

bad:
  return schedule_fail(err, errlen,
                       "'%s' is not an ISO-8601 instant such as "
                       "2025-03-01T10:00:00Z",
                       text);
}

void schedule_time_format(int64_t t, char *buf, size_t len)
{
  schedule_civil c;

  schedule_civil_of(t, 0, &c);
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year, c.month, c.day,
           c.hour, c.minute, c.second);
}

/* ---- time zones --------------------------------------------------------- */

int schedule_zone_check(const char *zone, char *err, size_t errlen)
{
  const char *dir = getenv("TZDIR");
  char path[1024];
  struct stat st;

  if (zone == NULL || *zone == '\0')
    return schedule_fail(err, errlen, "--tz: the zone name is empty");
  if (strcmp(zone, "UTC") == 0)
    return 0;
  /* Only names inside the database: no absolute paths, no climbing out. */
  if (zone[0] == '/' || zone[0] == ':' || strstr(zone, "..") != NULL)
    return schedule_fail(err, errlen,
                         "--tz: '%s' is not a zone name such as "
                         "Europe/Berlin",
                         zone);
  if (dir == NULL || *dir == '\0')
    dir = "/usr/share/zoneinfo";
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, zone) >= sizeof path ||
      stat(path, &st) != 0 || !S_ISREG(st.st_mode))
    return schedule_fail(err, errlen,
                         "--tz: unknown time zone '%s' (not in the tz "
                         "database under %s)",
                         zone, dir);
  return 0;
}

int schedule_zone_offsets(const char *zone, const int64_t *t, int32_t *offsets,
                          size_t n, char *err, size_t errlen)
{
  const char *old = getenv("TZ");
  char *saved = NULL;
  size_t i;
  int rc = -1;

  if (schedule_zone_check(zone, err, errlen) < 0)
    return -1;
  if (old != NULL && (saved = strdup(old)) == NULL) {
    schedule_fail(err, errlen, "out of memory");
    goto out;
  }

  if (setenv("TZ", zone, 1) != 0) {
    schedule_fail(err, errlen, "--tz: cannot select zone '%s': %s", zone,
                  strerror(errno));
    goto out;
  }
  tzset();
  for (i = 0; i < n; i++) {
    time_t when = (time_t)t[i];
    struct tm tm;

    offsets[i] = localtime_r(&when, &tm) != NULL ? (int32_t)tm.tm_gmtoff : 0;
  }
  rc = 0;

  if (saved != NULL)
    setenv("TZ", saved, 1);
  else
    unsetenv("TZ");
  tzset();
out:
  free(saved);
  return rc;
}
