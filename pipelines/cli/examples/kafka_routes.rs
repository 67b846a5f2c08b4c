//! What triage published, route by route, read off its output topic: the share of each route,
//! latency percentiles per route, and, with `--gold`, the accuracy of the published labels (and
//! of the fast labels) against the labelled input. `bench/overload.sh` uses it.
//!
//! Reads `--topic` (it assigns every partition itself: no group join, nothing committed) until
//! `--count` records or `--idle-exit-s` without one. Latency is `record timestamp − sent_us`: the
//! time `kafka_load` stamped (header, or JSON field) to the time triage produced the decision
//! (CreateTime, millisecond resolution). Gold labels: `kafka_load` sends message `m-<n>` with the
//! text of line `n mod L` of its data file (L usable lines), so `--gold` must name that same
//! file; its `label` field is the truth.
//!
//! ```text
//! cargo run --release -p triage --example kafka_routes -- --topic triage.out --count 100000 \
//!     --gold ../shared/data/goemotions_sentiment4/test.jsonl
//! ```
//!
//! Prints a human summary and one JSON line (`{"bench":"kafka_routes",...}`) on stdout.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(about = "Per-route shares, latency and accuracy of triage's published decisions")]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "TRIAGE_BROKER", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// triage's output topic.
    #[arg(long, default_value = "triage.out")]
    topic: String,
    /// Stop after this many records; 0 reads until idle.
    #[arg(short = 'n', long, default_value_t = 0)]
    count: u64,
    /// Stop when no record arrived for this long.
    #[arg(long, default_value_t = 10.0)]
    idle_exit_s: f64,
    /// The labelled JSONL file `kafka_load --data` read (fields `text` and `label`).
    #[arg(long)]
    gold: Option<PathBuf>,
    /// Prefix of the message ids (`kafka_load --id-prefix`).
    #[arg(long, default_value = "m-")]
    id_prefix: String,
    /// Also print, per second of send time, each route's count and latency p99 (to tell a
    /// steady tail from a few slow seconds).
    #[arg(long)]
    timeline: bool,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// The labels of the lines `kafka_load` would use: JSON objects with a non-empty `text`, in order.
fn gold_labels(path: &std::path::Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let raw = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let text = v.get("text").and_then(|t| t.as_str()).unwrap_or_default();
        if text.trim().is_empty() {
            continue;
        }
        let label = v
            .get("label")
            .and_then(|l| l.as_str())
            .ok_or_else(|| format!("{}: a line without a label: {line}", path.display()))?;
        out.push(label.to_owned());
    }
    if out.is_empty() {
        return Err(format!("{}: no labelled lines", path.display()).into());
    }
    Ok(out)
}

fn sent_us(msg: &BorrowedMessage<'_>, json: &serde_json::Value) -> Option<i64> {
    msg.headers()
        .and_then(|h| h.iter().find(|h| h.key == "sent_us").and_then(|h| h.value))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| json.get("sent_us").and_then(|t| t.as_i64()))
        .or_else(|| json["fields"].get("sent_us").and_then(|t| t.as_i64()))
}

#[derive(Default)]
struct RouteStats {
    count: u64,
    latency_us: Vec<i64>,
    correct: u64,
    fast_correct: u64,
    judged: u64,
}

fn pct(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0)
}

fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 / total as f64
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let gold = match &args.gold {
        Some(p) => Some(gold_labels(p)?),
        None => None,
    };
    let group = format!("kafka-routes-{}-{}", std::process::id(), now_us());
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = c.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    if partitions == 0 {
        return Err(format!("topic {} has no partitions (does it exist?)", args.topic).into());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_range(&args.topic, 0, partitions - 1);
    tpl.set_all_offsets(Offset::Beginning)?;
    c.assign(&tpl)?;
    eprintln!(
        "kafka_routes: reading {} ({partitions} partitions)",
        args.topic
    );

    let idle = Duration::from_secs_f64(args.idle_exit_s);
    let target = if args.count == 0 {
        u64::MAX
    } else {
        args.count
    };
    let mut routes: BTreeMap<String, RouteStats> = BTreeMap::new();
    // Why over_budget messages were shed (the end of the router's reason), and the windows.
    let mut shed: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut window_min, mut window_max) = (u64::MAX, 0u64);
    // (second of send time, route) -> latencies, for --timeline.
    let mut timeline: BTreeMap<(i64, String), Vec<i64>> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let (mut records, mut duplicates, mut unreadable) = (0u64, 0u64, 0u64);
    let (mut first_ts, mut last_ts) = (i64::MAX, i64::MIN);
    while records < target {
        let msg = match tokio::time::timeout(idle, c.recv()).await {
            Ok(m) => m?,
            Err(_) => break,
        };
        records += 1;
        let Some(json) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        else {
            unreadable += 1;
            continue;
        };
        let id = json["id"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id.clone()) {
            duplicates += 1;
            continue;
        }
        let route = json["route"].as_str().unwrap_or("?").to_owned();
        if route == "over_budget" {
            let reason = json["reason"].as_str().unwrap_or_default();
            let why = if let Some(at) = reason.find(" ms admission window") {
                let ms: String = reason[..at]
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if let Ok(ms) = ms.parse::<u64>() {
                    window_min = window_min.min(ms);
                    window_max = window_max.max(ms);
                }
                "window"
            } else if reason.contains("queue was full") {
                "queue_full"
            } else if reason.contains("replies were already waiting") {
                "replies_full"
            } else if reason.contains("budget spent") {
                "budget"
            } else {
                "other"
            };
            *shed.entry(why).or_default() += 1;
        }
        let stats = routes.entry(route.clone()).or_default();
        stats.count += 1;
        let rec_us = msg.timestamp().to_millis().map(|ms| ms * 1000);
        if let Some(t) = rec_us {
            first_ts = first_ts.min(t);
            last_ts = last_ts.max(t);
        }
        if let (Some(s), Some(e)) = (sent_us(&msg, &json), rec_us) {
            stats.latency_us.push(e - s);
            if args.timeline {
                timeline
                    .entry((s / 1_000_000, route))
                    .or_default()
                    .push(e - s);
            }
        }
        if let Some(gold) = &gold
            && let Some(n) = id
                .strip_prefix(&args.id_prefix)
                .and_then(|n| n.parse::<usize>().ok())
        {
            let truth = &gold[n % gold.len()];
            stats.judged += 1;
            stats.correct += u64::from(json["label"].as_str() == Some(truth));
            stats.fast_correct += u64::from(json["fast"]["label"].as_str() == Some(truth));
        }
    }
    let total: u64 = routes.values().map(|s| s.count).sum();
    let judged: u64 = routes.values().map(|s| s.judged).sum();
    let correct: u64 = routes.values().map(|s| s.correct).sum();
    let fast_correct: u64 = routes.values().map(|s| s.fast_correct).sum();
    let mut all_latency: Vec<i64> = routes
        .values()
        .flat_map(|s| s.latency_us.iter().copied())
        .collect();
    all_latency.sort_unstable();
    let span_s = (last_ts - first_ts).max(1) as f64 / 1e6;
    let mut per_route = serde_json::Map::new();
    println!(
        "kafka_routes: {total} decisions from {} ({duplicates} duplicate ids, {unreadable} unreadable); \
         output rate by record time {:.0} msg/s",
        args.topic,
        total as f64 / span_s
    );
    for (route, s) in &mut routes {
        s.latency_us.sort_unstable();
        let (p50, p99) = (pct(&s.latency_us, 50.0), pct(&s.latency_us, 99.0));
        let max = s.latency_us.last().map(|v| *v as f64 / 1000.0);
        println!(
            "  {route:<15} {:>8} {:>6.2}%  latency ms p50 {:>8.1} p99 {:>8.1} max {:>8.1}{}",
            s.count,
            100.0 * share(s.count, total),
            p50.unwrap_or(f64::NAN),
            p99.unwrap_or(f64::NAN),
            max.unwrap_or(f64::NAN),
            if s.judged > 0 {
                format!(
                    "  accuracy {:.2}% (fast label {:.2}%)",
                    100.0 * share(s.correct, s.judged),
                    100.0 * share(s.fast_correct, s.judged)
                )
            } else {
                String::new()
            }
        );
        per_route.insert(
            route.clone(),
            serde_json::json!({
                "count": s.count, "share": share(s.count, total),
                "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                "accuracy": (s.judged > 0).then(|| share(s.correct, s.judged)),
                "fast_accuracy": (s.judged > 0).then(|| share(s.fast_correct, s.judged)),
            }),
        );
    }
    if let Some(&(t0, _)) = timeline.keys().next() {
        println!("  timeline (second of send time: route count p99 ms):");
        let mut line = String::new();
        let mut second = t0;
        for ((t, route), mut lat) in timeline {
            if t != second {
                println!("  {:>4}s{line}", second - t0);
                line.clear();
                second = t;
            }
            lat.sort_unstable();
            line += &format!(
                "  {route} {} {:.0}",
                lat.len(),
                pct(&lat, 99.0).unwrap_or(f64::NAN)
            );
        }
        println!("  {:>4}s{line}", second - t0);
    }
    if !shed.is_empty() {
        println!(
            "  over_budget by reason: {shed:?}{}",
            if window_max > 0 {
                format!("; admission windows {window_min}-{window_max} ms")
            } else {
                String::new()
            }
        );
    }
    if judged > 0 {
        println!(
            "  published labels: accuracy {:.2}% against the gold labels (fast labels alone {:.2}%)",
            100.0 * share(correct, judged),
            100.0 * share(fast_correct, judged)
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "kafka_routes", "topic": args.topic, "decisions": total,
            "duplicates": duplicates, "unreadable": unreadable,
            "output_msgs_per_s": total as f64 / span_s,
            "p50_ms": pct(&all_latency, 50.0), "p99_ms": pct(&all_latency, 99.0),
            "accuracy": (judged > 0).then(|| share(correct, judged)),
            "fast_accuracy": (judged > 0).then(|| share(fast_correct, judged)),
            "routes": per_route, "over_budget_by_reason": shed,
            "admission_window_ms": (window_max > 0).then_some([window_min, window_max]),
        })
    );
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
