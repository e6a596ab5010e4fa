#!/bin/sh
# The signal index-layout experiment of issue 12 (README, Performance): the
# current `signals` layout against the proposed one (id = occurrence time in
# microseconds + 64 bits of the dedupe hash, primary key (tenant_id, id) as the
# dedupe constraint and keyset, filter indexes on (tenant_id, <filter>, id)),
# 90 transactions of 1,000 `INSERT … SELECT` rows each, fsync and synchronous
# commit on, three interleaved rounds, on a throwaway cluster. Synthetic rows,
# shaped like the peer harness's GitHub issues (no provider payload needed).
# The cluster listens only on a socket in its scratch directory (no TCP port).
#   benches/layout/pg_layout.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin | head -n 1)
dir=$(mktemp -d /tmp/poblysh-layout.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p 54999 -k $dir -c listen_addresses= -c fsync=on -c synchronous_commit=on" start >/dev/null
trap 'as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
psql="psql -h $dir -p 54999 -U postgres -q"
for t in current proposed; do
  for i in $(seq 0 89); do
    echo "\\set lo $((i * 1000 + 1))"; echo "\\set hi $((i * 1000 + 1000))"; cat "$here/pg_insert_$t.sql"
  done > "$dir/run_$t.sql"
done
for round in 1 2 3; do
  for t in current proposed; do
    $psql -f "$here/pg_schema.sql" 2>&1 | grep -v NOTICE || true
    $psql -c checkpoint
    s=$(date +%s.%N); $psql -f "$dir/run_$t.sql"; e=$(date +%s.%N)
    echo "round $round $t $(echo "$e - $s" | bc) s"
  done
done
