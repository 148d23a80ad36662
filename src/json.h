/* json.h: exact JSON for the host's own paths (events in, results out, log
 * fields, exports) and the Lua module "json". Integers keep all 64 bits,
 * floats are written shortest-exact, integral numbers decode as integers,
 * arrays remember that they are arrays, and null is one value shared with
 * cjson.null and db.null. */
#ifndef JOBHOST_JSON_H
#define JOBHOST_JSON_H

#include <stddef.h>

#include <lua.h>

/* Pushes the null value (a light userdata holding NULL, as cjson.null). */
void json_push_null(lua_State *L);

/* Whether the value at idx is the null value. */
int json_is_null(lua_State *L, int idx);

/* Gives the table at idx the shared array metatable, so it encodes as a
 * JSON array even when empty. */
void json_mark_array(lua_State *L, int idx);

/* Whether the value at idx is a table with the array mark (every array
 * json_decode makes has it). */
int json_is_marked_array(lua_State *L, int idx);

/* Encodes the value at idx. Pushes the text and returns it (len set when
 * not NULL). Raises a Lua error naming the key path ("$.rows[3].x") for
 * NaN, infinities, cycles, invalid UTF-8, functions and other values JSON
 * cannot hold.
 *
 * Tables: one marked as an array, or whose keys are exactly 1..n (n > 0),
 * is an array. Any other table is an object; its integer keys are written
 * as decimal strings; a key of another type is an error. Keys are sorted,
 * except that a metatable field __columns (an array of key names) puts
 * those keys first, in that order (query rows keep column order). An empty
 * unmarked table is {}.
 *
 * Numbers: integers are written with all their digits; floats with the
 * shortest of %.15g, %.16g and %.17g that reads back the same, with ".0"
 * added when that text is all digits (3.0 stays 3.0), so a float decodes
 * back as a float. Error messages name the path in Lua terms
 * ("$.rows[3].name") and never quote a value. */
const char *json_encode(lua_State *L, int idx, size_t *len);

/* Decodes text. Pushes the value; raises "json.decode: PROBLEM at offset
 * N" on malformed input, never quoting the input (it may be a secret).
 * Integral numbers within int64 become integers; arrays are marked; null
 * is the null value. */
void json_decode(lua_State *L, const char *text, size_t len);

/* Module "json": json.encode, json.decode, json.null, json.array(t)
 * (marks and returns t), json.is_array(t). */
int luaopen_jobhost_json(lua_State *L);

#endif
