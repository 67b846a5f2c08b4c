#!/usr/bin/env bash
# Soak test: triage run at a steady rate for a while, sampling every 10 s its resident memory, the
# lag (messages produced so far minus messages triage consumed, from its /metrics) and its
# throughput into a CSV, then plotting them as an SVG.
#
#   scripts/soak.sh [SECONDS] [OUT_DIR]        (default 120 s, .cache/triage/soak)
#   FETCH_WAIT_MS (default 100): triage's fetch.wait.max.ms.
#   RATE=msgs/s (default 10000, about half of what triage sustains here beside the broker and the
#   load generator on 2 cores); TRIAGE_BROKER (default 127.0.0.1:19492: a broker of its own).
#   ROTATE_S (default 0: off): send to a new input topic every ROTATE_S seconds
#   (`<id>.in.<n>`, kafka_load --rotate-every); all of them are created up front and triage
#   subscribes to the list, so no rebalance happens when the load moves on.
#   LOAD_LINGER_MS (default 5): the load generator's linger.ms.
#   SOAK_METRICS (default 127.0.0.1:19899): where triage serves /metrics during the soak.
#   SOAK_CHECK=1: fail unless the goals below hold (soak_plot --check); scripts/test.sh sets it.
#
# After the load ends it waits (up to 120 s) until triage has consumed every message sent, then
# stops triage with SIGTERM; it fails if a message is missing or triage exits with an error.
#
# The broker keeps every message in memory (tansu, in-memory storage): its RSS is sampled too
# (last column), and it bounds RATE x SECONDS on this machine. Its cost per fetch also grows with
# the number of record batches stored in the partition being read (docs/faults.md): rotation
# bounds that, and a longer LOAD_LINGER_MS makes fewer, larger batches. Topics are not deleted
# (librdkafka 2.12.1 crashes when a topic it fetches from is deleted on tansu; docs/kafka.md), so
# about 1 KB per message (input and decision) stays in the broker: RATE x SECONDS x 1 KB of RAM.
#
# Goal: RSS flat within ±10% after warm-up (60 s), lag bounded. Record runs in docs/faults.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${1:-120}"
OUT="${2:-.cache/triage/soak}"
RATE="${RATE:-10000}"
FETCH_WAIT_MS="${FETCH_WAIT_MS:-100}"
ROTATE_S="${ROTATE_S:-0}"
LOAD_LINGER_MS="${LOAD_LINGER_MS:-5}"
export TRIAGE_BROKER="${TRIAGE_BROKER:-127.0.0.1:19492}"
METRICS="${SOAK_METRICS:-127.0.0.1:19899}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="${TRIAGE_DATA:-../shared/data}/goemotions_sentiment4/test.jsonl"
if [ ! -f "$DATA" ]; then
  # A user's clone has no ../shared: the sample log's texts (kafka_load skips its malformed lines).
  echo "soak: $DATA not found; texts from examples/messages.jsonl instead"
  DATA=examples/messages.jsonl
fi

cargo build --release -q -p triage --bin triage --example kafka_load
cargo build --release -q -p triage-eval --example soak_plot
scripts/broker.sh start
PIDS=()
# triage's temporary directory, removed at the end: `triage run` reserves its instance slot by
# locking <temp>/triage-<group>.<n>.lock and leaves the file, and every soak has a group of its own.
SOAK_TMP="$(mktemp -d "${TMPDIR:-/tmp}/triage-soak.XXXXXX")"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/broker.sh stop || true
  rm -rf "$SOAK_TMP"
}
trap cleanup EXIT

id="soak-$(date +%s)"
total=$((RATE * DURATION))
segment=$((RATE * ROTATE_S))
if [ "$segment" -gt 0 ]; then
  inputs=""
  for ((k = 0; k * segment < total; k++)); do
    scripts/broker.sh create-topic "$id.in.$k" 4 >/dev/null
    inputs="$inputs${inputs:+, }\"$id.in.$k\""
  done
  load_topic=(--topic "$id.in" --rotate-every "$segment" --partitions 0)
else
  inputs="\"$id.in\""
  load_topic=(--topic "$id.in" --partitions 0)
  scripts/broker.sh create-topic "$id.in" 4 >/dev/null
fi
cat >"$OUT/triage.toml" <<TOML
[kafka]
brokers = "$TRIAGE_BROKER"
group_id = "$id"
input_topics = [$inputs]
output_topic = "$id.out"
dead_letter_topic = "$id.dlq"
[kafka.properties]
# librdkafka's session timeout (45 s) and a 100 ms fetch wait: tansu answers a fetch only when the
# wait expires, and its CPU cost per fetch grows with the stored log (see docs/faults.md), so the
# 10 ms the latency benchmark uses would saturate it within minutes.
"fetch.wait.max.ms" = "$FETCH_WAIT_MS"
[metrics]
listen = "$METRICS"
[slm]
mode = "off"
TOML
for t in "$id.out" "$id.dlq"; do scripts/broker.sh create-topic "$t" 4 >/dev/null; done
TMPDIR="$SOAK_TMP" target/release/triage run --config "$OUT/triage.toml" 2>"$OUT/triage.log" &
TRIAGE=$!
PIDS+=("$TRIAGE")
# Wait until triage is up (health endpoint), then start the load.
for _ in $(seq 1 100); do curl -fs "http://$METRICS/health" >/dev/null 2>&1 && break; sleep 0.2; done
target/release/examples/kafka_load "${load_topic[@]}" --count "$total" --rate "$RATE" --data "$DATA" \
  -X "linger.ms=$LOAD_LINGER_MS" >"$OUT/load.log" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
LOAD_DONE=0
# Fails the soak at once when the load generator has exited with an error (a soak whose load
# died would otherwise only notice at the end, after waiting for messages never sent).
check_load() {
  [ "$LOAD_DONE" = 1 ] && return 0
  kill -0 "$LOAD" 2>/dev/null && return 0
  if wait "$LOAD"; then
    LOAD_DONE=1
  else
    echo "soak: the load generator failed; its log ($OUT/load.log):"
    tail -n 20 "$OUT/load.log"
    exit 1
  fi
}
# Messages triage has consumed so far (empty if /metrics does not answer).
consumed_now() {
  curl -fs "http://$METRICS/metrics" | awk '/^triage_consumed_total/ {print $2}'
}
start=$(date +%s.%N)
BROKER_PID=$(scripts/broker.sh status | sed -n 's/.*pid \([0-9]*\).*/\1/p')
echo "t_s,rss_kb,lag,msgs_per_s,broker_rss_kb" >"$OUT/soak.csv"
prev=0
while :; do
  sleep 10
  now=$(date +%s.%N)
  t=$(echo "$now - $start" | bc)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$TRIAGE/status")
  consumed=$(consumed_now)
  consumed=${consumed:-0}
  produced=$(echo "r = $RATE * $t; if (r > $total) r = $total; r" | bc)
  lag=$(echo "$produced - $consumed" | bc | sed 's/\..*//')
  rate=$(( (${consumed%.*} - prev) / 10 ))
  prev=${consumed%.*}
  brss=$(awk '/VmRSS/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
  printf '%.0f,%s,%s,%s,%s\n' "$t" "$rss" "${lag#-}" "$rate" "${brss:-0}" >>"$OUT/soak.csv"
  printf 't=%4.0fs rss=%6s kB lag=%8s rate=%6s msg/s broker rss=%8s kB\n' "$t" "$rss" "$lag" "$rate" "${brss:-0}"
  check_load
  if [ "$(echo "$t >= $DURATION" | bc)" = 1 ]; then break; fi
done
# The load must have finished cleanly, and every message sent must be consumed before the stop.
for _ in $(seq 1 120); do
  check_load
  [ "$LOAD_DONE" = 1 ] && break
  sleep 1
done
[ "$LOAD_DONE" = 1 ] || { echo "soak: the load generator is still sending 120 s after the end"; exit 1; }
grep -h 'kafka_load:' "$OUT/load.log" | tail -n 3 || true
consumed=0
for _ in $(seq 1 120); do
  consumed=$(consumed_now)
  consumed=${consumed%.*}
  [ "${consumed:-0}" -ge "$total" ] && break
  sleep 1
done
kill -TERM "$TRIAGE"
wait "$TRIAGE" || { echo "triage exited with an error; see $OUT/triage.log"; exit 1; }
echo "consumed ${consumed:-0} of $total messages sent" | tee "$OUT/summary.txt"
[ "${consumed:-0}" -ge "$total" ] || { echo "soak: triage did not consume every message"; exit 1; }
check=()
[ "${SOAK_CHECK:-0}" = 1 ] && check=(--check)
# (pipefail: a failed check fails the script)
target/release/examples/soak_plot "$OUT/soak.csv" "$OUT/soak.svg" 60 "${check[@]}" | tee -a "$OUT/summary.txt"
echo "wrote $OUT/soak.csv and $OUT/soak.svg"
