#!/usr/bin/env bash
# Soak test: triage run at a steady rate for a while, sampling every 10 s its resident memory, the
# lag (messages produced so far minus messages triage consumed, from its /metrics) and its
# throughput into a CSV, then plotting them as an SVG.
#
#   scripts/soak.sh [SECONDS] [OUT_DIR]        (default 120 s, .cache/triage/soak)
#   FETCH_WAIT_MS (default 100): triage's fetch.wait.max.ms.
#   RATE=msgs/s (default 10000, about half of what triage sustains here beside the broker and the
#   load generator on 2 cores); TRIAGE_BROKER (default 127.0.0.1:19492: a broker of its own).
#
# The broker keeps every message in memory (tansu, in-memory storage): its RSS is sampled too
# (last column), and it bounds RATE x SECONDS on this machine.
#
# Goal: RSS flat within ±10% after warm-up (60 s), lag bounded. Record runs in docs/faults.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${1:-120}"
OUT="${2:-.cache/triage/soak}"
RATE="${RATE:-10000}"
FETCH_WAIT_MS="${FETCH_WAIT_MS:-100}"
export TRIAGE_BROKER="${TRIAGE_BROKER:-127.0.0.1:19492}"
METRICS="127.0.0.1:19899"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="${TRIAGE_DATA:-../shared/data}/goemotions_sentiment4/test.jsonl"
[ -f "$DATA" ] || DATA=examples/messages.jsonl

cargo build --release -q -p triage-pipelines --bin triage --example kafka_load --example soak_plot
scripts/broker.sh start
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/broker.sh stop || true
}
trap cleanup EXIT

id="soak-$(date +%s)"
cat >"$OUT/triage.toml" <<TOML
[kafka]
brokers = "$TRIAGE_BROKER"
group_id = "$id"
input_topics = ["$id.in"]
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
total=$((RATE * DURATION))
for t in "$id.in" "$id.out" "$id.dlq"; do scripts/broker.sh create-topic "$t" 4 >/dev/null; done
target/release/triage run --config "$OUT/triage.toml" 2>"$OUT/triage.log" &
TRIAGE=$!
PIDS+=("$TRIAGE")
# Wait until triage is up (health endpoint), then start the load.
for _ in $(seq 1 100); do curl -fs "http://$METRICS/health" >/dev/null 2>&1 && break; sleep 0.2; done
target/release/examples/kafka_load --topic "$id.in" --count "$total" --rate "$RATE" --data "$DATA" --partitions 0 \
  >"$OUT/load.log" 2>&1 &
PIDS+=("$!")
start=$(date +%s.%N)
BROKER_PID=$(scripts/broker.sh status | sed -n 's/.*pid \([0-9]*\).*/\1/p')
echo "t_s,rss_kb,lag,msgs_per_s,broker_rss_kb" >"$OUT/soak.csv"
prev=0
while :; do
  sleep 10
  now=$(date +%s.%N)
  t=$(echo "$now - $start" | bc)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$TRIAGE/status")
  consumed=$(curl -fs "http://$METRICS/metrics" | awk '/^triage_consumed_total/ {print $2}')
  consumed=${consumed:-0}
  produced=$(echo "r = $RATE * $t; if (r > $total) r = $total; r" | bc)
  lag=$(echo "$produced - $consumed" | bc | sed 's/\..*//')
  rate=$(( (${consumed%.*} - prev) / 10 ))
  prev=${consumed%.*}
  brss=$(awk '/VmRSS/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
  printf '%.0f,%s,%s,%s,%s\n' "$t" "$rss" "${lag#-}" "$rate" "${brss:-0}" >>"$OUT/soak.csv"
  printf 't=%4.0fs rss=%6s kB lag=%8s rate=%6s msg/s broker rss=%8s kB\n' "$t" "$rss" "$lag" "$rate" "${brss:-0}"
  if [ "$(echo "$t >= $DURATION" | bc)" = 1 ]; then break; fi
done
kill -TERM "$TRIAGE"
wait "$TRIAGE" || { echo "triage exited with an error; see $OUT/triage.log"; exit 1; }
target/release/examples/soak_plot "$OUT/soak.csv" "$OUT/soak.svg" 60 | tee "$OUT/summary.txt"
echo "wrote $OUT/soak.csv and $OUT/soak.svg"
