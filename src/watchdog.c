/* watchdog.c: the watchdog of watchdog.h, in one of two forms.
 *
 * A thread (watchdog_set_handler): one for the process, started at the
 * first arm with every signal blocked (the handlers of SIGALRM, SIGTERM
 * and SIGINT belong to the thread that runs Lua). It sleeps on a
 * condition variable until the time it is armed with (CLOCK_REALTIME, as
 * deadlines are epoch milliseconds) and fires at most once; from then on
 * a disarm never returns, so that the run's own thread, should it get
 * free, stays out of the handler's way.
 *
 * A timer's signal (watchdog_set_signal_handler): a POSIX timer of its
 * own, made at the first arm, sends WATCHDOG_SIGNAL to the thread that
 * armed it at the armed time, and the handler runs there, in the signal
 * handler, interrupting the call that did not return. A second thread
 * costs a process that runs one job and exits about half a millisecond
 * (its start, and waking it on another CPU to end it at exit). */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* The handler posts over HTTP and formats JSON: room for libcurl's and
 * the log's frames. */
#define WATCHDOG_STACK (512 * 1024)

/* The timer's signal: the first real-time one, which nothing else in
 * the process uses. */
#define WATCHDOG_SIGNAL SIGRTMIN

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static watchdog_fire_fn handler;
static void *handler_arg;
static int64_t grace;
static int started;      /* 1: the thread runs; -1: it could not start */
static int64_t armed_at; /* epoch ms; 0: disarmed */
static int fired;
/* The signal form: its preparation, and its timer (made: 1; could not
 * be: -1). */
static int signal_form;
static watchdog_fire_fn prepare;
static timer_t timer;

static void *watch(void *unused)
{
  (void)unused;
  pthread_mutex_lock(&lock);
  for (;;) {
    struct timespec until;

    if (!armed_at) {
      pthread_cond_wait(&changed, &lock);
      continue;
    }
    if (clock_now_ms() >= armed_at)
      break;
    until.tv_sec = (time_t)(armed_at / 1000);
    until.tv_nsec = (long)(armed_at % 1000) * 1000000L;
    pthread_cond_timedwait(&changed, &lock, &until);
  }
  fired = 1;
  pthread_mutex_unlock(&lock);

  handler(handler_arg);
  _exit(1);
}

/* Logs that the watchdog could not start (error: an errno value);
 * returns -1. */
static int unavailable(int error)
{
  log_emit(LOG_WARN,
           "watchdog unavailable: a run stuck past its deadline in a call "
           "into C will not be stopped",
           &LOG_S("error", strerror(error)), 1);
  return -1;
}

/* Starts the thread; the lock is held. Returns 1, or -1 (logged). */
static int start_locked(void)
{
  pthread_attr_t attr;
  pthread_t thread;
  sigset_t all, old;
  int rc;

  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, WATCHDOG_STACK);
  rc = pthread_create(&thread, &attr, watch, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return unavailable(rc);
  return 1;
}

/* The timer's signal: the armed time has passed with the run still
 * out. Only async-signal-safe calls, here and in the handler. */
static void on_timer(int sig, siginfo_t *info, void *context)
{
  (void)sig;
  (void)info;
  (void)context;
  handler(handler_arg);
  _exit(1);
}

/* Makes the timer of the signal form, aimed at this thread; the lock is
 * held. Returns 1, or -1 (logged). */
static int start_timer_locked(void)
{
  struct sigaction sa;

  if (prepare)
    prepare(handler_arg);
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_timer;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  if (clock_thread_timer(WATCHDOG_SIGNAL, &sa, &timer) != 0)
    return unavailable(errno);
  return 1;
}

/* Points the signal form's timer at armed_at (0: disarmed); the lock is
 * held. */
static void set_timer_locked(void)
{
  struct itimerspec at;

  memset(&at, 0, sizeof at);
  at.it_value.tv_sec = (time_t)(armed_at / 1000);
  at.it_value.tv_nsec = (long)(armed_at % 1000) * 1000000L;
  timer_settime(timer, TIMER_ABSTIME, &at, NULL);
}

void watchdog_set_handler(watchdog_fire_fn fire, void *arg,
                          int64_t grace_ms)
{
  pthread_mutex_lock(&lock);
  handler = fire;
  handler_arg = arg;
  grace = grace_ms > 0 ? grace_ms : 0;
  signal_form = 0;
  prepare = NULL;
  pthread_mutex_unlock(&lock);
}

void watchdog_set_signal_handler(watchdog_fire_fn fire,
                                 watchdog_fire_fn prepare_fn, void *arg,
                                 int64_t grace_ms)
{
  watchdog_set_handler(fire, arg, grace_ms);
  pthread_mutex_lock(&lock);
  signal_form = 1;
  prepare = prepare_fn;
  pthread_mutex_unlock(&lock);
}

int watchdog_enabled(void)
{
  int on;

  pthread_mutex_lock(&lock);
  on = handler != NULL;
  pthread_mutex_unlock(&lock);
  return on;
}

void watchdog_arm(int64_t deadline_ms)
{
  pthread_mutex_lock(&lock);
  if (handler && started == 0)
    started = signal_form ? start_timer_locked() : start_locked();
  if (started > 0 && !fired) {
    int64_t now = clock_now_ms();

    /* A deadline already past is being acted on now: the grace runs
     * from here. */
    armed_at = (deadline_ms > now ? deadline_ms : now) + grace;
    if (signal_form)
      set_timer_locked();
    else
      pthread_cond_signal(&changed);
  }
  pthread_mutex_unlock(&lock);
}

void watchdog_disarm(void)
{
  int was_fired;

  pthread_mutex_lock(&lock);
  was_fired = fired;
  if (armed_at) {
    armed_at = 0;
    if (signal_form)
      set_timer_locked();
    else
      pthread_cond_signal(&changed);
  }
  pthread_mutex_unlock(&lock);
  /* The handler ends the process: wait for it. */
  while (was_fired)
    pause();
}
