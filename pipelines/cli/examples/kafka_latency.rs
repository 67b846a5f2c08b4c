//! End-to-end latency of a Kafka stage, read off its output topic.
//!
//! Reads `--topic` (it assigns every partition itself: no group join, nothing committed) and, for each record,
//! finds the time `kafka_load` sent the original message:
//! 1. the `sent_us` header (kept by the passthrough, and by triage if it copies headers),
//! 2. else a `sent_us` field anywhere in the JSON payload (top level or nested, depth ≤ 4),
//! 3. else, with `--input-topic`, by joining the payload's `id` with that topic's messages.
//!
//! The latency is `end - sent_us`, where `end` is, with `--clock record` (default), the output
//! record's own timestamp (CreateTime: when the stage produced it; millisecond resolution, usable
//! after the fact), or with `--clock receive`, when this tool received it (run it while the load
//! flows). Prints p50/p90/p99/p99.9/max, duplicates by `id`, and a JSON line
//! (`{"bench":"kafka_latency",...}`).
//!
//! ```text
//! cargo run --release -p triage --example kafka_latency -- --topic triage.out --count 200000
//! # replay only what was produced after a point in time (offsets_for_times):
//! cargo run --release -p triage --example kafka_latency -- --from 1764240000000
//! ```

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Clock {
    /// The output record's timestamp (when the stage produced it).
    Record,
    /// When this tool received the record.
    Receive,
}

#[derive(Parser, Debug)]
#[command(about = "Read an output topic and report end-to-end latency percentiles")]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "TRIAGE_BROKER", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Output topic to read.
    #[arg(long, default_value = "triage.out")]
    topic: String,
    /// Stop after this many records; 0 reads until idle.
    #[arg(short = 'n', long, default_value_t = 0)]
    count: u64,
    /// Stop when no record arrived for this long.
    #[arg(long, default_value_t = 5.0)]
    idle_exit_s: f64,
    /// Where to start: `beginning`, `end`, or a Unix time in milliseconds (looked up with
    /// offsets_for_times).
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Which time ends the measurement.
    #[arg(long, value_enum, default_value_t = Clock::Record)]
    clock: Clock,
    /// Input topic to join by `id` when the output carries no `sent_us`.
    #[arg(long)]
    input_topic: Option<String>,
    /// fetch.wait.max.ms. tansu answers a fetch only when this expires, so with `--clock receive`
    /// it adds directly to the measured latency.
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u32,
    /// Extra librdkafka consumer settings, `key=value` (repeatable).
    #[arg(short = 'X', value_parser = parse_kv)]
    config: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

fn header_sent_us(msg: &BorrowedMessage<'_>) -> Option<i64> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == "sent_us")
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
}

fn find_sent_us(v: &serde_json::Value, depth: u8) -> Option<i64> {
    let obj = v.as_object()?;
    if let Some(t) = obj.get("sent_us").and_then(|t| t.as_i64()) {
        return Some(t);
    }
    if depth == 0 {
        return None;
    }
    obj.values()
        .find_map(|child| find_sent_us(child, depth - 1))
}

fn payload_json(msg: &BorrowedMessage<'_>) -> Option<serde_json::Value> {
    serde_json::from_slice(msg.payload()?).ok()
}

fn consumer(
    brokers: &str,
    fetch_wait_ms: u32,
    extra: &[(String, String)],
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    // assign() fails with "Local: Unknown group" without a group.id, even though this consumer
    // never joins the group (no subscribe) and commits nothing.
    let group = format!("kafka-latency-{}-{}", std::process::id(), now_us());
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        cfg.set(k, v);
    }
    cfg.create()
}

/// Assigns every partition of `topic` from `from` (beginning, end, or a Unix time in ms).
fn assign_from(
    c: &StreamConsumer,
    topic: &str,
    from: &str,
) -> Result<usize, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let partitions = loop {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let n = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n > 0 {
            break n as i32;
        }
        if Instant::now() > deadline {
            return Err(format!("topic {topic} has no partitions (does it exist?)").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    match from {
        "beginning" | "end" => {
            tpl.add_partition_range(topic, 0, partitions - 1);
            let start = if from == "end" {
                Offset::End
            } else {
                Offset::Beginning
            };
            tpl.set_all_offsets(start)?;
        }
        ts => {
            let ts: i64 = ts
                .parse()
                .map_err(|_| format!("--from {ts:?}: not beginning, end or Unix ms"))?;
            // offsets_for_times takes the timestamps in the offset field and returns, per partition,
            // the earliest offset whose timestamp is >= ts, or End (-1) when there is none.
            let mut query = TopicPartitionList::new();
            for p in 0..partitions {
                query.add_partition_offset(topic, p, Offset::Offset(ts))?;
            }
            let found = c.offsets_for_times(query, Duration::from_secs(10))?;
            for e in found.elements() {
                e.error()?;
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::End,
                };
                tpl.add_partition_offset(topic, e.partition(), offset)?;
            }
        }
    }
    c.assign(&tpl)?;
    Ok(partitions as usize)
}

/// Reads the whole input topic into id -> sent_us (from its `sent_us` header or JSON field).
async fn index_input(
    brokers: &str,
    fetch_wait_ms: u32,
    extra: &[(String, String)],
    topic: &str,
    idle: Duration,
) -> Result<HashMap<String, i64>, Box<dyn std::error::Error>> {
    let c = consumer(brokers, fetch_wait_ms, extra)?;
    assign_from(&c, topic, "beginning")?;
    let mut map = HashMap::new();
    while let Ok(msg) = tokio::time::timeout(idle, c.recv()).await {
        let msg = msg?;
        let json = payload_json(&msg);
        let id = json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(|v| v.as_str());
        let sent = header_sent_us(&msg).or_else(|| json.as_ref().and_then(|j| find_sent_us(j, 0)));
        if let (Some(id), Some(sent)) = (id, sent) {
            map.insert(id.to_owned(), sent);
        }
    }
    eprintln!(
        "kafka_latency: indexed {} input messages from {topic}",
        map.len()
    );
    Ok(map)
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let idle = Duration::from_secs_f64(args.idle_exit_s);
    let by_id = match &args.input_topic {
        Some(t) => index_input(&args.brokers, args.fetch_wait_ms, &args.config, t, idle).await?,
        None => HashMap::new(),
    };

    let c = consumer(&args.brokers, args.fetch_wait_ms, &args.config)?;
    let partitions = assign_from(&c, &args.topic, &args.from)?;
    eprintln!(
        "kafka_latency: reading {} ({partitions} partitions) from {}",
        args.topic, args.from
    );

    let mut lat_us: Vec<i64> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let (mut records, mut no_ts, mut duplicates) = (0u64, 0u64, 0u64);
    let (mut first_ts, mut last_ts) = (i64::MAX, i64::MIN);
    let target = if args.count == 0 {
        u64::MAX
    } else {
        args.count
    };

    while records < target {
        let msg = match tokio::time::timeout(idle, c.recv()).await {
            Ok(m) => m?,
            Err(_) => break,
        };
        let received = now_us();
        records += 1;
        let rec_ts_us = msg.timestamp().to_millis().map(|ms| ms * 1000);
        if let Some(t) = rec_ts_us {
            first_ts = first_ts.min(t);
            last_ts = last_ts.max(t);
        }
        let json = payload_json(&msg);
        let id = json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(|v| v.as_str());
        if let Some(id) = id
            && !seen.insert(id.to_owned())
        {
            duplicates += 1;
        }
        let sent = header_sent_us(&msg)
            .or_else(|| json.as_ref().and_then(|j| find_sent_us(j, 4)))
            .or_else(|| id.and_then(|id| by_id.get(id).copied()));
        let end = match args.clock {
            Clock::Record => rec_ts_us,
            Clock::Receive => Some(received),
        };
        match (sent, end) {
            (Some(s), Some(e)) => lat_us.push(e - s),
            _ => no_ts += 1,
        }
    }
    lat_us.sort_unstable();
    let n = lat_us.len();
    let mean_ms = if n > 0 {
        lat_us.iter().sum::<i64>() as f64 / n as f64 / 1000.0
    } else {
        f64::NAN
    };
    let span_s = if last_ts > first_ts {
        (last_ts - first_ts) as f64 / 1e6
    } else {
        0.0
    };
    let out_rate = if span_s > 0.0 {
        records as f64 / span_s
    } else {
        0.0
    };
    let (p50, p90, p99, p999) = (
        pct(&lat_us, 50.0),
        pct(&lat_us, 90.0),
        pct(&lat_us, 99.0),
        pct(&lat_us, 99.9),
    );
    let max = lat_us
        .last()
        .map(|v| *v as f64 / 1000.0)
        .unwrap_or(f64::NAN);
    println!(
        "kafka_latency: {records} records from {} ({n} timed, {no_ts} without send time, {duplicates} duplicate ids); \
         latency ms ({:?} clock): p50 {p50:.2} p90 {p90:.2} p99 {p99:.2} p99.9 {p999:.2} max {max:.2} mean {mean_ms:.2}; \
         output rate by record time {out_rate:.0} msg/s",
        args.topic, args.clock,
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "kafka_latency", "topic": args.topic, "records": records, "timed": n,
            "untimed": no_ts, "duplicates": duplicates, "clock": format!("{:?}", args.clock).to_lowercase(),
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p999_ms": p999, "max_ms": max, "mean_ms": mean_ms,
            "output_msgs_per_s": out_rate,
        })
    );
    // Dropping closes the consumer; it never subscribed, so there is no group to leave.
    drop(c);
    if args.count > 0 && records < args.count {
        return Err(format!(
            "only {records} of {} records arrived within the idle timeout",
            args.count
        )
        .into());
    }
    Ok(())
}
