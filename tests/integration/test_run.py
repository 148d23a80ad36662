"""`jobhost run` and `jobhost check` end to end: the real binary against
the throwaway PostgreSQL. Covers the foundation's promises: exact values
from PostgreSQL through Lua to JSON, error objects, failing jobs, runaway
jobs, dry runs and the sandbox."""
import calendar
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time

import jhtest


class ValuesTest(jhtest.Case):
    def test_int8_extremes_leave_as_the_same_digits(self):
        self.write_job("ints", """
return { run = function(ctx)
  local r = ctx.db:query(
    "SELECT 9223372036854775807::int8 AS max, "
    .. "(-9223372036854775808)::int8 AS min")[1]
  assert(math.type(r.max) == "integer" and math.type(r.min) == "integer")
  assert(r.max == math.maxinteger and r.min == math.mininteger)
  return r
end }""")
        proc = self.jobhost("run", "ints")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(),
                         '{"max":9223372036854775807,'
                         '"min":-9223372036854775808}')

    def test_numeric_is_an_exact_string(self):
        self.write_job("num", """
return { run = function(ctx)
  local r = ctx.db:query("SELECT 12345678901234567.89::numeric AS amt, "
    .. "0.1::numeric + 0.2::numeric AS s, 'NaN'::numeric AS n")[1]
  assert(type(r.amt) == "string")
  return r
end }""")
        _, body, _ = self.run_job("num")
        self.assertEqual(body, {"amt": "12345678901234567.89", "s": "0.3",
                                "n": "NaN"})

    def test_null_column_present_and_empty_result_is_array(self):
        self.write_job("nulls", """
local json = require "json"
return { run = function(ctx)
  local rows = ctx.db:query("SELECT 1 AS id, NULL::text AS note, 'x' AS tag")
  assert(rows[1].note == ctx.db.null and rows[1].note == json.null)
  local none = ctx.db:query("SELECT 1 AS x WHERE false")
  local port = json.decode('{"port": 5432}').port
  return { rows = rows, none = none, port = port,
           port_type = math.type(port) }
end }""")
        proc = self.jobhost("run", "nulls")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn('{"id":1,"note":null,"tag":"x"}', proc.stdout)
        body = json.loads(proc.stdout)
        self.assertEqual(body["none"], [])
        self.assertIn('"none":[]', proc.stdout)
        self.assertEqual(body["port"], 5432)
        self.assertIn('"port":5432,', proc.stdout)
        self.assertEqual(body["port_type"], "integer")

    def test_big_ints_bind_back_exactly(self):
        self.write_job("bind", """
return { run = function(ctx)
  local r = ctx.db:query("SELECT 1026066510839283908::int8 AS id, "
    .. "9007199254740993::int8 AS big")[1]
  local back = ctx.db:query("SELECT $1::int8 = 1026066510839283908 AS same,"
    .. " $2::text AS text", r.id, r.big)[1]
  return { id = r.id, big = r.big, same = back.same, text = back.text }
end }""")
        proc = self.jobhost("run", "bind")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(),
                         '{"big":9007199254740993,"id":1026066510839283908,'
                         '"same":true,"text":"9007199254740993"}')

    def test_session_runs_in_utc_whatever_the_role_says(self):
        db = jhtest.create_database("run_tz")
        jhtest.superuser_sql("ALTER ROLE jobhost IN DATABASE run_tz "
                             "SET timezone = 'America/New_York'")
        self.write_job("tz", """
return { run = function(ctx)
  return ctx.db:query(
    "SELECT '2025-03-09 07:30:00+00'::timestamptz AS t")[1]
end }""")
        _, body, _ = self.run_job("tz", env=self.env(db))
        self.assertEqual(body, {"t": "2025-03-09 07:30:00+00"})


class FailureTest(jhtest.Case):
    def test_foreign_key_violation_fails_with_sqlstate_and_rolls_back(self):
        db = jhtest.create_database("run_fk")
        jhtest.superuser_sql("""
            CREATE TABLE parent (id int PRIMARY KEY);
            CREATE TABLE child (id int PRIMARY KEY,
                                parent int REFERENCES parent(id));
            INSERT INTO parent VALUES (1);
            INSERT INTO child VALUES (1, 1);
            ALTER TABLE parent OWNER TO jobhost;
            ALTER TABLE child OWNER TO jobhost;""", db="run_fk")
        self.write_job("fk", """
return { run = function(ctx)
  local tx <close> = ctx.db:begin()
  ctx.db:exec("INSERT INTO parent VALUES (2)")
  ctx.db:exec("DELETE FROM parent WHERE id = 1")
  tx:commit()
end }""")
        code, body, err = self.run_job("fk", env=self.env(db),
                                       expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual(body["errorType"], "Database.Error")
        self.assertIn("23503", body["errorMessage"])
        self.assertIn("child", body["errorMessage"])
        self.assertTrue(body["stackTrace"], body)
        self.assertIn("run failed", err)
        self.assertEqual(jhtest.superuser_sql(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM parent",
            db="run_fk").strip(), "1")

    def test_error_object_fields_reach_a_pcall(self):
        self.write_job("fields", """
return { run = function(ctx)
  local ok, e = pcall(ctx.db.exec, ctx.db, "SELECT 1/0")
  assert(not ok)
  return { sqlstate = e.sqlstate, severity = e.severity,
           message = e.message, type = e.type }
end }""")
        _, body, _ = self.run_job("fields")
        self.assertEqual(body, {"sqlstate": "22012", "severity": "ERROR",
                                "message": "division by zero",
                                "type": "Database.Error"})

    def test_syntax_error_reported_with_file_and_line(self):
        path = self.write_job("broken", "return {\n  run = function(ctx)\n"
                                        "    local x = = 1\n  end,\n}\n")
        proc = self.jobhost("check", "broken")
        self.assertEqual(proc.returncode, 1)
        self.assertIn(path + ":3:", proc.stdout)
        code, body, _ = self.run_job("broken", expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual(body["errorType"], "Job.Invalid")
        self.assertIn(path + ":3:", body["errorMessage"])

    def test_runtime_error_has_traceback_with_line(self):
        path = self.write_job("boom", "local function inner()\n"
                                      "  error('boom')\nend\n"
                                      "return { run = function() inner() "
                                      "end }\n")
        code, body, _ = self.run_job("boom", expect_ok=False)
        self.assertEqual(body["errorType"], "Job.Error")
        self.assertEqual(body["errorMessage"], path + ":2: boom")
        self.assertTrue(any("inner" in line for line in body["stackTrace"]),
                        body["stackTrace"])

    def test_spec_errors_name_the_key(self):
        self.write_job("badkey", "return { run = function() end, "
                                 "shedule = 'rate(1 day)' }")
        self.write_job("badtype", "return { run = function() end, "
                                  "timeout = '10' }")
        self.write_job("norun", "return { description = 'x' }")
        proc = self.jobhost("check", "badkey", "badtype", "norun")
        self.assertEqual(proc.returncode, 1)
        self.assertIn('unknown key "shedule" in the job\'s spec (did you '
                      'mean "schedule"? known:', proc.stdout)
        self.assertIn('"timeout" must be a number, not string', proc.stdout)
        self.assertIn('"run" must be a function, not missing', proc.stdout)
        # A key like no known one gets no guess.
        self.write_job("odd", "return { run = function() end, colour = 1 }")
        proc = self.jobhost("check", "odd")
        self.assertIn('unknown key "colour" in the job\'s spec (known:',
                      proc.stdout)

    def test_unknown_job_and_bad_usage(self):
        code, body, _ = self.run_job("nope", expect_ok=False)
        self.assertEqual(body["errorType"], "Job.NotFound")
        self.assertIn("no file " + self.jobs + "/nope.lua; the jobs there:",
                      body["errorMessage"])
        # No jobs folder at all is said as such, with the way to name one.
        env = self.env(JOBHOST_JOBS=os.path.join(self.tmp, "missing"))
        code, body, _ = self.run_job("nope", env=env, expect_ok=False)
        self.assertEqual(body["errorType"], "Job.NotFound")
        self.assertIn("cannot read the jobs folder " +
                      os.path.join(self.tmp, "missing") +
                      ": No such file or directory (give --jobs DIR",
                      body["errorMessage"])
        self.assertEqual(self.jobhost("run").returncode, 2)
        proc = self.jobhost("run", "x", "--param", "bid")
        self.assertEqual(proc.returncode, 2)
        self.assertIn('--param takes KEY=VALUE, not "bid"', proc.stderr)
        self.write_job("long", "return { timeout = 100000, "
                               "run = function() end }")
        proc = self.jobhost("check", "long")
        self.assertIn('"timeout" must be greater than 0 and at most 86400 '
                      '(seconds), not 100000', proc.stdout)
        self.assertEqual(self.jobhost("run", "x", "--bogus").returncode, 2)
        self.assertEqual(self.jobhost("frobnicate").returncode, 2)
        self.assertEqual(self.jobhost("run", "--help").returncode, 0)


class OutputTest(jhtest.Case):
    def test_print_goes_to_the_log_not_into_the_result(self):
        self.write_job("printer", """
return { run = function() print("hello", 42) return { ok = true } end }""")
        proc = self.jobhost("run", "printer")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, '{"ok":true}\n')
        self.assertRegex(proc.stderr, r'INFO print job=printer '
                                      r'text="hello\\t42"')

    def test_jobs_cannot_write_around_the_log(self):
        """io.write and the standard handles would put raw text (and
        secrets) on the result's stdout; they raise and say what to use,
        files are still written, and a field named like a credential is
        logged as ***."""
        out = os.path.join(self.tmp, "written.txt")
        self.write_job("writer", """
return { run = function(ctx)
  local said = {}
  for _, f in ipairs({
    function() io.write("raw") end,
    function() io.stdout:write("raw") end,
    function() io.stderr:write("raw") end,
    function() io.output():write("raw") end,
  }) do
    local ok, err = pcall(f)
    said[#said + 1] = not ok and err:match("use ctx.log or print") ~= nil
  end
  local f = assert(io.open(%r, "w"))
  f:write("kept")
  f:close()
  ctx.log.info("connecting", { user = "app", password = "pw-literal-7",
                               api_token = "tok-literal-7" })
  return said
end }""" % out)
        proc = self.jobhost("run", "writer")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "[true,true,true,true]\n")
        self.assertNotIn("raw", proc.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), "kept")
        self.assertIn("password=***", proc.stderr)
        self.assertIn("api_token=***", proc.stderr)
        self.assertIn("user=app", proc.stderr)
        self.assertNotIn("literal-7", proc.stderr)

    def test_error_values_of_any_kind_give_a_readable_error(self):
        cases = {
            "table": ('error({code = 5})', "Job.Error", '{"code":5}'),
            "typed": ('error({type = "Billing.Overdue", message = "pay"})',
                      "Billing.Overdue", "pay"),
            "badtype": ('error({type = "no dots here", message = "m"})',
                        "Job.Error", "m"),
            "bytes": ('error("bad \\xff byte", 0)', "Job.Error",
                      "bad ? byte"),
            "nil": ("error()", "Job.Error",
                    "(error object is a nil value)"),
        }
        for name, (code, etype, message) in cases.items():
            self.write_job(name, "return { run = function() %s end }" % code)
            _, body, _ = self.run_job(name, expect_ok=False)
            self.assertEqual(body["errorType"], etype, name)
            self.assertEqual(body["errorMessage"], message, name)

    def test_a_bad_event_is_bad_usage(self):
        self.write_job("ev", "return { run = function(ctx) "
                             "return ctx.event end }")
        for event, why in (("{bad", "json.decode"), ("[1]", "an array"),
                           ("5", "number")):
            proc = self.jobhost("run", "ev", "--event", event)
            self.assertEqual(proc.returncode, 2, event)
            body = json.loads(proc.stdout)
            self.assertEqual(body["errorType"], "Event.Invalid")
            self.assertIn(why, body["errorMessage"])
        _, body, _ = self.run_job("ev", "--event", '{"a": [1, 2]}')
        self.assertEqual(body, {"a": [1, 2]})

    def test_a_file_name_is_not_a_job_name(self):
        self.write_job("named", "return { run = function() end }")
        _, body, _ = self.run_job("named.lua", expect_ok=False)
        self.assertIn("name the job (named), not its file",
                      body["errorMessage"])


class BatchTest(jhtest.Case):
    JOB = """
local batch = require "batch"
return { timeout = 5, params = { reserve = 1000, left = 3, max = 100 },
  run = function(ctx, p)
    local left = p.left
    return batch.run(ctx, { reserve_ms = p.reserve, max_batches = p.max },
      function()
        if left == 0 then return 0 end
        left = left - 1
        return 10
      end)
  end }"""

    def test_done_stopped_and_never_started(self):
        self.write_job("b", self.JOB)
        _, body, err = self.run_job("b")
        self.assertEqual(body, {"done": True, "rows": 30, "batches": 4})
        self.assertNotIn("WARN", err)

        _, body, err = self.run_job("b", "--param", "max=2")
        self.assertEqual(body, {"done": False, "rows": 20, "batches": 2,
                                "stopped": "max_batches reached"})
        self.assertIn("WARN batch stopped with work left", err)
        self.assertIn('reason="max_batches reached"', err)

        # A reserve longer than the whole run: nothing runs, and the log
        # says why, since on Lambda no one reads the result.
        _, body, err = self.run_job("b", "--param", "reserve=10000")
        self.assertEqual(body, {"done": False, "rows": 0, "batches": 0,
                                "stopped": "time ran short"})
        self.assertIn("WARN batch ran no batch: less time left than its "
                      "reserve_ms", err)
        self.assertIn("reserve_ms=10000", err)

        _, body, err = self.run_job("b", "--param", "max=0")
        self.assertEqual(body["stopped"], "max_batches reached")
        self.assertIn("WARN batch stopped with work left", err)
        _, body, _ = self.run_job("b", "--param", "reserve=-5",
                                  expect_ok=False)
        self.assertIn("batch.run: reserve_ms must be a number of "
                      "milliseconds, 0 or more, not -5", body["errorMessage"])

    def test_a_step_that_returns_no_count_says_what_it_returned(self):
        self.write_job("bad", """
local batch = require "batch"
return { params = { give = "none" }, run = function(ctx, p)
  return batch.run(ctx, {}, function()
    if p.give == "negative" then return -5 end
    if p.give == "float" then return 2.5 end
  end)
end }""")
        for give, said in (("none", "not nil"), ("negative", "not -5"),
                           ("float", "not the float 2.5")):
            with self.subTest(give=give):
                _, body, _ = self.run_job("bad", "--param", "give=" + give,
                                          expect_ok=False)
                message = body["errorMessage"]
                self.assertIn("batch step must return the number of rows "
                              "it handled (an integer, 0 or more), " + said,
                              message)


class EnvironmentTest(jhtest.Case):
    def test_unusable_settings_are_named_not_ignored(self):
        self.write_job("small", "return { run = function() "
                       "return { ok = true } end }")
        env = self.env(JOBHOST_MEMORY_MB="1G", JOBHOST_LOG_LEVEL="verbose",
                       JOBHOST_LOG_FORMAT="xml", JOBHOST_SECRETS_TTL="-5")
        _, body, err = self.run_job("small", env=env)
        self.assertEqual(body, {"ok": True})
        for variable, value, using in [
                ("JOBHOST_MEMORY_MB", "1G", "256"),
                ("JOBHOST_LOG_LEVEL", "verbose", "INFO"),
                ("JOBHOST_LOG_FORMAT", "xml", "text")]:
            line = next((l for l in err.splitlines()
                         if "variable=" + variable in l), "")
            self.assertIn("ignoring an environment variable", line, err)
            self.assertIn("value=" + value, line)
            self.assertIn("using=" + using, line)
        self.assertEqual(err.count("variable=JOBHOST_MEMORY_MB"), 1)

        # Told in the format the command line asks for, and not at all
        # for a setting the command line overrides.
        env = self.env(JOBHOST_LOG_LEVEL="verbose", JOBHOST_MEMORY_MB="x")
        _, body, err = self.run_job("small", "--log-format", "json",
                                    "--log-level", "debug", env=env)
        records = [json.loads(l) for l in err.splitlines()]
        warned = [r.get("variable") for r in records
                  if r["message"] == "ignoring an environment variable"]
        self.assertEqual(warned, ["JOBHOST_MEMORY_MB"])

        # Lambda's variable, unusable, gives way to jobhost's own.
        env = self.env(AWS_LAMBDA_LOG_FORMAT="xml", JOBHOST_LOG_FORMAT="json",
                       JOBHOST_MEMORY_MB=" 5")
        _, body, err = self.run_job("small", env=env)
        records = [json.loads(l) for l in err.splitlines()]
        warned = {r.get("variable"): r for r in records
                  if r["message"] == "ignoring an environment variable"}
        self.assertEqual(warned["AWS_LAMBDA_LOG_FORMAT"]["using"], "json")
        self.assertEqual(warned["JOBHOST_MEMORY_MB"]["value"], " 5")


class LostOutputTest(jhtest.Case):
    def test_a_result_that_cannot_be_written_fails_the_run(self):
        self.write_job("small", "return { run = function() "
                       "return { ok = true } end }")
        with open("/dev/full", "w") as full:
            proc = subprocess.run([jhtest.BIN, "run", "small"], stdout=full,
                                  stderr=subprocess.PIPE, text=True,
                                  env=self.env(), timeout=60)
        self.record(proc.stderr)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn('ERROR writing the output failed error="No space left '
                      'on device"', proc.stderr)
        self.assertIn("outcome=success", proc.stderr)


class LimitsTest(jhtest.Case):
    def assert_stopped(self, job, error_type, limit_s):
        started = time.monotonic()
        code, body, err = self.run_job(job, expect_ok=False, timeout=60)
        took = time.monotonic() - started
        self.assertEqual(code, 1, err)
        self.assertEqual(body["errorType"], error_type, body)
        self.assertLess(took, limit_s)
        return body

    def test_runaway_loop_stops_at_the_timeout_despite_pcall(self):
        self.write_job("spin", """
return { timeout = 1, run = function()
  while true do
    pcall(function() while true do end end)
  end
end }""")
        body = self.assert_stopped("spin", "Job.Timeout", 10)
        self.assertIn("run deadline exceeded (the job's timeout of 1 s)",
                      body["errorMessage"])

    def test_a_looping_xpcall_handler_cannot_outlive_the_deadline(self):
        self.write_job("handler", """
return { timeout = 1, run = function()
  return xpcall(function() while true do end end,
                function() while true do end end)
end }""")
        self.assert_stopped("handler", "Job.Timeout", 10)

    def test_finalizers_are_refused(self):
        self.write_job("gc", """
return { timeout = 1, run = function()
  setmetatable({}, { __gc = function() while true do end end })
end }""")
        _, body, _ = self.run_job("gc", expect_ok=False)
        self.assertIn("__gc finalizers are not allowed", body["errorMessage"])

    def test_an_error_whose_tostring_fails_is_still_reported(self):
        for name, mt in (("raises", '__tostring = function() error("x") end'),
                         ("table", "__tostring = function() return {} end"),
                         ("index", '__index = function() error("y") end')):
            self.write_job(name, "return { run = function() "
                                 "error(setmetatable({}, {%s})) end }" % mt)
            code, body, err = self.run_job(name, expect_ok=False)
            self.assertEqual(code, 1, err)
            self.assertEqual(body["errorType"], "Job.Error", name)

    def test_unbounded_allocation_stops_at_the_memory_limit(self):
        self.write_job("hog", """
return { memory = 32, run = function()
  local t = {}
  while true do
    pcall(function()
      for i = 1, 1e9 do t[#t + 1] = string.rep("x", 1024) .. i end
    end)
  end
end }""")
        body = self.assert_stopped("hog", "Runtime.OutOfMemory", 30)
        self.assertIn("32 MiB", body["errorMessage"])

    def test_long_statement_is_cancelled_at_the_deadline(self):
        self.write_job("sleepy", """
return { timeout = 1, run = function(ctx)
  ctx.db:exec("SELECT pg_sleep(30)")
end }""")
        self.assert_stopped("sleepy", "Job.Timeout", 10)
        active = jhtest.superuser_sql(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
            " AND state = 'active'")
        self.assertEqual(active.strip(), "0")


class SandboxTest(jhtest.Case):
    def test_dangerous_functions_are_gone(self):
        self.write_job("sandbox", """
return { run = function()
  local ok_bin = pcall(load, string.dump(function() return 1 end))
  local f = load(string.dump(function() return 1 end))
  return {
    exit = not pcall(os.exit), execute = not pcall(os.execute, "true"),
    popen = not pcall(io.popen, "ls"),
    loadlib = not pcall(package.loadlib, "x", "y"),
    binary_load_refused = f == nil,
    sethook = debug.sethook == nil,
    cjson = type(require("cjson").encode) == "function",
  }
end }""")
        _, body, _ = self.run_job("sandbox")
        self.assertEqual(body, {"exit": True, "execute": True,
                                "popen": True, "loadlib": True,
                                "binary_load_refused": True,
                                "sethook": True, "cjson": True})


class StuckRunTest(jhtest.Case):
    STUCK = """
return { timeout = 1, run = function()
  local s = ("a"):rep(300000)
  return { found = s:find(".-.-.-.-b") ~= nil }
end }"""

    def test_a_run_stuck_in_c_is_ended_after_its_deadline(self):
        """A call into C that never returns reaches no hook: a second
        after the deadline the watchdog prints the failure and ends the
        process."""
        self.write_job("stuck", self.STUCK)
        started = time.time()
        code, body, err = self.run_job("stuck", expect_ok=False, timeout=60)
        took = time.time() - started
        self.assertEqual(code, 1)
        self.assertEqual(body["errorType"], "Job.Timeout")
        self.assertIn("a call did not return", body["errorMessage"])
        self.assertIn("run failed", err)
        self.assertGreater(took, 1.9)
        self.assertLess(took, 10)

    def test_the_watchdogs_record_is_a_whole_record_of_its_time(self):
        """The record is built at the run's start and written from the
        timer's signal: in JSON, with the job, stamped when written."""
        self.write_job("stuck", self.STUCK)
        started = time.time()
        code, body, err = self.run_job(
            "stuck", expect_ok=False, timeout=60,
            env=self.env(JOBHOST_LOG_FORMAT="json"))
        self.assertEqual((code, body["errorType"]), (1, "Job.Timeout"))
        records = [json.loads(line) for line in err.splitlines()]
        failed = [r for r in records if r["message"] == "run failed"]
        self.assertEqual(len(failed), 1, err)
        self.assertEqual(failed[0]["job"], "stuck")
        self.assertEqual(failed[0]["error_type"], "Job.Timeout")
        stamp = failed[0]["timestamp"]
        written = calendar.timegm(time.strptime(stamp[:19],
                                                "%Y-%m-%dT%H:%M:%S"))
        # The deadline is a second in, the watchdog a second later.
        self.assertGreater(written + 1, started + 1.5, stamp)
        self.assertLess(written, time.time() + 1, stamp)

    def test_a_run_that_stops_at_its_deadline_is_not_the_watchdogs(self):
        self.write_job("loop", """
return { timeout = 1, run = function()
  while true do end
end }""")
        code, body, err = self.run_job("loop", expect_ok=False, timeout=60)
        self.assertEqual(body["errorType"], "Job.Timeout")
        self.assertNotIn("did not return", body["errorMessage"])
        self.assertNotIn("did not return", err)


class LoadBoundTest(jhtest.Case):
    """A job file's top level has 2 s to return its spec, and an error
    at load names the file."""

    def test_a_top_level_that_never_returns_is_the_files_fault(self):
        self.write_job("spin", "while true do end\nreturn {}\n")
        started = time.time()
        code, body, err = self.run_job("spin", expect_ok=False, timeout=60)
        took = time.time() - started
        self.assertEqual(code, 1)
        self.assertEqual(body["errorType"], "Job.Invalid")
        self.assertIn("spin.lua: did not return its spec within 2 s",
                      body["errorMessage"])
        self.assertLess(took, 8)
        started = time.time()
        proc = self.jobhost("check")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertIn("spin.lua: did not return its spec within 2 s",
                      proc.stdout + proc.stderr)
        self.assertLess(time.time() - started, 8)

    def test_load_errors_name_the_file(self):
        with open(os.path.join(self.jobs, "bin.lua"), "wb") as f:
            f.write(b"\x1bLua\x54\x00")
        self.write_job("hog", "local t = {} for i = 1, 1e9 do t[i] = "
                       "('x'):rep(64) .. i end\nreturn {}\n")
        for name in ("bin", "hog"):
            with self.subTest(job=name):
                proc = self.jobhost("check", name)
                self.assertEqual(proc.returncode, 1, proc.stdout)
                self.assertIn(name + ".lua: ", proc.stdout + proc.stderr)

    def test_a_listed_file_that_cannot_be_read_is_not_not_found(self):
        os.symlink(os.path.join(self.tmp, "gone.lua"),
                   os.path.join(self.jobs, "dangling.lua"))
        os.mkdir(os.path.join(self.jobs, "folder.lua"))
        proc = self.jobhost("check")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertIn("dangling.lua is a symbolic link to nothing",
                      proc.stdout)
        self.assertIn("folder.lua is a folder, not a job's file",
                      proc.stdout)
        self.assertNotIn("not found", proc.stdout)

    def test_every_problem_of_a_spec_is_told_at_once(self):
        self.write_job("many", """
return { schedul = "rate(1 hour)", timeout = -1, memory = 1.5,
  params = { f = print }, schedule = "cron(61 * * * ? *)",
  run = function() end }""")
        proc = self.jobhost("check", "many")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        said = proc.stdout
        for problem in ('unknown key "schedul"', 'did you mean "schedule"',
                        '"timeout" must be greater than 0',
                        '"memory" must be a whole number of MiB',
                        'param "f" is a function',
                        'invalid schedule "cron(61 * * * ? *)"'):
            self.assertIn(problem, said)
        # The file is named once, the problems after it joined.
        self.assertEqual(said.count("many.lua"), 1, said)

    def test_check_of_an_empty_folder_fails_as_lambda_init_does(self):
        proc = self.jobhost("check")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertIn("no jobs in " + self.jobs, proc.stderr)

class StandardStreamsTest(jhtest.Case):
    def test_a_closed_stdout_is_never_a_database_socket(self):
        """The first descriptor a process opens takes a closed stdout's
        number: held by /dev/full, the result still fails to be written,
        and nothing reaches the database connection."""
        self.write_job("q", """
return { run = function(ctx)
  return ctx.db:query("SELECT 41 + 1 AS n")[1]
end }""")
        proc = subprocess.run(["sh", "-c", 'exec "$0" run q >&-', jhtest.BIN],
                              env=self.env(), capture_output=True, text=True,
                              timeout=60)
        self.record(proc.stdout, proc.stderr)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("writing the output failed", proc.stderr)
        self.assertIn("run finished", proc.stderr)
        self.assertNotIn("invalid frontend message", proc.stderr)

    def test_the_watchdog_ends_a_run_whose_log_pipe_is_full(self):
        """The stuck thread sits in a write to a full stderr pipe: the
        watchdog prints the failure and ends the process anyway."""
        self.write_job("chatty", """
return { timeout = 1, run = function()
  for _ = 1, 1e7 do print(("x"):rep(1000)) end
end }""")
        out = os.path.join(self.tmp, "out.json")
        with open(out, "w") as f:
            proc = subprocess.Popen([jhtest.BIN, "run", "chatty"],
                                    env=self.env(), stdout=f,
                                    stderr=subprocess.PIPE)
        self.addCleanup(jhtest.stop_process, proc)
        self.assertEqual(proc.wait(timeout=20), 1)
        with open(out) as f:
            self.assertEqual(json.loads(f.read().splitlines()[-1])
                             ["errorType"], "Job.Timeout")


class DashNameTest(jhtest.Case):
    def test_a_job_whose_name_starts_with_a_dash(self):
        self.write_job("-x", "return { run = function() return 1 end }")
        code, body, err = self.run_job("--", "-x")
        self.assertEqual((code, body), (0, 1), err)
        proc = self.jobhost("run", "-x")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("unknown option -x", proc.stderr)

    def test_an_option_missing_its_value_says_so(self):
        self.write_job("one", "return { run = function() return 1 end }")
        for option, wants in (("--param", "KEY=VALUE"),
                              ("--event", "JSON or @FILE"),
                              ("--jobs", "a folder")):
            with self.subTest(option=option):
                proc = self.jobhost("run", "one", option)
                self.assertEqual(proc.returncode, 2)
                self.assertIn("%s needs a value (%s)" % (option, wants),
                              proc.stderr)


class SignalTest(jhtest.Case):
    """SIGTERM or SIGINT stops a local run as the deadline does: the
    statement is cancelled and the lock the run held is released at
    once, not when the statement would have ended on the server."""

    LOCKED = """
return { lock = true, params = { seconds = 0 }, run = function(ctx, p)
  ctx.db:query("SELECT pg_sleep($1::float8)", p.seconds)
  return { slept = p.seconds }
end }"""

    def start_sleeping(self):
        """Starts the locked job sleeping 60 s; returns the process and
        the pid of its backend once the statement runs."""
        self.write_job("locked", self.LOCKED)
        proc = subprocess.Popen(
            [jhtest.BIN, "run", "locked", "--param", "seconds=60"],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.addCleanup(jhtest.stop_process, proc)
        until = time.time() + 20
        while time.time() < until:
            pid = jhtest.superuser_sql(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                "AND application_name = 'jobhost/locked' "
                "AND query LIKE 'SELECT pg_sleep%'").strip()
            if pid:
                return proc, pid
            time.sleep(0.05)
        self.fail("the run's statement never started")

    def assert_stopped_cleanly(self, proc, pid):
        out, err = proc.communicate(timeout=15)
        self.record(out, err)
        self.assertEqual(proc.returncode, 1, err)
        body = json.loads(out)
        self.assertEqual(body["errorType"], "Job.Interrupted", body)
        self.assertIn("told to stop (SIGINT or SIGTERM); the run was stopped "
                      "and its open transaction rolled back",
                      body["errorMessage"])
        # The 60 s statement is over and the lock free: at once, give or
        # take the backend's own end after the connection closes (a
        # few milliseconds, more on a loaded machine), far short of the
        # statement's 60 s.
        for what in ("SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
                     "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
                     % pid,
                     "SELECT count(*) FROM pg_locks WHERE locktype = "
                     "'advisory' AND pid = %s" % pid):
            until = time.time() + 5
            while jhtest.superuser_sql(what).strip() != "0":
                self.assertLess(time.time(), until, what)
                time.sleep(0.05)
        _, again, _ = self.run_job("locked")
        self.assertEqual(again, {"slept": 0})

    def test_sigterm_cancels_the_statement_and_frees_the_lock(self):
        proc, pid = self.start_sleeping()
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        self.assert_stopped_cleanly(proc, pid)
        self.assertLess(time.time() - started, 10)

    def test_sigkill_frees_the_lock_within_the_servers_check(self):
        """No handler runs on SIGKILL: the server itself notices the
        client has gone (client_connection_check_interval, 2 s) and ends
        the statement, so the lock does not outlive the run by the rest
        of the statement."""
        proc, pid = self.start_sleeping()
        proc.kill()
        proc.wait()
        killed = time.time()
        while jhtest.superuser_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = %s" % pid).strip() != "0":
            self.assertLess(time.time() - killed, 10,
                            "the dead run's lock is still held")
            time.sleep(0.1)
        _, again, _ = self.run_job("locked")
        self.assertEqual(again, {"slept": 0})

    def test_sigint_does_the_same(self):
        proc, pid = self.start_sleeping()
        proc.send_signal(signal.SIGINT)
        self.assert_stopped_cleanly(proc, pid)

    def test_sigterm_during_a_secret_fetch(self):
        """A Secrets Manager that never answers: the signal abandons the
        request at once, Job.Interrupted."""
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        self.addCleanup(server.close)
        self.write_job("sec", """
return { timeout = 30, run = function(ctx)
  return { got = ctx.secret("prod/x") ~= nil }
end }""")
        env = self.env(AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:%d"
                       % server.getsockname()[1], AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                       AWS_SECRET_ACCESS_KEY="not-a-secret")
        proc = subprocess.Popen([jhtest.BIN, "run", "sec"], env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(jhtest.stop_process, proc)
        conn, _ = server.accept()
        self.addCleanup(conn.close)
        time.sleep(0.5)
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        self.record(out, err)
        self.assertLess(time.time() - started, 5)
        self.assertEqual(proc.returncode, 1, err)
        self.assertEqual(json.loads(out)["errorType"], "Job.Interrupted")

    def test_a_second_signal_ends_a_run_no_stop_reaches(self):
        self.write_job("stuck", """
return { run = function()
  return { found = ("a"):rep(300000):find(".-.-.-.-b") ~= nil }
end }""")
        proc = subprocess.Popen([jhtest.BIN, "run", "stuck"], env=self.env(),
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(jhtest.stop_process, proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        self.assertIsNone(proc.poll(), "one signal only asks the run to stop")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=10), -signal.SIGINT)


class LazyLibrariesTest(jhtest.Case):
    """src/lazy.c: the libraries libpq and libcurl link against but a run
    seldom calls are loaded at their first call, and work then: a run
    that logs in with SCRAM loads none of them; a connection that asks
    for GSSAPI encryption reaches Kerberos and gets libpq's own answer."""

    def setUp(self):
        super().setUp()
        needed = subprocess.run(["objdump", "-p", jhtest.BIN],
                                capture_output=True, text=True, check=True)
        if "libpq.so" in needed.stdout:
            self.skipTest("built with libpq as a shared library")

    def test_a_scram_run_loads_none_of_them(self):
        self.write_job("one", """
return { run = function(ctx)
  return { one = ctx.db:query("SELECT 1 AS one")[1].one }
end }""")
        code, body, err = self.run_job("one", env=self.env(LD_DEBUG="files"))
        self.assertEqual(body, {"one": 1})
        self.assertEqual(jhtest.loaded_at_run_time(err), set())
        self.assertNotIn("libldap", err)
        self.assertNotIn("libgssapi_krb5", err)

    def test_gssapi_encryption_reaches_kerberos_at_first_call(self):
        self.write_job("gss", """
return { run = function(ctx)
  local ok, err = pcall(ctx.connect, "gssencmode=require")
  return { ok = ok, err = tostring(err) }
end }""")
        env = self.env(LD_DEBUG="files", KRB5CCNAME="FILE:/nonexistent/cc",
                       KRB5_CONFIG="/nonexistent/krb5.conf")
        code, body, err = self.run_job("gss", env=env)
        self.assertFalse(body["ok"])
        self.assertIn("GSSAPI encryption required", body["err"])
        self.assertIn("libgssapi_krb5.so.2", jhtest.loaded_at_run_time(err))
        self.assertNotIn("libldap-2.5.so.0", jhtest.loaded_at_run_time(err))


    def test_a_run_out_of_descriptors_still_loads_kerberos(self):
        # A job that has used up its descriptors but one (the socket)
        # still gets libpq's own answer from Kerberos: the binary keeps a
        # descriptor in reserve for loading a library.
        self.write_job("fds", """
return { run = function(ctx)
  local held = {}
  while true do
    local f = io.open("/dev/null")
    if not f then break end
    held[#held + 1] = f
  end
  table.remove(held):close()
  local ok, err = pcall(ctx.connect, "gssencmode=require")
  for _, f in ipairs(held) do f:close() end
  return { ok = ok, err = tostring(err), held = #held }
end }""")

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        env = self.env(LD_DEBUG="files", KRB5CCNAME="FILE:/nonexistent/cc")
        proc = subprocess.run([jhtest.BIN, "run", "fds"], env=env,
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=limit)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        body = json.loads(proc.stdout)
        self.assertFalse(body["ok"])
        self.assertGreater(body["held"], 40)
        self.assertIn("GSSAPI", body["err"])
        self.assertIn("libgssapi_krb5.so.2",
                      jhtest.loaded_at_run_time(proc.stderr))
        self.assertNotIn("shared library not loaded", proc.stderr)


class ServiceFileTest(jhtest.Case):
    """A connection service file's gssencmode is the service's: jobhost
    turns GSSAPI encryption off by default only where no service is
    named."""

    def setUp(self):
        super().setUp()
        conn = "\n".join(f"{k}={self.pg[v]}" for k, v in (
            ("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
            ("dbname", "PGDATABASE")))
        self.service_file = os.path.join(self.tmp, "pg_service.conf")
        with open(self.service_file, "w") as f:
            f.write(f"[gss]\n{conn}\ngssencmode=require\n\n"
                    f"[plain]\n{conn}\n")
        self.write_job("svc", """
return { run = function(ctx)
  local out = {}
  for _, target in ipairs({ "service=gss", "service=plain" }) do
    local ok, err = pcall(ctx.connect, target)
    out[target] = ok and "connected" or tostring(err)
  end
  local ok, err = pcall(function() return ctx.db:query("SELECT 1") end)
  out.env = ok and "connected" or tostring(err)
  return out
end }""")

    def test_the_service_file_decides(self):
        env = self.env(PGSERVICEFILE=self.service_file, PGSERVICE="gss",
                       KRB5CCNAME="FILE:/nonexistent/cc")
        _, body, _ = self.run_job("svc", env=env)
        self.assertIn("GSSAPI encryption required", body["service=gss"])
        self.assertEqual(body["service=plain"], "connected")
        self.assertIn("GSSAPI encryption required", body["env"])

    def test_without_a_service_it_stays_off(self):
        env = self.env(PGSERVICEFILE=self.service_file,
                       KRB5CCNAME="FILE:/nonexistent/cc")
        _, body, _ = self.run_job("svc", env=env)
        self.assertEqual(body["env"], "connected")


class StandInsTest(jhtest.Case):
    """src/interpose.c: the binary's definitions are the ones its
    libraries' calls reach, and a run over SCRAM with them works."""

    def bindings(self):
        env = self.env(LD_BIND_NOW="1", LD_DEBUG="bindings")
        proc = subprocess.run([jhtest.BIN, "version"], capture_output=True,
                              text=True, env=env, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        found = {}
        binary = os.path.realpath(jhtest.BIN)
        for line in proc.stderr.splitlines():
            m = re.search(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: "
                          r"normal symbol `(\w+)'", line)
            if m:
                lib, to, sym = m.groups()
                found.setdefault((os.path.basename(lib).split(".so")[0],
                                  sym), set()).add(os.path.realpath(to))
        return binary, found

    def libpq_reaches_the_binary(self, symbols):
        binary, found = self.bindings()
        if any(lib == "libpq" for lib, _ in found):
            for sym in symbols:
                self.assertEqual(found.get(("libpq", sym)), {binary}, sym)
            return
        # libpq is linked into the binary (src/lazy.c): its calls are bound
        # at link time, to the binary's definitions, and nothing binds them
        # to libcrypto at run time.
        proc = subprocess.run(["nm", "--defined-only", jhtest.BIN],
                              capture_output=True, text=True, check=True)
        defined = {line.split()[-1] for line in proc.stdout.splitlines()
                   if re.match(r"\S+ T ", line)}
        self.assertIn("PQconnectdbParams", defined)
        me = os.path.basename(binary)
        for sym in symbols:
            self.assertIn(sym, defined)
            self.assertNotIn((me, sym), found, sym)

    def test_libpq_keys_its_hmac_through_the_binary(self):
        self.libpq_reaches_the_binary(("HMAC_Init_ex", "HMAC_Update",
                                       "HMAC_Final", "HMAC_CTX_free"))

    def test_libpq_draws_its_nonce_through_the_binary(self):
        self.libpq_reaches_the_binary(("RAND_status", "RAND_bytes"))

    def test_gnutls_asks_the_binary_whether_to_initialise(self):
        binary, found = self.bindings()
        if not any(lib == "libgnutls" for lib, _ in found):
            self.skipTest("no GnuTLS in this process")
        self.assertEqual(found.get(("libgnutls", "_gnutls_global_init_skip")),
                         {binary})

    def test_scram_login_with_the_stand_ins(self):
        auth = jhtest.superuser_sql(
            "SELECT auth_method FROM pg_hba_file_rules"
            " WHERE type = 'host' AND error IS NULL LIMIT 1").strip()
        self.assertEqual(auth, "scram-sha-256")
        self.write_job("one", """
return { run = function(ctx)
  return { one = ctx.db:query("SELECT 1 AS one")[1].one,
           user = ctx.db:query("SELECT current_user AS u")[1].u }
end }""")
        _, body, _ = self.run_job("one")
        self.assertEqual(body, {"one": 1, "user": self.pg["PGUSER"]})
        env = self.env(PGPASSWORD="not-" + self.pg["PGPASSWORD"])
        code, _, err = self.run_job("one", env=env, expect_ok=False)
        self.assertIn("password authentication failed", err)

    def test_scram_login_with_long_and_unusual_passwords(self):
        # Beyond one SHA-256 block (64 bytes) OpenSSL hashes the key
        # first; beyond 128 the stand-in keys every round as asked.
        self.write_job("who", """
return { run = function(ctx)
  return { user = ctx.db:query("SELECT current_user AS u")[1].u }
end }""")
        for n, password in enumerate(["p" * 63, "q" * 64, "r" * 65,
                                      "s" * 128, "t" * 129, "u" * 300,
                                      "ünï cödé ' \\ \" ;", "k3Z"]):
            role = "jobhost_pw%d" % n
            jhtest.superuser_sql(
                "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD %s" % (
                    role, role, "'" + password.replace("'", "''") + "'"))
            self.secrets.append(password)
            env = self.env(PGUSER=role, PGPASSWORD=password)
            _, body, _ = self.run_job("who", env=env)
            self.assertEqual(body, {"user": role}, len(password))
            env = self.env(PGUSER=role, PGPASSWORD=password[:-1] + "!")
            _, _, err = self.run_job("who", env=env, expect_ok=False)
            self.assertIn("password authentication failed", err)
            jhtest.superuser_sql("DROP ROLE %s" % role)


class DryRunTest(jhtest.Case):
    def test_dry_run_of_the_purge_leaves_the_table_as_it_was(self):
        db = jhtest.create_database("run_purge")
        env = dict(os.environ, **db)
        env.pop("PGSOCKETDIR")
        pgbench = "/usr/lib/postgresql/15/bin/pgbench"
        subprocess.run([pgbench, "-i", "-s", "1", "-q"], env=env,
                       check=True, capture_output=True)
        subprocess.run([pgbench, "-T", "3", "-c", "2", "-n"], env=env,
                       check=True, capture_output=True)
        jhtest.superuser_sql("UPDATE pgbench_history SET mtime = mtime - "
                             "(random() * interval '180 days')",
                             db="run_purge")
        snapshot = ("SELECT count(*), md5(string_agg(h::text, ',' "
                    "ORDER BY h::text)) FROM pgbench_history h")
        before = jhtest.superuser_sql(snapshot, db="run_purge")
        old = int(jhtest.superuser_sql(
            "SELECT count(*) FROM pgbench_history "
            "WHERE mtime < now() - interval '90 days'", db="run_purge"))
        self.assertGreater(old, 0)

        jobs = os.path.join(jhtest.SOURCE, "jobs")
        run_env = self.env(db, JOBHOST_JOBS=jobs)
        proc = self.jobhost("run", "purge_history", "--dry-run", "--db", "",
                            "--param", "batch=100", env=run_env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        body = json.loads(proc.stdout)
        self.assertIs(body["dry_run"], True)
        self.assertEqual(body["result"]["deleted"], old)
        self.assertEqual(body["result"]["remaining"], 0)
        self.assertEqual(jhtest.superuser_sql(snapshot, db="run_purge"),
                         before)

        # For real this time: the rows go, in committed batches.
        proc = self.jobhost("run", "purge_history", "--db", "",
                            "--param", "batch=100", env=run_env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        body = json.loads(proc.stdout)
        self.assertEqual(body["deleted"], old)
        self.assertGreaterEqual(body["batches"], old // 100)
        self.assertEqual(len(re.findall("batch deleted", proc.stderr)),
                         body["batches"])
        self.assertEqual(int(jhtest.superuser_sql(
            "SELECT count(*) FROM pgbench_history "
            "WHERE mtime < now() - interval '90 days'", db="run_purge")), 0)


class ParamsTest(jhtest.Case):
    def test_params_merge_and_convert_to_the_default_type(self):
        self.write_job("p", """
return { params = { n = 10, name = "a", on = false, ratio = 0.5 },
  run = function(ctx, p)
    return { n = p.n, name = p.name, on = p.on, ratio = p.ratio,
             n_type = math.type(p.n), event_job = ctx.event.job }
  end }""")
        _, body, _ = self.run_job(
            "p", "--param", "n=25", "--param", "on=true",
            "--event", '{"job": "p", "params": {"name": "b", "ratio": 2}}')
        self.assertEqual(body, {"n": 25, "name": "b", "on": True,
                                "ratio": 2, "n_type": "integer",
                                "event_job": "p"})
        code, body, _ = self.run_job("p", "--param", "nn=1",
                                     expect_ok=False)
        self.assertIn('unknown param "nn"', body["errorMessage"])
        for arg, message in [
                ("n=abc", 'param "n": "abc" is not a whole number'),
                ("n=1.5", 'param "n": "1.5" is not a whole number'),
                ("n=9223372036854775808", "in the 64-bit integer range"),
                ("ratio=x", 'param "ratio": "x" is not a number'),
                ("on=yes", 'param "on": "yes" is not true or false')]:
            code, body, _ = self.run_job("p", "--param", arg,
                                         expect_ok=False)
            self.assertIn(message, body["errorMessage"])

    def test_a_null_default_takes_any_value(self):
        self.write_job("opt", """
local json = require "json"
return { params = { since = json.null },
  run = function(ctx, p)
    return { since = p.since, is_null = p.since == json.null }
  end }""")
        _, body, _ = self.run_job("opt")
        self.assertEqual(body, {"since": None, "is_null": True})
        _, body, _ = self.run_job("opt", "--param", "since=2026-01-01")
        self.assertEqual(body, {"since": "2026-01-01", "is_null": False})
        _, body, _ = self.run_job(
            "opt", "--event", '{"params": {"since": [1, 2]}}')
        self.assertEqual(body, {"since": [1, 2], "is_null": False})

    def test_a_null_for_an_integer_param_is_named_null(self):
        """The event's null stands in Lua as a userdata; the error names
        it as the JSON it came as."""
        self.write_job("top", """
return { params = { top = 10 }, run = function(ctx, p) return p.top end }""")
        _, body, _ = self.run_job(
            "top", "--event", '{"params": {"top": null}}', expect_ok=False)
        self.assertEqual(body["errorType"], "Job.Error", body)
        self.assertIn('param "top" must be an integer like its default, '
                      'not null', body["errorMessage"])
        self.assertNotIn("userdata", body["errorMessage"])


if __name__ == "__main__":
    jhtest.main()
