"""harness.py: runs jobhost's benchmarks side by side with the reference
implementations and prints a table of medians, ratios and peak RSS.

bench/run.sh installs and builds what is needed and then runs this under
/usr/bin/python3; run it directly only with a built binary:

  /usr/bin/python3 bench/harness.py --jobhost build-bench/tree/jobhost
      --launch build-bench/launch
      [--runs N] [--quick] [--only GROUP,...] [--json FILE] [--perf DIR]
      [--tls]

It starts a throwaway PostgreSQL 15 (tests/pg.sh) and the fake Secrets
Manager (tests/fakes/fake_secretsmanager.py, through bench/fake_sm.py),
loads the data
(bench/sql/), stores the database's credentials as the secret bench/db,
then for each group of cases runs every implementation once to warm up
and N times (default 5) measured, in rotating order so that they share
the machine's moods. Each run is one process, started by the small
launcher bench/launch.c, which times it from its spawn to the return of
wait4 and reports its CPU time and peak RSS from wait4.
Every run's output is checked (the same result or checksum from every
implementation), so a failing case never passes for a fast one.
"""
import argparse
import collections
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PSQL = "/usr/lib/postgresql/15/bin/psql"
PYTHON = "/usr/bin/python3"
# bench/launch.c, built by run.sh: starts and measures each run.
LAUNCH = None
NODE = shutil.which("node") or "/usr/bin/node"
SECRET_ID = "bench/db"
ACCESS_KEY = "AKIDBENCHFAKE"
SECRET_KEY = "bench-fake-secret-key"
REGION = "us-east-1"
PURGE_SQL = """DELETE FROM bench_events
 WHERE id IN (SELECT id FROM bench_events
               WHERE created_at < now() - '90 days'::interval
               ORDER BY id
               LIMIT 5000);
"""
ROWS_SQL = "SELECT id, amount, customer, created_at, note FROM bench_rows"
PURGE_BATCH = 5000
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


class Failure(Exception):
    """A run that did not produce the expected result."""


# One measured process: wall and CPU milliseconds, peak RSS in KiB, its
# exit status and the text it printed.
Run = collections.namedtuple("Run", "wall_ms cpu_ms rss_kb status out err")


def spawn(argv, env, work, stdout_null=False):
    """Runs argv to its end and measures it. Output goes to files in work
    (or stdout to /dev/null), read back afterwards.

    The process is started by the small launcher (bench/launch.c), which
    times it from its spawn to the return of wait4 and takes its CPU time
    and peak RSS from wait4: the figures are the process's own, without
    the launcher's start, and a child spawned from this Python process
    would inherit its resident size into ru_maxrss, one spawned from the
    launcher does not."""
    out_path = os.path.join(work, "run.out")
    err_path = os.path.join(work, "run.err")
    figures_path = os.path.join(work, "run.figures")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null" if stdout_null else out_path,
         flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, err_path, flags, 0o644),
    ]
    if os.path.exists(figures_path):
        os.unlink(figures_path)
    pid = os.posix_spawn(LAUNCH, [LAUNCH, figures_path, *argv], env,
                         file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    out = "" if stdout_null else open(out_path, errors="replace").read()
    err = open(err_path, errors="replace").read()
    try:
        wall_us, cpu_us, rss_kb, code = (
            int(v) for v in open(figures_path).read().split())
    except (OSError, ValueError):
        raise Failure("the launcher measured nothing (exit %d): %s" % (
            os.waitstatus_to_exitcode(status), err[-500:]))
    return Run(wall_us / 1000.0, cpu_us / 1000.0, rss_kb, code, out, err)


def last_json(text):
    """The last line of text that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise Failure("no JSON result in the output")


class Case:
    """One implementation of one group: how to start it, what to do
    before each run (untimed), and how to check its output."""

    def __init__(self, impl, argv, env, check, before=None,
                 stdout_null=False, metric=None):
        self.impl = impl
        self.argv = argv
        self.env = env
        self.check = check
        self.before = before
        self.stdout_null = stdout_null
        self.metric = metric  # from the result: an in-process time in ms
        self.runs = []
        self.metrics = []
        self.failed = None


class Group:
    """Cases compared with each other; floor names the baseline case."""

    def __init__(self, key, title, cases, floor):
        self.key = key
        self.title = title
        self.cases = cases
        self.floor = floor


class Bench:
    """The whole session: the database, the fake, the groups, the table."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.rows = 100000 if self.quick else 1000000
        self.purge = 10000 if self.quick else 100000
        self.json_rows = 10000 if self.quick else 100000
        self.runs = args.runs if args.runs else (1 if self.quick else 5)
        self.work = tempfile.mkdtemp(prefix="jobhost-bench.")
        os.chmod(self.work, 0o755)
        self.pgdir = os.path.join(self.work, "pg")
        self.fake = None
        self.ca_file = None
        self.ca_bundle = None
        self.ca_dir = None
        self.pgenv = {}
        self.groups = []

    # -- setup -----------------------------------------------------------

    def base_env(self):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": os.environ.get("HOME", "/root"),
                "LANG": "C.UTF-8", "TZ": "UTC"}

    def aws_env(self):
        env = self.base_env()
        env.update({"AWS_ENDPOINT_URL": self.fake_url,
                    "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_EC2_METADATA_DISABLED": "true",
                    "BENCH_SECRET_ID": SECRET_ID,
                    "NODE_PATH": os.path.join(BENCH, "node", "node_modules"),
                    "JOBHOST_JOBS": os.path.join(BENCH, "jobs")})
        if self.ca_file:
            # Each client's own way to trust the fake's certificate, on
            # top of the roots it trusts anyway: jobhost a hashed
            # directory (the system's, with the fake's certificate added),
            # as it finds one on Debian and Amazon Linux; boto3 a bundle
            # file; Node.js keeps its built-in roots and adds one.
            env.update({"JOBHOST_CA_DIR": self.ca_dir,
                        "AWS_CA_BUNDLE": self.ca_bundle,
                        "NODE_EXTRA_CA_CERTS": self.ca_file})
        return env

    def db_env(self):
        env = self.base_env()
        env.update(self.pgenv)
        env.update({"NODE_PATH": os.path.join(BENCH, "node", "node_modules"),
                    "JOBHOST_JOBS": os.path.join(BENCH, "jobs")})
        return env

    def psql(self, *args):
        env = dict(os.environ)
        env.update(self.pgenv)
        subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args],
                       env=env, check=True, stdout=subprocess.DEVNULL)

    def psql_value(self, sql):
        env = dict(os.environ)
        env.update(self.pgenv)
        return subprocess.run([PSQL, "-X", "-Atc", sql], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def start(self):
        log("starting PostgreSQL 15 in %s" % self.pgdir)
        env = dict(os.environ, PG_DATABASE="bench")
        subprocess.run(["sh", os.path.join(ROOT, "tests", "pg.sh"), "start",
                        self.pgdir], env=env, check=True)
        with open(os.path.join(self.pgdir, "env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                if k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
                         "PGDATABASE"):
                    self.pgenv[k] = v

        port_file = os.path.join(self.work, "fake.port")
        argv = [PYTHON, os.path.join(BENCH, "fake_sm.py"),
                "--port-file", port_file, "--access-key", ACCESS_KEY,
                "--secret-key", SECRET_KEY]
        context = None
        if self.args.tls:
            key = os.path.join(self.work, "fake.key")
            self.ca_file = os.path.join(self.work, "fake.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                 "-keyout", key, "-out", self.ca_file,
                 "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1"],
                check=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            argv += ["--tls-cert", self.ca_file, "--tls-key", key]
            self.ca_bundle = os.path.join(self.work, "bundle.pem")
            with open(self.ca_bundle, "w") as out:
                if os.path.exists(SYSTEM_CA):
                    out.write(open(SYSTEM_CA).read())
                out.write(open(self.ca_file).read())
            self.ca_dir = os.path.join(self.work, "certs")
            os.mkdir(self.ca_dir)
            system_dir = "/etc/ssl/certs"
            for name in os.listdir(system_dir):
                if name.endswith(".pem"):
                    os.symlink(os.path.join(system_dir, name),
                               os.path.join(self.ca_dir, name))
            shutil.copy(self.ca_file, os.path.join(self.ca_dir, "fake.pem"))
            subprocess.run(["openssl", "rehash", self.ca_dir], check=True,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            context = ssl.create_default_context(cafile=self.ca_file)
        self.fake = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read():
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the fake Secrets Manager did not start")
        self.fake_url = "%s://127.0.0.1:%s" % (
            "https" if self.args.tls else "http", open(port_file).read())
        value = json.dumps({
            "engine": "postgres", "host": self.pgenv["PGHOST"],
            "port": int(self.pgenv["PGPORT"]),
            "username": self.pgenv["PGUSER"],
            "password": self.pgenv["PGPASSWORD"],
            "dbname": self.pgenv["PGDATABASE"]})
        req = urllib.request.Request(
            self.fake_url + "/__admin/put", method="POST",
            data=json.dumps({"id": SECRET_ID, "value": value,
                             "region": REGION}).encode())
        urllib.request.urlopen(req, context=context).read()

        log("loading %d rows" % self.rows)
        self.psql("-v", "rows=%d" % self.rows,
                  "-f", os.path.join(BENCH, "sql", "schema.sql"))
        self.expected_rows = json.loads(self.psql_value(
            "SELECT json_build_object("
            "'rows', count(*), 'id_sum', sum(id),"
            "'amount_chars', sum(length(amount::text)),"
            "'text_chars', sum(length(customer)) + sum(length(note)),"
            "'stamps', count(created_at), 'nulls', count(*) - count(note))"
            " FROM bench_rows"))
        self.purge_file = os.path.join(self.work, "purge.sql")
        with open(self.purge_file, "w") as f:
            f.write(PURGE_SQL * (self.purge // PURGE_BATCH + 1))

    def stop(self):
        if self.fake:
            self.fake.terminate()
            self.fake.wait()
        subprocess.run(["sh", os.path.join(ROOT, "tests", "pg.sh"), "stop",
                        self.pgdir], check=False)
        subprocess.run(["rm", "-rf", self.work], check=False)

    def reset_purge(self):
        self.psql("-v", "purge=%d" % self.purge,
                  "-f", os.path.join(BENCH, "sql", "purge_reset.sql"))

    # -- the cases -------------------------------------------------------

    def define(self):
        jh = self.args.jobhost
        ref = os.path.join(BENCH, "reference")
        py = os.path.join(ref, "python")
        nd = os.path.join(ref, "node")
        aws, db = self.aws_env(), self.db_env()
        psql_aws = dict(db)  # the floor: no secret to fetch

        def want(expected):
            def check(run):
                got = last_json(run.out)
                for k, v in expected.items():
                    if got.get(k) != v:
                        raise Failure("%s is %r, not %r" % (k, got.get(k), v))
            return check

        def want_text(text):
            def check(run):
                if run.out.strip() != text:
                    raise Failure("printed %r, not %r"
                                  % (run.out.strip()[:200], text[:200]))
            return check

        def nothing(run):
            return None

        trivial = want({"one": 1})
        self.groups.append(Group("trivial", "cold run: trivial job", [
            Case("jobhost", [jh, "run", "trivial"], aws, trivial),
            Case("python", [PYTHON, os.path.join(py, "trivial.py")], aws,
                 trivial),
            Case("node", [NODE, os.path.join(nd, "trivial.js")], aws,
                 trivial),
            Case("psql", [PSQL, "-X", "-Atc", "SELECT 1 AS one"], psql_aws,
                 want_text("1")),
        ], floor="psql"))

        n = self.purge
        purged = want({"deleted": n, "batches": n // PURGE_BATCH + 1})
        lines = "\n".join(["DELETE %d" % PURGE_BATCH] * (n // PURGE_BATCH)
                          + ["DELETE 0"])
        self.groups.append(Group("purge", "cold run: purge %s rows" % fmt(n), [
            Case("jobhost", [jh, "run", "purge"], aws, purged,
                 before=self.reset_purge),
            Case("python", [PYTHON, os.path.join(py, "purge.py")], aws,
                 purged, before=self.reset_purge),
            Case("node", [NODE, os.path.join(nd, "purge.js")], aws, purged,
                 before=self.reset_purge),
            Case("psql", [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-f",
                          self.purge_file], psql_aws, want_text(lines),
                 before=self.reset_purge),
        ], floor="psql"))

        rows = want(self.expected_rows)
        self.groups.append(Group("rows", "rows: %s rows, 5 columns"
                                 % fmt(self.rows), [
            Case("jobhost", [jh, "run", "rows"], db, rows),
            Case("python", [PYTHON, os.path.join(py, "rows.py")], db, rows),
            Case("python buffered", [PYTHON, os.path.join(py, "rows.py"),
                                     "--buffered"], db, rows),
            Case("node", [NODE, os.path.join(nd, "rows.js")], db, rows),
            Case("psql COPY", [PSQL, "-X", "-c", "COPY (%s) TO STDOUT"
                               % ROWS_SQL], db, nothing, stdout_null=True),
        ], floor="psql COPY"))

        cases = []
        for enc in ("json", "cjson", "none"):
            cases.append(Case(
                "jobhost %s" % enc,
                [jh, "run", "json_encode", "--param", "encoder=" + enc,
                 "--param", "limit=%d" % self.json_rows],
                db, want({"rows": self.json_rows, "encoder": enc}),
                metric="median_ms"))
        self.groups.append(Group("json", "json: encode %s rows"
                                 % fmt(self.json_rows), cases,
                                 floor="jobhost cjson"))

        if self.args.only:
            keep = set(self.args.only.split(","))
            self.groups = [g for g in self.groups if g.key in keep]

    def measure(self):
        self.load_before = loadavg()
        for g in self.groups:
            log("%s: warm-up and %d runs each" % (g.title, self.runs))
            for i in range(self.runs + 1):
                order = g.cases[i % len(g.cases):] + g.cases[:i % len(
                    g.cases)]
                for c in order:
                    if c.failed:
                        continue
                    if c.before:
                        c.before()
                    run = spawn(c.argv, c.env, self.work, c.stdout_null)
                    try:
                        if run.status != 0:
                            raise Failure("exit status %d" % run.status)
                        c.check(run)
                        metric = (last_json(run.out)[c.metric]
                                  if c.metric else None)
                    except Failure as e:
                        c.failed = str(e)
                        log("  %s FAILED: %s\n%s" % (c.impl, e,
                                                     run.err[-2000:]))
                        continue
                    if i > 0:  # the first round is the warm-up
                        c.runs.append(run)
                        if metric is not None:
                            c.metrics.append(float(metric))

    # -- profiles --------------------------------------------------------

    def profile(self, outdir):
        """Records each jobhost case under perf (DWARF call graphs) into
        outdir and prints where its own process spent the time: by
        library, then the hottest functions. A short case is repeated so
        that the profile has enough samples."""
        os.makedirs(outdir, exist_ok=True)
        for g in self.groups:
            for c in g.cases:
                if not c.impl.startswith("jobhost") or c.failed or not c.runs:
                    continue
                median = statistics.median(r.wall_ms for r in c.runs)
                times = 1 if c.before else max(1, min(50, int(
                    1000 / max(median, 1.0))))
                data = os.path.join(outdir, "%s-%s.data" % (
                    g.key, c.impl.replace(" ", "-")))
                if c.before:
                    c.before()
                loop = 'for i in $(seq %d); do "$@" >/dev/null 2>&1; done' % (
                    times)
                subprocess.run(["perf", "record", "-q", "-F", "2999",
                                "--call-graph", "dwarf,16384", "-o", data,
                                "--", "sh", "-c", loop, "sh", *c.argv],
                               env=c.env, check=False,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                print("\n## profile: %s, %s (%d run%s, %s)\n" % (
                    g.title, c.impl, times, "" if times == 1 else "s", data))
                for sort, top in (("dso", 8), ("dso,sym", 25)):
                    rep = subprocess.run(
                        ["perf", "report", "-i", data, "--comm", "jobhost",
                         "--percentage", "relative", "--no-children",
                         "--sort", sort, "--stdio", "-g", "none"],
                        capture_output=True, text=True, check=False).stdout
                    rows = [ln for ln in rep.splitlines()
                            if ln.strip() and not ln.startswith("#")]
                    print("\n".join(rows[:top]))
                    print()

    # -- the report ------------------------------------------------------

    def report(self):
        results = {"runs": self.runs, "quick": self.quick, "groups": []}
        lines = [
            "| case | impl | median ms | min ms | CPU ms | time / floor "
            "| Python time / this | peak RSS MB |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for g in self.groups:
            stats = {}
            for c in g.cases:
                if c.failed or not c.runs:
                    continue
                walls = [r.wall_ms for r in c.runs]
                timed = c.metrics if c.metrics else walls
                stats[c.impl] = {
                    "median_ms": statistics.median(timed),
                    "min_ms": min(timed),
                    "wall_median_ms": statistics.median(walls),
                    "cpu_median_ms": statistics.median(
                        [r.cpu_ms for r in c.runs]),
                    "rss_mb": statistics.median(
                        [r.rss_kb for r in c.runs]) / 1024.0,
                    "rss_max_mb": max(r.rss_kb for r in c.runs) / 1024.0,
                }
            floor = stats.get(g.floor, {}).get("median_ms")
            python = stats.get("python", {}).get("median_ms")
            for c in g.cases:
                s = stats.get(c.impl)
                if not s:
                    lines.append("| %s | %s | FAILED: %s | | | | | |" % (
                        g.title, c.impl, c.failed or "no runs"))
                    continue
                s["vs_floor"] = s["median_ms"] / floor if floor else None
                s["python_over"] = (python / s["median_ms"]
                                    if python and s["median_ms"] else None)
                lines.append("| %s | %s | %.1f | %.1f | %.0f | %s | %s | %.1f |"
                             % (g.title, c.impl, s["median_ms"], s["min_ms"],
                                s["cpu_median_ms"], ratio(s["vs_floor"]),
                                ratio(s["python_over"]), s["rss_mb"]))
            results["groups"].append({"key": g.key, "title": g.title,
                                      "floor": g.floor, "cases": stats})
        print()
        print("\n".join(lines))
        print()
        print("Median of %d runs after a warm-up. Times are wall time from "
              "spawn to exit, except json's (encode time inside the job, "
              "the CPU-only encoding); CPU is the client process's user+sys; "
              "peak RSS is the client process's maxrss. Load average before "
              "and after: %s, %s." % (self.runs, self.load_before,
                                      loadavg()))
        print()
        targets = self.targets(results)
        for line in targets:
            print(line)
        results["targets"] = targets
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(results, f, indent=1, sort_keys=True)
        return results

    def targets(self, results):
        by = {g["key"]: g["cases"] for g in results["groups"]}
        out = []

        def check(name, ok, detail):
            out.append("%-4s %s (%s)" % ("PASS" if ok else "FAIL", name,
                                         detail))

        def cpu(cases, a, b):
            """b's CPU over a's: the ratio a shared machine skews less."""
            return cases[b]["cpu_median_ms"] / max(
                cases[a]["cpu_median_ms"], 1.0)

        t = by.get("trivial", {})
        if "jobhost" in t and "python" in t:
            x = t["python"]["median_ms"] / t["jobhost"]["median_ms"]
            check("trivial cold run >= 20x faster than Python", x >= 20,
                  "%.1fx; CPU %.1fx" % (x, cpu(t, "jobhost", "python")))
        if "jobhost" in t:
            rss = t["jobhost"]["rss_max_mb"]
            check("trivial job peak RSS < 12 MB", rss < 12.0,
                  "%.1f MB" % rss)
        p = by.get("purge", {})
        if "jobhost" in p and "psql" in p:
            x = p["jobhost"]["vs_floor"]
            check("purge within 1.1x psql", x <= 1.1, "%.2fx" % x)
        r = by.get("rows", {})
        if "jobhost" in r and "psql COPY" in r:
            x = r["jobhost"]["vs_floor"]
            check("rows within 1.5x psql COPY", x <= 1.5, "%.2fx" % x)
        if "jobhost" in r and "python" in r:
            x = r["python"]["median_ms"] / r["jobhost"]["median_ms"]
            check("rows >= 2x psycopg2", x >= 2.0, "%.2fx; CPU %.2fx" % (
                x, cpu(r, "jobhost", "python")))
        if "jobhost" in r:
            rss = r["jobhost"]["rss_max_mb"]
            check("rows streamed in < 64 MB peak RSS", rss < 64.0,
                  "%.1f MB" % rss)
        return out


def fmt(n):
    return "{:,}".format(n)


def ratio(x):
    return "-" if x is None else "%.2fx" % x


def loadavg():
    """The 1-minute load average: other work on the machine skews wall
    times, and the table says how much there was."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobhost", required=True, help="the jobhost binary")
    ap.add_argument("--launch", required=True,
                    help="the launcher built from bench/launch.c")
    ap.add_argument("--runs", type=int, help="measured runs a case "
                    "(default 5, 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: a tenth of the data, one run")
    ap.add_argument("--only", help="groups to run: trivial,purge,rows,json")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--tls", action="store_true", help="the fake Secrets "
                    "Manager serves HTTPS with a throwaway certificate, as "
                    "the real one does; clients trust it beside the "
                    "system's roots")
    ap.add_argument("--perf", metavar="DIR", help="then profile each jobhost "
                    "case with perf into DIR and print the hottest code")
    args = ap.parse_args()
    args.jobhost = os.path.abspath(args.jobhost)
    global LAUNCH
    LAUNCH = os.path.abspath(args.launch)

    bench = Bench(args)
    try:
        bench.start()
        bench.define()
        bench.measure()
        results = bench.report()
        if args.perf:
            bench.profile(os.path.abspath(args.perf))
    finally:
        bench.stop()
    failed = [c for g in bench.groups for c in g.cases if c.failed]
    return 1 if failed or not results["groups"] else 0


if __name__ == "__main__":
    sys.exit(main())
