/* host.h: the Lua host. Each run gets a fresh, sandboxed lua_State with a
 * bounded heap and a deadline that a pcall cannot swallow. The state
 * carries a host_run record (in its extra space) that the bindings read:
 * the job's name, the deadline, whether the run is dry. */
#ifndef JOBHOST_HOST_H
#define JOBHOST_HOST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Why a run was stopped from outside its own code. */
typedef enum {
  HOST_RUNNING = 0,
  HOST_TIMEOUT,    /* the deadline passed */
  HOST_OOM,        /* the heap limit was reached */
  HOST_INTERRUPTED /* Ctrl-C in the REPL, or a signal */
} host_stop;

/* The run's pool of small blocks (host.c): classes of HOST_POOL_STEP
 * bytes up to HOST_POOL_LARGEST, cut from chunks of HOST_POOL_CHUNK. */
#define HOST_POOL_STEP 16
#define HOST_POOL_LARGEST 256
#define HOST_POOL_CHUNK 65536

/* How deeply coroutines may resume one another within a run. */
#define HOST_MAX_THREADS 256

typedef struct host_run {
  size_t mem_used;     /* bytes the state holds now */
  size_t mem_peak;     /* the most it held */
  size_t mem_limit;    /* 0: no limit */
  int64_t deadline_ms; /* epoch ms; 0: none */
  double timeout_s;    /* the job's timeout behind the deadline, in s;
                          0 when it is the invocation's (job.c) */
  int timeout_default; /* timeout_s is the default: the spec sets none */
  host_stop stop;      /* set once; the hook then raises on every count */
  int64_t stop_early_ms; /* a HOST_TIMEOUT that came this long before the
                            deadline (host_stop_early); 0 otherwise */
  const char *job;     /* the job's name, or NULL (not owned) */
  int dry_run;         /* every change is rolled back at the end */
  int read_only;       /* connections are default_transaction_read_only */
  void *owner;         /* the run's owner (job.c), opaque here */
  lua_State *state;    /* the state this record belongs to */
  lua_State *threads[HOST_MAX_THREADS]; /* the state, then each
                                           coroutine being resumed */
  volatile int nthreads; /* read by signal handlers */
  struct host_run *outer; /* the run that was current before this one */
  void *pool_free[HOST_POOL_LARGEST / HOST_POOL_STEP]; /* free blocks */
  char *pool_chunks;   /* the chunks, linked through their first bytes */
  char *pool_next, *pool_end; /* what is left of the newest chunk */
} host_run;

typedef struct {
  size_t mem_limit;    /* bytes; 0 for none */
  int64_t deadline_ms; /* epoch ms; 0 for none */
  const char *job;
  int dry_run;
  int read_only;
} host_options;

/* Where host_open keeps Lua's own print (in the registry): a state's
 * print writes a log record instead, so nothing but the result reaches
 * stdout. The REPL restores the original from here. */
#define HOST_PRINT_KEY "jobhost.print"

/* Where host_open keeps io's own write, output, stdout and stderr (a
 * table in the registry): a state's io refuses them, since they would
 * write around the log and its redaction. The REPL puts them back. */
#define HOST_IO_KEY "jobhost.io"

/* Set from a signal handler to interrupt whatever Lua runs now: the hook
 * and the database wait loops poll it. */
extern volatile sig_atomic_t host_interrupt_requested;

/* Interrupts whatever Lua runs now: sets host_interrupt_requested and
 * arms the hook of the current run. Async-signal-safe: call it from the
 * SIGINT and SIGTERM handlers. */
void host_interrupt(void);

/* Installs handler (or SIG_IGN) for sig, with no signal blocked while it
 * runs and no SA_RESTART: a blocking read or poll returns with EINTR, so
 * that a flag the handler sets is seen at once. */
void host_catch_signal(int sig, void (*handler)(int));

/* Opens a sandboxed state: the safe standard libraries (no os.exit,
 * os.execute, io.popen, package.loadlib, C module searchers, binary
 * chunks), the host modules preloaded (json, cjson, log, db, and every
 * module of lua/), the limits installed. Returns NULL when memory for the
 * state itself cannot be had. Close it with host_close. */
lua_State *host_open(const host_options *options);

/* Closes the state and frees its host_run. */
void host_close(lua_State *L);

/* The run record of a state opened by host_open. */
host_run *host_get(lua_State *L);

/* Milliseconds left before the deadline (may be negative), or INT64_MAX
 * when there is none. */
int64_t host_remaining_ms(lua_State *L);

/* Moves the deadline (epoch ms, 0 for none). */
void host_set_deadline(lua_State *L, int64_t deadline_ms);

/* Stops the run: from now on the hook raises the stop error at every
 * instruction, so no pcall in the job can keep it running. The first
 * reason given sticks. */
void host_stop_run(lua_State *L, host_stop why);

/* Stops the run as timed out, left_ms (> 0) before its deadline: the
 * server ended a statement at the run's statement_timeout cap, which
 * leaves that margin to roll back and report. The stop is HOST_TIMEOUT
 * (Job.Timeout), but its message says the deadline was still ahead. As
 * host_stop_run, the first reason given sticks. */
void host_stop_early(lua_State *L, int64_t left_ms);

/* Lets a stopped state run again: clears the stop reason and puts back
 * the normal hook. For the REPL, whose state outlives one input: after
 * Ctrl-C stopped an input, the session's globals are kept. Call it only
 * once the stop has unwound to the host (no Lua call of the state is
 * running). */
void host_resume(lua_State *L);

/* Checks the deadline and the interrupt flag; when either has struck,
 * stops the run and raises its error. For C bindings between blocking
 * steps. Raises a Lua error; returns only when the run may go on. */
void host_check(lua_State *L);

/* The error message of a stop reason ("run deadline exceeded", ...). */
const char *host_stop_message(lua_State *L, host_stop why);

/* lua_pcall with a message handler that adds a traceback: a string error
 * gets it appended, an error table gets a "traceback" field. Returns the
 * lua_pcall status. */
int host_pcall(lua_State *L, int nargs, int nresults);

/* Pushes a new error object: a table with "type" and "message" and the
 * host's error metatable, whose __tostring gives "type: message". The
 * caller may add fields before raising it with lua_error. */
void host_push_error(lua_State *L, const char *type, const char *message);

/* Loads a chunk of Lua text (never binary) into a state as the sandbox
 * allows, with chunkname. Pushes the function or an error message;
 * returns the luaL_loadbuffer status. */
int host_load(lua_State *L, const char *code, size_t len,
              const char *chunkname);

#endif
