-- host_spec: the Lua host's sandbox and limits, each case in a fresh
-- state opened by spec.isolated as a job's run would be.

describe("the sandbox", function()
  it("keeps no global from one run to the next", function()
    local ok = spec.isolated("leaked = 42 return leaked")
    check.truthy(ok)
    local ok2, value = spec.isolated("return tostring(leaked)")
    check.truthy(ok2)
    check.eq(value, "nil")
  end)

  it("removes what could harm the process", function()
    local ok, value = spec.isolated([[
      return table.concat({
        tostring(package.cpath), tostring(debug.sethook),
        tostring(debug.getinfo),
      }, ",")
    ]])
    check.truthy(ok, value)
    check.eq(value, "nil,nil,nil")
  end)

  it("refuses process-wide calls, saying why", function()
    for _, call in ipairs {
      {"os.exit(1)", "os.exit is not available to jobs: a run ends when"},
      {"os.execute('true')", "os.execute is not available to jobs: jobs "
        .. "start no programs"},
      {"io.popen('ls')", "io.popen is not available to jobs"},
      {"os.setlocale('C')", "os.setlocale is not available to jobs"},
      {"package.loadlib('x', 'y')", "package.loadlib is not available"},
    } do
      local ok, msg = spec.isolated(call[1])
      check.eq(ok, false)
      check.truthy(tostring(msg):find(call[2], 1, true), msg)
    end
  end)

  it("refuses binary chunks in load, loadfile and require", function()
    local ok, value = spec.isolated([[
      local bin = string.dump(function() return 1 end)
      local f, err = load(bin)
      assert(f == nil and err:find("binary"), err)
      assert(not pcall(load, bin, "x", "b"))
      local path = os.tmpname()
      local h = io.open(path, "wb"); h:write(bin); h:close()
      local g, err2 = loadfile(path)
      os.remove(path)
      assert(g == nil and err2:find("binary"), err2)
      return load("return 40 + 2")()
    ]])
    check.truthy(ok, value)
    check.eq(value, "42")
  end)

  it("preloads the host modules", function()
    local ok, value = spec.isolated([[
      local names = {}
      for _, m in ipairs { "json", "cjson", "log", "db", "batch" } do
        names[#names + 1] = type(require(m))
      end
      return table.concat(names, ",")
    ]])
    check.truthy(ok, value)
    check.eq(value, "table,table,table,table,table")
  end)

end)

-- Runs code in an isolated state with a deadline of ms and checks that
-- the run was stopped there, as a timeout naming the deadline.
local function stopped_at_deadline(code, ms)
  local ok, err, stop = spec.isolated(code, { deadline_ms = ms })
  check.eq(ok, false)
  check.eq(stop, "timeout")
  check.truthy(err:find("deadline", 1, true), err)
end

describe("the limits", function()
  it("stops a runaway loop at the deadline even inside pcall", function()
    stopped_at_deadline([[
      while true do
        pcall(function() while true do end end)
        xpcall(function() while true do end end, function() return 1 end)
      end
    ]], 200)
  end)

  it("stops a runaway loop at the deadline inside coroutines", function()
    for _, code in ipairs({
      -- A loop in a coroutine, resumed.
      [[coroutine.resume(coroutine.create(function() while true do end end))
        return "went on"]],
      -- In a coroutine made by wrap, in one resumed by another.
      [[local inner = coroutine.wrap(function() while true do end end)
        local outer = coroutine.create(function() pcall(inner) end)
        while true do coroutine.resume(outer) end]],
      -- A caller that keeps resuming what the stop ended.
      [[local co = coroutine.create(function()
          while true do pcall(function() while true do end end) end
        end)
        while true do pcall(coroutine.resume, co) end]],
      -- A coroutine that yields in a loop, and one suspended before.
      [[local co = coroutine.wrap(function()
          while true do coroutine.yield(1) end
        end)
        local idle = coroutine.create(function() while true do end end)
        local t = os.time()
        while os.time() - t < 5 do co() end
        coroutine.resume(idle)
        return "went on"]],
    }) do
      stopped_at_deadline(code, 300)
    end
  end)

  it("stops __close handlers that coroutine.close and wrap run", function()
    for _, code in ipairs({
      [[local co = coroutine.create(function()
          local x <close> = setmetatable({}, { __close = function()
            while true do end end })
          coroutine.yield()
        end)
        coroutine.resume(co)
        coroutine.close(co)]],
      [[pcall(coroutine.wrap(function()
          local x <close> = setmetatable({}, { __close = function()
            while true do end end })
          error("boom")
        end))
        return "went on"]],
    }) do
      stopped_at_deadline(code, 300)
    end
  end)

  it("keeps the finalizers of the host's objects out of reach", function()
    stopped_at_deadline([[
      getmetatable(io.open("/dev/null")).__gc = function()
        while true do end
      end
      assert(getmetatable(io.stdin).__index.read, "methods in the copy")
      for _ = 1, 3 do
        io.open("/dev/null")
        collectgarbage()
      end
      while true do end
    ]], 300)
  end)

  it("keeps coroutines working as Lua's own", function()
    local ok, value = spec.isolated([[
      local gen = coroutine.wrap(function(a)
        local b = coroutine.yield(a + 1)
        coroutine.yield(b * 2)
        return "done"
      end)
      local out = { gen(1), gen(10), gen() }
      local co = coroutine.create(function(x) error({ code = x }) end)
      local okc, e = coroutine.resume(co, 7)
      out[#out + 1] = tostring(okc) .. ":" .. e.code
      out[#out + 1] = coroutine.status(co)
      local bad = coroutine.wrap(function() error("boom") end)
      local okw, msg = pcall(bad)
      out[#out + 1] = tostring(okw) .. ":" .. msg
      local dead_ok, dead_msg = coroutine.resume(co)
      out[#out + 1] = tostring(dead_ok) .. ":" .. dead_msg
      return table.concat(out, ",")
    ]], { deadline_ms = 5000 })
    check.truthy(ok, value)
    check.eq(value, "2,20,done,false:7,dead,false:isolated:11: boom,"
      .. "false:cannot resume dead coroutine")
  end)

  it("stops an unbounded allocation at the heap limit", function()
    local ok, err, stop = spec.isolated([[
      local t = {}
      while true do
        pcall(function()
          while true do t[#t + 1] = string.rep("x", 4096) .. #t end
        end)
      end
    ]], { mem_limit = 16 * 1024 * 1024 })
    check.eq(ok, false)
    check.eq(stop, "oom")
    check.truthy(err:find("16 MiB", 1, true), err)
  end)

  it("lets a run finish well inside its limits", function()
    local ok, value, stop = spec.isolated([[
      local s = 0
      for i = 1, 100000 do s = s + i end
      return s
    ]], { deadline_ms = 5000, mem_limit = 16 * 1024 * 1024 })
    check.truthy(ok, value)
    check.eq(value, "5000050000")
    check.eq(stop, nil)
  end)
end)

describe("the standard streams", function()
  it("cannot be written by jobs, under any name", function()
    local ok, value = spec.isolated([[
      local said = {}
      for _, path in ipairs({ "/dev/stdout", "/dev/stderr",
          "/proc/self/fd/1", "/dev/fd/2" }) do
        local opened, err = pcall(io.open, path, "a")
        said[#said + 1] = tostring(opened) .. ":"
          .. tostring(err:match("cannot write to stdout") ~= nil)
      end
      local null = assert(io.open("/dev/null", "w"))
      null:write("fine")
      null:close()
      return table.concat(said, ",")
    ]], { deadline_ms = 5000 })
    check.truthy(ok, value)
    check.eq(value, "false:true,false:true,false:true,false:true")
  end)
end)

describe("errors", function()
  it("carry a traceback", function()
    local ok, err = spec.isolated([[
      local function deep() error("deep failure") end
      local _, e = xpcall(deep, debug.traceback)
      return e
    ]])
    check.truthy(ok)
    check.truthy(err:find("stack traceback", 1, true), err)
    check.truthy(err:find("deep failure", 1, true), err)
  end)
end)
