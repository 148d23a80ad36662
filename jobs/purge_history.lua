-- purge_history: delete pgbench_history rows older than the retention
-- window, in committed batches.
--
-- Migrated from the database host's crontab, where it ran as
--
--   15 3 * * *  psql -c "DELETE FROM pgbench_history
--                        WHERE mtime < now() - interval '90 days'"
--
-- The single DELETE held its locks for minutes, bloated the WAL in one
-- burst and, under the role's statement_timeout, failed and rolled back
-- everything. Here each batch is its own committed statement, so the work
-- done stays done; the run stops early when its time runs short and says
-- how far it got, and the next run carries on. The table has no primary
-- key, so batches are picked by ctid.
local batch = require "batch"

return {
  description = "Delete pgbench_history rows past the retention window",
  schedule = "cron(15 3 * * ? *)",
  database = "demo/pgbench",
  timeout = 900,
  lock = true,
  params = {
    retention = "90 days",  -- an interval: rows older than this go
    batch = 5000,           -- rows deleted per committed statement
    reserve_ms = 10000,     -- stop when less time than this is left
  },

  run = function(ctx, params)
    local db = ctx.db

    local cutoff = db:query([[
      SELECT (now() - $1::interval)::timestamp AS cutoff
    ]], params.retention)[1].cutoff

    local result = batch.run(ctx, { reserve_ms = params.reserve_ms },
      function()
        local n = db:exec([[
          DELETE FROM pgbench_history
           WHERE ctid = ANY (ARRAY(
                   SELECT ctid FROM pgbench_history
                    WHERE mtime < $1
                    LIMIT $2))
        ]], cutoff, params.batch)
        ctx.log.info("batch deleted", { rows = n })
        return n
      end)

    local left = db:query([[
      SELECT count(*) AS n FROM pgbench_history WHERE mtime < $1
    ]], cutoff)[1].n

    return {
      cutoff = cutoff,
      deleted = result.rows,
      batches = result.batches,
      done = result.done,
      remaining = left,
    }
  end,
}
