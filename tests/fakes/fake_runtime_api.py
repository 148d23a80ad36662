"""A fake AWS Lambda Runtime API on loopback, for jobhost's tests and
benchmarks. Standard library only (runs under Debian's /usr/bin/python3).

It serves scripted invocations to `GET /2018-06-01/runtime/invocation/next`
with the real headers (Lambda-Runtime-Aws-Request-Id,
Lambda-Runtime-Deadline-Ms, Lambda-Runtime-Invoked-Function-Arn,
Lambda-Runtime-Trace-Id) and records every post: `invocation/ID/response`,
`invocation/ID/error` (with its Lambda-Runtime-Function-Error-Type header)
and `init/error`. A scripted step can instead answer `next` with a status
(403, 500, ...), answer the invocation's post with one (400, 403, 413,
500), or hold `next` open for a while before answering. With nothing
scripted, `next` waits, as a frozen Lambda environment would.

In a test:

    api = FakeRuntimeAPI().start()
    rid = api.push({"job": "hello"})
    ... run jobhost with AWS_LAMBDA_RUNTIME_API=api.address ...
    post = api.wait_post(rid)

As a program (for a benchmark or by hand): `fake_runtime_api.py --script
FILE` serves the steps of a JSON array (each an object with the keys of
push()) and prints its address, then one JSON line a post.
"""
import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:jobhost"


class Step:
    """One scripted answer to `next`: an invocation, or a bare status."""

    def __init__(self, body=b"{}", request_id=None, deadline_in=900.0,
                 deadline_ms=None, trace_id=None, arn=FUNCTION_ARN, hold=0.0,
                 post_status=202, next_status=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.request_id = request_id or str(uuid.uuid4())
        self.deadline_in = deadline_in
        self.deadline_ms = deadline_ms
        self.trace_id = trace_id or (
            "Root=1-%08x-%s;Parent=%s;Sampled=1"
            % (int(time.time()), uuid.uuid4().hex[:24], uuid.uuid4().hex[:16]))
        self.arn = arn
        self.hold = hold
        self.post_status = post_status
        self.next_status = next_status
        self.headers = headers or {}
        # Filled when served: epoch ms deadline sent, monotonic time.
        self.deadline_sent = None
        self.served_at = None


class Post:
    """A post the runtime made: kind is "response", "error" or "init"."""

    def __init__(self, kind, request_id, headers, body, received_at):
        self.kind = kind
        self.request_id = request_id
        self.headers = headers
        self.body = body
        self.received_at = received_at  # time.monotonic()
        self.received_ms = int(time.time() * 1000)

    @property
    def error_type(self):
        return self.headers.get("Lambda-Runtime-Function-Error-Type")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Post(%s, %s, %s, %r)" % (self.kind, self.request_id,
                                         self.error_type, self.body[:200])


class FakeRuntimeAPI:
    def __init__(self):
        self.steps = []
        self.posts = []
        self.nexts = []        # monotonic arrival time of each `next`
        self.by_id = {}        # request id -> Step, once served
        self.cond = threading.Condition()
        self.server = None
        self.thread = None
        self.closed = False

    # -- scripting ----------------------------------------------------

    def push(self, body=b"{}", **kw):
        """Queues an invocation; returns its request id."""
        step = Step(body, **kw)
        with self.cond:
            self.steps.append(step)
            self.cond.notify_all()
        return step.request_id

    def push_status(self, status, hold=0.0):
        """Queues a bare answer to `next` with this status."""
        with self.cond:
            self.steps.append(Step(next_status=status, hold=hold))
            self.cond.notify_all()

    # -- observing ----------------------------------------------------

    def wait_for(self, predicate, timeout=30.0):
        """Waits until predicate() (called under the lock) is true;
        returns its value or raises AssertionError on timeout."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake runtime api: timed out; posts "
                                         "so far: %r" % self.posts)
                self.cond.wait(left)

    def wait_post(self, request_id, timeout=30.0):
        """The first post for request_id, waiting for it."""
        return self.wait_for(lambda: next(
            (p for p in self.posts if p.request_id == request_id), None),
            timeout)

    def posts_for(self, request_id):
        with self.cond:
            return [p for p in self.posts if p.request_id == request_id]

    def wait_nexts(self, n, timeout=30.0):
        """Waits until `next` was called n times in all."""
        return self.wait_for(lambda: len(self.nexts) >= n, timeout)

    # -- life ---------------------------------------------------------

    @property
    def address(self):
        host, port = self.server.server_address[:2]
        return "%s:%d" % (host, port)

    def start(self, port=0):
        api = self

        class Handler(RuntimeHandler):
            fake = api

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None  # set by FakeRuntimeAPI.start

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        # One write for the status line, the headers and the body, so no
        # small second write waits on a delayed ACK.
        lines = ["HTTP/1.1 %d %s" % (status, self.responses.get(
            status, ("",))[0])]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        lines.append("Content-Length: %d" % len(body))
        lines.append("Content-Type: application/json")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)
        self.wfile.flush()

    def error_body(self, status):
        return json.dumps({"errorMessage": "fake runtime api: status %d"
                           % status, "errorType": "Fake.Status%d" % status}
                          ).encode()

    def do_GET(self):
        fake = self.fake
        if self.path != PREFIX + "/invocation/next":
            self.reply(404, self.error_body(404))
            return
        with fake.cond:
            fake.nexts.append(time.monotonic())
            fake.cond.notify_all()
            while not fake.steps and not fake.closed:
                fake.cond.wait()
            if fake.closed:
                self.close_connection = True
                return
            step = fake.steps.pop(0)
        if step.hold:
            time.sleep(step.hold)
        if step.next_status:
            self.reply(step.next_status, self.error_body(step.next_status))
            return
        deadline = step.deadline_ms
        if deadline is None:
            deadline = int((time.time() + step.deadline_in) * 1000)
        headers = {
            "Lambda-Runtime-Aws-Request-Id": step.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": step.arn,
            "Lambda-Runtime-Trace-Id": step.trace_id,
        }
        headers.update(step.headers)
        step.deadline_sent = deadline
        with fake.cond:
            fake.by_id[step.request_id] = step
        # Taken before the write, so served-to-posted times include it.
        step.served_at = time.monotonic()
        self.reply(200, step.body, headers)

    def do_POST(self):
        fake = self.fake
        received = time.monotonic()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        path = self.path[len(PREFIX):] if self.path.startswith(PREFIX) \
            else ""
        parts = path.strip("/").split("/")
        if parts == ["init", "error"]:
            kind, rid = "init", None
        elif len(parts) == 3 and parts[0] == "invocation" and \
                parts[2] in ("response", "error"):
            kind, rid = parts[2], parts[1]
        else:
            self.reply(404, self.error_body(404))
            return
        status = 202
        with fake.cond:
            step = fake.by_id.get(rid)
            if rid is not None and step is None:
                status = 400  # the real API: an unknown request id
            elif step is not None:
                status = step.post_status
            fake.posts.append(Post(kind, rid, dict(self.headers.items()),
                                   body.decode("utf-8", "replace"), received))
            fake.cond.notify_all()
        if status == 202:
            self.reply(202, b'{"status":"OK"}')
        else:
            self.reply(status, self.error_body(status))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--script", required=True,
                    help="a JSON array of steps (keys of push())")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    with open(args.script) as f:
        steps = json.load(f)
    api = FakeRuntimeAPI().start(args.port)
    for s in steps:
        if "next_status" in s:
            api.push_status(s["next_status"], s.get("hold", 0.0))
        else:
            api.push(**s)
    print(api.address, flush=True)
    seen = 0
    try:
        while True:
            api.wait_for(lambda: len(api.posts) > seen, timeout=3600)
            for p in api.posts[seen:]:
                print(json.dumps({"kind": p.kind, "request_id": p.request_id,
                                  "error_type": p.error_type,
                                  "body": p.body}), flush=True)
            seen = len(api.posts)
    except KeyboardInterrupt:
        pass
    api.stop()


if __name__ == "__main__":
    sys.exit(main())
