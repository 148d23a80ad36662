#!/bin/sh
# test.sh: installs and builds jobhost, then runs every test twice: in the
# normal build (build/) and in the AddressSanitizer + UBSan build
# (build-asan/). Exits non-zero on any failure.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)

# ctest prints no output for a skipped test; its reason is in the log.
skips() {
  grep -h '^SKIP' "$1/Testing/Temporary/LastTest.log" 2>/dev/null | sort -u ||
    true
}

"$top/scripts/setup.sh" "$top/build"
(cd "$top/build" && ctest --output-on-failure -j 2)
skips "$top/build"

"$top/scripts/setup.sh" "$top/build-asan" -DJOBHOST_SANITIZE=ON
(cd "$top/build-asan" &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j 2 -E '^bench')
skips "$top/build-asan"
