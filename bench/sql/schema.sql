-- schema.sql: the benchmark's tables and the row-throughput data.
--
-- Run with psql -v rows=N (1,000,000 for the full run). bench_rows holds
-- the five column types of the row-throughput and JSON cases: int8,
-- numeric, text, timestamptz and a text column where every third value is
-- NULL. bench_events is the purge case's table; purge_reset.sql fills it
-- before each run.
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_rows;
CREATE TABLE bench_rows (
  id         int8 PRIMARY KEY,
  amount     numeric(12, 2) NOT NULL,
  customer   text NOT NULL,
  created_at timestamptz NOT NULL,
  note       text
);
INSERT INTO bench_rows
SELECT i,
       ((i::int8 * 7919) % 10000000) / 100.0,
       'customer ' || (i % 9973) || ' of branch ' || (i % 97),
       timestamptz '2025-01-01 00:00:00+00' + i * interval '17.25 seconds',
       CASE WHEN i % 3 = 0 THEN NULL ELSE md5(i::text) END
  FROM generate_series(1, :rows) AS i;

DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (
  id         bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL,
  account    int4 NOT NULL,
  payload    text NOT NULL
);
CREATE INDEX bench_events_created_at ON bench_events (created_at);

VACUUM ANALYZE bench_rows;
