/* launch.c: runs one benchmark process and measures it.
 *
 *   launch FIGURES PROGRAM [ARG...]
 *
 * Starts PROGRAM with this process's standard streams and environment,
 * waits for it, and writes to the file FIGURES one line:
 *
 *   WALL_US CPU_US MAXRSS_KB EXIT
 *
 * WALL_US runs from just before the spawn to the return of wait4, so it
 * is the measured process's own life: not this launcher's start, nor the
 * harness's. CPU_US is its user+system time and MAXRSS_KB its peak
 * resident size, both from wait4. The process is spawned from this small
 * launcher rather than from the Python harness because a child spawned
 * from a large process carries that process's resident size into its
 * maxrss. Exits with the measured process's exit status (128+N for a
 * signal N), or 127 when it could not be started. */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static long long now_us(void)
{
  struct timespec t;

  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
  struct rusage ru;
  long long t0, wall, cpu;
  pid_t pid;
  int status, err, code;
  FILE *out;

  if (argc < 3) {
    fprintf(stderr, "usage: launch FIGURES PROGRAM [ARG...]\n");
    return 2;
  }
  t0 = now_us();
  err = posix_spawnp(&pid, argv[2], NULL, NULL, argv + 2, environ);
  if (err != 0) {
    fprintf(stderr, "launch: %s: %s\n", argv[2], strerror(err));
    return 127;
  }
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("launch: wait4");
      return 127;
    }
  }
  wall = now_us() - t0;
  cpu = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
        ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
  code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  out = fopen(argv[1], "w");
  if (!out) {
    fprintf(stderr, "launch: %s: %s\n", argv[1], strerror(errno));
    return 127;
  }
  fprintf(out, "%lld %lld %ld %d\n", wall, cpu, ru.ru_maxrss, code);
  if (fclose(out) != 0) {
    fprintf(stderr, "launch: %s: %s\n", argv[1], strerror(errno));
    return 127;
  }
  return code;
}
