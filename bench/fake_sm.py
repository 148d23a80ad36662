"""fake_sm.py: the tests' fake Secrets Manager
(tests/fakes/fake_secretsmanager.py), run for the benchmarks with
TCP_NODELAY on its connections.

The fake writes an answer's headers and its body in two sends. Over TLS
the client has already left TCP's quick-ACK mode by then, so Nagle's
algorithm holds the body until the client's delayed ACK, about 40 ms,
in every cold run of every client: a stall that AWS's endpoints do not
have. Takes the fake's own arguments.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests", "fakes"))

import fake_secretsmanager  # noqa: E402

if __name__ == "__main__":
    fake_secretsmanager._Handler.disable_nagle_algorithm = True
    fake_secretsmanager.main()
