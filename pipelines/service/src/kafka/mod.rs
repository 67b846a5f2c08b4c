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
//!
//! - `delivery = "exactly_once"`: the same loop inside Kafka transactions (`txn`): no offset
//!   is stored; outputs and offsets are committed together every `transaction_interval_ms`.
//!
//! The source side (consumer, offsets, backpressure, rebalances) is here; `client` makes the
//! clients and `sink` produces the records and hands their acknowledgements back.

mod batch;
mod client;
pub use client::check_client_configs;
mod instance;
pub mod offsets;
mod sink;
mod txn;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use serde::Serialize;
use triage_classifier::Scratch;
use triage_core::config::KafkaConfig;
use triage_core::config::kafka::Delivery;
use triage_core::message::InputConfig;
use triage_core::names::metric;

use crate::error::{Result, ServiceError};
use crate::metrics::Health;
use crate::processor::{Processor, Record, Step};
use crate::sink::{Sink, publish};
use batch::{BATCH_MAX, Item, Workers};
use client::{Consumer_, RebalanceEvent, kafka_err, make_consumer, make_producer};
use offsets::{OffsetTracker, Topics, Tp};
use sink::{DeliveryOutcome, Failure, KafkaSink, Meta, Origin, Topic, failure_of};
use txn::Txn;

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
    /// Deliveries that failed transiently and were retried.
    pub produce_retries: u64,
    /// Records the broker (or librdkafka) refused for good, dead-lettered instead.
    pub produce_rejected: u64,
    /// Messages whose dead letter, even without its payload, was refused: logged, counted, and
    /// their offset moved on.
    pub dropped: u64,
    /// Messages still in flight when the run ended (not committed; they will be re-read).
    pub abandoned: u64,
    /// `classify_threads > 1`: the batches the consumed messages were classified in (their
    /// mean size is `consumed / classify_batches`).
    pub classify_batches: u64,
    /// `delivery = "exactly_once"`: transactions committed.
    pub transactions_committed: u64,
    /// `delivery = "exactly_once"`: transactions aborted (their input was read again).
    pub transactions_aborted: u64,
    /// Why the run ended.
    pub ended_by: String,
}

/// A decision the SLM has settled, with where its input came from.
type SlmPending = FuturesUnordered<Pin<Box<dyn Future<Output = (Record, Origin)> + Send>>>;

struct Loop {
    kafka: KafkaConfig,
    input: InputConfig,
    processor: Arc<Processor>,
    sink: KafkaSink,
    tracker: OffsetTracker,
    /// The input topics' names, shared by the partitions of every consumed message.
    topics: Topics,
    slm_pending: SlmPending,
    scratch: Scratch,
    probs: Vec<f32>,
    /// The record of the message being handled (reused).
    record: Vec<u8>,
    /// `classify_threads > 1`: the threads a batch is classified on, and its probabilities.
    workers: Option<Workers>,
    batch_probs: Vec<f32>,
    summary: RunSummary,
    /// When the last message arrived (or partitions were first assigned): the idle clock.
    last_message: Option<Instant>,
    /// The last error the consumer reported (a topic that does not exist, brokers down), for a
    /// run that `exit_when_idle` ends before any partition was assigned.
    consumer_error: Option<String>,
    /// Records failing transiently, by input position, with when they first failed.
    retrying: HashMap<(Tp, i64), Instant>,
    /// A fatal producer error: the run drains, commits, and returns it.
    fatal: Option<ServiceError>,
    /// `delivery = "exactly_once"`: the transactions.
    txn: Option<Txn>,
    /// The per-message metrics, looked up once (the recorder is installed before the run).
    counters: Counters,
}

/// Handles of the metrics every message touches: `metrics::counter!` looks its key up in the
/// registry on each call.
struct Counters {
    consumed: metrics::Counter,
    produced: metrics::Counter,
    latency: metrics::Histogram,
}

impl Counters {
    fn new() -> Self {
        Counters {
            consumed: metrics::counter!(metric::CONSUMED),
            produced: metrics::counter!(metric::PRODUCED),
            latency: metrics::histogram!(metric::LATENCY),
        }
    }
}

impl Loop {
    /// One consumed message: decode, decide, publish (or dead-letter).
    async fn handle(&mut self, consumer: &Consumer_, msg: &BorrowedMessage<'_>) -> Result<()> {
        let received = Instant::now();
        self.last_message = Some(received);
        let tp = self.begin(consumer, msg);
        let offset = msg.offset();
        if let Some(txn) = &mut self.txn {
            txn.consumed(&tp, offset)?;
        }
        let payload = msg.payload().unwrap_or(&[]);
        self.record.clear();
        let step = self.processor.step(
            payload,
            &self.input,
            || format!("{}/{}/{}", tp.0, tp.1, offset),
            &mut self.scratch,
            &mut self.probs,
            &mut self.record,
        );
        self.publish_step(consumer, msg, tp, received, step).await
    }

    /// Counts a consumed message and tracks its offset, pausing its partition when too many of
    /// its messages are in flight. Returns its partition.
    fn begin(&mut self, consumer: &Consumer_, msg: &BorrowedMessage<'_>) -> Tp {
        let tp: Tp = (self.topics.get(msg.topic()), msg.partition());
        self.summary.consumed += 1;
        self.counters.consumed.increment(1);
        let in_flight = self.tracker.begin(&tp, msg.offset());
        if in_flight >= self.kafka.max_in_flight_per_partition && !self.tracker.is_paused(&tp) {
            self.pause(consumer, &tp, true);
        }
        tp
    }

    /// `classify_threads > 1`: the messages waiting in the consumer's queue, `msgs` in the
    /// order consumed: decoded and classified on the workers, then routed (under the budget, in
    /// order) and published one after another, as [`Loop::handle`] does one message.
    async fn handle_batch(
        &mut self,
        consumer: &Consumer_,
        msgs: &[BorrowedMessage<'_>],
    ) -> Result<()> {
        let received = Instant::now();
        self.last_message = Some(received);
        self.summary.classify_batches += 1;
        let mut tps = Vec::with_capacity(msgs.len());
        for m in msgs {
            tps.push(self.begin(consumer, m));
        }
        let items: Vec<Item<'_>> = msgs
            .iter()
            .map(|m| Item {
                payload: m.payload().unwrap_or(&[]),
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
            })
            .collect();
        self.batch_probs.clear();
        let workers = self.workers.as_ref().expect("a batch needs the workers");
        let prepared = workers.prepare(&self.processor, &self.input, &items, &mut self.batch_probs);
        let processor = &self.processor;
        let routings = processor.with_budget(|budget| {
            processor.route_all(
                prepared.iter().map(|r| r.as_ref().ok().map(|(_, c)| c)),
                &self.batch_probs,
                budget,
            )
        });
        let k = self.processor.labels().len();
        let mut at = 0;
        for ((m, tp), (r, routing)) in msgs.iter().zip(tps).zip(prepared.into_iter().zip(routings))
        {
            self.record.clear();
            let step = match (r, routing) {
                (Ok((msg, c)), Some(routing)) => {
                    let probs = &self.batch_probs[at..at + k];
                    at += k;
                    self.processor
                        .finish(&msg, &c, routing, probs, &mut self.record)
                }
                (Err(e), _) => Step::Dead(e),
                (Ok(_), None) => unreachable!("every message is routed"),
            };
            self.publish_step(consumer, m, tp, received, step).await?;
        }
        Ok(())
    }

    /// Publishes a consumed message's step (its decision, its dead letter, or its SLM call,
    /// which is then awaited off the loop).
    async fn publish_step(
        &mut self,
        consumer: &Consumer_,
        msg: &BorrowedMessage<'_>,
        tp: Tp,
        received: Instant,
        step: Step,
    ) -> Result<()> {
        let origin = Origin {
            meta: Meta {
                tp,
                offset: msg.offset(),
                received,
                topic: Topic::Output,
                attempt: 0,
            },
            key: msg.key().map(<[u8]>::to_vec),
            headers: msg.headers().map(sink::input_headers),
        };
        let payload = msg.payload().unwrap_or(&[]);
        let published = publish(&mut self.sink, step, &self.record, payload, origin).await;
        self.settle_completed(consumer);
        if let Some((pending, origin)) = published? {
            // Off the loop: the executor answers (or times out) while polling goes on.
            let processor = Arc::clone(&self.processor);
            self.slm_pending.push(Box::pin(async move {
                (processor.resolve(*pending).await, origin)
            }));
        }
        Ok(())
    }

    /// Publishes a decision the SLM has settled.
    async fn publish_resolved(
        &mut self,
        consumer: &Consumer_,
        (record, origin): (Record, Origin),
    ) -> Result<()> {
        let r = self
            .sink
            .decision(&record.json, record.verdict, origin)
            .await;
        self.settle_completed(consumer);
        r
    }

    /// Acknowledges the deliveries the sink finished while producing.
    fn settle_completed(&mut self, consumer: &Consumer_) {
        let done: Vec<DeliveryOutcome> = self.sink.take_completed().collect();
        for outcome in done {
            self.delivered(consumer, outcome);
        }
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
                metrics::counter!(metric::PARTITION_PAUSES, "action" => if pause { "pause" } else { "resume" }).increment(1);
                tracing::debug!(topic = %tp.0, partition = tp.1, pause, "backpressure");
            }
            Err(e) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "pause/resume failed")
            }
        }
    }

    /// A delivery finished: acknowledge (and store the offset); or, by the kind of failure,
    /// retry it, dead-letter it, or stop the run ([`failure_of`]).
    fn delivered(&mut self, consumer: &Consumer_, (meta, result): DeliveryOutcome) {
        match result {
            Ok(Ok(_)) => {
                match meta.topic {
                    Topic::Output => {
                        self.summary.produced += 1;
                        self.counters.produced.increment(1);
                    }
                    Topic::DeadLetter(kind) | Topic::Stripped(kind) => {
                        self.summary.dead_lettered += 1;
                        metrics::counter!(metric::DEAD_LETTERED, "kind" => kind).increment(1);
                    }
                }
                self.counters
                    .latency
                    .record(meta.received.elapsed().as_secs_f64());
                if !self.retrying.is_empty() {
                    self.retrying.remove(&(meta.tp.clone(), meta.offset));
                }
                self.ack(consumer, &meta.tp, meta.offset);
            }
            Ok(Err((err, _))) if self.txn.is_some() && failure_of(&err) == Failure::Transient => {
                // No retry inside a transaction: librdkafka has made it abortable anyway. It is
                // aborted, and its input read again, once nothing is in flight.
                self.summary.produce_retries += 1;
                metrics::counter!(metric::PRODUCE_RETRIES).increment(1);
                tracing::warn!(error = %err, topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "delivery failed; the transaction will be aborted");
                if let Some(txn) = &mut self.txn {
                    txn.doom(format!("a delivery failed: {err}"));
                }
                self.ack(consumer, &meta.tp, meta.offset);
            }
            Ok(Err((err, owned))) => match failure_of(&err) {
                Failure::Transient => {
                    self.summary.produce_retries += 1;
                    metrics::counter!(metric::PRODUCE_RETRIES).increment(1);
                    self.retrying
                        .entry((meta.tp.clone(), meta.offset))
                        .or_insert_with(Instant::now);
                    tracing::warn!(error = %err, attempt = meta.attempt + 1, topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "delivery failed; retrying");
                    self.sink.retry(owned, meta);
                }
                Failure::Permanent => {
                    self.retrying.remove(&(meta.tp.clone(), meta.offset));
                    self.summary.produce_rejected += 1;
                    let to = match meta.topic {
                        Topic::Output => "output",
                        Topic::DeadLetter(_) => "dead_letter",
                        Topic::Stripped(_) => "stripped_dead_letter",
                    };
                    metrics::counter!(metric::PRODUCE_REJECTED, "topic" => to).increment(1);
                    let reason = err.to_string();
                    tracing::warn!(error = %reason, to, topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "record refused for good; dead-lettering");
                    let (tp, offset) = (meta.tp.clone(), meta.offset);
                    if !self.sink.refused(owned, meta, &reason) {
                        self.summary.dropped += 1;
                        metrics::counter!(metric::DEAD_LETTERS_LOST).increment(1);
                        tracing::error!(error = %reason, topic = %tp.0, partition = tp.1, offset, "even the dead letter without payload was refused: the message is dropped and its offset moves on");
                        self.ack(consumer, &tp, offset);
                    }
                }
                Failure::Fatal => {
                    self.retrying.remove(&(meta.tp.clone(), meta.offset));
                    tracing::error!(error = %err, topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "the producer failed for good; stopping");
                    if self.fatal.is_none() {
                        self.fatal = Some(ServiceError::Kafka {
                            message: format!("producing: {err}"),
                            retryable: true,
                        });
                    }
                }
            },
            Err(_canceled) => {
                tracing::error!(topic = %meta.tp.0, partition = meta.tp.1, offset = meta.offset, "delivery report lost; the message will be re-read after a restart");
                if let Some(txn) = &mut self.txn {
                    txn.doom("a delivery report was lost");
                    self.ack(consumer, &meta.tp, meta.offset);
                }
            }
        }
    }

    /// The message at `offset` is done with (delivered, or given up): store what can be
    /// stored and resume its partition if it drained.
    fn ack(&mut self, consumer: &Consumer_, tp: &Tp, offset: i64) {
        if let Some(ack) = self.tracker.ack(tp, offset) {
            // Exactly once, offsets are committed by the transaction, never stored.
            if let Some(off) = ack.store.filter(|_| self.txn.is_none())
                && let Err(e) = consumer.store_offset(&tp.0, tp.1, off)
            {
                // The partition was revoked meanwhile: its new owner re-reads it.
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %e, "offset not stored");
            }
            if self.tracker.is_paused(tp)
                && ack.in_flight <= self.kafka.max_in_flight_per_partition / 2
            {
                self.pause(consumer, tp, false);
            }
        }
    }

    /// Whether a delivery has been failing for longer than `retry_unhealthy_ms`.
    fn stalled(&self) -> bool {
        let limit = Duration::from_millis(self.kafka.retry_unhealthy_ms);
        stalled(&self.retrying, limit, Instant::now())
            || self.txn.as_ref().is_some_and(|t| t.failing_for(limit))
    }

    /// Exactly once: whether the open transaction takes no more messages.
    fn txn_closing(&mut self) -> bool {
        self.txn.as_mut().is_some_and(|t| t.closing(Instant::now()))
    }

    /// Exactly once: ends the open transaction once it is due (or doomed) and nothing is in
    /// flight (the barrier), so that its offsets cover exactly the records it holds.
    async fn end_txn_when_ready(&mut self, consumer: &Arc<Consumer_>) -> Result<()> {
        if !self.txn_closing() || self.sink.in_flight() > 0 || !self.slm_pending.is_empty() {
            return Ok(());
        }
        // A revoke recorded since the last beat must doom the transaction before it commits.
        self.apply_rebalances(consumer);
        if let Some(txn) = &mut self.txn {
            txn.end(consumer, true, true).await?;
            self.summary.transactions_committed = txn.committed;
            self.summary.transactions_aborted = txn.aborted;
        }
        Ok(())
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
                        if let Some(txn) = &mut self.txn {
                            txn.revoked(tp);
                        }
                    }
                    tracing::info!(partitions = ?tps, "partitions revoked");
                }
                RebalanceEvent::Assigned(tps) => {
                    self.last_message.get_or_insert_with(Instant::now);
                    tracing::info!(partitions = ?tps, "partitions assigned");
                }
            }
        }
        metrics::gauge!(metric::IN_FLIGHT).set(self.tracker.in_flight() as f64);
    }
}

/// Whether any record in `retrying` first failed at least `limit` before `now`.
fn stalled(retrying: &HashMap<(Tp, i64), Instant>, limit: Duration, now: Instant) -> bool {
    retrying
        .values()
        .any(|&t| now.saturating_duration_since(t) >= limit)
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
            metrics::gauge!(metric::CONSUMER_LAG, "topic" => topic.to_string(), "partition" => p.to_string())
                .set((high - pos).max(0) as f64);
        }
    }
}

/// Registers the SIGTERM and SIGINT handlers at once and returns what waits for them: a signal
/// that arrives while the clients start (before the loop polls this) is kept, and the run then
/// stops gracefully, instead of the process dying of the default action.
fn shutdown_signal() -> impl Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                },
                (Ok(mut term), Err(_)) => {
                    term.recv().await;
                    "SIGTERM"
                }
                (Err(_), _) => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// The time-out of each transactional call (`init_transactions`, sending offsets, commit,
/// abort, the seeks of a rewind).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `--from-beginning --group G`: a group's committed offsets win over where a new group starts,
/// so a G that has any would re-read nothing (exit 0, nothing consumed), and the service's own
/// group would take partitions from the live service. Both are refused.
fn refuse_a_group_that_resumes(
    consumer: &Consumer_,
    group: &str,
    service_group: &str,
    topics: &[&str],
) -> Result<()> {
    let refuse = |why: String| {
        Err(ServiceError::Config(format!(
            "--from-beginning with --group {group}: {why}; name a new group, or leave --group out \
             (a group of the replay's own)"
        )))
    };
    if group == service_group {
        return refuse("it is the service's own group, whose partitions it would take".into());
    }
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .map_err(|e| kafka_err("reading topic metadata", e))?;
        for mt in md.topics() {
            for p in mt.partitions() {
                tpl.add_partition(mt.name(), p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| kafka_err("reading the group's committed offsets", e))?;
    let resumes: Vec<String> = committed
        .elements()
        .iter()
        .filter(|e| matches!(e.offset(), Offset::Offset(o) if o > 0))
        .map(|e| format!("{}[{}] at {:?}", e.topic(), e.partition(), e.offset()))
        .collect();
    if !resumes.is_empty() {
        return refuse(format!(
            "the group has committed offsets ({}), which win over the beginning",
            resumes.join(", ")
        ));
    }
    Ok(())
}

/// How long a run with `exit_when_idle` waits for its first partitions (at least its idle time):
/// a group join takes a few seconds, longer on a busy cluster.
const UNASSIGNED_GRACE: Duration = Duration::from_secs(30);

/// Runs the service until a signal (or `exit_when_idle`).
pub async fn run(
    processor: Arc<Processor>,
    kafka: KafkaConfig,
    input: InputConfig,
    opts: RunOptions,
    health: Arc<Health>,
) -> Result<RunSummary> {
    // First: a SIGTERM while the clients start is then a graceful stop.
    let signal = shutdown_signal();
    kafka.validate().map_err(ServiceError::Config)?;
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
    if opts.from_timestamp.is_some() && group == kafka.group_id {
        return Err(ServiceError::Config(format!(
            "--from-timestamp with --group {group}: it is the service's own group, whose \
             partitions it would take; name a new group, or leave --group out"
        )));
    }
    // A replay's group is used once: static membership would only leave lock files behind.
    let instance = if replay && opts.group_id.is_none() {
        None
    } else {
        Some(instance::resolve(&kafka, &group))
    };
    let instance_id = instance.as_ref().and_then(|i| i.id.as_deref());
    // Exactly once: a transactional.id that a restart of this instance gets back.
    let transactional = (kafka.delivery == Delivery::ExactlyOnce)
        .then(|| instance::transactional(&kafka, &group, instance.as_ref()));
    let transactional_id = match &transactional {
        Some(t) => Some(t.id.as_deref().ok_or_else(|| {
            ServiceError::Config(
                "kafka: delivery = \"exactly_once\" needs a transactional id, and none could be \
                 derived (no instance slot could be locked in the temp directory): set [kafka] \
                 transactional_id or TRIAGE_INSTANCE_ID"
                    .into(),
            )
        })?),
        None => None,
    };
    tracing::info!(config = ?kafka.redacted(), group = %group, group_instance_id = instance_id.unwrap_or("(dynamic)"), transactional_id = transactional_id.unwrap_or("(none: at least once)"), "starting kafka pipeline");
    let consumer = make_consumer(&kafka, &group, instance_id)?;
    let producer = make_producer(&kafka, transactional_id)?;
    let txn = match transactional_id {
        Some(_) => Some(
            Txn::init(
                producer.clone(),
                Duration::from_millis(kafka.transaction_interval_ms),
                TXN_CALL_TIMEOUT,
            )
            .await?,
        ),
        None => None,
    };
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
        if opts.from_beginning && opts.group_id.is_some() {
            refuse_a_group_that_resumes(&consumer, &group, &kafka.group_id, &topics)?;
        }
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_err("subscribing", e))?;
    }
    health
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let sink = KafkaSink::new(
        producer,
        &kafka.output_topic,
        &kafka.dead_letter_topic,
        processor.labels(),
        processor.model_version(),
    );
    let mut lp = Loop {
        input,
        processor,
        sink,
        tracker: OffsetTracker::default(),
        topics: Topics::default(),
        slm_pending: FuturesUnordered::new(),
        scratch: Scratch::default(),
        probs: Vec::new(),
        record: Vec::new(),
        workers: match kafka.classify_threads {
            1 => None,
            n => Some(Workers::new(n)?),
        },
        batch_probs: Vec::new(),
        summary: RunSummary::default(),
        last_message: opts.from_timestamp.map(|_| Instant::now()),
        consumer_error: None,
        retrying: HashMap::new(),
        fatal: None,
        txn,
        counters: Counters::new(),
        kafka,
    };
    let mut lag_tick =
        tokio::time::interval(Duration::from_millis(lp.kafka.lag_interval_ms.max(100)));
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    let started = Instant::now();
    tokio::pin!(signal);
    // Every way out of the loop, an error included, goes through the drain and commit below.
    let mut failed: Option<ServiceError> = None;
    let ended_by: String = loop {
        let closing = lp.txn_closing();
        let txn_due = lp.txn.as_ref().and_then(Txn::deadline);
        let step: Result<()> = tokio::select! {
            biased;
            sig = &mut signal => break sig.to_string(),
            Some(outcome) = lp.sink.next_delivery(), if lp.sink.in_flight() > 0 => {
                lp.delivered(&consumer, outcome);
                Ok(())
            }
            Some(done) = lp.slm_pending.next(), if !lp.slm_pending.is_empty() => {
                lp.publish_resolved(&consumer, done).await
            }
            // Before the consumer: while it fails at once (brokers down), the beat would never
            // run, and /health would report no beat and no stalled delivery.
            _ = beat.tick() => {
                health.beat();
                health.set_producing(!lp.stalled());
                metrics::gauge!(metric::PRODUCE_RETRYING).set(lp.retrying.len() as f64);
                lp.apply_rebalances(&consumer);
                if let Some(idle) = opts.exit_when_idle
                    && lp.sink.in_flight() == 0
                    && lp.slm_pending.is_empty()
                    && lp.last_message.is_some_and(|t| t.elapsed() >= idle)
                {
                    break "idle".to_string();
                }
                // No partition at all: a topic that does not exist, brokers out of reach, or
                // every partition held by the group's other members. The clock starts at the
                // start, with time for a group join, so that a replay job does not wait forever.
                if let Some(idle) = opts.exit_when_idle
                    && lp.last_message.is_none()
                    && started.elapsed() >= idle.max(UNASSIGNED_GRACE)
                {
                    let waited = format!(
                        "no partition of {} was assigned in {:.0} s",
                        lp.kafka.input_topics.join(", "),
                        started.elapsed().as_secs_f64()
                    );
                    let fatal = consumer.context().fatal.lock().ok().and_then(|mut f| f.take());
                    match (fatal, lp.consumer_error.take()) {
                        // Credentials or TLS refused: running again will not mend it.
                        (Some(e), _) => Err(ServiceError::Config(format!(
                            "kafka: {waited} (--exit-when-idle): the brokers refused this \
                             client: {e} (brokers {}); check the security settings of \
                             [kafka.properties]",
                            lp.kafka.brokers
                        ))),
                        (None, Some(e)) => Err(ServiceError::Kafka {
                            message: format!(
                                "{waited} (--exit-when-idle); the consumer's last error: {e} \
                                 (brokers {})",
                                lp.kafka.brokers
                            ),
                            retryable: true,
                        }),
                        (None, None) => {
                            tracing::warn!(
                                "{waited}, and the consumer reported no error: the group's other \
                                 members may hold them all"
                            );
                            break "idle".to_string();
                        }
                    }
                } else {
                    Ok(())
                }
            }
            // A closing transaction takes no more messages: they wait in librdkafka's queue.
            msg = consumer.recv(), if !closing => match msg {
                Ok(m) => {
                    // Exactly once, a rebalance recorded by this recv() is applied before its
                    // message joins the transaction: a partition revoked and assigned again
                    // must be forgotten before, not after, what it delivers anew.
                    if lp.txn.is_some() && consumer.context().has_events() {
                        lp.apply_rebalances(&consumer);
                    }
                    if lp.workers.is_some() {
                        // The messages already waiting join it (none is waited for).
                        let mut batch = Vec::with_capacity(BATCH_MAX);
                        batch.push(m);
                        while batch.len() < BATCH_MAX {
                            match consumer.recv().now_or_never() {
                                Some(Ok(m)) => batch.push(m),
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "consumer error");
                                    break;
                                }
                                None => break,
                            }
                        }
                        lp.handle_batch(&consumer, &batch).await
                    } else {
                        lp.handle(&consumer, &m).await
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    lp.consumer_error = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(())
                }
            },
            _ = tokio::time::sleep_until(txn_due.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if txn_due.is_some() && !closing => Ok(()),
            _ = lag_tick.tick() => {
                let c = Arc::clone(&consumer);
                tokio::task::spawn_blocking(move || sample_lag(c));
                Ok(())
            }
        };
        let step = match step {
            Ok(()) => lp.end_txn_when_ready(&consumer).await,
            e => e,
        };
        if let Err(e) = step.and_then(|()| lp.fatal.take().map_or(Ok(()), Err)) {
            tracing::error!(error = %e, "stopping on an error");
            let why = format!("error: {e}");
            failed = Some(e);
            break why;
        }
    };
    tracing::info!(reason = %ended_by, in_flight = lp.sink.in_flight() + lp.slm_pending.len(), "stopping: draining in-flight work");
    // Stop fetching while we drain (the consumer still heartbeats in the background).
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    let deadline = Instant::now() + Duration::from_millis(lp.kafka.shutdown_timeout_ms);
    while lp.sink.in_flight() > 0 || !lp.slm_pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            Some(outcome) = lp.sink.next_delivery(), if lp.sink.in_flight() > 0 => lp.delivered(&consumer, outcome),
            Some(done) = lp.slm_pending.next(), if !lp.slm_pending.is_empty() => {
                if let Err(e) = lp.publish_resolved(&consumer, done).await {
                    tracing::error!(error = %e, "publishing while draining");
                    failed.get_or_insert(e);
                }
            }
            _ = tokio::time::sleep(left) => break,
        }
        if let Some(e) = lp.fatal.take() {
            failed.get_or_insert(e);
        }
        lp.apply_rebalances(&consumer);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = lp
        .sink
        .producer()
        .flush(Timeout::After(left.max(Duration::from_millis(100))));
    lp.summary.abandoned = lp.tracker.in_flight() as u64;
    if lp.summary.abandoned > 0 {
        tracing::warn!(
            abandoned = lp.summary.abandoned,
            "shutdown timeout: these messages were not committed and will be re-read"
        );
    }
    if lp.txn.is_some() {
        // Commit what was delivered in full; abort (and leave it to be re-read) otherwise.
        lp.apply_rebalances(&consumer);
        let commit = failed.is_none() && lp.summary.abandoned == 0;
        let txn = lp.txn.as_mut().expect("exactly once");
        match txn.end(&consumer, commit, false).await {
            Ok(ended) => tracing::info!(?ended, "last transaction ended"),
            Err(e) => {
                tracing::error!(error = %e, "ending the last transaction failed; its input will be re-read");
                failed.get_or_insert(e);
            }
        }
        lp.summary.transactions_committed = txn.committed;
        lp.summary.transactions_aborted = txn.aborted;
    } else {
        let c = Arc::clone(&consumer);
        match tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await {
            Ok(Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "final commit failed"),
            Err(e) => {
                failed.get_or_insert(ServiceError::Internal(format!("commit task: {e}")));
            }
        }
    }
    consumer.unsubscribe();
    lp.summary.ended_by = ended_by;
    tracing::info!(summary = ?lp.summary, "stopped");
    match failed {
        Some(e) => Err(e),
        None => Ok(lp.summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_stalled_only_while_an_old_retry_is_outstanding() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        let mut retrying = HashMap::new();
        assert!(
            !stalled(&retrying, limit, t0 + limit * 5),
            "nothing retried"
        );
        retrying.insert((("in".into(), 0), 7), t0);
        assert!(!stalled(&retrying, limit, t0 + Duration::from_secs(9)));
        assert!(stalled(&retrying, limit, t0 + limit));
        // A newer failure does not hide the old one, and the old one's success clears it.
        retrying.insert((("in".into(), 1), 3), t0 + Duration::from_secs(9));
        assert!(stalled(&retrying, limit, t0 + Duration::from_secs(11)));
        retrying.remove(&(("in".into(), 0), 7));
        assert!(!stalled(&retrying, limit, t0 + Duration::from_secs(11)));
    }
}
