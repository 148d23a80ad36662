/* host.c: the Lua host. Owns the life of a run's lua_State: the sandbox
 * (which standard functions a job may reach), the heap limit, the
 * deadline hook, the error objects and the message handler that adds
 * tracebacks.
 *
 * Stopping a run: a job may wrap anything in pcall, so an error raised
 * once would be swallowed. When the deadline passes, the heap limit is
 * reached or an interrupt arrives, the run is marked stopped and the count
 * hook is set to fire on every instruction; from then on each Lua
 * instruction raises the stop error, in the job's pcall handlers too, so
 * control unwinds to the host however the job is written.
 *
 * Until then no hook is set at all: with a count hook Lua calls into the
 * debug machinery at every instruction, a cost every job would pay. A
 * timer (SIGALRM at the run's deadline, sent to the thread that runs Lua)
 * and the interrupt signals arm the hook instead, from their handlers, as
 * Lua allows (lua_sethook may be called asynchronously). The hook is set
 * on every thread the run is inside of: the state itself and each
 * coroutine being resumed, which the sandbox's coroutine.resume and
 * coroutine.wrap record. Where no timer can be had, the count hook polls
 * the clock every HOST_HOOK_COUNT instructions, as a fallback. A call
 * into C that never returns reaches no hook: the watchdog (watchdog.h),
 * armed with the same deadline, ends the process when the command gave
 * it a handler. */
#include "host.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>

#include "clock.h"
#include "db.h"
#include "embed.h"
#include "json.h"
#include "log.h"
#include "watchdog.h"

volatile sig_atomic_t host_interrupt_requested;

/* Instructions between two looks at the clock: about 10 to 50 µs of Lua. */
#define HOST_HOOK_COUNT 1000
/* Room left after the heap limit strikes, so the stop error, its
 * traceback and the result of the failure can still be built. */
#define HOST_OOM_HEADROOM (1024 * 1024)

#define ERROR_MT "jobhost.error"

static host_run *run_of(lua_State *L)
{
  return *(host_run **)lua_getextraspace(L);
}

host_run *host_get(lua_State *L)
{
  return run_of(L);
}

static void hook(lua_State *L, lua_Debug *ar);

/* The run whose state runs Lua now: the one opened last and not closed
 * yet (runs nest, as a REPL session's dry run inside the session). Read
 * by the signal handlers. */
static host_run *volatile current;

/* The deadline timer; timer_ready is 0 until it exists, -1 when it cannot
 * be had (the count hook then polls the clock). */
static timer_t deadline_timer;
static int timer_ready;

/* Sets the hook on every thread the run is inside of, to fire at once.
 * Safe in a signal handler: lua_sethook may be called asynchronously. */
static void arm_stop_hook(host_run *run)
{
  int i;

  for (i = 0; i < run->nthreads; i++)
    lua_sethook(run->threads[i], hook, LUA_MASKCOUNT, 1);
}

/* Arms the current run's hook, if a run is current. Async-signal-safe. */
static void arm_current(void)
{
  host_run *run = current;

  if (run)
    arm_stop_hook(run);
}

static void on_deadline(int sig)
{
  (void)sig;
  arm_current();
}

void host_interrupt(void)
{
  host_interrupt_requested = 1;
  arm_current();
}

void host_catch_signal(int sig, void (*handler)(int))
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* Creates the deadline timer: SIGALRM to this thread, the one that runs
 * Lua, never to a helper thread of a library. */
static int make_timer(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_deadline;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return clock_thread_timer(SIGALRM, &sa, &deadline_timer) == 0 ? 1 : -1;
}

/* Points the timer at the current run's deadline (none: disarmed).
 * Without a timer, the run's state polls with the count hook. */
static void arm_timer(void)
{
  host_run *run = current;
  struct itimerspec at;

  if (timer_ready == 0)
    timer_ready = make_timer();
  memset(&at, 0, sizeof at);
  if (run && run->deadline_ms > 0) {
    at.it_value.tv_sec = (time_t)(run->deadline_ms / 1000);
    at.it_value.tv_nsec = (long)(run->deadline_ms % 1000) * 1000000L;
  }
  if (timer_ready < 0 ||
      timer_settime(deadline_timer, TIMER_ABSTIME, &at, NULL) != 0) {
    if (run && run->deadline_ms > 0 && run->state)
      lua_sethook(run->state, hook, LUA_MASKCOUNT, HOST_HOOK_COUNT);
  }
  /* The last resort for a run stuck in C past its deadline: the
   * watchdog, when the command set one. Past a run that it has ended,
   * there is nothing to go back to. */
  if (watchdog_enabled()) {
    if (run && run->deadline_ms > 0)
      watchdog_arm(run->deadline_ms);
    else
      watchdog_disarm();
  }
}

/* ---- the heap --------------------------------------------------------- */

/* Small blocks (strings, row tables, their nodes: most of what a job
 * allocates) come from size classes of the run's own: a block is taken
 * from its class's free list or cut from a 64 KiB chunk, and a freed block
 * goes back on the list, a few instructions each way instead of malloc's
 * hundred. The chunks are freed with the state. Under AddressSanitizer
 * every block is the C library's, so that the sanitizer sees each one. */
#if defined(__SANITIZE_ADDRESS__)

static void block_free(host_run *run, void *p, size_t size)
{
  (void)run;
  (void)size;
  free(p);
}

static void *block_resize(host_run *run, void *p, size_t old, size_t nsize)
{
  (void)run;
  (void)old;
  return p ? realloc(p, nsize) : malloc(nsize);
}

static void pool_release(host_run *run)
{
  (void)run;
}

#else

#define HOST_POOL_MAX HOST_POOL_LARGEST

/* The class of a small block of size bytes (1..HOST_POOL_LARGEST). */
static size_t pool_class(size_t size)
{
  return (size - 1) / HOST_POOL_STEP;
}

static void *pool_take(host_run *run, size_t size)
{
  size_t c = pool_class(size);
  size_t block = (c + 1) * HOST_POOL_STEP;
  void *p = run->pool_free[c];

  if (p) {
    memcpy(&run->pool_free[c], p, sizeof p);
    return p;
  }
  if ((size_t)(run->pool_end - run->pool_next) < block) {
    /* A new chunk; what is left of the old one (less than a block of
     * this class) is not used. The chunk's first bytes link the chunks. */
    char *chunk = malloc(HOST_POOL_CHUNK);

    if (!chunk)
      return NULL;
    memcpy(chunk, &run->pool_chunks, sizeof run->pool_chunks);
    run->pool_chunks = chunk;
    run->pool_next = chunk + HOST_POOL_STEP;
    run->pool_end = chunk + HOST_POOL_CHUNK;
  }
  p = run->pool_next;
  run->pool_next += block;
  return p;
}

static void pool_give(host_run *run, void *p, size_t size)
{
  size_t c = pool_class(size);

  memcpy(p, &run->pool_free[c], sizeof p);
  run->pool_free[c] = p;
}

static void pool_release(host_run *run)
{
  while (run->pool_chunks) {
    char *chunk = run->pool_chunks;

    memcpy(&run->pool_chunks, chunk, sizeof run->pool_chunks);
    free(chunk);
  }
}

/* Frees a block of size bytes, wherever it came from. */
static void block_free(host_run *run, void *p, size_t size)
{
  if (size <= HOST_POOL_MAX)
    pool_give(run, p, size);
  else
    free(p);
}

/* Resizes a block (p NULL: a new one; old its size, 0 when new). */
static void *block_resize(host_run *run, void *p, size_t old, size_t nsize)
{
  void *q;

  if (nsize > HOST_POOL_MAX && (!p || old > HOST_POOL_MAX))
    return p ? realloc(p, nsize) : malloc(nsize);
  if (p && old <= HOST_POOL_MAX && nsize <= HOST_POOL_MAX &&
      pool_class(old) == pool_class(nsize))
    return p;
  q = nsize <= HOST_POOL_MAX ? pool_take(run, nsize) : malloc(nsize);
  if (q && p) {
    memcpy(q, p, old < nsize ? old : nsize);
    block_free(run, p, old);
  }
  return q;
}

#endif

/* The allocator: counts every byte and refuses growth past the limit. A
 * refusal marks the run stopped, so the job cannot catch the memory error
 * and carry on. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  host_run *run = ud;
  size_t old = ptr ? osize : 0;
  void *p;

  if (nsize == 0) {
    if (ptr)
      block_free(run, ptr, osize);
    run->mem_used -= old;
    return NULL;
  }
  if (run->mem_limit && nsize > old) {
    size_t limit = run->mem_limit;
    if (run->stop == HOST_OOM)
      limit += HOST_OOM_HEADROOM;
    if (run->mem_used - old + nsize > limit) {
      if (run->stop == HOST_RUNNING) {
        run->stop = HOST_OOM;
        if (run->state)
          arm_stop_hook(run);
      }
      return NULL;
    }
  }
  p = block_resize(run, ptr, old, nsize);
  if (!p)
    return NULL;
  run->mem_used = run->mem_used - old + nsize;
  if (run->mem_used > run->mem_peak)
    run->mem_peak = run->mem_used;
  return p;
}

const char *host_stop_message(lua_State *L, host_stop why)
{
  switch (why) {
  case HOST_TIMEOUT:
    if (run_of(L)->stop == HOST_TIMEOUT && run_of(L)->stop_early_ms > 0)
      return "statement stopped before the run's deadline, to leave time "
             "to roll back";
    return "run deadline exceeded";
  case HOST_OOM:
    return "memory limit exceeded";
  case HOST_INTERRUPTED:
    return "interrupted";
  case HOST_RUNNING:
    break;
  }
  return "running";
}

static int raise_stop(lua_State *L)
{
  host_run *run = run_of(L);

  if (run->stop == HOST_OOM)
    return luaL_error(L, "memory limit of %d MiB exceeded",
                      (int)(run->mem_limit / (1024 * 1024)));
  return luaL_error(L, "%s", host_stop_message(L, run->stop));
}

void host_stop_run(lua_State *L, host_stop why)
{
  host_run *run = run_of(L);

  if (run->stop == HOST_RUNNING)
    run->stop = why;
  arm_stop_hook(run);
  lua_sethook(L, hook, LUA_MASKCOUNT, 1);
}

void host_stop_early(lua_State *L, int64_t left_ms)
{
  host_run *run = run_of(L);

  if (run->stop == HOST_RUNNING && left_ms > 0)
    run->stop_early_ms = left_ms;
  host_stop_run(L, HOST_TIMEOUT);
}

void host_resume(lua_State *L)
{
  host_run *run = run_of(L);

  run->stop = HOST_RUNNING;
  run->stop_early_ms = 0;
  run->nthreads = 1;
  lua_sethook(L, NULL, 0, 0);
  if (current == run)
    arm_timer();
}

/* Notices a deadline or an interrupt; returns the stop reason now in
 * force, or HOST_RUNNING. */
static host_stop poll_stop(lua_State *L)
{
  host_run *run = run_of(L);

  if (run->stop != HOST_RUNNING)
    return run->stop;
  if (host_interrupt_requested) {
    host_interrupt_requested = 0;
    host_stop_run(L, HOST_INTERRUPTED);
  } else if (run->deadline_ms && clock_now_ms() >= run->deadline_ms) {
    host_stop_run(L, HOST_TIMEOUT);
  }
  return run->stop;
}

static void hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  if (poll_stop(L) != HOST_RUNNING)
    raise_stop(L);
  /* Armed before its time (the deadline moved, a clock step): poll now
   * and then until the deadline. */
  lua_sethook(L, hook, LUA_MASKCOUNT, HOST_HOOK_COUNT);
}

void host_check(lua_State *L)
{
  if (poll_stop(L) != HOST_RUNNING)
    raise_stop(L);
}

int64_t host_remaining_ms(lua_State *L)
{
  host_run *run = run_of(L);

  if (!run->deadline_ms)
    return INT64_MAX;
  return run->deadline_ms - clock_now_ms();
}

void host_set_deadline(lua_State *L, int64_t deadline_ms)
{
  host_run *run = run_of(L);

  run->deadline_ms = deadline_ms;
  if (current == run)
    arm_timer();
}

/* ---- error objects ----------------------------------------------------- */

/* "Database.Error [23503]: message\nDETAIL: ...\nHINT: ..." */
static int error_tostring(lua_State *L)
{
  luaL_Buffer b;
  static const char *const extra[] = {"detail", "DETAIL", "hint", "HINT",
                                      NULL};
  int i;

  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "type");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "Error");
  lua_pop(L, 1);
  lua_getfield(L, 1, "sqlstate");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, " [");
    luaL_addstring(&b, lua_tostring(L, -1));
    luaL_addchar(&b, ']');
  }
  lua_pop(L, 1);
  luaL_addstring(&b, ": ");
  lua_getfield(L, 1, "message");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  for (i = 0; extra[i]; i += 2) {
    lua_getfield(L, 1, extra[i]);
    if (lua_isstring(L, -1)) {
      luaL_addchar(&b, '\n');
      luaL_addstring(&b, extra[i + 1]);
      luaL_addstring(&b, ": ");
      luaL_addstring(&b, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

void host_push_error(lua_State *L, const char *type, const char *message)
{
  lua_createtable(L, 0, 4);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, ERROR_MT);
}

static int msgh(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TTABLE) {
    /* Raw access: the object's own metamethods do not run here. */
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, 1) == LUA_TNIL) {
      lua_pushliteral(L, "traceback");
      luaL_traceback(L, L, NULL, 1);
      lua_rawset(L, 1);
    }
    lua_settop(L, 1);
    return 1;
  }
  if (lua_type(L, 1) != LUA_TSTRING) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
      lua_replace(L, 1);
    else
      lua_pushfstring(L, "(error object is a %s value)",
                      luaL_typename(L, 1));
    lua_replace(L, 1);
  }
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int host_pcall(lua_State *L, int nargs, int nresults)
{
  int base = lua_gettop(L) - nargs;
  int status;

  lua_pushcfunction(L, msgh);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

/* ---- the sandbox ------------------------------------------------------- */

int host_load(lua_State *L, const char *code, size_t len,
              const char *chunkname)
{
  return luaL_loadbufferx(L, code, len, chunkname, "t");
}

/* load(chunk [, chunkname [, mode [, env]]]) with text chunks only. */
static int sandbox_load(lua_State *L)
{
  int env = !lua_isnone(L, 4);
  const char *mode = luaL_optstring(L, 3, "t");
  int status;

  if (strchr(mode, 'b'))
    return luaL_error(L, "binary chunks are not allowed");
  lua_settop(L, 4);
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, NULL);

    /* Lua names a chunk by its source unless told otherwise, and cuts a
     * long name to its first 60 bytes in every message: a secret in the
     * source, or given as the name, would show in part, which redaction
     * cannot recognise. Such chunks are "(load)". */
    if (!name || strlen(name) > 40)
      name = "=(load)";
    status = luaL_loadbufferx(L, s, len, name, "t");
  } else {
    /* A reader function: hand it to the original load with mode "t". */
    lua_getfield(L, LUA_REGISTRYINDEX, "jobhost.load");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (env) {
      lua_pushvalue(L, 4);
      lua_call(L, 4, 2);
    } else {
      lua_call(L, 3, 2);
    }
    return 2;
  }
  if (status != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, 4);
    if (!lua_setupvalue(L, -2, 1))
      lua_pop(L, 1);
  }
  return 1;
}

/* loadfile(filename [, mode [, env]]) with text chunks only. */
static int sandbox_loadfile(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "t");
  int env = !lua_isnone(L, 3);

  if (strchr(mode, 'b'))
    return luaL_error(L, "binary chunks are not allowed");
  if (luaL_loadfilex(L, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, 3);
    if (!lua_setupvalue(L, -2, 1))
      lua_pop(L, 1);
  }
  return 1;
}

/* print(...): the values, tostring'd and joined by tabs, as one info
 * record "print" with the text in the field "text". */
static int sandbox_print(lua_State *L)
{
  int n = lua_gettop(L), i;
  luaL_Buffer b;

  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  log_emit(LOG_INFO, "print", &LOG_S("text", lua_tostring(L, -1)), 1);
  return 0;
}

/* The message handler a job gives xpcall, guarded: once the run is
 * stopped the handler is not called and the stop error passes through.
 * Lua runs a handler for an error raised in a hook with hooks off, so a
 * handler that loops would otherwise outlive the deadline. */
static int guarded_handler(lua_State *L)
{
  if (run_of(L)->stop != HOST_RUNNING)
    return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int xpcall_done(lua_State *L, int status, lua_KContext base)
{
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)base;
}

/* xpcall(f, handler, ...) with the handler guarded; yields work as in
 * Lua's own. */
static int sandbox_xpcall(lua_State *L)
{
  int nargs = lua_gettop(L) - 2;
  int status;

  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, guarded_handler, 1);
  lua_replace(L, 2);
  /* [f, handler, args...] -> [f, handler, true, f, args...] */
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, nargs, LUA_MULTRET, 2, 2, xpcall_done);
  return xpcall_done(L, status, 2);
}

/* setmetatable(t, mt) refusing __gc: Lua runs finalizers with hooks off,
 * where no deadline can stop them. */
static int sandbox_setmetatable(lua_State *L)
{
  if (lua_istable(L, 2)) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc finalizers are not allowed in jobs: they "
                        "run where the run's deadline cannot stop them");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* coroutine.resume(co, ...) and coroutine.close(co): Lua's own (upvalue
 * 1), with co recorded among the threads the run is inside of while it
 * runs (its body, or the __close handlers close runs on it), so that a
 * stop reaches it; refused once the run is stopped, and a stop that
 * struck inside co goes on in the caller. */
static int sandbox_resume(lua_State *L)
{
  host_run *run = run_of(L);
  int status;

  if (run->stop != HOST_RUNNING)
    return raise_stop(L);
  luaL_checktype(L, 1, LUA_TTHREAD);
  if (run->nthreads == HOST_MAX_THREADS)
    return luaL_error(L, "coroutines nested too deeply");
  /* The slot is filled before the count grows: a signal handler reads
   * the list between any two steps. */
  run->threads[run->nthreads] = lua_tothread(L, 1);
  atomic_signal_fence(memory_order_seq_cst);
  run->nthreads++;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  run->nthreads--;
  if (run->stop != HOST_RUNNING)
    return raise_stop(L);
  if (status != LUA_OK)
    return lua_error(L);
  return lua_gettop(L);
}

/* A function made by coroutine.wrap: resumes its coroutine (upvalue 1)
 * through sandbox_resume (upvalue 2) and, as Lua's own does, raises the
 * coroutine's error after closing it (coroutine.close, upvalue 3), with
 * the caller's position before a message. */
static int wrapped_call(lua_State *L)
{
  int n = lua_gettop(L);

  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_rotate(L, 1, 2);
  lua_call(L, n + 1, LUA_MULTRET);
  if (lua_toboolean(L, 1))
    return lua_gettop(L) - 1;
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 1, 0);
  if (lua_type(L, 2) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, 2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.wrap(f): coroutine.create (upvalue 1), then a function that
 * resumes it as sandbox_resume does. Upvalues 2 and 3: the sandbox's
 * resume and coroutine.close. */
static int sandbox_wrap(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_pushcclosure(L, wrapped_call, 3);
  return 1;
}

/* coroutine.resume, close and wrap, recorded as the stop needs. */
static void guard_coroutines(lua_State *L)
{
  lua_getglobal(L, LUA_COLIBNAME);
  lua_getfield(L, -1, "close");
  lua_pushcclosure(L, sandbox_resume, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "close");        /* [co, close] */
  lua_getfield(L, -2, "resume");
  lua_pushcclosure(L, sandbox_resume, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "resume");       /* [co, close, resume] */
  lua_getfield(L, -3, "create");
  lua_rotate(L, -3, 1);                /* [co, create, close, resume] */
  lua_insert(L, -2);                   /* [co, create, resume, close] */
  lua_pushcclosure(L, sandbox_wrap, 3);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
}

/* Gives every metatable in the registry that has a __gc (file handles,
 * connections, streams) a __metatable field: getmetatable then returns
 * a copy without the __gc (methods and the rest as they are, for the
 * REPL's completion), so that a job cannot put a __gc of its own there.
 * Lua runs finalizers with hooks off, where no deadline could stop it. */
static void lock_finalized_metatables(lua_State *L)
{
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    int mt = lua_gettop(L);

    lua_pushliteral(L, "__gc");
    if (lua_istable(L, mt) && lua_rawget(L, mt) != LUA_TNIL) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 4);
      lua_pushnil(L);
      while (lua_next(L, mt)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -2), "__gc") == 0) {
          lua_pop(L, 1);
          continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, mt + 1);
      }
      lua_pushliteral(L, "__metatable");
      lua_insert(L, -2);
      lua_rawset(L, mt);
    }
    lua_settop(L, mt - 1);
  }
}

/* dofile(filename): text chunks only. */
static int sandbox_dofile(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);

  lua_settop(L, 1);
  if (luaL_loadfilex(L, name, "t") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* package.searchers entry: Lua files on package.path, as text only. */
static int search_lua_file(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  const char *path;
  const char *file;

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  path = lua_tostring(L, -1);
  if (!path)
    return luaL_error(L, "package.path must be a string");
  lua_getfield(L, -2, "searchpath");
  lua_pushstring(L, name);
  lua_pushstring(L, path);
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2))
    return 1; /* the message of where it looked */
  file = lua_tostring(L, -2);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, file, lua_tostring(L, -1));
  lua_pushstring(L, file);
  return 2;
}

/* package.preload loader for a module of lua/ embedded in the binary. */
static int load_embedded(lua_State *L)
{
  const embed_module *m = lua_touserdata(L, lua_upvalueindex(1));
  char chunkname[96];

  snprintf(chunkname, sizeof chunkname, "=[jobhost]/%s.lua", m->name);
  if (host_load(L, m->code, m->len, chunkname) != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static void remove_fields(lua_State *L, const char *lib,
                          const char *const *names)
{
  lua_getglobal(L, lib);
  for (; *names; names++) {
    lua_pushnil(L);
    lua_setfield(L, -2, *names);
  }
  lua_pop(L, 1);
}

/* What a job calling a function the sandbox took away is told. */
typedef struct {
  const char *lib, *name, *why;
} refusal;

static int refuse_call(lua_State *L)
{
  return luaL_error(L, "%s.%s is not available to jobs: %s",
                    lua_tostring(L, lua_upvalueindex(1)),
                    lua_tostring(L, lua_upvalueindex(2)),
                    lua_tostring(L, lua_upvalueindex(3)));
}

/* Puts a function in each refused place that raises saying why, rather
 * than leaving a nil whose call reads as a job's own bug. */
static void set_refusals(lua_State *L, const refusal *r)
{
  for (; r->lib; r++) {
    lua_getglobal(L, r->lib);
    lua_pushstring(L, r->lib);
    lua_pushstring(L, r->name);
    lua_pushstring(L, r->why);
    lua_pushcclosure(L, refuse_call, 3);
    lua_setfield(L, -2, r->name);
    lua_pop(L, 1);
  }
}

#define STDOUT_REFUSED                                                   \
  "jobs cannot write to stdout or stderr, which carry the run's result and " \
  "log: use ctx.log or print, which log a record with secrets hidden; "     \
  "write files with io.open"

static int refuse_stdout(lua_State *L)
{
  return luaL_error(L, "%s", STDOUT_REFUSED);
}

/* A refusing function of its own for name (a distinct closure, so that
 * a traceback names the function the job called). */
static void push_refusal(lua_State *L, const char *name)
{
  lua_pushstring(L, name);
  lua_pushcclosure(L, refuse_stdout, 1);
}

/* Whether the open file f (or, when f is NULL, the file at path) is the
 * process's stdout or stderr, whatever path reached it (/dev/stdout,
 * /proc/self/fd/1, the file stdout was redirected to). */
static int is_standard_stream(FILE *f, const char *path)
{
  struct stat st, out;
  int fd;

  if (f ? fstat(fileno(f), &st) != 0 : stat(path, &st) != 0)
    return 0;
  for (fd = 1; fd <= 2; fd++)
    if (fstat(fd, &out) == 0 && out.st_dev == st.st_dev &&
        out.st_ino == st.st_ino)
      return 1;
  return 0;
}

/* io.open(name, mode): Lua's own (upvalue 1), refusing to open stdout or
 * stderr for writing by another name, which would pass around the log's
 * redaction as io.write would. /dev/null stays open to all. */
static int sandbox_open(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  int writes = strpbrk(mode, "wa+") != NULL;
  luaL_Stream *stream;

  /* Checked before opening too: "w" would truncate the result's file. */
  if (writes && strcmp(name, "/dev/null") != 0 &&
      is_standard_stream(NULL, name))
    return luaL_error(L, "%s", STDOUT_REFUSED);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, LUA_MULTRET);
  if (!writes || strcmp(name, "/dev/null") == 0 ||
      !(stream = luaL_testudata(L, 1, LUA_FILEHANDLE)) || !stream->closef ||
      !is_standard_stream(stream->f, NULL))
    return lua_gettop(L);
  fclose(stream->f);
  stream->closef = NULL;
  return luaL_error(L, "%s", STDOUT_REFUSED);
}

/* The standard streams of io, put away: io.write, io.output, io.stdout
 * and io.stderr would write around the log sink, unredacted, into the
 * result's stdout or Lambda's log. Calling the functions or using the
 * handles raises a message that says what to use; the originals wait in
 * the registry at HOST_IO_KEY for the REPL. */
static void guard_stdout(lua_State *L)
{
  static const char *const names[] = {"write", "output", "stdout", "stderr",
                                      NULL};
  int i;

  lua_getglobal(L, LUA_IOLIBNAME);
  lua_createtable(L, 0, 4);
  for (i = 0; names[i]; i++) {
    lua_getfield(L, -2, names[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_IO_KEY);

  push_refusal(L, "write");
  lua_setfield(L, -2, "write");
  push_refusal(L, "output");
  lua_setfield(L, -2, "output");
  lua_getfield(L, -1, "open");
  lua_pushcclosure(L, sandbox_open, 1);
  lua_setfield(L, -2, "open");
  /* A stand-in handle: any method or field raises. */
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, refuse_stdout);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "stdout");
  lua_setfield(L, -2, "stderr");
  lua_pop(L, 1);
}

/* require "cjson": lua-cjson's module with its encode and decode made
 * exact (they are the json module's), because lua-cjson 2.1.0 decodes
 * 5432 as 5432.0 and writes int64 values with 14 digits; a job written
 * for cjson gets integers that stay integers. cjson.new() still gives
 * lua-cjson's own codec. */
static int open_cjson(lua_State *L)
{
  luaopen_cjson(L);
  luaL_requiref(L, "json", luaopen_jobhost_json, 0);
  lua_getfield(L, -1, "encode");
  lua_setfield(L, -3, "encode");
  lua_getfield(L, -1, "decode");
  lua_setfield(L, -3, "decode");
  lua_pop(L, 1);
  return 1;
}

static int open_sandbox(lua_State *L)
{
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},          {LUA_LOADLIBNAME, luaopen_package},
      {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
      {LUA_IOLIBNAME, luaopen_io},        {LUA_OSLIBNAME, luaopen_os},
      {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8},    {NULL, NULL}};
  static const luaL_Reg preload[] = {{"json", luaopen_jobhost_json},
                                     {"cjson", open_cjson},
                                     {"log", luaopen_jobhost_log},
                                     {"db", luaopen_jobhost_db},
                                     {NULL, NULL}};
  static const refusal refused[] = {
      {LUA_OSLIBNAME, "exit",
       "a run ends when its function returns; raise an error to fail it"},
      {LUA_OSLIBNAME, "execute", "jobs start no programs"},
      {LUA_IOLIBNAME, "popen", "jobs start no programs"},
      {LUA_OSLIBNAME, "setlocale",
       "the locale is the process's, shared by every run"},
      {LUA_LOADLIBNAME, "loadlib", "jobs load no C code"},
      {NULL, NULL, NULL}};
  static const char *const pkg_out[] = {"cpath", NULL};
  const luaL_Reg *r;
  const embed_module *m;

  for (r = libs; r->func; r++) {
    luaL_requiref(L, r->name, r->func, 1);
    lua_pop(L, 1);
  }
  set_refusals(L, refused);
  guard_stdout(L);
  guard_coroutines(L);
  remove_fields(L, LUA_LOADLIBNAME, pkg_out);

  /* debug could remove the deadline hook: only traceback stays. */
  luaL_requiref(L, LUA_DBLIBNAME, luaopen_debug, 0);
  lua_createtable(L, 0, 1);
  lua_getfield(L, -2, "traceback");
  lua_setfield(L, -2, "traceback");
  lua_setglobal(L, LUA_DBLIBNAME);
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getglobal(L, LUA_DBLIBNAME);
  lua_setfield(L, -2, LUA_DBLIBNAME);
  lua_pop(L, 1);

  /* print would write into stdout, where `jobhost run` puts the result
   * and Lambda its log: it becomes a log record. The REPL puts the
   * original back. */
  lua_getglobal(L, "print");
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_PRINT_KEY);
  lua_register(L, "print", sandbox_print);

  lua_register(L, "xpcall", sandbox_xpcall);
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, sandbox_setmetatable, 1);
  lua_setglobal(L, "setmetatable");

  lua_getglobal(L, "load");
  lua_setfield(L, LUA_REGISTRYINDEX, "jobhost.load");
  lua_register(L, "load", sandbox_load);
  lua_register(L, "loadfile", sandbox_loadfile);
  lua_register(L, "dofile", sandbox_dofile);

  /* require: preloaded host modules, then Lua text files on package.path;
   * no C searchers. */
  lua_getglobal(L, LUA_LOADLIBNAME);
  lua_getfield(L, -1, "searchers");
  lua_createtable(L, 2, 0);
  lua_rawgeti(L, -2, 1);
  lua_rawseti(L, -2, 1);
  lua_pushcfunction(L, search_lua_file);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -3, "searchers");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  for (r = preload; r->func; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  for (m = embed_modules; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);

  luaL_newmetatable(L, ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  /* The warning function is the log sink's. */
  luaL_requiref(L, "log", luaopen_jobhost_log, 0);
  lua_pop(L, 1);
  /* The db classes' metatables, which ctx.db needs without a require. */
  luaL_requiref(L, "db", luaopen_jobhost_db, 0);
  lua_pop(L, 1);
  lock_finalized_metatables(L);
  return 0;
}

lua_State *host_open(const host_options *options)
{
  host_run *run = calloc(1, sizeof *run);
  lua_State *L;

  if (!run)
    return NULL;
  run->mem_limit = options->mem_limit;
  run->deadline_ms = options->deadline_ms;
  run->job = options->job;
  run->dry_run = options->dry_run;
  run->read_only = options->read_only;
  L = lua_newstate(host_alloc, run);
  if (!L) {
    pool_release(run);
    free(run);
    return NULL;
  }
  run->state = L;
  *(host_run **)lua_getextraspace(L) = run;
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_pushcfunction(L, open_sandbox);
  run->threads[0] = L;
  run->nthreads = 1;
  run->outer = current;
  atomic_signal_fence(memory_order_seq_cst);
  current = run;
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    host_close(L);
    return NULL;
  }
  arm_timer();
  return L;
}

void host_close(lua_State *L)
{
  host_run *run, *volatile *link;

  if (!L)
    return;
  run = run_of(L);
  /* Out of the runs first, so that no signal reaches the state while it
   * is taken apart; the timer goes back to the run around it. */
  for (link = &current; *link; link = &(*link)->outer) {
    if (*link == run) {
      *link = run->outer;
      break;
    }
  }
  arm_timer();
  lua_close(L);
  pool_release(run);
  free(run);
}
