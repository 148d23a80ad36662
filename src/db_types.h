/* db_types.h: the mapping between PostgreSQL's text format and Lua values,
 * both ways: result columns to Lua by the column's type OID, Lua values
 * to statement parameters (text, type OID 0, so the server infers), and
 * result rows as the tables jobs see. */
#ifndef JOBHOST_DB_TYPES_H
#define JOBHOST_DB_TYPES_H

#include <stddef.h>

#include <libpq-fe.h>
#include <lua.h>

/* Pushes the value at (row, col) of res as the binding's type table says:
 * NULL as the null value, bool as a boolean, int2/int4/int8/oid as exact
 * integers, float4/float8 as floats (NaN and infinities too), bytea as
 * raw bytes, every other type (numeric included) as the server's text.
 * type is PQftype(res, col). Raises only on memory errors. */
void db_push_value(lua_State *L, const PGresult *res, int row, int col,
                   Oid type);

/* Turns the Lua value at idx into the text of parameter $number: pushes
 * it (a string, or nil for NULL) and returns its bytes, or NULL for NULL.
 * nil and the null value are NULL, booleans "t"/"f", integers their
 * digits, floats the shortest text that reads back the same ("NaN",
 * "Infinity", "-Infinity" included), strings as they are. Raises an
 * error naming the parameter for a string holding NUL and for any other
 * type. */
const char *db_push_param(lua_State *L, int idx, int number);

/* Pushes the column names of res as an array. A name that repeats an
 * earlier one gets "_2", "_3", ... appended (the first that no column of
 * res has and no earlier repeat took), so no column is lost from a row
 * and each column whose name is unique keeps it. Raises only on memory
 * errors. */
void db_push_columns(lua_State *L, const PGresult *res);

/* Pushes the metatable shared by the rows of one result: its __columns
 * is the names array at stack index names, which gives json the column
 * order. */
void db_push_row_metatable(lua_State *L, int names);

/* Pushes row r of res as a table keyed by the names at stack index
 * names (ncols of them), the values mapped by types (PQftype of each
 * column), with the metatable at stack index mt. Raises only on memory
 * errors. */
void db_push_row(lua_State *L, const PGresult *res, int r, int ncols,
                 const Oid *types, int names, int mt);

#endif
