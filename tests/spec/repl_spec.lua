-- repl_spec: lua/repl.lua inside a real host state: how the REPL shows
-- values and query results, how it rewrites an input's `local`s, and what
-- Tab offers.
local repl = require "repl"
local json = require "json"

describe("repl.show", function()
  it("writes numbers so they read back the same", function()
    check.eq(repl.show(1, math.maxinteger), "9223372036854775807")
    check.eq(repl.show(1, 0.1), "0.1")
    check.eq(repl.show(1, 1 / 3), "0.3333333333333333")
    check.eq(repl.show(1, 2.0), "2.0")
    check.eq(repl.show(1, 1e300), "1e+300")
    check.eq(repl.show(1, 0 / 0), "NaN")
    check.eq(repl.show(1, -math.huge), "-Infinity")
  end)

  it("quotes strings and shows bytes that are not UTF-8", function()
    check.eq(repl.show(1, 'a "b"\n\tc'), '"a \\"b\\"\\n\\tc"')
    check.eq(repl.show(1, "é\xff!"), '"é\\xff!"')
    check.eq(repl.show(1, "\1"), '"\\u0001"')
  end)

  it("shows several values on lines of their own", function()
    check.eq(repl.show(3, 1, nil, "x"), '1\nnil\n"x"')
  end)

  it("splits a table that does not fit on one line", function()
    local t = { name = string.rep("n", 40), list = { 1, 2, 3 },
                more = string.rep("m", 30) }
    check.eq(repl.show(1, t), '{\n  "list": [1, 2, 3],\n  "more": "'
      .. string.rep("m", 30) .. '",\n  "name": "' .. string.rep("n", 40)
      .. '"\n}')
  end)

  it("marks cycles, cuts long tables and deep nesting", function()
    local t = {}
    t.self = t
    check.eq(repl.show(1, t), '{"self": <cycle>}')
    local long = {}
    for i = 1, 150 do
      long[i] = i
    end
    check.truthy(repl.show(1, long):find("… 50 more", 1, true))
    local deep = {}
    local at = deep
    for _ = 1, 20 do
      at.next = {}
      at = at.next
    end
    check.truthy(repl.show(1, deep):find("{…}", 1, true))
  end)

  it("shows an empty marked array as [] and other keys in brackets",
    function()
      check.eq(repl.show(1, json.array({})), "[]")
      check.eq(repl.show(1, {}), "{}")
      check.eq(repl.show(1, { [1] = "a", [3] = "c" }), '{[1]: "a", [3]: "c"}')
    end)

  it("hides values whose key names a secret", function()
    check.eq(repl.show(1, { Password = "p", api_token = 7, secret_id = "s",
                            user = "u" }),
      '{"Password": "***", "api_token": "***", "secret_id": "***", '
      .. '"user": "u"}')
  end)

  it("keeps the first value in _", function()
    repl.show(2, "first", "second")
    check.eq(_G._, "first")
  end)
end)

describe("repl.rows", function()
  local function result(columns, rows)
    local r = json.array(rows)
    return setmetatable(r, { __index = { columns = columns } })
  end

  it("aligns numbers right and text left, NULL as ∅", function()
    local r = result({ "n", "label" }, {
      { n = 5, label = "five" }, { n = 120, label = json.null },
      { n = json.null, label = "" } })
    check.eq(repl.rows(r), table.concat({
      "  n  | label",
      "-----+-------",
      "   5 | five",
      " 120 | ∅",
      " ∅   |",
      "(3 rows)" }, "\n"))
  end)

  it("counts one row in the singular", function()
    check.eq(repl.rows(result({ "a" }, { { a = "x" } })),
      " a\n---\n x\n(1 row)")
  end)

  it("cuts a long cell", function()
    repl.cell_width = 10
    local shown = repl.rows(result({ "t" }, { { t = string.rep("é", 30) } }))
    repl.cell_width = 60
    check.eq(shown:match("\n ([^\n]*)\n%(1 row%)$"),
      string.rep("é", 9) .. "…")
  end)

  it("is used for a query result and not for other arrays", function()
    check.truthy(repl.show(1, result({ "a" }, {})):find("(0 rows)", 1,
                                                         true))
    check.eq(repl.show(1, { { a = 1 } }), '[{"a": 1}]')
  end)
end)

describe("repl.compile", function()
  it("returns an expression's value", function()
    check.eq(repl.compile("1 + 1")(), 2)
  end)

  it("keeps a leading local for the session", function()
    repl.compile("local spec_z = 3")()
    check.eq(_G.spec_z, 3)
    _G.spec_z = nil
  end)

  it("keeps a <const> local's check and refuses a <close> one", function()
    local fn, err, more = repl.compile("local k <const> = 1 k = 2")
    check.eq({ fn, more }, { nil, false })
    check.truthy(err:find("const variable 'k'", 1, true), err)
    fn, err, more = repl.compile("local c <close> = nil")
    check.eq({ fn, more }, { nil, false })
    check.truthy(err:find("'c' is <close>", 1, true), err)
  end)

  it("tells an unfinished input from a wrong one", function()
    local fn, err, more = repl.compile("1 +")
    check.eq({ fn, type(err), more }, { nil, "string", true })
    fn, err, more = repl.compile("for i = 1, 2 do")
    check.eq({ fn, type(err), more }, { nil, "string", true })
    fn, err, more = repl.compile("x = = 1")
    check.eq({ fn, more }, { nil, false })
    check.truthy(err:find("near '='", 1, true))
  end)
end)

describe("repl.promote_locals", function()
  local cases = {
    { "local x = 1", "x = 1" },
    { "  local a, b = 1, 2", "  a, b = 1, 2" },
    { "local function f() end", "function f() end" },
    { "local x", "x = nil;" },
    { "local x print(x)", "x = nil; print(x)" },
    { "local y <const> = 5", "y = 5" },
    { "local a <const>, b = 1, 2", "a, b = 1, 2" },
    { 'local s = "a" local t = 2', 's = "a" t = 2' },
    { "print(1) local y = 2", "print(1) y = 2" },
    { "locale = 1", "locale = 1" },
    { "local\nx\n= 1", "x \n\n= 1" },
    { "do local z = 1 end local w = 2", "do local z = 1 end w = 2" },
    { "function f()\n  local q = 1\nend\nlocal r = 'local s'",
      "function f()\n  local q = 1\nend\nr = 'local s'" },
    { "local g = function() local h end local k",
      "g = function() local h end k = nil;" },
    { "if a then local b = 1 elseif c then local d = 2 else local e end"
      .. " local f = 3",
      "if a then local b = 1 elseif c then local d = 2 else local e end"
      .. " f = 3" },
    { "repeat local u = 1 until u local v", "repeat local u = 1 until u"
      .. " v = nil;" },
    { "for i = 1, 2 do local j = i end local n = 0x1p-4 + 1e-5 local m",
      "for i = 1, 2 do local j = i end n = 0x1p-4 + 1e-5 m = nil;" },
    { "-- local a\nlocal b = [==[\nlocal c]]end]==] --[[ local ]] local d",
      "-- local a\nb = [==[\nlocal c]]end]==] --[[ local ]] d = nil;" },
    { "local e = 'it\\'s local' .. \"end\" local f",
      "e = 'it\\'s local' .. \"end\" f = nil;" },
  }
  for _, c in ipairs(cases) do
    it("rewrites " .. c[1], function()
      check.eq(repl.promote_locals(c[1]), c[2])
    end)
  end

  it("refuses a <close> local, naming it and its line", function()
    local code, why = repl.promote_locals("x = 1\nlocal a, c <close> = 1")
    check.eq(code, nil)
    check.truthy(why:find("^input:2: 'c' is <close>"), why)
    check.eq(repl.promote_locals("do local c <close> = nil end"),
      "do local c <close> = nil end")
  end)
end)

describe("repl.complete", function()
  it("offers globals, fields and methods without running metamethods",
    function()
      _G.spec_probe = setmetatable({ alpha = 1, alps = { deep = true } }, {
        __index = function() error("ran a metamethod") end })
      check.eq(repl.complete("spec_pro"), { "spec_probe" })
      check.eq(repl.complete("spec_probe.al"),
        { "spec_probe.alpha", "spec_probe.alps" })
      check.eq(repl.complete("spec_probe.alps.d"), { "spec_probe.alps.deep" })
      check.eq(repl.complete("spec_probe.missing.x"), {})
      check.eq(repl.complete("string.up"), { "string.upper" })
      check.eq(repl.complete("string:up"), { "string:upper" })
      check.eq(repl.complete("1 +"), {})
      _G.spec_probe = nil
    end)
end)

describe("repl.jobs_table", function()
  it("offers the jobs' names to Tab without loading any", function()
    local listed = 0
    local saved = repl.jobs_of
    repl.jobs_of = function()
      listed = listed + 1
      return { { name = "purge_old" }, { name = "report" } }
    end
    _G.spec_jobs = repl.jobs_table("/nonexistent")
    check.eq(repl.complete("spec_jobs.pu"), { "spec_jobs.purge_old" })
    check.eq(repl.complete("spec_jobs."),
      { "spec_jobs.purge_old", "spec_jobs.report" })
    check.eq(repl.complete("spec_jobs.report.x"), {})
    check.truthy(listed > 0, "jobs listed")
    _G.spec_jobs = nil
    repl.jobs_of = saved
  end)
end)

describe("repl.error_text", function()
  it("keeps the traceback but drops the host's own frame", function()
    local text = "input:1: boom\nstack traceback:\n\t[C]: in function "
      .. "'error'\n\tinput:1: in main chunk\n\t[C]: in ?"
    check.eq(repl.error_text(text), "input:1: boom\nstack traceback:\n\t"
      .. "[C]: in function 'error'\n\tinput:1: in main chunk")
  end)
end)
