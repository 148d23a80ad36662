/* watchdog.h: the last resort for a run stuck past its deadline. The
 * host stops a run at its deadline through a hook that Lua calls between
 * instructions, and the database binding cancels a statement; a call
 * into C that never returns (a pathological pattern match, a read that
 * never ends) reaches neither. The watchdog waits for the time it is
 * armed with, on a thread of its own or as a timer's signal to the run's
 * thread; if it is not disarmed by then, it calls the handler the
 * command gave, which reports the run as timed out and ends the
 * process. */
#ifndef JOBHOST_WATCHDOG_H
#define JOBHOST_WATCHDOG_H

#include <stdint.h>

/* Called when the armed time passes, on the watchdog's thread or in the
 * timer's signal (see watchdog_set_signal_handler); it must end the
 * process (_exit). The stuck thread is left as it is: the handler may
 * not take a lock that thread could hold (stdio's, say: write(2) is
 * safe). */
typedef void (*watchdog_fire_fn)(void *arg);

/* Gives the handler for the process and the grace after a deadline
 * before it fires (the time the host's own stop takes: cancelling a
 * statement, rolling back); the thread starts at the first watchdog_arm.
 * Called once, before any run, by the commands that want it (`run`,
 * `lambda`). */
void watchdog_set_handler(watchdog_fire_fn fire, void *arg,
                          int64_t grace_ms);

/* watchdog_set_handler's other form, for a process with one thread that
 * runs one job (`jobhost run`): no thread of the watchdog's, but a timer
 * whose signal calls fire on the run's own thread, in the signal
 * handler, interrupting the call that did not return. fire must then be
 * async-signal-safe (write(2), _exit: no stdio, no malloc, no lock);
 * prepare, when not NULL, is called once, at the first arm, outside any
 * signal, to build what fire writes. The thread that arms is the one
 * signalled. */
void watchdog_set_signal_handler(watchdog_fire_fn fire,
                                 watchdog_fire_fn prepare, void *arg,
                                 int64_t grace_ms);

/* 1 when a handler is set. */
int watchdog_enabled(void);

/* Fires the handler the grace after deadline_ms (epoch milliseconds; a
 * deadline already past counts from now) unless disarmed or armed again
 * before then. Without a handler, or when
 * the thread cannot be started (that is logged once), nothing happens. */
void watchdog_arm(int64_t deadline_ms);

/* Disarms. When the handler has already been called, never returns: the
 * process is ending, and the caller must not report the run itself. */
void watchdog_disarm(void);

#endif
