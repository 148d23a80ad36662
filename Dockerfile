# Dockerfile: jobhost as an AWS Lambda container image.
#
# Stage "build" compiles on Amazon Linux 2023 with its own packages and
# runs runtime/build-zip.sh, the very script that makes the zip package,
# so the image holds exactly what jobhost-lambda.zip holds: bootstrap,
# lib/ (every library but glibc) and jobs/. The final stage puts them on
# the Lambda base image for provided.al2023:
#
#   ${LAMBDA_RUNTIME_DIR}/bootstrap   (/var/runtime) the runtime
#   ${LAMBDA_RUNTIME_DIR}/lib/        found through bootstrap's RPATH
#   ${LAMBDA_TASK_ROOT}/jobs/         (/var/task) the jobs
#
# Build and try it (the base image carries the Runtime Interface
# Emulator):
#   docker build -t jobhost .
#   docker run -p 9000:8080 jobhost
#   curl -d '{"job":"purge_history"}' \
#     http://localhost:9000/2015-03-31/functions/function/invocations
# For arm64 functions: docker build --platform linux/arm64 -t jobhost .

FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build

# The toolchain and the libraries jobhost links, from Amazon Linux 2023.
# lua-devel is Lua 5.4 there.
RUN dnf install -y --setopt=install_weak_deps=False \
      gcc make cmake pkgconf-pkg-config binutils findutils tar gzip \
      zip unzip lua-devel libpq-devel libcurl-devel openssl-devel \
      libedit-devel \
 && dnf clean all

# The build finds Lua as pkg-config's "lua5.4", Debian's name; Amazon
# Linux calls the same file lua.pc.
RUN pcdir=$(pkg-config --variable=pcfiledir lua) \
 && ln -sf "$pcdir/lua.pc" "$pcdir/lua5.4.pc" \
 && pkg-config --modversion lua5.4 | grep -q '^5\.4'

# lua-cjson is not packaged for Amazon Linux 2023. It is fetched at a
# pinned version, the same 2.1.0 source Debian's lua-cjson package is
# built from (the host's json module is written against its behaviour),
# and checked against its SHA-256 before use. It is linked statically,
# as on Debian, so the binary carries it.
ARG CJSON_URL=https://deb.debian.org/debian/pool/main/l/lua-cjson/lua-cjson_2.1.0+dfsg.orig.tar.gz
ARG CJSON_SHA256=94f1fce36742cf00e99c5071b309b9f71e6e7daf60a7151f7bf4ac0a97259ac4
ENV PKG_CONFIG_PATH=/usr/local/lib64/pkgconfig
RUN curl -fsSL -o /tmp/lua-cjson.tar.gz "$CJSON_URL" \
 && echo "$CJSON_SHA256  /tmp/lua-cjson.tar.gz" | sha256sum -c - \
 && mkdir /tmp/lua-cjson \
 && tar -xzf /tmp/lua-cjson.tar.gz -C /tmp/lua-cjson --strip-components=1 \
 && cd /tmp/lua-cjson \
 && for f in lua_cjson fpconv strbuf; do \
      gcc -O2 -fPIC $(pkg-config --cflags lua5.4) -c "$f.c" -o "$f.o" \
      || exit 1; \
    done \
 && mkdir -p /usr/local/lib64/pkgconfig /usr/local/include \
 && ar rcs /usr/local/lib64/liblua5.4-cjson.a lua_cjson.o fpconv.o strbuf.o \
 && printf '%s\n' '#include <lua.h>' \
      'extern int luaopen_cjson(lua_State *l);' \
      > /usr/local/include/lua-cjson.h \
 && printf '%s\n' 'prefix=/usr/local' 'libdir=${prefix}/lib64' \
      'includedir=${prefix}/include' 'Name: lua-cjson' \
      'Description: lua-cjson 2.1.0 for Lua 5.4 (static)' \
      'Version: 2.1.0' 'Requires: lua5.4' \
      'Libs: -L${libdir} -llua5.4-cjson' 'Cflags: -I${includedir}' \
      > /usr/local/lib64/pkgconfig/lua5.4-cjson.pc \
 && rm -rf /tmp/lua-cjson /tmp/lua-cjson.tar.gz

# The same script as the zip package; then the zip is unpacked, so what
# the image ships is what the zip ships.
COPY . /src
RUN /src/runtime/build-zip.sh --build-dir /build \
      --output /build/jobhost-lambda.zip \
 && mkdir /package \
 && cd /package \
 && unzip -q /build/jobhost-lambda.zip

FROM public.ecr.aws/lambda/provided:al2023

COPY --from=build /package/bootstrap ${LAMBDA_RUNTIME_DIR}/bootstrap
COPY --from=build /package/lib ${LAMBDA_RUNTIME_DIR}/lib
COPY --from=build /package/jobs ${LAMBDA_TASK_ROOT}/jobs

# The handler names no job, so each invocation runs the job its event
# names ({"job": NAME}), as the deploy template's rules send.
CMD ["jobhost"]
