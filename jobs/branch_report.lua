-- branch_report: a daily summary of each branch's balance and the last
-- day's transactions, returned as the run's result (on Lambda it lands in
-- the invocation's response and the logs).
--
-- Migrated from the database host's crontab, where it ran as
--
--   0 7 * * *  psql -A -F, -c "SELECT ... GROUP BY bid" | mail -s ...
--
-- Sums of money stay exact: numeric values arrive as strings.
return {
  description = "Summarise branch balances and the last day's activity",
  schedule = "cron(0 7 * * ? *)",
  database = "demo/pgbench",
  timeout = 300,
  params = {
    since = "1 day",  -- the activity window, an interval
    top = 5,          -- how many branches to list
  },

  run = function(ctx, params)
    local db = ctx.db

    local totals = db:query([[
      SELECT count(*) AS branches,
             sum(bbalance)::numeric AS total_balance
        FROM pgbench_branches
    ]])[1]

    local busiest = db:query([[
      SELECT h.bid AS branch,
             count(*) AS transactions,
             sum(h.delta)::numeric AS net_change
        FROM pgbench_history h
       WHERE h.mtime >= (now() - $1::interval)::timestamp
       GROUP BY h.bid
       ORDER BY transactions DESC, branch
       LIMIT $2
    ]], params.since, params.top)

    return {
      branches = totals.branches,
      total_balance = totals.total_balance,
      busiest = busiest,
    }
  end,
}
