"""A fake AWS Secrets Manager for jobhost's tests: HTTP on loopback.

It answers GetSecretValue in the JSON 1.1 protocol (POST /,
X-Amz-Target: secretsmanager.GetSecretValue) and, on the same port, the
Parameters and Secrets Lambda Extension's GET /secretsmanager/get. Every
GetSecretValue request's SigV4 signature is recomputed with botocore's own
signer (Debian's python3-botocore, so run this under /usr/bin/python3) and
refused with InvalidSignatureException when it differs: the fake is an
independent check of src/sigv4.c, not a mirror of it.

What a test can script, in process (FakeSecretsManager methods) or from
outside through the admin endpoint (POST /__admin/ACTION with a JSON body,
GET /__admin/state):

  put(id, value, region)       a new AWSCURRENT version (string, or bytes
                               for SecretBinary); the old one becomes
                               AWSPREVIOUS
  begin_rotation(id, value)    a new version staged AWSPENDING
  finish_rotation(id)          AWSPENDING becomes AWSCURRENT
  script(id, [answers])        the next answers for id, before the real
                               one: "throttle" (400 ThrottlingException),
                               "500", "503", "expired" (a signature-expired
                               400 whatever the clock says)
  clock_offset_s               the fake's clock against the real one; a
                               request more than 5 minutes off is refused
                               as "Signature expired", with the fake's Date

and what it records: calls[id] (every GetSecretValue for id, refused ones
included), served[id] (answers with a value), and requests, one dict per
request (id, stage, region of the credential scope, signed headers,
whether the signature matched, the status sent).

With tls=(certfile, keyfile) it serves HTTPS instead, for the tests that
TLS is verified.

Standalone: /usr/bin/python3 fake_secretsmanager.py [--port N]
[--port-file F] [--access-key K --secret-key S [--token T]]
[--tls-cert PEM --tls-key PEM] serves until killed, with the admin
endpoint for scripting.
"""
import argparse
import base64
import datetime
import email.utils
import http.server
import json
import re
import ssl
import threading
import time
import urllib.parse
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCOUNT = "123456789012"
TARGET = "secretsmanager.GetSecretValue"
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/"
    r"(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$")
REQUIRED_SIGNED = {"host", "x-amz-date", "x-amz-target", "content-type"}
MAX_SKEW_S = 300


class Secret:
    """One secret: its versions and which stages point at them."""

    def __init__(self, name, region):
        self.name = name
        self.region = region
        suffix = uuid.uuid4().hex[:6]
        self.arn = (f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:"
                    f"{name}-{suffix}")
        self.versions = {}  # version id -> value (str or bytes)
        self.stages = {}    # stage -> version id

    def add_version(self, value, stage):
        vid = str(uuid.uuid4())
        self.versions[vid] = value
        if stage == "AWSCURRENT" and "AWSCURRENT" in self.stages:
            self.stages["AWSPREVIOUS"] = self.stages["AWSCURRENT"]
        self.stages[stage] = vid
        return vid


class FakeSecretsManager:
    """The fake's state and server. Use as a context manager, or call
    start() and stop()."""

    def __init__(self, access_key="AKIDFAKE", secret_key="fake-secret-key",
                 token=None, port=0, tls=None):
        """tls: None for plain HTTP, or (certfile, keyfile) to serve
        HTTPS with that certificate."""
        self.credentials = {access_key: (secret_key, token)}
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token
        self.lock = threading.Lock()
        self.secrets = {}
        self.scripts = {}
        self.calls = {}
        self.served = {}
        self.requests = []
        self.clock_offset_s = 0
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.port = self.server.server_address[1]
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket,
                                                     server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = None

    # -- life -------------------------------------------------------------
    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- scripting ----------------------------------------------------------
    def put(self, name, value, region="us-east-1"):
        """Stores a new AWSCURRENT version; returns the secret's ARN."""
        with self.lock:
            secret = self.secrets.get(name)
            if secret is None:
                secret = self.secrets[name] = Secret(name, region)
            secret.add_version(value, "AWSCURRENT")
            return secret.arn

    def begin_rotation(self, name, value):
        with self.lock:
            return self.secrets[name].add_version(value, "AWSPENDING")

    def finish_rotation(self, name):
        with self.lock:
            secret = self.secrets[name]
            secret.stages["AWSPREVIOUS"] = secret.stages["AWSCURRENT"]
            secret.stages["AWSCURRENT"] = secret.stages.pop("AWSPENDING")

    def script(self, name, answers):
        with self.lock:
            self.scripts.setdefault(name, []).extend(answers)

    def reset_counts(self):
        with self.lock:
            self.calls.clear()
            self.served.clear()
            self.requests.clear()

    def state(self):
        with self.lock:
            return {"calls": dict(self.calls), "served": dict(self.served),
                    "requests": list(self.requests)}

    # -- serving ------------------------------------------------------------
    def now(self):
        return time.time() + self.clock_offset_s

    def find(self, secret_id, region):
        """The secret an id names (name or ARN), as seen from region."""
        for secret in self.secrets.values():
            if secret_id in (secret.name, secret.arn):
                return secret if secret.region == region else None
        return None

    def check_signature(self, method, path, headers, body):
        """Returns (None, scope region, signed list) when the request is
        signed right, else (error answer tuple, region, signed)."""
        auth = headers.get("Authorization", "")
        m = AUTH_RE.match(auth)
        if not m:
            return (_error(403, "IncompleteSignatureException",
                           "Authorization header is malformed"), None, [])
        region, signed = m["region"], m["signed"].split(";")
        if m["akid"] not in self.credentials:
            return (_error(403, "UnrecognizedClientException",
                           "The security token included in the request is "
                           "invalid."), region, signed)
        secret_key, token = self.credentials[m["akid"]]
        sent_token = headers.get("X-Amz-Security-Token")
        missing = REQUIRED_SIGNED - set(signed)
        if token:
            if sent_token != token:
                return (_error(403, "UnrecognizedClientException",
                               "The security token included in the request "
                               "is invalid."), region, signed)
            missing |= {"x-amz-security-token"} - set(signed)
        if missing or m["service"] != "secretsmanager":
            return (_error(403, "IncompleteSignatureException",
                           "Signed headers or scope incomplete: " +
                           ",".join(sorted(missing))), region, signed)

        amz_date = headers.get("X-Amz-Date", "")
        try:
            sent = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
            sent = sent.replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            return (_error(403, "IncompleteSignatureException",
                           "X-Amz-Date is malformed"), region, signed)
        if m["date"] != amz_date[:8]:
            return (_error(403, "InvalidSignatureException",
                           "Credential scope date differs from X-Amz-Date"),
                    region, signed)
        if abs(sent - self.now()) > MAX_SKEW_S:
            return (self.expired_answer(amz_date, sent > self.now()),
                    region, signed)

        # botocore signs every header it is given, so give it exactly the
        # ones the client listed.
        signed_headers = {}
        for name in signed:
            value = headers.get_all(name)
            if value is None:
                return (_error(403, "InvalidSignatureException",
                               "Signed header missing: " + name), region,
                        signed)
            signed_headers[name] = ",".join(value)
        req = AWSRequest(method=method,
                         url=f"http://{headers.get('Host')}{path}",
                         data=body, headers=signed_headers)
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(m["akid"], secret_key, token),
                           "secretsmanager", region)
        canonical = signer.canonical_request(req)
        expected = signer.signature(
            signer.string_to_sign(req, canonical), req)
        if expected != m["sig"]:
            return (_error(403, "InvalidSignatureException",
                           "The request signature we calculated does not "
                           "match the signature you provided."), region,
                    signed)
        return None, region, signed

    def expired_answer(self, amz_date, future=False):
        """The answer AWS gives a request dated too far from its clock."""
        now = datetime.datetime.fromtimestamp(self.now(),
                                              datetime.timezone.utc)
        if future:
            limit = now + datetime.timedelta(seconds=MAX_SKEW_S)
            return _error(400, "InvalidSignatureException",
                          f"Signature not yet current: {amz_date} is still "
                          f"later than {limit:%Y%m%dT%H%M%SZ} "
                          f"({now:%Y%m%dT%H%M%SZ} + 5 min.)")
        limit = now - datetime.timedelta(seconds=MAX_SKEW_S)
        return _error(400, "InvalidSignatureException",
                      f"Signature expired: {amz_date} is now earlier than "
                      f"{limit:%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 5 "
                      f"min.)")

    def answer_value(self, secret_id, stage, version_id, region):
        secret = self.find(secret_id, region)
        if secret is None:
            return _error(400, "ResourceNotFoundException",
                          "Secrets Manager can't find the specified secret.")
        vid = version_id or secret.stages.get(stage)
        if vid is None or vid not in secret.versions:
            return _error(400, "ResourceNotFoundException",
                          "Secrets Manager can't find the specified secret "
                          "value for staging label: " + stage)
        value = secret.versions[vid]
        body = {"ARN": secret.arn, "Name": secret.name, "VersionId": vid,
                "VersionStages": sorted(s for s, v in secret.stages.items()
                                        if v == vid),
                "CreatedDate": 1.7e9}
        if isinstance(value, bytes):
            body["SecretBinary"] = base64.b64encode(value).decode()
        else:
            body["SecretString"] = value
        self.served[secret_id] = self.served.get(secret_id, 0) + 1
        return 200, {}, json.dumps(body).encode()

    def scripted(self, secret_id, amz_date):
        queue = self.scripts.get(secret_id)
        if not queue:
            return None
        what = queue.pop(0)
        if what == "throttle":
            status, headers, body = _error(400, "ThrottlingException",
                                           "Rate exceeded")
            headers["x-amzn-ErrorType"] = "ThrottlingException:"
            return status, headers, body
        if what == "expired":
            return self.expired_answer(amz_date)
        return _error(int(what), "InternalServiceError",
                      "An error occurred (InternalServiceError)")

    def get_secret_value(self, path, headers, body):
        try:
            req = json.loads(body)
            secret_id = req["SecretId"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "SerializationException", "bad body"), {}
        stage = req.get("VersionStage", "AWSCURRENT")
        record = {"kind": "api", "id": secret_id, "stage": stage,
                  "host": headers.get("Host"),
                  "token": headers.get("X-Amz-Security-Token") is not None}
        with self.lock:
            self.calls[secret_id] = self.calls.get(secret_id, 0) + 1
            failure, region, signed = self.check_signature(
                "POST", path, headers, body)
            record.update(region=region, signed=signed,
                          signature_ok=failure is None or
                          failure[0] == 400)
            answer = failure or self.scripted(
                secret_id, headers.get("X-Amz-Date", "")) or \
                self.answer_value(secret_id, stage, req.get("VersionId"),
                                  region)
            record["status"] = answer[0]
            self.requests.append(record)
        return answer, record

    def extension_get(self, query, headers):
        params = urllib.parse.parse_qs(query)
        secret_id = params.get("secretId", [""])[0]
        stage = params.get("versionStage", ["AWSCURRENT"])[0]
        record = {"kind": "extension", "id": secret_id, "stage": stage}
        with self.lock:
            self.calls[secret_id] = self.calls.get(secret_id, 0) + 1
            if not self.token or \
                    headers.get("X-Aws-Parameters-Secrets-Token") != self.token:
                answer = (401, {}, b"unauthorized")
            else:
                answer = self.scripted(secret_id, "") or self.answer_value(
                    secret_id, stage, None, self.region_of(secret_id))
            record["status"] = answer[0]
            self.requests.append(record)
        return answer

    def region_of(self, secret_id):
        for secret in self.secrets.values():
            if secret_id in (secret.name, secret.arn):
                return secret.region
        return None

    def admin(self, action, args):
        if action == "put":
            value = args["value"]
            if args.get("binary"):
                value = base64.b64decode(value)
            return {"arn": self.put(args["id"], value,
                                    args.get("region", "us-east-1"))}
        if action == "begin_rotation":
            return {"version": self.begin_rotation(args["id"],
                                                   args["value"])}
        if action == "finish_rotation":
            self.finish_rotation(args["id"])
        elif action == "script":
            self.script(args["id"], args["answers"])
        elif action == "clock":
            self.clock_offset_s = args["offset_s"]
        elif action == "reset_counts":
            self.reset_counts()
        else:
            raise KeyError(action)
        return {}


def _error(status, type_, message):
    return status, {}, json.dumps({"__type": type_,
                                   "message": message}).encode()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """Quiet: a client that refuses the certificate is expected in
        the TLS tests, and the test output must stay clean."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        """Quiet: the test output must hold no request lines."""

    def reply(self, status, headers, body):
        fake = self.server.fake
        self.send_response_only(status)
        self.send_header("Date", email.utils.formatdate(fake.now(),
                                                        usegmt=True))
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        fake = self.server.fake
        body = self.read_body()
        path = self.path
        if path.startswith("/__admin/"):
            try:
                out = fake.admin(path[len("/__admin/"):],
                                 json.loads(body or b"{}"))
                self.reply(200, {}, json.dumps(out).encode())
            except (KeyError, ValueError) as e:
                self.reply(400, {}, json.dumps({"error": str(e)}).encode())
            return
        if self.headers.get("X-Amz-Target") != TARGET:
            self.reply(*_error(400, "UnknownOperationException",
                               "unknown target"))
            return
        answer, _ = fake.get_secret_value(path, self.headers, body)
        self.reply(*answer)

    def do_GET(self):
        fake = self.server.fake
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/__admin/state":
            self.reply(200, {}, json.dumps(fake.state()).encode())
        elif parts.path == "/secretsmanager/get":
            self.reply(*fake.extension_get(parts.query, self.headers))
        else:
            self.reply(404, {}, b"{}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--access-key", default="AKIDFAKE")
    ap.add_argument("--secret-key", default="fake-secret-key")
    ap.add_argument("--token")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM cert")
    ap.add_argument("--tls-key", help="and this PEM key")
    args = ap.parse_args()
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    fake = FakeSecretsManager(args.access_key, args.secret_key, args.token,
                              args.port, tls)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(fake.port))
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
