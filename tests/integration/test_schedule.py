"""`jobhost schedule` end to end, through the real binary.

Run as a unittest suite (ctest integration.schedule) it checks the
command's forms: fire times, --count, --from, --tz with its daylight-saving
warning, a job's declared schedule, --from-crontab, the exit statuses and
the messages. Run with `--case N` (ctest schedule.case.N, registered by
tests/schedule.cmake) it checks case N of
../shared/testdata/cases/schedules.json: the validity and the exact fire
times the binary prints.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

BIN = os.environ.get("JOBHOST_BIN", "jobhost")
SOURCE = os.environ.get("JOBHOST_SOURCE", ".")
SHARED = os.environ.get("JOBHOST_SHARED",
                        os.path.join(SOURCE, "..", "shared"))
CASES = os.path.join(SHARED, "testdata", "cases", "schedules.json")


def schedule(*args, env=None):
    """Runs `jobhost schedule ARGS`; returns the CompletedProcess."""
    return subprocess.run([BIN, "schedule", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def check_case(index):
    """Checks one shared case through the binary; returns a list of
    problems (empty when the case holds)."""
    with open(CASES) as f:
        case = json.load(f)[index]
    expr, start = case["expr"], case["from"]
    # A case lists at most five fires; where it lists fewer, ask for one
    # more: the schedule must end there.
    listed = len(case.get("next", []))
    count = listed if listed == 5 else listed + 1
    proc = schedule(expr, "--from", start, "--count", str(count))
    where = f"case {index} {expr!r} from {start}"
    if not case["valid"]:
        problems = []
        if proc.returncode != 1:
            problems.append(f"{where}: exit {proc.returncode}, expected 1")
        if proc.stdout:
            problems.append(f"{where}: printed {proc.stdout!r}")
        if "invalid schedule" not in proc.stderr:
            problems.append(f"{where}: no reason on stderr: {proc.stderr!r}")
        return problems
    if proc.returncode != 0:
        return [f"{where}: exit {proc.returncode}: {proc.stderr.strip()}"]
    got = proc.stdout.split()
    if got != case["next"]:
        return [f"{where}: printed {got}, expected {case['next']}"]
    return []


class ScheduleCommand(unittest.TestCase):
    """The command's forms, options, messages and exit statuses."""

    def test_fire_times_utc(self):
        proc = schedule("cron(0/15 * * * ? *)", "--from",
                        "2025-03-01T23:50:00Z", "--count", "3")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), [
            "2025-03-02T00:00:00Z", "2025-03-02T00:15:00Z",
            "2025-03-02T00:30:00Z"])
        self.assertEqual(proc.stderr, "")

    def test_default_count_is_five(self):
        proc = schedule("rate(1 day)", "--from=2024-02-27T06:00:00Z")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), [
            "2024-02-28T06:00:00Z", "2024-02-29T06:00:00Z",
            "2024-03-01T06:00:00Z", "2024-03-02T06:00:00Z",
            "2024-03-03T06:00:00Z"])

    def test_from_defaults_to_now(self):
        proc = schedule("cron(* * * * ? *)", "--count", "1")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        fire = datetime.datetime.strptime(proc.stdout.strip(),
                                          "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        self.assertLessEqual(abs((fire - now).total_seconds()), 120)

    def test_from_with_offset(self):
        proc = schedule("cron(0 10 * * ? *)", "--from",
                        "2025-03-01T12:30:00+02:00", "--count", "1")
        self.assertEqual(proc.stdout.strip(), "2025-03-02T10:00:00Z")

    def test_tz_shows_local_time_and_warns_on_dst(self):
        proc = schedule("cron(0 10 * * ? *)", "--from",
                        "2025-03-28T00:00:00Z", "--count", "3", "--tz",
                        "Europe/Berlin")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines(), [
            "2025-03-28T10:00:00Z  Fri 2025-03-28 11:00 +01:00",
            "2025-03-29T10:00:00Z  Sat 2025-03-29 11:00 +01:00",
            "2025-03-30T10:00:00Z  Sun 2025-03-30 12:00 +02:00"])
        self.assertIn("warning: Europe/Berlin changes from +01:00 to +02:00",
                      proc.stderr)
        self.assertIn("moves from 11:00 to 12:00", proc.stderr)

    def test_tz_without_dst_change_is_quiet(self):
        proc = schedule("cron(30 0 ? * MON *)", "--from",
                        "2025-01-01T00:00:00Z", "--count", "2", "--tz",
                        "Asia/Kolkata")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines(), [
            "2025-01-06T00:30:00Z  Mon 2025-01-06 06:00 +05:30",
            "2025-01-13T00:30:00Z  Mon 2025-01-13 06:00 +05:30"])
        self.assertEqual(proc.stderr, "")

    def test_schedule_that_ends(self):
        proc = schedule("cron(0 0 1 1 ? 2026-2027)", "--from",
                        "2025-06-01T00:00:00Z")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), ["2026-01-01T00:00:00Z",
                                               "2027-01-01T00:00:00Z"])
        self.assertIn("the schedule ends after 2 fire times", proc.stderr)

        proc = schedule("cron(0 0 1 1 ? 2020)", "--from",
                        "2025-06-01T00:00:00Z")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "")
        self.assertIn("warning: no fire time at or after "
                      "2025-06-01T00:00:00Z", proc.stderr)
        self.assertIn("the year field has run out", proc.stderr)

    def test_schedule_that_never_fires_says_why(self):
        proc = schedule("cron(0 0 31 2 ? *)")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "")
        self.assertIn("as with 31 February", proc.stderr)
        self.assertNotIn("year field", proc.stderr)
        proc = schedule("rate(999999999 days)")
        self.assertEqual(proc.stdout, "")
        self.assertIn("after the year 9999", proc.stderr)

    def test_invalid_expression_names_the_rule(self):
        for expr, reason in [
                ("cron(0 8 * * * *)", "exactly one of the two must be '?'"),
                ("cron(0 12 * * ?)", "needs exactly 6 fields"),
                ("cron(0 0 ? * MON/2 *)", "day-of-week: increments"),
                ("rate(1 minutes)", "needs the singular unit"),
                ("every day at noon", "not a schedule expression")]:
            proc = schedule(expr)
            self.assertEqual(proc.returncode, 1, expr)
            self.assertIn(f'invalid schedule "{expr}": ', proc.stderr)
            self.assertIn(reason, proc.stderr)
            self.assertEqual(proc.stdout, "")

    def test_bad_usage(self):
        for args, message in [
                ([], "give an expression, a job or --from-crontab"),
                (["cron(0 10 * * ? *)", "--count", "0"], "--count must be"),
                (["cron(0 10 * * ? *)", "--count", "x"], "--count must be"),
                (["cron(0 10 * * ? *)", "--count"], "--count needs a value"),
                (["cron(0 10 * * ? *)", "--from", "tomorrow"],
                 "--from: 'tomorrow' is not an ISO-8601 instant"),
                (["cron(0 10 * * ? *)", "--tz", "Mars/Base"],
                 "unknown time zone 'Mars/Base'"),
                (["cron(0 10 * * ? *)", "--nope"], "unknown option --nope"),
                (["cron(0 10 * * ? *)", "rate(1 day)"],
                 "one expression or job at a time")]:
            proc = schedule(*args)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(message, proc.stderr)
            if args:
                # One line that says what is wrong, and where to read on.
                self.assertNotIn("usage:", proc.stderr)
                self.assertIn("jobhost schedule --help", proc.stderr)
            else:
                self.assertIn("usage: jobhost schedule", proc.stderr)

    def test_from_names_what_is_wrong_with_the_date(self):
        proc = schedule("cron(0 10 * * ? *)", "--from",
                        "2026-02-30T00:00:00Z")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--from: '2026-02-30T00:00:00Z' is not a valid date: "
                      "February 2026 has no day 30", proc.stderr)
        self.assertNotIn("1970", proc.stderr)
        self.assertEqual(proc.stdout, "")
        # The same through --from-crontab; a year before 1970 is still
        # told so.
        proc = schedule("--from-crontab", "0 1 1 1 *", "--from",
                        "2026-02-30T00:00:00Z")
        self.assertIn("February 2026 has no day 30", proc.stderr)
        proc = schedule("cron(0 10 * * ? *)", "--from",
                        "1969-07-20T20:17:00Z")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("is not a valid instant (year 1970 or later)",
                      proc.stderr)

    def test_help(self):
        proc = schedule("--help")
        self.assertEqual(proc.returncode, 0)
        self.assertIn("usage: jobhost schedule EXPR", proc.stdout)
        self.assertIn("--from-crontab", proc.stdout)
        top = subprocess.run([BIN, "--help"], capture_output=True, text=True)
        self.assertIn("schedule", top.stdout)


class CrontabMigration(unittest.TestCase):
    """--from-crontab: the EventBridge expression on stdout, the drift
    warnings on stderr."""

    def test_utc_line(self):
        proc = schedule("--from-crontab", "15 3 * * 1-5")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "cron(15 3 ? * 2-6 *)\n")
        self.assertEqual(proc.stderr, "")

    def test_shorthand_and_step(self):
        self.assertEqual(schedule("--from-crontab", "@daily").stdout,
                         "cron(0 0 * * ? *)\n")
        self.assertEqual(schedule("--from-crontab", "*/10 * * * *").stdout,
                         "cron(0/10 * * * ? *)\n")

    def test_zone_with_daylight_saving(self):
        proc = schedule("--from-crontab", "15 3 * * 1-5", "--tz",
                        "America/New_York", "--from", "2025-01-15T00:00:00Z")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "cron(15 8 ? * 2-6 *)\n")
        self.assertIn("warning: America/New_York observes daylight saving",
                      proc.stderr)
        self.assertIn("it fires 1 hour later in local time", proc.stderr)
        self.assertIn("cron(15 7 ? * 2-6 *) keeps them then", proc.stderr)

    def test_no_drift_warning_for_a_rule_that_misses_summer_time(self):
        # 1 January and 1 March (28 February in UTC) lie in winter time:
        # the rule's local time never moves.
        for line, rule in [("0 1 1 1 *", "cron(0 0 1 1 ? *)"),
                           ("0 0 1 3 *", "cron(0 23 L 2 ? *)")]:
            proc = schedule("--from-crontab", line, "--tz", "Europe/Paris",
                            "--from", "2026-01-01T00:00:00Z")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(proc.stdout, rule + "\n")
            self.assertEqual(proc.stderr, "", line)
        proc = schedule("--from-crontab", "0 1 * * *", "--tz", "Europe/Paris",
                        "--from", "2026-01-01T00:00:00Z")
        self.assertEqual(proc.stdout, "cron(0 0 * * ? *)\n")
        self.assertIn("from 2026-03-29T01:00:00Z to 2026-10-25T01:00:00Z "
                      "(offset +02:00) it fires 1 hour later", proc.stderr)

    def test_converted_rule_fires_at_the_local_time(self):
        rule = schedule("--from-crontab", "0 8 1 * *", "--tz", "Asia/Tokyo",
                        "--from", "2025-01-15T00:00:00Z").stdout.strip()
        self.assertEqual(rule, "cron(0 23 L * ? *)")
        proc = schedule(rule, "--from", "2025-01-15T00:00:00Z", "--count",
                        "2", "--tz", "Asia/Tokyo")
        self.assertEqual(proc.stdout.splitlines(), [
            "2025-01-31T23:00:00Z  Sat 2025-02-01 08:00 +09:00",
            "2025-02-28T23:00:00Z  Sat 2025-03-01 08:00 +09:00"])

    def test_count_previews_the_converted_rule(self):
        proc = schedule("--from-crontab", "30 2 * * 0", "--tz",
                        "Europe/Berlin", "--from", "2025-03-20T00:00:00Z",
                        "--count", "3")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines(), [
            "cron(30 1 ? * 1 *)",
            "2025-03-23T01:30:00Z  Sun 2025-03-23 02:30 +01:00",
            "2025-03-30T01:30:00Z  Sun 2025-03-30 03:30 +02:00",
            "2025-04-06T01:30:00Z  Sun 2025-04-06 03:30 +02:00"])
        # Both the conversion and the listing see the change to +02:00.
        self.assertIn("observes daylight saving", proc.stderr)
        self.assertIn("moves from 02:30 to 03:30", proc.stderr)

    def test_line_that_never_fires_is_warned_of(self):
        # As `jobhost check` warns of cron(0 0 31 2 ? *): the rule is
        # valid, converted, and never runs the job.
        proc = schedule("--from-crontab", "0 0 31 2 *", "--from",
                        "2026-01-01T00:00:00Z")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "cron(0 0 31 2 ? *)\n")
        self.assertIn("warning: schedule cron(0 0 31 2 ? *) never fires at "
                      "or after 2026-01-01T00:00:00Z: ", proc.stderr)
        self.assertIn("as with 31 February", proc.stderr)
        self.assertEqual(
            schedule("--from-crontab", "0 0 29 2 *").stderr, "")

    def test_what_eventbridge_cannot_express(self):
        for line, message in [
                ("0 0 15 * 1", "cron runs on a day matching either"),
                ("@reboot", "@reboot runs at boot"),
                ("0 0 * * ?", "crontab day-of-week: unexpected '?'")]:
            proc = schedule("--from-crontab", line)
            self.assertEqual(proc.returncode, 1, line)
            self.assertIn(message, proc.stderr)
            self.assertEqual(proc.stdout, "")


class JobSchedule(unittest.TestCase):
    """`jobhost schedule JOB` reads the schedule jobs/JOB.lua declares."""

    def setUp(self):
        self.jobs = tempfile.mkdtemp(prefix="jobhost-schedule-")
        self.env = dict(os.environ, JOBHOST_JOBS=self.jobs)

    def tearDown(self):
        shutil.rmtree(self.jobs, ignore_errors=True)

    def write_job(self, name, schedule_line):
        with open(os.path.join(self.jobs, name + ".lua"), "w") as f:
            f.write("return {\n"
                    '  description = "a test job",\n'
                    f"{schedule_line}"
                    "  run = function(ctx, params) return {} end,\n"
                    "}\n")

    def test_job_schedule(self):
        self.write_job("nightly", '  schedule = "cron(30 2 * * ? *)",\n')
        proc = schedule("nightly", "--from", "2025-03-01T00:00:00Z",
                        "--count", "2", env=self.env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), ["2025-03-01T02:30:00Z",
                                               "2025-03-02T02:30:00Z"])
        self.assertIn("nightly.lua: cron(30 2 * * ? *)", proc.stderr)
        # The same with the folder named on the command line.
        env = dict(self.env)
        jobs = env.pop("JOBHOST_JOBS")
        proc = schedule("nightly", "--jobs", jobs, "--from",
                        "2025-03-01T00:00:00Z", "--count", "1", env=env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), ["2025-03-01T02:30:00Z"])

    def test_job_without_schedule(self):
        self.write_job("adhoc", "")
        proc = schedule("adhoc", env=self.env)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("adhoc.lua declares no schedule", proc.stderr)

    def test_unknown_job(self):
        proc = schedule("no_such_job", env=self.env)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no_such_job", proc.stderr)

    def check(self):
        """jobhost check over the test's jobs folder."""
        return subprocess.run([BIN, "check", "--jobs", self.jobs],
                              capture_output=True, text=True, timeout=60,
                              env=self.env)

    def test_check_reports_an_invalid_schedule(self):
        self.write_job("weekly", '  schedule = "cron(0 6 * * MON *)",\n')
        self.write_job("daily", '  schedule = "cron(0 6 * * ? *)",\n')
        proc = self.check()
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        out = proc.stdout + proc.stderr
        self.assertIn("weekly.lua", out)
        self.assertIn("exactly one of the two must be '?'", out)
        self.assertNotIn("daily.lua", out)

    def test_check_warns_of_a_schedule_that_never_fires(self):
        self.write_job("feb31", '  schedule = "cron(0 0 31 2 ? *)",\n')
        self.write_job("old", '  schedule = "cron(0 0 ? * MON 2020)",\n')
        proc = self.check()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("warning: schedule cron(0 0 31 2 ? *) never fires "
                      "from now on", proc.stdout)
        self.assertIn("warning: schedule cron(0 0 ? * MON 2020) never fires"
                      " from now on: the year field has run out", proc.stdout)

    def test_shipped_jobs_have_valid_schedules(self):
        jobs = os.path.join(SOURCE, "jobs")
        names = sorted(n[:-4] for n in os.listdir(jobs) if n.endswith(".lua"))
        self.assertTrue(names)
        env = dict(os.environ, JOBHOST_JOBS=jobs)
        for name in names:
            proc = schedule(name, "--count", "1", env=env)
            self.assertIn(proc.returncode, (0, 1), name)
            if proc.returncode == 1:
                self.assertIn("declares no schedule", proc.stderr, name)


class SharedCases(unittest.TestCase):
    """Every case of the shared file, through the binary."""

    def test_every_case(self):
        if not os.path.exists(CASES) and not os.environ.get("CI"):
            self.skipTest("no schedule cases at " + CASES)
        with open(CASES) as f:
            count = len(json.load(f))
        self.assertGreater(count, 0)
        problems = [p for i in range(count) for p in check_case(i)]
        self.assertEqual(problems, [])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        if not os.path.exists(CASES) and not os.environ.get("CI"):
            print("SKIP: no schedule cases at", CASES,
                  "(set JOBHOST_SHARED, the folder holding testdata/, when "
                  "configuring with cmake)")
            sys.exit(77)
        found = check_case(int(sys.argv[2]))
        for problem in found:
            print("FAIL", problem)
        if not found:
            print("ok case", sys.argv[2])
        sys.exit(1 if found else 0)
    unittest.main(verbosity=2)
