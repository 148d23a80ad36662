-- repl: the Lua side of `jobhost repl` (src/repl.c reads the input, runs
-- it and writes what this module formats).
--
--   repl.install(ctx, dir, jobs_of, sql)
--                            the session's globals: ctx, json, db, sql,
--                            jobs
--   repl.show(n, ...)        the text shown for the n values of an input
--                            (the first is kept in _)
--   repl.rows(result)        a query result as an aligned table, as psql
--                            prints one
--   repl.compile(code)       an input as a function, or why it is not one
--   repl.promote_locals(code)
--                            an input's `local x = ...` outside any
--                            block becomes `x = ...`, so the value lives
--                            on
--   repl.error_text(err)     an error and its traceback, for the terminal
--   repl.complete(word)      what Tab offers for the word before the cursor
--   repl.show_result(json)   a dry run's result, shown and kept in _
--   repl.jobs_listing(dir)   what .jobs prints
--   repl.jobs_table(dir)     a table that loads jobs/NAME.lua on first use
--   repl.reload()            forgets loaded jobs and modules
--
-- A query result is shown as a table: NULL as "∅" (an empty string as
-- nothing), at most M.row_limit rows and M.cell_width characters a cell.
-- Other values are shown as JSON-like text: strings quoted, tables with
-- their keys sorted (a row keeps its column order), nested tables on
-- lines of their own when they do not fit on one. A key or a column
-- that names a password, secret or token has its value shown as "***",
-- so a secret printed by mistake stays off the screen.
local json = require "json"

local M = {}

M.row_limit = 100
M.cell_width = 60
M.null_text = "∅"

-- How deep and how wide a nested table is shown before "…".
local MAX_DEPTH <const> = 8
local MAX_ITEMS <const> = 100
-- A table whose one-line form is longer than this is split over lines.
local LINE_WIDTH <const> = 76

-- ---- scalars -------------------------------------------------------------

-- A number as text that reads back as the same number: integers with all
-- their digits, floats with the fewest digits that round-trip and a ".0"
-- when they would look like integers.
local function number_text(v)
  if math.type(v) == "integer" then
    return tostring(v)
  end
  if v ~= v then
    return "NaN"
  elseif v == math.huge then
    return "Infinity"
  elseif v == -math.huge then
    return "-Infinity"
  end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", v)
    if tonumber(s) == v then
      break
    end
  end
  if not s:find("[.eEn]") then
    s = s .. ".0"
  end
  return s
end

local function hex_bytes(s)
  return "\\x" .. s:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end)
end

-- A string as a JSON-like quoted literal; bytes that are not UTF-8 are
-- written \xNN.
local ESCAPES <const> = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t",
}

local function quote(s)
  local out = {}
  local pos = 1
  while pos <= #s do
    local len = utf8.len(s, pos)
    local stop = #s
    if not len then
      local _, bad = utf8.len(s, pos)
      stop = bad - 1
    end
    local part = s:sub(pos, stop):gsub('[%c"\\]', function(c)
      return ESCAPES[c] or string.format("\\u%04x", c:byte())
    end)
    out[#out + 1] = part
    if stop < #s then
      out[#out + 1] = string.format("\\x%02x", s:byte(stop + 1))
    end
    pos = stop + 2
  end
  return '"' .. table.concat(out) .. '"'
end

local function is_null(v)
  return v == json.null
end

-- ---- query results ---------------------------------------------------------

local function text_width(s)
  return utf8.len(s) or #s
end

-- A cell's text: control characters made visible ("↵" for a line
-- break), bytes that are not UTF-8 (bytea) in psql's hex form, and the
-- whole cut to M.cell_width characters.
local function cell_text(v)
  local s
  if type(v) == "number" then
    s = number_text(v)
  elseif type(v) == "string" then
    if utf8.len(v) then
      s = v:gsub("\r?\n", "↵"):gsub("%c", function(c)
        return string.format("\\x%02x", c:byte())
      end)
    else
      s = hex_bytes(v)
    end
  else
    s = tostring(v)
  end
  if text_width(s) > M.cell_width then
    s = s:sub(1, utf8.offset(s, M.cell_width) - 1) .. "…"
  end
  return s
end

local function pad(s, width, align)
  local gap = width - text_width(s)
  if align == "right" then
    return string.rep(" ", gap) .. s
  elseif align == "center" then
    local left = gap // 2
    return string.rep(" ", left) .. s .. string.rep(" ", gap - left)
  end
  return s .. string.rep(" ", gap)
end

-- Whether v is what db:query returns: an array of row tables that knows
-- its column names.
local function is_result(v)
  if type(v) ~= "table" then
    return false
  end
  local ok, columns = pcall(function() return v.columns end)
  if not ok or type(columns) ~= "table" then
    return false
  end
  for i = 1, #v do
    if type(v[i]) ~= "table" then
      return false
    end
  end
  return true
end
M.is_result = is_result

local function count_text(n)
  return n == 1 and "(1 row)" or string.format("(%d rows)", n)
end

local function is_sensitive(key)
  if type(key) ~= "string" then
    return false
  end
  local k = key:lower()
  return k:find("password", 1, true) or k:find("secret", 1, true)
    or k:find("token", 1, true) or k == "passwd" or k == "pwd"
end

function M.rows(result)
  local columns = result.columns
  local n = #result
  local shown = math.min(n, M.row_limit)
  local widths, numeric, header, cells = {}, {}, {}, {}

  for c, name in ipairs(columns) do
    header[c] = cell_text(tostring(name))
    widths[c] = text_width(header[c])
    numeric[c] = shown > 0
  end

  for r = 1, shown do
    local row, line = result[r], {}
    for c, name in ipairs(columns) do
      local v = row[name]
      if v == nil or is_null(v) then
        line[c] = M.null_text
      elseif is_sensitive(name) then
        numeric[c] = false
        line[c] = "***"
      else
        numeric[c] = numeric[c] and type(v) == "number"
        line[c] = cell_text(v)
      end
      widths[c] = math.max(widths[c], text_width(line[c]))
    end
    cells[r] = line
  end

  local out = {}
  local function add_line(parts)
    out[#out + 1] = (" " .. table.concat(parts, " | ")):gsub("%s+$", "")
  end
  if #columns > 0 then
    local names, rule = {}, {}
    for c = 1, #columns do
      names[c] = pad(header[c], widths[c], "center")
      rule[c] = string.rep("-", widths[c] + 2)
    end
    add_line(names)
    out[#out + 1] = table.concat(rule, "+")
    for r = 1, shown do
      local parts = {}
      for c = 1, #columns do
        local v = cells[r][c]
        parts[c] = pad(v, widths[c],
          numeric[c] and v ~= M.null_text and "right" or "left")
      end
      add_line(parts)
    end
  end
  if shown < n then
    out[#out + 1] = string.format("%s, the first %d shown; all are in _",
      count_text(n):sub(1, -2), shown) .. ")"
  else
    out[#out + 1] = count_text(n)
  end
  return table.concat(out, "\n")
end

-- ---- other values ----------------------------------------------------------

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return ta < tb
  end
  if ta == "number" or ta == "string" then
    return a < b
  end
  return tostring(a) < tostring(b)
end

-- The keys of t in the order they are shown: a row's columns first, in
-- their order, then the rest sorted.
local function ordered_keys(t)
  local keys, first = {}, {}
  local mt = getmetatable(t)
  local columns = type(mt) == "table" and rawget(mt, "__columns")
  if type(columns) == "table" then
    for _, k in ipairs(columns) do
      if rawget(t, k) ~= nil and not first[k] then
        first[k] = true
        keys[#keys + 1] = k
      end
    end
  end
  local rest = {}
  for k in next, t do
    if not first[k] then
      rest[#rest + 1] = k
    end
  end
  table.sort(rest, key_order)
  table.move(rest, 1, #rest, #keys + 1, keys)
  return keys
end

-- Whether t is shown as an array: marked as one, or keyed exactly 1..n.
local function is_array(t)
  if json.is_array(t) then
    return true
  end
  local n = 0
  for _ in next, t do
    n = n + 1
  end
  return n > 0 and n == #t
end

local function key_text(k)
  if type(k) == "string" then
    return quote(k)
  end
  return "[" .. (type(k) == "number" and number_text(k) or tostring(k))
    .. "]"
end

local render

-- The items of table t as texts, each at the given indent: at most
-- MAX_ITEMS, then a count of the rest.
local function items(t, indent, depth, seen)
  local out, total = {}, #t
  local array = is_array(t)
  if array then
    for i = 1, math.min(total, MAX_ITEMS) do
      out[i] = render(rawget(t, i), indent, depth + 1, seen)
    end
  else
    local keys = ordered_keys(t)
    total = #keys
    for i = 1, math.min(total, MAX_ITEMS) do
      local k = keys[i]
      local v = rawget(t, k)
      local hidden = is_sensitive(k)
        and (type(v) == "string" or type(v) == "number")
      out[i] = key_text(k) .. ": " .. (hidden and '"***"'
        or render(v, indent, depth + 1, seen))
    end
  end
  if total > MAX_ITEMS then
    out[#out + 1] = string.format("… %d more", total - MAX_ITEMS)
  end
  if array then
    return out, "[", "]"
  end
  return out, "{", "}"
end

function render(v, indent, depth, seen)
  local t = type(v)
  if t == "string" then
    return quote(v)
  elseif t == "number" then
    return number_text(v)
  elseif is_null(v) then
    return "null"
  elseif t ~= "table" then
    return tostring(v)
  end

  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    return tostring(v)
  end
  if seen[v] then
    return "<cycle>"
  end
  if depth >= MAX_DEPTH then
    return "{…}"
  end

  seen[v] = true
  local inner = indent .. "  "
  local parts, open, close = items(v, inner, depth, seen)
  seen[v] = nil
  if #parts == 0 then
    return open .. close
  end
  local line = open .. table.concat(parts, ", ") .. close
  if #indent + #line <= LINE_WIDTH and not line:find("\n", 1, true) then
    return line
  end
  return open .. "\n" .. inner .. table.concat(parts, ",\n" .. inner)
    .. "\n" .. indent .. close
end

-- The text of one value as the REPL shows it.
function M.value(v)
  if is_result(v) then
    return M.rows(v)
  end
  return render(v, "", 0, {})
end

function M.show(n, ...)
  if n > 0 then
    rawset(_G, "_", (...))
  end
  local out = {}
  for i = 1, n do
    out[i] = M.value((select(i, ...)))
  end
  return table.concat(out, "\n")
end

-- ---- input -----------------------------------------------------------------

-- The operators of more than one character, longest first.
local OPERATORS <const> = {
  "...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::",
}

-- The tokens of Lua code that the local rewrite reads, in order, each
-- { text, from, to }: names, keywords and operators. Strings, numbers
-- and comments are passed over, long brackets to their own level.
local function tokens(code)
  local out, pos, n = {}, 1, #code
  local function past_long_bracket(at)
    local level = code:match("^%[(=*)%[", at)
    if not level then
      return nil
    end
    local _, close = code:find("]" .. level .. "]", at, true)
    return (close or n) + 1
  end
  while pos <= n do
    local c = code:sub(pos, pos)
    local from = pos
    if c:match("%s") then
      pos = code:find("%S", pos) or n + 1
    elseif code:sub(pos, pos + 1) == "--" then
      pos = past_long_bracket(pos + 2)
        or (code:find("\n", pos, true) or n) + 1
    elseif c == '"' or c == "'" then
      pos = pos + 1
      while pos <= n and code:sub(pos, pos) ~= c do
        pos = pos + (code:sub(pos, pos) == "\\" and 2 or 1)
      end
      pos = pos + 1
    elseif c == "[" and past_long_bracket(pos) then
      pos = past_long_bracket(pos)
    elseif code:match("^%.?%d", pos) then
      -- A number, its exponent's sign included.
      repeat
        pos = code:match("^[%w_.]*()", pos)
        local sign = code:match("^[pPeE][+-]()", pos - 1)
        if sign then
          pos = sign
        end
      until not sign
    else
      local to = code:match("^[%a_][%w_]*()", pos)
      if not to then
        for _, op in ipairs(OPERATORS) do
          if code:sub(pos, pos + #op - 1) == op then
            to = pos + #op
            break
          end
        end
      end
      pos = to or pos + 1
      out[#out + 1] = { text = code:sub(from, pos - 1), from = from,
                        to = pos - 1 }
    end
  end
  return out
end

-- The keywords that open a block, closed by `end` (or `until`).
local OPENS <const> = {
  ["do"] = true, ["function"] = true, ["if"] = true, ["repeat"] = true,
}
local CLOSES <const> = { ["end"] = true, ["until"] = true }

-- The names declared by the local statement whose `local` is toks[i]:
-- returns them, the index of the token after the last one (and its
-- attribute), and the first name marked <close>, if any.
local function local_names(toks, i)
  local names, closed = {}, nil
  repeat
    i = i + 1
    names[#names + 1] = toks[i].text
    if toks[i + 1] and toks[i + 1].text == "<" then
      if toks[i + 2].text == "close" then
        closed = closed or toks[i].text
      end
      i = i + 3
    end
    i = i + 1
  until not toks[i] or toks[i].text ~= ","
  return names, i, closed
end

-- Why a <close> local at pos cannot stay for the session.
local function close_refused(code, pos, name)
  local line = select(2, code:sub(1, pos):gsub("\n", "")) + 1
  return string.format("input:%d: '%s' is <close>, so it would be closed"
    .. " as soon as this input ends and could not stay for the session:"
    .. " drop <close> (and close it yourself), or put the code that uses"
    .. " it in the same input, inside do ... end", line, name)
end

-- Makes the locals of an input that lie outside any block globals, so
-- that what was typed at the prompt stays for the next input:
-- `local a, b <const> = 1, 2` becomes `a, b = 1, 2`, `local x` becomes
-- `x = nil;`, `local function f` becomes `function f`; the line breaks
-- of what is replaced are kept, so lines keep their numbers. A local
-- inside a block (a function body, do ... end) is left as it is. code
-- must compile: compile() loads the input as typed first, which also
-- keeps a <const> local's check. Returns the new code, or nil and why
-- not: a <close> local would be closed as the input ends.
function M.promote_locals(code)
  local toks = tokens(code)
  local out, copied, depth, i = {}, 1, 0, 1
  while i <= #toks do
    local t = toks[i].text
    if OPENS[t] then
      depth = depth + 1
    elseif CLOSES[t] then
      depth = depth - 1
    elseif t == "local" and depth == 0 then
      local first, with, last = toks[i], ""
      if toks[i + 1].text == "function" then
        last = toks[i + 1].from - 1
      else
        local names, after, closed = local_names(toks, i)
        if closed then
          return nil, close_refused(code, first.from, closed)
        end
        with = table.concat(names, ", ")
        if toks[after] and toks[after].text == "=" then
          with, last = with .. " ", toks[after].from - 1
        else
          with, last = with .. " = nil;", toks[after - 1].to
        end
        i = after - 1
      end
      out[#out + 1] = code:sub(copied, first.from - 1)
      out[#out + 1] = with .. code:sub(first.from, last):gsub("[^\n]+", "")
      copied = last + 1
    end
    i = i + 1
  end
  out[#out + 1] = code:sub(copied)
  return table.concat(out)
end

-- A field of t as completion sees it: raw, then from the metatable's
-- __index when that is a table (a connection's methods). Never runs a
-- metamethod.
-- What a table offers to completion beyond its own keys: its __index
-- table, or what its __complete function lists (the jobs table: the
-- jobs' names, with the specs loaded so far).
local function offered(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" then
    return nil
  end
  local index = rawget(mt, "__index")
  if type(index) == "table" then
    return index
  end
  local list = rawget(mt, "__complete")
  if type(list) == "function" then
    local ok, names = pcall(list)
    if ok and type(names) == "table" then
      return names
    end
  end
  return nil
end

local function raw_field(t, name)
  local v = type(t) == "table" and rawget(t, name) or nil
  if v == nil then
    local more = offered(t)
    if more then
      v = rawget(more, name)
    end
  end
  return v
end

-- The completions of word (what precedes the cursor, up to a blank or an
-- operator), sorted: globals, or the fields (after ".") or methods
-- (after ":") of what the path before names.
function M.complete(word)
  local path, sep, prefix = word:match("^([%w_.]-)([.:])([%w_]*)$")
  local scope = _G
  if path then
    for name in path:gmatch("[^.]+") do
      scope = raw_field(scope, name)
      if scope == nil then
        return {}
      end
    end
  elseif word:match("^[%a_]?[%w_]*$") then
    path, sep, prefix = "", "", word
  else
    return {}
  end

  local out, seen = {}, {}
  local function add_from(t)
    for k, v in next, t do
      if type(k) == "string" and not seen[k] and k:match("^[%a_][%w_]*$")
          and k:sub(1, #prefix) == prefix
          and (sep ~= ":" or type(v) == "function") then
        seen[k] = true
        out[#out + 1] = path .. sep .. k
      end
    end
  end
  if type(scope) == "table" then
    add_from(scope)
  end
  local more = offered(scope)
  if more then
    add_from(more)
  end
  table.sort(out)
  return out
end

local function ends_too_soon(err)
  return err:sub(-5) == "<eof>"
end

-- Compiles an input: as `return INPUT` first, so that an expression's
-- value comes back, then as it is, its locals outside any block made
-- globals (promote_locals). Returns the function, or nil, the syntax
-- error of the input as it is (or why its locals cannot stay), and
-- whether either form ended too soon ("1 +" is no unfinished
-- statement, but it is an unfinished expression).
function M.compile(code)
  local fn, err = load("return " .. code, "=input", "t")
  if fn then
    return fn
  end
  local incomplete = ends_too_soon(err)
  -- As typed first: its errors are the ones a job would meet (a
  -- <const> assigned to), and promote_locals reads only valid code.
  fn, err = load(code, "=input", "t")
  if not fn then
    return nil, err, incomplete or ends_too_soon(err)
  end
  local promoted, why = M.promote_locals(code)
  if not promoted then
    return nil, why, false
  end
  fn, err = load(promoted, "=input", "t")
  return fn, err, false
end

-- The message and traceback of an error as caught by host_pcall (a
-- string with the traceback appended, or an error object carrying it in
-- .traceback), without the REPL's own frame at the bottom.
function M.error_text(err)
  local text, traceback
  if type(err) == "table" and not is_null(err) then
    -- As a run's failure reads: its __tostring, else its message, else
    -- the table itself.
    local mt = getmetatable(err)
    if type(mt) == "table" and mt.__tostring then
      text = tostring(err)
    elseif type(rawget(err, "message")) == "string" then
      text = rawget(err, "message")
      if type(rawget(err, "type")) == "string" then
        text = rawget(err, "type") .. ": " .. text
      end
    else
      local plain = {}
      for k, v in pairs(err) do
        if k ~= "traceback" then plain[k] = v end
      end
      local ok, encoded = pcall(json.encode, plain)
      text = ok and encoded or tostring(err)
    end
    traceback = rawget(err, "traceback")
  else
    text = tostring(err)
    local at = text:find("\nstack traceback:\n", 1, true)
    if at then
      text, traceback = text:sub(1, at - 1), text:sub(at + 1)
    end
  end
  if type(traceback) == "string" then
    traceback = traceback:gsub("\n%s*%[C%]: in %?%s*$", "")
    if traceback:find("\n", 1, true) then
      text = text .. "\n" .. traceback
    end
  end
  return text
end

-- The result of a dry run (`{"dry_run": true, "result": ...}` as JSON),
-- shown and kept in _.
-- The largest result whose objects' key order is kept for the display.
local ORDER_MAX <const> = 1024 * 1024

-- Decoding forgets the order of an object's keys; the printer follows a
-- __columns list. This walks the JSON text beside the decoded value and
-- gives every object without a metatable its keys in the text's order,
-- so a dry run's rows show in column order, as `jobhost run` prints them.
local function keep_key_order(text, value)
  local pos = 1
  local function blank()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end
  local function past_string()
    local i = pos + 1
    while true do
      local at = text:find('["\\]', i)
      if not at then
        pos = #text + 1
        return
      end
      if text:byte(at) == 92 then
        i = at + 2
      else
        pos = at + 1
        return
      end
    end
  end
  -- The members of the object or array at pos, each through member(),
  -- up to its closing bracket.
  local function members(close, member)
    pos = pos + 1
    blank()
    if text:sub(pos, pos) == close then
      pos = pos + 1
      return
    end
    repeat
      member()
      blank()
      local sep = text:sub(pos, pos)
      pos = pos + 1
    until sep ~= ","
  end
  local walk
  function walk(v)
    blank()
    local c = text:sub(pos, pos)
    local t = type(v) == "table" and v or nil
    if c == "{" then
      local order, seen = {}, {}
      members("}", function()
        blank()
        local from = pos
        past_string()
        local key = json.decode(text:sub(from, pos - 1))
        if not seen[key] then
          seen[key] = true
          order[#order + 1] = key
        end
        blank()
        pos = pos + 1 -- the ':'
        walk(t and rawget(t, key))
      end)
      if t and getmetatable(t) == nil then
        setmetatable(t, { __columns = order })
      end
    elseif c == "[" then
      local i = 0
      members("]", function()
        i = i + 1
        walk(t and rawget(t, i))
      end)
    elseif c == '"' then
      past_string()
    else
      pos = text:find("[,%]}%s]", pos) or #text + 1
    end
  end
  walk(value)
end

function M.show_result(text)
  local decoded = json.decode(text)
  if #text <= ORDER_MAX then
    keep_key_order(text, decoded)
  end
  local result = decoded.result
  rawset(_G, "_", result)
  return M.value(result)
end

-- ---- jobs and modules ------------------------------------------------------

-- The globals of the session: ctx (built by the host), json, db, the
-- jobs table and sql(q, ...), a short ctx.db:query(q, ...) given by the
-- host (src/repl.c), so that its errors name the input's line.
function M.install(ctx, dir, jobs_of, sql)
  M.jobs_of = jobs_of
  rawset(_G, "ctx", ctx)
  rawset(_G, "json", json)
  rawset(_G, "db", require "db")
  rawset(_G, "jobs", M.jobs_table(dir))
  rawset(_G, "sql", sql)
  M.mark_loaded()
end

-- A job's schedule and description. The job file runs in an
-- environment of its own, so its globals stay out of the session.
local function job_summary(dir, name)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(dir .. "/" .. name .. ".lua", "t", env)
  local ok, spec = false, err
  if chunk then
    ok, spec = pcall(chunk)
  end
  if not ok or type(spec) ~= "table" then
    return nil, "cannot load: " .. tostring(spec)
  end
  local schedule = type(spec.schedule) == "string" and spec.schedule
    or "(no schedule)"
  local description = type(spec.description) == "string"
    and spec.description or ""
  return schedule, description
end

-- What .jobs prints: a line a job (name, schedule, description, or why
-- the job is invalid), aligned. M.jobs_of(dir), given by install, lists
-- the jobs and checks each (src/repl.c).
function M.jobs_listing(dir)
  local jobs = M.jobs_of(dir)
  local name_width, schedule_width = 4, 8
  for _, job in ipairs(jobs) do
    if not job.error then
      job.schedule, job.description = job_summary(dir, job.name)
      if not job.schedule then
        job.error = job.description
      end
    end
    name_width = math.max(name_width, text_width(job.name))
    if job.schedule then
      schedule_width = math.max(schedule_width, text_width(job.schedule))
    end
  end
  local out = {}
  for _, job in ipairs(jobs) do
    local line = pad(job.name, name_width) .. "  "
    if job.error then
      line = line .. "INVALID: " .. job.error
    else
      line = line .. pad(job.schedule, schedule_width) .. "  "
        .. job.description
    end
    out[#out + 1] = line:gsub("%s+$", "")
  end
  out[#out + 1] = string.format("(%d job%s in %s)", #jobs,
    #jobs == 1 and "" or "s", dir)
  return table.concat(out, "\n")
end

local loaded_at_start = {}
local job_cache = {}

-- Remembers the modules loaded so far (the host's own), so that reload
-- forgets only those required since.
function M.mark_loaded()
  for name in pairs(package.loaded) do
    loaded_at_start[name] = true
  end
end

function M.jobs_table(dir)
  return setmetatable({}, {
    -- The jobs of the folder (false until loaded), for Tab: completing
    -- never loads a job, since that runs its file.
    __complete = function()
      local names = {}
      for _, job in ipairs(M.jobs_of(dir) or {}) do
        names[job.name] = job_cache[job.name] or false
      end
      return names
    end,
    __index = function(_, name)
      if type(name) ~= "string" or not name:match("^[%w_][%w_.-]*$") then
        error("not a job name: " .. tostring(name), 2)
      end
      if job_cache[name] == nil then
        local chunk, err = loadfile(dir .. "/" .. name .. ".lua", "t")
        if not chunk then
          error(err, 2)
        end
        job_cache[name] = chunk()
      end
      return job_cache[name]
    end,
  })
end

function M.reload()
  local forgot = 0
  for name in pairs(job_cache) do
    job_cache[name] = nil
    forgot = forgot + 1
  end
  for name in pairs(package.loaded) do
    if not loaded_at_start[name] then
      package.loaded[name] = nil
      forgot = forgot + 1
    end
  end
  return forgot
end

return M
