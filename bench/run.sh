#!/usr/bin/env bash
# Peer comparison: triage vs scikit-learn and fastText, one core, same run.
# Usage: bench/run.sh [compare.py options], e.g. bench/run.sh --datasets goemotions_sentiment4 banking77 --out results.json
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repository root
DATA="${TRIAGE_DATA:-../shared/data}"

# 1. Python peers, in a venv that is reused while bench/requirements.txt is unchanged.
source bench/venv.sh

# 2. triage itself.
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage
fi

# 3. One core, one BLAS/OpenMP thread for every process (children inherit the affinity).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
exec taskset -c 0 "$VENV/bin/python" bench/compare.py --data-dir "$DATA" "$@"
