#!/usr/bin/env bash
# Runs every protocol fuzz target, and the JSON writer's, briefly (cargo-fuzz / libFuzzer).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
#
# cargo-fuzz needs nightly-only rustc flags (sanitizers); on a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them. cargo-fuzz is installed into target/cargo-fuzz when it
# is not on PATH. Each target starts from its checked-in seed corpus (fuzz/corpus/<target>,
# real messages captured from PostgreSQL; for nats_wire, hand-written NATS server operations); new inputs go to a scratch directory so the
# seed corpus stays as committed. A crash leaves its input in fuzz/artifacts/<target>/ and
# fails the script.
set -euo pipefail

seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  tools="$root/target/cargo-fuzz"
  if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz into $tools" >&2
    cargo install --locked --quiet cargo-fuzz --root "$tools"
  fi
  export PATH="$tools/bin:$PATH"
fi
export RUSTC_BOOTSTRAP=1

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for target in frame replication pgoutput json nats_wire; do
  echo "fuzzing $target for ${seconds}s" >&2
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  status=0
  cargo fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" >"$log" 2>&1 || status=$?
  grep -E '^Done [0-9]+ runs' "$log" >&2 || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed (status $status); its input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
