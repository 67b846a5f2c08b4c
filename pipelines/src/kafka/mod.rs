//! The Kafka service: consume, classify, route, publish; at-least-once.
//!
//! - `enable.auto.offset.store=false`: an offset is stored only after the message's output (or
//!   dead letter) is acknowledged by the broker, and only when every earlier offset of its
//!   partition is too ([`offsets::OffsetTracker`]). librdkafka commits stored offsets every
//!   `commit_interval_ms`, on rebalance and on shutdown.
//! - Polling never waits on slow work: a partition with too many messages in flight is paused,
//!   and resumed once it drains (rust-rdkafka #433: a consumer that stops polling is silently
//!   dropped from its group).
//! - The rebalance callback only records what was revoked; the loop forgets those partitions, so
//!   their late acknowledgements store nothing (librdkafka has committed what was stored before
//!   the revoke). Nothing blocks inside the callback.
//! - SIGTERM/SIGINT: stop fetching, wait for in-flight deliveries, flush the producer, store and
//!   commit, exit.

pub mod config;
pub mod offsets;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;
use triage_classifier::Scratch;

use crate::decision::{Decision, Processor};
use crate::error::{PipelineError, Result};
use crate::message::{InputConfig, decode};
use crate::metrics::Health;
use config::KafkaConfig;
use offsets::{OffsetTracker, Tp};

/// Where a run starts reading.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Re-read the topics from the beginning (with its own consumer group).
    pub from_beginning: bool,
    /// Re-read from this time (Unix milliseconds), with its own consumer group.
    pub from_timestamp: Option<i64>,
    /// Override the consumer group id.
    pub group_id: Option<String>,
    /// Stop (cleanly) once no message arrived for this long and nothing is in flight.
    pub exit_when_idle: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Decisions delivered to the output topic.
    pub produced: u64,
    /// Messages delivered to the dead-letter topic.
    pub dead_lettered: u64,
    /// Deliveries that failed and were retried.
    pub produce_retries: u64,
    /// Messages still in flight when the run ended (not committed; they will be re-read).
    pub abandoned: u64,
    /// Why the run ended.
    pub ended_by: String,
}

// ------------------------------------------------------------------ client context

#[derive(Debug)]
enum RebalanceEvent {
    Revoked(Vec<Tp>),
    Assigned(Vec<Tp>),
}

/// Logs through `tracing` and records rebalances for the main loop. Never blocks.
#[derive(Default)]
struct Ctx {
    events: Mutex<Vec<RebalanceEvent>>,
}

fn tpl_to_vec(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        let ev = match r {
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoked(tpl_to_vec(tpl)),
            Rebalance::Assign(_) => return,
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        if let Ok(mut evs) = self.events.lock() {
            evs.push(ev);
        }
    }

    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r
            && let Ok(mut evs) = self.events.lock()
        {
            evs.push(RebalanceEvent::Assigned(tpl_to_vec(tpl)));
        }
    }
}

type Consumer_ = StreamConsumer<Ctx>;

fn kafka_err(what: &str, e: KafkaError) -> PipelineError {
    let retryable = !matches!(
        e,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
    );
    // Never rdkafka's Display of a refused property: it ends with the value (maybe a secret).
    let message = match &e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            format!("{what}: {}", config::client_config_error(desc, key, value))
        }
        _ => format!("{what}: {e}"),
    };
    PipelineError::Kafka { message, retryable }
}

/// librdkafka's log level: warnings, or everything when a `debug` property asks for contexts.
/// (rdkafka would otherwise take it from the `log` crate, which triage does not use.)
fn log_level(k: &KafkaConfig, extra: &BTreeMap<String, String>) -> RDKafkaLogLevel {
    if k.properties.contains_key("debug") || extra.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    }
}

fn client_config(k: &KafkaConfig, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set_log_level(log_level(k, extra));
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in k.properties.iter().chain(extra) {
        c.set(key, v);
    }
    c
}

fn make_consumer(k: &KafkaConfig, group: &str) -> Result<Arc<Consumer_>> {
    let mut c = ClientConfig::new();
    c.set_log_level(log_level(k, &k.consumer_properties));
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", k.commit_interval_ms.to_string())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A new group starts at the beginning: nothing published before it is skipped.
        .set("auto.offset.reset", "earliest");
    for (key, v) in k.properties.iter().chain(&k.consumer_properties) {
        c.set(key, v);
    }
    // Managed settings win over pass-through ones (validate() refuses most clashes).
    c.set("enable.auto.offset.store", "false");
    let consumer: Consumer_ = c
        .create_with_context(Ctx::default())
        .map_err(|e| kafka_err("creating the consumer", e))?;
    Ok(Arc::new(consumer))
}

fn make_producer(k: &KafkaConfig) -> Result<FutureProducer> {
    let mut c = client_config(k, &BTreeMap::new());
    c.set_log_level(log_level(k, &k.producer_properties));
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (key, v) in &k.producer_properties {
        c.set(key, v);
    }
    c.create()
        .map_err(|e| kafka_err("creating the producer", e))
}

// ------------------------------------------------------------------ in-flight bookkeeping

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Output,
    DeadLetter,
}

struct Meta {
    tp: Tp,
    offset: i64,
    received: Instant,
    sink: Sink,
    attempt: u32,
}

/// A decision waiting for the SLM, with what it needs to be published.
struct SlmDone {
    meta: Meta,
    decision: Decision,
    key: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

type SlmPending = FuturesUnordered<Pin<Box<dyn Future<Output = SlmDone> + Send>>>;

type DeliveryOutcome = (
    Meta,
    std::result::Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
);
type Pending = FuturesUnordered<Pin<Box<dyn Future<Output = DeliveryOutcome> + Send>>>;

struct Loop {
    kafka: KafkaConfig,
    input: InputConfig,
    processor: Arc<Processor>,
    producer: FutureProducer,
    tracker: OffsetTracker,
    pending: Pending,
    slm_pending: SlmPending,
    scratch: Scratch,
    probs: Vec<f32>,
    summary: RunSummary,
    /// When the last message arrived (or partitions were first assigned): the idle clock.
    last_message: Option<Instant>,
}

fn record_headers(base: Option<OwnedHeaders>, extra: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut out = base.unwrap_or_else(|| OwnedHeaders::new_with_capacity(extra.len()));
    for (k, v) in extra {
        out = out.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    out
}

impl Loop {
    /// Hands a record to the producer; on a full queue, waits for deliveries and retries.
    async fn enqueue(
        &mut self,
        consumer: &Consumer_,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
        meta: Meta,
    ) -> Result<()> {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(fut) => {
                    self.pending
                        .push(Box::pin(async move { (meta, fut.await) }));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match self.pending.next().await {
                        Some(outcome) => self.delivered(consumer, outcome),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(kafka_err("producing", e)),
            }
        }
    }

    /// One consumed message: decode, decide, publish (or dead-letter).
    async fn handle(&mut self, consumer: &Consumer_, msg: &BorrowedMessage<'_>) -> Result<()> {
        let tp: Tp = (msg.topic().to_string(), msg.partition());
        let offset = msg.offset();
        self.last_message = Some(Instant::now());
        self.summary.consumed += 1;
        metrics::counter!("triage_consumed_total").increment(1);
        let in_flight = self.tracker.begin(&tp, offset);
        if in_flight >= self.kafka.max_in_flight_per_partition && !self.tracker.is_paused(&tp) {
            self.pause(consumer, &tp, true);
        }
        let payload = msg.payload().unwrap_or(&[]);
        let meta = |sink| Meta {
            tp: tp.clone(),
            offset,
            received: Instant::now(),
            sink,
            attempt: 0,
        };
        match decode(payload, &self.input, || {
            format!("{}/{}/{}", tp.0, tp.1, offset)
        }) {
            Ok(m) => {
                let d = self
                    .processor
                    .decide(&m, &mut self.scratch, &mut self.probs);
                let key = msg.key().map(<[u8]>::to_vec);
                let headers = msg.headers().map(|h| h.detach());
                if d.route.uses_slm() {
                    // Off the loop: the executor answers (or times out) while polling goes on.
                    let processor = Arc::clone(&self.processor);
                    let meta = meta(Sink::Output);
                    self.slm_pending.push(Box::pin(async move {
                        let decision = processor.resolve(d, &m.text).await;
                        SlmDone {
                            meta,
                            decision,
                            key,
                            headers,
                        }
                    }));
                    Ok(())
                } else {
                    self.publish(
                        consumer,
                        SlmDone {
                            meta: meta(Sink::Output),
                            decision: d,
                            key,
                            headers,
                        },
                    )
                    .await
                }
            }
            Err(err) => {
                metrics::counter!("triage_dead_letter_total", "kind" => err.kind()).increment(1);
                tracing::debug!(topic = %tp.0, partition = tp.1, offset, error = %err, "dead-lettering");
                let reason = err.to_string();
                let source = format!("{}/{}/{}", tp.0, tp.1, offset);
                let headers = record_headers(
                    msg.headers().map(|h| h.detach()),
                    &[
                        ("triage.error", reason.as_bytes()),
                        ("triage.error.kind", err.kind().as_bytes()),
                        ("triage.source", source.as_bytes()),
                    ],
                );
                let topic = self.kafka.dead_letter_topic.clone();
                self.enqueue(
                    consumer,
                    &topic,
                    msg.key(),
                    payload,
                    headers,
                    meta(Sink::DeadLetter),
                )
                .await
            }
        }
    }

    /// Publishes a decision to the output topic.
    async fn publish(&mut self, consumer: &Consumer_, done: SlmDone) -> Result<()> {
        let d = &done.decision;
        metrics::counter!("triage_routed_total", "route" => d.route.as_str(), "label" => d.label.clone())
            .increment(1);
        let body = serde_json::to_vec(d).map_err(|e| PipelineError::Kafka {
            message: format!("encoding a decision: {e}"),
            retryable: false,
        })?;
        let headers = record_headers(
            done.headers,
            &[
                ("triage.label", d.label.as_bytes()),
                ("triage.route", d.route.as_str().as_bytes()),
                ("triage.model", d.model_version.as_bytes()),
            ],
        );
        let topic = self.kafka.output_topic.clone();
        self.enqueue(
            consumer,
            &topic,
            done.key.as_deref(),
            &body,
            headers,
            done.meta,
        )
        .await
    }

    fn pause(&mut self, consumer: &Consumer_, tp: &Tp, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let r = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        match r {
            Ok(()) => {
                self.tracker.set_paused(tp, pause);
                metrics::counter!("triage_partition_pauses_total", "action" => if pause { "pause" } else { "resume" }).increment(1);
                tracing::debug!(topic = %tp.0, partition = tp.1, pause, "backpressure");
            }
            Err(e) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "pause/resume failed")
            }
        }
    }

    /// A delivery finished: acknowledge (and store the offset) or retry.
    fn delivered(&mut self, consumer: &Consumer_, (meta, result): DeliveryOutcome) {
        match result {
            Ok(Ok(_)) => {
                match meta.sink {
                    Sink::Output => {
                        self.summary.produced += 1;
                        metrics::counter!("triage_produced_total").increment(1);
                    }
                    Sink::DeadLetter => {
                        self.summary.dead_lettered += 1;
                        metrics::counter!("triage_dead_lettered_total").increment(1);
                    }
                }
                metrics::histogram!("triage_latency_seconds")
                    .record(meta.received.elapsed().as_secs_f64());
                if let Some(ack) = self.tracker.ack(&meta.tp, meta.offset) {
                    if let Some(off) = ack.store
                        && let Err(e) = consumer.store_offset(&meta.tp.0, meta.tp.1, off)
                    {
                        // The partition was revoked meanwhile: its new owner re-reads it.
                        tracing::debug!(topic = %meta.tp.0, partition = meta.tp.1, error = %e, "offset not stored");
                    }
                    if self.tracker.is_paused(&meta.tp)
                        && ack.in_flight <= self.kafka.max_in_flight_per_partition / 2
                    {
                        self.pause(consumer, &meta.tp, false);
                    }
                }
            }
            Ok(Err((err, owned))) => {
                self.summary.produce_retries += 1;
                metrics::counter!("triage_produce_retries_total").increment(1);
                tracing::warn!(error = %err, attempt = meta.attempt + 1, topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "delivery failed; retrying");
                self.retry(owned, meta);
            }
            Err(_canceled) => {
                tracing::error!(topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "delivery report lost; the message will be re-read after a restart");
            }
        }
    }

    /// Re-sends a failed delivery after a backoff. Its offset stays unstored meanwhile, so a
    /// crash re-reads it: nothing is lost.
    fn retry(&mut self, owned: OwnedMessage, mut meta: Meta) {
        let producer = self.producer.clone();
        meta.attempt += 1;
        let backoff = Duration::from_millis((100u64 << meta.attempt.min(6)).min(5_000));
        self.pending.push(Box::pin(async move {
            tokio::time::sleep(backoff).await;
            loop {
                let mut rec =
                    FutureRecord::to(owned.topic()).payload(owned.payload().unwrap_or(&[]));
                if let Some(k) = owned.key() {
                    rec = rec.key(k);
                }
                if let Some(h) = owned.headers() {
                    rec = rec.headers(h.clone());
                }
                match producer.send_result(rec) {
                    Ok(fut) => return (meta, fut.await),
                    Err((_, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }

    fn apply_rebalances(&mut self, consumer: &Consumer_) {
        let events = match consumer.context().events.lock() {
            Ok(mut evs) => std::mem::take(&mut *evs),
            Err(_) => return,
        };
        for ev in events {
            match ev {
                RebalanceEvent::Revoked(tps) => {
                    for tp in &tps {
                        self.tracker.revoke(tp);
                    }
                    tracing::info!(partitions = ?tps, "partitions revoked");
                }
                RebalanceEvent::Assigned(tps) => {
                    self.last_message.get_or_insert_with(Instant::now);
                    tracing::info!(partitions = ?tps, "partitions assigned");
                }
            }
        }
        metrics::gauge!("triage_in_flight").set(self.tracker.in_flight() as f64);
    }
}

fn sample_lag(consumer: Arc<Consumer_>) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let Ok(positions) = consumer.position() else {
        return;
    };
    for e in assignment.elements() {
        let (topic, p) = (e.topic(), e.partition());
        let Ok((_, high)) = consumer.fetch_watermarks(topic, p, Duration::from_secs(2)) else {
            continue;
        };
        let pos = positions
            .find_partition(topic, p)
            .and_then(|x| match x.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if let Some(pos) = pos {
            metrics::gauge!("triage_consumer_lag", "topic" => topic.to_string(), "partition" => p.to_string())
                .set((high - pos).max(0) as f64);
        }
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Runs the service until a signal (or `exit_when_idle`).
pub async fn run(
    processor: Arc<Processor>,
    kafka: KafkaConfig,
    input: InputConfig,
    opts: RunOptions,
    health: Arc<Health>,
) -> Result<RunSummary> {
    kafka.validate().map_err(PipelineError::Config)?;
    let replay = opts.from_beginning || opts.from_timestamp.is_some();
    let group = match (&opts.group_id, replay) {
        (Some(g), _) => g.clone(),
        (None, true) => format!(
            "{}.replay.{}",
            kafka.group_id,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ),
        (None, false) => kafka.group_id.clone(),
    };
    tracing::info!(config = ?kafka.redacted(), group = %group, "starting kafka pipeline");
    let consumer = make_consumer(&kafka, &group)?;
    let producer = make_producer(&kafka)?;
    let topics: Vec<&str> = kafka.input_topics.iter().map(String::as_str).collect();
    if let Some(ts) = opts.from_timestamp {
        // Manual assignment at the first offset at or after the timestamp.
        let mut tpl = TopicPartitionList::new();
        for t in &topics {
            let md = consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .map_err(|e| kafka_err("reading topic metadata", e))?;
            for mt in md.topics() {
                for p in mt.partitions() {
                    tpl.add_partition_offset(mt.name(), p.id(), Offset::Offset(ts))
                        .map_err(|e| kafka_err("building the assignment", e))?;
                }
            }
        }
        let at = consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .map_err(|e| kafka_err("looking up offsets for the timestamp", e))?;
        consumer
            .assign(&at)
            .map_err(|e| kafka_err("assigning partitions", e))?;
    } else {
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_err("subscribing", e))?;
    }
    health
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let mut lp = Loop {
        input,
        processor,
        producer,
        tracker: OffsetTracker::default(),
        pending: FuturesUnordered::new(),
        slm_pending: FuturesUnordered::new(),
        scratch: Scratch::default(),
        probs: Vec::new(),
        summary: RunSummary::default(),
        last_message: opts.from_timestamp.map(|_| Instant::now()),
        kafka,
    };
    let mut lag_tick =
        tokio::time::interval(Duration::from_millis(lp.kafka.lag_interval_ms.max(100)));
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let ended_by: String = loop {
        tokio::select! {
            biased;
            sig = &mut signal => break sig.to_string(),
            Some(outcome) = lp.pending.next(), if !lp.pending.is_empty() => {
                lp.delivered(&consumer, outcome);
            }
            Some(done) = lp.slm_pending.next(), if !lp.slm_pending.is_empty() => {
                lp.publish(&consumer, done).await?;
            }
            msg = consumer.recv() => match msg {
                Ok(m) => lp.handle(&consumer, &m).await?,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = lag_tick.tick() => {
                let c = Arc::clone(&consumer);
                tokio::task::spawn_blocking(move || sample_lag(c));
            }
            _ = beat.tick() => {
                health.beat();
                lp.apply_rebalances(&consumer);
                if let Some(idle) = opts.exit_when_idle
                    && lp.pending.is_empty()
                    && lp.slm_pending.is_empty()
                    && lp.last_message.is_some_and(|t| t.elapsed() >= idle)
                {
                    break "idle".to_string();
                }
            }
        }
    };
    tracing::info!(reason = %ended_by, in_flight = lp.pending.len() + lp.slm_pending.len(), "stopping: draining in-flight work");
    // Stop fetching while we drain (the consumer still heartbeats in the background).
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    let deadline = Instant::now() + Duration::from_millis(lp.kafka.shutdown_timeout_ms);
    while !lp.pending.is_empty() || !lp.slm_pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            Some(outcome) = lp.pending.next(), if !lp.pending.is_empty() => lp.delivered(&consumer, outcome),
            Some(done) = lp.slm_pending.next(), if !lp.slm_pending.is_empty() => lp.publish(&consumer, done).await?,
            _ = tokio::time::sleep(left) => break,
        }
        lp.apply_rebalances(&consumer);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = lp
        .producer
        .flush(Timeout::After(left.max(Duration::from_millis(100))));
    lp.summary.abandoned = lp.tracker.in_flight() as u64;
    if lp.summary.abandoned > 0 {
        tracing::warn!(
            abandoned = lp.summary.abandoned,
            "shutdown timeout: these messages were not committed and will be re-read"
        );
    }
    let c = Arc::clone(&consumer);
    let committed = tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync))
        .await
        .map_err(|e| PipelineError::Kafka {
            message: format!("commit task: {e}"),
            retryable: true,
        })?;
    match committed {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final commit failed"),
    }
    consumer.unsubscribe();
    lp.summary.ended_by = ended_by;
    tracing::info!(summary = ?lp.summary, "stopped");
    Ok(lp.summary)
}
