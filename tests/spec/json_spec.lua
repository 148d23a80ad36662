-- json_spec: the json module as a job uses it, inside a real host state:
-- events decoded, results encoded, query results passed through, decoded
-- values bound back as parameters, errors a job can read, and the run's
-- memory limit counting the text being built.

local db = require("db")
local json = require("json")
local cjson = require("cjson")

describe("an event", function()
  it("keeps integers as integers", function()
    local event = json.decode('{"detail":{"port":5432,"id":' ..
      '1026066510839283908,"ratio":0.25,"limit":100.0}}')
    check.eq(event.detail.port, 5432)
    check.eq(event.detail.id, 1026066510839283908)
    check.eq(event.detail.ratio, 0.25)
    check.eq(event.detail.limit, 100.0)
    check.eq(tostring(event.detail.port), "5432")
    check.eq(string.format("port=%d", event.detail.port), "port=5432")
  end)

  it("keeps null as the one null value, which is truthy", function()
    local event = json.decode('{"detail":{"cutoff":null}}')
    check.truthy(event.detail.cutoff == json.null, "json.null")
    check.truthy(json.null == db.null, "json.null == db.null")
    check.truthy(json.null == cjson.null, "json.null == cjson.null")
    check.truthy(event.detail.cutoff, "null is truthy")
    check.eq(event.detail.missing, nil)
  end)

  it("remembers its arrays, empty ones too", function()
    local event = json.decode('{"ids":[],"tags":["a","b"],"opts":{}}')
    check.truthy(json.is_array(event.ids), "ids is an array")
    check.truthy(json.is_array(event.tags), "tags is an array")
    check.truthy(not json.is_array(event.opts), "opts is an object")
    check.eq(json.encode(event), '{"ids":[],"opts":{},"tags":["a","b"]}')
  end)

  it("fails on malformed text with the offset, not the text", function()
    local err = check.fails(function()
      json.decode('{"password":"s3cr3t",}')
    end, "json.decode: expected a string key at offset 21")
    check.truthy(not tostring(err):find("s3cr3t", 1, true), "no secret")
    check.fails(function() json.decode("{'a':1}") end, "at offset 1")
    check.fails(function() json.decode("[1,2") end,
      "expected ',' or ']' at offset 4")
  end)
end)

describe("a result", function()
  it("writes integers with all digits and floats as floats", function()
    check.eq(json.encode({
      deleted = 1026066510839283908, big = 9007199254740993,
      min = math.mininteger, f = 2099999997690001.0, third = 1 / 3,
      whole = 3.0,
    }), '{"big":9007199254740993,"deleted":1026066510839283908,' ..
      '"f":2099999997690001.0,"min":-9223372036854775808,' ..
      '"third":0.3333333333333333,"whole":3.0}')
  end)

  it("follows one rule for sparse and mixed tables", function()
    check.eq(json.encode({[1] = "a", [3] = "c"}), '{"1":"a","3":"c"}')
    check.eq(json.encode({1, 2, x = 3}), '{"1":1,"2":2,"x":3}')
    check.eq(json.encode({}), "{}")
    check.eq(json.encode(json.array()), "[]")
    check.eq(json.encode(json.array({1, 2})), "[1,2]")
  end)

  it("names the path of what cannot be encoded", function()
    local rows = {{name = "a"}, {name = "b"}, {name = "bad\255"}}
    check.fails(function() json.encode({rows = rows}) end,
      "json.encode: $.rows[3].name: string is not valid UTF-8")
    check.fails(function() json.encode({stats = {avg = 0 / 0}}) end,
      "json.encode: $.stats.avg: NaN cannot be encoded")
    check.fails(function() json.encode({done = print}) end,
      "json.encode: $.done: a function cannot be encoded")
    local t = {}
    t.self = t
    check.fails(function() json.encode(t) end,
      "json.encode: $.self: cycle")
  end)
end)

describe("query results", function()
  it("encode with column order, exact numbers and nulls", function()
    local rows = db.connect(""):query([[
      SELECT 1026066510839283908::int8 AS id,
        12345678901234567.89::numeric AS amt,
        2099999997690001::float8 AS f, NULL::text AS note, 'x' AS tag
      UNION ALL
      SELECT 9007199254740993, 0.3, 0.5, 'n', 'y']])
    check.eq(json.encode(rows),
      '[{"id":1026066510839283908,"amt":"12345678901234567.89",' ..
      '"f":2099999997690001.0,"note":null,"tag":"x"},' ..
      '{"id":9007199254740993,"amt":"0.3","f":0.5,"note":"n","tag":"y"}]')
  end)

  it("encode no rows as [], also inside a result", function()
    local rows = db.connect(""):query("SELECT 1 AS a WHERE false")
    check.eq(json.encode({rows = rows, count = #rows}),
      '{"count":0,"rows":[]}')
  end)

  it("come back from json with the same values", function()
    local rows = db.connect(""):query([[
      SELECT g AS n, g * 1.5::float8 AS f, 'r' || g AS s
      FROM generate_series(1, 3) g]])
    local back = json.decode(json.encode(rows))
    check.eq(#back, 3)
    for i = 1, 3 do
      check.eq(back[i].n, rows[i].n)
      check.eq(back[i].f, rows[i].f)
      check.eq(back[i].s, rows[i].s)
    end
  end)

  it("take decoded values back as parameters, exactly", function()
    local v = json.decode('{"id":1026066510839283908,"port":5432,' ..
      '"big":9007199254740993,"none":null}')
    local r = db.connect(""):query([[SELECT $1::int8 AS id,
      $2::int4 AS port, $3::int8 = 9007199254740993 AS same,
      $4::text IS NULL AS none]], v.id, v.port, v.big, v.none)[1]
    check.eq(r.id, 1026066510839283908)
    check.eq(r.port, 5432)
    check.eq(r.same, true)
    check.eq(r.none, true)
  end)
end)

describe("the run's limits", function()
  it("count a text being built against the memory limit", function()
    -- The text grows in the state's own memory: 64 MB of it cannot be
    -- had under a 16 MB limit, and the run stops as out of memory.
    local ok, err, stop = spec.isolated([[
      local json = require("json")
      local chunk = string.rep("x", 1024 * 1024)
      local t = {}
      for i = 1, 64 do t[i] = chunk end
      return #json.encode(t)
    ]], {mem_limit = 16 * 1024 * 1024})
    check.truthy(not ok, "encoded 64 MB under a 16 MB limit")
    check.eq(stop, "oom")
    check.truthy(tostring(err):find("not enough memory", 1, true), err)
  end)

  it("stop at 1000 levels of nesting", function()
    local s = string.rep("[", 1000) .. string.rep("]", 1000)
    check.eq(json.encode(json.decode(s)), s)
    check.fails(function() json.decode("[" .. s .. "]") end,
      "nest deeper than 1000 levels at offset 1000")
  end)
end)
