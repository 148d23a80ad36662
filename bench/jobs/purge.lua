-- purge: delete bench_events rows past the retention window in committed
-- batches, the cold-run benchmark's real job.
--
-- Each DELETE is its own committed statement; the loop ends on the batch
-- that deletes nothing. The Python and Node.js references and the psql
-- floor run exactly these statements.
local batch = require "batch"

return {
  description = "Purge bench_events rows older than the retention window",
  database = "bench/db",
  timeout = 600,
  params = {
    retention = "90 days",  -- rows older than this go
    batch = 5000,           -- rows deleted per committed statement
  },

  run = function(ctx, params)
    local db = ctx.db
    local r = batch.run(ctx, { reserve_ms = 1000 }, function()
      return db:exec([[
        DELETE FROM bench_events
         WHERE id IN (SELECT id FROM bench_events
                       WHERE created_at < now() - $1::interval
                       ORDER BY id
                       LIMIT $2)
      ]], params.retention, params.batch)
    end)
    return { deleted = r.rows, batches = r.batches, done = r.done }
  end,
}
