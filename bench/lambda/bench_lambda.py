"""Benchmarks of `jobhost lambda` against the fake Runtime API
(tests/fakes/fake_runtime_api.py, real HTTP on loopback):

1. cold start: from the moment the process is spawned to the moment its
   first `GET invocation/next` reaches the fake (init: loading the
   libraries, checking every job, connecting to the API). Target: 10 ms.
2. invocation overhead of a trivial job (`return {ok = true}`, no
   database): from the moment the fake has written the event to the
   moment the result's post reaches it. That is everything the runtime
   does for one invocation: receive, route, a fresh Lua state, load and
   run the job, encode, post. Target: 1 ms.

Both figures include the fake's own Python HTTP handling, so they are
upper bounds. Medians are printed, with the 10th and 90th percentiles.
For scale the cold start is shown beside two floors: the time the
runtime itself reports for its init (`init_us` of "runtime ready", from
entering `jobhost lambda` to being ready to call `next`), and the same
spawn-to-first-request time of the curl command line tool, which loads
the same libcurl and does nothing else. On a busy machine the wall time
mostly measures waiting for a CPU; the CPU time of a start that exits
right after its first `next` is shown as well.

usage: /usr/bin/python3 bench/lambda/bench_lambda.py [--bin PATH]
       [--starts N] [--invocations N] [--jobs DIR]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "fakes"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import jhtest  # noqa: E402
from fake_runtime_api import FakeRuntimeAPI  # noqa: E402

NOOP = 'return { run = function(ctx) return { ok = true } end }\n'


def percentiles(values):
    """(p10, median, p90) of values, in the same unit."""
    values = sorted(values)
    q = statistics.quantiles(values, n=10)
    return q[0], statistics.median(values), q[-1]


def report(name, values_ms, target_ms=None):
    """Prints one figure; with a target, whether the median meets it."""
    p10, med, p90 = percentiles(values_ms)
    line = "%-34s median %8.3f ms  (p10 %.3f, p90 %.3f, n=%d)" % (
        name, med, p10, p90, len(values_ms))
    if target_ms:
        line += "  target %g ms: %s" % (
            target_ms, "ok" if med < target_ms else "OVER TARGET")
    print(line)
    return med


def spawn(binary, api, jobs, out=subprocess.DEVNULL):
    # The function's environment as `jobhost template` writes it.
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=api.address,
               JOBHOST_JOBS=jobs, AWS_LAMBDA_LOG_LEVEL="INFO",
               AWS_LAMBDA_LOG_FORMAT="JSON")
    return subprocess.Popen([binary, "lambda"], env=env, stdout=out,
                            stderr=subprocess.DEVNULL)


def bench_start(binary, jobs, n, tmp):
    """Spawn to first `next`, n times, each against a fresh fake; returns
    those times and the init times the runtime logged."""
    times, inits = [], []
    log = os.path.join(tmp, "start.log")
    for _ in range(n):
        with FakeRuntimeAPI() as api, open(log, "w") as out:
            t0 = time.monotonic()
            proc = spawn(binary, api, jobs, out)
            api.wait_nexts(1, timeout=30)
            times.append((api.nexts[0] - t0) * 1000)
            jhtest.stop_process(proc)
        with open(log) as f:
            for line in f:
                record = json.loads(line)
                if record["message"] == "runtime ready":
                    inits.append(record["init_us"] / 1000)
    return times, inits


def bench_start_cpu(binary, jobs, n):
    """The CPU time (user + system) of a process that starts, inits,
    calls `next` once and exits on the 500 it gets: the cold start's cost
    without the waiting that a busy machine adds to wall time."""
    times = []
    for _ in range(n):
        with FakeRuntimeAPI() as api:
            api.push_status(500)
            proc = spawn(binary, api, jobs)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 1 or len(api.nexts) != 1:
                raise SystemExit("unexpected exit %d" % proc.returncode)
            times.append((usage.ru_utime + usage.ru_stime) * 1000)
    return times


def bench_curl_start(n):
    """Spawn to first request of `curl URL/invocation/next`: the floor of
    starting a process that loads libcurl."""
    times = []
    for _ in range(n):
        with FakeRuntimeAPI() as api:
            url = "http://%s/2018-06-01/runtime/invocation/next" % api.address
            t0 = time.monotonic()
            proc = subprocess.Popen(["curl", "-s", "-o", "/dev/null", url])
            api.wait_nexts(1, timeout=30)
            times.append((api.nexts[0] - t0) * 1000)
            proc.kill()
            proc.wait()
    return times


def bench_invoke(binary, jobs, n, warmup=50):
    """Served-to-posted time of n invocations of the trivial job, one
    process, one at a time."""
    with FakeRuntimeAPI() as api:
        proc = spawn(binary, api, jobs)
        times = []
        try:
            for i in range(warmup + n):
                rid = api.push({"job": "noop"})
                post = api.wait_post(rid, timeout=30)
                if post.kind != "response":
                    raise SystemExit("the trivial job failed: %r" % post)
                if i >= warmup:
                    served = api.by_id[rid].served_at
                    times.append((post.received_at - served) * 1000)
        finally:
            jhtest.stop_process(proc)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get(
        "JOBHOST_BIN", os.path.join(SOURCE, "build", "jobhost")))
    ap.add_argument("--starts", type=int, default=40)
    ap.add_argument("--invocations", type=int, default=1000)
    ap.add_argument("--jobs", help="also time the cold start with the "
                    "jobs of this folder (default: the repository's jobs/)",
                    default=os.path.join(SOURCE, "jobs"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="jobhost-bench-")
    try:
        jobs = os.path.join(tmp, "jobs")
        os.mkdir(jobs)
        with open(os.path.join(jobs, "noop.lua"), "w") as f:
            f.write(NOOP)
        print("jobhost lambda against the fake Runtime API (%s)" % args.bin)
        folders = [(jobs, 1)]
        if os.path.isdir(args.jobs):
            folders.append((args.jobs, len([
                j for j in os.listdir(args.jobs) if j.endswith(".lua")])))
        for folder, count in folders:
            times, inits = bench_start(args.bin, folder, args.starts, tmp)
            report("start to first next (%d job%s)"
                   % (count, "s" if count > 1 else ""), times, 10)
            report("  of which init, as logged", inits)
            report("  CPU, start to exit after next",
                   bench_start_cpu(args.bin, folder, args.starts))
        if shutil.which("curl"):
            report("  floor: curl to first request",
                   bench_curl_start(args.starts))
        report("trivial job invocation overhead",
               bench_invoke(args.bin, jobs, args.invocations), 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
