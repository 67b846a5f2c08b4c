#!/usr/bin/env bash
# Peer comparison: triage vs scikit-learn and fastText, one core, same run.
# Usage: bench/run.sh [compare.py options], e.g. bench/run.sh --datasets goemotions_sentiment4 banking77 --out results.json
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repository root
CACHE="${TRIAGE_CACHE:-.cache/triage}"
DATA="${TRIAGE_DATA:-../shared/data}"
VENV="$CACHE/bench-venv"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# 1. Python peers, in a venv that is reused while bench/requirements.txt is unchanged.
stamp="$VENV/.requirements.sha256"
want="$(sha256sum bench/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bench: installing bench/requirements.txt into $VENV" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
    echo "$want" > "$stamp"
fi

# 2. triage itself.
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage
fi

# 3. One core, one BLAS/OpenMP thread for every process (children inherit the affinity).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
exec taskset -c 0 "$VENV/bin/python" bench/compare.py --data-dir "$DATA" "$@"
