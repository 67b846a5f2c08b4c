#!/usr/bin/env bash
# Overload benchmark: `triage run` fed labelled GoEmotions test messages at FACTOR times what the
# SLM can serve, once per admission mode: "arrival" (first come, first served; a call waits up to
# its timeout, then `degraded`: triage's behaviour before the admission stage) and "urgency" (the
# least confident first; the rest `over_budget` after a short window). Reports, per mode, the
# fast route's latency, the share of each route, and the accuracy of the published labels against
# the gold labels.
#
# Usage: bench/overload.sh [--factor F] [--seconds S] [--rounds R] [--window-ms MS]
#                          [--threshold T] [--rate R] [--baseline BIN] [--json FILE] [--keep]
#   --factor F      second opinions asked for ÷ second opinions the SLM can serve (default 10)
#   --seconds S     length of each run at that rate (default 20)
#   --rounds R      runs per mode; odd rounds run arrival first, even rounds urgency first
#                   (default 1)
#   --window-ms MS  [slm.executor] admission_window_ms for the urgency runs (default: triage's, 50)
#   --threshold T   [router] default_threshold: below it a message asks for a second opinion
#                   (default 0.6, as in examples/triage.toml)
#   --rate R        skip steps 1 and 2 (capacity and demand) and send at R msg/s
#   --baseline BIN  also run this triage binary (e.g. one built from an earlier commit) with the
#                   same configuration minus the admission keys, as mode "baseline"
#   --json FILE     also write every figure as one JSON object to FILE
#   --keep          keep the work directory (configs, logs, the tools' JSON lines)
#
# The configuration of every run: the default model, the example's policy (threshold 0.6, no
# generative labels) with no budget ([budget] max_share = 1.0: only the SLM's capacity limits the
# second opinions), [slm] mode = "on" (the shipped fine-tuned MiniLM), executor defaults.
#
# Steps:
#   1. capacity: `triage replay` of the test split with every message sent to the second opinion
#      (threshold 1.0, no timeout): second opinions per second, from replay's own clock (models
#      loaded).
#   2. demand: `triage replay` of the test split with the run's policy and an SLM without limit:
#      the share of messages that ask for a second opinion, and the accuracy the cascade reaches
#      when every one of them is answered (the ceiling), beside the fast labels' accuracy.
#   3. rate = FACTOR × capacity ÷ share asking. For each mode: `triage run --exit-when-idle 5`
#      joins a fresh group; `kafka_load` sends rate × S messages at that rate (texts cycle through
#      the test split; message m-<n> has line n mod 5,027's text); once triage has drained and
#      exited, `kafka_routes` reads the output topic: route shares, latency per route (send →
#      triage's produce, record timestamps, ms resolution), accuracy against the gold labels.
#
# Environment:
#   TRIAGE_DATA              data root (default ../shared/data); needs goemotions_sentiment4/test.jsonl
#   BENCH_OVERLOAD_BROKER    where the benchmark's own tansu listens (default 127.0.0.1:19592); the
#                            script refuses to run if a broker already runs there, and stops its own
#   BENCH_SKIP_BUILD=1       skip `cargo build --release -p triage --bins --examples`
#   TRIAGE_CACHE             models and ONNX Runtime (scripts/install-models.sh), the broker
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." # repository root
ROOT="$PWD"

FACTOR=10
SECONDS_PER_RUN=20
ROUNDS=1
WINDOW=""
THRESHOLD=0.6
FIXED_RATE=""
BASELINE=""
JSON_OUT=""
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    --factor) FACTOR="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --window-ms) WINDOW="$2"; shift 2 ;;
    --threshold) THRESHOLD="$2"; shift 2 ;;
    --rate) FIXED_RATE="$2"; shift 2 ;;
    --baseline) BASELINE="$(realpath "$2")"; shift 2 ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/overload.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "bench/overload: $*" >&2; }
die() { echo "bench/overload: error: $*" >&2; exit 1; }
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ ]] ||
    die "--seconds and --rounds take whole numbers"

TEXTS="${TRIAGE_DATA:-../shared/data}/goemotions_sentiment4/test.jsonl"
[[ -f "$TEXTS" ]] || die "$TEXTS not found: the benchmark needs the labelled GoEmotions test split (TRIAGE_DATA)"
TEXTS="$(realpath "$TEXTS")"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage --bins --examples
fi
E="$ROOT/target/release/examples"
TRIAGE="$ROOT/target/release/triage"
for b in "$E/kafka_load" "$E/kafka_routes" "$TRIAGE"; do
    [[ -x "$b" ]] || die "$b is missing: cargo build --release -p triage --bins --examples"
done
scripts/install-models.sh --verify-only >/dev/null ||
    die "ONNX Runtime or the models are missing or corrupt: run scripts/install-models.sh"

export TRIAGE_BROKER="${BENCH_OVERLOAD_BROKER:-127.0.0.1:19592}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench-overload.XXXXXX")"
# Everything this run starts keeps its temporary files here, removed at the end: triage run's
# instance-slot lock file (triage-<group>.<n>.lock) among them.
export TMPDIR="$WORK"
BG_PIDS=()
BROKER_STARTED=0
cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [[ "$BROKER_STARTED" == 1 ]]; then
        scripts/broker.sh stop >/dev/null 2>&1 || true
    fi
    if [[ "$KEEP" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

RUN="$(date +%s)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "$(nproc) CPUs, load average $LOAD_START; texts and gold labels from $TEXTS"

POLICY="[router]
default_threshold = $THRESHOLD
[budget]
max_share = 1.0"

# ------------------------------------------------------------------ 1. the SLM's capacity
replay() { # NAME POLICY: replays the test split; writes $WORK/NAME.{out.jsonl,summary.json}
    cat >"$WORK/$1.toml" <<EOF
$2
[slm]
mode = "on"
[slm.executor]
timeout_ms = 600000
EOF
    "$TRIAGE" replay --config "$WORK/$1.toml" --input "$TEXTS" --output "$WORK/$1.out.jsonl" --json \
        >"$WORK/$1.summary.json" 2>"$WORK/$1.err" || die "replay $1 failed: $(tail -5 "$WORK/$1.err")"
}
# accuracy FILE FIELD: share of decisions (in input order) whose FIELD equals the gold label.
accuracy() {
    jq -n --slurpfile d "$1" --slurpfile g "$TEXTS" \
        "[range(0; \$d | length) | select(\$d[.]$2 == \$g[.].label)] | length / (\$d | length)"
}
CAPACITY=null ASKING=null CEILING=null FAST_ONLY=null
if [[ -z "$FIXED_RATE" ]]; then
    replay capacity $'[router]\ndefault_threshold = 1.0\n[budget]\nmax_share = 1.0'
    CAPACITY="$(jq '(.by_route.second_opinion // 0) / .seconds' "$WORK/capacity.summary.json")"
    CAP_DEGRADED="$(jq '.by_route.degraded // 0' "$WORK/capacity.summary.json")"
    [[ "$CAP_DEGRADED" == 0 ]] || say "WARNING: $CAP_DEGRADED second opinions degraded while measuring the capacity"
    say "SLM capacity: $(printf '%.0f' "$CAPACITY") second opinions/s ($(jq -c .by_route "$WORK/capacity.summary.json") in $(jq .seconds "$WORK/capacity.summary.json") s)"

    replay demand "$POLICY"
    ASKING="$(jq '((.by_route.second_opinion // 0) + (.by_route.degraded // 0) + (.by_route.over_budget // 0)) / .decisions' "$WORK/demand.summary.json")"
    CEILING="$(accuracy "$WORK/demand.out.jsonl" .label)"
    FAST_ONLY="$(accuracy "$WORK/demand.out.jsonl" .fast.label)"
    RATE="$(awk -v f="$FACTOR" -v c="$CAPACITY" -v s="$ASKING" 'BEGIN {printf "%d", f * c / s + 0.5}')"
    say "$(awk -v s="$ASKING" 'BEGIN {printf "%.1f", 100 * s}')% of messages ask for a second opinion at threshold $THRESHOLD; every one answered: accuracy $(awk -v a="$CEILING" 'BEGIN {printf "%.2f", 100 * a}')% (fast labels $(awk -v a="$FAST_ONLY" 'BEGIN {printf "%.2f", 100 * a}')%)"
    say "rate: $FACTOR x $(printf '%.0f' "$CAPACITY") / $ASKING = $RATE msg/s"
else
    RATE="$FIXED_RATE"
fi
COUNT=$((RATE * SECONDS_PER_RUN))
say "rate $RATE msg/s, $COUNT messages per run"

# ------------------------------------------------------------------ 3. triage run, per mode
if scripts/broker.sh status >/dev/null 2>&1; then
    die "a broker already runs on $TRIAGE_BROKER: stop it or set BENCH_OVERLOAD_BROKER"
fi
scripts/broker.sh start >/dev/null
BROKER_STARTED=1

# run MODE ROUND: one run; appends a JSON row to $WORK/rows.jsonl.
run() {
    local mode="$1" r="$2" tag in out bin executor="" pid
    tag="$mode-r$r"
    in="overload.$tag.in"
    out="overload.$tag.out"
    bin="$TRIAGE"
    case "$mode" in
    baseline) bin="$BASELINE" ;;
    arrival) executor=$'admission = "arrival"' ;;
    urgency) executor=$'admission = "urgency"'${WINDOW:+$'\nadmission_window_ms = '$WINDOW} ;;
    esac
    scripts/broker.sh create-topic "$in" 4 >/dev/null
    scripts/broker.sh create-topic "$out" 4 >/dev/null
    scripts/broker.sh create-topic "$out.dlq" 1 >/dev/null
    cat >"$WORK/$tag.toml" <<EOF
# Written by bench/overload.sh
$POLICY
[slm]
mode = "on"
[slm.executor]
$executor
[kafka]
brokers = "$TRIAGE_BROKER"
group_id = "overload-$tag-$RUN"
input_topics = ["$in"]
output_topic = "$out"
dead_letter_topic = "$out.dlq"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"fetch.wait.max.ms" = "10"
[metrics]
enabled = false
EOF
    "$bin" run --config "$WORK/$tag.toml" --exit-when-idle 5 >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    pid=$!
    BG_PIDS+=("$pid")
    local waited=0
    until grep -q 'partitions assigned' "$WORK/$tag.err" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "triage ($mode) exited before joining: $(tail -5 "$WORK/$tag.err")"
        ((waited++ < 600)) || die "triage ($mode) did not join its group within 60 s"
        sleep 0.1
    done
    local load_avg
    load_avg="$(cut -d' ' -f1 /proc/loadavg)"
    "$E/kafka_load" --topic "$in" --count "$COUNT" --rate "$RATE" --data "$TEXTS" --partitions 0 \
        >"$WORK/$tag.load.out" 2>"$WORK/$tag.load.err" || die "kafka_load failed: $(tail -3 "$WORK/$tag.load.err")"
    wait "$pid" || die "triage ($mode) failed: $(tail -5 "$WORK/$tag.err")"
    "$E/kafka_routes" --topic "$out" --count "$COUNT" --gold "$TEXTS" --idle-exit-s 10 --timeline \
        >"$WORK/$tag.routes.out" 2>"$WORK/$tag.routes.err" || die "kafka_routes failed: $(tail -3 "$WORK/$tag.routes.err")"
    grep -v '^{' "$WORK/$tag.routes.out" | grep -v '^  *[0-9]*s  ' | sed "s/^/bench\/overload: $mode round $r: /" >&2
    jq -c --arg mode "$mode" --argjson round "$r" --arg load "$load_avg" \
        --argjson achieved "$(grep '^{' "$WORK/$tag.load.out" | tail -n 1 | jq .msgs_per_s)" \
        --argjson summary "$(grep '^{' "$WORK/$tag.err" | tail -n 1)" \
        '{mode: $mode, round: $round, load_average: $load, load_achieved_msgs_per_s: $achieved,
          triage: ($summary | {consumed, produced, dead_lettered, abandoned}), routes: .}' \
        <(grep '^{' "$WORK/$tag.routes.out" | tail -n 1) >>"$WORK/rows.jsonl"
}

MODES=(arrival urgency)
[[ -n "$BASELINE" ]] && MODES=(baseline arrival urgency)
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then order=("${MODES[@]}"); else order=(); for ((i = ${#MODES[@]} - 1; i >= 0; i--)); do order+=("${MODES[$i]}"); done; fi
    for mode in "${order[@]}"; do
        say "round $r: $mode at $RATE msg/s for $SECONDS_PER_RUN s"
        run "$mode" "$r"
    done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

pct() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "–"; else printf "%.1f%%", 100 * v }'; }
echo
echo "## Overload: $FACTOR× the SLM's capacity ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $LOAD_START -> $LOAD_END)"
echo
echo "SLM capacity $(printf '%.0f' "${CAPACITY/null/0}") second opinions/s; $(pct "$ASKING") of messages ask for one (threshold $THRESHOLD, no budget); rate $RATE msg/s for $SECONDS_PER_RUN s ($COUNT messages per run). Every second opinion answered (replay): accuracy $(pct "$CEILING"); fast labels alone $(pct "$FAST_ONLY")."
echo
echo "| mode | round | load achieved msg/s | fast p50 / p99 ms | second_opinion | over_budget | degraded | second_opinion p99 ms | accuracy (fast labels) |"
echo "|---|---:|---:|---|---:|---:|---:|---:|---|"
jq -r '. as $x | .routes.routes as $r
    | def share($k): if $r[$k] then ($r[$k].share * 1000 | round / 10 | tostring) + "%" else "0%" end;
      def ms($v): if $v == null then "–" else ($v | tostring) end;
    "| \($x.mode) | \($x.round) | \($x.load_achieved_msgs_per_s | round) | \(ms($r.fast.p50_ms)) / \(ms($r.fast.p99_ms)) | \(share("second_opinion")) | \(share("over_budget")) | \(share("degraded")) | \(ms($r.second_opinion.p99_ms // null)) | \($x.routes.accuracy * 10000 | round / 100)% (\($x.routes.fast_accuracy * 10000 | round / 100)%) |"' \
    "$WORK/rows.jsonl"
echo
JSON="$(jq -cn --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson cpus "$(nproc)" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" --argjson factor "$FACTOR" \
    --argjson capacity "$CAPACITY" --argjson asking "$ASKING" --argjson rate "$RATE" \
    --argjson seconds "$SECONDS_PER_RUN" --argjson threshold "$THRESHOLD" \
    --argjson ceiling "$CEILING" --argjson fast_only "$FAST_ONLY" \
    --arg window "${WINDOW:-default}" --slurpfile runs "$WORK/rows.jsonl" \
    '{bench: "overload", date: $date, cpus: $cpus, load_start: $load_start, load_end: $load_end,
      factor: $factor, slm_capacity_per_s: $capacity, share_asking: $asking, rate: $rate,
      seconds: $seconds, threshold: $threshold, admission_window_ms: $window,
      replay_every_answered_accuracy: $ceiling, fast_only_accuracy: $fast_only, runs: $runs}')"
echo "$JSON"
if [[ -n "$JSON_OUT" ]]; then echo "$JSON" >"$JSON_OUT"; fi
