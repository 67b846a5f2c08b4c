#!/usr/bin/env bash
# The I/O path against the classifier: how close `triage replay` (SLM off) and `triage classify`
# come to `triage bench` (classify alone, no I/O), on one core, in one run; and replay on two
# threads against one.
#
# Usage: bench/io.sh [--copies N] [--rounds R] [--json FILE]
#   --copies N   the message log is GoEmotions train repeated N times (default 5: 200,150 lines)
#   --rounds R   each command runs R times, interleaved; the best run counts (default 3)
#   --json FILE  also write the figures as one JSON object
#
# What is measured (wall time of the whole command, best of R, files on the page cache):
#   bench        `triage bench --repeat 3` over the same log: classify only (analyse, vectorise,
#                predict), its own best-pass msg/s
#   replay 1     `triage replay --threads 1` with `[slm] mode = "off"`, pinned to core 0: read,
#                decode, classify, route, write the decision records and the summary
#   classify     `triage classify` (label and probabilities per line), pinned to core 0
#   replay 2     `triage replay --threads 2` on cores 0 and 1 (a reader/writer thread and two
#                deciding threads share them)
# Ratios: replay 1 / bench, classify / bench, replay 2 / replay 1.
#
# Environment: TRIAGE_DATA (default ../shared/data; without it, examples/messages.jsonl is
# repeated instead), BENCH_SKIP_BUILD=1 to skip the release build, BENCH_TRIAGE_BIN to measure
# another triage build (default target/release/triage).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COPIES=5
ROUNDS=3
JSON_OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --copies) COPIES="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/io.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "bench/io: $*" >&2; }
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release -p triage --quiet
T="${BENCH_TRIAGE_BIN:-target/release/triage}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

SRC="${TRIAGE_DATA:-../shared/data}/goemotions_sentiment4/train.jsonl"
if [ ! -f "$SRC" ]; then
    say "no $SRC: repeating examples/messages.jsonl instead"
    SRC=examples/messages.jsonl
    COPIES=$((COPIES * 600))
fi
LOG="$WORK/log.jsonl"
for _ in $(seq "$COPIES"); do cat "$SRC"; done >"$LOG"
LINES=$(wc -l <"$LOG")
printf '[slm]\nmode = "off"\n' >"$WORK/slm-off.toml"
say "$LINES lines, $(du -h "$LOG" | cut -f1); load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"

# wall seconds of a command (stdout and stderr discarded)
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
best() { printf '%s\n' "$@" | sort -g | head -n 1; }

# Each command writes a new file, as a replay usually does: the previous round's output is removed
# first, outside the timing (truncating it inside `open` cost 0.1-0.2 s of a 1.5 s run, ext4, 295 MB).
fresh() { rm -f "$WORK"/out1.jsonl* "$WORK"/out2.jsonl* "$WORK/cls.jsonl"; }
B=() R1=() C=() R2=()
for r in $(seq "$ROUNDS"); do
    B+=("$(taskset -c 0 "$T" bench --data "$LOG" --repeat 3 --json 2>/dev/null | jq -r .msgs_per_sec)")
    fresh
    R1+=("$(wall taskset -c 0 "$T" replay --threads 1 --config "$WORK/slm-off.toml" --input "$LOG" --output "$WORK/out1.jsonl")")
    C+=("$(wall sh -c "taskset -c 0 $T classify < $LOG > $WORK/cls.jsonl")")
    R2+=("$(wall taskset -c 0,1 "$T" replay --threads 2 --config "$WORK/slm-off.toml" --input "$LOG" --output "$WORK/out2.jsonl")")
    say "round $r: bench ${B[-1]} msg/s; replay 1 ${R1[-1]} s; classify ${C[-1]} s; replay 2 ${R2[-1]} s"
done
# Same decisions either way: the records differ only in the measured timings.
strip() { sed -E 's/"timings_us":\{[^}]*\}//' "$1"; }
cmp -s <(strip "$WORK/out1.jsonl") <(strip "$WORK/out2.jsonl") ||
    { say "error: replay on 2 threads wrote other decisions than on 1"; exit 1; }

bench=$(printf '%s\n' "${B[@]}" | sort -g | tail -n 1)
r1=$(echo "$LINES / $(best "${R1[@]}")" | bc -l)
cl=$(echo "$LINES / $(best "${C[@]}")" | bc -l)
r2=$(echo "$LINES / $(best "${R2[@]}")" | bc -l)
printf '\n| command | msg/s | ratio |\n|---|---:|---|\n'
printf '| triage bench (classify only, 1 core) | %.0f | 1 |\n' "$bench"
printf '| triage replay --threads 1, SLM off (1 core) | %.0f | %.2f x bench |\n' "$r1" "$(echo "$r1 / $bench" | bc -l)"
printf '| triage classify (1 core) | %.0f | %.2f x bench |\n' "$cl" "$(echo "$cl / $bench" | bc -l)"
printf '| triage replay --threads 2, SLM off (2 cores) | %.0f | %.2f x replay 1 |\n' "$r2" "$(echo "$r2 / $r1" | bc -l)"
if [ -n "$JSON_OUT" ]; then
    jq -n --argjson lines "$LINES" --argjson bench "$bench" --argjson r1 "$r1" --argjson cl "$cl" --argjson r2 "$r2" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{lines: $lines, bench: $bench, replay_1: $r1, classify: $cl, replay_2: $r2,
          replay_over_bench: ($r1 / $bench), classify_over_bench: ($cl / $bench),
          replay_2_over_1: ($r2 / $r1), load_average_after: $load}' >"$JSON_OUT"
fi
