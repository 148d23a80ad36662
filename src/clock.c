/* clock.c: the time sources jobhost uses for deadlines and durations. */
#include "clock.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t clock_now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_us(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int clock_thread_timer(int signo, const struct sigaction *sa,
                       timer_t *timer)
{
  struct sigevent ev;

  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = signo;
  ev._sigev_un._tid = gettid();
  if (sigaction(signo, sa, NULL) != 0)
    return -1;
  return timer_create(CLOCK_REALTIME, &ev, timer);
}

/* Writes v as n decimal digits, zero-padded, at p. */
static void digits(char *p, int64_t v, int n)
{
  while (n-- > 0) {
    p[n] = (char)('0' + v % 10);
    v /= 10;
  }
}

void clock_format_iso(int64_t ms, char *buf, unsigned long size)
{
  char out[CLOCK_ISO_LEN + 1] = "0000-00-00T00:00:00.000Z";
  int64_t days, secs, era, doe, yoe, doy, mp, year, month, day;
  unsigned long i;

  if (ms < 0)
    ms = 0;
  days = ms / 86400000;
  secs = ms / 1000 % 86400;
  /* The proleptic Gregorian date of a day count, in 400-year eras of
   * 146,097 days counted from 1 March 0000, so that a leap day ends its
   * year: gmtime_r and snprintf are not async-signal-safe, and the
   * watchdog formats a time in a signal handler. */
  days += 719468;
  era = days / 146097;
  doe = days - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = yoe + era * 400 + (month <= 2);

  digits(out, year % 10000, 4);
  digits(out + 5, month, 2);
  digits(out + 8, day, 2);
  digits(out + 11, secs / 3600, 2);
  digits(out + 14, secs / 60 % 60, 2);
  digits(out + 17, secs % 60, 2);
  digits(out + 20, ms % 1000, 3);
  for (i = 0; size > 0 && i < size - 1 && i < CLOCK_ISO_LEN; i++)
    buf[i] = out[i];
  if (size > 0)
    buf[i] = '\0';
}
