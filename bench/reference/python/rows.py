"""rows.py: stream bench_rows with psycopg2 and touch every value.

A server-side (named) cursor streams the rows in pages of 10,000, as
psycopg2's documentation advises for results that do not fit in memory;
with --buffered, the default client-side cursor holds the whole result
(the code most scripts have). psycopg2 turns numeric into Decimal and
timestamptz into datetime, as any user gets. Connects with libpq's PG*
environment. Prints the same checksum as bench/jobs/rows.lua."""
import json
import sys

import psycopg2


def main():
    conn = psycopg2.connect("application_name=bench-python/rows")
    n = id_sum = amount_chars = text_chars = stamps = nulls = 0
    buffered = "--buffered" in sys.argv[1:]
    with conn.cursor(name=None if buffered else "bench_rows") as cur:
        cur.itersize = 10000
        cur.execute("SELECT id, amount, customer, created_at, note"
                    " FROM bench_rows")
        for id_, amount, customer, created_at, note in cur:
            n += 1
            id_sum += id_
            amount_chars += len(str(amount))
            text_chars += len(customer)
            if created_at is not None:
                stamps += 1
            if note is None:
                nulls += 1
            else:
                text_chars += len(note)
    conn.close()
    print(json.dumps({"rows": n, "id_sum": id_sum,
                      "amount_chars": amount_chars, "text_chars": text_chars,
                      "stamps": stamps, "nulls": nulls}, sort_keys=True))


if __name__ == "__main__":
    main()
