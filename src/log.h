/* log.h: the one log sink. Every line jobhost writes about its work (its
 * own records, a job's ctx.log calls, libpq notices, Lua warnings) goes
 * through log_emit, as text or as one JSON object a line. */
#ifndef JOBHOST_LOG_H
#define JOBHOST_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
  LOG_TRACE,
  LOG_DEBUG,
  LOG_INFO,
  LOG_WARN,
  LOG_ERROR,
  LOG_FATAL,
  LOG_OFF
} log_level;

typedef enum { LOG_TEXT, LOG_JSON } log_format;

typedef enum {
  LOG_F_STR,  /* s: a string, quoted and escaped as needed */
  LOG_F_INT,  /* i: an integer */
  LOG_F_NUM,  /* n: a float */
  LOG_F_BOOL, /* i: 0 or 1 */
  LOG_F_JSON  /* s: already-encoded JSON (an object, array or null) */
} log_field_kind;

typedef struct {
  const char *key;
  log_field_kind kind;
  const char *s;
  int64_t i;
  double n;
} log_field;

#define LOG_S(k, v) ((log_field){(k), LOG_F_STR, (v), 0, 0})
#define LOG_I(k, v) ((log_field){(k), LOG_F_INT, NULL, (int64_t)(v), 0})
#define LOG_N(k, v) ((log_field){(k), LOG_F_NUM, NULL, 0, (v)})
#define LOG_B(k, v) ((log_field){(k), LOG_F_BOOL, NULL, (v) ? 1 : 0, 0})
#define LOG_J(k, v) ((log_field){(k), LOG_F_JSON, (v), 0, 0})

/* Sets where records go (stdout or stderr), their format and the lowest
 * level written. The defaults: stderr, text, info. */
void log_configure(FILE *out, log_format format, log_level min);

/* Reads AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL, falling back to
 * JOBHOST_LOG_FORMAT and JOBHOST_LOG_LEVEL, over the current settings. */
void log_configure_from_env(void);

/* The request id and job name stamped on every record until changed;
 * NULL clears. The strings are copied. */
void log_set_request_id(const char *id);
void log_set_job(const char *job);

/* Parses "trace".."fatal" (any case); returns -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(log_level level);

/* Whether a record at this level would be written. */
int log_enabled(log_level level);

/* Writes one record: a short lower-case message and n fields. Never
 * raises, never fails the caller; a field with a NULL key is skipped. */
void log_emit(log_level level, const char *msg, const log_field *fields,
              size_t n);

/* The record log_emit would write now (redacted, in the sink's format,
 * ending in '\n'), for a caller that must write it later where nothing
 * may be allocated or locked (a signal handler): malloc'd, its length in
 * *len and the offset of its timestamp (CLOCK_ISO_LEN characters, to be
 * rewritten with the time it is written at) in *stamp_at, (size_t)-1
 * when there is none. NULL when the level is off or memory ran out. */
char *log_format_record(log_level level, const char *msg,
                        const log_field *fields, size_t n, size_t *len,
                        size_t *stamp_at);

/* The sink's file descriptor. */
int log_fd(void);

/* log_emit for a thread that must not wait on another one (the
 * watchdog's, while a stuck thread may hold the sink's stdio lock or sit
 * in a write to a full pipe): the record is skipped when the sink is
 * locked, and the sink's descriptor is made non-blocking first, so a full
 * pipe drops the record rather than holding the caller. For a process
 * about to end. */
void log_emit_last(log_level level, const char *msg, const log_field *fields,
                   size_t n);

/* Lua module "log": log.trace/debug/info/warn/error(msg [, fields]).
 * Also installs the Lua warning function (lua_setwarnf) so warn() lands
 * in the sink. */
struct lua_State;
int luaopen_jobhost_log(struct lua_State *L);

#endif
