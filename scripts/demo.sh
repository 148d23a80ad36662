#!/bin/sh
# demo.sh: the quick start. Installs and builds jobhost, starts a
# throwaway PostgreSQL 15 in /tmp/jobhost-demo (or $JOBHOST_DEMO_DIR)
# seeded by pgbench (its
# schema, then a burst of its write traffic, spread over the last 180
# days), stores the demo role's credentials in a local secrets file, and
# runs the purge job against it. Run it again to start over.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
demo=${JOBHOST_DEMO_DIR:-/tmp/jobhost-demo}

"$top/scripts/setup.sh"

echo "== starting a throwaway PostgreSQL in $demo"
PG_DATABASE=pgbench_demo "$top/tests/pg.sh" start "$demo"
set -a
. "$demo/env"
set +a
pgbench=/usr/lib/postgresql/15/bin/pgbench

echo "== seeding it with pgbench (scale 5) and 15 s of pgbench traffic"
"$pgbench" -i -s 5 -q >/dev/null 2>&1
"$pgbench" -c 4 -j 2 -T 15 -n >/dev/null 2>&1
psql -qAt -c "UPDATE pgbench_history
                 SET mtime = mtime - random() * interval '180 days'" \
  >/dev/null
psql -qAt -c "SELECT count(*) || ' history rows, '
                     || count(*) FILTER (WHERE mtime < now() - interval '90 days')
                     || ' older than 90 days' FROM pgbench_history"

# The jobs name the secret "demo/pgbench"; here it comes from a file.
umask 077
cat >"$demo/secrets.json" <<JSON
{"demo/pgbench": {"engine": "postgres", "host": "$PGHOST", "port": $PGPORT,
  "username": "$PGUSER", "password": "$PGPASSWORD", "dbname": "$PGDATABASE"}}
JSON
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
export JOBHOST_SECRETS_FILE="$demo/secrets.json" JOBHOST_JOBS="$top/jobs"

echo "== jobhost run purge_history"
"$top/build/jobhost" run purge_history --param batch=2000
echo
echo "Try next (with JOBHOST_SECRETS_FILE=$demo/secrets.json):"
echo "  $top/build/jobhost run branch_report"
echo "  $top/build/jobhost run purge_history --dry-run --param retention='30 days'"
echo "  $top/build/jobhost check"
echo "  $top/build/jobhost repl --secret demo/pgbench"
