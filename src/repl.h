/* repl.h: `jobhost repl`, the interactive Lua prompt for writing jobs. */
#ifndef JOBHOST_REPL_H
#define JOBHOST_REPL_H

/* Runs the REPL: argv[0] is "repl", then the options (--db CONNINFO,
 * --secret ID, --write, --jobs DIR). Reads from the terminal with line
 * editing, or a script from standard input when that is not a terminal.
 * Returns the exit status: 0, 1 when an input of a script failed, 2 on
 * bad usage. */
int repl_main(int argc, char **argv);

#endif
