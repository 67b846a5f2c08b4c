//! The Kafka sink: decisions to the output topic, dead letters (the original bytes and headers,
//! plus the reason and the source position) to the dead-letter topic. Every record is produced
//! with its [`Meta`]; when the broker acknowledges it, the outcome goes back to the source
//! ([`KafkaSink::next_delivery`], [`KafkaSink::take_completed`]), which only then stores the
//! offset (end-to-end acknowledgement, as vector's Kafka source does).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use triage_core::message::DecodeError;
use triage_core::names::{header, metric};

use super::client::kafka_err;
use super::offsets::Tp;
use crate::error::{Result, ServiceError};
use crate::processor::Decision;
use crate::sink::Sink;

/// Which topic a record went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    Output,
    DeadLetter(&'static str),
}

/// A record's input position and what it became, carried to its acknowledgement.
pub(crate) struct Meta {
    pub(crate) tp: Tp,
    pub(crate) offset: i64,
    pub(crate) received: Instant,
    pub(crate) topic: Topic,
    pub(crate) attempt: u32,
}

/// Where an input came from: its position, key and headers (kept on the output record).
pub(crate) struct Origin {
    pub(crate) meta: Meta,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Option<OwnedHeaders>,
}

pub(crate) type DeliveryOutcome = (
    Meta,
    std::result::Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
);
type Pending = FuturesUnordered<Pin<Box<dyn Future<Output = DeliveryOutcome> + Send>>>;

/// Produces decisions and dead letters and reports their deliveries.
pub(crate) struct KafkaSink {
    producer: FutureProducer,
    output_topic: String,
    dead_letter_topic: String,
    pending: Pending,
    /// Deliveries that finished while the sink waited for room in the producer's queue.
    completed: VecDeque<DeliveryOutcome>,
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

impl KafkaSink {
    pub(crate) fn new(producer: FutureProducer, output: &str, dead_letter: &str) -> Self {
        Self {
            producer,
            output_topic: output.to_string(),
            dead_letter_topic: dead_letter.to_string(),
            pending: FuturesUnordered::new(),
            completed: VecDeque::new(),
        }
    }

    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Deliveries awaiting the broker's acknowledgement.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The next acknowledgement (or failure) of a record, once there is one.
    pub(crate) async fn next_delivery(&mut self) -> Option<DeliveryOutcome> {
        self.pending.next().await
    }

    /// Deliveries that finished while the sink was producing.
    pub(crate) fn take_completed(&mut self) -> impl Iterator<Item = DeliveryOutcome> + '_ {
        self.completed.drain(..)
    }

    /// Hands a record to the producer; on a full queue, waits for a delivery (kept for the
    /// source) and tries again.
    async fn enqueue(
        &mut self,
        to: Topic,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
        meta: Meta,
    ) -> Result<()> {
        let topic = match to {
            Topic::Output => self.output_topic.as_str(),
            Topic::DeadLetter(_) => self.dead_letter_topic.as_str(),
        };
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
                        Some(outcome) => self.completed.push_back(outcome),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(kafka_err("producing", e)),
            }
        }
    }

    /// Re-sends a failed delivery after a backoff. Its offset stays unstored meanwhile, so a
    /// crash re-reads it: nothing is lost.
    pub(crate) fn retry(&mut self, owned: OwnedMessage, mut meta: Meta) {
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
}

impl Sink for KafkaSink {
    type Origin = Origin;

    async fn decision(&mut self, d: &Decision, origin: Origin) -> Result<()> {
        metrics::counter!(metric::ROUTED, "route" => d.route.as_str(), "label" => d.label.clone())
            .increment(1);
        let body = serde_json::to_vec(d)
            .map_err(|e| ServiceError::Internal(format!("encoding a decision: {e}")))?;
        let headers = record_headers(
            origin.headers,
            &[
                (header::LABEL, d.label.as_bytes()),
                (header::ROUTE, d.route.as_str().as_bytes()),
                (header::MODEL, d.model_version.as_bytes()),
            ],
        );
        let meta = Meta {
            topic: Topic::Output,
            ..origin.meta
        };
        self.enqueue(Topic::Output, origin.key.as_deref(), &body, headers, meta)
            .await
    }

    async fn dead_letter(&mut self, err: &DecodeError, raw: &[u8], origin: Origin) -> Result<()> {
        let (tp, offset) = (&origin.meta.tp, origin.meta.offset);
        tracing::debug!(topic = %tp.0, partition = tp.1, offset, error = %err, "dead-lettering");
        let reason = err.to_string();
        let source = format!("{}/{}/{}", tp.0, tp.1, offset);
        let headers = record_headers(
            origin.headers,
            &[
                (header::ERROR, reason.as_bytes()),
                (header::ERROR_KIND, err.kind().as_bytes()),
                (header::SOURCE, source.as_bytes()),
            ],
        );
        let to = Topic::DeadLetter(err.kind());
        let meta = Meta {
            topic: to,
            ..origin.meta
        };
        self.enqueue(to, origin.key.as_deref(), raw, headers, meta)
            .await
    }
}
