#!/bin/sh
# pg.sh start|stop DIR: a throwaway PostgreSQL 15 cluster for the tests.
#
# start: initdb into DIR/data, owned by the unprivileged "postgres" user
# (PostgreSQL refuses to run as root), listening on 127.0.0.1 on a free port
# and on a socket in DIR. TCP logins need a SCRAM password; the socket
# trusts the superuser, so tests can rotate passwords and kill backends.
# Writes DIR/env with the settings a test connects with. stop: pg_ctl stop
# and remove DIR.
set -eu
cmd=$1
dir=$2
bin=/usr/lib/postgresql/15/bin
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
  password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
CONF
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    >/dev/null
  as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt \
    -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE ROLE jobhost LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE ${PG_DATABASE:-jobhost_test} OWNER jobhost;
SQL
  # The env file holds the role's password: readable by its owner only.
  (umask 077 && cat >"$dir/env") <<ENV
PGHOST=127.0.0.1
PGPORT=$port
PGUSER=jobhost
PGPASSWORD=$password
PGDATABASE=${PG_DATABASE:-jobhost_test}
PGSOCKETDIR=$dir
ENV
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg.sh start|stop DIR" >&2
  exit 2
  ;;
esac
