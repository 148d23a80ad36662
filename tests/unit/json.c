/* json.c (test): the json module against its contract (src/json.h and the
 * rules at the top of src/json.c) in a plain Lua state: exact numbers,
 * the table rules, strings and UTF-8, error paths and offsets, strict
 * decoding, the C functions, and memory: no block outlives a raised
 * error, and every allocation failing in turn ends in a clean error.
 * Includes the reported cases of testdata/cases/reported.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>

#include "json.h"

static int checks, failures;

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    checks++;                                                               \
    if (!(cond)) {                                                          \
      failures++;                                                           \
      fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                       \
      fprintf(stderr, __VA_ARGS__);                                         \
      fputc('\n', stderr);                                                  \
    }                                                                       \
  } while (0)

/* Helpers every Lua snippet below can use: same(a, b) compares deeply,
 * telling integers from floats and marked arrays from other tables. */
static const char prelude[] =
  "function same(a, b)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    if math.type(a) ~= math.type(b) then return false end\n"
  "    if a ~= a then return b ~= b end\n"
  "    return a == b and 1 / a == 1 / b\n"
  "  end\n"
  "  if type(a) ~= 'table' then return a == b end\n"
  "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
  "  for k, v in pairs(a) do\n"
  "    if not same(v, b[k]) then return false end\n"
  "  end\n"
  "  for k in pairs(b) do\n"
  "    if a[k] == nil then return false end\n"
  "  end\n"
  "  return true\n"
  "end\n";

static lua_State *new_state(void)
{
  lua_State *L = luaL_newstate();

  luaL_openlibs(L);
  luaL_requiref(L, "json", luaopen_jobhost_json, 1);
  luaL_requiref(L, "cjson", luaopen_cjson, 1);
  lua_settop(L, 0);
  if (luaL_dostring(L, prelude) != LUA_OK) {
    fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  return L;
}

/* Runs a Lua chunk; returns its first result as a string (pushed), or
 * NULL with the error message pushed. ok says which. */
static const char *run(lua_State *L, const char *chunk, int *ok)
{
  *ok = luaL_loadstring(L, chunk) == LUA_OK &&
        lua_pcall(L, 0, 1, 0) == LUA_OK;
  if (!*ok)
    return NULL;
  return lua_tostring(L, -1);
}

/* json.encode(<expr>) must give exactly want. */
static void encodes(lua_State *L, const char *expr, const char *want,
                    int line)
{
  char chunk[4096];
  const char *got;
  int ok;

  snprintf(chunk, sizeof chunk, "return json.encode(%s)", expr);
  got = run(L, chunk, &ok);
  checks++;
  if (!ok || got == NULL || strcmp(got, want) != 0) {
    failures++;
    fprintf(stderr, "%s:%d: encode %s: got %s, want %s\n", __FILE__, line,
            expr, ok ? (got ? got : "(nil)") : lua_tostring(L, -1), want);
  }
  lua_settop(L, 0);
}

/* json.encode(<expr>) must raise a message containing want. */
static void encode_fails(lua_State *L, const char *expr, const char *want,
                         int line)
{
  char chunk[4096];
  int ok;

  snprintf(chunk, sizeof chunk, "return json.encode(%s)", expr);
  run(L, chunk, &ok);
  checks++;
  if (ok || strstr(lua_tostring(L, -1), want) == NULL) {
    failures++;
    fprintf(stderr, "%s:%d: encode %s: got %s %s, want error %s\n",
            __FILE__, line, expr, ok ? "success" : "error",
            lua_tostring(L, -1), want);
  }
  lua_settop(L, 0);
}

/* json.decode of the len bytes text must raise "json.decode: <what> at
 * offset <offset>". */
static void decode_fails(lua_State *L, const char *text, size_t len,
                         const char *what, long offset, int line)
{
  char want[200];
  const char *got;

  snprintf(want, sizeof want, "json.decode: %s at offset %ld", what,
           offset);
  lua_getglobal(L, "json");
  lua_getfield(L, -1, "decode");
  lua_pushlstring(L, text, len);
  checks++;
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    failures++;
    fprintf(stderr, "%s:%d: decode %.*s: no error, want %s\n", __FILE__,
            line, (int)len, text, want);
  } else if (strcmp((got = lua_tostring(L, -1)), want) != 0) {
    failures++;
    fprintf(stderr, "%s:%d: decode %.*s: got %s, want %s\n", __FILE__, line,
            (int)len, text, got, want);
  }
  lua_settop(L, 0);
}

/* A Lua chunk that must return true. */
static void holds(lua_State *L, const char *chunk, int line)
{
  int ok;

  run(L, chunk, &ok);
  checks++;
  if (!ok || !lua_toboolean(L, -1)) {
    failures++;
    fprintf(stderr, "%s:%d: %s\n  %s\n", __FILE__, line,
            ok ? "does not hold" : lua_tostring(L, -1), chunk);
  }
  lua_settop(L, 0);
}

#define ENCODES(expr, want) encodes(L, expr, want, __LINE__)
#define ENCODE_FAILS(expr, want) encode_fails(L, expr, want, __LINE__)
#define DECODE_FAILS(text, what, offset)                                    \
  decode_fails(L, text, sizeof(text) - 1, what, offset, __LINE__)
#define HOLDS(chunk) holds(L, chunk, __LINE__)

static void test_integers(lua_State *L)
{
  ENCODES("0", "0");
  ENCODES("-1", "-1");
  ENCODES("1026066510839283908", "1026066510839283908");
  ENCODES("9007199254740993", "9007199254740993");
  ENCODES("math.maxinteger", "9223372036854775807");
  ENCODES("math.mininteger", "-9223372036854775808");
  HOLDS("for _, base in ipairs({0, 9, 10, 99, 100, 999, 1000, 1000000000,\n"
        "    math.maxinteger - 100, math.mininteger}) do\n"
        "  for d = -3, 3 do\n"
        "    local v = base + d\n"
        "    if json.encode(v) ~= string.format('%d', v) then\n"
        "      return false\n"
        "    end\n"
        "  end\n"
        "end\n"
        "return true");
  ENCODES("{id = 1026066510839283908, big = 9007199254740993}",
          "{\"big\":9007199254740993,\"id\":1026066510839283908}");

  /* Decoded back: integers with the same value. */
  HOLDS("local v = json.decode('1026066510839283908')\n"
        "return math.type(v) == 'integer' and v == 1026066510839283908");
  HOLDS("local v = json.decode('9007199254740993')\n"
        "return math.type(v) == 'integer' and v == 9007199254740993");
  HOLDS("return json.decode('-9223372036854775808') == math.mininteger");
  HOLDS("return json.decode('9223372036854775807') == math.maxinteger");
  HOLDS("return math.type(json.decode('5432')) == 'integer'");
  HOLDS("local v = json.decode('{\"port\":5432}').port\n"
        "return math.type(v) == 'integer' and v == 5432 and\n"
        "  tostring(v) == '5432'");
  HOLDS("return math.type(json.decode('-0')) == 'integer'");

  /* Beyond int64: a float, as exact as a double. */
  HOLDS("local v = json.decode('9223372036854775808')\n"
        "return math.type(v) == 'float' and v == 2^63");
  HOLDS("local v = json.decode('-9223372036854775809')\n"
        "return math.type(v) == 'float' and v == -2^63");
  HOLDS("local v = json.decode('123456789012345678901234567890')\n"
        "return math.type(v) == 'float' and v == 1.2345678901234568e29");
}

static void test_floats(lua_State *L)
{
  /* The rule: shortest exact text, and a float always looks like one. */
  ENCODES("3.0", "3.0");
  ENCODES("-3.0", "-3.0");
  ENCODES("2099999997690001.0", "2099999997690001.0");
  ENCODES("0.1", "0.1");
  ENCODES("0.1 + 0.2", "0.30000000000000004");
  ENCODES("1 / 3", "0.3333333333333333");
  ENCODES("1e20", "1e+20");
  ENCODES("1.5e-7", "1.5e-07");
  ENCODES("-0.0", "-0.0");
  ENCODES("2^53", "9007199254740992.0");
  ENCODES("1.7976931348623157e308", "1.7976931348623157e+308");
  ENCODES("{0.5, 100.0}", "[0.5,100.0]");

  HOLDS("local v = json.decode('2099999997690001.0')\n"
        "return math.type(v) == 'float' and v == 2099999997690001.0");
  HOLDS("return math.type(json.decode('5432.0')) == 'float'");
  HOLDS("local v = json.decode('1e3')\n"
        "return math.type(v) == 'float' and v == 1000.0");
  HOLDS("local v = json.decode('-0.0')\n"
        "return math.type(v) == 'float' and 1 / v < 0");
  HOLDS("local v = json.decode('1E-400')\n"
        "return math.type(v) == 'float' and v == 0");
  HOLDS("return json.decode('-12.5e+1') == -125.0");

  /* Every double reads back as itself, with its subtype: doubles from
   * random bit patterns, subnormals and extremes included. */
  HOLDS("local x, n = 12345, 0\n"
        "for i = 1, 20000 do\n"
        "  x = (x * 6364136223846793005 + 1442695040888963407)\n"
        "  local bits = x ~ (x >> 29)\n"
        "  local d = string.unpack('<d', string.pack('<i8', bits))\n"
        "  if d == d and d ~= math.huge and d ~= -math.huge then\n"
        "    local back = json.decode(json.encode(d))\n"
        "    if math.type(back) ~= 'float' or back ~= d then\n"
        "      error(string.format('%a does not round-trip', d))\n"
        "    end\n"
        "    n = n + 1\n"
        "  end\n"
        "end\n"
        "for _, d in ipairs({5e-324, 2.2250738585072014e-308, 1e-300,\n"
        "                    123456.789, 1e15, 1e16, 1e17, 2^63, -2^63}) do\n"
        "  local back = json.decode(json.encode(d))\n"
        "  if math.type(back) ~= 'float' or back ~= d then return false end\n"
        "end\n"
        "return n > 19000");

  ENCODE_FAILS("0/0", "json.encode: $: NaN cannot be encoded");
  ENCODE_FAILS("math.huge", "json.encode: $: infinity cannot be encoded");
  ENCODE_FAILS("{x = -math.huge}",
               "json.encode: $.x: infinity cannot be encoded");
}

static void test_tables(lua_State *L)
{
  ENCODES("{}", "{}");
  ENCODES("json.array()", "[]");
  ENCODES("json.array({})", "[]");
  ENCODES("json.decode('[]')", "[]");
  ENCODES("json.decode('{}')", "{}");
  ENCODES("{rows = json.decode('[]')}", "{\"rows\":[]}");
  ENCODES("{1, 2, 3}", "[1,2,3]");
  ENCODES("{'a', {true, false}, {}}", "[\"a\",[true,false],{}]");

  /* The reported tables: one rule, nothing lost. */
  ENCODES("{[1] = 'a', [3] = 'c'}", "{\"1\":\"a\",\"3\":\"c\"}");
  ENCODES("{1, 2, x = 3}", "{\"1\":1,\"2\":2,\"x\":3}");

  /* Keys 1..n given in any order (the hash part) are still an array. */
  ENCODES("{[3] = 'c', [2] = 'b', [1] = 'a'}", "[\"a\",\"b\",\"c\"]");
  HOLDS("local t = {}\n"
        "for i = 300, 1, -1 do t[i] = i end\n"
        "local s = json.encode(t)\n"
        "return s:sub(1, 8) == '[1,2,3,4' and s:sub(-5) == ',300]'");

  /* Objects: keys sorted bytewise by their text. */
  ENCODES("{b = 1, a = 2, c = 3, B = 4}",
          "{\"B\":4,\"a\":2,\"b\":1,\"c\":3}");
  ENCODES("{[10] = 'x', [9] = 'y', z = 1}",
          "{\"10\":\"x\",\"9\":\"y\",\"z\":1}");
  ENCODES("{[0] = 'zero', [-1] = 'minus'}",
          "{\"-1\":\"minus\",\"0\":\"zero\"}");
  ENCODES("{[2] = 'b'}", "{\"2\":\"b\"}");
  ENCODES("{[math.mininteger] = 1}", "{\"-9223372036854775808\":1}");
  HOLDS("local t = {}\n"
        "for i = 1, 500 do t['k' .. i] = i end\n"
        "local s = json.encode(t)\n"
        "local last\n"
        "for k in s:gmatch('\"(k%d+)\"') do\n"
        "  if last and last >= k then return false end\n"
        "  last = k\n"
        "end\n"
        "return last == 'k99' and same(json.decode(s), t)");

  /* Query rows: __columns first in order, then the rest sorted. */
  ENCODES("setmetatable({tag = 'x', id = 1, note = json.null},\n"
          "  {__columns = {'id', 'note', 'tag'}})",
          "{\"id\":1,\"note\":null,\"tag\":\"x\"}");
  ENCODES("setmetatable({z = 1, b = 2, a = 3, extra = 4, [7] = 5},\n"
          "  {__columns = {'z', 'b', 'a'}})",
          "{\"z\":1,\"b\":2,\"a\":3,\"7\":5,\"extra\":4}");
  ENCODES("setmetatable({b = 2}, {__columns = {'a', 'b', 'b'}})",
          "{\"b\":2}");
  ENCODES("setmetatable({}, {__columns = {'a'}})", "{}");
  ENCODES("json.array({setmetatable({n = 1, m = 2}, {__columns = {'n',"
          " 'm'}}), setmetatable({x = 1, y = {q = 1, p = 2}},"
          " {__columns = {'y', 'x'}})})",
          "[{\"n\":1,\"m\":2},{\"y\":{\"p\":2,\"q\":1},\"x\":1}]");
  HOLDS("local cols = {}\n"
        "local row = {}\n"
        "for i = 300, 1, -1 do cols[#cols + 1] = 'c' .. i; row['c' .. i] = i"
        " end\n"
        "local s = json.encode(setmetatable(row, {__columns = cols}))\n"
        "return s:sub(1, 18) == '{\"c300\":300,\"c299\"' and\n"
        "  s:sub(-7) == '\"c1\":1}'");
  ENCODE_FAILS("setmetatable({a = 1}, {__columns = {'a', 5}})",
               "json.encode: $: __columns[2] is not a string");

  /* Wide rows (past the names kept at hand), with a repeated name and
   * keys that are not columns. */
  HOLDS("local cols, row = {}, {}\n"
        "for i = 1, 1000 do cols[i] = 'c' .. i; row['c' .. i] = i end\n"
        "cols[1001] = 'c5'\n"
        "row.extra = true\n"
        "row[7] = 'seven'\n"
        "local rows = json.array()\n"
        "for i = 1, 50 do\n"
        "  rows[i] = setmetatable(row, {__columns = cols})\n"
        "end\n"
        "local s = json.encode(rows)\n"
        "local one = json.encode(rows[1])\n"
        "return one:sub(1, 19) == '{\"c1\":1,\"c2\":2,\"c3\"'\n"
        "  and one:sub(-38) == '\"c1000\":1000,\"7\":\"seven\",\"extra\""
        ":true}'\n"
        "  and s == '[' .. string.rep(one, 50, ',') .. ']'\n"
        "  and select(2, one:gsub('\"c5\"', '')) == 1");
  ENCODE_FAILS("(function() local cols = {}\n"
               "for i = 1, 300 do cols[i] = 'c' .. i end\n"
               "cols[299] = true\n"
               "return {x = setmetatable({c1 = 1}, {__columns = cols})}"
               " end)()",
               "json.encode: $.x: __columns[299] is not a string");

  /* Marked arrays hold exactly 1..n. */
  ENCODE_FAILS("{list = json.array({1, 2, x = 3})}",
               "json.encode: $.list: array (json.array) has keys other "
               "than 1..n");
  ENCODE_FAILS("json.array({[1] = 1, [3] = 3})",
               "array (json.array) has keys other than 1..n");
  ENCODES("json.decode('[1,null,3]')", "[1,null,3]");

  /* Keys JSON cannot hold. */
  ENCODE_FAILS("{[true] = 1}", "json.encode: $: table key of type boolean");
  ENCODE_FAILS("{a = {[1.5] = 1}}",
               "json.encode: $.a: table key 1.5 is not an integer");
  ENCODE_FAILS("{[{}] = 1}", "json.encode: $: table key of type table");
  ENCODE_FAILS("{[1] = 'a', ['1'] = 'b'}",
               "json.encode: $[\"1\"]: an integer key has the same text");
  ENCODE_FAILS("setmetatable({['1'] = 'a', [1] = 'b', x = 1},"
               " {__columns = {'1'}})",
               "an integer key has the same text");

  /* is_array says what encode writes. */
  HOLDS("return json.is_array(json.array()) and json.is_array({1, 2})\n"
        "  and json.is_array(json.decode('[]'))\n"
        "  and not json.is_array({}) and not json.is_array({1, x = 2})\n"
        "  and not json.is_array({[2] = 1}) and not json.is_array('x')\n"
        "  and not json.is_array(nil)");
  HOLDS("local t = {} return json.array(t) == t");
  HOLDS("return not pcall(json.array, 5)");
}

static void test_strings(lua_State *L)
{
  ENCODES("'plain'", "\"plain\"");
  ENCODES("''", "\"\"");
  ENCODES("'a/b'", "\"a/b\"");
  ENCODES("'q\"b\\\\'", "\"q\\\"b\\\\\"");
  ENCODES("'\\b\\f\\n\\r\\t'", "\"\\b\\f\\n\\r\\t\"");
  ENCODES("'\\0\\1\\31\\127'", "\"\\u0000\\u0001\\u001f\x7f\"");
  ENCODES("'h\\u{e9}llo \\u{20ac} \\u{1f600}'",
          "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
  ENCODES("'\\u{10ffff}'", "\"\xf4\x8f\xbf\xbf\"");

  /* Every control character, escaped and decoded back. */
  HOLDS("local s = ''\n"
        "for c = 0, 127 do s = s .. string.char(c) end\n"
        "local e = json.encode(s)\n"
        "return json.decode(e) == s and not e:find('[%z\\1-\\31]')\n"
        "  and e:find('\\\\u001e', 1, true) ~= nil");

  /* Long strings, past the frame storage, with escapes spread out. */
  HOLDS("local parts = {}\n"
        "for i = 1, 5000 do parts[i] = 'line ' .. i .. ' \"q\"\\t\\u{e9}\\n'"
        " end\n"
        "local s = table.concat(parts)\n"
        "return json.decode(json.encode(s)) == s\n"
        "  and json.decode(json.encode({s, s}))[2] == s");

  /* Invalid UTF-8, as values and as keys, named by path. */
  ENCODE_FAILS("'\\xff'", "json.encode: $: string is not valid UTF-8");
  ENCODE_FAILS("'\\xc0\\x80'", "string is not valid UTF-8");
  ENCODE_FAILS("'\\xe0\\x80\\xaf'", "string is not valid UTF-8");
  ENCODE_FAILS("'\\xed\\xa0\\x80'", "string is not valid UTF-8");
  ENCODE_FAILS("'\\xf4\\x90\\x80\\x80'", "string is not valid UTF-8");
  ENCODE_FAILS("'\\xe2\\x82'", "string is not valid UTF-8");
  ENCODE_FAILS("'ok\\x80'", "string is not valid UTF-8");
  ENCODE_FAILS("'\\xf8\\x88\\x80\\x80\\x80'", "string is not valid UTF-8");
  ENCODE_FAILS("{rows = {{name = 'a'}, {name = 'b'}, {name = 'c\\xff'}}}",
               "json.encode: $.rows[3].name: string is not valid UTF-8");
  ENCODE_FAILS("{t = {['k\\xff'] = 1}}",
               "json.encode: $.t[<a key of 2 bytes>]: key is not valid UTF-8");
  ENCODE_FAILS("setmetatable({['\\xff'] = 1}, {__columns = {'\\xff'}})",
               "json.encode: $[<a key of 1 byte>]: key is not valid UTF-8");
}

static void test_paths(lua_State *L)
{
  ENCODE_FAILS("{rows = {{name = 'a'}, {name = 'b'}, {name = print}}}",
               "json.encode: $.rows[3].name: a function cannot be encoded");
  ENCODE_FAILS("{['a b'] = {['x\"y'] = 0/0}}",
               "json.encode: $[\"a b\"][\"x\\\"y\"]: NaN cannot be encoded");
  ENCODE_FAILS("{[5] = {x = math.huge}, y = 1}",
               "json.encode: $[5].x: infinity cannot be encoded");
  ENCODE_FAILS("{co = coroutine.create(print)}",
               "json.encode: $.co: a thread cannot be encoded");
  ENCODE_FAILS("{f = io.stdout}",
               "json.encode: $.f: a userdata cannot be encoded");
  ENCODE_FAILS("{['1x'] = {_ok = {print}}}",
               "json.encode: $[\"1x\"]._ok[1]: a function cannot be "
               "encoded");
  ENCODE_FAILS("{[string.rep('k', 60)] = print}",
               "json.encode: $[<a key of 60 bytes>]: a function cannot be "
               "encoded");
  ENCODE_FAILS("setmetatable({id = print}, {__columns = {'id'}})",
               "json.encode: $.id: a function cannot be encoded");

  /* Cycles, and a table met twice without a cycle. */
  ENCODE_FAILS("(function() local t = {a = {}} t.a.b = t return t end)()",
               "json.encode: $.a.b: cycle: the table contains itself");
  ENCODE_FAILS("(function() local t = {} t[1] = t return t end)()",
               "json.encode: $[1]: cycle");
  ENCODES("(function() local s = {1} return {s, s} end)()", "[[1],[1]]");

  /* Depth: 1000 levels encode, 1001 do not. */
  HOLDS("local t = {} local cur = t\n"
        "for i = 2, 1000 do cur[1] = {} cur = cur[1] end\n"
        "local s = json.encode(t)\n"
        "return #s == 2000 and same(json.decode(s), json.decode(s))");
  ENCODE_FAILS("(function() local t = {} local cur = t\n"
               "for i = 2, 1001 do cur[1] = {} cur = cur[1] end\n"
               "return t end)()",
               "json.encode: $[1][1][1][1][1][1][1][1][1][1]...[1][1][1][1]"
               "[1][1][1][1][1][1]: tables nest deeper than 1000 levels");
}

static void test_decode(lua_State *L)
{
  HOLDS("return same(json.decode(' {\"a\" : [1, 2.5, \"x\", true, false,"
        " null, {}], \"b\":{\"c\":[]}}\\n\\t\\r'),\n"
        "  {a = json.array({1, 2.5, 'x', true, false, json.null, {}}),\n"
        "   b = {c = json.array()}})");
  HOLDS("return json.decode('\"\\\\u0000\"') == '\\0'");
  HOLDS("return json.decode('\"\\\\ud83d\\\\ude00\"') == '\\u{1f600}'");
  HOLDS("return json.decode('\"\\\\u00e9\\\\u20AC\"') == '\\u{e9}\\u{20ac}'");
  HOLDS("return json.decode('\"\\\\/\\\\\\\\\\\\\"\\\\b\\\\f\\\\n\\\\r"
        "\\\\t\"') == '/\\\\\"\\b\\f\\n\\r\\t'");
  HOLDS("return json.decode('\"\\u{e9}\\u{1f600}\"') == '\\u{e9}\\u{1f600}'");
  HOLDS("return json.decode('{\"a\":1,\"a\":2}').a == 2");
  HOLDS("local t = json.decode('{\"a\":1,\"b\":2,\"a\":3}')\n"
        "return t.a == 3 and t.b == 2");

  /* Long arrays and objects (past the members gathered on the stack),
   * the last of equal keys winning on both sides of that point. */
  HOLDS("local parts = {}\n"
        "for i = 1, 100 do parts[i] = '\"k' .. (i % 35) .. '\":' .. i end\n"
        "local t = json.decode('{' .. table.concat(parts, ',') .. '}')\n"
        "local n = 0 for _ in pairs(t) do n = n + 1 end\n"
        "return n == 35 and t.k1 == 71 and t.k30 == 100 and t.k31 == 66");
  HOLDS("for _, n in ipairs({1, 31, 32, 33, 64, 65, 1000}) do\n"
        "  local parts = {}\n"
        "  for i = 1, n do parts[i] = tostring(i * 3) end\n"
        "  local t = json.decode('[' .. table.concat(parts, ',') .. ']')\n"
        "  if #t ~= n or t[n] ~= n * 3 or t[1] ~= 3 or not json.is_array(t)\n"
        "    then return false end\n"
        "  local u = json.decode('[' .. table.concat(parts, ',') .. ',[]]')\n"
        "  if json.encode(u[n + 1]) ~= '[]' then return false end\n"
        "end\n"
        "return true");
  HOLDS("return json.decode('null') == json.null");
  HOLDS("return json.decode('[null]')[1] == json.null");
  HOLDS("return json.decode('{\"a\":null}').a == json.null");
  HOLDS("return getmetatable(json.decode('{}')) == nil");
  HOLDS("return json.decode('\"a\\\\u0022b\"') == 'a\"b'");
  HOLDS("local s = string.rep('[', 1000) .. string.rep(']', 1000)\n"
        "return json.encode(json.decode(s)) == s");

  /* Strict RFC 8259, each with its offset. */
  DECODE_FAILS("", "unexpected end of input", 0);
  DECODE_FAILS("  \n", "unexpected end of input", 3);
  DECODE_FAILS("[1,]", "expected a value", 3);
  DECODE_FAILS("[1 2]", "expected ',' or ']'", 3);
  DECODE_FAILS("{\"a\":1,}", "expected a string key", 7);
  DECODE_FAILS("{\"a\":1 \"b\":2}", "expected ',' or '}'", 7);
  DECODE_FAILS("{\"a\" 1}", "expected ':'", 5);
  DECODE_FAILS("{\"a\":}", "expected a value", 5);
  DECODE_FAILS("{a:1}", "expected a string key", 1);
  DECODE_FAILS("{1:1}", "expected a string key", 1);
  DECODE_FAILS("['a']", "expected a value", 1);
  DECODE_FAILS("[", "unexpected end of input", 1);
  DECODE_FAILS("[1", "expected ',' or ']'", 2);
  DECODE_FAILS("{", "expected a string key", 1);
  DECODE_FAILS("{\"a\"", "expected ':'", 4);
  DECODE_FAILS("01", "a number cannot start with 0", 0);
  DECODE_FAILS("[-012]", "a number cannot start with 0", 2);
  DECODE_FAILS("1.", "expected a digit after the decimal point", 2);
  DECODE_FAILS("1.e5", "expected a digit after the decimal point", 2);
  DECODE_FAILS(".5", "expected a value", 0);
  DECODE_FAILS("+1", "expected a value", 0);
  DECODE_FAILS("-", "expected a digit", 1);
  DECODE_FAILS("- 1", "expected a digit", 1);
  DECODE_FAILS("1e", "expected a digit in the exponent", 2);
  DECODE_FAILS("1e+", "expected a digit in the exponent", 3);
  DECODE_FAILS("0x10", "unexpected data after the value", 1);
  DECODE_FAILS("1e400", "number out of range", 0);
  DECODE_FAILS("[1, -1e999]", "number out of range", 4);
  DECODE_FAILS("NaN", "expected a value", 0);
  DECODE_FAILS("Infinity", "expected a value", 0);
  DECODE_FAILS("-Infinity", "expected a digit", 1);
  DECODE_FAILS("nul", "expected a value", 0);
  DECODE_FAILS("True", "expected a value", 0);
  DECODE_FAILS("[truex]", "expected ',' or ']'", 5);
  DECODE_FAILS("1 2", "unexpected data after the value", 2);
  DECODE_FAILS("{} {}", "unexpected data after the value", 3);
  DECODE_FAILS("// c\n1", "expected a value", 0);
  DECODE_FAILS("/* c */ 1", "expected a value", 0);
  DECODE_FAILS("[1] // c", "unexpected data after the value", 4);
  DECODE_FAILS("\xef\xbb\xbf" "1", "expected a value", 0);
  DECODE_FAILS("\"abc", "unterminated string", 0);
  DECODE_FAILS("[\"a\\", "unterminated string", 3);
  DECODE_FAILS("\"\\x41\"", "invalid escape in string", 1);
  DECODE_FAILS("\"\\u12\"", "expected four hex digits after \\u", 1);
  DECODE_FAILS("\"\\u12g4\"", "expected four hex digits after \\u", 1);
  DECODE_FAILS("\"ab\\ud800\"", "lone high surrogate in \\u escape", 3);
  DECODE_FAILS("\"\\ud800\\u0041\"", "lone high surrogate in \\u escape",
               1);
  DECODE_FAILS("\"\\ud800\\ud800\"", "lone high surrogate in \\u escape",
               1);
  DECODE_FAILS("\"\\udc00\"", "lone low surrogate in \\u escape", 1);
  DECODE_FAILS("\"a\tb\"", "control character in string", 2);
  DECODE_FAILS("\"a\nb\"", "control character in string", 2);
  DECODE_FAILS("{\"k\x01\":1}", "control character in string", 3);
  DECODE_FAILS("\"\xff\"", "invalid UTF-8 in string", 1);
  DECODE_FAILS("\"ab\xc3\x28\"", "invalid UTF-8 in string", 3);
  DECODE_FAILS("\"\xed\xa0\x80\"", "invalid UTF-8 in string", 1);
  DECODE_FAILS("\"\xc0\xaf\"", "invalid UTF-8 in string", 1);
  DECODE_FAILS("{\"\xe2\x82\":1}", "invalid UTF-8 in string", 2);
  DECODE_FAILS("\"\\u00e9\xff\"", "invalid UTF-8 in string", 7);
  DECODE_FAILS("[\xc3\xa9]", "expected a value", 1);

  {
    /* 1001 levels are too deep, at the 1001st bracket. */
    char deep[1003];
    memset(deep, '[', 1001);
    decode_fails(L, deep, 1001,
                 "arrays and objects nest deeper than 1000 levels", 1000,
                 __LINE__);
    memset(deep, '{', 1);
    deep[1] = '\0';
  }

  /* Messages never quote the input (a secret may be malformed JSON). */
  HOLDS("local ok, err = pcall(json.decode, '{\"password\":\"hunter2\"')\n"
        "return not ok and not err:find('hunter2', 1, true)");
  HOLDS("return not pcall(json.decode)");
}

static void test_round_trips(lua_State *L)
{
  /* Canonical texts come back byte for byte. */
  static const char *const texts[] = {
    "[]", "{}", "[[]]", "{\"a\":[]}", "null", "true", "false", "0", "-1",
    "1.5", "3.0", "-0.0", "1e+300", "\"\"", "\"\\u0000\"",
    "[1,\"2\",3.0,null,true,{\"x\":[]}]",
    "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":null}]}}}",
    "{\"big\":1026066510839283908,\"f\":2099999997690001.0,"
    "\"min\":-9223372036854775808}",
    "{\"1\":\"a\",\"3\":\"c\"}",
    "\"\\\"\\\\\\b\\f\\n\\r\\t\\u001f/\xc3\xa9\"",
  };

  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    size_t len;
    const char *got;
    lua_settop(L, 0);
    json_decode(L, texts[i], strlen(texts[i]));
    got = json_encode(L, -1, &len);
    CHECK(len == strlen(texts[i]) && strcmp(got, texts[i]) == 0,
          "round trip of %s gave %s", texts[i], got);
  }
  lua_settop(L, 0);

  /* Values come back equal, subtypes and marks included. */
  HOLDS("local v = {a = {1, 2.0, 'x', {}}, b = json.array(), c = json.null,\n"
        "  d = {['k 1'] = false, [''] = true}, n = math.mininteger}\n"
        "local back = json.decode(json.encode(v))\n"
        "return same(back.a, json.array({1, 2.0, 'x', {}}))\n"
        "  and same(back.b, json.array()) and back.c == json.null\n"
        "  and same(back.d, v.d) and back.n == math.mininteger");
}

/* Random documents (a fixed seed), half of them broken by a fragment put
 * in: whatever decodes must encode and come back the same; whatever does
 * not must fail with an offset inside the input. Every prefix of a
 * document fails too. Under the sanitizer build this also looks for bad
 * reads. */
static void test_fragments(lua_State *L)
{
  HOLDS("local seed = 20261203\n"
        "local function rnd(n)\n"
        "  seed = (seed * 1103515245 + 12345) % 2147483648\n"
        "  return seed % n + 1\n"
        "end\n"
        "local scalars = {'1', '-0', '2.5e3', '-12.5E-2', 'true',\n"
        "  'false', 'null', '\"a\"', '\"\"', '\"\\\\u00e9\\\\n\"',\n"
        "  '\"\\\\ud83d\\\\ude00\"', '12345678901234567890',\n"
        "  '9223372036854775807', '0.1', '\"\\xc3\\xa9\"'}\n"
        "local junk = {'[', ']', '{', '}', ',', ':', '\"', '\\\\',\n"
        "  '\\xff', '-', '.', 'e', '\\0', '01', '1e400', '\\\\ud800', ' '}\n"
        "local function gen(depth)\n"
        "  local r = rnd(depth > 3 and 1 or 3)\n"
        "  if r == 1 then return scalars[rnd(#scalars)] end\n"
        "  local parts = {}\n"
        "  for i = 1, rnd(4) - 1 do\n"
        "    local key = r == 2 and '' or '\"k' .. rnd(5) .. '\" : '\n"
        "    parts[i] = key .. gen(depth + 1)\n"
        "  end\n"
        "  local ws = ({'', ' ', '\\n\\t'})[rnd(3)]\n"
        "  if r == 2 then\n"
        "    return '[' .. ws .. table.concat(parts, ',' .. ws) .. ']'\n"
        "  end\n"
        "  return '{' .. table.concat(parts, ws .. ',') .. ws .. '}'\n"
        "end\n"
        "local decoded, failed = 0, 0\n"
        "for _ = 1, 30000 do\n"
        "  local s = gen(0)\n"
        "  if rnd(2) == 1 then\n"
        "    local at = rnd(#s + 1) - 1\n"
        "    s = s:sub(1, at) .. junk[rnd(#junk)] .. s:sub(at + rnd(2))\n"
        "  end\n"
        "  local ok, v = pcall(json.decode, s)\n"
        "  if ok then\n"
        "    local e = json.encode(v)\n"
        "    if json.encode(json.decode(e)) ~= e then\n"
        "      error('no round trip: ' .. s)\n"
        "    end\n"
        "    decoded = decoded + 1\n"
        "  else\n"
        "    local pat = '^json%.decode: .* at offset (%d+)$'\n"
        "    local off = tonumber(v:match(pat))\n"
        "    if not off or off > #s then error('bad error: ' .. v) end\n"
        "    failed = failed + 1\n"
        "  end\n"
        "end\n"
        "local doc = '{\"a\":[1,2.5,\"x\\\\u00e9\",{\"b\":null}],\"c\":true}'\n"
        "for n = 0, #doc - 1 do\n"
        "  local ok, v = pcall(json.decode, doc:sub(1, n))\n"
        "  if ok or not v:find('offset') then error('prefix ' .. n) end\n"
        "end\n"
        "return decoded > 10000 and failed > 10000\n");
}

static void test_null(lua_State *L)
{
  HOLDS("return json.null == cjson.null");
  HOLDS("return cjson.decode('null') == json.null");
  HOLDS("return type(json.null) == 'userdata' and json.null ~= nil");
  ENCODES("json.null", "null");
  ENCODES("nil", "null");
  ENCODES("{x = json.null}", "{\"x\":null}");

  /* Only NULL is null: another light userdata is an error. */
  lua_settop(L, 0);
  lua_pushlightuserdata(L, &checks);
  lua_setglobal(L, "other");
  ENCODE_FAILS("{p = other}",
               "json.encode: $.p: a userdata cannot be encoded");

  json_push_null(L);
  CHECK(json_is_null(L, -1), "json_push_null is not null");
  lua_pushlightuserdata(L, &checks);
  CHECK(!json_is_null(L, -1), "another light userdata is null");
  lua_pushnil(L);
  CHECK(!json_is_null(L, -1), "nil is the null value");
  lua_settop(L, 0);
}

/* The C functions: indices, lengths, stack effects. */
static void test_c_api(lua_State *L)
{
  const char *text = "[1,2]trailing";
  const char *out;
  size_t len;

  lua_settop(L, 0);
  json_decode(L, text, 5);
  CHECK(lua_gettop(L) == 1 && lua_istable(L, 1), "decode pushes one value");
  lua_pushinteger(L, 7);
  out = json_encode(L, -2, &len);
  CHECK(lua_gettop(L) == 3 && len == 5 && strcmp(out, "[1,2]") == 0 &&
            lua_tostring(L, -1) == out,
        "encode at -2 gave %s, top %d", out, lua_gettop(L));

  lua_settop(L, 0);
  lua_newtable(L);
  json_mark_array(L, -1);
  out = json_encode(L, 1, NULL);
  CHECK(strcmp(out, "[]") == 0, "marked empty table gave %s", out);

  /* A NULL text of length 0 is empty input. */
  lua_settop(L, 0);
  lua_pushcfunction(L, luaopen_jobhost_json);
  CHECK(lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1),
        "luaopen_jobhost_json");
  lua_settop(L, 0);
}

/* ---- memory ------------------------------------------------------------ */

typedef struct {
  size_t used;       /* bytes held now */
  size_t big;        /* blocks of 256 KiB or more held now */
  long fail_after;   /* allocations left before all fail; -1: never */
} tracker;

static void *tracking_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  tracker *t = ud;
  size_t old = ptr != NULL ? osize : 0;
  void *p;

  if (nsize == 0) {
    free(ptr);
    t->used -= old;
    t->big -= old >= 262144;
    return NULL;
  }
  /* Once failing, keep failing: Lua retries after a full collection. */
  if (nsize > old && t->fail_after >= 0) {
    if (t->fail_after == 0)
      return NULL;
    t->fail_after--;
  }
  p = realloc(ptr, nsize);
  if (p != NULL) {
    t->used = t->used - old + nsize;
    t->big = t->big - (old >= 262144) + (nsize >= 262144);
  }
  return p;
}

static lua_State *tracked_state(tracker *t)
{
  lua_State *L;

  t->used = 0;
  t->big = 0;
  t->fail_after = -1;
  L = lua_newstate(tracking_alloc, t);
  luaL_openlibs(L);
  luaL_requiref(L, "json", luaopen_jobhost_json, 1);
  lua_settop(L, 0);
  return L;
}

/* A raised error frees the text at once (through __close), without
 * waiting for the collector; so does a decode that fails late. */
static void test_error_frees(void)
{
  tracker t;
  lua_State *L = tracked_state(&t);
  size_t before;
  int ok;

  lua_gc(L, LUA_GCSTOP);
  run(L,
      "big = {}\n"
      "for i = 1, 20000 do big[i] = {name = 'row ' .. i, n = i} end\n"
      "big[20000].n = 0/0\n"
      "text = '[\"' .. string.rep('\\\\u00e9', 150000) .. '\\\\x\"]'\n"
      "return true",
      &ok);
  CHECK(ok, "setup: %s", lua_tostring(L, -1));
  lua_settop(L, 0);
  before = t.big;

  run(L, "return json.encode(big)", &ok);
  CHECK(!ok && strstr(lua_tostring(L, -1), "$[20000].n: NaN") != NULL,
        "encode of big: %s", lua_tostring(L, -1));
  CHECK(t.big == before, "%zu big blocks outlived the encode error",
        t.big - before);
  lua_settop(L, 0);

  run(L, "return json.decode(text)", &ok);
  CHECK(!ok && strstr(lua_tostring(L, -1), "invalid escape") != NULL,
        "decode of text: %s", lua_tostring(L, -1));
  CHECK(t.big == before, "%zu big blocks outlived the decode error",
        t.big - before);
  lua_settop(L, 0);
  run(L, "return #json.encode(big[1]) > 0", &ok);
  CHECK(ok, "state usable after the errors");
  lua_settop(L, 0);

  /* And a success leaves nothing but its result. */
  run(L, "big[20000].n = 1 local s = json.encode(big) return #s", &ok);
  CHECK(ok && lua_tointeger(L, -1) > 262144, "encode of big failed");
  lua_settop(L, 0);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCCOLLECT);
  CHECK(t.big <= before, "%zu big blocks held after a collection",
        t.big - before);
  lua_close(L);
  CHECK(t.used == 0, "%zu bytes leaked by the state", t.used);
}

/* Fails the Nth allocation of an encode and of a decode, for every N
 * until they pass: each attempt ends in an error or the right text, and
 * nothing leaks (the state's count drops to zero at close; ASan checks
 * the rest). */
static void test_allocation_failures(void)
{
  static const char setup[] =
    "value = {list = json.array(), rows = {}, s = string.rep('x\\n', 3000)}"
    "\n"
    "for i = 1, 200 do value.rows[i] = setmetatable({id = i, v = i / 4,\n"
    "  name = 'n' .. i, [i % 7 + 1] = true}, {__columns = {'name', 'id'}})"
    " end\n"
    "text = json.encode(value)\n"
    "return text, json.encode(json.decode(text))";
  tracker t;
  lua_State *L = tracked_state(&t);
  char *want[2];
  int ok, passed[2] = {0, 0};
  long n;

  ok = luaL_loadstring(L, setup) == LUA_OK &&
       lua_pcall(L, 0, 2, 0) == LUA_OK;
  CHECK(ok, "setup: %s", lua_tostring(L, -1));
  want[0] = strdup(lua_tostring(L, -2));
  want[1] = strdup(lua_tostring(L, -1));
  lua_settop(L, 0);

  for (int which = 0; which < 2; which++) {
    for (n = 0; n < 100000 && !passed[which]; n++) {
      const char *got;
      lua_getglobal(L, "json");
      lua_getfield(L, -1, which == 0 ? "encode" : "decode");
      lua_getglobal(L, which == 0 ? "value" : "text");
      t.fail_after = n;
      ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
      t.fail_after = -1;
      if (ok && which == 0) {
        got = lua_tostring(L, -1);
        CHECK(got && strcmp(got, want[0]) == 0, "encode passed with a "
              "different text after %ld allocations", n);
        passed[which] = 1;
      } else if (ok) {
        got = json_encode(L, -1, NULL);
        CHECK(strcmp(got, want[1]) == 0, "decode passed with a different "
              "value after %ld allocations", n);
        passed[which] = 1;
      } else {
        CHECK(lua_isstring(L, -1), "allocation %ld: error is no string",
              n);
      }
      lua_settop(L, 0);
    }
    CHECK(passed[which] && n > 3, "%s never passed (%ld tries)",
          which == 0 ? "encode" : "decode", n);
  }

  free(want[0]);
  free(want[1]);
  lua_close(L);
  CHECK(t.used == 0, "%zu bytes leaked", t.used);
}

int main(void)
{
  lua_State *L = new_state();

  test_integers(L);
  test_floats(L);
  test_tables(L);
  test_strings(L);
  test_paths(L);
  test_decode(L);
  test_round_trips(L);
  test_fragments(L);
  test_null(L);
  test_c_api(L);
  lua_close(L);

  test_error_frees();
  test_allocation_failures();

  printf("json: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
