/* lambda_event.c: routing an invocation's event to a job. The event is
 * decoded with the host's JSON decoder in a small Lua state of its own
 * (no libraries, closed at once), so that what is checked here is what
 * job_run will see. Nothing here runs a job or talks to the network. */
#include "lambda_event.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "job.h"
#include "json.h"

/* How much of a name taken from the event goes into a message. */
#define NAME_IN_MESSAGE 100

typedef struct {
  const char *body;
  size_t len;
  const char *handler;
  char *const *known;
  lambda_route *out;
} route_args;

int lambda_job_known(char *const *known, const char *name)
{
  char *const *p;

  for (p = known; p && *p; p++)
    if (strcmp(*p, name) == 0)
      return 1;
  return 0;
}

/* The name of the EventBridge rule in an ARN of the form
 * arn:PARTITION:events:REGION:ACCOUNT:rule/[BUS/]NAME, or NULL. */
static const char *rule_name_of(const char *arn)
{
  const char *p = arn, *slash;
  int colons = 0;

  if (strncmp(arn, "arn:", 4) != 0)
    return NULL;
  for (; *p && colons < 5; p++)
    if (*p == ':')
      colons++;
  if (colons < 5 || strncmp(p, "rule/", 5) != 0)
    return NULL;
  if (!strstr(arn, ":events:"))
    return NULL;
  slash = strrchr(p, '/');
  return slash[1] ? slash + 1 : NULL;
}

static void set_error(lambda_route *out, const char *type)
{
  out->error_type = type;
  out->job[0] = '\0';
  out->via = NULL;
}

/* Job.NotFound for name (may be NULL: nothing named a job). */
static void not_found(lambda_route *out, const char *name, const char *via,
                      const char *handler, char *const *known)
{
  char names[1400];

  job_join_names(known, names, sizeof names);
  set_error(out, "Job.NotFound");
  if (name)
    snprintf(out->message, sizeof out->message,
             "job \"%.*s\" (from %s) not found; the jobs known: %s",
             NAME_IN_MESSAGE, name, via, names);
  else
    snprintf(out->message, sizeof out->message,
             "the event names no job (no \"job\" field, %s%.*s%s, no "
             "EventBridge rule in \"resources\"); the jobs known: %s",
             handler ? "the handler \"" : "no handler",
             handler ? NAME_IN_MESSAGE : 0, handler ? handler : "",
             handler ? "\" is not a job" : "", names);
}

static int decode(lua_State *L)
{
  const route_args *a = lua_touserdata(L, 1);

  json_decode(L, a->body, a->len);
  return 1;
}

/* Whether the value at idx is a table the decoder marked as an array. */
static int is_array(lua_State *L, int idx)
{
  int same;

  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  lua_newtable(L);
  json_mark_array(L, -1);
  lua_getmetatable(L, -1);
  same = lua_rawequal(L, -1, -3);
  lua_pop(L, 3);
  return same;
}

/* What the value at idx is, in JSON's words, for messages. */
static const char *json_kind(lua_State *L, int idx)
{
  if (json_is_null(L, idx))
    return "null";
  switch (lua_type(L, idx)) {
  case LUA_TTABLE: return is_array(L, idx) ? "an array" : "an object";
  case LUA_TSTRING: return "a string";
  case LUA_TNUMBER: return "a number";
  case LUA_TBOOLEAN: return "a boolean";
  }
  return "a value JSON cannot hold";
}

/* event[key] without metamethods; pushes it and returns its type, with
 * JSON null reported as LUA_TNIL (and left as pushed). */
static int field(lua_State *L, int event, const char *key)
{
  lua_pushstring(L, key);
  lua_rawget(L, event);
  if (json_is_null(L, -1))
    return LUA_TNIL;
  return lua_type(L, -1);
}

/* The protected body of lambda_route_event. */
static int route(lua_State *L)
{
  const route_args *a = lua_touserdata(L, 1);
  lambda_route *out = a->out;
  const char *p = a->body, *end = a->body + a->len;
  const char *rule = NULL;
  int event, t;

  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  if (p == end) {
    lua_newtable(L);
  } else {
    lua_pushcfunction(L, decode);
    lua_pushlightuserdata(L, (void *)a);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      set_error(out, "Event.Invalid");
      snprintf(out->message, sizeof out->message,
               "the event is not valid JSON: %s", lua_tostring(L, -1));
      return 0;
    }
    if (*p != '{' || !lua_istable(L, -1)) {
      set_error(out, "Event.Invalid");
      snprintf(out->message, sizeof out->message,
               "the event must be a JSON object, not %s",
               *p == '[' ? "an array" : json_kind(L, -1));
      return 0;
    }
  }
  event = lua_gettop(L);

  t = field(L, event, "params");
  if (t != LUA_TNIL && (t != LUA_TTABLE || is_array(L, -1))) {
    set_error(out, "Event.Invalid");
    snprintf(out->message, sizeof out->message,
             "the event's \"params\" must be a JSON object, not %s",
             json_kind(L, -1));
    return 0;
  }
  lua_pop(L, 1);

  /* 1. the event's "job" */
  t = field(L, event, "job");
  if (t != LUA_TNIL) {
    const char *name;
    size_t len;

    if (t != LUA_TSTRING) {
      set_error(out, "Event.Invalid");
      snprintf(out->message, sizeof out->message,
               "the event's \"job\" must be a string, not %s",
               json_kind(L, -1));
      return 0;
    }
    name = lua_tolstring(L, -1, &len);
    if (strlen(name) != len) {
      set_error(out, "Event.Invalid");
      snprintf(out->message, sizeof out->message,
               "the event's \"job\" holds a NUL character");
      return 0;
    }
    if (!lambda_job_known(a->known, name)) {
      not_found(out, name, "the event's \"job\"", NULL, a->known);
      return 0;
    }
    snprintf(out->job, sizeof out->job, "%s", name);
    out->via = "event";
    return 0;
  }
  lua_pop(L, 1);

  /* 2. the handler setting, when it names a job */
  if (a->handler && lambda_job_known(a->known, a->handler)) {
    snprintf(out->job, sizeof out->job, "%s", a->handler);
    out->via = "handler";
    return 0;
  }

  /* 3. the rule in resources[1] */
  if (field(L, event, "resources") == LUA_TTABLE &&
      lua_rawgeti(L, -1, 1) == LUA_TSTRING)
    rule = rule_name_of(lua_tostring(L, -1));
  if (rule) {
    if (!lambda_job_known(a->known, rule)) {
      not_found(out, rule, "the EventBridge rule's name", NULL, a->known);
      return 0;
    }
    snprintf(out->job, sizeof out->job, "%s", rule);
    out->via = "rule";
    return 0;
  }
  not_found(out, NULL, NULL, a->handler, a->known);
  return 0;
}

int lambda_route_event(const char *body, size_t len, const char *handler,
                       char *const *known, lambda_route *out)
{
  route_args a = {body, len, handler && *handler ? handler : NULL, known,
                  out};
  lua_State *L = luaL_newstate();

  memset(out, 0, sizeof *out);
  if (!L) {
    set_error(out, "Runtime.OutOfMemory");
    snprintf(out->message, sizeof out->message,
             "no memory to read the event");
    return -1;
  }
  lua_pushcfunction(L, route);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    set_error(out, "Runtime.OutOfMemory");
    snprintf(out->message, sizeof out->message,
             "no memory to read the event");
  }
  lua_close(L);
  return out->error_type ? -1 : 0;
}
