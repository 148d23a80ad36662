"""trivial.py: the trivial job in Python: fetch the secret, connect,
SELECT 1, print the result as JSON."""
import json

from common import connect


def main():
    conn = connect("bench-python/trivial")
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        (one,) = cur.fetchone()
    conn.close()
    print(json.dumps({"one": one}))


if __name__ == "__main__":
    main()
