/* redact.h: the values that must never be shown. The secrets layer
 * registers each secret value it hands out (the whole value, and the
 * password-like fields of a JSON secret); the log sink and the run's
 * outcome (result, error message, stack trace) pass through redact_copy,
 * so a job that logs or returns a secret by mistake shows "[redacted]"
 * instead. This is a second line of defence: no path of jobhost's own
 * puts a secret in a log or an error in the first place. */
#ifndef JOBHOST_REDACT_H
#define JOBHOST_REDACT_H

#include <stddef.h>

/* The shortest value registered: shorter ones would blank out ordinary
 * words. */
#define REDACT_MIN_LEN 4

/* Registers a value (copied), with no limit on how many. Values shorter
 * than REDACT_MIN_LEN, and ones already known, are ignored. Returns 0, or
 * -1 when memory ran out and some form of the value is not registered:
 * the value must then not be handed out. Thread-compatible, not
 * thread-safe. */
int redact_add(const char *value, size_t len);

/* Whether a name (of a log field, a table key, a secret's JSON member)
 * says its value is a credential: it holds "password", "passwd", "pwd",
 * "secret" or "token" in any case ("db_password", "Password", "apiToken").
 * With keys set, also "key" ("api_key", "privateKey"). */
int redact_credential_name(const char *name, size_t len, int keys);

/* Whether any value is registered. */
int redact_active(void);

/* Returns a malloc'd copy of s with every registered value replaced by
 * "[redacted]" and its length in *outlen, or NULL when s holds none.
 * When memory runs out, the copy is "\"[redacted]\"": the whole text is
 * withheld, never shown as it is. */
char *redact_copy(const char *s, size_t len, size_t *outlen);

/* redact_copy for a JSON text (a result, a table logged as JSON): the
 * marks are fitted to its tokens, so a valid JSON text stays valid. A
 * value inside a string is hidden in whole characters and escapes, the
 * quotes kept ("[redacted]" in place of a secret that ends in a quote
 * or a backslash); a number or a literal holding one becomes the string
 * "[redacted]" (a PIN inside {"n":1234}); a value across tokens hides
 * its part of each, the punctuation between them shown. A text that is
 * not JSON is redacted as redact_copy does. */
char *redact_json_copy(const char *s, size_t len, size_t *outlen);

/* Forgets every value (tests). */
void redact_clear(void);

#endif
