-- trivial: the smallest useful job, for the cold-run benchmark.
--
-- Fetch the database secret, connect, run one statement, answer in JSON:
-- what every scheduled job pays before it does any work. The same job is
-- in bench/reference/ for Python and Node.js.
return {
  description = "Connect with the secret's credentials and SELECT 1",
  database = "bench/db",

  run = function(ctx)
    local row = ctx.db:query("SELECT 1 AS one")[1]
    return { one = row.one }
  end,
}
