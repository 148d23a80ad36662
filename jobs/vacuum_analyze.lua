-- vacuum_analyze: VACUUM (ANALYZE) the tables named in params and report
-- how many dead rows each had before.
--
-- Migrated from the database host's crontab, where it ran as
--
--   30 2 * * 0  vacuumdb --analyze --table=pgbench_accounts ... appdb
--
-- VACUUM cannot run inside a transaction, and a dry run keeps the whole
-- run inside one, so a dry run only ANALYZEs (which it then rolls back).
return {
  description = "VACUUM ANALYZE the busiest tables",
  schedule = "cron(30 2 ? * SUN *)",
  database = "demo/pgbench",
  timeout = 900,  -- Lambda's ceiling; run longer VACUUMs elsewhere
  lock = true,
  params = {
    tables = { "pgbench_accounts", "pgbench_history" },
  },

  run = function(ctx, params)
    local db = ctx.db
    local report = {}

    for _, name in ipairs(params.tables) do
      local stats = [[
        SELECT n_dead_tup AS dead
          FROM pg_stat_user_tables
         WHERE relid = to_regclass($1)
      ]]
      local before = db:query(stats, name)[1]
      if before == nil then
        error("no such table: " .. name)
      end

      local verb = ctx.dry_run and "ANALYZE" or "VACUUM (ANALYZE)"
      db:exec(verb .. " " .. db:escape_identifier(name))

      report[#report + 1] = {
        table = name,
        action = verb,
        dead_before = before.dead,
      }
      ctx.log.info("table maintained", { table = name, action = verb })
    end

    return { tables = report }
  end,
}
