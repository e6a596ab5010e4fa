#!/bin/sh
# Issue 12's COPY experiment (README, Performance): is `COPY … FROM (FORMAT
# binary)` a much cheaper way for PostgreSQL to take a sync's Signals than the
# `INSERT … ON CONFLICT DO NOTHING` the writer runs? A throwaway cluster (fsync
# and synchronous commit on, --locale=C) with the `signals` layout of migration
# 13 (schema.sql: primary key plus five indexes, `json` columns); 90,000
# issue-shaped rows (src.sql) in 100-row statements, a commit every 60, three
# rounds of: A `INSERT … SELECT … ON CONFLICT DO NOTHING`, B plain `INSERT …
# SELECT`, C `COPY` of a binary file per batch, D C inside a savepoint (what a
# writer falling back on a duplicate would need). Prints seconds per variant.
#   sh benches/layout/pg_copy/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin | head -n 1)
dir=$(mktemp -d "${TMPDIR:-/tmp}/pg-copy.XXXXXX")
port=${PORT:-54998}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses= -c fsync=on -c synchronous_commit=on" start >/dev/null
trap 'as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
psql="psql -h $dir -p $port -U postgres -q"
$psql -f "$here/src.sql"
mkdir -p "$dir/chunks"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/chunks"
cols="id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, summary, priority, participants, tags, related, url, payload"
# One binary COPY file per 100-row batch, written by the server (the staging
# table is indexed on g: without it C and D scan it and look 2x faster).
for i in $(seq 0 899); do
  lo=$((i * 100 + 1)); hi=$((i * 100 + 100))
  echo "COPY (SELECT $cols FROM src WHERE g BETWEEN $lo AND $hi) TO '$dir/chunks/$i.bin' (FORMAT binary);"
done | $psql
python3 "$here/gen.py" "$dir" "$cols"
for round in 1 2 3; do
  for t in A B C D; do
    $psql -f "$here/schema.sql"
    $psql -c checkpoint
    s=$(date +%s.%N); $psql -f "$dir/$t.sql" >/dev/null; e=$(date +%s.%N)
    echo "round $round $t $(echo "$e - $s" | bc) s  rows=$($psql -At -c 'select count(*) from prop')"
  done
done
