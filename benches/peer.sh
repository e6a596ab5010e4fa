#!/bin/sh
# The project's side of the peer benchmark: poll + map + store N records from the
# peer harness's mock API, against Airbyte's declarative runtime (airbyte-cdk,
# pinned by the harness) on the same mock, in rotated rounds, on SQLite and on
# PostgreSQL; prints records/s of each and the per-round ratio Poblysh/Airbyte.
#
#   benches/peer.sh                         # 100,000 records, 3 rounds, both backends
#   benches/peer.sh --records 10000 --rounds 1            # smoke run (~1 min)
#   benches/peer.sh --systems poblysh-sqlite,airbyte      # without PostgreSQL
#
# PEERS=<dir> points at the harness (default ../shared/peers: `airbyte/` and
# `side-by-side/`, see their READMEs). Arguments go to side-by-side's
# sync_side_by_side.py. Needs python3 (standard library), /usr/bin/time
# (Debian: `time`), the PostgreSQL binaries for the PostgreSQL rounds, and PyPI
# on the first run (the pinned airbyte-cdk goes into a venv cached under
# ${XDG_CACHE_HOME:-~/.cache}/poblysh-peer-venv). The harness is copied to a
# scratch directory (it writes results/ there; the path is printed) and run
# against a private copy of the release binary, so a build meanwhile cannot
# change what is measured.
set -eu
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/peers}
[ -d "$PEERS/side-by-side" ] && [ -d "$PEERS/airbyte" ] || {
  echo "no peer harness at $PEERS (set PEERS=<dir with airbyte/ and side-by-side/>)" >&2
  exit 2
}
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 2; }
cargo build --release --quiet
work=$(mktemp -d "${TMPDIR:-/tmp}/poblysh-peer.XXXXXX")
cp -R "$PEERS/airbyte" "$PEERS/side-by-side" "$work/"
rm -rf "$work/airbyte/.venv"
# Since migration 13 a Signal's id is its dedupe identity (no dedupe_key
# column): the harness's "stored once" count counts distinct ids.
sed -i 's/count(DISTINCT dedupe_key)/count(DISTINCT id)/' "$work/side-by-side/sync_side_by_side.py"
cp target/release/poblysh-connectors "$work/poblysh-connectors"
venv=${XDG_CACHE_HOME:-$HOME/.cache}/poblysh-peer-venv
cdk=$(sed -n 's/^CDK_VERSION="${CDK_VERSION:-\([0-9.]*\)}"$/\1/p' "$work/airbyte/bench.sh" | head -n 1)
if [ ! -x "$venv/bin/source-declarative-manifest" ]; then
  echo "installing airbyte-cdk==${cdk:-7.39.1} into $venv (first run only)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "airbyte-cdk==${cdk:-7.39.1}"
fi
ln -s "$venv" "$work/airbyte/.venv"
echo "harness copy: $work" >&2
cd "$work/side-by-side"
python3 sync_side_by_side.py --records 100000 --rounds 3 --bin "$work/poblysh-connectors" "$@"
