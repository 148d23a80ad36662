#!/bin/sh
# run.sh: the json module against lua-cjson, in one process.
#
#   sh bench/json/run.sh [ROWS [RUNS]]     (defaults: 100000 rows, 7 runs)
#
# Builds the jobhost_core library (Release) in build-json-bench/ (or in
# $BUILD_DIR), links bench.c against it and the static lua-cjson, and
# prints the median time of each case for both encoders and their ratio.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-json-bench}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target jobhost_core >/dev/null
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$root/src" \
  $(pkg-config --cflags lua5.4) "$root/bench/json/bench.c" \
  "$build/libjobhost_core.a" \
  "$(cc -print-file-name=liblua5.4-cjson.a)" \
  $(pkg-config --libs lua5.4 libpq libcurl openssl libedit) -lm \
  -o "$build/json_bench"
exec "$build/json_bench" "$@"
