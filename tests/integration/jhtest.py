"""Helpers for jobhost's integration tests: the real binary, the throwaway
PostgreSQL started by the ctest fixture, and a check that no captured
output ever holds a password or a secret.

Environment (set by tests/CMakeLists.txt): JOBHOST_BIN, JOBHOST_SOURCE,
JOBHOST_SHARED, JOBHOST_TEST_PGENV.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

BIN = os.environ.get("JOBHOST_BIN", "jobhost")
SOURCE = os.environ.get("JOBHOST_SOURCE", ".")
SHARED = os.environ.get("JOBHOST_SHARED", os.path.join(SOURCE, "..", "shared"))
PSQL = "/usr/lib/postgresql/15/bin/psql"


def loaded_at_run_time(stderr):
    """The libraries LD_DEBUG=files says were opened with dlopen, not at
    start."""
    return set(re.findall(r"file=(\S+) \[0\];\s+dynamically loaded by",
                          stderr))


def pg_env():
    """The throwaway cluster's settings: PGHOST, PGPORT, PGUSER,
    PGPASSWORD, PGDATABASE, PGSOCKETDIR."""
    env = {}
    with open(os.environ["JOBHOST_TEST_PGENV"]) as f:
        for line in f:
            line = line.strip()
            if line and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def superuser_sql(sql, db=None):
    """Runs sql as the cluster's superuser over the unix socket; returns
    stdout (unaligned, tuples only)."""
    pg = pg_env()
    out = subprocess.run(
        [PSQL, "-h", pg["PGSOCKETDIR"], "-p", pg["PGPORT"], "-U", "postgres",
         "-d", db or pg["PGDATABASE"], "-qAtX", "-v", "ON_ERROR_STOP=1",
         "-c", sql],
        capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError("psql failed: " + out.stderr)
    return out.stdout


def create_database(name):
    """A fresh database owned by the test role, dropped first if left
    over; returns a libpq environment pointing at it."""
    superuser_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                  db="postgres")
    superuser_sql(f'CREATE DATABASE "{name}" OWNER jobhost', db="postgres")
    env = pg_env()
    env["PGDATABASE"] = name
    return env


def stop_process(proc, timeout=10):
    """Ends a process the test started: SIGTERM, then SIGKILL when it
    has not exited within timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Case(unittest.TestCase):
    """A test case whose every captured output is checked, at the end of
    each test, for the cluster's password and any value in
    self.secrets."""

    def setUp(self):
        self.pg = pg_env()
        self.secrets = [self.pg["PGPASSWORD"]]
        self.outputs = []
        self.tmp = tempfile.mkdtemp(prefix="jobhost-test-")
        self.jobs = os.path.join(self.tmp, "jobs")
        os.mkdir(self.jobs)

    def tearDown(self):
        for text in self.outputs:
            for secret in self.secrets:
                if secret and secret in text:
                    self.fail("a secret value appears in captured output")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def record(self, *texts):
        self.outputs.extend(t for t in texts if t)

    def write_job(self, name, code):
        path = os.path.join(self.jobs, name + ".lua")
        with open(path, "w") as f:
            f.write(code)
        return path

    def env(self, db_env=None, **extra):
        env = dict(os.environ)
        env.update(db_env or self.pg)
        env.pop("PGSOCKETDIR", None)
        env["JOBHOST_JOBS"] = self.jobs
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def jobhost(self, *args, env=None, input=None, timeout=120):
        """Runs the real binary; returns the CompletedProcess (text)."""
        proc = subprocess.run([BIN, *args], capture_output=True, text=True,
                              env=env or self.env(), input=input,
                              timeout=timeout)
        self.record(proc.stdout, proc.stderr)
        return proc

    def run_job(self, name, *args, env=None, expect_ok=True, timeout=120):
        """jobhost run NAME ARGS; returns (exit code, parsed stdout,
        stderr)."""
        proc = self.jobhost("run", name, *args, env=env, timeout=timeout)
        try:
            body = json.loads(proc.stdout) if proc.stdout.strip() else None
        except ValueError:
            self.fail("stdout is not JSON: " + proc.stdout[:500])
        if expect_ok is True and proc.returncode != 0:
            self.fail(f"run {name} failed ({proc.returncode}): "
                      f"{proc.stdout}\n{proc.stderr}")
        if expect_ok is False and proc.returncode == 0:
            self.fail(f"run {name} succeeded: {proc.stdout}")
        return proc.returncode, body, proc.stderr


def main():
    unittest.main(verbosity=2)
