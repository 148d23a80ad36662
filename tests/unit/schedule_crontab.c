/* schedule_crontab.c (unit test): crontab lines turned into EventBridge
 * rules. Renumbered weekdays, '?' placement, @ shorthands and steps in
 * UTC; hours shifted from real tz database zones (with and without
 * daylight saving, whole and half hours, across midnight in both
 * directions); the drift warnings; and every line one rule cannot
 * express. Each produced expression is also run through the schedule
 * engine: its first fire must be the local time the crontab line names. */
#include <stdio.h>
#include <string.h>

#include "crontab.h"
#include "schedule.h"
#include "schedule_check.h"

/* Converts line in zone as of ref and checks the expression; warning is
 * NULL when none may come, else a text the warning must contain. */
static void expect_rule(const char *line, const char *zone, const char *ref,
                        const char *expr, const char *warning)
{
  char err[SCHEDULE_ERR_MAX];
  crontab_rule rule;
  int rc = crontab_convert(line, zone, at(ref), &rule, err, sizeof err);

  CHECK(rc == 0, "'%s' in %s: %s", line, zone ? zone : "UTC", err);
  if (rc != 0)
    return;
  CHECK(strcmp(rule.expr, expr) == 0, "'%s' in %s: %s, expected %s", line,
        zone ? zone : "UTC", rule.expr, expr);
  CHECK(schedule_validate(rule.expr, err, sizeof err) == 0,
        "'%s' gave an invalid %s: %s", line, rule.expr, err);
  if (warning == NULL)
    CHECK(rule.warning[0] == '\0', "'%s' in %s: unexpected warning: %s",
          line, zone ? zone : "UTC", rule.warning);
  else
    CHECK(strstr(rule.warning, warning) != NULL,
          "'%s' in %s: warning \"%s\" lacks \"%s\"", line,
          zone ? zone : "UTC", rule.warning, warning);
}

static void expect_error(const char *line, const char *zone,
                         const char *message)
{
  char err[SCHEDULE_ERR_MAX] = "";
  crontab_rule rule;
  int rc = crontab_convert(line, zone, at("2025-01-15T00:00:00Z"), &rule,
                           err, sizeof err);

  CHECK(rc == -1, "'%s' in %s accepted as %s", line, zone ? zone : "UTC",
        rule.expr);
  CHECK(rc == -1 && strstr(err, message) != NULL,
        "'%s': message \"%s\" lacks \"%s\"", line, err, message);
}

/* The first fire of the converted rule after ref, shown in the zone's
 * offset at that fire, must be the expected local time. */
static void expect_local_fire(const char *line, const char *zone,
                              const char *ref, const char *local)
{
  char err[SCHEDULE_ERR_MAX], got[32];
  crontab_rule rule;
  schedule s;
  schedule_civil c;
  int64_t fire;
  int32_t offset;

  if (crontab_convert(line, zone, at(ref), &rule, err, sizeof err) < 0 ||
      schedule_parse(rule.expr, &s, err, sizeof err) < 0 ||
      schedule_fires(&s, at(ref), &fire, 1) != 1 ||
      schedule_zone_offsets(zone, &fire, &offset, 1, err, sizeof err) < 0) {
    CHECK(0, "'%s' in %s: %s", line, zone, err);
    return;
  }
  schedule_civil_of(fire, offset, &c);
  snprintf(got, sizeof got, "%04d-%02d-%02d %02d:%02d %s", c.year, c.month,
           c.day, c.hour, c.minute,
           schedule_weekday_names[c.weekday - 1]);
  CHECK(strcmp(got, local) == 0, "'%s' in %s: %s fires at %s local, not %s",
        line, zone, rule.expr, got, local);
}

static void test_utc(void)
{
  const char *ref = "2025-01-15T00:00:00Z";

  expect_rule("15 3 * * 1-5", NULL, ref, "cron(15 3 ? * 2-6 *)", NULL);
  expect_rule("*/10 * * * *", "UTC", ref, "cron(0/10 * * * ? *)", NULL);
  expect_rule("@daily", NULL, ref, "cron(0 0 * * ? *)", NULL);
  expect_rule("@midnight", NULL, ref, "cron(0 0 * * ? *)", NULL);
  expect_rule("@hourly", NULL, ref, "cron(0 * * * ? *)", NULL);
  expect_rule("@weekly", NULL, ref, "cron(0 0 ? * 1 *)", NULL);
  expect_rule("@monthly", NULL, ref, "cron(0 0 1 * ? *)", NULL);
  expect_rule("@yearly", NULL, ref, "cron(0 0 1 1 ? *)", NULL);
  expect_rule("@annually /usr/bin/true", NULL, ref, "cron(0 0 1 1 ? *)",
              NULL);
  expect_rule("0 0 * * 0", NULL, ref, "cron(0 0 ? * 1 *)", NULL);
  expect_rule("0 0 * * 7", NULL, ref, "cron(0 0 ? * 1 *)", NULL);
  expect_rule("0 0 * * 6,0,7", NULL, ref, "cron(0 0 ? * 1,7 *)", NULL);
  expect_rule("0 0 * * sun,SAT", NULL, ref, "cron(0 0 ? * 1,7 *)", NULL);
  expect_rule("0 0 * * mon-fri", NULL, ref, "cron(0 0 ? * 2-6 *)", NULL);
  expect_rule("0 12 1 jan-mar *", NULL, ref, "cron(0 12 1 1-3 ? *)", NULL);
  expect_rule("5 4 * * *   /usr/local/bin/purge --days 30", NULL, ref,
              "cron(5 4 * * ? *)", NULL);
  expect_rule("0 0-23/6 * * *", NULL, ref, "cron(0 0/6 * * ? *)", NULL);
  expect_rule("0 1-20/5 * * *", NULL, ref, "cron(0 1-16/5 * * ? *)", NULL);
  expect_rule("0,30 8,9,10 * * *", NULL, ref, "cron(0,30 8-10 * * ? *)",
              NULL);
  expect_rule("0 9 1,15 * *", NULL, ref, "cron(0 9 1,15 * ? *)", NULL);
  expect_rule("0 9 */2 * *", NULL, ref, "cron(0 9 1/2 * ? *)", NULL);
  /* cron ORs two restricted day fields; one naming every day wins. */
  expect_rule("0 0 1-31 * 1", NULL, ref, "cron(0 0 * * ? *)", NULL);
}

/* The drift warning is for a rule that fires while the other offset
 * holds: a line for a winter date never meets summer time. */
static void test_drift_only_where_it_fires(void)
{
  const char *winter = "2026-01-01T00:00:00Z";
  const char *summer = "2026-07-01T00:00:00Z";

  expect_rule("0 1 1 1 *", "Europe/Paris", winter, "cron(0 0 1 1 ? *)",
              NULL);
  expect_rule("0 0 1 3 *", "Europe/Paris", winter, "cron(0 23 L 2 ? *)",
              NULL);
  expect_rule("0 12 * 11-12 1", "Europe/Paris", winter,
              "cron(0 11 ? 11,12 2 *)", NULL);
  /* Seen from summer, the same 1 January is in the other offset. */
  expect_rule("0 1 1 1 *", "Europe/Paris", summer, "cron(0 23 L 12 ? *)",
              "from 2026-10-25T01:00:00Z to 2027-03-28T01:00:00Z (offset "
              "+01:00) it fires 1 hour earlier");
  /* Real warnings stay: a daily rule, and one date of summer. */
  expect_rule("0 1 * * *", "Europe/Paris", winter, "cron(0 0 * * ? *)",
              "from 2026-03-29T01:00:00Z to 2026-10-25T01:00:00Z (offset "
              "+02:00) it fires 1 hour later");
  expect_rule("0 1 14 7 *", "Europe/Paris", winter, "cron(0 0 14 7 ? *)",
              "cron(0 23 13 7 ? *) keeps them then");
  /* Fires on the day of a change: the first hour of summer time and the
   * last one count; the Sundays of March at 00:00 UTC, always before the
   * change at 01:00, do not. */
  expect_rule("0 3 29 3 *", "Europe/Paris", winter, "cron(0 2 29 3 ? *)",
              "from 2026-03-29T01:00:00Z");
  expect_rule("0 1 25 10 *", "Europe/Paris", winter, "cron(0 0 25 10 ? *)",
              "to 2026-10-25T01:00:00Z");
  expect_rule("0 1 * 3 0", "Europe/Paris", winter, "cron(0 0 ? 3 1 *)",
              NULL);
  /* 29 March falls before the change of 2026 but after that of 2027:
   * the warning names the first period the rule fires in. */
  expect_rule("0 1 29 3 *", "Europe/Paris", winter, "cron(0 0 29 3 ? *)",
              "from 2027-03-28T01:00:00Z to 2027-10-31T01:00:00Z (offset "
              "+02:00) it fires 1 hour later");
  /* South of the equator summer holds 29 February: seen from July 2026,
   * first that of 2028. */
  expect_rule("0 12 29 2 *", "Australia/Sydney", summer,
              "cron(0 2 29 2 ? *)",
              "from 2027-10-02T16:00:00Z to 2028-04-01T16:00:00Z (offset "
              "+11:00) it fires 1 hour later");
}

static void test_zones(void)
{
  const char *winter = "2025-01-15T00:00:00Z";
  const char *summer = "2025-07-15T00:00:00Z";

  /* New York: -05:00 in winter, -04:00 in summer. */
  expect_rule("15 3 * * 1-5", "America/New_York", winter,
              "cron(15 8 ? * 2-6 *)", "1 hour later");
  expect_rule("15 3 * * 1-5", "America/New_York", winter,
              "cron(15 8 ? * 2-6 *)",
              "from 2025-03-09T07:00:00Z to 2025-11-02T06:00:00Z (offset "
              "-04:00)");
  expect_rule("15 3 * * 1-5", "America/New_York", winter,
              "cron(15 8 ? * 2-6 *)", "cron(15 7 ? * 2-6 *) keeps them");
  expect_rule("15 3 * * 1-5", "America/New_York", summer,
              "cron(15 7 ? * 2-6 *)", "1 hour earlier");

  /* Tokyo has no daylight saving: no warning. */
  expect_rule("0 9 * * *", "Asia/Tokyo", winter, "cron(0 0 * * ? *)", NULL);
  expect_rule("0 8 * * 1", "Asia/Tokyo", winter, "cron(0 23 ? * 1 *)",
              NULL);
  expect_rule("0 8 1 * *", "Asia/Tokyo", winter, "cron(0 23 L * ? *)", NULL);
  expect_rule("0 8 1 1 *", "Asia/Tokyo", winter, "cron(0 23 L 12 ? *)",
              NULL);
  expect_rule("0 8 15 * *", "Asia/Tokyo", winter, "cron(0 23 14 * ? *)",
              NULL);
  expect_rule("0 8,12 * * *", "Asia/Tokyo", winter, "cron(0 3,23 * * ? *)",
              NULL);

  /* Half-hour offsets move the minutes. */
  expect_rule("0 9 * * *", "Asia/Kolkata", winter, "cron(30 3 * * ? *)",
              NULL);
  expect_rule("*/20 * * * *", "Asia/Kolkata", winter,
              "cron(10/20 * * * ? *)", NULL);
  expect_rule("0,15 9 * * *", "Asia/Kolkata", winter,
              "cron(30,45 3 * * ? *)", NULL);

  /* West of UTC, evenings move to the next UTC day. */
  expect_rule("0 20 * * 5", "America/Los_Angeles", winter,
              "cron(0 4 ? * 7 *)", "1 hour later");
  expect_rule("0 20 10 * *", "America/Los_Angeles", winter,
              "cron(0 4 11 * ? *)", "cron(0 3 11 * ? *)");

  test_drift_only_where_it_fires();

  expect_local_fire("15 3 * * 1-5", "America/New_York", winter,
                    "2025-01-15 03:15 WED");
  expect_local_fire("0 8 1 * *", "Asia/Tokyo", winter,
                    "2025-02-01 08:00 SAT");
  expect_local_fire("0 20 * * 5", "America/Los_Angeles", winter,
                    "2025-01-17 20:00 FRI");
  expect_local_fire("0,15 9 * * *", "Asia/Kolkata", winter,
                    "2025-01-15 09:00 WED");
}

/* A line that names only days no month has converts to a rule
 * EventBridge accepts, which never runs the job: warned of, as jobhost
 * check warns of such a schedule. */
static void test_never_fires(void)
{
  const char *ref = "2025-01-15T00:00:00Z";
  char err[SCHEDULE_ERR_MAX];
  crontab_rule rule;

  expect_rule("0 0 31 2 *", NULL, ref, "cron(0 0 31 2 ? *)",
              "schedule cron(0 0 31 2 ? *) never fires at or after "
              "2025-01-15T00:00:00Z: no date left");
  expect_rule("0 0 30 2 *", "UTC", ref, "cron(0 0 30 2 ? *)",
              "as with 31 February");
  expect_rule("15 4 31 4,6,9,11 *", NULL, ref,
              "cron(15 4 31 4,6,9,11 ? *)", "never fires");
  /* The rule that never fires drifts nowhere: that warning alone. */
  if (crontab_convert("0 12 30 2 *", "Europe/Paris", at(ref), &rule, err,
                      sizeof err) < 0)
    CHECK(0, "'0 12 30 2 *' in Europe/Paris: %s", err);
  else
    CHECK(strcmp(rule.warning, "schedule cron(0 11 30 2 ? *) never fires "
                               "at or after 2025-01-15T00:00:00Z: no date "
                               "left in the years it names matches its "
                               "day-of-month, month and day-of-week "
                               "fields, as with 31 February\n") == 0,
          "'0 12 30 2 *' in Europe/Paris: warning \"%s\"", rule.warning);
  /* 29 February fires in leap years. */
  expect_rule("0 0 29 2 *", NULL, ref, "cron(0 0 29 2 ? *)", NULL);
}

static void test_errors(void)
{
  expect_error("@reboot", NULL, "@reboot runs at boot");
  expect_error("@often", NULL, "unknown shorthand '@often'");
  expect_error("", NULL, "the line is empty or a comment");
  expect_error("# 0 0 * * *", NULL, "the line is empty or a comment");
  expect_error("MAILTO=dba@example.com", NULL, "needs five fields");
  expect_error("PATH=/bin * * * * x", NULL, "sets a variable");
  expect_error("60 * * * *", NULL, "crontab minute: 60 is out of range 0-59");
  expect_error("* 24 * * *", NULL, "crontab hour: 24 is out of range 0-23");
  expect_error("* * 0 * *", NULL, "crontab day-of-month: 0 is out of range");
  expect_error("* * * 13 *", NULL, "crontab month: 13 is out of range 1-12");
  expect_error("* * * * 8", NULL, "crontab day-of-week: 8 is out of range");
  expect_error("* * * * ?", NULL, "crontab day-of-week: unexpected '?'");
  expect_error("5-1 * * * *", NULL, "crontab minute: the range in '5-1' "
                                    "runs backwards");
  expect_error("5/10 * * * *", NULL, "a step needs '*' or a range");
  expect_error("*/0 * * * *", NULL, "the step after '/' must be a number");
  expect_error("1,,2 * * * *", NULL, "crontab minute: unexpected");
  expect_error("1, * * * *", NULL, "crontab minute: unexpected");
  expect_error("0 0 15 * 1", NULL, "cron runs on a day matching either");
  expect_error("0 0 */2 * 1", NULL, "cron needs both to match");
  expect_error("0 0 * * *", "Mars/Olympus_Mons", "unknown time zone");
  expect_error("0 0 * * *", "../../etc/passwd", "is not a zone name");
  expect_error("0,45 9 * * *", "Asia/Kolkata",
               "do not keep the same minutes in every hour");
  expect_error("0 8 31 * *", "Asia/Tokyo",
               "not every month has the day before or after");
  expect_error("0 20 28 * *", "America/Los_Angeles",
               "not every month has the day before or after");
  expect_error("0 20 * 1 *", "America/Los_Angeles",
               "crontab month: at offset -08:00");
  expect_error("0 8 * 3 1", "Asia/Tokyo", "crontab month: at offset +09:00");
  expect_error("0 8,12 * * 1", "Asia/Tokyo",
               "some of the times fall on another UTC day");
}

int main(void)
{
  test_utc();
  test_zones();
  test_never_fires();
  test_errors();
  return check_report();
}
