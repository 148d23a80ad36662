"""Secrets end to end: the real binary fetching from the fake Secrets
Manager (tests/fakes/fake_secretsmanager.py, which checks every signature
with botocore's signer) and connecting to the throwaway PostgreSQL with
credentials from secrets, through rotations, throttling, clock skew and
the other providers. Every secret value and password used is registered
with jhtest.Case, which fails a test whose captured output holds one."""
import json
import os
import secrets as pysecrets
import signal
import subprocess
import sys
import time

import jhtest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fakes"))
import fake_secretsmanager  # noqa: E402
from fake_runtime_api import FakeRuntimeAPI  # noqa: E402

ACCESS_KEY = "ASIAFAKEEXAMPLE"
SECRET_KEY = "fake/secret+key"
TOKEN = "session-token-" + pysecrets.token_hex(8)
ODD_PASSWORD_PREFIX = "p@ss word/'\\#"


def new_password():
    """A password with the characters that break hand-built conninfo
    strings and URIs, plus a random tail so runs never collide."""
    return ODD_PASSWORD_PREFIX + pysecrets.token_hex(6)


class SecretsCase(jhtest.Case):
    """A fake Secrets Manager per test, and a jobhost environment that
    points the aws provider at it with Lambda-style credentials."""

    def setUp(self):
        super().setUp()
        self.fake = fake_secretsmanager.FakeSecretsManager(
            ACCESS_KEY, SECRET_KEY, TOKEN).start()
        self.addCleanup(self.fake.stop)
        self.secrets.extend([SECRET_KEY, TOKEN])

    def sm_env(self, **extra):
        env = self.env(**extra)
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                  "JOBHOST_SECRETS_FILE", "JOBHOST_SECRETS_PROVIDER",
                  "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                  "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_DEFAULT_REGION",
                  "AWS_MAX_ATTEMPTS", "JOBHOST_SECRETS_TTL",
                  "JOBHOST_CA_FILE", "SSL_CERT_FILE"):
            env.pop(k, None)
        env.update({"AWS_ENDPOINT_URL": self.fake.url,
                    "AWS_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_SESSION_TOKEN": TOKEN})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def put(self, name, value, region="us-east-1"):
        """Stores a secret at the fake and registers its value as one that
        must never be printed."""
        self.secrets.append(value if isinstance(value, str)
                            else value.decode("latin-1"))
        return self.fake.put(name, value, region)

    def run_secret_job(self, name, code, env=None, expect_ok=True):
        self.write_job(name, code)
        return self.run_job(name, "--log-level", "debug",
                            env=env or self.sm_env(), expect_ok=expect_ok)

    def role(self, name, password):
        """A login role with password on the throwaway cluster."""
        self.secrets.append(password)
        jhtest.superuser_sql(f'DROP ROLE IF EXISTS "{name}"')
        jhtest.superuser_sql(
            f'CREATE ROLE "{name}" LOGIN PASSWORD {sql_literal(password)}')
        self.addCleanup(drop_role, name)

    def db_secret(self, user, password, **fields):
        """An RDS-style secret for the throwaway cluster."""
        secret = {"engine": "postgres", "host": self.pg["PGHOST"],
                  "username": user, "password": password,
                  "dbname": self.pg["PGDATABASE"],
                  "port": int(self.pg["PGPORT"])}
        secret.update(fields)
        return json.dumps(secret)


def lua_string(text):
    """text as a Lua string literal (ASCII text only)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def drop_role(name):
    jhtest.superuser_sql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE usename = {sql_literal(name)}")
    jhtest.superuser_sql(f'DROP ROLE IF EXISTS "{name}"')


WHO_AM_I = """
return {
  database = "%s",
  run = function(ctx)
    local r = ctx.db:query("SELECT current_user AS who, "
      .. "inet_server_port() AS port, current_database() AS db")[1]
    return { who = r.who, port = r.port, db = r.db }
  end,
}"""


class ValuesTest(SecretsCase):
    def test_string_json_and_binary_secrets(self):
        plain = "plain-" + pysecrets.token_hex(8)
        blob = bytes([0, 1, 2, 255]) + pysecrets.token_bytes(8)
        self.put("app/plain", plain)
        self.put("app/json", json.dumps({"port": 5432, "key": plain + "x",
                                         "list": [1, 2]}))
        self.put("app/blob", blob)
        self.secrets.append(plain + "x")
        _, body, _ = self.run_secret_job("values", """
return { run = function(ctx)
  local plain_reversed = %s
  local s = ctx.secret("app/plain")
  local t = ctx.secret("app/json")
  local b = ctx.secret("app/blob")
  return {
    plain_ok = s:reverse() == plain_reversed,
    json_type = type(t), port = t.port, port_type = math.type(t.port),
    key_ok = t.key == s .. "x", list_len = #t.list,
    blob_len = #b, blob_head = { b:byte(1, 4) },
  }
end }""" % lua_string(plain[::-1]))
        self.assertEqual(body, {
            "plain_ok": True, "json_type": "table", "port": 5432,
            "port_type": "integer", "key_ok": True, "list_len": 2,
            "blob_len": len(blob), "blob_head": [0, 1, 2, 255]})

    def test_a_secret_leaked_by_the_job_is_redacted(self):
        password = "pw-" + pysecrets.token_hex(8)
        self.put("app/creds", json.dumps({"username": "someone",
                                          "password": password}))
        self.secrets.append(password)
        _, body, stderr = self.run_secret_job("leak", """
return { run = function(ctx)
  local c = ctx.secret("app/creds")
  ctx.log.info("careless", { pw = c.password })
  return { pw = c.password, user = c.username }
end }""")
        self.assertEqual(body, {"pw": "[redacted]", "user": "someone"})
        self.assertIn("careless", stderr)
        self.assertIn("[redacted]", stderr)

    def test_unknown_secret_is_a_named_error(self):
        code, body, _ = self.run_secret_job("unknown", """
return { run = function(ctx) return ctx.secret("no/such secret") end }
""", expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual(body["errorType"],
                         "Secrets.ResourceNotFoundException")
        self.assertIn("no/such secret", body["errorMessage"])

    def test_error_object_fields_and_pcall(self):
        _, body, _ = self.run_secret_job("caught", """
return { run = function(ctx)
  local ok, err = pcall(ctx.secret, "missing/one")
  return { ok = ok, type = err.type, id = err.secret_id,
           text = tostring(err) }
end }""")
        self.assertFalse(body["ok"])
        self.assertEqual(body["type"], "Secrets.ResourceNotFoundException")
        self.assertEqual(body["id"], "missing/one")
        self.assertTrue(body["text"].startswith(
            "Secrets.ResourceNotFoundException: secret missing/one"))


class SigningTest(SecretsCase):
    def test_session_token_sent_and_signed(self):
        self.put("db/app creds", "v-" + pysecrets.token_hex(8))
        self.run_secret_job("token", """
return { run = function(ctx) return #ctx.secret("db/app creds") end }""")
        reqs = [r for r in self.fake.requests if r["id"] == "db/app creds"]
        self.assertEqual(len(reqs), 1)
        self.assertTrue(reqs[0]["token"])
        self.assertTrue(reqs[0]["signature_ok"])
        self.assertEqual(reqs[0]["status"], 200)
        self.assertEqual(reqs[0]["signed"], [
            "content-type", "host", "x-amz-date", "x-amz-security-token",
            "x-amz-target"])

    def test_wrong_key_is_refused_by_the_independent_signer(self):
        self.put("app/x", "v-" + pysecrets.token_hex(8))
        _, body, _ = self.run_secret_job(
            "badkey", """
return { run = function(ctx) return ctx.secret("app/x") end }""",
            env=self.sm_env(AWS_SECRET_ACCESS_KEY="not-the-key"),
            expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.InvalidSignatureException")
        self.assertFalse(self.fake.requests[0]["signature_ok"])

    def test_arn_in_another_region_uses_its_scope(self):
        arn = self.put("eu/thing", "eu-" + pysecrets.token_hex(8),
                       region="eu-west-2")
        self.put("us/thing", "us-" + pysecrets.token_hex(8))
        _, body, _ = self.run_secret_job("region", """
return { run = function(ctx)
  return { eu = #ctx.secret(%s), us = #ctx.secret("us/thing") }
end }""" % lua_string(arn))
        self.assertEqual(body, {"eu": 19, "us": 19})
        regions = {r["id"]: r["region"] for r in self.fake.requests}
        self.assertEqual(regions, {arn: "eu-west-2", "us/thing": "us-east-1"})

    def test_arn_region_mismatch_is_not_found(self):
        """The fake serves an ARN only to its own region's scope, so the
        region test above could fail."""
        arn = self.put("eu/other", "x-" + pysecrets.token_hex(8),
                       region="eu-west-2")
        wrong = arn.replace("eu-west-2", "eu-west-1")
        _, body, _ = self.run_secret_job("wrongregion", """
return { run = function(ctx) return ctx.secret(%s) end }
""" % lua_string(wrong), expect_ok=False)
        self.assertEqual(body["errorType"],
                         "Secrets.ResourceNotFoundException")
        self.assertEqual(self.fake.requests[0]["region"], "eu-west-1")

    def test_clock_skew_corrected_once_from_the_answer_date(self):
        self.put("app/skew", "s-" + pysecrets.token_hex(8))
        for offset in (1200, -1200):
            self.fake.clock_offset_s = offset
            self.fake.reset_counts()
            _, body, stderr = self.run_secret_job("skew", """
return { run = function(ctx)
  return { a = #ctx.secret("app/skew"), b = #ctx.secret("app/skew") }
end }""", env=self.sm_env(JOBHOST_SECRETS_TTL=0))
            self.assertEqual(body, {"a": 18, "b": 18})
            # One refusal, then the corrected clock serves both lookups.
            statuses = [r["status"] for r in self.fake.requests]
            self.assertEqual(statuses, [400, 200, 200])
            self.assertEqual(stderr.count("clock skew corrected"), 1)

    def test_clock_skew_is_corrected_only_once(self):
        self.put("app/skew", "s-" + pysecrets.token_hex(8))
        self.fake.script("app/skew", ["expired", "expired"])
        _, body, _ = self.run_secret_job("skew2", """
return { run = function(ctx) return #ctx.secret("app/skew") end }""",
                                         expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.InvalidSignatureException")
        self.assertIn("Signature expired", body["errorMessage"])
        self.assertEqual(self.fake.calls, {"app/skew": 2})


class RetryTest(SecretsCase):
    JOB = """
return { timeout = %d, run = function(ctx)
  return #ctx.secret("app/busy")
end }"""

    def test_two_throttled_answers_then_a_good_one(self):
        self.put("app/busy", "b-" + pysecrets.token_hex(8))
        self.fake.script("app/busy", ["throttle", "throttle"])
        _, body, stderr = self.run_secret_job("busy", self.JOB % 60)
        self.assertEqual(body, 18)
        self.assertEqual([r["status"] for r in self.fake.requests],
                         [400, 400, 200])
        self.assertEqual(stderr.count("secret fetch retried"), 2)
        # Each attempt was signed anew and each signature checked.
        self.assertTrue(all(r["signature_ok"] for r in self.fake.requests))

    def test_server_errors_are_retried(self):
        self.put("app/busy", "b-" + pysecrets.token_hex(8))
        self.fake.script("app/busy", ["500", "503"])
        _, body, _ = self.run_secret_job("busy5", self.JOB % 60)
        self.assertEqual(body, 18)
        self.assertEqual(self.fake.calls["app/busy"], 3)

    def test_attempts_are_bounded(self):
        self.put("app/busy", "b-" + pysecrets.token_hex(8))
        self.fake.script("app/busy", ["throttle"] * 10)
        _, body, _ = self.run_secret_job(
            "busy3", self.JOB % 60, env=self.sm_env(AWS_MAX_ATTEMPTS=3),
            expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.ThrottlingException")
        self.assertIn("app/busy", body["errorMessage"])
        self.assertEqual(self.fake.calls["app/busy"], 3)

    def test_retries_stop_at_the_run_deadline(self):
        self.put("app/busy", "b-" + pysecrets.token_hex(8))
        self.fake.script("app/busy", ["500"] * 100)
        started = time.monotonic()
        _, body, _ = self.run_secret_job(
            "busydl", self.JOB % 2, env=self.sm_env(AWS_MAX_ATTEMPTS=100),
            expect_ok=False)
        elapsed = time.monotonic() - started
        self.assertTrue(body["errorType"].startswith("Secrets."), body)
        self.assertLess(elapsed, 4.0)
        self.assertLess(self.fake.calls["app/busy"], 100)


class CacheTest(SecretsCase):
    JOB = """
return { run = function(ctx)
  local n = 0
  for i = 1, 25 do n = n + #ctx.secret("app/hot") end
  for i = 1, 3 do
    local c = ctx.connect("db/hot")
    n = n + c:query("SELECT 1 AS one")[1].one
  end
  return n
end }"""

    def setUp(self):
        super().setUp()
        password = new_password()
        self.role("jh_cache_user", password)
        self.put("app/hot", "h-" + pysecrets.token_hex(8))
        self.put("db/hot", self.db_secret("jh_cache_user", password))

    def test_fetched_once_within_the_lifetime(self):
        _, body, _ = self.run_secret_job("hot", self.JOB)
        self.assertEqual(body, 25 * 18 + 3)
        self.assertEqual(self.fake.calls, {"app/hot": 1, "db/hot": 1})

    def test_zero_lifetime_fetches_every_time(self):
        _, body, _ = self.run_secret_job(
            "cold", self.JOB, env=self.sm_env(JOBHOST_SECRETS_TTL=0))
        self.assertEqual(body, 25 * 18 + 3)
        self.assertEqual(self.fake.calls, {"app/hot": 25, "db/hot": 3})


    def test_lifetime_is_bounded(self):
        _, body, _ = self.run_secret_job("expiry", """
return { run = function(ctx)
  local a = #ctx.secret("app/hot")
  local c = ctx.connect("db/hot")
  c:query("SELECT pg_sleep(1.3)")
  return a + #ctx.secret("app/hot") + #ctx.secret("app/hot")
end }""", env=self.sm_env(JOBHOST_SECRETS_TTL=1))
        self.assertEqual(body, 3 * 18)
        self.assertEqual(self.fake.calls, {"app/hot": 2, "db/hot": 1})


class DatabaseTest(SecretsCase):
    def setUp(self):
        super().setUp()
        self.password = new_password()
        self.role("jh_secret_user", self.password)

    def test_port_as_number_string_and_integral_float(self):
        port = int(self.pg["PGPORT"])
        for name, value in (("n", port), ("s", str(port)),
                            ("f", float(port))):
            secret = self.db_secret("jh_secret_user", self.password,
                                    port=value)
            if isinstance(value, float):
                self.assertIn(f"{port}.0", secret)
            self.put("db/port-" + name, secret)
            _, body, _ = self.run_secret_job("who_" + name,
                                             WHO_AM_I % ("db/port-" + name))
            self.assertEqual(body, {"who": "jh_secret_user", "port": port,
                                    "db": self.pg["PGDATABASE"]})

    def test_a_secret_fetch_and_login_load_no_lazy_library(self):
        # The cold run every scheduled job makes (the secret over SigV4,
        # a SCRAM login) calls none of the libraries the binary loads at
        # first call (src/lazy.c); libcurl's global set-up included.
        self.put("db/lazy", self.db_secret("jh_secret_user", self.password))
        _, body, err = self.run_secret_job(
            "who_lazy", WHO_AM_I % "db/lazy",
            env=self.sm_env(LD_DEBUG="files"))
        self.assertEqual(body["who"], "jh_secret_user")
        self.assertEqual(self.fake.state()["served"], {"db/lazy": 1})
        self.assertEqual(jhtest.loaded_at_run_time(err), set())

    def test_no_port_and_no_dbname_mean_5432_and_postgres(self):
        secret = json.loads(self.db_secret("jh_secret_user", self.password))
        del secret["port"], secret["dbname"]
        self.put("db/defaults", json.dumps(secret))
        if self.pg["PGPORT"] == "5432":
            self.skipTest("the test cluster itself listens on 5432")
        _, body, _ = self.run_secret_job("defaults", WHO_AM_I % "db/defaults",
                                         expect_ok=False)
        self.assertIn("5432", body["errorMessage"])
        # Same secret with the real port: dbname defaults to postgres.
        secret["port"] = int(self.pg["PGPORT"])
        self.put("db/defaults2", json.dumps(secret))
        _, body, _ = self.run_secret_job("defaults2",
                                         WHO_AM_I % "db/defaults2")
        self.assertEqual(body["db"], "postgres")

    def test_wrong_password_is_an_auth_failure_without_the_password(self):
        wrong = new_password()
        self.put("db/wrong", self.db_secret("jh_secret_user", wrong))
        _, body, _ = self.run_secret_job("wrong", WHO_AM_I % "db/wrong",
                                         expect_ok=False)
        self.assertTrue(body["errorType"].startswith("Database."), body)
        self.assertIn("db/wrong", body["errorMessage"])
        # Cached, then refreshed, then the pending stage (absent) asked.
        stages = [r["stage"] for r in self.fake.requests]
        self.assertEqual(stages, ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"])

    def test_rotation_between_runs(self):
        self.put("db/rot", self.db_secret("jh_secret_user", self.password))
        _, body, _ = self.run_secret_job("rot1", WHO_AM_I % "db/rot")
        self.assertEqual(body["who"], "jh_secret_user")

        # Rotation under way: the server has the new password, the secret
        # still names the old one as AWSCURRENT and the new as AWSPENDING.
        new = new_password()
        self.secrets.append(new)
        jhtest.superuser_sql(
            f'ALTER ROLE "jh_secret_user" PASSWORD {sql_literal(new)}')
        self.fake.begin_rotation(
            "db/rot", self.db_secret("jh_secret_user", new))
        self.fake.reset_counts()
        _, body, err = self.run_secret_job("rot2", WHO_AM_I % "db/rot")
        self.assertEqual(body["who"], "jh_secret_user")
        self.assertEqual([r["stage"] for r in self.fake.requests],
                         ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"])
        # The rotation shows in the log: two refusals, then the pending
        # version's connection.
        self.assertIn('WARN the database refused the secret\'s credentials '
                      'job=rot2 secret=db/rot next="fetch it again"', err)
        self.assertIn('next="try its AWSPENDING version"', err)
        self.assertIn("INFO connected with the secret fetched again "
                      "job=rot2 secret=db/rot stage=AWSPENDING", err)

        # Rotation finished: one fetch of the new current version.
        self.fake.finish_rotation("db/rot")
        self.fake.reset_counts()
        _, body, _ = self.run_secret_job("rot3", WHO_AM_I % "db/rot")
        self.assertEqual(body["who"], "jh_secret_user")
        self.assertEqual(self.fake.calls, {"db/rot": 1})

    def test_warm_process_recovers_from_a_rotation(self):
        """One process holds the old password in its cache; while it waits
        on an advisory lock the test changes the role's password and
        rotates the secret; the run's next connection fails with 28P01,
        fetches the secret again and succeeds: no failed run."""
        self.put("db/warm", self.db_secret("jh_secret_user", self.password))
        new = new_password()
        self.secrets.append(new)
        pg = self.pg
        holder = subprocess.Popen(
            [jhtest.PSQL, "-h", pg["PGSOCKETDIR"], "-p", pg["PGPORT"],
             "-U", "postgres", "-d", pg["PGDATABASE"], "-qAtX"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(holder.kill)
        holder.stdin.write("SELECT pg_advisory_lock(774411);\n")
        holder.stdin.flush()
        self.wait_for_locks("granted", holder)

        self.write_job("warm", """
return {
  database = "db/warm",
  run = function(ctx)
    local before = ctx.db:query("SELECT current_user AS who")[1].who
    ctx.db:query("SELECT pg_advisory_lock(774411)")
    ctx.db:query("SELECT pg_advisory_unlock(774411)")
    local again = ctx.connect("db/warm")
    local after = again:query("SELECT current_user AS who")[1].who
    return { before = before, after = after }
  end,
}""")
        run = subprocess.Popen(
            [jhtest.BIN, "run", "warm", "--log-level", "debug"],
            env=self.sm_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.addCleanup(run.kill)
        self.wait_for_locks("NOT granted", run)

        jhtest.superuser_sql(
            f'ALTER ROLE "jh_secret_user" PASSWORD {sql_literal(new)}')
        self.fake.put("db/warm", self.db_secret("jh_secret_user", new))
        holder.stdin.write("SELECT pg_advisory_unlock(774411);\n\\q\n")
        holder.stdin.close()
        holder.wait(30)
        out, err = run.communicate(timeout=60)
        self.record(out, err)
        self.assertEqual(run.returncode, 0, err)
        self.assertEqual(json.loads(out), {"before": "jh_secret_user",
                                           "after": "jh_secret_user"})
        # The first fetch, then one refresh after the 28P01.
        self.assertEqual(self.fake.calls, {"db/warm": 2})
        self.assertEqual([r["stage"] for r in self.fake.requests],
                         ["AWSCURRENT", "AWSCURRENT"])


    def wait_for_locks(self, condition, proc):
        """Waits until one advisory lock is `condition` while proc runs."""
        deadline = time.monotonic() + 30
        while jhtest.superuser_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND objid = 774411 AND " + condition).strip() != "1":
            self.assertLess(time.monotonic(), deadline, "no lock " + condition)
            self.assertIsNone(proc.poll(), "the process ended early")
            time.sleep(0.1)


class TlsTest(SecretsCase):
    """The fake serves HTTPS with a certificate made here: trusted through
    JOBHOST_CA_FILE it works; untrusted, or for another name, it is
    refused."""

    def setUp(self):
        super().setUp()
        self.fake.stop()
        self.cert = self.make_cert("127.0.0.1", "IP:127.0.0.1")
        self.other = self.make_cert("elsewhere", "DNS:elsewhere.example")
        self.fake = fake_secretsmanager.FakeSecretsManager(
            ACCESS_KEY, SECRET_KEY, TOKEN, tls=self.cert).start()
        self.addCleanup(self.fake.stop)
        self.put("app/tls", "t-" + pysecrets.token_hex(8))

    def make_cert(self, name, san):
        cert = os.path.join(self.tmp, name + ".crt")
        key = os.path.join(self.tmp, name + ".key")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "1", "-subj",
             "/CN=" + name, "-addext", "subjectAltName=" + san],
            check=True, capture_output=True)
        return cert, key

    JOB = """
return { run = function(ctx) return #ctx.secret("app/tls") end }"""

    def test_trusted_certificate(self):
        self.assertTrue(self.fake.url.startswith("https://"))
        _, body, _ = self.run_secret_job(
            "tls", self.JOB, env=self.sm_env(JOBHOST_CA_FILE=self.cert[0]))
        self.assertEqual(body, 18)

    def test_untrusted_certificate_is_refused(self):
        for ca in (None, self.other[0]):
            env = self.sm_env(**({"JOBHOST_CA_FILE": ca} if ca else {}))
            _, body, _ = self.run_secret_job("tls_bad", self.JOB, env=env,
                                             expect_ok=False)
            self.assertEqual(body["errorType"], "Secrets.HttpError")
            self.assertIn("app/tls", body["errorMessage"])
        self.assertEqual(self.fake.calls, {})


class WarmProcessTest(SecretsCase):
    """Many runs in one process: `jobhost lambda` against the fake Lambda
    Runtime API, as a warm Lambda environment serves invocation after
    invocation."""

    JOB = """
return {
  database = "db/lambda",
  run = function(ctx)
    local n = #ctx.secret("app/lambda")
    local r = ctx.db:query("SELECT current_user AS who")[1]
    return { n = n, who = r.who }
  end,
}"""

    def setUp(self):
        super().setUp()
        self.password = new_password()
        self.role("jh_lambda_user", self.password)
        self.put("app/lambda", "l-" + pysecrets.token_hex(8))
        self.put("db/lambda", self.db_secret("jh_lambda_user",
                                             self.password))
        self.write_job("warm", self.JOB)
        self.api = FakeRuntimeAPI().start()
        self.addCleanup(self.api.stop)
        self.log_path = os.path.join(self.tmp, "runtime.log")
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                [jhtest.BIN, "lambda"], stdout=out, stderr=subprocess.STDOUT,
                env=self.sm_env(AWS_LAMBDA_RUNTIME_API=self.api.address,
                                JOBHOST_LOG_LEVEL="debug"))

    def tearDown(self):
        """Stops the runtime first, so that its log is among the outputs
        checked for secret values."""
        self.stop_runtime()
        super().tearDown()

    def stop_runtime(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open(self.log_path, errors="replace") as f:
            self.record(f.read())

    def invoke(self):
        post = self.api.wait_post(self.api.push({"job": "warm"}), 30)
        self.assertEqual(post.kind, "response", post)
        return post.json()

    def test_fetched_once_however_many_runs(self):
        for _ in range(12):
            self.assertEqual(self.invoke(),
                             {"n": 18, "who": "jh_lambda_user"})
        self.assertEqual(self.fake.calls, {"app/lambda": 1, "db/lambda": 1})

    def test_rotation_recovered_without_a_failed_run(self):
        self.assertEqual(self.invoke()["who"], "jh_lambda_user")

        # Rotate: the role gets a new password, the secret's AWSCURRENT
        # names it, and the server closes the kept connection (as a
        # rotation or a failover may), so the next run must log in anew
        # while the cache still holds the old password.
        new = new_password()
        self.secrets.append(new)
        jhtest.superuser_sql(
            f'ALTER ROLE "jh_lambda_user" PASSWORD {sql_literal(new)}')
        self.fake.put("db/lambda", self.db_secret("jh_lambda_user", new))
        jhtest.superuser_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = 'jh_lambda_user'")

        for _ in range(3):
            self.assertEqual(self.invoke()["who"], "jh_lambda_user")
        # The first fetch, and one refresh after the refused login.
        self.assertEqual(self.fake.calls["db/lambda"], 2)
        self.assertEqual(self.fake.calls["app/lambda"], 1)


class ProviderTest(SecretsCase):
    def test_file_provider(self):
        password = new_password()
        self.role("jh_file_user", password)
        value = "f-" + pysecrets.token_hex(8)
        self.secrets.append(value)
        path = os.path.join(self.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump({"app/value": value, "db/local": json.loads(
                self.db_secret("jh_file_user", password))}, f)
        self.write_job("filejob", """
return { database = "db/local", run = function(ctx)
  local r = ctx.db:query("SELECT current_user AS who")[1]
  return { who = r.who, ok = ctx.secret("app/value"):reverse() == %s }
end }""" % lua_string(value[::-1]))
        env = self.sm_env(JOBHOST_SECRETS_FILE=path)
        _, body, _ = self.run_job("filejob", env=env)
        self.assertEqual(body, {"who": "jh_file_user", "ok": True})
        self.assertEqual(self.fake.calls, {})

    def test_file_values_are_decoded_exactly(self):
        path = os.path.join(self.tmp, "secrets.json")
        with open(path, "w") as f:
            f.write('{"u": "caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n",'
                    ' "obj": {"port": 5432, "n": [1, 2.5, null]},'
                    ' "u": "last one wins",'
                    ' "u2": "caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n"}')
        self.write_job("filevals", """
return { run = function(ctx)
  local u = ctx.secret("u2")
  local o = ctx.secret("obj")
  return { utf8 = u == "caf\\u{e9} \\u{1F600} \\"q\\"\\n",
           last = ctx.secret("u") == "last one wins",
           port = math.type(o.port), n2 = o.n[2],
           n3 = o.n[3] == require("json").null }
end }""")
        env = self.sm_env(JOBHOST_SECRETS_FILE=path)
        _, body, _ = self.run_job("filevals", env=env)
        self.assertEqual(body, {"utf8": True, "last": True,
                                "port": "integer", "n2": 2.5, "n3": True})

    def test_malformed_file_is_an_error_without_its_text(self):
        path = os.path.join(self.tmp, "secrets.json")
        hidden = "h-" + pysecrets.token_hex(8)
        self.secrets.append(hidden)

        def error_of(text, name):
            with open(path, "w") as f:
                f.write(text)
            _, body, _ = self.run_secret_job(name, """
return { run = function(ctx) return ctx.secret("a") end }""",
                                             env=self.sm_env(
                                                 JOBHOST_SECRETS_FILE=path),
                                             expect_ok=False)
            self.assertEqual(body["errorType"], "Secrets.FileError")
            return body["errorMessage"]

        # Where the mistake is, by line and column; never the text.
        col = len('{"a": "' + hidden + '", "b": ') + 1
        self.assertIn("is not a well-formed JSON object: the error is at "
                      "line 1, column %d" % col,
                      error_of('{"a": "' + hidden + '", "b": }', "filebad"))
        self.assertIn("line 3, column 12 (the text ends too soon)",
                      error_of('{\n  "a": "' + hidden + '",\n  "b": "cut',
                               "filebad2"))
        # A folder named as the file: said so, not "File too large".
        _, body, _ = self.run_secret_job("filedir", """
return { run = function(ctx) return ctx.secret("a") end }""",
                                         env=self.sm_env(
                                             JOBHOST_SECRETS_FILE=self.tmp),
                                         expect_ok=False)
        self.assertIn("Is a directory", body["errorMessage"])

    def test_credential_members_and_secret_keys_stay_hidden(self):
        values = {"password": "pw-" + pysecrets.token_hex(6),
                  "db_password": "dbpw-" + pysecrets.token_hex(6),
                  "Password": "Cap-" + pysecrets.token_hex(6),
                  "apiToken": "tok-" + pysecrets.token_hex(6),
                  "private_key": "pk-" + pysecrets.token_hex(6)}
        nested = "nest-" + pysecrets.token_hex(6)
        pin = 90000000 + pysecrets.randbelow(9999999)
        listed = "arr-" + pysecrets.token_hex(6)
        self.secrets.extend(list(values.values()) +
                            [nested, str(pin), listed])
        path = os.path.join(self.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump({"app/creds": dict(values, username="u",
                                         replica={"password": nested},
                                         pin_secret=pin,
                                         tokens=["a", listed])}, f)
        env = self.sm_env(JOBHOST_SECRETS_FILE=path)
        # Each member's value, alone, as a log field's name, in print, in
        # the result; then a secret as a key in a failing encode.
        _, body, err = self.run_secret_job("members", """
return { params = { fail = false }, run = function(ctx, p)
  local s = ctx.secret("app/creds")
  for _, k in ipairs { "password", "db_password", "Password", "apiToken",
                       "private_key" } do
    ctx.log.info("member " .. s[k], { [s[k]] = 1, plain = s[k] })
    print(s[k])
  end
  -- A nested member, a numeric one (also as a number field), and a
  -- chunk named by its source: Lua would show its first 60 bytes.
  ctx.log.info("nested " .. s.replica.password, { pin = s.pin_secret,
    listed = s.tokens[2] })
  print(s.pin_secret)
  local _, e = load("x = 1 --" .. string.rep("-", 30) .. s.password
    .. "\\n +")
  ctx.log.info("load said " .. tostring(e))
  if p.fail then return { [s.password .. "\\u{e9}"] = 0/0 } end
  return { s.db_password, s.Password, s.apiToken, s.private_key,
           { [s.password] = true } }
end }""", env=env)
        self.assertEqual(body[4], {"[redacted]": True})
        self.assertEqual(err.count("[redacted]") >= 15, True, err)
        self.assertIn("load said (load):", err)
        # No part of a value either (Lua cuts long chunk names).
        for v in values.values():
            self.assertNotIn(v[:6], err)
        _, body, err = self.run_job("members", "--param", "fail=true",
                                    env=env, expect_ok=False)
        self.assertIn("[<a key of ", body["errorMessage"])

    def test_redacted_results_and_json_logs_stay_json(self):
        # A PIN inside numbers, values that end in a backslash or a quote
        # (whose raw forms would take an escape or a closing quote with
        # them), one with a non-ASCII character.
        pin = 90000000 + pysecrets.randbelow(9999999)
        values = {"password": "pw-" + pysecrets.token_hex(6) + "\\",
                  "api_token": "tok-" + pysecrets.token_hex(6) + '"',
                  "db_secret": "caf\u00e9-" + pysecrets.token_hex(6)}
        self.secrets.extend(list(values.values()) + [str(pin)])
        path = os.path.join(self.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump({"app/creds": dict(values, pin_secret=pin)}, f)
        env = self.sm_env(JOBHOST_SECRETS_FILE=path)
        _, body, err = self.run_secret_job("json-redact", """
return { run = function(ctx)
  local s = ctx.secret("app/creds")
  local t = { n = s.pin_secret, list = { s.pin_secret, 7, -s.pin_secret },
              pw = s.password, tok = s.api_token .. "x",
              cafe = "a" .. s.db_secret, [s.password] = true,
              nested = { { s.password .. s.api_token } } }
  ctx.log.info("leaky", { t = t })
  return t
end }""", env=dict(env, JOBHOST_LOG_FORMAT="json"))
        mark = "[redacted]"
        self.assertEqual(body, {
            "n": mark, "list": [mark, 7, mark], "pw": mark,
            "tok": mark + "x", "cafe": "a" + mark, mark: True,
            "nested": [[mark]]})
        logged = [json.loads(line) for line in err.splitlines()]
        leaky = [r for r in logged if r.get("message") == "leaky"]
        self.assertEqual(len(leaky), 1, err)
        self.assertEqual(leaky[0]["t"]["list"], [mark, 7, mark])
        self.assertEqual(leaky[0]["t"]["tok"], mark + "x")

    def test_no_credentials_says_which_provider_was_picked(self):
        env = self.sm_env()
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN"):
            env.pop(k)
        code = """
return { run = function(ctx) return ctx.secret("app/x") end }"""
        _, body, _ = self.run_secret_job("nocred", code, env=env,
                                         expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.NoCredentials")
        self.assertIn("neither JOBHOST_SECRETS_FILE nor",
                      body["errorMessage"])
        env["JOBHOST_SECRETS_PROVIDER"] = "aws"
        _, body, _ = self.run_secret_job("nocred2", code, env=env,
                                         expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.NoCredentials")
        self.assertNotIn("neither", body["errorMessage"])
        self.assertEqual(self.fake.calls, {})

    def test_extension_provider(self):
        value = "e-" + pysecrets.token_hex(8)
        self.put("app/ext", value)
        env = self.sm_env(PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=self.fake.port)
        _, body, _ = self.run_secret_job("ext", """
return { run = function(ctx) return #ctx.secret("app/ext") end }""", env=env)
        self.assertEqual(body, len(value))
        self.assertEqual([r["kind"] for r in self.fake.requests],
                         ["extension"])
        env["AWS_SESSION_TOKEN"] = "not-the-token"
        _, body, _ = self.run_secret_job("ext2", """
return { run = function(ctx) return #ctx.secret("app/ext") end }""",
                                         env=env, expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.AccessDeniedException")

    def test_provider_named_explicitly(self):
        self.put("app/named", "n-" + pysecrets.token_hex(8))
        env = self.sm_env(JOBHOST_SECRETS_PROVIDER="bogus")
        _, body, _ = self.run_secret_job("named", """
return { run = function(ctx) return #ctx.secret("app/named") end }""",
                                         env=env, expect_ok=False)
        self.assertEqual(body["errorType"], "Secrets.NotConfigured")
        self.assertIn('JOBHOST_SECRETS_PROVIDER is "bogus"; it must be aws,',
                      body["errorMessage"])
        env["JOBHOST_SECRETS_PROVIDER"] = "aws"
        env["JOBHOST_SECRETS_FILE"] = "/nonexistent.json"
        _, body, _ = self.run_secret_job("named2", """
return { run = function(ctx) return #ctx.secret("app/named") end }""",
                                         env=env)
        self.assertEqual(body, 18)


if __name__ == "__main__":
    jhtest.main()
