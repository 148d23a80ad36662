-- rows: stream bench_rows through db:rows and touch every value, the
-- row-throughput benchmark.
--
-- Every column of every row is read in Lua: ids summed, numeric text and
-- timestamps measured, NULLs counted. The result is a checksum the runner
-- compares with the references', so no implementation can skip work.
return {
  description = "Stream bench_rows and checksum every value",
  timeout = 600,

  run = function(ctx)
    local db = ctx.db
    local null = db.null
    local n, id_sum, amount_len, text_len, stamps, nulls = 0, 0, 0, 0, 0, 0

    for row in db:rows([[
      SELECT id, amount, customer, created_at, note FROM bench_rows
    ]]) do
      n = n + 1
      id_sum = id_sum + row.id
      amount_len = amount_len + #row.amount
      text_len = text_len + #row.customer
      if row.created_at ~= null then
        stamps = stamps + 1
      end
      local note = row.note
      if note == null then
        nulls = nulls + 1
      else
        text_len = text_len + #note
      end
    end

    return {
      rows = n, id_sum = id_sum, amount_chars = amount_len,
      text_chars = text_len, stamps = stamps, nulls = nulls,
    }
  end,
}
