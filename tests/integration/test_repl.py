"""`jobhost repl` end to end: the real binary against the throwaway
PostgreSQL. Scripts piped to standard input cover what the REPL prints
(values, query tables, errors, commands); a pseudo-terminal covers the
interactive path: line editing, continuation prompts, history, and
Ctrl-C stopping a running statement or loop with the prompt working
again afterwards. SIGINT and SIGTERM sent to a script, and SIGTERM to a
terminal session, stop what runs and end it."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import jhtest

DB = "repl_test"


def setUpModule():
    jhtest.create_database(DB)


class ReplCase(jhtest.Case):
    def setUp(self):
        super().setUp()
        self.db_env = jhtest.pg_env()
        self.db_env["PGDATABASE"] = DB
        self.history = os.path.join(self.tmp, "history")

    def repl_env(self, **extra):
        return self.env(self.db_env, JOBHOST_HISTORY=self.history, **extra)

    def repl(self, script, *args, env=None):
        """Pipes script to `jobhost repl ARGS`; returns the process."""
        return self.jobhost("repl", *args, env=env or self.repl_env(),
                            input=script)


class ValuesTest(ReplCase):
    def test_an_expression_prints_its_value(self):
        proc = self.repl("1 + 1\n'it\\'s'\n2^53\n10 // 3, 7.5\nnil\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout,
                         '2\n"it\'s"\n9007199254740992.0\n3\n7.5\nnil\n')

    def test_a_statement_prints_nothing_and_a_local_lives_on(self):
        proc = self.repl("local n = 20\nlocal function twice(x)\n"
                         "  return 2 * x\nend\ntwice(n) + 2\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "42\n")

    def test_locals_with_attributes_and_several_in_an_input_live_on(self):
        proc = self.repl('local y <const> = 5\ny\n'
                         'local s = "a" local t = 2\ns, t\n'
                         'local a, b <const> = 1; local u\na, b, u\n'
                         'local function f() return y end local g = f\n'
                         'g()\n'
                         'local p = 1\n  local q = p + 1\n'
                         'do local inner = 1 end\n'
                         'function h()\n  local deep = 1\n  return deep\nend\n'
                         'q, inner, h(), deep\n')
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, '5\n"a"\n2\n1\nnil\nnil\n5\n'
                         '2\nnil\n1\nnil\n')

    def test_a_const_local_is_still_const_in_its_input(self):
        proc = self.repl("local k <const> = 1 k = 2\nk\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("attempt to assign to const variable 'k'", proc.stderr)
        self.assertEqual(proc.stdout, "nil\n")

    def test_a_close_local_is_refused_saying_why(self):
        proc = self.repl("local c <close> = nil\n'after'\n"
                         "do local d <close> = nil end\n")
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, '"after"\n')
        self.assertEqual(proc.stderr.splitlines(), [
            "error: input:1: 'c' is <close>, so it would be closed as soon"
            " as this input ends and could not stay for the session: drop"
            " <close> (and close it yourself), or put the code that uses"
            " it in the same input, inside do ... end"])

    def test_tables_print_as_json_like_text_with_secrets_hidden(self):
        proc = self.repl('{b = {1, 2, "x"}, a = true, password = "hunter2",'
                         ' n = json.null}\n')
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, '{"a": true, "b": [1, 2, "x"], '
                         '"n": null, "password": "***"}\n')
        self.assertNotIn("hunter2", proc.stdout)

    def test_input_continues_until_the_chunk_is_complete(self):
        proc = self.repl("for i = 1, 3 do\n  print(i * 10)\nend\n"
                         "1 +\n  2\nsql([[\n  SELECT 5 AS five\n]])\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout,
                         "10\n20\n30\n3\n five\n------\n    5\n(1 row)\n")

    def test_the_last_value_is_kept_in_underscore(self):
        proc = self.repl("sql 'SELECT 7 AS n'\n_[1].n * 6\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(proc.stdout.endswith("\n42\n"), proc.stdout)


class ErrorsTest(ReplCase):
    def test_an_error_shows_its_traceback_and_the_session_goes_on(self):
        proc = self.repl("local function f() error('boom') end\n"
                         "f()\n'after'\n")
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, '"after"\n')
        self.assertIn("error: input:1: boom", proc.stderr)
        self.assertIn("stack traceback:", proc.stderr)
        self.assertIn("in function 'f'", proc.stderr)

    def test_a_syntax_error_is_reported(self):
        proc = self.repl("x = = 1\n'ok'\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("unexpected symbol near '='", proc.stderr)
        self.assertEqual(proc.stdout, '"ok"\n')

    def test_an_unfinished_script_is_a_syntax_error(self):
        proc = self.repl("for i = 1, 3 do\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("'end' expected", proc.stderr)

    def test_the_memory_limit_stops_an_input_and_the_session_goes_on(self):
        proc = self.repl("keep = 42\n"
                         "do local t = {}; for i = 1, 1e9 do t[i] = {i} end"
                         " end\n"
                         "keep\n"
                         "big = {}\n"
                         "for i = 1, 1e9 do big[i] = {i} end\n"
                         "keep, big\n"
                         "sql 'SELECT 1 AS one'\n",
                         env=self.repl_env(JOBHOST_MEMORY_MB=16))
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, "42\nnil\nnil\n one\n-----\n   1\n"
                         "(1 row)\n")
        self.assertEqual(proc.stderr.splitlines(), [
            "error: memory limit of 16 MiB reached; the input was stopped",
            "error: memory limit of 16 MiB reached and the session's globals"
            " hold most of it: the session starts afresh (globals are gone,"
            " ctx is new)"])

    def test_sql_errors_point_at_the_input(self):
        proc = self.repl("sql('SELECT $1::int', {})\n"
                         "x = 1\nsql({})\n"
                         "local ctx = nil\nsql 'SELECT 1'\n"
                         "ctx = { db = 5 }\nsql 'SELECT 1'\n")
        self.assertEqual(proc.returncode, 1)
        errors = [line for line in proc.stderr.splitlines()
                  if line.startswith("error: ")]
        self.assertEqual(errors, [
            "error: input:1: parameter $1: cannot bind a table value",
            "error: input:1: bad argument #1 to 'sql' (string expected, got"
            " table)",
            "error: input:1: sql: ctx is nil, not a context any more:"
            " sql(q, ...) runs ctx.db:query(q, ...)",
            "error: input:1: sql: ctx.db is a number, not a connection"])
        self.assertNotIn("repl.lua", proc.stderr)
        self.assertIn("in function 'sql'", proc.stderr)

    def test_a_database_error_shows_its_sqlstate(self):
        proc = self.repl("sql 'SELECT * FROM no_such_table'\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("Database.Error [42P01]", proc.stderr)


class QueryTableTest(ReplCase):
    def test_a_result_prints_as_an_aligned_table(self):
        proc = self.repl("sql [[SELECT * FROM (VALUES"
                         " (1, 'alice', 2.5::float8), (22, NULL, NULL),"
                         " (333, '', -1::float8))"
                         " AS t(id, name, score) ORDER BY id]]\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout,
                         " id  | name  | score\n"
                         "-----+-------+-------\n"
                         "   1 | alice |   2.5\n"
                         "  22 | \u2205     | \u2205\n"
                         " 333 |       |  -1.0\n"
                         "(3 rows)\n")

    def test_a_column_named_like_a_secret_is_hidden_in_a_table(self):
        proc = self.repl("sql [[SELECT 'alice' AS usename, 'hunter2x' AS"
                         " password, 'tok-123456' AS api_token]]\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout,
                         " usename | password | api_token\n"
                         "---------+----------+-----------\n"
                         " alice   | ***      | ***\n"
                         "(1 row)\n")

    def test_null_differs_from_an_empty_string(self):
        proc = self.repl("sql \"SELECT NULL::text AS a, '' AS b\"\n")
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[2], " \u2205 |")
        self.assertEqual(lines[3], "(1 row)")

    def test_a_long_result_is_cut_and_says_so(self):
        proc = self.repl("sql 'SELECT g AS n FROM generate_series(1, 250) g'"
                         "\n#_\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[2].strip(), "1")
        self.assertEqual(lines[101].strip(), "100")
        self.assertEqual(lines[102],
                         "(250 rows, the first 100 shown; all are in _)")
        self.assertEqual(lines[103], "250")

    def test_an_empty_result_keeps_its_header(self):
        proc = self.repl("sql 'SELECT 1 AS one WHERE false'\n")
        self.assertEqual(proc.stdout, " one\n-----\n(0 rows)\n")

    def test_control_characters_and_bytes_stay_on_one_line(self):
        proc = self.repl("sql [[SELECT E'a\\nb' AS t, '\\x00ff'::bytea"
                         " AS b]]\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines()[2],
                         " a\u21b5b | \\x00ff")

    def test_a_row_prints_in_column_order(self):
        proc = self.repl("sql('SELECT 2 AS z, 1 AS a')[1]\n")
        self.assertEqual(proc.stdout, '{"z": 2, "a": 1}\n')


class WriteTest(ReplCase):
    def test_a_write_without_write_fails_and_says_how_to_allow_it(self):
        proc = self.repl("ctx.db:exec('CREATE TABLE ro_probe (a int)')\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("[25006]", proc.stderr)
        self.assertIn("jobhost repl --write", proc.stderr)
        self.assertEqual(jhtest.superuser_sql(
            "SELECT count(*) FROM pg_class WHERE relname = 'ro_probe'",
            db=DB).strip(), "0")

    def test_with_write_the_change_is_made(self):
        jhtest.superuser_sql("DROP TABLE IF EXISTS rw_probe", db=DB)
        proc = self.repl("ctx.db:exec('CREATE TABLE rw_probe (a int)')\n"
                         "ctx.db:exec('INSERT INTO rw_probe VALUES (1), (2)')"
                         "\n", "--write")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "0\n2\n")
        self.assertEqual(jhtest.superuser_sql(
            "SELECT sum(a) FROM rw_probe", db=DB).strip(), "3")


class TargetTest(ReplCase):
    def test_secret_names_the_database(self):
        pg = self.db_env
        path = os.path.join(self.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump({"team/db": {
                "engine": "postgres", "host": pg["PGHOST"],
                "port": int(pg["PGPORT"]), "username": pg["PGUSER"],
                "password": pg["PGPASSWORD"], "dbname": DB}}, f)
        env = self.repl_env(JOBHOST_SECRETS_FILE=path)
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            env.pop(k)
        proc = self.repl("sql('SELECT current_database() AS db')[1].db\n"
                         "ctx.secret('team/db')\n"
                         "ctx.secret('team/db').password\n"
                         "error(ctx.secret('team/db').password)\n",
                         "--secret", "team/db", env=env)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[0], '"repl_test"')
        self.assertIn('  "password": "***",\n', proc.stdout)
        self.assertEqual(lines[-1], '"[redacted]"')
        self.assertIn("error: input:1: [redacted]", proc.stderr)

    def test_db_takes_a_conninfo(self):
        pg = self.db_env
        env = self.repl_env()
        env.pop("PGDATABASE")
        proc = self.repl("sql('SELECT current_database() AS db')[1].db\n",
                         "--db", f"host={pg['PGHOST']} port={pg['PGPORT']} "
                         f"dbname={DB}", env=env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, '"repl_test"\n')

    def test_db_and_secret_together_are_bad_usage(self):
        proc = self.repl("", "--db", "x", "--secret", "y")
        self.assertEqual(proc.returncode, 2)


class CommandsTest(ReplCase):
    ADD_JOB = """
return {
  description = "Insert a row and count them",
  schedule = "rate(1 hour)",
  params = { n = 1 },
  run = function(ctx, params)
    ctx.log.info("inserting", { n = params.n })
    ctx.db:exec("INSERT INTO dry_probe SELECT generate_series(1, $1::int)",
                params.n)
    return { rows = ctx.db:query("SELECT count(*) AS n FROM dry_probe")[1].n }
  end,
}
"""

    def test_run_runs_a_job_dry_and_shows_its_log_and_result(self):
        jhtest.superuser_sql("DROP TABLE IF EXISTS dry_probe;"
                             " CREATE TABLE dry_probe (a int);"
                             " GRANT ALL ON dry_probe TO jobhost", db=DB)
        self.write_job("add_rows", self.ADD_JOB)
        proc = self.repl(".run add_rows n=3\n_.rows\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"^dry run of add_rows, rolled back "
                         r"after \d+ ms; its result:\n\{\"rows\": 3\}\n3\n$")
        self.assertIn("inserting", proc.stderr)
        self.assertIn("n=3", proc.stderr)
        self.assertEqual(jhtest.superuser_sql(
            "SELECT count(*) FROM dry_probe", db=DB).strip(), "0")

    def test_run_shows_rows_in_column_order_as_run_prints_them(self):
        self.write_job("cols", """
return { run = function(ctx)
  return { rows = ctx.db:query("SELECT 3 AS zeta, 'b' AS alpha, 1 AS mid"),
           plain = { z = 1, a = 2 } }
end }""")
        proc = self.repl(".run cols\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn('"rows": [{"zeta": 3, "alpha": "b", "mid": 1}]',
                      proc.stdout)
        self.assertIn('"plain": {"a": 2, "z": 1}', proc.stdout)
        run = self.jobhost("run", "cols", env=self.repl_env())
        self.assertIn('"rows":[{"zeta":3,"alpha":"b","mid":1}]', run.stdout)

    def test_a_failing_run_shows_the_error(self):
        self.write_job("fails", "return { run = function() "
                       "error('no luck') end }")
        proc = self.repl(".run fails\n.run add_rows x\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("dry run of fails failed: Job.Error:", proc.stderr)
        self.assertIn("no luck", proc.stderr)
        self.assertIn('"x" is not KEY=VALUE', proc.stderr)

    def test_jobs_lists_jobs_with_schedule_and_description(self):
        self.write_job("add_rows", self.ADD_JOB)
        self.write_job("broken", "return { run = 5 }")
        proc = self.repl(".jobs\n")
        self.assertEqual(proc.stdout.splitlines(), [
            "add_rows  rate(1 hour)  Insert a row and count them",
            'broken    INVALID: ' + self.jobs + '/broken.lua: "run" must be'
            ' a function, not number',
            "(2 jobs in " + self.jobs + ")"])

    def test_reload_reads_edited_jobs_and_modules_again(self):
        self.write_job("spec_one", "return { description = 'first',"
                       " run = function() end }")
        self.write_job("helper", "return { version = 1 }")
        script = ("jobs.spec_one.description\n"
                  "require('helper').version\n"
                  "moved = os.rename(ctx_path .. '/spec_one.next',\n"
                  "  ctx_path .. '/spec_one.lua')\n"
                  "moved = os.rename(ctx_path .. '/helper.next',\n"
                  "  ctx_path .. '/helper.lua')\n"
                  "jobs.spec_one.description\n"
                  ".reload\n"
                  "jobs.spec_one.description\n"
                  "require('helper').version\n")
        with open(os.path.join(self.jobs, "spec_one.next"), "w") as f:
            f.write("return { description = 'second', run = function() end }")
        with open(os.path.join(self.jobs, "helper.next"), "w") as f:
            f.write("return { version = 2 }")
        proc = self.repl(f"ctx_path = {json.dumps(self.jobs)}\n" + script)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[:3], ['"first"', "1", '"first"'])
        self.assertTrue(lines[3].startswith("forgot "), lines[3])
        self.assertEqual(lines[4:], ['"second"', "2"])

    def test_help_and_unknown_commands(self):
        proc = self.repl(".help\n.nonsense\n.5 + 1\n")
        self.assertIn(".run JOB", proc.stdout)
        self.assertIn("unknown command .nonsense", proc.stderr)
        self.assertTrue(proc.stdout.endswith("\n1.5\n"), proc.stdout)


class ScriptSignalTest(ReplCase):
    """SIGINT and SIGTERM to a script: what runs is stopped (a statement
    cancelled on the server), the rest of the script is not run, and the
    exit status tells which signal it was."""

    def start_script(self, script):
        """Starts `jobhost repl` reading script; returns the process."""
        proc = subprocess.Popen([jhtest.BIN, "repl"], env=self.repl_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(jhtest.stop_process, proc)
        proc.stdin.write(script)
        proc.stdin.flush()
        return proc

    def sleeping_backend(self):
        """The pid of the REPL's backend once it runs pg_sleep."""
        until = time.monotonic() + 10
        while time.monotonic() < until:
            pid = jhtest.superuser_sql(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
                " AND application_name = 'jobhost/repl'"
                " AND query LIKE 'SELECT pg_sleep%'", db=DB).strip()
            if pid:
                return pid
            time.sleep(0.05)
        self.fail("the statement never started")

    def finished(self, proc):
        """Waits for the end of proc; returns its stdout and stderr."""
        proc.wait(timeout=10)
        out, err = proc.stdout.read(), proc.stderr.read()
        self.record(out, err)
        return out, err

    def test_a_signal_cancels_the_statement_and_stops_the_script(self):
        for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            with self.subTest(signal=sig.name):
                proc = self.start_script("sql 'SELECT pg_sleep(20)'\n"
                                         "print('after')\n")
                proc.stdin.close()
                pid = self.sleeping_backend()
                started = time.monotonic()
                proc.send_signal(sig)
                out, err = self.finished(proc)
                self.assertLess(time.monotonic() - started, 3)
                self.assertEqual(proc.returncode, status, err)
                self.assertEqual(jhtest.superuser_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
                    " AND state = 'active'" % pid, db=DB).strip(), "0")
                self.assertNotIn("after", out)
                self.assertIn("interrupted: the input was stopped", err)
                self.assertIn(sig.name + ": the script stops here", err)

    def test_a_signal_stops_a_lua_loop_in_a_script(self):
        proc = self.start_script("while true do end\nprint('after')\n")
        proc.stdin.close()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = self.finished(proc)
        self.assertEqual(proc.returncode, 143, err)
        self.assertNotIn("after", out)

    def test_a_signal_while_the_script_waits_for_input_ends_it(self):
        proc = self.start_script("print('ready')\n")
        self.assertEqual(proc.stdout.readline(), "ready\n")
        proc.send_signal(signal.SIGINT)
        proc.stdin.close()
        _, err = self.finished(proc)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("SIGINT: the script stops here", err)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


class Terminal:
    """jobhost repl on a pseudo-terminal, read as a user sees it."""

    def __init__(self, test, env, *args):
        self.test = test
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(jhtest.BIN, [jhtest.BIN, "repl", *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 50, 200, 0, 0))
        self.seen = ""
        self.pos = 0
        self.status = None

    def read_some(self, wait):
        r, _, _ = select.select([self.fd], [], [], wait)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        self.seen += ANSI.sub("", data.decode("utf-8", "replace"))
        return True

    def expect(self, pattern, timeout=15):
        """Waits for pattern (a regex) in the output after the last
        match; returns the match."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.seen, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = end - time.monotonic()
            if left <= 0 or not self.read_some(min(left, 0.2)) and \
                    not self.alive():
                self.test.record(self.seen)
                self.test.fail(f"no {pattern!r} in output:\n"
                               f"{self.seen[self.pos:]}")

    def alive(self):
        """Whether the process runs; reaps it (keeping its status) when
        it has ended."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is None

    def editing(self, timeout=10):
        """Waits until libedit has the terminal (canonical mode off): a
        key sent before then reaches the terminal's own line editing,
        which would echo it twice or swallow a Ctrl-D."""
        end = time.monotonic() + timeout
        while termios.tcgetattr(self.fd)[3] & termios.ICANON:
            if time.monotonic() > end:
                self.test.fail("the prompt never took the terminal")
            time.sleep(0.01)

    def send(self, text):
        os.write(self.fd, text.encode())

    def finish(self):
        """Ctrl-D; returns the exit status."""
        self.send("\x04")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            self.read_some(0.1)
            if not self.alive():
                os.close(self.fd)
                self.test.record(self.seen)
                return self.status
        os.kill(self.pid, signal.SIGKILL)
        self.status = os.waitpid(self.pid, 0)[1]
        os.close(self.fd)
        self.test.record(self.seen)
        self.test.fail("the REPL did not leave on Ctrl-D:\n" + self.seen)


class TerminalTest(ReplCase):
    PROMPT = r"jobhost> "

    def start(self, *args):
        env = self.repl_env(TERM="xterm")
        term = Terminal(self, env, *args)
        self.addCleanup(lambda: term.alive() and os.kill(term.pid,
                                                         signal.SIGKILL))
        return term

    def prompt(self, t, before=""):
        """Waits for the output before, then the prompt, ready for
        keys."""
        t.expect(before + self.PROMPT)
        t.editing()

    def backends_sleeping(self):
        return jhtest.superuser_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE"
            " '%pg_sleep(30)%' AND state = 'active'"
            " AND pid <> pg_backend_pid()", db=DB).strip()

    def wait_sleeping(self, what):
        """Waits until the session's pg_sleep(30) runs on the server."""
        deadline = time.monotonic() + 10
        while self.backends_sleeping() != "1":
            self.assertLess(time.monotonic(), deadline, what + " never ran")
            time.sleep(0.1)

    def exit_status(self, t):
        """Waits up to 5 s for the session to end; returns its status."""
        end = time.monotonic() + 5
        while t.alive() and time.monotonic() < end:
            t.read_some(0.05)
        return t.status

    def test_banner_values_and_continuation(self):
        t = self.start()
        t.expect(r"read-only \(start with --write to allow changes\)")
        self.prompt(t)
        t.send("1 + 1\r")
        self.prompt(t, r"\n2\n")
        t.send("for i = 1, 2 do\r")
        t.expect(r"\.\.\.> ")
        t.send("print(i * 10)\r")
        t.expect(r"\.\.\.> ")
        t.send("end\r")
        self.prompt(t, r"\n10\n20\n")
        t.send("sql 'SELECT 1 AS one'\r")
        self.prompt(t, r" one\n-----\n   1\n\(1 row\)\n")
        self.assertEqual(t.finish(), 0)

    def test_the_readme_shows_the_banner_as_it_is(self):
        with open(os.path.join(jhtest.SOURCE, "README.md")) as f:
            readme = f.read()
        at = readme.index("\njobhost repl: Lua with the ctx a job gets") + 1
        shown = readme[at:].split("\n")[:3]
        t = self.start("--secret", "demo/pgbench")
        self.prompt(t)
        self.assertEqual(t.finish(), 0)
        real = t.seen[t.seen.index("jobhost repl: "):].split("\n")[:3]
        folder = re.compile(r"the jobs folder is \S+")
        self.assertEqual([folder.sub("the jobs folder is DIR", line)
                          for line in shown],
                         [folder.sub("the jobs folder is DIR", line)
                          for line in real])

    def test_ctrl_c_stops_a_statement_and_the_prompt_works_again(self):
        t = self.start()
        self.prompt(t)
        t.send("x = 41\r")
        self.prompt(t)
        t.send("sql 'SELECT pg_sleep(30)'\r")
        self.wait_sleeping("the query")
        started = time.monotonic()
        t.send("\x03")
        self.prompt(t, r"interrupted: the input was stopped; globals are"
                    r" kept\n")
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(self.backends_sleeping(), "0")
        t.send("x + 1\r")
        self.prompt(t, r"\n42\n")
        t.send("sql 'SELECT 2 AS two'\r")
        self.prompt(t, r"\(1 row\)\n")
        self.assertEqual(t.finish(), 0)

    def test_ctrl_c_stops_a_lua_loop(self):
        t = self.start()
        self.prompt(t)
        t.send("n = 0; while true do n = n + 1 end\r")
        time.sleep(0.5)
        started = time.monotonic()
        t.send("\x03")
        self.prompt(t, r"interrupted: the input was stopped; globals are"
                    r" kept\n")
        self.assertLess(time.monotonic() - started, 3)
        t.send("n > 0\r")
        self.prompt(t, r"\ntrue\n")
        self.assertEqual(t.finish(), 0)

    def test_ctrl_c_stops_a_dry_run(self):
        self.write_job("sleeper", "return { run = function(ctx)"
                       " ctx.db:query('SELECT pg_sleep(30)') end }")
        t = self.start()
        self.prompt(t)
        t.send(".run sleeper\r")
        self.wait_sleeping("the job")
        started = time.monotonic()
        t.send("\x03")
        self.prompt(t, r"dry run of sleeper failed: Job.Interrupted: "
                    r"interrupted: the process was told to stop "
                    r"\(SIGINT or SIGTERM\); the run was stopped and its "
                    r"open transaction rolled back\n(.*\n)*")
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(self.backends_sleeping(), "0")
        t.send("6 * 7\r")
        self.prompt(t, r"\n42\n")
        self.assertEqual(t.finish(), 0)

    def test_a_second_ctrl_c_ends_an_input_stuck_in_c(self):
        # A pattern match that backtracks for hours never returns to Lua,
        # where the first Ctrl-C would be seen.
        t = self.start()
        self.prompt(t)
        t.send("s = string.rep('a', 40)\r")
        self.prompt(t)
        t.send("s:match(string.rep('a?', 40) .. s)\r")
        time.sleep(0.3)
        t.send("\x03")
        time.sleep(1.5)
        self.assertTrue(t.alive(), t.seen)
        started = time.monotonic()
        t.send("\x03")
        t.expect(r"interrupted again while a call into C does not return;"
                 r" leaving the session")
        self.assertEqual(self.exit_status(t), 130)

    def test_two_quick_ctrl_c_stop_a_loop_and_keep_the_session(self):
        t = self.start()
        self.prompt(t)
        t.send("while true do end\r")
        time.sleep(0.3)
        t.send("\x03\x03")
        self.prompt(t, r"interrupted: the input was stopped; globals are"
                    r" kept\n")
        t.send("6 * 7\r")
        self.prompt(t, r"\n42\n")
        self.assertEqual(t.finish(), 0)

    def assert_sigterm_leaves(self, t):
        """Sends SIGTERM; the session must leave within 3 s, status 143."""
        started = time.monotonic()
        os.kill(t.pid, signal.SIGTERM)
        t.expect(r"SIGTERM: leaving the session")
        self.assertEqual(self.exit_status(t), 143, t.seen)
        self.assertLess(time.monotonic() - started, 3)

    def test_sigterm_cancels_a_statement_and_leaves(self):
        t = self.start()
        self.prompt(t)
        t.send("sql 'SELECT pg_sleep(30)'\r")
        self.wait_sleeping("the query")
        self.assert_sigterm_leaves(t)
        self.assertEqual(self.backends_sleeping(), "0")

    def test_sigterm_at_the_prompt_leaves(self):
        t = self.start()
        self.prompt(t)
        t.send("x = 1")
        t.expect("x = 1")
        self.assert_sigterm_leaves(t)

    def test_ctrl_c_at_the_prompt_drops_the_line(self):
        t = self.start()
        self.prompt(t)
        t.send("error('never run'")
        t.expect(r"error\('never run'")
        t.send("\x03")
        self.prompt(t)
        t.send("6 * 7\r")
        self.prompt(t, r"\n42\n")
        self.assertEqual(t.finish(), 0)
        self.assertNotIn("error:", t.seen)

    def test_history_is_kept_between_sessions(self):
        t = self.start()
        self.prompt(t)
        t.send("'first session'\r")
        self.prompt(t)
        t.send(" 'not kept'\r")
        self.prompt(t)
        self.assertEqual(t.finish(), 0)
        self.assertEqual(os.stat(self.history).st_mode & 0o777, 0o600)
        with open(self.history) as f:
            saved = f.read()
        self.assertIn("first", saved)
        self.assertNotIn("not", saved)

        t = self.start()
        self.prompt(t)
        t.send("\x1b[A")  # the up arrow recalls the last input
        t.send("\r")
        self.prompt(t, r'\n"first session"\n')
        self.assertEqual(t.finish(), 0)

    def test_a_history_path_that_is_no_file_turns_history_off(self):
        # /dev/zero would be read without end.
        notes = os.path.join(self.tmp, "notes.txt")
        with open(notes, "w") as f:
            f.write("important notes\n")
        for path, said in [
                ("/dev/zero", "history file %s is not a regular file; no "
                 "history is kept"),
                (self.tmp, "history file %s is not a regular file"),
                (notes, "%s is not a history file; it is left as it is"),
                (os.path.join(self.tmp, "none", "h"),
                 "the folder of the history file %s does not exist")]:
            self.history = path
            t = self.start()
            t.expect(said % re.escape(path))
            self.prompt(t)
            t.send("6 * 7\r")
            self.prompt(t, r"\n42\n")
            self.assertEqual(t.finish(), 0)
        with open(notes) as f:
            self.assertEqual(f.read(), "important notes\n")

    def test_tab_completes_globals_fields_and_methods(self):
        t = self.start()
        self.prompt(t)
        t.send("json.enc\t")
        t.expect("ode")
        t.send("({1})\r")
        self.prompt(t, r'\n"\[1\]"\n')
        t.send("c = ctx.db\r")
        self.prompt(t)
        t.send("c:qu\t")
        t.expect("ery")
        t.send("('SELECT 3 AS x')\r")
        self.prompt(t, r" x\n---\n 3\n\(1 row\)\n")
        self.assertEqual(t.finish(), 0)

    def test_write_mode_shows_in_the_prompt(self):
        t = self.start("--write")
        t.expect(r"writes ALLOWED")
        t.expect(r"jobhost\[write\]> ")
        t.editing()
        self.assertEqual(t.finish(), 0)


if __name__ == "__main__":
    jhtest.main()
