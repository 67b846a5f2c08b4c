#!/usr/bin/env bash
# Kafka benchmark: `triage run` against the bare rdkafka passthrough (the ceiling), on a broker of
# its own, in one run; then triage's end-to-end latency at about half its measured maximum rate.
#
# Usage: bench/kafka.sh [--count N] [--rounds R] [--rate MSGS_PER_S] [--latency-seconds S]
#                       [--exactly-once] [--txn-interval-ms MS] [--classify-threads N]
#                       [--json FILE] [--perf FILE] [--keep]
#   --count N            messages per throughput test (default 200000)
#   --rounds R           throughput rounds; round 1 runs passthrough then triage, round 2 triage
#                        then passthrough, and so on, so that neither always meets the emptier
#                        broker (default 2); with --exactly-once the three stages rotate
#   --exactly-once       also measure `triage run` with [kafka] delivery = "exactly_once" (stage
#                        triage_eos): throughput in the same rounds, latency at the same rate
#   --txn-interval-ms MS its transaction_interval_ms (default 100, triage's default)
#   --classify-threads N the at-least-once triage stage's [kafka] classify_threads (default 1,
#                        triage's default: the loop's own thread)
#   --rate R             latency test rate (default: half the mean measured triage throughput)
#   --latency-seconds S  length of the latency test at that rate (default 10)
#   --json FILE          also write every figure as one JSON object to FILE
#   --perf FILE          record `perf record` of triage's first throughput test into FILE
#                        (call graphs by frame pointer; BENCH_PERF_CALLGRAPH=dwarf for others)
#   --keep               keep the work directory (configs, logs, the tools' JSON lines)
#
# What is measured (the same way for both, so the ratio compares like with like):
#   throughput  N messages are produced first (kafka_load, as fast as possible) to a fresh topic;
#               then the stage (kafka_passthrough, or `triage run --exit-when-idle 3` with its own
#               fresh consumer group) drains it to a fresh output topic. kafka_latency then reads
#               the output topic and reports N / (last - first output record timestamp): the
#               records' CreateTime, i.e. when the stage produced them (ms resolution). The group
#               join and the idle wait before exit are not included. kafka_passthrough's own figure
#               (first message received -> last delivery acknowledged) is printed too.
#   latency     triage runs and has joined its group; kafka_latency reads triage's output topic
#               while kafka_load sends at a fixed rate. Latency = time kafka_latency received the
#               decision (--clock receive) - the `sent_us` header kafka_load stamped just before
#               handing the message to its producer (triage copies input headers onto its
#               output). It therefore includes both broker hops and the reader's own fetch
#               (fetch.wait.max.ms=10 against tansu). The same run's output topic is then re-read
#               with --clock record (send -> triage's produce time), and the passthrough is
#               measured at the same rate for reference.
#
# Environment:
#   TRIAGE_DATA          data root (default ../shared/data); texts from
#                        goemotions_sentiment4/test.jsonl, else examples/messages.jsonl
#   BENCH_KAFKA_BROKER   where the benchmark's own tansu listens (default 127.0.0.1:19392); the
#                        script refuses to run if a broker already runs there, and stops its own
#   BENCH_SKIP_BUILD=1   skip `cargo build --release -p triage --bins --examples`
#   BENCH_TRIAGE_BIN     the triage binary to measure (default target/release/triage), e.g. to
#                        compare two builds in turn
#   TRIAGE_CACHE         as for scripts/broker.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." # repository root
ROOT="$PWD"

COUNT=200000
ROUNDS=2
RATE=""
LAT_S=10
JSON_OUT=""
PERF_OUT=""
KEEP=0
EOS=0
TXN_MS=100
THREADS=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --latency-seconds) LAT_S="$2"; shift 2 ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    --perf) PERF_OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --exactly-once) EOS=1; shift ;;
    --txn-interval-ms) TXN_MS="$2"; shift 2 ;;
    --classify-threads) THREADS="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/kafka.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$COUNT" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[1-9][0-9]*$ && "$LAT_S" =~ ^[0-9]+$ && "$TXN_MS" =~ ^[1-9][0-9]*$ && "$THREADS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "bench/kafka.sh: --count, --rounds, --latency-seconds, --txn-interval-ms and --classify-threads take whole numbers" >&2; exit 2; }

say() { echo "bench/kafka: $*" >&2; }
die() { echo "bench/kafka: error: $*" >&2; exit 1; }
# jget FILE KEY: KEY of the last JSON line of FILE.
jget() { grep '^{' "$1" | tail -n 1 | jq -r ".$2"; }
command -v jq >/dev/null || die "jq is needed to read the tools' JSON lines (apt-get install jq)"

DATA_ROOT="${TRIAGE_DATA:-../shared/data}"
TEXTS="$DATA_ROOT/goemotions_sentiment4/test.jsonl"
FALLBACK=0
TEXTS_LABEL="$TEXTS"
if [[ ! -f "$TEXTS" ]]; then
    TEXTS_LABEL="examples/messages.jsonl (well-formed, non-empty texts only)"
    say "WARNING: $TEXTS not found; using the texts of examples/messages.jsonl instead (not comparable)"
    FALLBACK=1
fi

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p triage --bins --examples
fi
E="$ROOT/target/release/examples"
TRIAGE="${BENCH_TRIAGE_BIN:-$ROOT/target/release/triage}"
for b in "$E/kafka_load" "$E/kafka_passthrough" "$E/kafka_latency" "$TRIAGE"; do
    [[ -x "$b" ]] || die "$b is missing: cargo build --release -p triage --bins --examples"
done

export TRIAGE_BROKER="${BENCH_KAFKA_BROKER:-127.0.0.1:19392}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench-kafka.XXXXXX")"
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
    if [[ "$KEEP" == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

if scripts/broker.sh status >/dev/null 2>&1; then
    die "a broker already runs on $TRIAGE_BROKER: stop it (TRIAGE_BROKER=$TRIAGE_BROKER scripts/broker.sh stop) or set BENCH_KAFKA_BROKER"
fi
scripts/broker.sh start
BROKER_STARTED=1

if [[ "$FALLBACK" == 1 ]]; then
    # The sample log holds malformed lines and an empty text on purpose; kafka_load wants
    # {"text": ...} on every line, and every message must reach the output topic.
    jq -R -c 'fromjson? | select(type == "object" and (.text | type) == "string" and (.text | test("\\S")))
              | {text}' examples/messages.jsonl >"$WORK/texts.jsonl"
    TEXTS="$WORK/texts.jsonl"
fi

RUN="$(date +%s)"
LOAD_START="$(cut -d' ' -f1 /proc/loadavg)"
say "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $COUNT messages from $TEXTS_LABEL; broker $TRIAGE_BROKER"

# triage_config NAME INPUT OUTPUT [DELIVERY]: writes $WORK/NAME.toml.
triage_config() {
    cat >"$WORK/$1.toml" <<EOF
# Written by bench/kafka.sh: only the fast path is measured (no SLM, no metrics endpoint).
[kafka]
brokers = "$TRIAGE_BROKER"
group_id = "bench-$1-$RUN"
input_topics = ["$2"]
output_topic = "$3"
dead_letter_topic = "$3.dlq"
delivery = "${4:-at_least_once}"
transaction_interval_ms = $TXN_MS
classify_threads = $([[ "${4:-at_least_once}" == exactly_once ]] && echo 1 || echo "$THREADS")

[kafka.properties]
"session.timeout.ms" = "3000"
"heartbeat.interval.ms" = "1000"
"fetch.wait.max.ms" = "10"

[metrics]
enabled = false

[slm]
mode = "off"
EOF
}

# topics IN OUT: the output topics (the input topic is created by kafka_load, 4 partitions).
topics() {
    scripts/broker.sh create-topic "$1" 4 >/dev/null
    scripts/broker.sh create-topic "$1.dlq" 1 >/dev/null
}

# cpu_of TIMEFILE: "user+sys" CPU seconds written by /usr/bin/time -f '%U %S'.
cpu_of() { awk '{printf "%.2f", $1 + $2}' "$1"; }
TIME=(/usr/bin/time -f '%U %S' -o)
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed (apt-get install time)"

# throughput STAGE ROUND: writes "msgs_per_s cpu_s [self_reported]" for STAGE
# (passthrough|triage|triage_eos) to $WORK/result.
throughput() {
    local stage="$1" r="$2" in out tag
    tag="$stage-r$r"
    in="bench.$tag.in"
    out="bench.$tag.out"
    "$E/kafka_load" --topic "$in" --count "$COUNT" --data "$TEXTS" >"$WORK/$tag.load.out" 2>"$WORK/$tag.load.err" ||
        die "kafka_load failed: $(tail -3 "$WORK/$tag.load.err")"
    topics "$out"
    case "$stage" in
    passthrough)
        "${TIME[@]}" "$WORK/$tag.time" "$E/kafka_passthrough" --input "$in" --output "$out" \
            --count "$COUNT" --session-timeout-ms 3000 >"$WORK/$tag.out" 2>"$WORK/$tag.err" ||
            die "kafka_passthrough failed: $(tail -5 "$WORK/$tag.err")"
        ;;
    triage | triage_eos)
        local delivery=at_least_once
        [[ "$stage" == triage_eos ]] && delivery=exactly_once
        triage_config "$tag" "$in" "$out" "$delivery"
        local prefix=()
        if [[ -n "$PERF_OUT" && ! -e "$WORK/perf.done" ]]; then
            # BENCH_PERF_CALLGRAPH=dwarf: call chains through code built without frame pointers.
            prefix=(perf record -F 499 --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" -o "$PERF_OUT" --)
            touch "$WORK/perf.done"
        fi
        "${TIME[@]}" "$WORK/$tag.time" "${prefix[@]}" "$TRIAGE" run --config "$WORK/$tag.toml" \
            --exit-when-idle 3 >"$WORK/$tag.out" 2>"$WORK/$tag.err" ||
            die "triage run failed: $(tail -5 "$WORK/$tag.err")"
        ;;
    esac
    local expect="$COUNT"
    if [[ "$stage" == triage* ]]; then
        # triage's summary (last stderr line): dead letters do not reach the output topic.
        expect="$(grep '^{' "$WORK/$tag.err" | tail -n 1 | jq -r .produced)"
        [[ "$expect" == "$COUNT" ]] || say "WARNING: triage produced $expect decisions for $COUNT messages ($(grep '^{' "$WORK/$tag.err" | tail -n 1))"
    fi
    "$E/kafka_latency" --topic "$out" --count "$expect" --idle-exit-s 10 --clock record \
        >"$WORK/$tag.read.out" 2>"$WORK/$tag.read.err" ||
        die "reading $out failed: $(tail -3 "$WORK/$tag.read.err")"
    local dups
    dups="$(jget "$WORK/$tag.read.out" duplicates)"
    [[ "$dups" == 0 ]] || say "WARNING: $dups duplicate ids in $out"
    {
        printf '%s %s' "$(jget "$WORK/$tag.read.out" output_msgs_per_s)" "$(cpu_of "$WORK/$tag.time")"
        if [[ "$stage" == passthrough ]]; then
            printf ' %s' "$(jget "$WORK/$tag.out" msgs_per_s)"
        fi
        echo
    } >"$WORK/result"
}

declare -a PT_RATES=() TR_RATES=() EO_RATES=() PT_CPU=() TR_CPU=() EO_CPU=() PT_SELF=()
STAGES=(passthrough triage)
((EOS == 1)) && STAGES+=(triage_eos)
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order, so that no stage always meets the emptier broker.
    order=()
    for ((i = 0; i < ${#STAGES[@]}; i++)); do
        order+=("${STAGES[$(((r - 1 + i) % ${#STAGES[@]}))]}")
    done
    if ((EOS == 0 && r % 2 == 0)); then order=(triage passthrough); fi
    for stage in "${order[@]}"; do
        throughput "$stage" "$r"
        read -r rate cpu self <"$WORK/result"
        case "$stage" in
        passthrough)
            PT_RATES+=("$rate"); PT_CPU+=("$cpu"); PT_SELF+=("$self")
            say "round $r passthrough: $(printf '%.0f' "$rate") msg/s by output timestamps ($(printf '%.0f' "$self") msg/s self-reported), $cpu CPU-s"
            ;;
        triage)
            TR_RATES+=("$rate"); TR_CPU+=("$cpu")
            say "round $r triage:      $(printf '%.0f' "$rate") msg/s by output timestamps, $cpu CPU-s"
            ;;
        triage_eos)
            EO_RATES+=("$rate"); EO_CPU+=("$cpu")
            say "round $r triage_eos:  $(printf '%.0f' "$rate") msg/s by output timestamps, $cpu CPU-s ($(grep '^{' "$WORK/$stage-r$r.err" | tail -n 1 | jq -c '{transactions_committed, transactions_aborted}'))"
            ;;
        esac
    done
done

mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }
PT_MEAN="$(mean "${PT_RATES[@]}")"
TR_MEAN="$(mean "${TR_RATES[@]}")"
RATIO="$(awk -v t="$TR_MEAN" -v p="$PT_MEAN" 'BEGIN {printf "%.3f", t / p}')"
EO_MEAN=0 EO_RATIO=0 EO_VS_TR=0
if ((EOS == 1)); then
    EO_MEAN="$(mean "${EO_RATES[@]}")"
    EO_RATIO="$(awk -v t="$EO_MEAN" -v p="$PT_MEAN" 'BEGIN {printf "%.3f", t / p}')"
    EO_VS_TR="$(awk -v e="$EO_MEAN" -v t="$TR_MEAN" 'BEGIN {printf "%.3f", e / t}')"
fi

# Latency at a fixed rate: the stage is up and joined before the load starts.
[[ -n "$RATE" ]] || RATE="$(awk -v t="$TR_MEAN" 'BEGIN {printf "%d", t / 2 / 1000 + 0.5}')000"
LAT_N=$((RATE * LAT_S))
((LAT_N >= 1000)) || LAT_N=1000

# latency STAGE: writes "p50 p99 p50_record p99_record achieved_rate" (ms, msg/s) at $RATE msg/s for
# $LAT_N messages to $WORK/result.
latency() {
    local stage="$1" tag in out pid
    tag="$stage-lat"
    in="bench.$tag.in"
    out="bench.$tag.out"
    scripts/broker.sh create-topic "$in" 4 >/dev/null
    topics "$out"
    case "$stage" in
    triage | triage_eos)
        local delivery=at_least_once
        [[ "$stage" == triage_eos ]] && delivery=exactly_once
        triage_config "$tag" "$in" "$out" "$delivery"
        "$TRIAGE" run --config "$WORK/$tag.toml" --exit-when-idle 10 >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
        ;;
    passthrough)
        "$E/kafka_passthrough" --input "$in" --output "$out" --count "$LAT_N" --session-timeout-ms 3000 \
            >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
        ;;
    esac
    pid=$!
    BG_PIDS+=("$pid")
    # Wait for the group join: both log the assignment.
    local waited=0
    until grep -q 'partitions assigned\|assigned partitions' "$WORK/$tag.err" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$stage exited before joining: $(tail -5 "$WORK/$tag.err")"
        ((waited++ < 300)) || die "$stage did not join its group within 30 s"
        sleep 0.1
    done
    "$E/kafka_latency" --topic "$out" --count "$LAT_N" --clock receive --idle-exit-s 20 \
        >"$WORK/$tag.recv.out" 2>"$WORK/$tag.recv.err" &
    local reader=$!
    BG_PIDS+=("$reader")
    until grep -q 'reading' "$WORK/$tag.recv.err" 2>/dev/null; do
        kill -0 "$reader" 2>/dev/null || die "kafka_latency exited: $(tail -3 "$WORK/$tag.recv.err")"
        sleep 0.1
    done
    sleep 1 # the reader's assignment and first fetch
    "$E/kafka_load" --topic "$in" --count "$LAT_N" --rate "$RATE" --data "$TEXTS" \
        >"$WORK/$tag.load.out" 2>"$WORK/$tag.load.err" || die "kafka_load failed: $(tail -3 "$WORK/$tag.load.err")"
    wait "$reader" || die "kafka_latency failed: $(tail -3 "$WORK/$tag.recv.err")"
    wait "$pid" || die "$stage failed: $(tail -5 "$WORK/$tag.err")"
    "$E/kafka_latency" --topic "$out" --count "$LAT_N" --clock record --idle-exit-s 10 \
        >"$WORK/$tag.rec.out" 2>"$WORK/$tag.rec.err" || die "re-reading $out failed"
    local achieved
    achieved="$(jget "$WORK/$tag.load.out" msgs_per_s)"
    say "$stage at $RATE msg/s (load achieved $(printf '%.0f' "$achieved")): $(grep '^kafka_latency' "$WORK/$tag.recv.out" | sed 's/.*latency ms/latency ms/')"
    echo "$(jget "$WORK/$tag.recv.out" p50_ms) $(jget "$WORK/$tag.recv.out" p99_ms)" \
        "$(jget "$WORK/$tag.rec.out" p50_ms) $(jget "$WORK/$tag.rec.out" p99_ms) $achieved" >"$WORK/result"
}

latency triage
read -r TL50 TL99 TR50 TR99 TL_ACH <"$WORK/result"
latency passthrough
read -r PL50 PL99 PR50 PR99 PL_ACH <"$WORK/result"
EL50=0 EL99=0 ER50=0 ER99=0 EL_ACH=0
if ((EOS == 1)); then
    latency triage_eos
    read -r EL50 EL99 ER50 ER99 EL_ACH <"$WORK/result"
fi
LOAD_END="$(cut -d' ' -f1 /proc/loadavg)"

fmt() { printf '%.0f' "$1"; }
echo
echo "## Kafka: triage run vs bare rdkafka passthrough ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $LOAD_START -> $LOAD_END)"
echo
echo "| measurement | result |"
echo "|---|---|"
ints() { printf '%s\n' "$@" | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), $1}'; }
echo "| triage run (classify_threads $THREADS), $COUNT msgs: msg/s, mean of rounds ($(ints "${TR_RATES[@]}")) | **$(fmt "$TR_MEAN")** (CPU-s per run: ${TR_CPU[*]}) |"
echo "| passthrough, $COUNT msgs: msg/s, mean of rounds ($(ints "${PT_RATES[@]}")) | **$(fmt "$PT_MEAN")** (CPU-s per run: ${PT_CPU[*]}; self-reported msg/s: $(ints "${PT_SELF[@]}")) |"
echo "| triage ÷ passthrough (goal ≥ 0.9) | **$RATIO** |"
echo "| triage latency at $RATE msg/s, send → decision received | p50 **$TL50 ms**, p99 **$TL99 ms** |"
echo "| triage latency at $RATE msg/s, send → decision produced (record time) | p50 $TR50 ms, p99 $TR99 ms |"
echo "| passthrough latency at $RATE msg/s, send → received (reference) | p50 $PL50 ms, p99 $PL99 ms |"
if ((EOS == 1)); then
    echo "| triage exactly once (transaction_interval_ms $TXN_MS), $COUNT msgs: msg/s, mean of rounds ($(ints "${EO_RATES[@]}")) | **$(fmt "$EO_MEAN")** (CPU-s per run: ${EO_CPU[*]}) |"
    echo "| exactly once ÷ at least once | **$EO_VS_TR** |"
    echo "| exactly once ÷ passthrough | **$EO_RATIO** |"
    echo "| exactly-once latency at $RATE msg/s, send → decision received by a read_committed reader | p50 **$EL50 ms**, p99 **$EL99 ms** |"
    echo "| exactly-once latency at $RATE msg/s, send → decision produced (record time) | p50 $ER50 ms, p99 $ER99 ms |"
fi
echo
JSON="$(jq -cn \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson cpus "$(nproc)" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" --argjson count "$COUNT" \
    --arg texts "$TEXTS_LABEL" \
    --argjson triage "[$(IFS=,; echo "${TR_RATES[*]}")]" --argjson triage_cpu "[$(IFS=,; echo "${TR_CPU[*]}")]" \
    --argjson passthrough "[$(IFS=,; echo "${PT_RATES[*]}")]" --argjson passthrough_cpu "[$(IFS=,; echo "${PT_CPU[*]}")]" \
    --argjson passthrough_self "[$(IFS=,; echo "${PT_SELF[*]}")]" \
    --argjson triage_mean "$TR_MEAN" --argjson passthrough_mean "$PT_MEAN" --argjson ratio "$RATIO" \
    --argjson rate "$RATE" --argjson lat_n "$LAT_N" \
    --argjson t50 "$TL50" --argjson t99 "$TL99" --argjson tr50 "$TR50" --argjson tr99 "$TR99" \
    --argjson p50 "$PL50" --argjson p99 "$PL99" --argjson pr50 "$PR50" --argjson pr99 "$PR99" \
    --argjson t_ach "$TL_ACH" --argjson p_ach "$PL_ACH" \
    --argjson eos "$EOS" --argjson txn_ms "$TXN_MS" --argjson classify_threads "$THREADS" \
    --argjson eos_rates "[$(IFS=,; echo "${EO_RATES[*]}")]" --argjson eos_cpu "[$(IFS=,; echo "${EO_CPU[*]}")]" \
    --argjson eos_mean "$EO_MEAN" --argjson eos_ratio "$EO_RATIO" --argjson eos_vs_triage "$EO_VS_TR" \
    --argjson e50 "$EL50" --argjson e99 "$EL99" --argjson er50 "$ER50" --argjson er99 "$ER99" --argjson e_ach "$EL_ACH" \
    '{bench: "kafka", date: $date, cpus: $cpus, load_start: $load_start, load_end: $load_end,
      count: $count, texts: $texts, classify_threads: $classify_threads,
      triage_msgs_per_s: $triage, triage_cpu_s: $triage_cpu, triage_mean: $triage_mean,
      passthrough_msgs_per_s: $passthrough, passthrough_cpu_s: $passthrough_cpu,
      passthrough_self_reported: $passthrough_self, passthrough_mean: $passthrough_mean,
      ratio: $ratio,
      latency: {rate: $rate, messages: $lat_n, load_achieved: {triage: $t_ach, passthrough: $p_ach},
                triage_receive_ms: {p50: $t50, p99: $t99}, triage_record_ms: {p50: $tr50, p99: $tr99},
                passthrough_receive_ms: {p50: $p50, p99: $p99}, passthrough_record_ms: {p50: $pr50, p99: $pr99}}}
     + (if $eos == 1 then {exactly_once: {transaction_interval_ms: $txn_ms, msgs_per_s: $eos_rates,
          cpu_s: $eos_cpu, mean: $eos_mean, ratio_to_passthrough: $eos_ratio, ratio_to_triage: $eos_vs_triage,
          latency: {load_achieved: $e_ach, receive_ms: {p50: $e50, p99: $e99}, record_ms: {p50: $er50, p99: $er99}}}}
        else {} end)')"
echo "$JSON"
if [[ -n "$JSON_OUT" ]]; then
    echo "$JSON" >"$JSON_OUT"
fi
