#!/usr/bin/env bash
# The test command of pg-changestream:
#
#   scripts/test.sh            fmt check, clippy and rustdoc -D warnings, cargo test --all-features,
#                              then the Python package (python/): clippy, its unit tests, a
#                              build, pytest, and `pip install ./python` into a fresh venv
#   scripts/test.sh --matrix   the same, then the integration tests again on PostgreSQL 18, 16, 17
#
# On a fresh Debian machine it first installs what is missing (the `postgresql` package when
# no PostgreSQL binaries are found, `nats-server` for the JetStream sink's tests; the test
# cluster makes its certificates itself). The default
# run uses the server the test harness finds (see README.md, "Testing"); on Debian that is the
# packaged PostgreSQL 15. The matrix runs take their binaries from scripts/postgres.sh and
# always use a local cluster. Stops at the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

matrix=false
case "${1:-}" in
  "") ;;
  --matrix) matrix=true ;;
  *) echo "usage: scripts/test.sh [--matrix]" >&2; exit 2 ;;
esac

started=$(date +%s)
results=()

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\ntest.sh: FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# Runs a step; on failure says which one and stops.
run() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  step "$name: $*"
  "$@" || die "$name (after $(elapsed "$t0"); command: $*)"
  results+=("$name: ok ($(elapsed "$t0"))")
}

have_pg_binaries() {
  [[ -n ${PG_CHANGESTREAM_TEST_URL:-} ]] && return 0
  [[ -n ${PG_BIN:-} && -x ${PG_BIN}/initdb ]] && return 0
  if command -v pg_config >/dev/null; then
    [[ -x "$(pg_config --bindir)/initdb" ]] && return 0
  fi
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

install_missing() {
  local packages=()
  have_pg_binaries || packages+=(postgresql)
  # tests/sink.rs runs a real JetStream server (Debian's 2.9 has all it needs: Nats-Msg-Id
  # de-duplication, duplicate windows, file storage); NATS_SERVER may name another binary.
  [[ -n ${NATS_SERVER:-} ]] || command -v nats-server >/dev/null || packages+=(nats-server)
  $matrix && ! command -v npm >/dev/null && packages+=(npm)
  ((${#packages[@]})) || return 0
  step "installing ${packages[*]}"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "missing ${packages[*]}; install them (apt-get install -y ${packages[*]}) or run as root"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null || die "missing ${packages[*]} and no apt-get; install them with your package manager"
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 \
    || die "apt-get install ${packages[*]} failed"
}

# What a library user's build pulls in (the root crate with its default features): none of
# the CLI's or the test harness's dependencies, and serde_json without `arbitrary_precision`
# (a feature that changes serde_json for every crate in the user's build).
library_dependencies() {
  local tree
  tree=$(cargo tree -p pg-changestream -e normal --prefix none --format '{p} {f}') || return 1
  local bad
  for bad in clap tracing-subscriber rcgen ureq testcontainers; do
    if grep -q "^$bad v" <<<"$tree"; then
      echo "the library's default build depends on $bad (cargo tree -p pg-changestream -e normal -i $bad)" >&2
      return 1
    fi
  done
  if grep -E '^serde_json v' <<<"$tree" | grep -q arbitrary_precision; then
    echo "the library's build turns on serde_json's arbitrary_precision (cargo tree -p pg-changestream -e features -i serde_json)" >&2
    return 1
  fi
}

public_api_only() {
  local internal='(pg_)?changestream::(config|decode|error|group|lsn|snapshot|wire)\b'
  if grep -rnE "$internal" cli/src python/src; then
    echo "the CLI or the Python package names an internal module (above); use the public API" >&2
    return 1
  fi
}

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
install_missing
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "cargo $component is missing and there is no rustup to add it"
    rustup component add "$component" >&2
  fi
done

run "fmt" cargo fmt --all -- --check
run "clippy" cargo clippy --all-targets --all-features -- -D warnings
run "rustdoc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
run "library dependencies" library_dependencies
# The sealed surface: fails when the public API changed and tests/public-api.txt was not
# blessed (scripts/public_api.py --bless) with it; and the CLI and the Python package use
# only that surface (the internal modules are public only to the tests, with `testing`).
run "public API" python3 scripts/public_api.py
run "CLI and bindings on the public API" public_api_only
run "test (default server)" cargo test --all-features

# --- Python package (issue 16): python/ -------------------------------------------------------
# One build of the extension (with the test harness, `--features testing`) into a venv under
# target/, then its pytest suite against the same kind of server as the Rust tests.
python_venv=target/python-venv
python_setup() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    command -v apt-get >/dev/null || die "python3 with venv is missing; install python3-venv"
    local sudo=(); [[ $(id -u) != 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
      python3 python3-venv >&2 || die "apt-get install python3-venv failed"
  fi
  [[ -x $python_venv/bin/python ]] || python3 -m venv "$python_venv"
  "$python_venv/bin/python" -c 'import maturin, pytest' 2>/dev/null \
    || "$python_venv/bin/pip" install -q 'maturin>=1.9.4,<2' pytest
}
python_build() {
  (cd python && VIRTUAL_ENV="$root_dir/$python_venv" PATH="$root_dir/$python_venv/bin:$PATH" \
    maturin develop --features testing)
}
python_tests() { "$python_venv/bin/python" -m pytest -q python/tests; }
# What a user does: `pip install ./python` into a fresh venv (maturin fetched by pip, a
# release build), then an import and a call into the extension.
python_install() {
  local venv; venv=$(mktemp -d "${TMPDIR:-/tmp}/pg-changestream-venv.XXXXXX")
  python3 -m venv "$venv" \
    && "$venv/bin/pip" install -q ./python \
    && "$venv/bin/python" -c 'import pg_changestream as p; print(p.StartLocation.earliest())'
  local rc=$?
  rm -rf "$venv"
  return $rc
}
root_dir=$(pwd)
run "clippy (python)" cargo clippy -p pg-changestream-python --no-deps --all-targets --all-features -- -D warnings
# The extension's own unit tests (the workspace's default members leave the package out).
run "test (python, Rust)" cargo test -p pg-changestream-python --lib
run "python venv" python_setup
run "python build" python_build
run "pytest (default server)" python_tests
run "pip install ./python" python_install
# ----------------------------------------------------------------------------------------------

if $matrix; then
  for major in 18 16 17; do
    step "PostgreSQL $major binaries"
    bin=$(scripts/postgres.sh "$major") || die "fetching PostgreSQL $major (scripts/postgres.sh $major)"
    # A local cluster from these binaries, even when a URL or a Docker engine is around.
    run "integration tests on PostgreSQL $major" \
      env -u PG_CHANGESTREAM_TEST_URL PG_CHANGESTREAM_TEST_DOCKER=0 PG_BIN="$bin" \
      cargo test --all-features --test main
    # The Python suite once more on the newest major only (it drives the same library paths).
    if [[ $major == 18 ]]; then
      run "pytest on PostgreSQL $major" \
        env -u PG_CHANGESTREAM_TEST_URL PG_CHANGESTREAM_TEST_DOCKER=0 PG_BIN="$bin" \
        "$python_venv/bin/python" -m pytest -q python/tests
    fi
  done
fi

printf '\n==> all passed in %s\n' "$(elapsed "$started")" >&2
printf '    %s\n' "${results[@]}" >&2
