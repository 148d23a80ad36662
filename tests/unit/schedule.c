/* schedule.c (unit test): the schedule engine beyond the shared cases.
 * Fire times around leap years, month ends, the year field and its end in
 * 2199, L, LW, W, nL, # and wrapping ranges, each against dates checked
 * by hand with a calendar; every error message of the parser; the ISO
 * instants; and a cross-check of the fast search against a plain day by
 * day reference written separately from the engine's calendar code (it
 * uses the C library's timegm and gmtime_r). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"
#include "schedule_check.h"

/* Checks that expr, started at from, fires exactly at the NULL-ended
 * list of instants and then ends when `ends` is set. */
static void expect_fires(const char *expr, const char *from,
                         const char *const *want, int ends)
{
  char err[SCHEDULE_ERR_MAX], got[SCHEDULE_TIME_MAX];
  int64_t fires[32];
  schedule s;
  size_t n, count = 0, i;

  while (want[count] != NULL)
    count++;
  if (schedule_parse(expr, &s, err, sizeof err) < 0) {
    CHECK(0, "%s rejected: %s", expr, err);
    return;
  }
  n = schedule_fires(&s, at(from), fires, count + (ends ? 1 : 0));
  CHECK(n == count, "%s from %s: %zu fires, expected %zu", expr, from, n,
        count);
  for (i = 0; i < n && i < count; i++) {
    schedule_time_format(fires[i], got, sizeof got);
    CHECK(strcmp(got, want[i]) == 0, "%s from %s: fire %zu is %s, not %s",
          expr, from, i + 1, got, want[i]);
  }
}

#define FIRES(expr, from, ...)                                                 \
  expect_fires(expr, from, (const char *const[]){__VA_ARGS__, NULL}, 0)
#define FIRES_THEN_END(expr, from, ...)                                        \
  expect_fires(expr, from, (const char *const[]){__VA_ARGS__, NULL}, 1)

static void test_leap_years(void)
{
  FIRES("cron(0 0 29 2 ? *)", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z",
        "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z");
  /* 2100 is not a leap year; 2000 is. */
  FIRES("cron(0 0 29 2 ? *)", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z");
  FIRES("cron(0 0 29 2 ? *)", "1999-01-01T00:00:00Z", "2000-02-29T00:00:00Z",
        "2004-02-29T00:00:00Z");
  FIRES("cron(30 12 L 2 ? *)", "2027-01-01T00:00:00Z", "2027-02-28T12:30:00Z",
        "2028-02-29T12:30:00Z", "2029-02-28T12:30:00Z");
  /* A fifth Thursday in February needs Feb 29 on a Thursday; a fifth
   * Tuesday, Feb 29 2028. */
  FIRES("cron(0 0 ? 2 5#5 *)", "2025-01-01T00:00:00Z",
        "2052-02-29T00:00:00Z", "2080-02-29T00:00:00Z");
  FIRES("cron(0 0 ? 2 3#5 *)", "2025-01-01T00:00:00Z",
        "2028-02-29T00:00:00Z");
}

static void test_month_ends(void)
{
  FIRES("cron(0 0 30 * ? *)", "2025-01-15T00:00:00Z", "2025-01-30T00:00:00Z",
        "2025-03-30T00:00:00Z", "2025-04-30T00:00:00Z");
  FIRES("cron(59 23 31 * ? *)", "2025-07-31T23:59:00Z",
        "2025-07-31T23:59:00Z", "2025-08-31T23:59:00Z",
        "2025-10-31T23:59:00Z", "2025-12-31T23:59:00Z",
        "2026-01-31T23:59:00Z");
  FIRES("cron(0 0 L * ? *)", "2025-11-15T00:00:00Z", "2025-11-30T00:00:00Z",
        "2025-12-31T00:00:00Z", "2026-01-31T00:00:00Z");
  /* Feb 30 and Apr 31 do not exist: such a rule never fires. */
  FIRES_THEN_END("cron(0 0 30 2 ? *)", "2025-01-01T00:00:00Z", NULL);
  FIRES_THEN_END("cron(0 0 31 4,6,9,11 ? *)", "2025-01-01T00:00:00Z",
                 NULL);
}

static void test_year_field(void)
{
  FIRES_THEN_END("cron(0 0 1 1 ? 2030-2032)", "2025-06-01T00:00:00Z",
                 "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z",
                 "2032-01-01T00:00:00Z");
  FIRES("cron(0 0 1 1 ? 2025/5)", "2025-06-01T00:00:00Z",
        "2030-01-01T00:00:00Z", "2035-01-01T00:00:00Z");
  FIRES_THEN_END("cron(0 0 1 1 ? 2031,2027)", "2025-06-01T00:00:00Z",
                 "2027-01-01T00:00:00Z", "2031-01-01T00:00:00Z");
  FIRES_THEN_END("cron(59 23 31 12 ? *)", "2198-06-01T00:00:00Z",
                 "2198-12-31T23:59:00Z", "2199-12-31T23:59:00Z");
  FIRES_THEN_END("cron(* * * * ? *)", "2199-12-31T23:58:30Z",
                 "2199-12-31T23:59:00Z");
  FIRES_THEN_END("cron(0 0 * * ? 1970)", "2199-12-31T00:00:00Z", NULL);
  FIRES("cron(0 0 1 1 ? 1970)", "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z");
}

static void test_day_specials(void)
{
  /* LW: the last Monday-Friday; May 31 2025 is a Saturday, Aug 31 a
   * Sunday, Nov 30 a Sunday. */
  FIRES("cron(0 0 LW * ? *)", "2025-04-01T00:00:00Z", "2025-04-30T00:00:00Z",
        "2025-05-30T00:00:00Z", "2025-06-30T00:00:00Z",
        "2025-07-31T00:00:00Z", "2025-08-29T00:00:00Z",
        "2025-09-30T00:00:00Z", "2025-10-31T00:00:00Z",
        "2025-11-28T00:00:00Z");
  /* 1W: Mar 1 2025 is a Saturday (to Monday the 3rd, not back into
   * February); Jun 1 2025 a Sunday (to Monday the 2nd). */
  FIRES("cron(0 0 1W 3,6 ? *)", "2025-01-01T00:00:00Z",
        "2025-03-03T00:00:00Z", "2025-06-02T00:00:00Z");
  /* 31W: Aug 31 2025 is a Sunday, so Friday the 29th; months without a
   * 31st have no such day and do not fire. */
  FIRES("cron(0 0 31W * ? *)", "2025-07-01T00:00:00Z",
        "2025-07-31T00:00:00Z", "2025-08-29T00:00:00Z",
        "2025-10-31T00:00:00Z", "2025-12-31T00:00:00Z");
  /* 30W: Nov 30 2025 is a Sunday and the last day: Friday the 28th. */
  FIRES("cron(0 0 30W 11 ? *)", "2025-01-01T00:00:00Z",
        "2025-11-28T00:00:00Z");
  /* n#5: only months with a fifth Friday. */
  FIRES("cron(0 0 ? * 6#5 *)", "2025-01-01T00:00:00Z",
        "2025-01-31T00:00:00Z", "2025-05-30T00:00:00Z",
        "2025-08-29T00:00:00Z", "2025-10-31T00:00:00Z",
        "2026-01-30T00:00:00Z");
  FIRES("cron(0 0 ? * SUN#1 *)", "2025-01-01T00:00:00Z",
        "2025-01-05T00:00:00Z", "2025-02-02T00:00:00Z");
  /* 1L: the last Sunday; L alone: every Saturday. */
  FIRES("cron(0 1 ? * 1L *)", "2025-03-01T00:00:00Z", "2025-03-30T01:00:00Z",
        "2025-04-27T01:00:00Z", "2025-05-25T01:00:00Z");
  FIRES("cron(0 1 ? * L *)", "2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z",
        "2025-03-08T01:00:00Z");
  FIRES("cron(0 1 ? * friL *)", "2025-01-01T00:00:00Z",
        "2025-01-31T01:00:00Z");
}

static void test_ranges(void)
{
  FIRES("cron(0 22-1 * * ? *)", "2025-03-01T12:00:00Z",
        "2025-03-01T22:00:00Z", "2025-03-01T23:00:00Z",
        "2025-03-02T00:00:00Z", "2025-03-02T01:00:00Z",
        "2025-03-02T22:00:00Z");
  FIRES("cron(0 22-2/2 * * ? *)", "2025-03-01T12:00:00Z",
        "2025-03-01T22:00:00Z", "2025-03-02T00:00:00Z",
        "2025-03-02T02:00:00Z", "2025-03-02T22:00:00Z");
  FIRES("cron(0 12 ? * FRI-MON *)", "2025-03-05T00:00:00Z",
        "2025-03-07T12:00:00Z", "2025-03-08T12:00:00Z",
        "2025-03-09T12:00:00Z", "2025-03-10T12:00:00Z",
        "2025-03-14T12:00:00Z");
  FIRES("cron(0 0 1 NOV-FEB ? *)", "2025-03-01T00:00:00Z",
        "2025-11-01T00:00:00Z", "2025-12-01T00:00:00Z",
        "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z",
        "2026-11-01T00:00:00Z");
  FIRES("cron(0 0 30-2 * ? *)", "2025-01-29T00:00:00Z",
        "2025-01-30T00:00:00Z", "2025-01-31T00:00:00Z",
        "2025-02-01T00:00:00Z", "2025-02-02T00:00:00Z",
        "2025-03-01T00:00:00Z");
  FIRES("cron(0 12 ? * mon-fri *)", "2025-03-08T00:00:00Z",
        "2025-03-10T12:00:00Z");
  FIRES("cron(50/20 0 * * ? *)", "2025-03-01T00:00:00Z",
        "2025-03-01T00:50:00Z", "2025-03-02T00:50:00Z");
}

static void test_rate(void)
{
  FIRES("rate(1 hour)", "2025-03-01T10:00:30Z", "2025-03-01T11:00:30Z",
        "2025-03-01T12:00:30Z");
  FIRES("rate(7 days)", "2024-02-25T06:00:00Z", "2024-03-03T06:00:00Z",
        "2024-03-10T06:00:00Z");
  FIRES("rate(90 minutes)", "2025-03-01T23:00:00Z", "2025-03-02T00:30:00Z",
        "2025-03-02T02:00:00Z");
}

/* Every message the parser gives: the expression is rejected and the
 * message names the field and the rule. */
static void test_errors(void)
{
  static const struct {
    const char *expr, *message;
  } cases[] = {
      {"", "not a schedule expression"},
      {"every day at noon", "not a schedule expression"},
      {"Cron(0 10 * * ? *)", "not a schedule expression"},
      {"cron(0 10 * * ? *", "cron(): missing closing parenthesis"},
      {"cron(0 10 * * ? *) x", "cron(): unexpected ' x' after the "
                               "closing parenthesis"},
      {"rate(5 minutes)s", "rate(): unexpected 's' after the closing"},
      {"rate(5 minutes", "rate(): missing closing parenthesis"},
      {"cron(0 (10) * * ? *)", "cron(): unexpected parenthesis"},
      {"cron()", "needs exactly 6 fields (minutes hours day-of-month month "
                 "day-of-week year), found 0"},
      {"cron(0 12 * * ?)", "found 5 (the year is missing?)"},
      {"cron(0 0 12 * * ? *)", "found 7 (a seconds field first?)"},
      {"cron(? 0 * * ? *)", "minutes: '?' is allowed only in day-of-month "
                            "or day-of-week"},
      {"cron(0 ? * * ? *)", "hours: '?' is allowed only"},
      {"cron(0 0 * ? ? *)", "month: '?' is allowed only"},
      {"cron(0 0 * * ? ?)", "year: '?' is allowed only"},
      {"cron(60 0 * * ? *)", "minutes: 60 is out of range 0-59"},
      {"cron(0 24 * * ? *)", "hours: 24 is out of range 0-23"},
      {"cron(0 0 0 * ? *)", "day-of-month: 0 is out of range 1-31"},
      {"cron(0 0 32 * ? *)", "day-of-month: 32 is out of range 1-31"},
      {"cron(0 0 1 0 ? *)", "month: 0 is out of range 1-12"},
      {"cron(0 0 1 13 ? *)", "month: 13 is out of range 1-12"},
      {"cron(0 0 ? * 0 *)", "day-of-week: 0 is out of range 1-7"},
      {"cron(0 0 ? * 8 *)", "day-of-week: 8 is out of range 1-7"},
      {"cron(0 0 1 1 ? 1969)", "year: 1969 is out of range 1970-2199"},
      {"cron(0 0 1 1 ? 2200)", "year: 2200 is out of range 1970-2199"},
      {"cron(0 0 1 1 ? 20250)", "year: '20250' is out of range"},
      {"cron(0 0 1 FOO ? *)", "month: unknown name in 'FOO' (names are "
                              "JAN-DEC)"},
      {"cron(0 0 ? * MOM *)", "day-of-week: unknown name in 'MOM' (names "
                              "are SUN-SAT)"},
      {"cron(ab 0 * * ? *)", "minutes: 'ab' is not a number"},
      {"cron(1,,2 0 * * ? *)", "minutes: empty element in list '1,,2'"},
      {"cron(1, 0 * * ? *)", "minutes: empty element in list '1,'"},
      {"cron(0 0 1,? * ? *)", "day-of-month: '?' must stand alone"},
      {"cron(0/0 0 * * ? *)", "minutes: the increment after '/' must be a "
                              "number from 1 to 59"},
      {"cron(0/60 0 * * ? *)", "from 1 to 59"},
      {"cron(0 */24 * * ? *)", "hours: the increment after '/' must be a "
                               "number from 1 to 23"},
      {"cron(0/ 0 * * ? *)", "minutes: the increment after '/'"},
      {"cron(*/x 0 * * ? *)", "minutes: the increment after '/'"},
      {"cron(0 0 ? * MON/2 *)", "day-of-week: increments ('/') are not "
                                "allowed"},
      {"cron(0 0 ? * */2 *)", "day-of-week: increments ('/') are not "
                              "allowed"},
      {"cron(1-5x 0 * * ? *)", "minutes: unexpected 'x' in '1-5x'"},
      {"cron(5- 0 * * ? *)", "minutes: a value is missing"},
      {"cron(-5 0 * * ? *)", "minutes: unexpected '-' in '-5'"},
      {"cron(0 0 L-3 * ? *)", "day-of-month: 'L' and 'W' stand alone in "
                              "the field, as L, LW or nW (got 'L-3')"},
      {"cron(0 0 LW,1 * ? *)", "day-of-month: 'L' and 'W' stand alone"},
      {"cron(0 0 5W-7 * ? *)", "day-of-month: 'L' and 'W' stand alone"},
      {"cron(0 0 32W * ? *)", "day-of-month: in nW, n must be from 1 to 31 "
                              "(got 32)"},
      {"cron(0 0 0W * ? *)", "day-of-month: in nW, n must be from 1 to 31"},
      {"cron(0 0 ? * 2#1,3#2 *)", "day-of-week: only one '#' expression "
                                  "may appear in the field"},
      {"cron(0 0 ? * 2#1,3 *)", "day-of-week: only one '#' expression"},
      {"cron(0 0 ? * 2#6 *)", "day-of-week: in n#k, k must be from 1 to 5 "
                              "(got '6')"},
      {"cron(0 0 ? * 2#0 *)", "k must be from 1 to 5"},
      {"cron(0 0 ? * 2# *)", "k must be from 1 to 5"},
      {"cron(0 0 ? * 8#1 *)", "day-of-week: 8 is out of range 1-7"},
      {"cron(0 0 ? * 1-2#1 *)", "day-of-week: '1-2' is not a weekday"},
      {"cron(0 0 ? * 1,6L *)", "day-of-week: 'L' stands alone in the "
                               "field, as L or nL (got '1,6L')"},
      {"cron(0 0 ? * 8L *)", "day-of-week: 8 is out of range 1-7"},
      {"cron(0 0 ? * ? *)", "day-of-month, day-of-week: exactly one of the "
                            "two must be '?', not both"},
      {"cron(0 0 * * * *)", "exactly one of the two must be '?' (got '*' "
                            "and '*')"},
      {"cron(0 0 1 * MON *)", "(got '1' and 'MON')"},
      {"rate()", "rate(): the value must be a positive integer"},
      {"rate(5)", "rate(): the unit is missing"},
      {"rate(minutes)", "rate(): the value must be a positive integer"},
      {"rate(-1 minutes)", "rate(): the value must be a positive integer"},
      {"rate(1.5 hours)", "rate(): the value must be a positive integer"},
      {"rate(0 minutes)", "rate(): the value must be a positive integer, "
                          "not 0"},
      {"rate(1000000000 minutes)", "rate(): the value is too large"},
      {"rate(1 minutes)", "rate(): value 1 needs the singular unit: "
                          "rate(1 minute)"},
      {"rate(1 hours)", "rate(1 hour)"},
      {"rate(1 days)", "rate(1 day)"},
      {"rate(5 minute)", "rate(): a value above 1 needs the plural unit: "
                         "rate(5 minutes)"},
      {"rate(2 day)", "rate(2 days)"},
      {"rate(30 seconds)", "rate(): the unit must be minute(s), hour(s) or "
                           "day(s), not 'seconds'"},
      {"rate(1 Minute)", "not 'Minute'"},
      {"rate(1 week)", "not 'week'"},
      {"rate(1 minute extra)", "rate(): unexpected 'extra' after the unit"},
  };
  char err[SCHEDULE_ERR_MAX], longexpr[1100];
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = schedule_validate(cases[i].expr, err, sizeof err);

    CHECK(rc == -1, "%s accepted", cases[i].expr);
    CHECK(rc == -1 && strstr(err, cases[i].message) != NULL,
          "%s: message \"%s\" lacks \"%s\"", cases[i].expr, err,
          cases[i].message);
  }

  memset(longexpr, '1', sizeof longexpr - 1);
  longexpr[sizeof longexpr - 1] = '\0';
  memcpy(longexpr, "cron(", 5);
  CHECK(schedule_validate(longexpr, err, sizeof err) == -1 &&
            strstr(err, "too long") != NULL,
        "a long expression: %s", err);

  /* A short buffer gets a truncated, terminated message. */
  CHECK(schedule_validate("cron(60 0 * * ? *)", err, 8) == -1 &&
            strlen(err) == 7,
        "truncated message: '%s'", err);
  CHECK(schedule_validate("cron(60 0 * * ? *)", NULL, 0) == -1,
        "no buffer");
}

static void test_accepted(void)
{
  static const char *const good[] = {
      "cron(0 10 * * ? *)",      "  cron(0 10 * * ? *)  ",
      "cron(0  10 * *  ? *)",    "cron(0 10 ? * * *)",
      "cron(0,30 0-23/2 ? * SUN,MON-FRI 2025-2030/2)",
      "cron(0 0 L * ? *)",       "cron(0 0 lw * ? *)",
      "cron(0 0 15w * ? *)",     "cron(0 0 ? * 6l *)",
      "cron(0 0 ? * fri#3 *)",   "cron(*/5 * * * ? *)",
      "cron(05 09 01 01 ? 2025)", "rate(1 minute)",
      "rate(59 minutes)",        "rate(1 hour)",
      "rate(999999999 days)",
  };
  char err[SCHEDULE_ERR_MAX];
  size_t i;

  for (i = 0; i < sizeof good / sizeof good[0]; i++)
    CHECK(schedule_validate(good[i], err, sizeof err) == 0, "%s: %s",
          good[i], err);
}

/* Checks that text is refused with a message that contains want and not
 * the year rule, unless want is that rule. */
static void expect_bad_instant(const char *text, const char *want)
{
  char err[SCHEDULE_ERR_MAX] = "";
  int64_t t;
  int rc = schedule_time_parse(text, &t, err, sizeof err);

  CHECK(rc == -1, "%s accepted", text);
  CHECK(strstr(err, want) != NULL, "%s: \"%s\" lacks \"%s\"", text, err,
        want);
  if (strstr(want, "1970") == NULL)
    CHECK(strstr(err, "1970") == NULL, "%s blames the year: %s", text, err);
}

/* Each message says what is wrong with the instant: a day the month
 * lacks is no matter of the year. */
static void test_invalid_instants(void)
{
  expect_bad_instant("2026-02-30T00:00:00Z",
                     "'2026-02-30T00:00:00Z' is not a valid date: "
                     "February 2026 has no day 30 (it has 28 days)");
  expect_bad_instant("2025-02-29T00:00Z", "February 2025 has no day 29");
  expect_bad_instant("2025-04-31T00:00Z", "April 2025 has no day 31");
  expect_bad_instant("2025-01-00T00:00Z",
                     "is not a valid date: there is no day 00");
  expect_bad_instant("2025-13-01T00:00Z",
                     "is not a valid date: there is no month 13");
  expect_bad_instant("2025-00-10T00:00Z", "there is no month 00");
  expect_bad_instant("2025-03-01T24:00Z",
                     "is not a valid time of day (00:00:00 to 23:59:59)");
  expect_bad_instant("2025-03-01T10:60Z", "not a valid time of day");
  expect_bad_instant("2025-03-01T10:00:60Z", "not a valid time of day");
  expect_bad_instant("2025-03-01T10:00+24:00",
                     "is not a valid offset from UTC");
  expect_bad_instant("2025-03-01T10:00-05:60", "not a valid offset");
  /* A real year before 1970 keeps the year rule. */
  expect_bad_instant("1969-12-31T23:59:59Z",
                     "'1969-12-31T23:59:59Z' is not a valid instant (year "
                     "1970 or later)");
}

static void test_instants(void)
{
  char err[SCHEDULE_ERR_MAX], buf[SCHEDULE_TIME_MAX];
  int64_t t;

  CHECK(schedule_time_parse("2025-03-01T10:00:00Z", &t, err, sizeof err) ==
                0 &&
            t == 1740823200,
        "plain instant");
  CHECK(schedule_time_parse("2025-03-01T12:00:00+02:00", &t, err,
                            sizeof err) == 0 &&
            t == 1740823200,
        "offset instant");
  CHECK(schedule_time_parse("2025-03-01 05:00-0500", &t, err, sizeof err) ==
                0 &&
            t == 1740823200,
        "space and offset without colon");
  CHECK(schedule_time_parse("2025-03-01T10:00:00.750Z", &t, err,
                            sizeof err) == 0 &&
            t == 1740823200,
        "fraction");
  CHECK(schedule_time_parse("2024-02-29T00:00", &t, err, sizeof err) == 0,
        "leap day");
  test_invalid_instants();
  CHECK(schedule_time_parse("yesterday", &t, err, sizeof err) == -1 &&
            strstr(err, "not an ISO-8601 instant") != NULL,
        "words: %s", err);
  CHECK(schedule_time_parse("2025-03-01T10:00:00Zjunk", &t, err,
                            sizeof err) == -1,
        "trailing text");
  schedule_time_format(at("2199-12-31T23:59:59Z"), buf, sizeof buf);
  CHECK(strcmp(buf, "2199-12-31T23:59:59Z") == 0, "format: %s", buf);
}

/* ---- the reference: day by day with the C library's calendar ------- */

static int ref_days_in_month(int year, int month)
{
  struct tm tm = {0};
  time_t t;

  /* Day 0 of the next month is the last day of this one. */
  tm.tm_year = year - 1900;
  tm.tm_mon = month;
  tm.tm_mday = 0;
  t = timegm(&tm);
  gmtime_r(&t, &tm);
  return tm.tm_mday;
}

static int ref_weekday(int year, int month, int day) /* 1 = SUN */
{
  struct tm tm = {0};
  time_t t;

  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  t = timegm(&tm);
  gmtime_r(&t, &tm);
  return tm.tm_wday + 1;
}

static int ref_is_workday(int year, int month, int day)
{
  int w = ref_weekday(year, month, day);

  return w >= 2 && w <= 6;
}

/* Whether the day fields of s pick this date, from the definitions:
 * nW is the Monday-Friday of the month closest to day n. */
static int ref_day_matches(const schedule *s, int y, int m, int d)
{
  int len = ref_days_in_month(y, m), w = ref_weekday(y, m, d);
  int i, best = -1, count = 0;

  switch (s->dom_mode) {
  case SCHEDULE_DOM_SET:
    return (s->days >> d) & 1;
  case SCHEDULE_DOM_LAST:
    return d == len;
  case SCHEDULE_DOM_LAST_WEEKDAY:
    for (i = 1; i <= len; i++)
      if (ref_is_workday(y, m, i))
        best = i;
    return d == best;
  case SCHEDULE_DOM_NEAREST_WEEKDAY:
    if (s->dom_day > len)
      return 0;
    for (i = 1; i <= len; i++)
      if (ref_is_workday(y, m, i) &&
          (best < 0 || abs(i - s->dom_day) < abs(best - s->dom_day)))
        best = i;
    return d == best;
  case SCHEDULE_DOM_ANY:
    break;
  }
  switch (s->dow_mode) {
  case SCHEDULE_DOW_SET:
    return (s->weekdays >> w) & 1;
  case SCHEDULE_DOW_LAST:
    return w == s->dow_day && d + 7 > len;
  case SCHEDULE_DOW_NTH:
    for (i = 1; i <= d; i++)
      if (ref_weekday(y, m, i) == s->dow_day)
        count++;
    return w == s->dow_day && count == s->dow_nth;
  case SCHEDULE_DOW_ANY:
    break;
  }
  return 1;
}

/* The first n fires at or after from, found by walking every day. */
static size_t ref_fires(const schedule *s, int64_t from, int64_t *out,
                        size_t n)
{
  size_t count = 0;
  int64_t day_start = from - from % 86400;

  for (; count < n; day_start += 86400) {
    struct tm tm;
    time_t t = (time_t)day_start;
    int h, mi, y;

    gmtime_r(&t, &tm);
    y = tm.tm_year + 1900;
    if (y > SCHEDULE_YEAR_MAX)
      break;
    if (!((s->years[(y - 1970) / 64] >> ((y - 1970) % 64)) & 1) ||
        !((s->months >> (tm.tm_mon + 1)) & 1) ||
        !ref_day_matches(s, y, tm.tm_mon + 1, tm.tm_mday))
      continue;
    for (h = 0; h < 24 && count < n; h++)
      for (mi = 0; mi < 60 && count < n; mi++)
        if (((s->hours >> h) & 1) && ((s->minutes >> mi) & 1) &&
            day_start + h * 3600 + mi * 60 >= from)
          out[count++] = day_start + h * 3600 + mi * 60;
  }
  return count;
}

static void test_against_reference(void)
{
  static const char *const exprs[] = {
      "cron(0 10 * * ? *)",        "cron(*/7 */5 * * ? *)",
      "cron(15 3 ? * 2-6 *)",      "cron(0 0 29 2 ? *)",
      "cron(0 0 L * ? *)",         "cron(30 6 LW * ? *)",
      "cron(0 12 1W * ? *)",       "cron(0 12 15W * ? *)",
      "cron(0 12 31W * ? *)",      "cron(0 12 30W * ? *)",
      "cron(0 8 ? * 6L *)",        "cron(0 8 ? * 1L *)",
      "cron(0 9 ? * 2#1 *)",       "cron(0 9 ? * 7#5 *)",
      "cron(0 9 ? * 1#5 *)",       "cron(0 0 1-7 * ? *)",
      "cron(0 22-2 ? * FRI-MON *)", "cron(0 0 1 NOV-FEB ? *)",
      "cron(0 0 13 * ? *)",        "cron(0 0 ? * L 2190-2199/3)",
      "cron(59 23 31 12 ? *)",     "cron(0 6 28-3 * ? *)",
  };
  static const char *const starts[] = {
      "2025-01-01T00:00:00Z", "2027-12-31T23:59:30Z", "2099-11-15T12:00:00Z",
      "2195-06-01T00:00:00Z",
  };
  char err[SCHEDULE_ERR_MAX], a[SCHEDULE_TIME_MAX], b[SCHEDULE_TIME_MAX];
  int64_t fast[300], slow[300];
  size_t e, f, i, n_fast, n_slow;

  for (e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
    schedule s;

    if (schedule_parse(exprs[e], &s, err, sizeof err) < 0) {
      CHECK(0, "%s: %s", exprs[e], err);
      continue;
    }
    for (f = 0; f < sizeof starts / sizeof starts[0]; f++) {
      n_fast = schedule_fires(&s, at(starts[f]), fast, 300);
      n_slow = ref_fires(&s, at(starts[f]), slow, 300);
      CHECK(n_fast == n_slow, "%s from %s: %zu fires, reference %zu",
            exprs[e], starts[f], n_fast, n_slow);
      CHECK(n_fast > 0, "%s from %s: no fires", exprs[e], starts[f]);
      for (i = 0; i < n_fast && i < n_slow; i++) {
        if (fast[i] == slow[i])
          continue;
        schedule_time_format(fast[i], a, sizeof a);
        schedule_time_format(slow[i], b, sizeof b);
        CHECK(0, "%s from %s: fire %zu is %s, reference %s", exprs[e],
              starts[f], i + 1, a, b);
        break;
      }
    }
  }
}

int main(void)
{
  test_leap_years();
  test_month_ends();
  test_year_field();
  test_day_specials();
  test_ranges();
  test_rate();
  test_errors();
  test_accepted();
  test_instants();
  test_against_reference();

  return check_report();
}
