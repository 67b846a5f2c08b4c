#!/usr/bin/env bash
# Dependency policy checks with cargo-deny (config: deny.toml at the repo root; see
# docs/security.md).
#
#   licenses, bans, sources  always; they read Cargo.lock and every locked crate's manifest.
#                            The build fetches only the crates of this platform, so
#                            `cargo fetch --locked` first fetches the rest (windows-sys and the
#                            like) from the crate registry; the checks then run offline
#   advisories               against the RustSec advisory database, which cargo-deny fetches with
#                            git from a code host. Where that host cannot be reached (this
#                            project's machines reach package registries only), point
#                            TRIAGE_ADVISORY_DB at a local git clone of the database and the check
#                            runs offline against it; otherwise it is skipped, loudly.
#
# Installs cargo-deny (pinned, with cargo install) when missing: about 3 minutes on 2 cores.
#
# Environment:
#   TRIAGE_ADVISORY_DB=/path/to/advisory-db   a git clone of the RustSec advisory database
#   DENY_ADVISORIES=fetch                     try `cargo deny fetch db` (needs the code host)
#   DENY_REQUIRE_ADVISORIES=1                 fail instead of skipping when no database is there
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DENY_VERSION=0.20.2
# The directory name cargo-deny gives the default database (RustSec) under its db-path.
DEFAULT_DB_DIR=advisory-db-3157b0e258782691

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $DENY_VERSION"; then
  echo "=== installing cargo-deny $DENY_VERSION (cargo install --locked; ~3 minutes on 2 cores)"
  start=$(date +%s)
  cargo install cargo-deny --locked --version "$DENY_VERSION"
  echo "    installed in $(($(date +%s) - start)) s"
fi
cargo deny --version

echo "=== cargo fetch --locked (every platform's crates, for cargo metadata)"
cargo fetch --locked
echo "=== cargo deny check licenses bans sources"
cargo deny --offline check licenses bans sources

skip_advisories() {
  cat <<EOF

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! SKIPPED cargo deny check advisories: $1
!!! The RustSec advisory database is a git repository on a code host, not a registry package;
!!! set TRIAGE_ADVISORY_DB to a local git clone of it to run the check offline.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
  if [ "${DENY_REQUIRE_ADVISORIES:-0}" = 1 ]; then
    exit 1
  fi
}

if [ -n "${TRIAGE_ADVISORY_DB:-}" ]; then
  db=$(cd "$TRIAGE_ADVISORY_DB" && pwd)
  if [ ! -d "$db/crates" ] || ! git -C "$db" rev-parse HEAD >/dev/null 2>&1; then
    echo "TRIAGE_ADVISORY_DB=$TRIAGE_ADVISORY_DB is not a git clone of the advisory database" >&2
    exit 2
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/dbs"
  ln -s "$db" "$tmp/dbs/$DEFAULT_DB_DIR"
  # deny.toml plus a db-path pointing at the local copy.
  sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$tmp/dbs\"|" deny.toml >"$tmp/deny.toml"
  echo "=== cargo deny check advisories (offline, database at $db, $(git -C "$db" show -s --format=%cs HEAD))"
  cargo deny --offline --config "$tmp/deny.toml" check advisories
elif [ "${DENY_ADVISORIES:-}" = fetch ]; then
  echo "=== cargo deny check advisories (fetching the database)"
  if timeout 300 cargo deny fetch db; then
    cargo deny check advisories
  else
    skip_advisories "the advisory database could not be fetched"
  fi
else
  skip_advisories "no local advisory database (TRIAGE_ADVISORY_DB unset)"
fi
echo "=== cargo deny: done"
