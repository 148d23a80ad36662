-- purge_reset.sql: refill bench_events before each purge run.
--
-- Run with psql -v purge=N: N rows older than the 90-day retention window
-- (the ones every purge deletes) and N/5 recent rows that must stay.
TRUNCATE bench_events RESTART IDENTITY;
INSERT INTO bench_events (created_at, account, payload)
SELECT now() - interval '100 days' - i * interval '1 second',
       i % 1000,
       repeat(md5(i::text), 2)
  FROM generate_series(1, :purge) AS i;
INSERT INTO bench_events (created_at, account, payload)
SELECT now() - i * interval '1 second',
       i % 1000,
       repeat(md5(i::text), 2)
  FROM generate_series(1, :purge / 5) AS i;
VACUUM ANALYZE bench_events;
