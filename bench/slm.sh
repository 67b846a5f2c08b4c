#!/usr/bin/env bash
# SLM benchmark on this machine's CPU: the second opinion (MiniLM int8 encoder + logistic head),
# drafted replies (SmolLM2-135M int4), model load times, and `triage replay` with the SLM on.
#
# Usage: bench/slm.sh [--messages N] [--replies N] [--tokens N] [--replay-messages N]
#                     [--threads LIST] [--quick] [--json FILE] [--keep]
#   --messages N         messages per encoder measurement (default 1024)
#   --replies N          drafted replies per generator measurement (default 8)
#   --tokens N           most tokens per reply (default 32)
#   --replay-messages N  GoEmotions test messages replayed with the SLM on (default 2000)
#   --threads LIST       ONNX Runtime intra-op threads to compare in slm_bench (default "1 2")
#   --quick              slm_bench on banking77 only, and only the default replay settings
#   --json FILE          also write every figure as one JSON object to FILE
#   --keep               keep the work directory (configs, logs, outputs)
#
# Part 1, the models alone: `slm_bench` (models/examples/slm_bench.rs, what
# `cargo run --release -p triage-models --example slm_bench` runs) for each --threads value, on the
# banking77 and the GoEmotions test texts. It reports load times (with and without the sha256
# check), encoder msg/s one at a time (`embed_one`), in batches of 32 and 64 in arrival order (what
# the executor hands the encoder: up to [slm.executor] max_batch = 32 queued requests; embed()
# sorts each batch by length and pads per batch), the whole list in one call (sorted by length,
# batches of 64), and replies/s for --replies greedy replies of up to --tokens tokens.
# The head is a 384 x labels matrix product: it is timed inside part 2, not here.
#
# Part 2, the whole pipeline: `triage replay` over the first --replay-messages GoEmotions test
# messages (as a message log: id and text), with [router] default_threshold = 0.6,
# [budget] max_share = 1.0 and [slm] mode = "on", so every message under 0.6 confidence gets a
# second opinion (encoder + head, through the executor). Reported: decisions/s from replay's own
# summary (model loading excluded), wall time of the command (loading included), and the share
# routed to the SLM. The fast path alone ([slm] mode = "off") is measured on the same file, and
# the SLM settings that could help on 2 cores are tried: ONNX Runtime intra_threads 1 vs 2,
# encoder_sessions and executor threads 2, max_batch 64.
#
# Environment: TRIAGE_DATA (default ../shared/data), TRIAGE_CACHE (models and ONNX Runtime, see
# scripts/install-models.sh), BENCH_SKIP_BUILD=1 to skip the cargo builds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." # repository root
ROOT="$PWD"

MESSAGES=1024
REPLIES=8
TOKENS=32
REPLAY_N=2000
THREADS="1 2"
QUICK=0
JSON_OUT=""
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    --messages) MESSAGES="$2"; shift 2 ;;
    --replies) REPLIES="$2"; shift 2 ;;
    --tokens) TOKENS="$2"; shift 2 ;;
    --replay-messages) REPLAY_N="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/slm.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "bench/slm: $*" >&2; }
die() { echo "bench/slm: error: $*" >&2; exit 1; }
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

DATA_ROOT="${TRIAGE_DATA:-../shared/data}"
BANKING="$DATA_ROOT/banking77/test.jsonl"
GOEMO="$DATA_ROOT/goemotions_sentiment4/test.jsonl"
[[ -f "$BANKING" && -f "$GOEMO" ]] ||
    die "needs $BANKING and $GOEMO (set TRIAGE_DATA): the SLM figures are only meaningful on real messages"

scripts/install-models.sh --verify-only >/dev/null ||
    die "ONNX Runtime or the models are missing or corrupt: run scripts/install-models.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage-models --example slm_bench
    cargo build --release -p triage --bins
fi
SLM_BENCH="$ROOT/target/release/examples/slm_bench"
TRIAGE="$ROOT/target/release/triage"
[[ -x "$SLM_BENCH" && -x "$TRIAGE" ]] || die "build first: cargo build --release -p triage-models --example slm_bench && cargo build --release -p triage"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench-slm.XXXXXX")"
cleanup() {
    if [[ "$KEEP" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

LOAD_START="$(cut -d' ' -f1 /proc/loadavg)"
say "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- part 1: slm_bench

# num FILE REGEX: the first number captured by REGEX (sed -E, one group) in FILE.
num() { sed -nE "s/.*$2.*/\\1/p" "$1" | head -n 1; }

DATASETS=("banking77:$BANKING" "goemotions:$GOEMO")
((QUICK == 0)) || DATASETS=("banking77:$BANKING")
BENCH_JSON="[]"
for threads in $THREADS; do
    for ds in "${DATASETS[@]}"; do
        name="${ds%%:*}"
        file="${ds#*:}"
        # Replies once per thread count (they do not depend on the data set much).
        replies=0
        [[ "$name" != banking77 ]] || replies="$REPLIES"
        out="$WORK/slm_bench-$name-t$threads.txt"
        say "slm_bench --threads $threads --data $file --messages $MESSAGES --replies $replies --tokens $TOKENS"
        "$SLM_BENCH" --threads "$threads" --batch 64 --data "$file" --messages "$MESSAGES" \
            --replies "$replies" --tokens "$TOKENS" >"$out" 2>&1 || die "slm_bench failed: $(tail -5 "$out")"
        sed 's/^/    /' "$out" >&2
        row="$(jq -n \
            --arg data "$name" --argjson threads "$threads" \
            --arg mean_tokens "$(num "$out" 'mean ([0-9.]+) tokens')" \
            --arg enc_load "$(num "$out" 'encoder ([0-9]+) \/ [0-9]+ ms')" \
            --arg enc_load_nv "$(num "$out" 'encoder [0-9]+ \/ ([0-9]+) ms')" \
            --arg gen_load "$(num "$out" 'generator ([0-9]+) \/ [0-9]+ ms')" \
            --arg gen_load_nv "$(num "$out" 'generator [0-9]+ \/ ([0-9]+) ms')" \
            --arg b1 "$(num "$out" 'batch  1: +([0-9]+) msg')" \
            --arg b32 "$(num "$out" 'batch 32: +([0-9]+) msg')" \
            --arg b64 "$(num "$out" 'batch 64: +([0-9]+) msg')" \
            --arg all "$(num "$out" 'all [0-9]+: +([0-9]+) msg')" \
            --arg replies_s "$(num "$out" ': ([0-9.]+) replies\/s')" \
            --arg tokens_reply "$(num "$out" ', ([0-9.]+) tokens\/reply')" \
            --arg prefill "$(num "$out" 'prefill ([0-9]+) ms\/reply')" \
            --arg decode "$(num "$out" 'decode ([0-9.]+) ms\/token')" \
            --arg rss "$(num "$out" 'peak ([0-9]+) MiB$')" \
            '{data: $data, intra_threads: $threads, mean_tokens: $mean_tokens,
              load_ms: {encoder: $enc_load, encoder_no_check: $enc_load_nv, generator: $gen_load,
                        generator_no_check: $gen_load_nv},
              encoder_msgs_per_s: {batch1: $b1, batch32: $b32, batch64: $b64, all_sorted: $all},
              replies_per_s: $replies_s, tokens_per_reply: $tokens_reply, prefill_ms: $prefill,
              decode_ms_per_token: $decode, peak_rss_mib: $rss}
             | walk(if type == "string" and test("^[0-9.]+$") then tonumber
                    elif . == "" then null else . end)')"
        BENCH_JSON="$(jq -c --argjson row "$row" '. + [$row]' <<<"$BENCH_JSON")"
    done
done

# ---------------------------------------------------------------- part 2: triage replay

LOG="$WORK/goemotions-$REPLAY_N.jsonl"
head -n "$REPLAY_N" "$GOEMO" | jq -c '{id, text}' >"$LOG"

# replay NAME TOML: runs triage replay with the given [slm] settings; appends a JSON row.
REPLAY_JSON="[]"
replay() {
    local name="$1" cfg="$WORK/$1.toml" t0 t1 summary row
    cat >"$cfg" <<EOF
# Written by bench/slm.sh.
[router]
default_threshold = 0.6

[budget]
max_share = 1.0

$2
EOF
    t0="$(date +%s.%N)"
    "$TRIAGE" replay --config "$cfg" --input "$LOG" --output "$WORK/$name.out.jsonl" --json \
        >"$WORK/$name.summary.json" 2>"$WORK/$name.err" || die "replay $name failed: $(tail -5 "$WORK/$name.err")"
    t1="$(date +%s.%N)"
    summary="$(grep '^{' "$WORK/$name.summary.json" | tail -n 1)"
    row="$(jq -c --arg name "$name" --arg wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" \
        --arg settings "$(grep -v '^#' "$cfg" | sed '/^$/d' | tr '\n' ' ')" \
        '{name: $name, settings: $settings, decisions, seconds, wall_s: ($wall | tonumber),
          decisions_per_s: (.decisions / .seconds), by_route,
          slm_share: (((.by_route.second_opinion // 0) + (.by_route.generate // 0)) / .decisions),
          degraded: (.by_route.degraded // 0)}' <<<"$summary")"
    say "replay $name: $(jq -r '"\(.decisions) decisions in \(.seconds | . * 100 | round / 100) s = \(.decisions_per_s | round) decisions/s (wall with loading \(.wall_s) s); routed to the SLM \(.slm_share * 1000 | round / 10)%; routes \(.by_route | tostring)"' <<<"$row")"
    REPLAY_JSON="$(jq -c --argjson row "$row" '. + [$row]' <<<"$REPLAY_JSON")"
}

replay fast_only $'[slm]\nmode = "off"'
replay slm_default $'[slm]\nmode = "on"'
if ((QUICK == 0)); then
    replay slm_intra1 $'[slm]\nmode = "on"\n[slm.models]\nintra_threads = 1'
    replay slm_2workers_intra1 $'[slm]\nmode = "on"\n[slm.models]\nintra_threads = 1\nencoder_sessions = 2\n[slm.executor]\nthreads = 2'
    replay slm_batch64 $'[slm]\nmode = "on"\n[slm.executor]\nmax_batch = 64'
fi
LOAD_END="$(cut -d' ' -f1 /proc/loadavg)"

# ---------------------------------------------------------------- report

echo
echo "## SLM on the CPU ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $LOAD_START -> $LOAD_END)"
echo
echo "slm_bench, $MESSAGES messages per figure; replies: up to $TOKENS tokens, greedy (goal: second opinion ≥ 500 msg/s, ≥ 10 replies/s)"
echo
echo "| data (mean tokens) | intra threads | batch 1 msg/s | batch 32 msg/s | batch 64 msg/s | all, sorted, msg/s | replies/s | prefill ms | decode ms/token | load encoder / generator ms (no check) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
jq -r '.[] | "| \(.data) (\(.mean_tokens)) | \(.intra_threads) | \(.encoder_msgs_per_s.batch1) | \(.encoder_msgs_per_s.batch32) | \(.encoder_msgs_per_s.batch64) | \(.encoder_msgs_per_s.all_sorted) | \(.replies_per_s // "-") | \(.prefill_ms // "-") | \(.decode_ms_per_token // "-") | \(.load_ms.encoder) / \(.load_ms.generator) (\(.load_ms.encoder_no_check) / \(.load_ms.generator_no_check)) |"' <<<"$BENCH_JSON"
echo
echo "triage replay, $REPLAY_N GoEmotions test messages, default_threshold 0.6, max_share 1.0"
echo
echo "| settings | decisions/s | routed to SLM | wall s (with loading) |"
echo "|---|---:|---:|---:|"
jq -r '.[] | "| \(.name): `\(.settings)` | \(.decisions_per_s | round) | \(.slm_share * 1000 | round / 10)% | \(.wall_s) |"' <<<"$REPLAY_JSON"
echo
JSON="$(jq -cn --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson cpus "$(nproc)" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    --argjson messages "$MESSAGES" --argjson replies "$REPLIES" --argjson tokens "$TOKENS" \
    --argjson bench "$BENCH_JSON" --argjson replay "$REPLAY_JSON" \
    '{bench: "slm", date: $date, cpus: $cpus, load_start: $load_start, load_end: $load_end,
      messages: $messages, replies: $replies, tokens: $tokens, slm_bench: $bench, replay: $replay}')"
echo "$JSON"
if [[ -n "$JSON_OUT" ]]; then echo "$JSON" >"$JSON_OUT"; fi
