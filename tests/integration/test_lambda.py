"""`jobhost lambda` end to end: the real binary as a Lambda custom runtime
against the fake Runtime API (tests/fakes/fake_runtime_api.py, real HTTP
on loopback) and the throwaway PostgreSQL.

What must hold everywhere: the process survives every scenario but an
HTTP 500 from the API and an init failure, and every failed invocation
gets exactly one error post with the right errorType.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jhtest

sys.path.insert(0, os.path.join(jhtest.SOURCE, "tests", "fakes"))
from fake_runtime_api import FakeRuntimeAPI  # noqa: E402

LIMIT = 6291556  # Lambda's response limit, in bytes

HELLO = """
return {
  description = "Says hello with what it was given",
  params = { name = "world", times = 1 },
  run = function(ctx, params)
    return { hello = params.name, times = params.times,
             scheduled_time = ctx.scheduled_time or json_null,
             request_id = ctx.request_id,
             trace = os.getenv("_X_AMZN_TRACE_ID"),
             deadline = ctx.deadline,
             remaining_ms = ctx.remaining_ms() }
  end,
}
""".replace("json_null", 'require("json").null')

BOOM = """
return { run = function(ctx) error("boom") end }
"""

PID = """
return { run = function(ctx)
  return { pid = ctx.db:query("SELECT pg_backend_pid() AS pid")[1].pid }
end }
"""

BIG = """
return { params = { n = 1 }, run = function(ctx, params)
  return string.rep("x", params.n)
end }
"""

SLEEP_IN_TX = """
return {
  description = "Holds a row lock and an advisory lock, then sleeps",
  run = function(ctx)
    local tx <close> = ctx.db:begin()
    ctx.db:exec("UPDATE counter SET n = n + 1")
    ctx.db:query("SELECT pg_advisory_xact_lock(4242)")
    ctx.db:query("SELECT pg_sleep(60)")
    tx:commit()
    return { slept = true }
  end,
}
"""

STUCK_IN_C = """
-- Holds a row lock, then runs a pattern match that takes hours.
local function hours_of_matching()
  return ("a"):rep(300000):find(".-.-.-.-b")
end
return { run = function(ctx)
  local tx <close> = ctx.db:begin()
  ctx.db:exec("UPDATE counter SET n = n + 1")
  return { found = hours_of_matching() ~= nil }
end }
"""

SLEEP_UNCAPPED = """
return {
  description = "Lifts the statement_timeout cap, then sleeps in a lock",
  run = function(ctx)
    ctx.db:exec("SET statement_timeout = 0")
    local tx <close> = ctx.db:begin()
    ctx.db:exec("UPDATE counter SET n = n + 1")
    ctx.db:query("SELECT pg_sleep(60)")
    tx:commit()
  end,
}
"""

LUA_LOOP = """
return {
  description = "Spins in Lua, swallowing every error it can",
  run = function(ctx)
    local tx <close> = ctx.db:begin()
    ctx.db:exec("UPDATE counter SET n = n + 1")
    while true do
      pcall(function() while true do end end)
    end
  end,
}
"""

LOCKED = """
return {
  description = "One run at a time",
  lock = true,
  params = { seconds = 0, fail = false },
  run = function(ctx, params)
    ctx.db:exec("INSERT INTO runs (request_id) VALUES ($1)", ctx.request_id)
    if params.seconds > 0 then
      ctx.db:query("SELECT pg_sleep($1::float8)", params.seconds)
    end
    if params.fail then error("failed while holding the lock") end
    return { ran = true }
  end,
}
"""


def scheduled_event(rule, when="2026-12-03T03:15:00Z"):
    """An EventBridge scheduled event as Lambda delivers it."""
    return {
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": when, "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/" + rule],
        "detail": {},
    }


class LambdaCase(jhtest.Case):
    """Starts runtimes against fakes and cleans up after each test."""

    def setUp(self):
        super().setUp()
        self.runtimes = []  # (process, log path)
        self.apis = []

    def tearDown(self):
        findings = []
        for proc, path in self.runtimes:
            jhtest.stop_process(proc)
            with open(path, errors="replace") as f:
                log = f.read()
            self.record(log)
            # Under -DJOBHOST_SANITIZE=ON a finding is a failure.
            findings += [log for mark in ("ERROR: AddressSanitizer",
                                          "ERROR: LeakSanitizer",
                                          "runtime error:") if mark in log]
        for api in self.apis:
            api.stop()
        super().tearDown()
        if findings:
            self.fail("sanitizer findings:\n" + findings[0][-4000:])

    def fake(self):
        api = FakeRuntimeAPI().start()
        self.apis.append(api)
        return api

    def start(self, api=None, db_env=None, args=(), **extra):
        """Starts `jobhost lambda` against api (a new fake by default);
        returns (api, process). Its log goes to a file: read it with
        self.log(proc)."""
        api = api or self.fake()
        env = self.env(db_env, AWS_LAMBDA_RUNTIME_API=api.address, **extra)
        path = os.path.join(self.tmp, "runtime-%d.log" % len(self.runtimes))
        with open(path, "w") as out:
            proc = subprocess.Popen([jhtest.BIN, "lambda", *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.runtimes.append((proc, path))
        return api, proc

    def log(self, proc):
        for p, path in self.runtimes:
            if p is proc:
                with open(path, errors="replace") as f:
                    return f.read()
        return ""

    def invoke(self, api, body, timeout=30, **kw):
        """Queues one invocation and returns its (first) post."""
        rid = api.push(body, **kw)
        return api.wait_post(rid, timeout)

    def assert_error(self, api, post, error_type, *phrases):
        """post is the only post of its invocation, an error of
        error_type whose message holds every phrase."""
        self.assertEqual(post.kind, "error", post)
        self.assertEqual(post.error_type, error_type, post)
        body = post.json()
        self.assertEqual(body["errorType"], error_type)
        self.assertIsInstance(body["stackTrace"], list)
        for phrase in phrases:
            self.assertIn(phrase, body["errorMessage"])
        self.assert_one_post(api, post.request_id)
        return body

    def assert_one_post(self, api, request_id):
        # A second post would come right after the first: give it a moment.
        time.sleep(0.05)
        self.assertEqual(len(api.posts_for(request_id)), 1,
                         api.posts_for(request_id))

    def assert_ok(self, api, post):
        self.assertEqual(post.kind, "response", post)
        self.assert_one_post(api, post.request_id)
        return post.json()

    def assert_alive(self, proc):
        self.assertIsNone(proc.poll(), "the runtime exited: " +
                          self.log(proc)[-2000:])


class RoutingTest(LambdaCase):
    def setUp(self):
        super().setUp()
        self.write_job("hello", HELLO)
        self.write_job("boom", BOOM)

    def test_scheduled_event_is_routed_by_rule_name(self):
        api, proc = self.start()
        event = scheduled_event("hello")
        post = self.invoke(api, event, trace_id="Root=1-abc;Sampled=1")
        body = self.assert_ok(api, post)
        self.assertEqual(body["hello"], "world")
        self.assertEqual(body["scheduled_time"], "2026-12-03T03:15:00Z")
        self.assertEqual(body["request_id"], post.request_id)
        self.assertEqual(body["trace"], "Root=1-abc;Sampled=1")
        # The deadline reached the job, less the runtime's margin.
        self.assertEqual(body["deadline"],
                         api.by_id[post.request_id].deadline_sent - 500)
        self.assertGreater(body["remaining_ms"], 890000)
        self.assertLess(body["remaining_ms"], 900000 - 400)

        # A rule on a custom bus: rule/BUS/NAME.
        event["resources"] = [
            "arn:aws:events:eu-west-1:123456789012:rule/ops-bus/hello"]
        self.assertEqual(self.assert_ok(api, self.invoke(api, event))
                         ["hello"], "world")
        self.assert_alive(proc)

    def test_constant_input_with_params(self):
        api, proc = self.start()
        post = self.invoke(api, {"job": "hello",
                                 "params": {"name": "ops", "times": 3}})
        body = self.assert_ok(api, post)
        self.assertEqual((body["hello"], body["times"]), ("ops", 3))
        self.assertIsNone(body["scheduled_time"])
        self.assertIn('"times":3,', post.body)

        # The event's job wins over the rule in resources.
        event = scheduled_event("boom")
        event["job"] = "hello"
        self.assert_ok(api, self.invoke(api, event))

        # A param the job does not declare is the job's error.
        post = self.invoke(api, {"job": "hello", "params": {"nme": "x"}})
        self.assert_error(api, post, "Job.Error", "unknown param \"nme\"")
        self.assert_alive(proc)

    def test_handler_routes_when_it_names_a_job(self):
        api, proc = self.start(_HANDLER="hello")
        self.assertEqual(self.assert_ok(api, self.invoke(api, {}))["hello"],
                         "world")
        # The event's job still wins over the handler.
        self.assert_error(api, self.invoke(api, {"job": "boom"}),
                          "Job.Error", "boom")
        # And the handler over the rule.
        self.assert_ok(api, self.invoke(api, scheduled_event("boom")))

        # A placeholder handler ("bootstrap") is not a job: the rule routes.
        api2, proc2 = self.start(_HANDLER="bootstrap")
        self.assert_ok(api2, self.invoke(api2, scheduled_event("hello")))
        post = self.invoke(api2, {"detail": {}})
        self.assert_error(api2, post, "Job.NotFound", "bootstrap",
                          "boom, hello")
        self.assertIn("handler names no job", self.log(proc2))

    def test_deadline_margin_setting(self):
        api, proc = self.start(JOBHOST_DEADLINE_MARGIN_MS="2500")
        post = self.invoke(api, {"job": "hello"}, deadline_in=60)
        self.assertEqual(self.assert_ok(api, post)["deadline"],
                         api.by_id[post.request_id].deadline_sent - 2500)
        # No deadline header: the job's own timeout alone.
        post = self.invoke(api, {"job": "hello"},
                           headers={"Lambda-Runtime-Deadline-Ms": ""})
        self.assertLess(self.assert_ok(api, post)["remaining_ms"], 300001)
        self.assertNotIn("deadline unreadable", self.log(proc))
        # One that does not read as epoch milliseconds: the same, warned.
        post = self.invoke(api, {"job": "hello"},
                           headers={"Lambda-Runtime-Deadline-Ms": "soon"})
        self.assertLess(self.assert_ok(api, post)["remaining_ms"], 300001)
        self.assertIn("invocation deadline unreadable", self.log(proc))
        self.assertIn("value=soon", self.log(proc))

    def test_job_error(self):
        api, proc = self.start()
        post = self.invoke(api, {"job": "boom"})
        body = self.assert_error(api, post, "Job.Error", "boom")
        self.assertTrue(any("boom.lua:2" in line
                            for line in body["stackTrace"]), body)
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        self.assert_alive(proc)

    def test_out_of_memory_job(self):
        self.write_job("hog", """
return { run = function()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1024) .. #t end
end }""")
        api, proc = self.start(JOBHOST_MEMORY_MB="16")
        self.assert_error(api, self.invoke(api, {"job": "hog"}),
                          "Runtime.OutOfMemory", "16 MiB")
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        self.assert_alive(proc)

    def test_garbage_bodies_are_invalid_events(self):
        api, proc = self.start()
        cases = [
            ('{"detail":', "not valid JSON"),
            ("not json at all", "not valid JSON"),
            ("[1, 2]", "must be a JSON object, not an array"),
            ('"hello"', "must be a JSON object, not a string"),
            ("42", "must be a JSON object, not a number"),
            ('{"job": 7}', "\"job\" must be a string, not a number"),
            ('{"job": "hello\\u0000x"}', "holds a NUL character"),
            ('{"job": "hello", "params": [1]}', "\"params\" must be a JSON "
             "object"),
            ('{"job": "hello", "params": "x"}', "\"params\" must be a JSON "
             "object"),
            ('{"job": "hello"} trailing', "not valid JSON"),
            ('{"job": "hello"}\x00{"job": "boom"}', "not valid JSON"),
        ]
        for body, phrase in cases:
            with self.subTest(body=body):
                self.assert_error(api, self.invoke(api, body),
                                  "Event.Invalid", phrase)
        # Then a normal event, from the same process.
        self.assert_ok(api, self.invoke(api, scheduled_event("hello")))
        self.assert_alive(proc)

    def test_unknown_job_names_the_jobs_known(self):
        api, proc = self.start()
        self.assert_error(api, self.invoke(api, {"job": "purge"}),
                          "Job.NotFound", "\"purge\"", "boom, hello")
        self.assert_error(api, self.invoke(api, scheduled_event("nightly")),
                          "Job.NotFound", "\"nightly\"", "rule",
                          "boom, hello")
        self.assert_error(api, self.invoke(api, {"job": "../etc/passwd"}),
                          "Job.NotFound", "boom, hello")
        self.assert_error(api, self.invoke(api, {"detail": {}}),
                          "Job.NotFound", "names no job", "boom, hello")
        self.assert_alive(proc)

    def test_empty_body_is_an_empty_event(self):
        api, proc = self.start(_HANDLER="hello")
        self.assert_ok(api, self.invoke(api, b""))

    def test_three_events_in_a_row(self):
        """The reported case: boom, a broken body, a scheduled event."""
        api, proc = self.start()
        self.assert_error(api, self.invoke(api, {"job": "boom"}),
                          "Job.Error")
        self.assert_error(api, self.invoke(api, '{"detail":'),
                          "Event.Invalid")
        self.assert_ok(api, self.invoke(api, scheduled_event("hello")))
        self.assert_alive(proc)


class ErrorBodyTest(LambdaCase):
    """A job can raise anything; the error post stays small, valid JSON,
    and its type a safe header value."""

    def test_huge_and_invalid_utf8_messages(self):
        self.write_job("huge", 'return { run = function() error(string.rep('
                       '"\\u{e9}", 100000) .. "\\xff", 0) end }')
        self.write_job("bytes", 'return { run = function() '
                       'error("bad \\xff\\xc0 bytes", 0) end }')
        api, proc = self.start()
        body = self.assert_error(api, self.invoke(api, {"job": "huge"}),
                                 "Job.Error")
        message = body["errorMessage"]
        self.assertTrue(message.endswith(" [cut]"), message[-50:])
        self.assertLessEqual(len(message.encode()), 16384 + 6)
        self.assertEqual(set(message[:-6]), {"\u00e9"})
        body = self.assert_error(api, self.invoke(api, {"job": "bytes"}),
                                 "Job.Error")
        self.assertEqual(body["errorMessage"], "bad ?? bytes")
        self.assert_alive(proc)

    def test_error_object_types(self):
        self.write_job("typed", """
return { params = { type = "" }, run = function(ctx, params)
  error(setmetatable({ type = params.type },
        { __tostring = function() return "typed failure" end }))
end }""")
        api, proc = self.start()
        post = self.invoke(api, {"job": "typed",
                                 "params": {"type": "Billing.Overdue"}})
        self.assert_error(api, post, "Billing.Overdue", "typed failure")
        for bad in ("Bad\r\nX-Injected: 1", "NoDot", "A." + "x" * 100, ""):
            with self.subTest(type=bad):
                post = self.invoke(api, {"job": "typed",
                                         "params": {"type": bad}})
                self.assert_error(api, post, "Job.Error", "typed failure")
                self.assertNotIn("X-Injected", post.headers)
        self.assert_alive(proc)


class ResultSizeTest(LambdaCase):
    def test_oversized_result_is_an_error_never_sent(self):
        self.write_job("big", BIG)
        api, proc = self.start()
        post = self.invoke(api, {"job": "big", "params": {"n": 7000000}})
        self.assert_error(api, post, "Job.ResultTooLarge", "7000002 bytes",
                          "6291556")
        log = self.log(proc)
        self.assertIn("error_type=Job.ResultTooLarge", log)
        # The run is logged as the failure it is, once: a query for
        # "run failed" finds it, and no "run finished" says success.
        failed = [line for line in log.splitlines() if "run failed" in line]
        self.assertEqual(len(failed), 1, log)
        self.assertIn("error_type=Job.ResultTooLarge", failed[0])
        self.assertNotIn("outcome=success", log)
        # Exactly at the limit is sent; one byte over is not.
        post = self.invoke(api, {"job": "big", "params": {"n": LIMIT - 2}})
        self.assertEqual(post.kind, "response")
        self.assertEqual(len(post.body), LIMIT)
        post = self.invoke(api, {"job": "big", "params": {"n": LIMIT - 1}})
        self.assert_error(api, post, "Job.ResultTooLarge",
                          "%d bytes" % (LIMIT + 1))
        self.assert_alive(proc)


class EventSizeTest(LambdaCase):
    def test_an_event_over_the_limit_is_answered_and_the_loop_goes_on(self):
        """Lambda sends at most 6 MB; an event over the runtime's 16 MiB
        is not read, but its invocation still gets an error."""
        self.write_job("hello", HELLO)
        api, proc = self.start()
        post = self.invoke(api, {"job": "hello", "pad": "x" * (17 << 20)})
        self.assert_error(api, post, "Event.TooLarge",
                          "the event is over 16777216 bytes")
        self.assertIn("invocation event too large: refused", self.log(proc))
        self.assertNotIn("runtime api unreachable", self.log(proc))
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        self.assert_alive(proc)


class DeadlineTest(LambdaCase):
    def setUp(self):
        super().setUp()
        self.db = jhtest.create_database("lambda_deadline")
        jhtest.superuser_sql("CREATE TABLE counter (n int);"
                             "INSERT INTO counter VALUES (0);"
                             "GRANT ALL ON counter TO jobhost",
                             db="lambda_deadline")
        self.write_job("sleep_in_tx", SLEEP_IN_TX)
        self.write_job("lua_loop", LUA_LOOP)
        self.write_job("sleep_uncapped", SLEEP_UNCAPPED)
        self.write_job("pid", PID)

    def assert_clean(self):
        """No session of the job's database is in a transaction or holds
        a lock, and the job's update was rolled back."""
        rows = jhtest.superuser_sql(
            "SELECT a.pid, a.state, a.xact_start IS NOT NULL, "
            "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid) "
            "FROM pg_stat_activity a WHERE a.datname = 'lambda_deadline' "
            "AND a.pid <> pg_backend_pid()", db="lambda_deadline")
        sessions = [r.split("|") for r in rows.split()]
        self.assertTrue(sessions, "the pooled connection should stay")
        for pid, state, in_xact, locks in sessions:
            self.assertEqual((state, in_xact, locks), ("idle", "f", "0"),
                             rows)
        self.assertEqual(jhtest.superuser_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database "
            "WHERE datname = 'lambda_deadline')",
            db="lambda_deadline").strip(), "0")
        self.assertEqual(jhtest.superuser_sql(
            "SELECT n FROM counter", db="lambda_deadline").strip(), "0")

    def run_into_deadline(self, job, seconds=3.0):
        api, proc = self.start(db_env=self.db)
        rid = api.push({"job": job}, deadline_in=seconds)
        started = time.time()
        post = api.wait_post(rid, timeout=seconds + 10)
        deadline = api.by_id[rid].deadline_sent
        body = self.assert_error(api, post, "Job.Timeout", "deadline")
        self.assertIn("(the invocation's deadline)", body["errorMessage"])
        self.assertLess(post.received_ms, deadline,
                        "the error must be posted before Lambda's deadline")
        self.assertGreater(time.time() - started, 1.0,
                           "stopped far too early")
        self.assert_clean()
        # The process lives on, and its connection is fine for the next.
        self.assert_ok(api, self.invoke(api, {"job": "pid"}))
        self.assert_alive(proc)
        return body

    def test_deadline_inside_pg_sleep(self):
        self.run_into_deadline("sleep_in_tx")

    def test_deadline_inside_pg_sleep_without_the_cap(self):
        """The job lifts statement_timeout, so the server will not stop
        the statement: the host cancels it at the deadline."""
        self.run_into_deadline("sleep_uncapped")

    def test_deadline_inside_a_lua_loop(self):
        self.run_into_deadline("lua_loop")

    def test_batches_stop_before_the_deadline(self):
        """The reported case, scaled down: the job works in batches and
        checks ctx.remaining_ms(); it stops in time and returns what it
        did, as a success."""
        self.write_job("batches", """
return { params = { batch_seconds = 0.5 }, run = function(ctx, params)
  local n = 0
  while ctx.remaining_ms() >= 2000 do
    ctx.db:query("SELECT pg_sleep($1::float8)", params.batch_seconds)
    n = n + 1
  end
  return { done = false, batches = n }
end }""")
        api, proc = self.start(db_env=self.db)
        post = self.invoke(api, {"job": "batches"}, deadline_in=4.0)
        body = self.assert_ok(api, post)
        self.assertFalse(body["done"])
        self.assertGreaterEqual(body["batches"], 2)
        self.assertLess(post.received_ms,
                        api.by_id[post.request_id].deadline_sent - 1000)

    def test_run_stuck_in_c_is_ended_by_the_watchdog(self):
        """A call into C that never returns reaches no hook: half the
        margin after the run's deadline the watchdog posts Job.Timeout
        before Lambda's deadline and ends the process; the database rolls
        the run's transaction back when the connection drops."""
        self.write_job("stuck", STUCK_IN_C)
        api, proc = self.start(db_env=self.db)
        rid = api.push({"job": "stuck"}, deadline_in=3.0)
        started = time.time()
        post = api.wait_post(rid, timeout=15)
        deadline = api.by_id[rid].deadline_sent
        body = self.assert_error(api, post, "Job.Timeout",
                                 "did not stop at its deadline",
                                 "a call did not return")
        self.assertLess(post.received_ms, deadline,
                        "the error must be posted before Lambda's deadline")
        # The run's deadline is 500 ms before Lambda's, the watchdog 250
        # ms after it.
        self.assertGreater(post.received_ms, deadline - 400)
        self.assertGreater(time.time() - started, 2.0)
        self.assertEqual(proc.wait(timeout=10), 1)
        log = self.log(proc)
        self.assertIn("runtime exiting: a run is stuck past its deadline", log)
        deadline_at = time.time() + 10
        while time.time() < deadline_at:
            rows = jhtest.superuser_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = 'lambda_deadline' "
                "AND pid <> pg_backend_pid()", db="lambda_deadline")
            if rows.strip() == "0":
                break
            time.sleep(0.1)
        self.assertEqual(rows.strip(), "0", "the session should be gone")
        self.assertEqual(jhtest.superuser_sql(
            "SELECT n FROM counter", db="lambda_deadline").strip(), "0")

    def test_no_watchdog_without_a_margin_to_post_in(self):
        """Under a JOBHOST_DEADLINE_MARGIN_MS of 40 there is no time left
        to post after the host's own stop: the watchdog stays off, and a
        stuck run is Lambda's to end, as before."""
        self.write_job("stuck", STUCK_IN_C)
        api, proc = self.start(db_env=self.db,
                               JOBHOST_DEADLINE_MARGIN_MS="30")
        post = self.invoke(api, {"job": "lua_loop"}, deadline_in=1.5)
        self.assert_error(api, post, "Job.Timeout", "deadline")
        rid = api.push({"job": "stuck"}, deadline_in=1.0)
        time.sleep(2.5)
        self.assertEqual(api.posts_for(rid), [])
        self.assert_alive(proc)

    def test_deadline_already_past(self):
        api, proc = self.start(db_env=self.db)
        post = self.invoke(api, {"job": "pid"}, deadline_in=0.2)
        self.assert_error(api, post, "Job.Timeout")
        self.assert_alive(proc)


class InitTest(LambdaCase):
    def test_invalid_job_fails_init_naming_the_file(self):
        self.write_job("hello", HELLO)
        self.write_job("broken", "return { run = function(ctx) end\n")
        self.write_job("typo", "return { rn = function() end }")
        api, proc = self.start()
        post = api.wait_for(lambda: api.posts and api.posts[0])
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual(post.kind, "init")
        self.assertEqual(post.error_type, "Job.Invalid")
        body = post.json()
        self.assertEqual(body["errorType"], "Job.Invalid")
        self.assertIn("2 of 3 jobs", body["errorMessage"])
        self.assertIn("broken.lua", body["errorMessage"])
        self.assertIn("typo.lua", body["errorMessage"])
        self.assertIn("\"rn\"", body["errorMessage"])
        self.assertEqual(len(api.posts), 1)
        self.assertEqual(api.nexts, [], "no invocation may be taken")

    def test_job_stuck_at_load_fails_init_naming_the_file(self):
        """A job whose top-level code is stuck in C past the load's
        deadline: the watchdog posts init/error naming the file."""
        self.write_job("hello", HELLO)
        self.write_job("stuck", 'local x = ("a"):rep(300000):find('
                       '".-.-.-.-b")\nreturn { run = function() end }\n')
        api, proc = self.start()
        post = api.wait_for(lambda: api.posts and api.posts[0], timeout=30)
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual((post.kind, post.error_type), ("init", "Job.Invalid"))
        message = post.json()["errorMessage"]
        self.assertIn("stuck.lua cannot be loaded: its top-level code did "
                      "not stop", message)
        self.assertEqual(api.nexts, [], "no invocation may be taken")

    def test_a_slow_top_level_fails_init_within_lambdas_init_limit(self):
        """Lambda gives init 10 s for every job file: each has 2 s."""
        self.write_job("hello", HELLO)
        self.write_job("spin1", "while true do end\nreturn {}\n")
        self.write_job("spin2", "while true do end\nreturn {}\n")
        started = time.time()
        api, proc = self.start()
        post = api.wait_for(lambda: api.posts and api.posts[0], timeout=30)
        self.assertLess(time.time() - started, 9)
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual((post.kind, post.error_type), ("init", "Job.Invalid"))
        message = post.json()["errorMessage"]
        self.assertIn("2 of 3 jobs", message)
        self.assertIn("spin1.lua: did not return its spec within 2 s",
                      message)

    def test_no_jobs_fails_init(self):
        api, proc = self.start()
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual([(p.kind, p.error_type) for p in api.posts],
                         [("init", "Job.NotFound")])
        self.assertIn("no jobs in", api.posts[0].json()["errorMessage"])

    def test_missing_jobs_folder_fails_init(self):
        api, proc = self.start(JOBHOST_JOBS=os.path.join(self.tmp, "nope"))
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual(api.posts[0].error_type, "Job.NotFound")
        self.assertIn("cannot read the jobs folder",
                      api.posts[0].json()["errorMessage"])

    def test_no_command_under_the_runtime_api(self):
        self.write_job("hello", HELLO)
        api = self.fake()
        path = os.path.join(self.tmp, "bare.log")
        with open(path, "w") as out:
            proc = subprocess.Popen(
                [jhtest.BIN], env=self.env(AWS_LAMBDA_RUNTIME_API=api.address),
                stdout=out, stderr=subprocess.STDOUT)
        self.runtimes.append((proc, path))
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))

    def test_jobs_from_lambda_task_root(self):
        root = os.path.join(self.tmp, "task")
        os.makedirs(os.path.join(root, "jobs"))
        with open(os.path.join(root, "jobs", "hello.lua"), "w") as f:
            f.write(HELLO)
        api = self.fake()
        env = self.env(AWS_LAMBDA_RUNTIME_API=api.address,
                       LAMBDA_TASK_ROOT=root)
        del env["JOBHOST_JOBS"]
        path = os.path.join(self.tmp, "bootstrap.log")
        # As Lambda starts it: the binary named bootstrap, no arguments.
        boot = os.path.join(self.tmp, "bootstrap")
        os.symlink(jhtest.BIN, boot)
        with open(path, "w") as out:
            proc = subprocess.Popen([boot], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.runtimes.append((proc, path))
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))


class WarmTest(LambdaCase):
    def setUp(self):
        super().setUp()
        self.db = jhtest.create_database("lambda_warm")
        jhtest.superuser_sql("CREATE TABLE counter (n int);"
                             "INSERT INTO counter VALUES (0);"
                             "GRANT ALL ON counter TO jobhost",
                             db="lambda_warm")
        self.write_job("pid", PID)
        self.write_job("boom", BOOM)
        self.write_job("lua_loop", LUA_LOOP)
        self.write_job("bad_sql", """
return { run = function(ctx)
  ctx.db:exec("SET application_name = 'left-over'")
  ctx.db:exec("SELECT pg_advisory_lock(77)")
  ctx.db:exec("CREATE TEMP TABLE scratch (x int)")
  ctx.db:exec("BEGIN")
  ctx.db:exec("UPDATE counter SET n = n + 1")
  ctx.db:query("SELECT * FROM no_such_table")
end }""")

    def test_twenty_invocations_with_failures_mixed_in(self):
        api, proc = self.start(db_env=self.db)
        plan = [
            ({"job": "pid"}, None), ({"job": "boom"}, "Job.Error"),
            ({"job": "pid"}, None), ('{"job":', "Event.Invalid"),
            ({"job": "bad_sql"}, "Database.Error"), ({"job": "pid"}, None),
            ({"job": "nope"}, "Job.NotFound"), ({"job": "pid"}, None),
            ({"job": "lua_loop"}, "Job.Timeout"), ({"job": "pid"}, None),
        ] * 2
        pids = set()
        for i, (event, error_type) in enumerate(plan):
            deadline = 2.0 if error_type == "Job.Timeout" else 900.0
            post = self.invoke(api, event, deadline_in=deadline)
            with self.subTest(i=i, event=event):
                if error_type:
                    self.assert_error(api, post, error_type)
                else:
                    pids.add(self.assert_ok(api, post)["pid"])
        self.assertEqual(len(api.posts), 20)
        # One pooled connection served every run: it was reset, not
        # replaced, after each failure.
        self.assertEqual(len(pids), 1, pids)
        self.assert_alive(proc)
        state = jhtest.superuser_sql(
            "SELECT state, application_name, "
            "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid) "
            "FROM pg_stat_activity a WHERE datname = 'lambda_warm' "
            "AND pid <> pg_backend_pid()", db="lambda_warm").split()
        self.assertEqual(len(state), 1, state)
        self.assertTrue(state[0].startswith("idle|jobhost"), state)
        self.assertTrue(state[0].endswith("|0"), state)
        self.assertEqual(jhtest.superuser_sql(
            "SELECT n FROM counter", db="lambda_warm").strip(), "0")

    def test_connection_killed_between_invocations(self):
        api, proc = self.start(db_env=self.db)
        first = self.assert_ok(api, self.invoke(api, {"job": "pid"}))["pid"]
        jhtest.superuser_sql("SELECT pg_terminate_backend(%d)" % first,
                             db="lambda_warm")
        time.sleep(0.2)
        post = self.invoke(api, {"job": "pid"})
        second = self.assert_ok(api, post)["pid"]
        self.assertNotEqual(first, second)
        # And the replacement is kept for the next run.
        third = self.assert_ok(api, self.invoke(api, {"job": "pid"}))["pid"]
        self.assertEqual(second, third)
        self.assert_alive(proc)

    def test_pooled_connection_that_went_silent_is_replaced(self):
        """A backend that no longer answers (stopped here; a network path
        lost in a failover looks the same) is given up after the
        pooled-connection check's 2 s, not waited on for the whole run."""
        api, proc = self.start(db_env=self.db)
        first = self.assert_ok(api, self.invoke(api, {"job": "pid"}))["pid"]
        os.kill(first, signal.SIGSTOP)
        try:
            started = time.time()
            post = self.invoke(api, {"job": "pid"}, deadline_in=30)
            took = time.time() - started
            second = self.assert_ok(api, post)["pid"]
        finally:
            os.kill(first, signal.SIGCONT)
        self.assertNotEqual(first, second)
        self.assertGreater(took, 1.9)
        self.assertLess(took, 8)
        self.assertIn("pooled connection did not answer: replaced",
                      self.log(proc))
        self.assert_alive(proc)

    def test_silent_pooled_connection_with_little_time_left(self):
        """With under 2 s left, the silent pooled connection is given up
        at the run's deadline: Job.Timeout, and the process lives on."""
        api, proc = self.start(db_env=self.db)
        first = self.assert_ok(api, self.invoke(api, {"job": "pid"}))["pid"]
        os.kill(first, signal.SIGSTOP)
        try:
            post = self.invoke(api, {"job": "pid"}, deadline_in=1.5)
            body = self.assert_error(api, post, "Job.Timeout", "deadline")
            self.assertNotIn("did not return", body["errorMessage"])
        finally:
            os.kill(first, signal.SIGCONT)
        self.assert_alive(proc)
        second = self.assert_ok(api, self.invoke(api, {"job": "pid"}))["pid"]
        self.assertNotEqual(first, second)


class LockTest(LambdaCase):
    def setUp(self):
        super().setUp()
        self.db = jhtest.create_database("lambda_lock")
        jhtest.superuser_sql("CREATE TABLE runs (request_id text);"
                             "GRANT ALL ON runs TO jobhost",
                             db="lambda_lock")
        self.write_job("locked", LOCKED)

    def advisory_locks(self):
        return int(jhtest.superuser_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = 'lambda_lock')", db="lambda_lock").strip())

    def test_two_concurrent_runs_of_a_locked_job(self):
        api_a, proc_a = self.start(db_env=self.db)
        api_b, proc_b = self.start(db_env=self.db)
        rid_a = api_a.push({"job": "locked", "params": {"seconds": 3}})
        # Wait until A holds the lock, then run B.
        end = time.monotonic() + 20
        while self.advisory_locks() == 0:
            self.assertLess(time.monotonic(), end, "A never took the lock")
            time.sleep(0.05)
        post_b = self.invoke(api_b, {"job": "locked"})
        self.assertEqual(self.assert_ok(api_b, post_b),
                         {"skipped": "locked"})
        self.assertEqual(api_a.posts, [], "B must not wait for A")
        post_a = api_a.wait_post(rid_a, 20)
        self.assertEqual(self.assert_ok(api_a, post_a), {"ran": True})
        self.assertEqual(self.advisory_locks(), 0)
        runs = jhtest.superuser_sql("SELECT request_id FROM runs",
                                    db="lambda_lock").split()
        self.assertEqual(runs, [rid_a])

        # Released on the error path too: A fails, then B runs.
        post = self.invoke(api_a, {"job": "locked",
                                   "params": {"fail": True}})
        self.assert_error(api_a, post, "Job.Error", "holding the lock")
        self.assertEqual(self.advisory_locks(), 0)
        self.assertEqual(self.assert_ok(api_b, self.invoke(
            api_b, {"job": "locked"})), {"ran": True})
        self.assert_alive(proc_a)
        self.assert_alive(proc_b)

    def test_lock_held_by_another_session(self):
        api, proc = self.start(db_env=self.db)
        pg = jhtest.pg_env()
        holder = subprocess.Popen(
            [jhtest.PSQL, "-h", pg["PGSOCKETDIR"], "-p", pg["PGPORT"],
             "-U", "postgres", "-d", "lambda_lock", "-qAtX"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("SELECT 'held' FROM pg_advisory_lock("
                               "hashtextextended('jobhost/locked', 0));\n")
            holder.stdin.flush()
            self.assertEqual(holder.stdout.readline().strip(), "held")
            self.assertEqual(self.assert_ok(api, self.invoke(
                api, {"job": "locked"})), {"skipped": "locked"})
        finally:
            holder.stdin.close()
            holder.wait(10)
            holder.stdout.close()
        # psql has exited; its backend lets the lock go as it ends, a
        # moment later.
        deadline = time.monotonic() + 10
        while self.advisory_locks() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.advisory_locks(), 0)
        self.assertEqual(self.assert_ok(api, self.invoke(
            api, {"job": "locked"})), {"ran": True})


class RuntimeApiTest(LambdaCase):
    def setUp(self):
        super().setUp()
        self.write_job("hello", HELLO)
        self.write_job("boom", BOOM)

    def test_next_has_no_total_timeout(self):
        """The reported case: `next` answers only after a long wait (the
        environment sat frozen between two runs). Here `next` is held
        open for 62 s, longer than every timeout the runtime sets (2 s to
        connect, 60 s for a post), and for most of it the process is
        frozen with SIGSTOP, as Lambda freezes it. The event is still
        processed, and from the one `next` call: no retry after a
        timeout."""
        api, proc = self.start()
        api.wait_nexts(1)
        rid = api.push({"job": "hello"}, hold=62.0)
        time.sleep(3.0)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(50.0)
        proc.send_signal(signal.SIGCONT)
        post = api.wait_post(rid, 30)
        self.assert_ok(api, post)
        api.wait_nexts(2)
        self.assertEqual(len(api.nexts), 2, "one `next` for the held event, "
                         "one waiting now")
        self.assert_alive(proc)

    def test_refusals_are_logged_and_the_loop_goes_on(self):
        api, proc = self.start()
        for status in (400, 403, 413):
            with self.subTest(status=status):
                post = self.invoke(api, {"job": "hello"},
                                   post_status=status)
                self.assertEqual(post.kind, "response")
                # Never a refused response followed by an error post.
                self.assert_one_post(api, post.request_id)
                post = self.invoke(api, {"job": "boom"}, post_status=status)
                self.assert_error(api, post, "Job.Error")
                api.push_status(status)
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        self.assert_alive(proc)
        log = self.log(proc)
        self.assertIn("status=413", log)
        self.assertIn("call=next status=403", log)

    def test_500_on_next_exits(self):
        api, proc = self.start()
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        api.push_status(500)
        self.assertEqual(proc.wait(10), 1)
        self.assertIn("status=500", self.log(proc))

    def test_next_refused_again_and_again_exits(self):
        """An API that answers `next` with a 4xx every time will never
        give the runtime work: after ten refusals in a row it exits
        instead of logging a refusal a second forever; refusals with
        events between them do not add up."""
        api, proc = self.start()
        for _ in range(12):
            api.push_status(404)
            api.push_status(403)
            self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        for _ in range(10):
            api.push_status(404)
        self.assertEqual(proc.wait(30), 1)
        log = self.log(proc)
        self.assertIn("runtime api keeps refusing next: exiting", log)
        self.assertIn("refusals=10", log)

    def test_500_on_a_post_exits(self):
        api, proc = self.start()
        self.invoke(api, {"job": "hello"}, post_status=500)
        self.assertEqual(proc.wait(10), 1)
        self.assertEqual(len(api.posts), 1)

    def test_unreachable_api_is_retried_briefly_then_exits(self):
        api = self.fake()
        address = api.address
        api.stop()
        started = time.monotonic()
        _, proc = self.start(api=api)
        self.assertEqual(proc.wait(15), 1)
        took = time.monotonic() - started
        self.assertGreater(took, 0.5)
        self.assertLess(took, 8.0)
        log = self.log(proc)
        self.assertEqual(log.count("runtime api unreachable"), 6, log)
        self.assertIn(address.split(":")[0], log)

    def test_sigterm_stops_a_running_job_and_exits(self):
        self.write_job("spin", "return { run = function() "
                       "while true do end end }")
        api, proc = self.start()
        rid = api.push({"job": "spin"})
        api.wait_for(lambda: rid in api.by_id)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual([(p.kind, p.error_type) for p in api.posts],
                         [("error", "Job.Interrupted")])

    def test_sigterm_while_waiting_exits_cleanly(self):
        api, proc = self.start()
        api.wait_nexts(1)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)


class WarmMemoryTest(LambdaCase):
    def rss_kb(self, proc):
        with open("/proc/%d/status" % proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        self.fail("no VmRSS")

    def test_many_invocations_do_not_grow_the_process(self):
        """A warm process lives for thousands of invocations: what one
        invocation keeps (each a new request id and trace id) must not
        add up. 5,000 invocations that keep 140 bytes each would grow it
        by 700 KB."""
        self.write_job("hello", HELLO)
        # Under AddressSanitizer freed memory is held in a quarantine;
        # without one, RSS means the same in both builds.
        api, proc = self.start(
            AWS_LAMBDA_LOG_LEVEL="ERROR",
            ASAN_OPTIONS=":".join(filter(None, [
                os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=0",
                "thread_local_quarantine_size_kb=0"])))
        bodies = ['{"job":', {"job": "nope"}, {"job": "hello"}]
        for i in range(500):
            api.wait_post(api.push(bodies[i % 3]))
        before = self.rss_kb(proc)
        for i in range(5000):
            api.wait_post(api.push(bodies[i % 3]))
        grown = self.rss_kb(proc) - before
        self.assertLess(grown, 256, "grew by %d kB" % grown)
        # The trace id is still the current invocation's.
        post = self.invoke(api, {"job": "hello"}, trace_id="Root=1-last")
        self.assertEqual(self.assert_ok(api, post)["trace"], "Root=1-last")
        post = self.invoke(api, {"job": "hello"}, trace_id="Root=1-" + "x" *
                           400)
        self.assertEqual(self.assert_ok(api, post)["trace"],
                         "Root=1-" + "x" * 400)


class LogTest(LambdaCase):
    def test_json_logs_carry_request_id_and_run_records(self):
        self.write_job("hello", HELLO)
        self.write_job("boom", BOOM)
        api, proc = self.start(AWS_LAMBDA_LOG_FORMAT="JSON",
                               AWS_LAMBDA_LOG_LEVEL="INFO")
        ok = self.invoke(api, {"job": "hello"})
        bad = self.invoke(api, {"job": "boom"})
        api.push_status(500)
        proc.wait(10)
        records = [json.loads(line) for line in self.log(proc).splitlines()]
        for r in records:
            for key in ("timestamp", "level", "message"):
                self.assertIn(key, r)
        by_id = {}
        for r in records:
            by_id.setdefault(r.get("requestId"), []).append(r)
        started, finished = by_id[ok.request_id]
        self.assertEqual(started["message"], "run started")
        self.assertEqual(finished["message"], "run finished")
        self.assertEqual((finished["job"], finished["outcome"]),
                         ("hello", "success"))
        self.assertIn("duration_ms", finished)
        failed = by_id[bad.request_id][-1]
        self.assertEqual((failed["level"], failed["outcome"],
                          failed["error_type"]),
                         ("ERROR", "failure", "Job.Error"))
        self.assertIn("duration_ms", failed)
        self.assertEqual(records[0]["message"], "runtime ready")
        self.assertNotIn("requestId", records[0])

    def test_log_level_is_honoured(self):
        self.write_job("hello", HELLO)
        api, proc = self.start(AWS_LAMBDA_LOG_LEVEL="WARN")
        self.assert_ok(api, self.invoke(api, {"job": "hello"}))
        self.assert_error(api, self.invoke(api, {"job": "x"}),
                          "Job.NotFound")
        api.push_status(500)
        proc.wait(10)
        log = self.log(proc)
        self.assertNotIn("run started", log)
        self.assertIn("ERROR invocation failed", log)


if __name__ == "__main__":
    jhtest.main()
