#!/usr/bin/env bash
# Arctern's fault harness (tests/python/faultlab.py): brokers in network namespaces made
# for the run, real clients, injected faults (power cuts on lossyfs, partitions, pauses,
# a full disk), and a count of every acknowledged message afterwards.
#   scripts/faults.sh                                  # every scenario once (what CI runs)
#   scripts/faults.sh --scenario leader-paused --runs 100 --seed 7 --json out.json
#   scripts/faults.sh --runs 100 --time-budget 7200    # a campaign, no new run after 2 h
#   scripts/faults.sh --list                           # the scenarios and what each models
# Prints one line per run and a table per scenario: runs, acknowledged, lost, duplicated,
# reordered, failed runs; negative controls must report a loss in every run. Exits non-zero
# if a scenario lost, duplicated (idempotent producer), reordered, hung or crashed, or a
# negative control saw nothing.
# Needs root, /dev/fuse and iproute2. Builds target/release/arctern and arctern-lossyfs
# unless ARCTERN_BIN (and LOSSYFS_BIN) point at built ones; uses .venv (scripts/test.sh
# --setup makes it: SETUP_ONLY=1 bash scripts/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
if [ "$(id -u)" != 0 ] || [ ! -e /dev/fuse ]; then
    echo "faults.sh needs root and /dev/fuse (network namespaces, FUSE and tmpfs mounts)" >&2
    exit 2
fi
command -v ip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    SETUP_ONLY=1 bash "$ROOT/scripts/test.sh"
fi
if [ -z "${ARCTERN_BIN:-}" ]; then
    # the same build as scripts/test.sh (one feature set, so the two share target/)
    cargo build --release --locked --workspace --all-targets
    export ARCTERN_BIN="$ROOT/target/release/arctern"
fi
export LOSSYFS_BIN="${LOSSYFS_BIN:-$(dirname "$ARCTERN_BIN")/arctern-lossyfs}"
exec "$ROOT/.venv/bin/python" "$ROOT/tests/python/faultlab.py" "$@"
