/* clock.h: wall-clock and monotonic time in milliseconds. */
#ifndef JOBHOST_CLOCK_H
#define JOBHOST_CLOCK_H

#include <signal.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). Deadlines are kept
 * in this clock because Lambda gives them so. */
int64_t clock_now_ms(void);

/* Microseconds from CLOCK_MONOTONIC, for durations. */
int64_t clock_mono_us(void);

/* Makes a POSIX timer on CLOCK_REALTIME that sends signo to the calling
 * thread (never to a helper thread of a library), installing sa as the
 * signal's action first. Returns 0, or -1 with errno set. */
int clock_thread_timer(int signo, const struct sigaction *sa,
                       timer_t *timer);

/* The length of clock_format_iso's text. */
#define CLOCK_ISO_LEN 24

/* Formats epoch milliseconds (0 to year 9999) as ISO-8601 UTC with
 * milliseconds ("2026-12-03T19:01:57.123Z") into buf (at least
 * CLOCK_ISO_LEN + 1 bytes; cut to fit a smaller one). Async-signal-safe:
 * arithmetic only. */
void clock_format_iso(int64_t ms, char *buf, unsigned long size);

#endif
