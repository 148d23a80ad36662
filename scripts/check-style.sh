#!/bin/sh
# check-style.sh: the house rules a script can see (see STYLE.md's spirit
# as kept in this repository): 80 columns in C and Lua, no banned C
# functions, output only through the log sink or the CLI files, and
# luacheck over the Lua. Exits 1 on any finding.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
status=0

wide=$(awk 'length($0) > 80 { print FILENAME ":" FNR }' \
  src/*.c src/*.h lua/*.lua jobs/*.lua)
if [ -n "$wide" ]; then
  echo "lines over 80 columns:"; echo "$wide"; status=1
fi

banned=$(grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|atol|gets)\s*\(' \
  src/*.c)
if [ -n "$banned" ]; then
  echo "banned functions:"; echo "$banned"; status=1
fi

raw=$(grep -nE '\b(fprintf|printf|puts|fputs)\b *\( *(stderr|stdout)?' \
  src/*.c | grep -vE '^src/(log|cli|main|repl)[^/:]*\.c:')
if [ -n "$raw" ]; then
  echo "output outside the log sink and the CLI:"; echo "$raw"; status=1
fi

if command -v luacheck >/dev/null 2>&1; then
  luacheck -q --no-color lua jobs tests/spec || status=1
else
  echo "luacheck not installed (Debian package lua-check)"; status=1
fi
exit $status
