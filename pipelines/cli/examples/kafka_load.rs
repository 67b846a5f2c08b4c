//! Load generator for the Kafka benchmarks: produces N JSON messages
//! `{"id":"m-<n>","text":"...","sent_us":<unix µs>}` to a topic.
//!
//! Texts are drawn round-robin from a JSONL file (one `{"text": ...}` object per line; other lines
//! are skipped and counted, so a message log with malformed lines drives it too). The send
//! time is embedded twice, so that `kafka_latency` can compute end-to-end latency whatever the
//! stage in between keeps: as the `sent_us` header (ASCII decimal µs since the Unix epoch) and, unless
//! `--no-json-ts`, as the `sent_us` JSON field. The record key is the message id.
//!
//! ```text
//! cargo run --release -p triage --example kafka_load -- \
//!     --brokers 127.0.0.1:9092 --topic triage.in --count 200000 --partitions 4
//! cargo run --release -p triage --example kafka_load -- --count 20000 --rate 2000
//! ```
//!
//! Prints one human line and one JSON line (`{"bench":"kafka_load",...}`) on stdout.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

#[derive(Parser, Debug)]
#[command(about = "Produce N JSON messages with embedded send timestamps")]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "TRIAGE_BROKER", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to produce to.
    #[arg(long, default_value = "triage.in")]
    topic: String,
    /// Number of messages to produce.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Target rate in messages per second; 0 produces as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// JSONL file the texts are drawn from (field `text`).
    #[arg(
        long,
        default_value = "../shared/data/goemotions_sentiment4/test.jsonl"
    )]
    data: PathBuf,
    /// Create the topic with this many partitions first (an existing topic is left as it is);
    /// 0 skips creation.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// First message number (ids are `<id-prefix><n>`).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Prefix of the message ids.
    #[arg(long, default_value = "m-")]
    id_prefix: String,
    /// Do not put `sent_us` into the JSON body (the header is always set).
    #[arg(long)]
    no_json_ts: bool,
    /// Most messages awaiting their delivery report at once.
    #[arg(long, default_value_t = 100_000)]
    max_in_flight: usize,
    /// Wait this long after connecting before the first send. An idempotent producer cannot send
    /// until it has a producer id, and librdkafka retries that every 500 ms: without the wait the
    /// first ~0.5 s of messages show up to 500 ms of extra latency.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Send to a new topic every N messages: message n goes to `<topic>.<n / N>`, each topic
    /// created (with `--partitions`) one segment ahead. 0 (the default) sends everything to
    /// `<topic>`. The soak uses it to keep the batches per partition bounded on tansu, whose fetch
    /// cost grows with them (docs/kafka.md); the consumer lists every segment's topic.
    #[arg(long, default_value_t = 0)]
    rotate_every: u64,
    /// Extra librdkafka producer settings, `key=value` (repeatable).
    #[arg(short = 'X', value_parser = parse_kv)]
    config: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// The texts of a JSONL file's `{"text": ...}` lines. Lines that are not JSON objects with a
/// string `text` (a message log's deliberately malformed lines, say) are skipped and counted, so
/// that any log can drive the load; the first few are named on stderr.
fn load_texts(path: &std::path::Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let t = triage_core::jsonl::read_texts(path, triage_core::jsonl::OtherLines::Skip)
        .map_err(|e| format!("cannot read texts: {e} (set --data)"))?;
    for (line, why) in t.skipped.iter().take(5) {
        eprintln!("kafka_load: skipping {}:{line}: {why}", path.display());
    }
    if !t.skipped.is_empty() {
        eprintln!(
            "kafka_load: {} usable texts from {}, {} malformed line(s) skipped",
            t.texts.len(),
            path.display(),
            t.skipped.len()
        );
    }
    Ok(t.texts)
}

async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic {name} failed: {code}").into()),
        }
    }
    Ok(())
}

/// The message body: what triage's input looks like, plus the send time.
#[derive(serde::Serialize)]
struct Body<'a> {
    id: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_us: Option<u64>,
}

/// Prints librdkafka's log to stderr: warnings and worse, or everything when `-X debug=...` is set
/// (the default context hands the log to the `log` crate, which prints nothing here).
struct Logger {
    verbose: bool,
}

impl ClientContext for Logger {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if self.verbose || (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }
}

#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: u64,
}

impl Tally {
    async fn settle(&mut self, fut: DeliveryFuture) {
        match fut.await {
            Ok(Ok(_delivery)) => self.delivered += 1,
            Ok(Err((err, _msg))) => {
                if self.failed == 0 {
                    eprintln!("kafka_load: delivery failed: {err}");
                }
                self.failed += 1;
            }
            Err(_canceled) => self.failed += 1,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let texts = load_texts(&args.data)?;
    let segment_topic = |segment: u64| format!("{}.{segment}", args.topic);
    let first_topic = if args.rotate_every > 0 {
        segment_topic(0)
    } else {
        args.topic.clone()
    };
    if args.partitions > 0 {
        ensure_topic(&args.brokers, &first_topic, args.partitions).await?;
    }

    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in &args.config {
        cfg.set(k, v);
    }
    let verbose = args.config.iter().any(|(k, _)| k == "debug");
    // ClientConfig::new() takes its log level from the `log` crate's logger, and there is none here.
    cfg.set_log_level(if verbose {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    let producer: FutureProducer<Logger> = cfg.create_with_context(Logger { verbose })?;

    producer
        .client()
        .fetch_metadata(Some(&first_topic), Duration::from_secs(10))?;
    tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;

    let mut inflight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(args.max_in_flight);
    let mut tally = Tally::default();
    let started = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut payload: Vec<u8> = Vec::with_capacity(512);
    let mut topic = first_topic;

    for i in 0..args.count {
        if args.rotate_every > 0 && i % args.rotate_every == 0 {
            let segment = i / args.rotate_every;
            topic = segment_topic(segment);
            // The next segment's topic exists a whole segment before its first message, so a
            // pattern subscriber has time to see it and join it.
            if args.partitions > 0 {
                ensure_topic(&args.brokers, &segment_topic(segment + 1), args.partitions).await?;
            }
            eprintln!("kafka_load: segment {segment} -> {topic} from message {i}");
        }
        if let Some(interval) = interval {
            // Pace against the schedule, not the previous send, so the mean rate holds.
            let due = started + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now + Duration::from_micros(500) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let n = args.start + i;
        let id = format!("{}{n}", args.id_prefix);
        let text = &texts[(n as usize) % texts.len()];
        let sent_us = now_us();
        let sent_str = sent_us.to_string();
        payload.clear();
        let body = Body {
            id: &id,
            text,
            sent_us: (!args.no_json_ts).then_some(sent_us),
        };
        serde_json::to_writer(&mut payload, &body)?;

        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: "sent_us",
            value: Some(&sent_str),
        });
        let mut record = FutureRecord::to(&topic)
            .key(&id)
            .payload(&payload)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(fut) => {
                    inflight.push_back(fut);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match inflight.pop_front() {
                        Some(fut) => tally.settle(fut).await,
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((err, _)) => return Err(err.into()),
            }
        }
        while inflight.len() >= args.max_in_flight {
            let fut = inflight.pop_front().expect("non-empty");
            tally.settle(fut).await;
        }
    }
    let enqueued = started.elapsed();
    while let Some(fut) = inflight.pop_front() {
        tally.settle(fut).await;
    }
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    let secs = started.elapsed().as_secs_f64();
    let rate = tally.delivered as f64 / secs;
    println!(
        "kafka_load: {} delivered, {} failed to {} in {:.3}s ({:.3}s to enqueue) = {:.0} msg/s",
        tally.delivered,
        tally.failed,
        args.topic,
        secs,
        enqueued.as_secs_f64(),
        rate
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "kafka_load", "topic": args.topic, "delivered": tally.delivered,
            "failed": tally.failed, "secs": secs, "msgs_per_s": rate, "target_rate": args.rate,
        })
    );
    if tally.failed > 0 {
        return Err(format!("{} messages were not delivered", tally.failed).into());
    }
    Ok(())
}
