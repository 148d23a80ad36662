-- export_overdrawn: write the accounts whose balance is below a threshold
-- to a CSV file, for the finance team's morning import.
--
-- Migrated from the database host's crontab, where it ran as
--
--   0 6 * * 1-5  psql -c "\copy (SELECT ...) TO '/srv/exports/od.csv' CSV"
--
-- COPY streams the rows straight into the file chunk by chunk, so an
-- export of millions of rows needs no more memory than one chunk. On
-- Lambda the file goes to /tmp; set `path` to where your export belongs.
return {
  description = "Export overdrawn accounts to CSV",
  schedule = "cron(0 6 ? * MON-FRI *)",
  database = "demo/pgbench",
  timeout = 600,
  params = {
    path = "/tmp/overdrawn_accounts.csv",
    below = -1000,  -- export accounts whose balance is below this
  },

  run = function(ctx, params)
    local db = ctx.db
    local out <close> = assert(io.open(params.path, "wb"))
    local bytes = 0

    local sql = string.format([[
      COPY (SELECT aid, bid, abalance
              FROM pgbench_accounts
             WHERE abalance < %s
             ORDER BY abalance, aid)
        TO STDOUT WITH (FORMAT csv, HEADER)
    ]], db:escape_literal(tostring(params.below)))

    local rows = db:copy_out(sql, function(chunk)
      out:write(chunk)
      bytes = bytes + #chunk
    end)

    ctx.log.info("export written", { path = params.path, rows = rows })
    return { path = params.path, rows = rows, bytes = bytes }
  end,
}
