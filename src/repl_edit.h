/* repl_edit.h: line editing and history for the REPL, through libedit
 * loaded when the REPL first asks for it. Only `jobhost repl` in a
 * terminal edits lines, so no job run or Lambda invocation loads libedit
 * and the libraries it needs. */
#ifndef JOBHOST_REPL_EDIT_H
#define JOBHOST_REPL_EDIT_H

/* Completion: the state-th candidate for text (0 first), malloc'd, or
 * NULL after the last, as readline's generators are. */
typedef char *repl_edit_candidate(const char *text, int state);

/* Loads libedit (libedit.so.2, else libedit.so.0, else libedit.so) and
 * sets it up: the program name, no signal handling of its own, history
 * kept to at most max_history entries and read from history_file when
 * that is not NULL, word completion from candidate with no space added
 * after a completed word. Returns 0, or -1 when libedit cannot be had
 * (then the other functions read plain lines and keep no history). */
int repl_edit_open(int max_history, const char *history_file,
                   repl_edit_candidate *candidate);

/* Reads one line with editing after showing prompt: malloc'd, without
 * its newline; NULL at the end of input or when a signal ended it. */
char *repl_edit_readline(const char *prompt);

/* Reads one line from standard input with no editing: malloc'd, without
 * its newline (nor a carriage return); NULL at the end of input. */
char *repl_edit_plain_line(void);

/* Adds line to the history unless it repeats the last entry, and saves
 * the history to file (when not NULL) readable by its owner alone. */
void repl_edit_remember(const char *line, const char *file);

#endif
