#!/bin/sh
# with_pg.sh ENVFILE CMD...: runs CMD with the throwaway cluster's settings
# (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD) in its environment.
set -e
env_file=$1
shift
set -a
. "$env_file"
set +a
exec "$@"
