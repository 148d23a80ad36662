#!/bin/sh
# build-zip.sh: builds jobhost in Release mode and packs jobhost-lambda.zip,
# a function package for the AWS Lambda provided.al2023 runtime:
#
#   bootstrap   the jobhost binary (mode 0755); Lambda runs it, and main.c
#               turns into the Lambda runtime when called by that name
#   lib/        every shared library the binary needs except glibc, which
#               the runtime has; the binary's RPATH is $ORIGIN/lib
#   jobs/       the jobs (*.lua) and any CA bundles beside them (*.pem,
#               e.g. Amazon RDS's, for sslrootcert), found at run time as
#               $LAMBDA_TASK_ROOT/jobs
#
# The runtime's glibc is Amazon Linux 2023's, 2.34, so the build fails when
# any ELF file in the package needs a GLIBC_ symbol version newer than that
# (checked with objdump -T). The Dockerfile runs this same script, so the
# zip and the container image are made one way.
#
# usage: runtime/build-zip.sh [--build-dir DIR] [--jobs DIR] [--output ZIP]
#   --build-dir  where CMake builds (default: build-zip/ in the checkout)
#   --jobs       the jobs to ship (default: jobs/ in the checkout)
#   --output     the zip to write (default: BUILD_DIR/jobhost-lambda.zip)
# Environment: JOBHOST_ZIP_PARALLEL (build jobs, default 2),
# JOBHOST_GLIBC_MAX (default 2.34).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build-zip
jobs=$top/jobs
output=
glibc_max=${JOBHOST_GLIBC_MAX:-2.34}
parallel=${JOBHOST_ZIP_PARALLEL:-2}

die() {
  echo "build-zip: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
  --build-dir) build=$2; shift 2 ;;
  --jobs) jobs=$2; shift 2 ;;
  --output) output=$2; shift 2 ;;
  -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$output" ] || output=$build/jobhost-lambda.zip
case "$output" in /*) ;; *) output=$(pwd)/$output ;; esac
[ -d "$jobs" ] || die "no jobs folder at $jobs"
for tool in cmake ldd objdump readelf strip zip sort; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (see README)"
done

# 1. A Release build of the binary alone; tests are not part of a package.
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DJOBHOST_SANITIZE=OFF >/dev/null
cmake --build "$build" --target jobhost -j "$parallel" >/dev/null

# 2. The package's tree, laid out afresh each time.
root=$build/lambda-package
rm -rf "$root"
mkdir -p "$root/lib" "$root/jobs"
cp "$build/jobhost" "$root/bootstrap"
strip --strip-unneeded "$root/bootstrap"
chmod 0755 "$root/bootstrap"

# The loader must find lib/ for the binary's libraries and for theirs: a
# DT_RPATH of $ORIGIN/lib does both (a DT_RUNPATH would serve only the
# binary's own). CMakeLists.txt links with --disable-new-dtags for this.
dynamic=$(readelf -d "$root/bootstrap")
if ! echo "$dynamic" | grep -q '(RPATH).*\[\$ORIGIN/lib\]'; then
  die "bootstrap has no RPATH \$ORIGIN/lib (readelf -d)"
fi
if echo "$dynamic" | grep -q '(RUNPATH)'; then
  die "bootstrap has a RUNPATH; lib/'s own dependencies would not be found"
fi

# 3. The libraries: ldd lists the whole closure of dependencies. glibc's
# own libraries stay behind, since they must match the runtime's loader.
is_glibc() {
  case "$1" in
  linux-vdso.so.*|linux-gate.so.*|ld-linux*.so.*|ld64.so.*) return 0 ;;
  libc.so.*|libm.so.*|libmvec.so.*|libpthread.so.*|libdl.so.*) return 0 ;;
  librt.so.*|libresolv.so.*|libutil.so.*|libanl.so.*) return 0 ;;
  libnsl.so.1|libnss_*.so.*|libBrokenLocale.so.*|libthread_db.so.*) return 0 ;;
  libc_malloc_debug.so.*|libmemusage.so|libpcprofile.so) return 0 ;;
  esac
  return 1
}

# The libraries the binary loads at their first call (src/lazy.c) are
# not in its ldd listing: they and what they need are added, "SONAME =>
# PATH" as ldd writes a line.
deps=$build/lambda-deps.txt
LD_LIBRARY_PATH= ldd "$root/bootstrap" >"$deps" || die "ldd failed"
lazy=$build/lazy-libraries.txt
if [ -f "$lazy" ]; then
  while read -r name path; do
    echo "$name => $path" >>"$deps"
    LD_LIBRARY_PATH= ldd "$path" >>"$deps" || die "ldd $path failed"
  done <"$lazy"
fi
if grep -q 'not found' "$deps"; then
  grep 'not found' "$deps" >&2
  die "the binary needs libraries this machine lacks"
fi
count=0
while read -r name arrow path rest; do
  if [ "$arrow" != "=>" ] || is_glibc "$name"; then
    continue
  fi
  [ -f "$path" ] || die "ldd named $path for $name, which is not a file"
  [ -f "$root/lib/$name" ] && continue
  # The soname as the file name, the file itself (not a symlink).
  cp -L "$path" "$root/lib/$name"
  chmod 0644 "$root/lib/$name"
  count=$((count + 1))
done <"$deps"

# 4. The jobs: the Lua files (jobs and the modules they require) and CA
# bundles a secret's sslrootcert may name.
(cd "$jobs" && find . -type f \( -name '*.lua' -o -name '*.pem' \) |
  sort) | while read -r f; do
  mkdir -p "$root/jobs/$(dirname "$f")"
  cp "$jobs/$f" "$root/jobs/$f"
  chmod 0644 "$root/jobs/$f"
done
[ -n "$(ls "$root/jobs")" ] || die "no jobs (*.lua) in $jobs"

# 5. No ELF file may need a glibc newer than the runtime's. objdump -T
# lists the dynamic symbols; an undefined one carries the version it
# needs, e.g. "*UND*  0000000000000000 (GLIBC_2.34) __libc_start_main".
newest_needed() {
  objdump -T "$1" | awk '/\*UND\*/' | grep -o 'GLIBC_[0-9][0-9.]*' |
    sed 's/^GLIBC_//' | sort -V -u | tail -n 1
}
too_new=
for f in "$root/bootstrap" "$root"/lib/*; do
  v=$(newest_needed "$f")
  [ -n "$v" ] || continue
  top_v=$(printf '%s\n%s\n' "$v" "$glibc_max" | sort -V | tail -n 1)
  if [ "$top_v" != "$glibc_max" ]; then
    echo "build-zip: ${f#"$root"/} needs GLIBC_$v:" >&2
    objdump -T "$f" | awk '/\*UND\*/' | grep "GLIBC_$v" >&2 || true
    too_new="$too_new ${f#"$root"/}"
  fi
done
[ -z "$too_new" ] ||
  die "needs a glibc newer than $glibc_max:$too_new (build on an older" \
    "distribution, or with the Dockerfile)"

# 6. The zip, with Unix modes kept (zip stores them) and no extra fields.
mkdir -p "$(dirname "$output")"
rm -f "$output"
(cd "$root" && zip -q -r -X "$output" bootstrap lib jobs)
echo "build-zip: $output ($count libraries, glibc <= $glibc_max)"
