/* cli.h: the commands of the jobhost binary. Each takes the arguments
 * after the program name (argv[0] is the command) and returns the exit
 * status: 0 success, 1 failure, 2 bad usage. */
#ifndef JOBHOST_CLI_H
#define JOBHOST_CLI_H

int cli_run(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_version(int argc, char **argv);

/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL on
 * error (errno set). */
char *cli_read_file(const char *path, unsigned long *len);

#endif
