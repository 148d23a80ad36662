#!/bin/sh
# setup.sh [BUILD_DIR [CMAKE_ARGS...]]: installs what jobhost needs from
# Debian bookworm's packages (as root) and builds it. The default build
# folder is build/.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
[ $# -gt 0 ] && shift

packages="build-essential cmake pkg-config liblua5.4-dev lua5.4 libpq-dev
  libcurl4-openssl-dev libssl-dev lua-cjson-dev libedit-dev postgresql-15
  postgresql-server-dev-15
  postgresql-contrib python3 python3-botocore tzdata ca-certificates zip
  unzip binutils openssl tmux lua-check"
missing=
for p in $packages; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null |
    grep -q '^installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root to install:" $missing >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: installing$missing (a few minutes on a fresh machine)" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi

cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
