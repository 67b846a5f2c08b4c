#!/usr/bin/env bash
# Restart benchmark: how long a `triage run` killed with `kill -9` mid-stream and restarted at
# once waits for its partitions, on a tansu broker of its own.
#
# Usage: bench/restart.sh [--rounds R] [--count N] [--rate MSGS_PER_S] [--instance-id ID]
#                         [--session-ms MS] [--keep]
#   --rounds R        kill/restart cycles (default 3); each one on fresh topics and group
#   --count N         messages produced per round, in the background (default 20000)
#   --rate R          their rate (default 4000 msg/s)
#   --instance-id ID  [kafka] group_instance_id: auto (the default), none (dynamic membership),
#                     or an id
#   --session-ms MS   set session.timeout.ms (and heartbeat.interval.ms = MS/3) in
#                     [kafka.consumer_properties]; by default none is set: triage's defaults
#   --property K=V    also set librdkafka consumer property K to V (repeatable), e.g.
#                     partition.assignment.strategy=range,roundrobin
#   --keep            keep the work directory (configs, logs)
#
# What is measured: kafka_load produces N messages at R msg/s into a fresh 4-partition topic;
# `triage run` (fast path only) consumes them. Once it has published for 3 s, it is killed with
# SIGKILL and the same command is started again at once. The figure is the time from the kill to
# the restarted process's log line "partitions assigned" (it covers the process start and the
# model load too). The round then waits until the restarted process has consumed, and stops it
# with SIGTERM.
#
# Prints one line per round and a JSON line `{"bench":"restart",...}` at the end.
#
# Environment:
#   BENCH_RESTART_BROKER  where the benchmark's own tansu listens (default 127.0.0.1:19492)
#   BENCH_SKIP_BUILD=1    skip `cargo build --release -p triage --bins --examples`
#   TRIAGE_DATA           data root for kafka_load's texts (default ../shared/data), else
#                         examples/messages.jsonl
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." # repository root
ROOT="$PWD"

ROUNDS=3
COUNT=20000
RATE=4000
INSTANCE=auto
SESSION=""
KEEP=0
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --count) COUNT="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --instance-id) INSTANCE="$2"; shift 2 ;;
    --session-ms) SESSION="$2"; shift 2 ;;
    --property) EXTRA+=("$2"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/restart.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$COUNT" =~ ^[0-9]+$ && "$RATE" =~ ^[0-9]+$ ]] ||
    { echo "bench/restart.sh: --rounds, --count and --rate take whole numbers" >&2; exit 2; }
[[ -z "$SESSION" || "$SESSION" =~ ^[0-9]+$ ]] ||
    { echo "bench/restart.sh: --session-ms takes milliseconds" >&2; exit 2; }

say() { echo "bench/restart: $*" >&2; }
die() { echo "bench/restart: error: $*" >&2; exit 1; }
now() { date +%s.%N; }

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage --bins --examples
fi
E="$ROOT/target/release/examples"
TRIAGE="$ROOT/target/release/triage"
for b in "$E/kafka_load" "$TRIAGE"; do
    [[ -x "$b" ]] || die "$b is missing: cargo build --release -p triage --bins --examples"
done

TEXTS="${TRIAGE_DATA:-../shared/data}/goemotions_sentiment4/test.jsonl"
export TRIAGE_BROKER="${BENCH_RESTART_BROKER:-127.0.0.1:19492}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench-restart.XXXXXX")"
# Everything this run starts keeps its temporary files here, removed at the end: triage run's
# instance-slot lock file (triage-<group>.<n>.lock) among them.
export TMPDIR="$WORK"
if [[ ! -f "$TEXTS" ]]; then
    jq -R -c 'fromjson? | select(type == "object" and (.text | type) == "string" and (.text | test("\\S")))
              | {text}' examples/messages.jsonl >"$WORK/texts.jsonl"
    TEXTS="$WORK/texts.jsonl"
fi
PIDS=()
BROKER_STARTED=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ "$BROKER_STARTED" == 1 ]]; then
        scripts/broker.sh stop >/dev/null 2>&1 || true
    fi
    if [[ "$KEEP" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if scripts/broker.sh status >/dev/null 2>&1; then
    die "a broker already runs on $TRIAGE_BROKER: stop it or set BENCH_RESTART_BROKER"
fi
scripts/broker.sh start >&2
BROKER_STARTED=1

# wait_log FILE PATTERN COUNT TIMEOUT_S: waits until PATTERN occurs COUNT times in FILE.
wait_log() {
    local deadline
    deadline=$(($(date +%s) + $4))
    while (($(date +%s) < deadline)); do
        if (($(grep -c -- "$2" "$1" 2>/dev/null || true) >= $3)); then return 0; fi
        sleep 0.05
    done
    return 1
}

TIMES=()
for round in $(seq 1 "$ROUNDS"); do
    tag="restart-$$-$round"
    for t in in out dlq; do
        "$E/kafka_load" --topic "$tag-$t" --count 0 --partitions 4 --data "$TEXTS" --warmup-ms 0 >/dev/null
    done
    props="[kafka.consumer_properties]"
    if [[ -n "$SESSION" ]]; then
        props+=$'\n'"\"session.timeout.ms\" = \"$SESSION\""
        props+=$'\n'"\"heartbeat.interval.ms\" = \"$((SESSION / 3))\""
    fi
    for kv in "${EXTRA[@]}"; do
        props+=$'\n'"\"${kv%%=*}\" = \"${kv#*=}\""
    done
    cat >"$WORK/$tag.toml" <<EOF
# Written by bench/restart.sh.
[kafka]
brokers = "$TRIAGE_BROKER"
group_id = "$tag-group"
input_topics = ["$tag-in"]
output_topic = "$tag-out"
dead_letter_topic = "$tag-dlq"
group_instance_id = "$INSTANCE"
$props
[slm]
mode = "off"
[metrics]
enabled = false
EOF
    "$E/kafka_load" --topic "$tag-in" --count "$COUNT" --rate "$RATE" --partitions 0 \
        --data "$TEXTS" >"$WORK/$tag.load.log" 2>&1 &
    PIDS+=($!)
    t_start=$(now)
    RUST_LOG=info,librdkafka=warn "$TRIAGE" run --config "$WORK/$tag.toml" >/dev/null 2>"$WORK/$tag.1.log" &
    first=$!
    PIDS+=("$first")
    wait_log "$WORK/$tag.1.log" "partitions assigned" 1 180 || die "round $round: no partitions in 180 s (log $WORK/$tag.1.log)"
    t_join=$(now)
    sleep 3
    kill -9 "$first"
    t_kill=$(now)
    RUST_LOG=info,librdkafka=warn "$TRIAGE" run --config "$WORK/$tag.toml" >/dev/null 2>"$WORK/$tag.2.log" &
    second=$!
    PIDS+=("$second")
    wait "$first" 2>/dev/null || true
    wait_log "$WORK/$tag.2.log" "partitions assigned" 1 300 || die "round $round: the restarted instance got no partitions in 300 s"
    t_back=$(now)
    secs=$(echo "$t_back - $t_kill" | bc -l)
    join=$(grep -m1 -o 'group_instance_id=[^ ]*' "$WORK/$tag.2.log" || echo "group_instance_id=?")
    printf 'round %d: partitions back %.2f s after kill -9 (%s; first join took %.2f s after start)\n' \
        "$round" "$secs" "$join" "$(echo "$t_join - $t_start" | bc -l)" >&2
    TIMES+=("$secs")
    kill -TERM "$second"
    wait "$second" 2>/dev/null || true
    wait "${PIDS[0]}" 2>/dev/null || true
    PIDS=()
done
printf '{"bench":"restart","instance_id":"%s","session_ms":"%s","properties":"%s","rounds":%d,"seconds":[%s]}\n' \
    "$INSTANCE" "${SESSION:-default}" "${EXTRA[*]}" "$ROUNDS" "$(IFS=,; echo "${TIMES[*]}")"
