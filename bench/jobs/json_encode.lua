-- json_encode: encode query rows as JSON with the host's json module or
-- with lua-cjson, the JSON benchmark.
--
-- Loads `limit` rows of bench_rows with db:query, encodes the whole result
-- once to warm up, then `runs` times, timing each with os.clock (CPU
-- time of this process). A full collection before each run, outside the
-- timing, frees the previous text, so the peak RSS is the rows plus one
-- encoding. The encoder "none" skips encoding: its peak RSS is the
-- baseline the encoders add to.
return {
  description = "Encode bench_rows as JSON, timed in process",
  timeout = 600,
  memory = 1024,
  params = { limit = 100000, encoder = "json", runs = 5 },

  run = function(ctx, params)
    local rows = ctx.db:query([[
      SELECT id, amount, customer, created_at, note
        FROM bench_rows
       ORDER BY id
       LIMIT $1
    ]], params.limit)

    local encode
    if params.encoder == "json" then
      encode = require("json").encode
    elseif params.encoder == "cjson" then
      encode = require("cjson").encode
    elseif params.encoder == "none" then
      encode = function() return "" end
    else
      error("encoder must be json, cjson or none")
    end

    local bytes = #encode(rows)
    local times = {}
    for i = 1, params.runs do
      collectgarbage()
      local t0 = os.clock()
      local text = encode(rows)
      times[i] = (os.clock() - t0) * 1000
      bytes = #text
    end
    table.sort(times)

    return {
      encoder = params.encoder, rows = #rows, bytes = bytes,
      median_ms = times[(#times + 1) // 2],
    }
  end,
}
