#!/usr/bin/env bash
# The fault scenarios of tests/faults.rs at full counts (CI runs reduced ones inside
# `cargo test`): 50 consumer crashes (SIGKILL, half with manual and half with automatic
# commit), 20 immediate server shutdowns + restarts, 100 connection cuts/stalls through the
# fault proxy. Prints each scenario's counts (records checked, duplicates, lost).
#
# Usage: scripts/soak.sh [CRASHES [RESTARTS [CUTS]]]
# Replay a failure with the seed it printed: PG_CHANGESTREAM_FAULT_SEED=<seed> scripts/soak.sh
# The server comes from the usual places (PG_CHANGESTREAM_TEST_URL, Docker, PG_BIN /
# local binaries); the restart scenario needs local binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PG_CHANGESTREAM_SOAK_CRASHES=${1:-50}
export PG_CHANGESTREAM_SOAK_RESTARTS=${2:-20}
export PG_CHANGESTREAM_SOAK_CUTS=${3:-100}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-features --test main -- faults:: --nocapture 2>&1 | tee "$log" >/dev/null || status=$?
echo "--- soak: crashes=$PG_CHANGESTREAM_SOAK_CRASHES restarts=$PG_CHANGESTREAM_SOAK_RESTARTS cuts=$PG_CHANGESTREAM_SOAK_CUTS"
grep -E 'fault seed|survived|stalls over|^test |panicked|test result' "$log" || true
if [ "$status" -ne 0 ]; then
  grep -E -A12 'panicked' "$log" | head -80 >&2 || true
  echo "soak failed (status $status); replay with the seed printed above" >&2
fi
exit "$status"
