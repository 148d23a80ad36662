"""The db binding through the real binary: server notices become log
records on stderr and nothing else reaches it raw; a role's
statement_timeout is a named failure of the run, never swallowed; a
streamed result larger than any buffer leaves the run's memory alone,
and a query's result counts against the run's heap limit."""
import json
import os
import subprocess
import sys
import time

import jhtest


class NoticesTest(jhtest.Case):
    def test_each_notice_is_one_log_record_with_its_severity(self):
        self.write_job("noisy", """
return { run = function(ctx)
  ctx.db:exec("DROP TABLE IF EXISTS tmp_x")
  ctx.db:exec([[DO $$ BEGIN RAISE NOTICE 'purged %', 42;
    RAISE WARNING 'slow disk'; END $$]])
  return { done = true }
end }""")
        proc = self.jobhost("run", "noisy",
                            env=self.env(JOBHOST_LOG_FORMAT="json"))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        records = []
        for line in proc.stderr.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                self.fail("a raw line on stderr: " + line)
        by_message = {r["message"]: r for r in records}
        purged = by_message.get("purged 42")
        self.assertIsNotNone(purged, proc.stderr)
        self.assertEqual(purged["level"], "INFO")
        self.assertEqual(purged["severity"], "NOTICE")
        self.assertEqual(purged["sqlstate"], "00000")
        skipped = [r for r in records if "tmp_x" in r["message"]]
        self.assertEqual(len(skipped), 1, proc.stderr)
        self.assertEqual(by_message["slow disk"]["level"], "WARN")
        self.assertEqual(by_message["slow disk"]["sqlstate"], "01000")


class StatementTimeoutTest(jhtest.Case):
    def test_a_roles_statement_timeout_fails_the_run_by_name(self):
        password = "st-" + self.pg["PGPASSWORD"][:8][::-1] + "-x"
        self.secrets.append(password)
        jhtest.superuser_sql("DROP ROLE IF EXISTS jobhost_st")
        jhtest.superuser_sql(
            "CREATE ROLE jobhost_st LOGIN PASSWORD '%s'" % password)
        jhtest.superuser_sql(
            "ALTER ROLE jobhost_st SET statement_timeout = '500ms'")
        self.write_job("slow", """
return { timeout = 600, run = function(ctx)
  local ok, err = pcall(ctx.db.exec, ctx.db, "SELECT pg_sleep(5)")
  assert(not ok and err.sqlstate == "57014", tostring(err))
  ctx.db:exec("SELECT pg_sleep(5)")
  return { swallowed = true }
end }""")
        env = dict(self.pg, PGUSER="jobhost_st", PGPASSWORD=password)
        code, body, stderr = self.run_job("slow", env=self.env(env),
                                          expect_ok=False)
        self.assertEqual(code, 1, stderr)
        self.assertEqual(body["errorType"], "Database.Error")
        self.assertIn("57014", body["errorMessage"])
        self.assertIn("statement timeout", body["errorMessage"])


    def test_the_runs_cap_striking_says_the_deadline_was_ahead(self):
        """The cap is the time left less a margin, so a statement that
        outlasts it ends the run as Job.Timeout before the deadline; the
        message says so instead of claiming the deadline passed."""
        self.write_job("capped", """
return { timeout = 3, run = function(ctx)
  ctx.db:exec("SELECT pg_sleep(2)")
  return { slept = true }
end }""")
        started = time.monotonic()
        code, body, stderr = self.run_job("capped", expect_ok=False)
        took = time.monotonic() - started
        self.assertEqual(code, 1, stderr)
        self.assertEqual(body["errorType"], "Job.Timeout", body)
        self.assertLess(took, 3.0, "the run should end before its deadline")
        message = body["errorMessage"]
        self.assertNotIn("deadline exceeded", message)
        self.assertIn("before the run's deadline (the job's timeout of 3 s)",
                      message)
        self.assertIn("to leave time to roll back", message)
        self.assertNotIn("deadline exceeded", stderr)


class EscapeTest(jhtest.Case):
    def test_an_escape_libpq_refuses_says_why(self):
        self.write_job("esc", """
return { run = function(ctx)
  local out = {}
  for _, f in ipairs({ "escape_literal", "escape_identifier" }) do
    local ok, err = pcall(ctx.db[f], ctx.db, "\\255")
    out[f] = ok and "escaped" or tostring(err)
  end
  return out
end }""")
        _, body, _ = self.run_job("esc")
        for f in ("escape_literal", "escape_identifier"):
            self.assertIn("db: cannot escape: ", body[f])
            self.assertIn("multibyte", body[f])
            self.assertNotIn("pushfstring", body[f])
            self.assertNotIn("\n", body[f])


class ColumnNamesTest(jhtest.Case):
    def test_a_columns_own_name_is_never_anothers_suffix(self):
        self.write_job("cols", """
return { run = function(ctx)
  local r = ctx.db:query("SELECT 1 AS a, 2 AS a, 3 AS a_2, 4 AS a")
  local s = ctx.db:query("SELECT 1 AS id, 2 AS id")
  return { columns = r.columns, row = r[1], plain = s.columns }
end }""")
        _, body, _ = self.run_job("cols")
        self.assertEqual(body["columns"], ["a", "a_3", "a_2", "a_4"])
        self.assertEqual(body["row"], {"a": 1, "a_3": 2, "a_2": 3, "a_4": 4})
        self.assertEqual(body["plain"], ["id", "id_2"])


class ConnectionErrorTest(jhtest.Case):
    LOCKED = "return { lock = true, run = function() return 1 end }"

    def bare_env(self, **extra):
        """The test's environment without any database setting: no PG*
        variable, no JOBHOST_DATABASE."""
        env = {k: v for k, v in self.env().items()
               if not k.startswith("PG") and k != "JOBHOST_DATABASE"}
        env.update(extra)
        return env

    def test_no_database_configured_is_said_with_libpqs_error(self):
        self.write_job("locked", self.LOCKED)
        _, body, _ = self.run_job("locked", env=self.bare_env(),
                                  expect_ok=False)
        self.assertEqual(body["errorType"], "Database.ConnectionError", body)
        message = body["errorMessage"]
        self.assertIn("connection to server", message)
        self.assertIn("no database is configured", message)
        for way in ("database", "--db", "JOBHOST_DATABASE"):
            self.assertIn(way, message)

    def test_a_configured_database_that_fails_gets_no_such_hint(self):
        self.write_job("locked", self.LOCKED)
        env = self.bare_env(
            JOBHOST_DATABASE="host=127.0.0.1 port=1 connect_timeout=5")
        _, body, _ = self.run_job("locked", env=env, expect_ok=False)
        self.assertEqual(body["errorType"], "Database.ConnectionError", body)
        self.assertIn("connection to server", body["errorMessage"])
        self.assertNotIn("no database is configured", body["errorMessage"])

    def test_a_time_zone_the_server_refuses_names_jobhost_timezone(self):
        self.write_job("locked", self.LOCKED)
        _, body, _ = self.run_job(
            "locked", env=self.env(JOBHOST_TIMEZONE="Nope/Zone"),
            expect_ok=False)
        message = body["errorMessage"]
        self.assertIn('invalid value for parameter "TimeZone": "Nope/Zone"',
                      message)
        self.assertIn("JOBHOST_TIMEZONE", message)
        self.assertNotIn("no database is configured", message)
        # The target's own bad TimeZone is not blamed on the variable.
        _, body, _ = self.run_job(
            "locked", env=self.env(PGOPTIONS="-c TimeZone=Nope/Zone"),
            expect_ok=False)
        self.assertIn('"TimeZone": "Nope/Zone"', body["errorMessage"])
        self.assertNotIn("JOBHOST_TIMEZONE", body["errorMessage"])


class StreamTest(jhtest.Case):
    def test_rows_and_copy_stream_without_holding_the_result(self):
        self.write_job("stream", """
return { run = function(ctx)
  local n, bytes = 0, 0
  for row in ctx.db:rows([[SELECT g, repeat('y', 1000) AS pad
      FROM (SELECT generate_series(1, 200000) AS g) s]]) do
    n = n + 1
    bytes = bytes + #row.pad
  end
  local copied = ctx.db:copy_out([[COPY (SELECT repeat('z', 1000)
      FROM generate_series(1, 200000)) TO STDOUT]], function(chunk)
    bytes = bytes + #chunk
  end)
  local first
  for row in ctx.db:rows("SELECT generate_series(1, 100000000) AS g") do
    first = row.g
    break
  end
  return { rows = n, copied = copied, bytes = bytes, first = first,
           after = ctx.db:query("SELECT 1 AS one")[1].one }
end }""")
        # 400 MB pass through; the run's Lua heap is limited to 32 MiB.
        _, body, _ = self.run_job("stream",
                                  env=self.env(JOBHOST_MEMORY_MB=32))
        self.assertEqual(body, {"rows": 200000, "copied": 200000,
                                "bytes": 200000 * 1000 * 2 + 200000,
                                "first": 1, "after": 1})

    def peak_rss_of_run(self, name, **env):
        """Runs the job under a small parent of its own; returns (peak RSS
        in kB, exit code, stdout). With no sanitizer quarantine RSS means
        the same in both builds."""
        env = self.env(ASAN_OPTIONS=":".join(filter(
            None, [os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=0",
                   "thread_local_quarantine_size_kb=0"])), **env)
        probe = subprocess.run(
            [sys.executable, "-c", "import resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, "
             "text=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN)"
             ".ru_maxrss)\n"
             "print(p.returncode)\nprint(p.stdout)",
             jhtest.BIN, "run", name],
            capture_output=True, text=True, env=env, timeout=120)
        self.record(probe.stdout, probe.stderr)
        rss_kb, code, body = probe.stdout.split("\n", 2)
        return int(rss_kb), int(code), body

    def test_wide_rows_after_narrow_ones_come_a_few_at_a_time(self):
        """A stream's batches are sized by the rows seen so far: 1 GB of
        2 MB rows after 100 small ones must not arrive in one batch."""
        self.write_job("skewed", """
return { run = function(ctx)
  local n, bytes = 0, 0
  for row in ctx.db:rows([[SELECT g, repeat('x', CASE WHEN g > 100
      THEN 2000000 ELSE 1 END) AS v FROM generate_series(1, 600) g]]) do
    n = n + 1
    bytes = bytes + #row.v
  end
  return { rows = n, bytes = bytes }
end }""")
        rss_kb, code, body = self.peak_rss_of_run("skewed",
                                                  JOBHOST_MEMORY_MB=64)
        self.assertEqual(code, 0, body)
        self.assertEqual(json.loads(body),
                         {"rows": 600, "bytes": 100 + 500 * 2000000})
        self.assertLess(rss_kb, 250 * 1024, "peak RSS %d kB" % rss_kb)

    def test_a_query_bigger_than_the_heap_limit_fails_without_holding_it(
            self):
        """db:query gathers its rows in the Lua heap as they arrive, so
        the run's memory limit bounds it: 500 MB of rows against a 32 MiB
        heap fail as Runtime.OutOfMemory long before the process holds
        the result, and the connection is ready for the next run."""
        self.write_job("bigquery", """
return { run = function(ctx)
  local rows = ctx.db:query([[SELECT g, repeat('q', 1000) AS pad
      FROM generate_series(1, 500000) g]])
  return { rows = #rows }
end }""")
        rss_kb, code, body = self.peak_rss_of_run("bigquery",
                                                  JOBHOST_MEMORY_MB=32)
        self.assertEqual(code, 1)
        self.assertEqual(json.loads(body)["errorType"],
                         "Runtime.OutOfMemory")
        self.assertLess(rss_kb, 250 * 1024, "peak RSS %d kB" % rss_kb)


if __name__ == "__main__":
    jhtest.main()
