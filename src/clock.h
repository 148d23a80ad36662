/* clock.h: wall-clock and monotonic time in milliseconds. */
#ifndef JOBHOST_CLOCK_H
#define JOBHOST_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). Deadlines are kept
 * in this clock because Lambda gives them so. */
int64_t clock_now_ms(void);

/* Microseconds from CLOCK_MONOTONIC, for durations. */
int64_t clock_mono_us(void);

/* Formats epoch milliseconds as ISO-8601 UTC with milliseconds
 * ("2026-12-03T19:01:57.123Z") into buf (at least 25 bytes). */
void clock_format_iso(int64_t ms, char *buf, unsigned long size);

#endif
