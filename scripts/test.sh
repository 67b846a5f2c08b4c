#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts what the tests need, then runs
# them. This is the test command that README.md gives and .ci/run calls.
#
#   1. ONNX Runtime and the two small language models  (scripts/install-models.sh)
#   2. a Kafka-protocol broker (tansu, in memory)       (scripts/broker.sh)
#   3. cargo fmt --check, cargo clippy -D warnings, cargo doc -D warnings, the release build
#   4. cargo test --release --workspace: unit, property, doc, model and end-to-end tests
#   5. a short soak (scripts/soak.sh, TRIAGE_CI_SOAK_S seconds, default 150, 0 skips it) on a
#      broker of its own, which fails unless RSS stays within ±10% and the lag stays bounded
#   6. docker-compose.yml parses (`docker-compose config`)
#   7. cargo deny (licenses, bans, sources; advisories where the database is available)
#
# Environment: TRIAGE_CACHE (default .cache/triage), TRIAGE_DATA (default ../shared/data; tests
# that need it are reported "ignored" when it is absent, and the last lines of the output list
# them with the reason), TRIAGE_BROKER (default 127.0.0.1:9092), TRIAGE_SKIP_LINT=1 to skip
# fmt/clippy/doc, TRIAGE_SKIP_LOG (default $TRIAGE_CACHE/skipped-tests.txt: the skips' list).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export TRIAGE_CACHE="${TRIAGE_CACHE:-$ROOT/.cache/triage}"
export TRIAGE_DATA="${TRIAGE_DATA:-$ROOT/../shared/data}"
export TRIAGE_BROKER="${TRIAGE_BROKER:-127.0.0.1:9092}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests that cannot run (no labelled data) write "<test>: <reason>" here; listed at the end.
export TRIAGE_SKIP_LOG="${TRIAGE_SKIP_LOG:-$TRIAGE_CACHE/skipped-tests.txt}"
mkdir -p "$(dirname "$TRIAGE_SKIP_LOG")"
: >"$TRIAGE_SKIP_LOG"

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

# What did not run, and why: printed last, whether the suite passed or failed.
skipped_summary() {
  if [ -s "$TRIAGE_SKIP_LOG" ]; then
    printf '\n=== NOT RUN (%s test(s); they are reported "ignored" above):\n' "$(sort -u "$TRIAGE_SKIP_LOG" | wc -l)"
    sort -u "$TRIAGE_SKIP_LOG" | sed 's/^/  - /'
  else
    printf '\n=== every test ran (none skipped for lack of data)\n'
  fi
}

# The run's temporary files go to one directory, removed at the end. `triage run` reserves its
# instance slot by locking <temp>/triage-<group>.<n>.lock and leaves the file (removing a lock
# another process may hold is racy), and each Kafka test uses a group of its own: without this,
# every run of the suite left a few dozen such files in /tmp.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/triage-test.XXXXXX")"
export TMPDIR="$RUN_TMP"
trap 'rm -rf "$RUN_TMP"' EXIT

step "ONNX Runtime and models"
scripts/install-models.sh

step "Chromium (a test renders the HTML evaluation report)"
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
      { echo "could not install chromium (Debian package)"; exit 1; }
  else
    echo "chromium is not installed (Debian package chromium); the report test will fail"
  fi
fi

step "Kafka-protocol broker at $TRIAGE_BROKER"
scripts/broker.sh start
trap 'scripts/broker.sh stop || true; rm -rf "$RUN_TMP"; skipped_summary' EXIT

if [ "${TRIAGE_SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy -D warnings"
  cargo clippy --release --workspace --all-targets -- -D warnings
  step "cargo doc -D warnings (broken or private intra-doc links)"
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
fi

step "build"
cargo build --release --workspace --all-targets

step "tests"
cargo test --release --workspace -- --test-threads 2

SOAK_S="${TRIAGE_CI_SOAK_S:-150}"
if [ "$SOAK_S" != 0 ]; then
  step "short soak (${SOAK_S} s at 2,000 msg/s)"
  # Its own broker and port, so the test broker above is left alone.
  TRIAGE_BROKER=127.0.0.1:19492 RATE=2000 ROTATE_S=60 LOAD_LINGER_MS=100 SOAK_CHECK=1 \
    scripts/soak.sh "$SOAK_S" "$TRIAGE_CACHE/soak-ci"
fi

if [ -f docker-compose.yml ]; then
  step "docker-compose.yml parses"
  if ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1 ||
        { echo "could not install docker-compose (Debian package)"; exit 1; }
    else
      echo "docker-compose is not installed: cannot check docker-compose.yml"; exit 1
    fi
  fi
  docker-compose -f docker-compose.yml config -q
  echo "docker-compose.yml: ok"
fi

if [ -x scripts/deny.sh ]; then
  step "cargo deny"
  scripts/deny.sh
fi

step "all tests passed"
