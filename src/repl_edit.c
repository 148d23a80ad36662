/* repl_edit.c: the REPL's line editor. libedit (with the terminal and BSD
 * libraries it pulls in) is opened with dlopen when an interactive REPL
 * starts, not linked: a job run or a Lambda invocation never loads it,
 * which saves every cold start their relocations and a third of a
 * megabyte of resident memory. Its readline-compatible functions and
 * variables are looked up once; without libedit the REPL still works,
 * reading plain lines with no history. */
#include "repl_edit.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <editline/readline.h>

/* What the REPL uses of libedit, looked up by name. */
static struct {
  char *(*readline)(const char *);
  void (*using_history)(void);
  int (*add_history)(const char *);
  void (*stifle_history)(int);
  HIST_ENTRY *(*history_get)(int);
  int (*read_history)(const char *);
  int (*write_history)(const char *);
  char **(*completion_matches)(const char *, rl_compentry_func_t *);
  const char **readline_name;
  int *history_length;
  const char **basic_word_break_characters;
  char **completer_word_break_characters;
  rl_completion_func_t **attempted_completion_function;
  int *attempted_completion_over;
  int *completion_append_character;
  int *catch_signals;
} edit;

static int edit_loaded;
static repl_edit_candidate *candidates;

/* Where a word starts: '.' and ':' belong to a Lua name. */
static const char completion_breaks[] = " \t\n\"'()[]{},;=+-*/%^#<>~&|";

static char **complete_word(const char *text, int start, int end)
{
  (void)start;
  (void)end;
  *edit.attempted_completion_over = 1; /* Lua names, never file names */
  return edit.completion_matches(text, candidates);
}

/* Looks up name in lib into *slot; returns 0, or -1 when it is missing. */
static int find(void *lib, const char *name, void *slot)
{
  void *p = dlsym(lib, name);

  if (!p)
    return -1;
  memcpy(slot, &p, sizeof p);
  return 0;
}

static int load(void)
{
  static const char *const names[] = {"libedit.so.2", "libedit.so.0",
                                      "libedit.so", NULL};
  void *lib = NULL;
  int i, missing = 0;

  for (i = 0; names[i] && !lib; i++)
    lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return -1;
  missing |= find(lib, "readline", &edit.readline);
  missing |= find(lib, "using_history", &edit.using_history);
  missing |= find(lib, "add_history", &edit.add_history);
  missing |= find(lib, "stifle_history", &edit.stifle_history);
  missing |= find(lib, "history_get", &edit.history_get);
  missing |= find(lib, "read_history", &edit.read_history);
  missing |= find(lib, "write_history", &edit.write_history);
  missing |= find(lib, "rl_completion_matches", &edit.completion_matches);
  missing |= find(lib, "rl_readline_name", &edit.readline_name);
  missing |= find(lib, "history_length", &edit.history_length);
  missing |= find(lib, "rl_basic_word_break_characters",
                  &edit.basic_word_break_characters);
  missing |= find(lib, "rl_completer_word_break_characters",
                  &edit.completer_word_break_characters);
  missing |= find(lib, "rl_attempted_completion_function",
                  &edit.attempted_completion_function);
  missing |= find(lib, "rl_attempted_completion_over",
                  &edit.attempted_completion_over);
  missing |= find(lib, "rl_completion_append_character",
                  &edit.completion_append_character);
  missing |= find(lib, "rl_catch_signals", &edit.catch_signals);
  if (missing) {
    dlclose(lib);
    return -1;
  }
  return 0;
}

int repl_edit_open(int max_history, const char *history_file,
                   repl_edit_candidate *candidate)
{
  if (!edit_loaded && load() != 0)
    return -1;
  edit_loaded = 1;

  *edit.readline_name = "jobhost";
  *edit.catch_signals = 0;
  edit.using_history();
  edit.stifle_history(max_history);
  if (history_file)
    edit.read_history(history_file);

  /* Completion of names, with no space after one: a '.' or '(' usually
   * follows. */
  candidates = candidate;
  *edit.attempted_completion_function = complete_word;
  *edit.basic_word_break_characters = completion_breaks;
  *edit.completer_word_break_characters = (char *)completion_breaks;
  *edit.completion_append_character = '\0';
  return 0;
}

char *repl_edit_readline(const char *prompt)
{
  if (edit_loaded)
    return edit.readline(prompt);
  fputs(prompt, stdout);
  fflush(stdout);
  return repl_edit_plain_line();
}

char *repl_edit_plain_line(void)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t len = getline(&line, &cap, stdin);

  if (len < 0) {
    free(line);
    return NULL;
  }
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
    line[--len] = '\0';
  return line;
}

void repl_edit_remember(const char *line, const char *file)
{
  HIST_ENTRY *last;
  mode_t old;

  if (!edit_loaded)
    return;
  last = edit.history_get(*edit.history_length);
  if (last && last->line && strcmp(last->line, line) == 0)
    return;
  edit.add_history(line);
  if (!file)
    return;
  old = umask(077);
  edit.write_history(file);
  umask(old);
}
