-- batch: repeat one unit of work, each in its own committed statement or
-- transaction, until nothing is left or the run's time runs short.
--
--   local batch = require "batch"
--   local r = batch.run(ctx, { reserve_ms = 5000 }, function()
--     return ctx.db:exec(delete_sql, cutoff, 5000)   -- rows handled
--   end)
--   -- r = { done = true|false, rows = N, batches = N }
--
-- A step that handles 0 rows ends the loop with done = true. Before each
-- step the time left is compared with the reserve plus twice the slowest
-- step so far, so a run stops early and reports what it did instead of
-- being cut off in the middle of a batch. A stop with work left is also
-- logged as a warning: on Lambda no one reads the result.
local M = {}

-- The result of a stop with work left, logged.
local function stopped(ctx, why, rows, batches, reserve)
  local short = batches == 0 and why == "time ran short"
  ctx.log.warn(short and "batch ran no batch: less time left than its "
      .. "reserve_ms" or "batch stopped with work left", {
    reason = why, rows = rows, batches = batches,
    remaining_ms = ctx.remaining_ms(), reserve_ms = reserve,
  })
  return { done = false, rows = rows, batches = batches, stopped = why }
end

function M.run(ctx, opts, step)
  local reserve = opts.reserve_ms or 5000
  local max_batches = opts.max_batches or math.maxinteger
  if type(reserve) ~= "number" or reserve < 0 then
    error("batch.run: reserve_ms must be a number of milliseconds, 0 or "
      .. "more, not " .. tostring(reserve), 2)
  end
  if math.type(max_batches) ~= "integer" or max_batches < 0 then
    error("batch.run: max_batches must be a whole number, 0 or more, not "
      .. tostring(max_batches), 2)
  end
  local rows, batches, slowest = 0, 0, 0

  while batches < max_batches do
    if ctx.remaining_ms() < reserve + 2 * slowest then
      return stopped(ctx, "time ran short", rows, batches, reserve)
    end
    local left_before = ctx.remaining_ms()
    local n = step()
    local took = left_before - ctx.remaining_ms()
    if took > slowest then
      slowest = took
    end
    if math.type(n) ~= "integer" or n < 0 then
      local got = math.type(n) == "float" and ("the float " .. tostring(n))
        or math.type(n) == "integer" and tostring(n)
        or type(n)
      error(("batch step must return the number of rows it handled (an "
        .. "integer, 0 or more), not %s"):format(got), 2)
    end
    batches = batches + 1
    rows = rows + n
    if n == 0 then
      return { done = true, rows = rows, batches = batches }
    end
  end
  return stopped(ctx, "max_batches reached", rows, batches, reserve)
end


return M
