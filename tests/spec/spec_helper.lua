-- spec_helper.lua: what every spec file can use. Cases are registered with
-- describe/it and run by spec_runner, each in a protected call.
--
--   describe("db:query", function()
--     it("maps int8 exactly", function()
--       check.eq(row.n, 9223372036854775807)
--     end)
--   end)

spec_cases = {}
local prefix = {}

function describe(name, fn)
  prefix[#prefix + 1] = name
  fn()
  prefix[#prefix] = nil
end

function it(name, fn)
  local full = table.concat(prefix, " ")
  spec_cases[#spec_cases + 1] = {
    name = (full ~= "" and full .. " " or "") .. name,
    fn = fn,
  }
end

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  if math.type(v) == "float" then
    return string.format("%.17g (float)", v)
  end
  return tostring(v)
end

local function deep_eq(a, b, path)
  if a == b then
    return true
  end
  if type(a) ~= "table" or type(b) ~= "table" then
    if math.type(a) and math.type(b) and math.type(a) ~= math.type(b) then
      return false, path .. ": " .. show(a) .. " is not " .. show(b)
    end
    return false, path .. ": got " .. show(a) .. ", want " .. show(b)
  end
  for k, v in pairs(b) do
    local ok, why = deep_eq(a[k], v, path .. "." .. tostring(k))
    if not ok then
      return false, why
    end
  end
  for k in pairs(a) do
    if b[k] == nil then
      return false, path .. "." .. tostring(k) .. ": unexpected key"
    end
  end
  return true
end

check = {}

-- Equal values, tables compared deeply; integers and floats differ.
function check.eq(actual, expected, what)
  local ok, why = deep_eq(actual, expected, what or "value")
  if ok and math.type(actual) ~= math.type(expected) then
    ok, why = false, (what or "value") .. ": " .. show(actual) ..
      " is not " .. show(expected)
  end
  if not ok then
    error(why, 2)
  end
end

function check.truthy(v, what)
  if not v then
    error((what or "value") .. " is " .. tostring(v), 2)
  end
end

-- Calls fn, expects it to raise; returns the error value. When pattern
-- is given, tostring(err) must match it (a plain substring).
function check.fails(fn, pattern)
  local ok, err = pcall(fn)
  if ok then
    error("expected an error" .. (pattern and (" like " .. pattern) or ""),
      2)
  end
  if pattern and not string.find(tostring(err), pattern, 1, true) then
    error("error " .. show(tostring(err)) .. " lacks " .. show(pattern), 2)
  end
  return err
end
