/* lazy.h: the libraries that libpq and libcurl link against but a run
 * seldom calls, loaded at their first call instead of at every start
 * (src/lazy.c says why and how). */
#ifndef JOBHOST_LAZY_H
#define JOBHOST_LAZY_H

#include <stddef.h>

/* One lazily bound function: its name and its library's index in
 * lazy_libraries. The tables are written by cmake/lazy_stubs.sh. */
struct lazy_symbol {
  const char *name;
  unsigned library;
};

extern const char *const lazy_libraries[];
extern const unsigned lazy_library_count;
extern const struct lazy_symbol lazy_symbols[];
extern const unsigned lazy_symbol_count;

/* The address of lazily bound function number index, its library loaded
 * if need be; the function's stub jumps there from then on. Called from
 * lazy_enter (lazy_x86_64.S) at a stub's first call. When the library or
 * the function cannot be found it logs why and ends the process with
 * status 127, as the loader does for a library missing at start: the
 * caller expects the function's own result and there is none to give. */
void *lazy_resolve(unsigned index);

/* Called when a library cannot be loaded at a first call, after the
 * FATAL record and before the process ends, with what to tell the caller
 * ("shared library L (for F) could not be loaded: ERROR", in a buffer of
 * lazy.c's that the hook may use as its own until it returns): the
 * commands report it as their failure (Runtime.LibraryNotLoaded). On the
 * thread
 * that made the call, which may be inside libpq or libcurl; the process
 * ends with status 127 when it returns. Once only: a failure within the
 * hook ends the process at once. */
typedef void (*lazy_failure_fn)(char *message, void *arg);
void lazy_on_failure(lazy_failure_fn fn, void *arg);

/* Whether every lazily bound library loads and defines its functions,
 * as the running binary would find them (its RPATH included): 0 when
 * they all do, else -1 with what is missing written into err (size n).
 * Resolves nothing; the libraries stay loaded. */
int lazy_check(char *err, size_t n);

#endif
