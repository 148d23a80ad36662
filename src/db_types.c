/* db_types.c: values between PostgreSQL's text format and Lua. Results
 * arrive as text (the binding never asks for binary results), so each
 * column is parsed by its type OID; integers go through strtoll so that
 * every int8 stays exact, never through a double. Parameters go out as
 * text with type OID 0 and the server infers their types. Rows become
 * tables keyed by column name, sharing one metatable per result. */
#include "db_types.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json.h"

/* Type OIDs from PostgreSQL's pg_type.dat; stable across versions. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701

static int hex_value(int ch)
{
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

static int is_octal(char ch)
{
  return ch >= '0' && ch <= '7';
}

/* Decodes bytea text: the hex format ("\x0a0b", the default since
 * PostgreSQL 9.0) or, when a session set bytea_output=escape, the escape
 * format ("\\" and "\ooo"). */
static void push_bytea(lua_State *L, const char *s, size_t len)
{
  luaL_Buffer b;
  size_t i;

  if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
    char *out = luaL_buffinitsize(L, &b, (len - 2) / 2);
    size_t n = 0;

    for (i = 2; i + 1 < len; i += 2) {
      int hi = hex_value((unsigned char)s[i]);
      int lo = hex_value((unsigned char)s[i + 1]);

      if (hi < 0 || lo < 0)
        break;
      out[n++] = (char)(hi << 4 | lo);
    }
    luaL_pushresultsize(&b, n);
    return;
  }

  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\\') {
      luaL_addchar(&b, '\\');
      i++;
    } else if (s[i] == '\\' && i + 3 < len && is_octal(s[i + 1]) &&
               is_octal(s[i + 2]) && is_octal(s[i + 3])) {
      int v = (s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0');

      luaL_addchar(&b, (char)v);
      i += 3;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Reads the server's text of an integer type (an optional '-', then
 * digits) exactly over the int64 range, without strtoll's locale and
 * errno work: this runs for every integer of every row. Returns 0, or
 * -1 for anything else (the caller keeps the text). */
static int parse_integer(const char *s, size_t len, lua_Integer *out)
{
  const char *end = s + len;
  int negative = len > 0 && *s == '-';
  uint64_t v = 0, limit = negative ? (uint64_t)INT64_MAX + 1 : INT64_MAX;

  if (negative)
    s++;
  if (s == end || end - s > 19)
    return -1;
  for (; s < end; s++) {
    unsigned d = (unsigned char)*s - '0';

    if (d > 9 || v > (limit - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = negative ? (lua_Integer)(0 - v) : (lua_Integer)v;
  return 0;
}

void db_push_value(lua_State *L, const PGresult *res, int row, int col,
                   Oid type)
{
  const char *s;
  size_t len;

  if (PQgetisnull(res, row, col)) {
    json_push_null(L);
    return;
  }
  s = PQgetvalue(res, row, col);
  len = (size_t)PQgetlength(res, row, col);

  switch (type) {
  case OID_BOOL:
    lua_pushboolean(L, s[0] == 't');
    return;
  case OID_INT2:
  case OID_INT4:
  case OID_INT8:
  case OID_OID: {
    lua_Integer v;

    if (parse_integer(s, len, &v) == 0) {
      lua_pushinteger(L, v);
      return;
    }
    break; /* cannot happen for these types; the text is still right */
  }
  case OID_FLOAT4:
  case OID_FLOAT8: {
    char *end;
    double v = strtod(s, &end); /* reads NaN, Infinity, -Infinity too */

    if (end != s && *end == '\0') {
      lua_pushnumber(L, (lua_Number)v);
      return;
    }
    break;
  }
  case OID_BYTEA:
    push_bytea(L, s, len);
    return;
  default:
    break;
  }
  lua_pushlstring(L, s, len);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as d. */
static void format_float(double d, char *buf, size_t size)
{
  int prec;

  if (isnan(d)) {
    snprintf(buf, size, "NaN");
    return;
  }
  if (isinf(d)) {
    snprintf(buf, size, "%s", d > 0 ? "Infinity" : "-Infinity");
    return;
  }
  for (prec = 15; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, d);
    if (strtod(buf, NULL) == d)
      return;
  }
}

const char *db_push_param(lua_State *L, int idx, int number)
{
  char buf[64];

  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    lua_pushnil(L);
    return NULL;
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, idx) ? "t" : "f");
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
    else
      format_float((double)lua_tonumber(L, idx), buf, sizeof buf);
    lua_pushstring(L, buf);
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);

    if (strlen(s) != len)
      luaL_error(L, "parameter $%d: a string holding a NUL byte cannot be "
                    "sent as text (bytea wants decode(hex, 'hex'))",
                 number);
    lua_pushvalue(L, idx);
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (json_is_null(L, idx)) {
      lua_pushnil(L);
      return NULL;
    }
    /* fall through */
  default:
    luaL_error(L, "parameter $%d: cannot bind a %s value", number,
               luaL_typename(L, idx));
  }
  return lua_tostring(L, -1);
}

/* ---- rows ---------------------------------------------------------------- */

/* Pushes the column names of res as an array. A name that repeats an
 * earlier one ("SELECT a.id, b.id") gets "_2", "_3", ... appended, the
 * first that no column of res has and no earlier repeat took, so that no
 * column is lost from a row and no column loses its own name to another's
 * suffix ("a, a, a_2" gives "a, a_3, a_2"); the array shows the keys as
 * they are. */
void db_push_columns(lua_State *L, const PGresult *res)
{
  int n = PQnfields(res);
  int i;

  lua_createtable(L, n, 0);
  lua_createtable(L, 0, n); /* name -> the column owning it, or 0 */

  /* Every name a column has is its first holder's. */
  for (i = 0; i < n; i++) {
    lua_pushstring(L, PQfname(res, i));
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pushstring(L, PQfname(res, i));
      lua_pushinteger(L, i + 1);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
  }

  for (i = 0; i < n; i++) {
    const char *name = PQfname(res, i);
    int k;

    lua_pushstring(L, name);
    lua_rawget(L, -2);
    if (lua_tointeger(L, -1) == i + 1) {
      lua_pop(L, 1);
      lua_pushstring(L, name);
      lua_rawseti(L, -3, i + 1);
      continue;
    }
    lua_pop(L, 1);
    for (k = 2;; k++) {
      lua_pushfstring(L, "%s_%d", name, k);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      lua_pop(L, 2);
    }
    lua_pushvalue(L, -1);
    lua_pushinteger(L, 0);
    lua_rawset(L, -4);
    lua_rawseti(L, -3, i + 1);
  }
  lua_pop(L, 1);
}

/* Pushes the metatable shared by the rows of one result: __columns gives
 * json the column order. names is a stack index. */
void db_push_row_metatable(lua_State *L, int names)
{
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, names);
  lua_setfield(L, -2, "__columns");
}

/* Pushes row r of res as a table keyed by the names at stack index names,
 * with the metatable at stack index mt. */
void db_push_row(lua_State *L, const PGresult *res, int r, int ncols,
                     const Oid *types, int names, int mt)
{
  int i;

  lua_createtable(L, 0, ncols);
  for (i = 0; i < ncols; i++) {
    lua_rawgeti(L, names, i + 1);
    db_push_value(L, res, r, i, types[i]);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
}
