/* cli_schedule.h: the `jobhost schedule` command. */
#ifndef JOBHOST_CLI_SCHEDULE_H
#define JOBHOST_CLI_SCHEDULE_H

/* Runs `jobhost schedule`; argv[0] is "schedule". Prints fire times (or a
 * converted crontab line) on stdout, messages on stderr. Returns the exit
 * status: 0 ok, 1 an invalid expression or a line EventBridge cannot
 * express, 2 bad usage. */
int cli_schedule(int argc, char **argv);

#endif
