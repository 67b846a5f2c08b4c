//! Bare rdkafka passthrough: the throughput ceiling for triage's Kafka path.
//!
//! Consumes `--input` in a consumer group and produces every payload (with its key and headers) to
//! `--output` with a `FutureProducer`, at-least-once, the way triage must:
//!
//! - `enable.auto.offset.store=false`; an input offset is stored (`store_offset`) only after the
//!   output record's delivery report came back OK, in consumption order, so the stored offset
//!   per partition is always the highest contiguous acknowledged one;
//! - `enable.auto.commit=true` commits the stored offsets in the background, and a final
//!   `commit_consumer_state(CommitMode::Sync)` commits the rest before closing;
//! - the rebalance callbacks only record what happened (they run inside `recv()`);
//! - the consumer is closed with a timeout on a blocking thread (dropping it can hang).
//!
//! Reports msgs/s once `--count` messages went through (delivered and stored), timed from the first
//! message received, so the group join is not counted.
//!
//! ```text
//! scripts/broker.sh start
//! cargo run --release -p triage --example kafka_load -- --count 200000
//! cargo run --release -p triage --example kafka_passthrough -- --count 200000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::TopicPartitionList;

#[derive(Parser, Debug)]
#[command(about = "Consume a topic and produce every message to another: the rdkafka ceiling")]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "TRIAGE_BROKER", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to consume.
    #[arg(long, default_value = "triage.in")]
    input: String,
    /// Topic to produce to.
    #[arg(long, default_value = "triage.out")]
    output: String,
    /// Consumer group; default: a fresh group per run, so each run reads the topic from the start.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many messages were delivered and stored; 0 runs until idle.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Stop when no message arrived for this long after the first one.
    #[arg(long, default_value_t = 10.0)]
    idle_exit_s: f64,
    /// Give up when the first message takes longer than this (group join included).
    #[arg(long, default_value_t = 60.0)]
    start_timeout_s: f64,
    /// Most messages produced but not yet acknowledged; at the limit the consumer stops reading.
    #[arg(long, default_value_t = 50_000)]
    max_in_flight: usize,
    /// Pause the assigned partitions when the in-flight window stayed full this long (then keep
    /// polling, and resume when half the window has been acknowledged).
    #[arg(long, default_value_t = 1000)]
    pause_after_ms: u64,
    /// fetch.wait.max.ms. tansu answers a fetch only when this expires, not when data arrives,
    /// so it bounds the latency of every hop (librdkafka's default of 500 gives p50 ~170 ms).
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u32,
    /// session.timeout.ms; tansu's group joins take about half of it.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u32,
    /// Extra librdkafka consumer settings, `key=value` (repeatable).
    #[arg(long = "consumer-config", value_parser = parse_kv)]
    consumer_config: Vec<(String, String)>,
    /// Extra librdkafka producer settings, `key=value` (repeatable).
    #[arg(long = "producer-config", value_parser = parse_kv)]
    producer_config: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Records rebalances and commits. These callbacks run inside `recv()` on the task that polls the
/// consumer: they must not block, and must never wait for in-flight work (that deadlocks).
#[derive(Default)]
struct Ctx {
    /// Print librdkafka's debug log too (set when `--consumer-config debug=...` is given).
    verbose: bool,
    assigned: AtomicU64,
    revoked: AtomicU64,
    commits_ok: AtomicU64,
    commits_failed: AtomicU64,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if self.verbose || (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("{} librdkafka {level:?} {fac}: {log_message}", now_ms());
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.revoked.fetch_add(1, Ordering::Relaxed);
                eprintln!("kafka_passthrough: revoke {} partition(s)", tpl.count());
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(err) => eprintln!("kafka_passthrough: rebalance error: {err}"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.assigned.fetch_add(1, Ordering::Relaxed);
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            eprintln!("kafka_passthrough: assigned partitions {parts:?}");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.commits_ok.fetch_add(1, Ordering::Relaxed),
            // Nothing new stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => 0,
            Err(err) => {
                eprintln!("kafka_passthrough: commit failed: {err}");
                self.commits_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

type Consumer_ = StreamConsumer<Ctx>;

/// One produced message awaiting its delivery report, with the input position it acknowledges.
type Pending = std::pin::Pin<Box<dyn Future<Output = (i32, i64, KafkaResult<()>)> + Send>>;

struct State {
    delivered: u64,
    failed: u64,
    store_rejected: u64,
}

impl State {
    fn ack(
        &mut self,
        consumer: &Consumer_,
        topic: &str,
        (partition, offset, result): (i32, i64, KafkaResult<()>),
    ) {
        match result {
            Ok(_delivery) => {
                self.delivered += 1;
                // store_offset stores offset + 1, the next offset to read.
                match consumer.store_offset(topic, partition, offset) {
                    Ok(()) => {}
                    // The partition was revoked meanwhile: its new owner re-reads from the last
                    // commit (at-least-once), so this is expected during a rebalance.
                    Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                        self.store_rejected += 1
                    }
                    Err(err) => {
                        eprintln!(
                            "kafka_passthrough: store_offset {topic}[{partition}]@{offset}: {err}"
                        );
                        self.store_rejected += 1;
                    }
                }
            }
            Err(err) => {
                // Not stored, but storing any later offset of this partition commits past it:
                // a real sink must retry or dead-letter it before acknowledging what follows.
                // The bench only counts.
                if self.failed == 0 {
                    eprintln!(
                        "kafka_passthrough: delivery failed for {topic}[{partition}]@{offset}: {err}"
                    );
                }
                self.failed += 1;
            }
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Produces `msg` to `output`; waits for the oldest pending delivery while the queue is full.
async fn forward(
    producer: &FutureProducer,
    consumer: &Consumer_,
    state: &mut State,
    pending: &mut FuturesOrdered<Pending>,
    input: &str,
    output: &str,
    msg: &BorrowedMessage<'_>,
) -> Result<(), KafkaError> {
    let (partition, offset) = (msg.partition(), msg.offset());
    let headers = msg.headers().map(|h| h.detach());
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(output);
    if let Some(p) = msg.payload() {
        record = record.payload(p);
    }
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => {
                // The future resolves to Result<OwnedDeliveryResult, Canceled>; Canceled only when
                // the producer was dropped.
                pending.push_back(Box::pin(async move {
                    let result = match delivery.await {
                        Ok(Ok(_delivery)) => Ok(()),
                        Ok(Err((err, _owned_msg))) => Err(err),
                        Err(_canceled) => Err(KafkaError::Canceled),
                    };
                    (partition, offset, result)
                }));
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                match pending.next().await {
                    Some(done) => state.ack(consumer, input, done),
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            Err((err, _)) => return Err(err),
        }
    }
}

/// Closes the consumer with a time limit. Dropping a subscribed consumer leaves the group and can
/// block for long (rust-rdkafka #453, #509, #611: e.g. while the broker is down), so it runs on its
/// own thread. Not `spawn_blocking`: the runtime waits for blocking tasks when it shuts down, so a
/// hung close would still hang the process at exit; a plain thread is abandoned at exit.
/// Every `TopicPartitionList` taken from the consumer (`assignment()`, `position()`, ...) must be
/// dropped before: one that is still alive keeps `rd_kafka_destroy` waiting forever.
async fn close_consumer(consumer: Consumer_, timeout: Duration) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            consumer.unsubscribe();
            drop(consumer);
            let _ = done_tx.send(());
        });
    if spawned.is_err() {
        eprintln!("kafka_passthrough: cannot spawn the close thread; not closing the consumer");
        return;
    }
    if tokio::time::timeout(timeout, done_rx).await.is_err() {
        eprintln!("kafka_passthrough: consumer close took over {timeout:?}; abandoning it");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("kafka-passthrough-{}-{}", std::process::id(), now_ms()));

    let mut ccfg = ClientConfig::new();
    ccfg.set("bootstrap.servers", &args.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", args.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (args.session_timeout_ms / 3).max(100).to_string(),
        )
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .set("enable.partition.eof", "false");
    for (k, v) in &args.consumer_config {
        ccfg.set(k, v);
    }
    let verbose = args.consumer_config.iter().any(|(k, _)| k == "debug");
    // ClientConfig::new() takes its log level from the `log` crate's logger, and there is none here.
    ccfg.set_log_level(if verbose {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    let ctx = Ctx {
        verbose,
        ..Ctx::default()
    };
    let consumer: Consumer_ = ccfg.create_with_context(ctx)?;
    consumer.subscribe(&[&args.input])?;

    let mut pcfg = ClientConfig::new();
    pcfg.set("bootstrap.servers", &args.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in &args.producer_config {
        pcfg.set(k, v);
    }
    let producer: FutureProducer = pcfg.create()?;

    let mut state = State {
        delivered: 0,
        failed: 0,
        store_rejected: 0,
    };
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let launched = Instant::now();
    let mut first: Option<Instant> = None;
    let mut received: u64 = 0;
    let target = if args.count == 0 {
        u64::MAX
    } else {
        args.count
    };
    let idle = Duration::from_secs_f64(args.idle_exit_s);
    let start_timeout = Duration::from_secs_f64(args.start_timeout_s);

    // Backpressure, in two steps:
    // 1. with --max-in-flight messages unacknowledged, stop reading: librdkafka keeps prefetching
    //    (bounded by queued.max.messages.kbytes) and the stall is usually short;
    // 2. if the window stays full for --pause-after-ms, pause every assigned partition and call
    //    recv() again: it then serves only rebalances and other events, so the consumer is not
    //    dropped from its group after max.poll.interval.ms (rust-rdkafka #433). Resume at half.
    // Pausing is not free: librdkafka drops what it prefetched for the paused partitions (it rewinds
    // to the last message handed to us, so nothing is skipped or repeated), and after resume()
    // fetching restarts only when its broker thread next wakes, up to ~1 s later (seen here; also
    // confluent-kafka-go #630). Pausing on every full window cut this bench from ~110k to 2k msg/s.
    let mut paused_at: Option<u64> = None; // the assign count when we paused
    let mut full_since: Option<Instant> = None;
    let mut pauses: u64 = 0;
    let mut consumer_errors: u64 = 0;
    let mut last_progress = Instant::now();
    let pause_after = Duration::from_millis(args.pause_after_ms);
    while state.delivered + state.failed < target {
        let full = pending.len() >= args.max_in_flight;
        let assigns = consumer.context().assigned.load(Ordering::Relaxed);
        if full {
            let since = *full_since.get_or_insert_with(Instant::now);
            // Pause again after a rebalance: newly assigned partitions start unpaused.
            if since.elapsed() >= pause_after && paused_at != Some(assigns) {
                consumer.pause(&consumer.assignment()?)?;
                paused_at = Some(assigns);
                pauses += 1;
            }
        } else {
            full_since = None;
            if paused_at.is_some() && pending.len() <= args.max_in_flight / 2 {
                consumer.resume(&consumer.assignment()?)?;
                paused_at = None;
            }
        }
        let read = received < target && (!full || paused_at.is_some());
        // Wake up to stop when idle (measured from the last progress, so that a stream of
        // errors does not keep it alive), or to pause when the window stayed full.
        let idle_at = last_progress + if first.is_some() { idle } else { start_timeout };
        let wake_at = match full_since {
            Some(since) if paused_at.is_none() => idle_at.min(since + pause_after),
            _ => idle_at,
        };
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => {
                state.ack(&consumer, &args.input, done);
                last_progress = Instant::now();
            }
            msg = consumer.recv(), if read => {
                // recv() also returns client-wide errors, most of them transient: the broker
                // going away gives Err(MessageConsumption(AllBrokersDown)) and librdkafka
                // reconnects by itself. Only a fatal error ends the consumer.
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(err @ KafkaError::MessageConsumptionFatal(_)) => return Err(err.into()),
                    Err(err) => {
                        // librdkafka repeats these on every reconnect attempt: log some.
                        consumer_errors += 1;
                        if consumer_errors.is_power_of_two() {
                            eprintln!("kafka_passthrough: consumer error #{consumer_errors} (continuing): {err}");
                        }
                        continue;
                    }
                };
                last_progress = Instant::now();
                first.get_or_insert_with(Instant::now);
                received += 1;
                let (input, output) = (&args.input, &args.output);
                forward(&producer, &consumer, &mut state, &mut pending, input, output, &msg)
                    .await?;
            }
            _ = tokio::time::sleep_until(wake_at.into()) => {
                if pending.is_empty() && Instant::now() >= idle_at {
                    let quiet = last_progress.elapsed();
                    eprintln!("kafka_passthrough: no message for {quiet:.1?}; stopping");
                    break;
                }
            }
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    let join = first.map(|f| f - launched).unwrap_or_default();

    // Drain what is still in flight (only when stopping early), then commit what was stored.
    while let Some(done) = pending.next().await {
        state.ack(&consumer, &args.input, done);
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => eprintln!("kafka_passthrough: final commit failed: {err}"),
    }
    let ctx = consumer.context().clone();
    close_consumer(consumer, Duration::from_secs(10)).await;

    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        state.delivered as f64 / secs
    } else {
        0.0
    };
    println!(
        "kafka_passthrough: {} msgs {} -> {} in {:.3}s = {:.0} msg/s (first message {:.2}s after start; \
         {} failed, {} stores rejected, {} pauses, {} assigns, {} revokes, {} commits)",
        state.delivered,
        args.input,
        args.output,
        secs,
        rate,
        join.as_secs_f64(),
        state.failed,
        state.store_rejected,
        pauses,
        ctx.assigned.load(Ordering::Relaxed),
        ctx.revoked.load(Ordering::Relaxed),
        ctx.commits_ok.load(Ordering::Relaxed),
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "kafka_passthrough", "input": args.input, "output": args.output,
            "group": group, "delivered": state.delivered, "failed": state.failed,
            "secs": secs, "msgs_per_s": rate, "join_secs": join.as_secs_f64(),
        })
    );
    if args.count > 0 && state.delivered < args.count {
        return Err(format!(
            "only {} of {} messages went through",
            state.delivered, args.count
        )
        .into());
    }
    Ok(())
}
