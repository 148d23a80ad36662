"""purge.py: the batched purge in Python: delete bench_events rows past
the retention window, each batch its own committed statement, until a
batch deletes nothing. Prints the counts as JSON."""
import json
import sys

from common import connect

PURGE = """
DELETE FROM bench_events
 WHERE id IN (SELECT id FROM bench_events
               WHERE created_at < now() - %s::interval
               ORDER BY id
               LIMIT %s)
"""


def main():
    retention = sys.argv[1] if len(sys.argv) > 1 else "90 days"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    conn = connect("bench-python/purge")
    conn.autocommit = True
    deleted = batches = 0
    with conn.cursor() as cur:
        while True:
            cur.execute(PURGE, (retention, batch))
            batches += 1
            deleted += cur.rowcount
            if cur.rowcount == 0:
                break
    conn.close()
    print(json.dumps({"batches": batches, "deleted": deleted, "done": True},
                     sort_keys=True))


if __name__ == "__main__":
    main()
