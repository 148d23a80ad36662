-- db_spec: the PostgreSQL binding against the throwaway cluster. Each case
-- is followed by the end of its run (rollback, DISCARD ALL, back to the
-- pool), as a job's run is; spec.isolated runs code in a fresh state with
-- a deadline, dry-run or read-only mode.

-- Transactions held only for their <close> are never read:
-- luacheck: ignore 211/tx 211/inner

local db = require("db")
local json = require("json")

-- The superuser over the unix socket (trust), for what the test role may
-- not do: create roles, look at other sessions.
local function admin()
  return db.connect("host=" .. os.getenv("PGSOCKETDIR") ..
    " user=postgres dbname=" .. os.getenv("PGDATABASE"))
end

-- A login role of the superuser's making, reached over the socket.
local function role_conn(name)
  return db.connect("host=" .. os.getenv("PGSOCKETDIR") .. " user=" ..
    name .. " dbname=" .. os.getenv("PGDATABASE"))
end

local function make_role(name, settings)
  local a = admin()
  a:exec("DROP ROLE IF EXISTS " .. name)
  a:exec("CREATE ROLE " .. name .. " LOGIN")
  for k, v in pairs(settings or {}) do
    a:exec(string.format("ALTER ROLE %s SET %s = %s", name, k,
      a:escape_literal(v)))
  end
  a:close()
end

local function one(c, sql, ...)
  return c:query(sql, ...)[1]
end

describe("results", function()
  it("keep int8 exact at both ends of the range", function()
    local c = db.connect("")
    local r = one(c, [[SELECT 9223372036854775807::int8 AS hi,
      (-9223372036854775808)::int8 AS lo, 1026066510839283908::int8 AS id,
      9007199254740993::int8 AS big, 7::int2 AS s, 70000::int4 AS i,
      'pg_class'::regclass::oid AS o]])
    check.eq(r.hi, math.maxinteger)
    check.eq(r.lo, math.mininteger)
    check.eq(r.id, 1026066510839283908)
    check.eq(r.big, 9007199254740993)
    check.eq(r.s, 7)
    check.eq(r.i, 70000)
    check.eq(r.o, 1259)
    check.eq(json.encode(r), '{"hi":9223372036854775807,' ..
      '"lo":-9223372036854775808,"id":1026066510839283908,' ..
      '"big":9007199254740993,"s":7,"i":70000,"o":1259}')
  end)

  it("give numeric as the server's exact text", function()
    local r = one(db.connect(""), [[SELECT
      12345678901234567.89::numeric AS amt,
      0.1::numeric + 0.2::numeric AS s, 'NaN'::numeric AS n,
      (-0.000001)::numeric(10,6) AS tiny]])
    check.eq(r, {amt = "12345678901234567.89", s = "0.3", n = "NaN",
      tiny = "-0.000001"})
  end)

  it("give floats, NaN and the infinities included", function()
    local r = one(db.connect(""), [[SELECT
      2099999997690001::float8 AS f, 0.1::float8 AS tenth,
      1.5::float4 AS half, 'NaN'::float8 AS nan,
      'Infinity'::float8 AS inf, '-Infinity'::float4 AS ninf]])
    check.eq(r.f, 2099999997690001.0)
    check.eq(r.tenth, 0.1)
    check.eq(r.half, 1.5)
    check.truthy(r.nan ~= r.nan, "NaN")
    check.eq(math.type(r.nan), "float")
    check.eq(r.inf, math.huge)
    check.eq(r.ninf, -math.huge)
  end)

  it("keep NULL columns as db.null, which is json.null", function()
    local r = db.connect(""):query(
      "SELECT 1 AS id, NULL::text AS note, 'x' AS tag")
    check.truthy(r[1].note == db.null, "note is db.null")
    check.truthy(db.null == json.null, "db.null == json.null")
    check.eq(json.encode(r), '[{"id":1,"note":null,"tag":"x"}]')
  end)

  it("encode no rows as [] and know their columns", function()
    local r = db.connect(""):query("SELECT 1 AS a, 2 AS b WHERE false")
    check.eq(#r, 0)
    check.eq(json.encode(r), "[]")
    check.eq(r.columns, {"a", "b"})
    check.truthy(json.is_array(r), "marked as an array")
  end)

  it("keep column order in rows and in json", function()
    local r = db.connect(""):query("SELECT 1 AS z, 2 AS a, 3 AS m")
    check.eq(r.columns, {"z", "a", "m"})
    check.eq(getmetatable(r[1]).__columns, {"z", "a", "m"})
    check.eq(json.encode(r[1]), '{"z":1,"a":2,"m":3}')
  end)

  it("suffix repeated column names instead of losing one", function()
    local r = db.connect(""):query(
      "SELECT 1 AS id, 2 AS id, 3 AS id_2, 4 AS id")
    check.eq(r.columns, {"id", "id_3", "id_2", "id_4"})
    check.eq(r[1], {id = 1, id_3 = 2, id_2 = 3, id_4 = 4})
  end)

  it("give arrays, json, uuid and dates as the server's text", function()
    local r = one(db.connect(""), [[SELECT
      (SELECT array_agg(x) FROM (VALUES (1),(NULL),(3)) v(x)) AS arr,
      '{"a": [1, 2]}'::jsonb AS j,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
      '2025-03-09'::date AS d, true AS t, false AS f]])
    check.eq(r, {arr = "{1,NULL,3}", j = '{"a": [1, 2]}',
      u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", d = "2025-03-09",
      t = true, f = false})
  end)

  it("give bytea as raw bytes in hex and escape output", function()
    local c = db.connect("")
    local sql = [[SELECT '\x00ff41'::bytea AS b, ''::bytea AS e,
      decode(repeat('5c', 3), 'hex') AS bs]]
    check.eq(one(c, sql), {b = "\0\255A", e = "", bs = "\\\\\\"})
    c:exec("SET bytea_output = escape")
    check.eq(one(c, sql), {b = "\0\255A", e = "", bs = "\\\\\\"})
  end)

  it("run the session in UTC whatever the role's timezone", function()
    make_role("jobhost_ny", {timezone = "America/New_York"})
    local c = role_conn("jobhost_ny")
    local r = one(c, [[SELECT '2025-03-09 07:30:00+00'::timestamptz AS t,
      current_setting('DateStyle') AS ds,
      current_setting('extra_float_digits') AS efd]])
    check.eq(r, {t = "2025-03-09 07:30:00+00", ds = "ISO, MDY", efd = "3"})
    c:exec("SET TimeZone = 'Asia/Tokyo'")
    c:exec("RESET ALL")
    check.eq(one(c, "SELECT current_setting('TimeZone') AS z").z, "UTC")
  end)

  it("offer db.null on the connection too", function()
    local c = db.connect("")
    check.truthy(c.null == db.null, "c.null")
    check.truthy(tostring(c):find("^db connection %("), tostring(c))
    c:close()
    check.eq(tostring(c), "db connection (closed)")
  end)

  it("name the job in application_name", function()
    check.eq(one(db.connect(""),
      "SELECT current_setting('application_name') AS a").a, "jobhost/spec")
  end)
end)

describe("parameters", function()
  it("bind nil in the middle, db.null, booleans and numbers", function()
    local r = one(db.connect(""), [[SELECT $1::int8 AS a, $2::text AS b,
      $3::text AS c, $4::bool AS d, $5::bool AS e, $6::float8 AS f,
      $7::int8 AS g]], 1026066510839283908, nil, db.null, true, false,
      0.1, math.mininteger)
    check.eq(r.a, 1026066510839283908)
    check.truthy(r.b == db.null and r.c == db.null, "NULLs")
    check.eq(r.d, true)
    check.eq(r.e, false)
    check.eq(r.f, 0.1)
    check.eq(r.g, math.mininteger)
  end)

  it("send floats as the shortest text that reads back the same", function()
    local r = one(db.connect(""), [[SELECT $1::text AS a, $2::text AS b,
      $3::text AS c, $4::float8 = 'NaN' AS nan, $5::float8 AS inf,
      $6::float8 AS ninf, $7::text AS big]], 0.1, 1 / 3, 2.0, 0 / 0,
      math.huge, -math.huge, 2099999997690001.0)
    check.eq(r.a, "0.1")
    check.eq(r.b, "0.3333333333333333")
    check.eq(r.c, "2")
    check.eq(r.nan, true)
    check.eq(r.inf, math.huge)
    check.eq(r.ninf, -math.huge)
    check.eq(r.big, "2099999997690001")
  end)

  it("send strings as they are", function()
    local s = "it's \"quoted\" \\ and ünïcode; DROP TABLE x; --"
    check.eq(one(db.connect(""), "SELECT $1::text AS s", s).s, s)
  end)

  it("send a parameter bigger than libpq's buffers", function()
    local big = string.rep("abcdefgh", 2 * 1024 * 1024)
    local r = one(db.connect(""), "SELECT length($1) AS n, md5($1) AS h",
      big)
    check.eq(r.n, #big)
    check.eq(r.h, one(db.connect(""),
      "SELECT md5(repeat('abcdefgh', 2 * 1024 * 1024)) AS h").h)
  end)

  it("refuse a string with NUL, a table or a function, by number", function()
    local c = db.connect("")
    check.fails(function() c:query("SELECT $1, $2", "a", "b\0c") end,
      "parameter $2")
    check.fails(function() c:exec("SELECT $1", {1, 2}) end,
      "parameter $1: cannot bind a table")
    check.fails(function() c:exec("SELECT $1, $2", 1, print) end,
      "parameter $2: cannot bind a function")
    check.eq(one(c, "SELECT 1 AS ok").ok, 1)
  end)
end)

describe("exec", function()
  it("returns affected rows as an integer, 0 when none", function()
    local c = db.connect("")
    check.eq(c:exec("CREATE TEMP TABLE t (id int)"), 0)
    check.eq(c:exec("INSERT INTO t SELECT generate_series(1, 5)"), 5)
    check.eq(c:exec("UPDATE t SET id = id + 1 WHERE id > $1", 2), 3)
    check.eq(c:exec("DELETE FROM t"), 5)
  end)
end)

describe("errors", function()
  it("carry SQLSTATE, severity and position", function()
    local c = db.connect("")
    local err = check.fails(function() c:query("SELEC 1") end,
      "Database.Error [42601]")
    check.eq(err.type, "Database.Error")
    check.eq(err.sqlstate, "42601")
    check.eq(err.severity, "ERROR")
    check.eq(err.position, 1)
    check.truthy(err.message:find("syntax error"), err.message)
    check.eq(one(c, "SELECT 2 AS ok").ok, 2)
  end)

  it("of a statement without its values or of two statements say why",
    function()
      local c = db.connect("")
      local err = check.fails(function() c:query("SELECT $1::int AS x") end,
        "Database.Error [08P01]")
      check.truthy(err.message:find("no values came with the statement",
        1, true), err.message)
      err = check.fails(function() c:exec("SET a.b = 1; SET a.c = 2") end,
        "Database.Error [42601]")
      check.truthy(err.message:find("take one statement a call", 1, true),
        err.message)
      -- Other errors keep the server's words alone.
      err = check.fails(function() c:query("SELEC 1") end, "42601")
      check.eq(err.message:find("one statement", 1, true), nil)
      check.eq(one(c, "SELECT 3 AS ok").ok, 3)
    end)

  it("of a foreign key carry constraint, table and detail", function()
    local c = db.connect("")
    c:exec("DROP TABLE IF EXISTS fk_child, fk_parent")
    c:exec("CREATE TABLE fk_parent (id int PRIMARY KEY)")
    c:exec([[CREATE TABLE fk_child (id int PRIMARY KEY,
      parent int REFERENCES fk_parent)]])
    c:exec("INSERT INTO fk_parent VALUES (1), (2)")
    c:exec("INSERT INTO fk_child VALUES (10, 1)")
    local err = check.fails(function()
      c:exec("DELETE FROM fk_parent WHERE id = $1", 1)
    end, "[23503]")
    check.eq(err.sqlstate, "23503")
    check.eq(err.constraint, "fk_child_parent_fkey")
    check.eq(err.table, "fk_child")
    check.eq(err.schema, "public")
    check.truthy(err.detail:find("still referenced"), err.detail)
  end)

  it("fail a job's transaction and leave nothing of it", function()
    -- fk_* from the case above.
    local ok, msg = spec.isolated([[
      local c = require("db").connect("")
      local tx <close> = c:begin()
      c:exec("DELETE FROM fk_child WHERE id = 10")
      c:exec("INSERT INTO fk_parent VALUES (3)")
      c:exec("INSERT INTO fk_child VALUES (11, 2)")
      c:exec("DELETE FROM fk_parent WHERE id = 2")
      tx:commit()
    ]])
    check.eq(ok, false)
    check.truthy(msg:find("[23503]", 1, true), msg)
    local c = db.connect("")
    check.eq(one(c, "SELECT count(*) AS n FROM fk_parent").n, 2)
    check.eq(c:query("SELECT id FROM fk_child"), {{id = 10}})
    c:exec("DROP TABLE fk_child, fk_parent")
  end)

  it("of a missing secret name the secret", function()
    local err = check.fails(function()
      db.connect("no/such-secret")
    end, "no/such-secret")
    check.truthy(err.type:find("^Secrets%."), err.type)
  end)

  it("name misuse plainly", function()
    local c = db.connect("")
    check.fails(function() c:query() end, "bad argument #1 to 'query'")
    check.fails(function() c.query(42, "SELECT 1") end,
      "jobhost.db.connection expected")
    c:close()
    check.fails(function() c:query("SELECT 1") end, "connection closed")
    c:close()
  end)
end)

describe("rows", function()
  it("streams every row", function()
    local n, sum = 0, 0
    for row in db.connect(""):rows(
      "SELECT g, g * $1 AS twice FROM generate_series(1, 10000) g", 2) do
      n = n + 1
      sum = sum + row.twice
    end
    check.eq(n, 10000)
    check.eq(sum, 10000 * 10001)
  end)

  it("gives rows with their columns and the types mapped", function()
    local got = {}
    for row in db.connect(""):rows([[SELECT 1::int8 AS id,
      NULL::text AS note, 0.5::numeric AS n]]) do
      got[#got + 1] = json.encode(row)
    end
    check.eq(got, {'{"id":1,"note":null,"n":"0.5"}'})
  end)

  it("cancels the rest on break; the connection goes on", function()
    local c = db.connect("")
    local n = 0
    for row in c:rows("SELECT generate_series(1, 100000000) AS g") do
      n = row.g
      if n == 3 then
        break
      end
    end
    check.eq(n, 3)
    check.eq(one(c, "SELECT 4 AS x").x, 4)
  end)

  it("keeps a transaction usable after a break", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE tb (id int)")
    local tx <close> = c:begin()
    c:exec("INSERT INTO tb VALUES (1)")
    for row in c:rows("SELECT generate_series(1, 1000000) AS g") do
      if row.g == 1 then
        break
      end
    end
    c:exec("INSERT INTO tb VALUES (2)")
    tx:commit()
    check.eq(c:query("SELECT id FROM tb ORDER BY id"), {{id = 1}, {id = 2}})
  end)

  it("cancels an abandoned stream before the next statement", function()
    local c = db.connect("")
    local next_row, state = c:rows(
      "SELECT generate_series(1, 100000000) AS g")
    check.eq(next_row(state).g, 1)
    check.eq(one(c, "SELECT 5 AS x").x, 5)
    check.fails(function() next_row(state) end, "stream was closed")
  end)

  it("raises an error that comes after some rows", function()
    local c = db.connect("")
    local seen = 0
    local err = check.fails(function()
      for _ in c:rows("SELECT 1 / (5 - g) FROM generate_series(1, 9) g") do
        seen = seen + 1
      end
    end, "[22012]")
    check.eq(err.sqlstate, "22012")
    check.truthy(seen < 5, "rows before the error")
    check.eq(one(c, "SELECT 6 AS x").x, 6)
  end)

  -- Whether the connection sits in a transaction or holds a cursor, as
  -- another session sees it.
  local function in_transaction(c)
    local pid = one(c, "SELECT pg_backend_pid() AS pid").pid
    local a = admin()
    local state = one(a, "SELECT state FROM pg_stat_activity WHERE pid = $1",
      pid).state
    a:close()
    check.eq(one(c, [[SELECT count(*) AS n FROM pg_cursors
      WHERE name = 'jobhost_rows']]).n, 0)
    return state ~= "idle"
  end

  it("streams across many batches and leaves no transaction open",
    function()
      local c = db.connect("")
      local n, sum = 0, 0
      for row in c:rows([[SELECT g, repeat('w', g % 300) AS w
          FROM generate_series(1, 50000) g]]) do
        n = n + 1
        sum = sum + row.g + #row.w
      end
      check.eq(n, 50000)
      local expect = 50000 * 50001 // 2
      for g = 1, 50000 do expect = expect + g % 300 end
      check.eq(sum, expect)
      check.eq(in_transaction(c), false)
      -- The cursor's name is free again, in and out of a transaction.
      for _ = 1, 2 do
        local k = 0
        for _ in c:rows("VALUES (1), (2)") do k = k + 1 end
        check.eq(k, 2)
      end
      local tx <close> = c:begin()
      for _ = 1, 2 do
        local k = 0
        for _ in c:rows("TABLE pg_am") do k = k + 1 end
        check.truthy(k > 0, "rows of pg_am")
      end
      tx:commit()
    end)

  it("leaves no transaction open after a break or an error", function()
    local c = db.connect("")
    for row in c:rows("SELECT generate_series(1, 1000000) AS g") do
      if row.g == 250 then break end
    end
    check.eq(in_transaction(c), false)
    local seen = 0
    local err = check.fails(function()
      for _ in c:rows([[SELECT 1 / (20000 - g) AS x
          FROM generate_series(1, 30000) g]]) do
        seen = seen + 1
      end
    end, "[22012]")
    check.eq(err.sqlstate, "22012")
    check.truthy(seen >= 100 and seen < 20000, "rows before: " .. seen)
    check.eq(in_transaction(c), false)
    check.eq(one(c, "SELECT 8 AS x").x, 8)
  end)

  it("streams what a cursor cannot run, as written", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE tw (id int)")
    local ids = {}
    for row in c:rows([[WITH ins AS (INSERT INTO tw SELECT g
        FROM generate_series(1, 3) g RETURNING id) SELECT id FROM ins
        ORDER BY id]]) do
      ids[#ids + 1] = row.id
    end
    check.eq(ids, {1, 2, 3})
    ids = {}
    for row in c:rows("INSERT INTO tw VALUES (4), (5) RETURNING id") do
      ids[#ids + 1] = row.id
    end
    check.eq(ids, {4, 5})
    for _ in c:rows("SELECT id INTO TEMP tw_copy FROM tw") do
      error("SELECT INTO gives no rows")
    end
    check.eq(one(c, "SELECT count(*) AS n FROM tw_copy").n, 5)
    local err = check.fails(function()
      for _ in c:rows("SELECT nope FROM tw") do end
    end, "[42703]")
    check.eq(err.position, 8)
    check.eq(in_transaction(c), false)
  end)

  it("keeps a job's transaction and its row locks across a stream",
    function()
      local c = db.connect("")
      c:exec("CREATE TEMP TABLE tl (id int)")
      c:exec("INSERT INTO tl SELECT generate_series(1, 1000)")
      local tx <close> = c:begin()
      local n = 0
      for _ in c:rows("SELECT id FROM tl FOR UPDATE") do n = n + 1 end
      check.eq(n, 1000)
      check.eq(one(c, [[SELECT count(*) AS n FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'transactionid'
        AND mode = 'ExclusiveLock']]).n, 1)
      -- A statement in the middle of a stream ends only the stream.
      c:exec("INSERT INTO tl VALUES (0)")
      local next_row, state = c:rows("SELECT id FROM tl ORDER BY id")
      check.eq(next_row(state).id, 0)
      c:exec("INSERT INTO tl VALUES (-1)")
      check.fails(function() next_row(state) end, "stream was closed")
      tx:commit()
      check.eq(one(c, "SELECT count(*) AS n FROM tl").n, 1002)
    end)

  it("refuses a COPY in rows and exec, and the connection goes on",
    function()
      local c = db.connect("")
      check.fails(function()
        for _ in c:rows("COPY (SELECT 1) TO STDOUT") do end
      end, "use db:copy_out or db:copy_in")
      check.fails(function() c:exec("COPY (SELECT 1) TO STDOUT") end,
        "use db:copy_out or db:copy_in")
      check.eq(one(c, "SELECT 11 AS x").x, 11)
    end)

  it("cancels the stream when the loop body fails", function()
    local c = db.connect("")
    check.fails(function()
      for _ in c:rows("SELECT generate_series(1, 100000000) AS g") do
        error("boom")
      end
    end, "boom")
    check.eq(one(c, "SELECT 7 AS x").x, 7)
  end)
end)

describe("transactions", function()
  it("commit, roll back, and roll back on <close>", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE tt (id int)")
    do
      local tx <close> = c:begin()
      c:exec("INSERT INTO tt VALUES (1)")
      tx:commit()
    end
    do
      local tx = c:begin()
      c:exec("INSERT INTO tt VALUES (2)")
      tx:rollback()
    end
    do
      local tx <close> = c:begin()
      c:exec("INSERT INTO tt VALUES (3)")
    end
    check.fails(function()
      local tx <close> = c:begin()
      c:exec("INSERT INTO tt VALUES (4)")
      error("midway")
    end, "midway")
    check.eq(c:query("SELECT id FROM tt"), {{id = 1}})
  end)

  it("nest as savepoints", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE ts (id int)")
    local outer <close> = c:begin()
    c:exec("INSERT INTO ts VALUES (1)")
    do
      local inner <close> = c:begin()
      c:exec("INSERT INTO ts VALUES (2)")
      check.fails(function() c:exec("INSERT INTO ts VALUES ('x')") end,
        "[22P02]")
    end
    do
      local inner <close> = c:begin()
      c:exec("INSERT INTO ts VALUES (3)")
      inner:commit()
    end
    check.fails(function()
      local inner <close> = c:begin()
      outer:commit()
    end, "inner transaction still open")
    outer:commit()
    check.eq(c:query("SELECT id FROM ts ORDER BY id"), {{id = 1}, {id = 3}})
  end)

  it("refuse to pass a failed transaction off as committed", function()
    local c = db.connect("")
    local tx <close> = c:begin()
    pcall(c.exec, c, "SELECT 1/0")
    local err = check.fails(function() tx:commit() end, "rolled back")
    check.eq(err.sqlstate, "25P02")
    check.fails(function() tx:commit() end, "already finished")
  end)
end)

describe("prepare", function()
  it("runs a prepared statement with query, exec and rows", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE tp (id int8, name text)")
    local ins = c:prepare("ins", "INSERT INTO tp VALUES ($1, $2)")
    for i = 1, 50 do
      check.eq(ins:exec(i, "n" .. i), 1)
    end
    local sel = c:prepare("sel", "SELECT id, name FROM tp WHERE id <= $1")
    check.eq(#sel:query(10), 10)
    local n = 0
    for row in sel:rows(20) do
      n = n + 1
      check.eq(row.name, "n" .. row.id)
    end
    check.eq(n, 20)
    check.eq(ins:name(), "ins")
    spec.end_run()
    check.fails(function() sel:query(1) end, "connection closed")
  end)

  it("reports a bad statement at prepare time", function()
    local err = check.fails(function()
      db.connect(""):prepare("bad", "SELECT FROM nowhere_at_all")
    end, "[42P01]")
    check.eq(err.sqlstate, "42P01")
  end)
end)

describe("copy", function()
  it("round-trips a table through copy_out and copy_in", function()
    local c = db.connect("")
    c:exec([[CREATE TEMP TABLE src AS SELECT g AS id, md5(g::text) AS h,
      CASE WHEN g % 7 = 0 THEN NULL ELSE 'tab	and
newline' END AS t FROM generate_series(1, 20000) g]])
    c:exec("CREATE TEMP TABLE dst (LIKE src)")
    local chunks = {}
    local rows = c:copy_out("COPY src TO STDOUT", function(chunk)
      check.truthy(#chunk <= 65536 + 200, "chunk size " .. #chunk)
      chunks[#chunks + 1] = chunk
    end)
    check.eq(rows, 20000)
    check.truthy(#chunks > 1, "several chunks")
    check.eq(c:copy_in("COPY dst FROM STDIN", chunks), 20000)
    local i = 0
    check.eq(c:copy_in("COPY dst FROM STDIN", function()
      i = i + 1
      return chunks[i]
    end), 20000)
    check.eq(one(c, [[SELECT count(*) AS n FROM (SELECT * FROM dst
      EXCEPT ALL (SELECT * FROM src UNION ALL SELECT * FROM src)) d]]).n, 0)
    check.eq(one(c, "SELECT count(*) AS n FROM dst").n, 40000)
  end)

  it("stops a copy_out whose callback fails", function()
    local c = db.connect("")
    local calls = 0
    check.fails(function()
      c:copy_out("COPY (SELECT generate_series(1, 50000000)) TO STDOUT",
        function() calls = calls + 1; error("disk full") end)
    end, "disk full")
    check.eq(calls, 1)
    check.eq(one(c, "SELECT 8 AS x").x, 8)
  end)

  it("aborts a copy_in whose source fails; nothing is loaded", function()
    local c = db.connect("")
    c:exec("CREATE TEMP TABLE ci (id int)")
    local n = 0
    check.fails(function()
      c:copy_in("COPY ci FROM STDIN", function()
        n = n + 1
        if n > 3 then error("source broke") end
        return n .. "\n"
      end)
    end, "source broke")
    check.eq(one(c, "SELECT count(*) AS n FROM ci").n, 0)
    local err = check.fails(function()
      c:copy_in("COPY ci FROM STDIN", {"1\n", "x\n"})
    end, "[22P02]")
    check.eq(err.sqlstate, "22P02")
    check.fails(function() c:copy_in("COPY ci FROM STDIN", {"1\n", 2}) end,
      "chunk 2 is a number")
    check.eq(c:copy_in("COPY ci FROM STDIN", {"1\n2\n"}), 2)
    check.fails(function() c:copy_out("SELECT 1", print) end,
      "not a COPY TO STDOUT")
    check.eq(one(c, "SELECT count(*) AS n FROM ci").n, 2)
  end)
end)

describe("escaping", function()
  it("quotes literals and identifiers", function()
    local c = db.connect("")
    check.eq(c:escape_literal("it's"), "'it''s'")
    check.eq(c:escape_identifier('we"ird'), '"we""ird"')
    local sql = "SELECT " .. c:escape_literal("a'b\\c") .. " AS " ..
      c:escape_identifier("Col x")
    check.eq(c:query(sql)[1]["Col x"], "a'b\\c")
    check.fails(function() c:escape_literal("a\0b") end, "NUL")
  end)
end)

describe("the pool", function()
  it("reuses a connection across runs and resets it", function()
    local c = db.connect("")
    local pid = one(c, "SELECT pg_backend_pid() AS p").p
    c:exec("SET work_mem = '7MB'")
    c:exec("CREATE TEMP TABLE leftover (id int)")
    c:exec("SELECT pg_advisory_lock(4242)")
    c:prepare("kept", "SELECT 1")
    c:exec("BEGIN")
    c:exec("CREATE TABLE half_done (id int)")
    spec.end_run()
    check.fails(function() c:query("SELECT 1") end, "connection closed")

    local d = db.connect("")
    local r = one(d, [[SELECT pg_backend_pid() AS p,
      current_setting('work_mem') AS wm,
      to_regclass('leftover') IS NULL AS no_temp,
      to_regclass('half_done') IS NULL AS no_table,
      (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
        AND pid = pg_backend_pid()) AS locks,
      (SELECT count(*) FROM pg_prepared_statements) AS prepared]])
    check.eq(r.p, pid)
    check.truthy(r.wm ~= "7MB", "work_mem reset")
    check.eq(r.no_temp, true)
    check.eq(r.no_table, true)
    check.eq(r.locks, 0)
    check.eq(r.prepared, 0)
  end)

  it("gives a second connect in one run its own connection", function()
    local a, b = db.connect(""), db.connect("")
    check.truthy(one(a, "SELECT pg_backend_pid() AS p").p ~=
      one(b, "SELECT pg_backend_pid() AS p").p, "two backends")
  end)

  it("reconnects when the server ended a kept connection", function()
    local pid = one(db.connect(""), "SELECT pg_backend_pid() AS p").p
    spec.end_run()
    local a = admin()
    check.eq(one(a, "SELECT pg_terminate_backend($1) AS t", pid).t, true)
    a:close()
    local c = db.connect("")
    local r = one(c, "SELECT pg_backend_pid() AS p, 1 AS ok")
    check.truthy(r.p ~= pid, "a new backend")
    check.eq(r.ok, 1)
  end)
end)

describe("a lost connection", function()
  it("raises Database.ConnectionError and stays closed", function()
    local a, b = db.connect(""), db.connect("")
    local pid = one(b, "SELECT pg_backend_pid() AS p").p
    check.eq(one(a, "SELECT pg_terminate_backend($1) AS t", pid).t, true)
    local err = check.fails(function() b:query("SELECT 1") end,
      "Database.ConnectionError")
    check.eq(err.type, "Database.ConnectionError")
    check.fails(function() b:query("SELECT 1") end, "ConnectionError")
    check.eq(one(a, "SELECT 1 AS ok").ok, 1)
  end)
end)

describe("deadlines", function()
  it("cancel a running statement and fail the run with the timeout", function()
    local t0 = os.time()
    local ok, msg, stop = spec.isolated([[
      local c = require("db").connect("")
      c:exec("CREATE TABLE IF NOT EXISTS dl (id int)")
      local tx <close> = c:begin()
      c:exec("INSERT INTO dl VALUES (1)")
      local ok = pcall(c.exec, c, "SELECT pg_sleep(30)")
      return "swallowed: " .. tostring(ok)
    ]], {deadline_ms = 2500})
    check.eq(ok, false)
    check.eq(stop, "timeout")
    check.truthy(msg:find("deadline"), msg)
    check.truthy(os.time() - t0 < 10, "stopped in time")
    local c = db.connect("")
    check.eq(one(c, "SELECT count(*) AS n FROM dl").n, 0)
    c:exec("DROP TABLE dl")
  end)

  it("stop a slow stream and a slow COPY with the timeout", function()
    for _, code in ipairs({[=[
      local c = require("db").connect("")
      for _ in c:rows([[SELECT g, pg_sleep(CASE WHEN g = 3 THEN 20 ELSE 0
          END) FROM generate_series(1, 5) g]]) do
      end
    ]=], [=[
      local c = require("db").connect("")
      c:copy_out("COPY (SELECT pg_sleep(20)) TO STDOUT", print)
    ]=]}) do
      local t0 = os.time()
      local ok, msg, stop = spec.isolated(code, {deadline_ms = 2500})
      check.eq(ok, false)
      check.eq(stop, "timeout")
      check.truthy(msg:find("deadline"), msg)
      check.truthy(os.time() - t0 < 10, "stopped in time")
    end
    check.eq(one(db.connect(""), "SELECT 9 AS x").x, 9)
  end)

  it("cap statement_timeout below the deadline, never above the role's",
    function()
      local ok, v = spec.isolated([[
        return require("db").connect(""):query(
          "SELECT current_setting('statement_timeout') AS s")[1].s
      ]], {deadline_ms = 60000})
      check.truthy(ok, v)
      local s = tonumber(v:match("^(%d+)s$") or v:match("^(%d+)ms$"))
      check.truthy(v:match("^%d+s$") and s >= 55 and s <= 59 or
        v:match("^%d+ms$") and s >= 55000 and s <= 59000, v)

      make_role("jobhost_short", {statement_timeout = "250ms"})
      local ok2, v2 = spec.isolated([[
        local c = require("db").connect("host=" .. os.getenv("PGSOCKETDIR")
          .. " user=jobhost_short dbname=" .. os.getenv("PGDATABASE"))
        return c:query("SELECT current_setting('statement_timeout') AS s")[1].s
      ]], {deadline_ms = 60000})
      check.truthy(ok2, v2)
      check.eq(v2, "250ms")

      -- The role's own timeout striking near the deadline is the
      -- database's error, not the run's timeout.
      local ok4, msg4, stop4 = spec.isolated([[
        local c = require("db").connect("host=" .. os.getenv("PGSOCKETDIR")
          .. " user=jobhost_short dbname=" .. os.getenv("PGDATABASE"))
        local ok, err = pcall(c.query, c, "SELECT pg_sleep(0.5)")
        return tostring(ok) .. " " .. tostring(err.sqlstate) .. " "
          .. tostring(err.type)
      ]], {deadline_ms = 1000})
      check.truthy(ok4, msg4)
      check.eq(stop4, nil)
      check.eq(msg4, "false 57014 Database.Error")

      -- A role's timeout longer than the deadline allows is lowered.
      for i, long in ipairs({"1h", "90s", "3600001ms"}) do
        make_role("jobhost_long" .. i, {statement_timeout = long})
        local ok3, v3 = spec.isolated([[
          local c = require("db").connect("host=" .. os.getenv("PGSOCKETDIR")
            .. " user=jobhost_long]] .. i .. [[ dbname="
            .. os.getenv("PGDATABASE"))
          return c:query("SELECT setting FROM pg_settings"
            .. " WHERE name = 'statement_timeout'")[1].setting
        ]], {deadline_ms = 60000})
        check.truthy(ok3, v3)
        local ms = tonumber(v3)
        check.truthy(ms and ms >= 55000 and ms <= 59000, long .. " -> " ..
          tostring(v3))
      end
    end)
end)

describe("run modes", function()
  it("dry run rolls back everything, the job's commits too", function()
    local c = db.connect("")
    c:exec("CREATE TABLE IF NOT EXISTS dry (id int)")
    c:exec("TRUNCATE dry")
    c:exec("INSERT INTO dry VALUES (1)")
    local ok, msg = spec.isolated([[
      local c = require("db").connect("")
      c:exec("DELETE FROM dry")
      local tx = c:begin()
      c:exec("INSERT INTO dry VALUES (2)")
      tx:commit()
      for _ in c:rows("SELECT * FROM dry") do break end
      assert(not pcall(c.exec, c, "COMMIT"))
      assert(not pcall(c.exec, c, " /* x */ rollback"))
      return c:query("SELECT count(*) AS n FROM dry")[1].n
    ]], {dry_run = true})
    check.truthy(ok, msg)
    check.eq(msg, "1")
    check.eq(c:query("SELECT id FROM dry"), {{id = 1}})
    c:exec("DROP TABLE dry")
  end)

  it("read-only runs cannot write", function()
    local ok, msg = spec.isolated([[
      require("db").connect(""):exec("CREATE TABLE ro_x (id int)")
    ]], {read_only = true})
    check.eq(ok, false)
    check.truthy(msg:find("[25006]", 1, true), msg)
  end)
end)

describe("connecting", function()
  it("fails authentication without showing the password", function()
    local password = "p@ss word/'\\#"
    local err = check.fails(function()
      db.connect(string.format(
        "host=%s port=%s user=jobhost dbname=%s password=%s",
        os.getenv("PGHOST"), os.getenv("PGPORT"), os.getenv("PGDATABASE"),
        "'p@ss word/\\'\\\\#'"))
    end, "Database.AuthFailed")
    check.eq(err.sqlstate, "28P01")
    check.truthy(not tostring(err):find(password, 1, true), "no password")
  end)

  it("does not echo a connection string it cannot parse", function()
    local err = check.fails(function()
      db.connect("host=localhost password hunter2secret")
    end, "invalid connection string")
    check.truthy(not tostring(err):find("hunter2"), tostring(err))
  end)

  it("names an unknown option, never the values around it", function()
    local err = check.fails(function()
      db.connect("host=localhost password=hunter2secret bogus=1")
    end, 'unknown option "bogus"')
    check.truthy(not tostring(err):find("hunter2"), tostring(err))
  end)

  it("connects with a URI", function()
    local c = db.connect(string.format("postgresql://%s:%s/%s?user=jobhost",
      os.getenv("PGHOST"), os.getenv("PGPORT"), os.getenv("PGDATABASE")))
    check.eq(one(c, "SELECT current_user AS u").u, "jobhost")
  end)
end)
