"""The Lambda zip is self-contained: runtime/build-zip.sh builds it, and
it runs in a root that holds nothing but glibc and a CA bundle where
Amazon Linux 2023 keeps it, as the provided.al2023 runtime would run it.

The package is unpacked into an empty folder beside this machine's glibc
(libc, the loader, libm, libpthread, libdl, librt, libresolv) and a CA
bundle at /etc/pki/tls/certs/ca-bundle.crt that holds only a test CA made
here with the openssl CLI. There /var/task/bootstrap runs under chroot,
as an unprivileged user (as Lambda runs functions), in a mount and PID
namespace of its own with /proc mounted, as on Lambda (the loader finds
$ORIGIN, and so lib/, through /proc/self/exe), against the fake
Runtime API, and runs a job that fetches its database secret from the
fake Secrets Manager over HTTPS and reaches a PostgreSQL cluster of its
own that refuses every connection but TLS, with sslmode verify-full and
no sslrootcert: both TLS peers are verified against the bundle the host
found at run time. Lambda's LD_LIBRARY_PATH is set, as Lambda sets it.
The same files laid out as the Dockerfile lays them on the Lambda base
image (bootstrap and lib/ in /var/runtime, jobs/ in /var/task) run too.
Every ELF file in the package is checked with objdump to need no glibc
symbol version newer than 2.34, and every library it needs is in lib/ or
is glibc's.
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jhtest  # noqa: E402

sys.path.insert(0, os.path.join(jhtest.SOURCE, "tests", "fakes"))
from fake_runtime_api import FakeRuntimeAPI  # noqa: E402
import fake_secretsmanager  # noqa: E402

GLIBC_MAX = (2, 34)
GLIBC_SONAMES = ["libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
                 "librt.so.1", "libresolv.so.2"]
AL2023_BUNDLE = "etc/pki/tls/certs/ca-bundle.crt"
NOBODY = "65534:65534"
SYSTEM_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
CHROOT = shutil.which("chroot", path=SYSTEM_PATH) or "/usr/sbin/chroot"
UNSHARE = shutil.which("unshare", path=SYSTEM_PATH) or "/usr/bin/unshare"
ACCESS_KEY, SECRET_KEY = "AKIDZIPTEST", "zip-test-secret-key"
PG_BIN = "/usr/lib/postgresql/15/bin"
# What Lambda sets: the package's lib/ must win over the runtime's own
# libraries all the same (the binary's DT_RPATH comes first).
LAMBDA_LD_LIBRARY_PATH = ("/var/lang/lib:/lib64:/usr/lib64:/var/runtime:"
                          "/var/runtime/lib:/var/task:/var/task/lib:/opt/lib")

TLS_JOB = """-- tls_reach: the secret over HTTPS, the database over TLS.
return {
  description = "Reach the database and a secret over verified TLS",
  database = "zip/orders-db",
  run = function(ctx)
    local api = ctx.secret("zip/api-token")
    local row = ctx.db:query([[
      SELECT s.ssl, s.version, current_user AS who, count(*) AS n
      FROM pg_stat_ssl s, generate_series(1, 5)
      WHERE s.pid = pg_backend_pid()
      GROUP BY s.ssl, s.version
    ]])[1]
    ctx.log.info("reached", { tls = row.version })
    return { ssl = row.ssl, tls = row.version, who = row.who, n = row.n,
             token_length = #api.token }
  end,
}
"""

GSS_JOB = """-- gss_reach: a connection that asks for GSSAPI encryption, which
-- makes libpq call into Kerberos.
return {
  run = function(ctx)
    local ok, err = pcall(ctx.connect, "host=127.0.0.1 port="
      .. ctx.event.port .. " user=gss dbname=zip_test gssencmode=require")
    return { ok = ok, err = tostring(err) }
  end,
}
"""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


def glibc_versions_needed(path):
    """The GLIBC_ versions of the undefined dynamic symbols of an ELF."""
    out = run(["objdump", "-T", path]).stdout
    found = set()
    for line in out.splitlines():
        if "*UND*" in line:
            for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", line):
                found.add(tuple(int(x) for x in v.split(".")))
    return found


def needed(path):
    out = run(["readelf", "-d", path]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def host_glibc():
    """(the folder of this machine's libc, the loader's path): where the
    real binary finds libc.so.6, and the interpreter it names."""
    libc = re.search(r"libc\.so\.6 => (\S+)",
                     run(["ldd", jhtest.BIN]).stdout).group(1)
    interp = re.search(r"program interpreter: ([^\]]+)\]",
                       run(["readelf", "-l", jhtest.BIN]).stdout).group(1)
    return os.path.dirname(libc), interp


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


class ZipCase(jhtest.Case):
    """Builds the zip once, makes the test CA and certificates, and starts
    a TLS-only PostgreSQL cluster for the class."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="jobhost-zip-")
        os.chmod(cls.work, 0o755)  # the cluster's user must traverse it
        cls.addClassCleanup(shutil.rmtree, cls.work, True)

        cls.jobs_src = os.path.join(cls.work, "jobs")
        os.mkdir(cls.jobs_src)
        with open(os.path.join(cls.jobs_src, "tls_reach.lua"), "w") as f:
            f.write(TLS_JOB)
        with open(os.path.join(cls.jobs_src, "gss_reach.lua"), "w") as f:
            f.write(GSS_JOB)
        cls.build = os.path.join(os.path.dirname(os.path.abspath(
            jhtest.BIN)), "zip-test-build")
        cls.zip = os.path.join(cls.work, "jobhost-lambda.zip")
        proc = subprocess.run(
            [os.path.join(jhtest.SOURCE, "runtime", "build-zip.sh"),
             "--build-dir", cls.build, "--jobs", cls.jobs_src,
             "--output", cls.zip],
            capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise AssertionError("build-zip.sh failed:\n" + proc.stdout +
                                 proc.stderr)
        cls.build_output = proc.stdout

        cls.make_certificates()
        cls.start_cluster()

    @classmethod
    def make_certificates(cls):
        d = cls.certs = os.path.join(cls.work, "certs")
        os.mkdir(d)
        cls.ca = os.path.join(d, "ca.crt")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", os.path.join(d, "ca.key"), "-out", cls.ca,
             "-days", "2", "-subj", "/CN=jobhost zip test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        cls.server_crt = os.path.join(d, "server.crt")
        cls.server_key = os.path.join(d, "server.key")
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes",
             "-keyout", cls.server_key, "-out", os.path.join(d, "server.csr"),
             "-subj", "/CN=127.0.0.1"])
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", os.path.join(d, "server.csr"),
             "-CA", cls.ca, "-CAkey", os.path.join(d, "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", ext,
             "-out", cls.server_crt])

    @classmethod
    def start_cluster(cls):
        """A cluster of its own (tests/pg.sh), so turning TLS on and
        refusing plain connections touches no other test's server."""
        cls.pgdir = os.path.join(cls.work, "pg")
        pg_sh = os.path.join(jhtest.SOURCE, "tests", "pg.sh")
        env = dict(os.environ, PG_DATABASE="zip_test")
        run([pg_sh, "start", cls.pgdir], env=env, timeout=120)
        cls.addClassCleanup(subprocess.run, [pg_sh, "stop", cls.pgdir],
                            capture_output=True, timeout=120)
        cls.zpg = {}
        with open(os.path.join(cls.pgdir, "env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                cls.zpg[k] = v
        data = os.path.join(cls.pgdir, "data")
        for src, name in ((cls.server_crt, "server.crt"),
                          (cls.server_key, "server.key")):
            shutil.copy(src, os.path.join(data, name))
            os.chmod(os.path.join(data, name), 0o600)
            shutil.chown(os.path.join(data, name), "postgres", "postgres")
        # Plain TCP connections are refused outright: only TLS gets in.
        hba = os.path.join(data, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write("hostnossl all all 0.0.0.0/0 reject\n" + rules)
        cls.superuser("ALTER SYSTEM SET ssl = on",
                      "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
                      "ALTER SYSTEM SET ssl_key_file = 'server.key'",
                      "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while cls.superuser("SHOW ssl").strip() != "on":
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not turn TLS on")
            time.sleep(0.2)

    @classmethod
    def superuser(cls, *statements):
        cmd = ["runuser", "-u", "postgres", "--", PG_BIN + "/psql", "-h",
               cls.pgdir, "-p", cls.zpg["PGPORT"], "-U", "postgres", "-d",
               "postgres", "-qAtX", "-v", "ON_ERROR_STOP=1"]
        for s in statements:
            cmd += ["-c", s]
        return run(cmd).stdout

    # -- per test ------------------------------------------------------------

    def setUp(self):
        super().setUp()
        self.secrets.append(self.zpg["PGPASSWORD"])
        self.token = "tok-" + os.urandom(12).hex()
        self.secrets.append(self.token)
        self.fake = fake_secretsmanager.FakeSecretsManager(
            ACCESS_KEY, SECRET_KEY, tls=(self.server_crt, self.server_key))
        self.fake.start()
        self.addCleanup(self.fake.stop)
        self.fake.put("zip/orders-db", json.dumps({
            "engine": "postgres", "host": "127.0.0.1",
            "port": int(self.zpg["PGPORT"]), "username": self.zpg["PGUSER"],
            "password": self.zpg["PGPASSWORD"], "dbname": "zip_test",
            "sslmode": "verify-full"}))
        self.fake.put("zip/api-token", json.dumps({"token": self.token}))
        self.api = FakeRuntimeAPI().start()
        self.addCleanup(self.api.stop)
        self.runtimes = []

    def tearDown(self):
        # Before jhtest's tearDown removes the folder and checks every
        # captured output, the bootstrap's log included, for secrets.
        for proc in self.runtimes:
            self.stop_bootstrap(proc)
        super().tearDown()

    def make_root(self, bundle=True, image=False):
        """An empty root with glibc, optionally the CA bundle at Amazon
        Linux 2023's path, and the zip unpacked as Lambda lays it out: all
        in /var/task for a zip function; for an image, as the Dockerfile
        copies it, bootstrap and lib/ in /var/runtime, jobs/ in
        /var/task."""
        root = os.path.join(self.tmp, "root")
        libdir, loader = host_glibc()
        inside = os.path.join(root, libdir.lstrip("/"))
        os.makedirs(inside)
        os.chmod(root, 0o755)
        for name in GLIBC_SONAMES + [os.path.basename(loader)]:
            shutil.copy(os.path.join(libdir, name), os.path.join(inside, name))
        if os.path.dirname(loader) != libdir:
            os.makedirs(os.path.join(root,
                                     os.path.dirname(loader).lstrip("/")))
            os.symlink(os.path.join(libdir, os.path.basename(loader)),
                       os.path.join(root, loader.lstrip("/")))
        if bundle:
            os.makedirs(os.path.join(root, os.path.dirname(AL2023_BUNDLE)))
            shutil.copy(self.ca, os.path.join(root, AL2023_BUNDLE))
        os.mkdir(os.path.join(root, "proc"))  # mounted in the namespace
        task = os.path.join(root, "var", "task")
        runtime = os.path.join(root, "var", "runtime")
        os.makedirs(task)
        # unzip, not zipfile: it keeps the modes the zip stores, as
        # Lambda does.
        run(["unzip", "-q", self.zip, "-d", runtime if image else task])
        if image:
            os.rename(os.path.join(runtime, "jobs"),
                      os.path.join(task, "jobs"))
        return root

    def start_bootstrap(self, root, bootstrap="/var/task/bootstrap"):
        """Runs /var/task/bootstrap in root as Lambda would: no arguments,
        an environment of Lambda's variables only, an unprivileged user."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "jobhost",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "384",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "_HANDLER": "jobhost",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.fake.url,
            "LD_LIBRARY_PATH": LAMBDA_LD_LIBRARY_PATH,
        }
        self.log_path = os.path.join(self.tmp, "bootstrap.log")
        log = open(self.log_path, "w")
        self.addCleanup(log.close)
        # unshare gives the run its own mount and PID namespaces, so the
        # /proc it mounts goes away with it; stopping unshare stops the
        # bootstrap (--kill-child).
        proc = subprocess.Popen(
            [UNSHARE, "--mount", "--pid", "--fork", "--kill-child=SIGTERM",
             "--mount-proc=" + os.path.join(root, "proc"),
             CHROOT, "--userspec=" + NOBODY, root, bootstrap],
            env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        self.runtimes.append(proc)
        return proc

    def stop_bootstrap(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with open(self.log_path) as f:
            self.record(f.read())

    def invoke(self, event, timeout=60):
        rid = self.api.push(event, deadline_in=120)
        post = self.api.wait_post(rid, timeout)
        self.record(post.body)
        return post

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    # -- the tests -----------------------------------------------------------

    def test_package_layout(self):
        with zipfile.ZipFile(self.zip) as z:
            infos = {i.filename: i for i in z.infolist()}
        boot = infos["bootstrap"]
        self.assertEqual(stat.S_IMODE(boot.external_attr >> 16), 0o755)
        self.assertTrue(stat.S_ISREG(boot.external_attr >> 16))
        self.assertIn("jobs/tls_reach.lua", infos)
        libs = [n[4:] for n in infos if n.startswith("lib/") and n != "lib/"]
        self.assertIn("libssl.so.3", libs)
        # libpq and libcurl are in the binary, and the libraries they load
        # at first call in lib/ (src/lazy.c); or, built without that, both
        # are in lib/ as shared libraries.
        lazy = os.path.join(self.build, "lazy-libraries.txt")
        if os.path.exists(lazy):
            with open(lazy) as f:
                wanted = [line.split()[0] for line in f if line.strip()]
            self.assertIn("libgssapi_krb5.so.2", wanted)
            self.assertIn("libldap-2.5.so.0", wanted)
            self.assertNotIn("libpq.so.5", libs)
        else:
            wanted = ["libpq.so.5", "libcurl.so.4"]
        for name in wanted:
            self.assertIn(name, libs)
        for name in libs:
            self.assertNotIn(name, GLIBC_SONAMES)
            self.assertFalse(name.startswith("ld-linux"), name)
            self.assertTrue(stat.S_ISREG(infos["lib/" + name].external_attr
                                         >> 16), name)

    def test_glibc_versions_and_closure(self):
        root = self.make_root()
        task = os.path.join(root, "var", "task")
        lib = os.path.join(task, "lib")
        elves = [os.path.join(task, "bootstrap")] + \
            [os.path.join(lib, n) for n in sorted(os.listdir(lib))]
        newest = (0, 0)
        loader = os.path.basename(host_glibc()[1])
        for path in elves:
            self.assertTrue(is_elf(path), path)
            versions = glibc_versions_needed(path)
            if versions:
                newest = max(newest, max(versions))
            for v in versions:
                self.assertLessEqual(v, GLIBC_MAX, f"{path} needs {v}")
            for name in needed(path):
                self.assertTrue(name in GLIBC_SONAMES + [loader] or
                                os.path.exists(os.path.join(lib, name)),
                                f"{path} needs {name}, not in lib/")
        # The check must have seen real versions to mean anything.
        self.assertGreaterEqual(newest, (2, 2))
        out = run(["readelf", "-d", elves[0]]).stdout
        self.assertRegex(out, r"\(RPATH\)\s+Library rpath: \[\$ORIGIN/lib\]")

    def test_build_refuses_a_newer_glibc(self):
        # The same build with the bar set below what the package needs
        # must fail and name what needs more.
        env = dict(os.environ, JOBHOST_GLIBC_MAX="2.16")
        out = os.path.join(self.tmp, "refused.zip")
        proc = subprocess.run(
            [os.path.join(jhtest.SOURCE, "runtime", "build-zip.sh"),
             "--build-dir", self.build, "--jobs", self.jobs_src,
             "--output", out], env=env, capture_output=True, text=True,
            timeout=900)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("needs a glibc newer than 2.16", proc.stderr)
        self.assertFalse(os.path.exists(out))

    def test_job_reaches_database_and_secrets_over_tls(self):
        root = self.make_root()
        proc = self.start_bootstrap(root)
        post = self.invoke({"job": "tls_reach"})
        self.assertEqual(post.kind, "response",
                         post.body + "\n" + self.log_text())
        result = post.json()
        self.assertEqual(result["ssl"], True)
        self.assertRegex(result["tls"], r"^TLSv1\.[23]$")
        self.assertEqual(result["who"], self.zpg["PGUSER"])
        self.assertEqual(result["n"], 5)
        self.assertEqual(result["token_length"], len(self.token))
        # Both secrets came from the fake over HTTPS, signed right.
        self.assertTrue(self.fake.url.startswith("https://"))
        state = self.fake.state()
        self.assertEqual(state["served"], {"zip/orders-db": 1,
                                           "zip/api-token": 1})
        self.assertTrue(all(r["signature_ok"] for r in state["requests"]))

        # A second invocation in the same process: the loop goes on, and
        # an unknown job is reported as such.
        post = self.invoke({"job": "no_such_job"})
        self.assertEqual((post.kind, post.error_type),
                         ("error", "Job.NotFound"))
        self.assertIsNone(proc.poll())

        records = [json.loads(line) for line in self.log_text().splitlines()
                   if line.startswith("{")]
        self.assertIn("reached", [r.get("message") for r in records])

    def test_image_layout(self):
        # As the Dockerfile lays the same files out on the Lambda base
        # image: the runtime in /var/runtime, the jobs in /var/task.
        root = self.make_root(image=True)
        self.start_bootstrap(root, "/var/runtime/bootstrap")
        post = self.invoke({"job": "tls_reach"})
        self.assertEqual(post.kind, "response",
                         post.body + "\n" + self.log_text())
        self.assertEqual(post.json()["ssl"], True)

    def lazy(self):
        path = os.path.join(self.build, "lazy-libraries.txt")
        if not os.path.exists(path):
            self.skipTest("built with libpq as a shared library")

    def test_kerberos_is_found_in_lib_at_first_call(self):
        # libpq loads libgssapi_krb5 from the package's lib/ when a
        # connection first asks for GSSAPI (src/lazy.c), and answers as
        # libpq does with no Kerberos credentials.
        self.lazy()
        root = self.make_root()
        proc = self.start_bootstrap(root)
        post = self.invoke({"job": "gss_reach",
                            "port": int(self.zpg["PGPORT"])})
        self.assertEqual(post.kind, "response",
                         post.body + "\n" + self.log_text())
        self.assertFalse(post.json()["ok"])
        self.assertIn("GSSAPI encryption required", post.json()["err"])
        self.assertIsNone(proc.poll())

    def test_a_missing_lazy_library_is_named(self):
        # Without it, the first call fails the invocation saying which
        # library, and ends the process as the loader would at start
        # (status 127), with a record naming the library.
        self.lazy()
        root = self.make_root()
        os.remove(os.path.join(root, "var", "task", "lib",
                               "libgssapi_krb5.so.2"))
        proc = self.start_bootstrap(root)
        post = self.invoke({"job": "gss_reach",
                            "port": int(self.zpg["PGPORT"])})
        self.assertEqual((post.kind, post.error_type),
                         ("error", "Runtime.LibraryNotLoaded"),
                         post.body + "\n" + self.log_text())
        self.assertIn("libgssapi_krb5.so.2", post.json()["errorMessage"])
        self.assertEqual(proc.wait(60), 127, self.log_text())
        records = [json.loads(line) for line in self.log_text().splitlines()
                   if line.startswith("{")]
        fatal = [r for r in records
                 if r.get("message") == "shared library not loaded"]
        self.assertEqual(len(fatal), 1, self.log_text())
        self.assertEqual(fatal[0]["library"], "libgssapi_krb5.so.2")
        self.assertEqual(fatal[0]["level"], "FATAL")
        self.assertIn("libgssapi_krb5.so.2", fatal[0]["error"])

    def test_a_missing_lazy_library_fails_a_local_run(self):
        # jobhost run, from the same package (the binary under another
        # name than bootstrap): the failure printed as a failed run prints
        # it, status 127.
        self.lazy()
        root = self.make_root()
        task = os.path.join(root, "var", "task")
        os.remove(os.path.join(task, "lib", "libgssapi_krb5.so.2"))
        os.symlink("bootstrap", os.path.join(task, "jobhost"))
        event = json.dumps({"port": int(self.zpg["PGPORT"])})
        proc = subprocess.run(
            [UNSHARE, "--mount", "--pid", "--fork",
             "--mount-proc=" + os.path.join(root, "proc"),
             CHROOT, "--userspec=" + NOBODY, root, "/var/task/jobhost",
             "run", "--jobs", "/var/task/jobs", "gss_reach", "--event",
             event], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
            text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.record(proc.stdout + proc.stderr)
        self.assertEqual(proc.returncode, 127, proc.stdout + proc.stderr)
        body = json.loads(proc.stdout)
        self.assertEqual(body["errorType"], "Runtime.LibraryNotLoaded")
        self.assertIn("libgssapi_krb5.so.2", body["errorMessage"])
        self.assertIn("shared library not loaded", proc.stderr)

    def test_without_the_bundle_tls_is_refused(self):
        # The same root less the CA bundle: the fake's certificate can no
        # longer be verified, so the secret (and with it the database) is
        # out of reach. This is what shows the bundle above was used.
        root = self.make_root(bundle=False)
        self.start_bootstrap(root)
        post = self.invoke({"job": "tls_reach"})
        self.assertEqual(post.kind, "error")
        self.assertTrue(post.error_type.startswith("Secrets."),
                        post.error_type)
        self.assertEqual(self.fake.state()["served"], {})


if __name__ == "__main__":
    jhtest.main()
