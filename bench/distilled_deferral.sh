#!/usr/bin/env bash
# A distilled copy of the second opinion as a deferral signal (docs/cascade.md): the second
# opinion labels train, a fast model is trained on its labels alone, and the cascade is scored on
# dev and test with routing by the fast model's confidence, by learned deferral, and by the
# distilled model's disagreement. Needs the models (scripts/install-models.sh) and the data set.
# Usage: bench/distilled_deferral.sh [DATASET] [OUT_DIR] [SHARE]
#   (default goemotions_sentiment4 with the built-in model and second opinion,
#   $TRIAGE_CACHE/distilled-deferral, 0.15). Another data set: set MODEL (its fast model) and
#   SLM_ARGS (e.g. "--finetuned DIR" or "--head FILE").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repository root
export TRIAGE_CACHE="${TRIAGE_CACHE:-$PWD/.cache/triage}"
DATA="${TRIAGE_DATA:-../shared/data}"
SET="${1:-goemotions_sentiment4}"
OUT="${2:-$TRIAGE_CACHE/distilled-deferral}"
SHARE="${3:-0.15}"
MODEL="${MODEL:-models/default/sentiment4.triage}"
CONFIG="configs/$SET.toml"
BIN=target/release/triage
source bench/venv.sh   # numpy, for the analysis
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || cargo build --release -p triage
mkdir -p "$OUT"
for split in train dev test; do
    cp "$DATA/$SET/$split.jsonl" "$OUT/$split.jsonl"
    # shellcheck disable=SC2086
    "$BIN" slm label --model "$MODEL" ${SLM_ARGS:-} --input "$OUT/$split.jsonl" --output "$OUT/$split.slm.jsonl"
done
"$BIN" train --data "$OUT/train.slm.jsonl" --config "$CONFIG" --out "$OUT/distilled.triage"
for split in dev test; do
    "$BIN" classify --model "$MODEL" < "$OUT/$split.jsonl" > "$OUT/$split.fast.jsonl"
    "$BIN" classify --model "$OUT/distilled.triage" < "$OUT/$split.jsonl" > "$OUT/$split.distilled.jsonl"
done
"$VENV/bin/python" bench/distilled_deferral.py "$OUT" "$SHARE"
