/* cli_template.h: the `jobhost template` command. */
#ifndef JOBHOST_CLI_TEMPLATE_H
#define JOBHOST_CLI_TEMPLATE_H

/* Runs `jobhost template [--format cloudformation|sam] [--jobs DIR]
 * [--secret ID]...`; argv[0] is "template". Writes the template to
 * stdout only when every job is valid; messages go to stderr. Returns the
 * exit status: 0 written, 1 a job is invalid or the folder cannot be
 * read, 2 bad usage. */
int cli_template(int argc, char **argv);

#endif
