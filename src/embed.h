/* embed.h: the Lua modules of lua/, compiled into the binary by the build
 * (cmake/embed.cmake). The table ends with an entry whose name is NULL. */
#ifndef JOBHOST_EMBED_H
#define JOBHOST_EMBED_H

#include <stddef.h>

typedef struct {
  const char *name; /* module name: the file name without .lua */
  const char *code; /* the source text, NUL-terminated */
  size_t len;       /* its length without the NUL */
} embed_module;

extern const embed_module embed_modules[];

#endif
