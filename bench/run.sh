#!/bin/sh
# run.sh: jobhost's benchmarks in one command, on Debian bookworm as root.
#
#   sh bench/run.sh [--quick] [--runs N] [--only trivial,purge,rows,json]
#                   [--json FILE] [--perf DIR] [--tls] [--no-install]
#                   [--head] [--all]
#
# Installs what the cases need (Debian: PostgreSQL 15, psycopg2, boto3;
# npm: pg and @aws-sdk/client-secrets-manager into bench/node), builds a
# Release jobhost in build-bench/, then runs bench/harness.py, which
# starts its own PostgreSQL and fake Secrets Manager and prints the table.
# --head builds the last commit (git archive HEAD) instead of the working
# tree; --no-install skips the package steps; --all then runs the
# module benchmarks too (bench/json, bench/rows, bench/schedule,
# bench/lambda), each as its owner wrote it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
install=1
perf=0
all=0
source="$root"
bin="$build/tree"
for arg in "$@"; do
  case "$arg" in
  --no-install) install=0 ;;
  --perf) perf=1 ;;
  --all) all=1 ;;
  --head) source="$build/head-src" bin="$build/head" ;;
  esac
done

if [ "$install" = 1 ]; then
  need=""
  for p in build-essential cmake pkg-config liblua5.4-dev libpq-dev \
    libcurl4-openssl-dev libssl-dev lua-cjson-dev libedit-dev \
    postgresql-15 postgresql-server-dev-15 postgresql-contrib \
    python3-psycopg2 python3-boto3 python3-botocore openssl; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      need="$need $p"
  done
  if [ "$perf" = 1 ] && ! command -v perf >/dev/null; then
    need="$need linux-perf"
  fi
  # Node.js may come from elsewhere than Debian (with npm inside it).
  command -v node >/dev/null || need="$need nodejs"
  command -v npm >/dev/null || need="$need npm"
  if [ -n "$need" ]; then
    echo "installing:$need" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
  if [ ! -d "$here/node/node_modules" ] ||
    [ "$here/node/package-lock.json" -nt "$here/node/node_modules" ]; then
    echo "installing the Node.js references' packages" >&2
    (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error >&2)
    touch "$here/node/node_modules"
  fi
fi

if [ "$source" != "$root" ]; then
  rm -rf "$source"
  mkdir -p "$source"
  git -C "$root" archive HEAD | tar -x -C "$source"
fi
echo "building a Release jobhost in $bin" >&2
cmake -S "$source" -B "$bin" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$bin" -j2 --target jobhost >/dev/null
cc -O2 -Wall -o "$build/launch" "$here/launch.c"

# The harness takes the options it knows; drop the ones handled here.
for arg in "$@"; do
  shift
  case "$arg" in
  --no-install | --head | --all) ;;
  *) set -- "$@" "$arg" ;;
  esac
done
status=0
/usr/bin/python3 "$here/harness.py" --jobhost "$bin/jobhost" \
  --launch "$build/launch" "$@" ||
  status=$?
[ "$all" = 1 ] || exit "$status"

echo "== bench/json" >&2
BUILD_DIR="$build/json" sh "$here/json/run.sh" || status=1
echo "== bench/schedule" >&2
cmake --build "$bin" -j2 --target bench-schedule || status=1
echo "== bench/redact" >&2
cmake --build "$bin" -j2 --target bench-redact || status=1
echo "== bench/rows" >&2
cmake --build "$bin" -j2 --target bench_rows >/dev/null
pgdir=$(mktemp -d /tmp/jobhost-bench-rows.XXXXXX)
chmod 755 "$pgdir"
trap 'sh "$root/tests/pg.sh" stop "$pgdir/pg"; rm -rf "$pgdir"' EXIT
sh "$root/tests/pg.sh" start "$pgdir/pg"
for mode in rows copy; do
  sh "$root/tests/with_pg.sh" "$pgdir/pg/env" "$bin/tests/bench_rows" \
    --mode "$mode" || status=1
done
echo "== bench/lambda" >&2
/usr/bin/python3 "$here/lambda/bench_lambda.py" --bin "$bin/jobhost" ||
  status=1
exit "$status"
