//! The Kafka sink: decisions to the output topic, dead letters (the original bytes and headers,
//! plus the reason and the source position) to the dead-letter topic. Every record is produced
//! with its [`Meta`]; when the broker acknowledges it, the outcome goes back to the source
//! ([`KafkaSink::next_delivery`], [`KafkaSink::take_completed`]), which only then stores the
//! offset (end-to-end acknowledgement, as vector's Kafka source does).
//!
//! A failed produce, whether refused at once by librdkafka (`send_result`) or reported in the
//! delivery, comes back the same way, as a failed outcome: the source decides with
//! [`failure_of`] whether it is retried ([`KafkaSink::retry`]), dead-lettered
//! ([`KafkaSink::refused`]) or ends the run.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use rdkafka::Timestamp;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use triage_core::message::DecodeError;
use triage_core::names::{header, metric};

use super::offsets::Tp;
use crate::error::Result;
use crate::processor::Verdict;
use crate::sink::Sink;

/// The dead-letter kind (`triage.error.kind`) of a record the broker, or librdkafka, refused for
/// good: its payload is the refused record (a decision), its `triage.error` the reason.
pub(crate) const PRODUCE_REJECTED: &str = "produce_rejected";

/// What a failed produce means, as vector's Kafka sink sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The record will never be taken (too large, invalid, not authorised): dead-letter it.
    Permanent,
    /// It may be taken later (timeouts, leader changes, broker down): retry with backoff.
    Transient,
    /// The producer itself is unusable (a fatal idempotence error, fenced, no cluster
    /// authorisation): stop, after draining and committing what was delivered.
    Fatal,
}

/// Sorts a produce error code. Anything not listed is transient: retrying a record that could
/// have been taken loses nothing, while dead-lettering one loses its place in the output.
/// `UnknownTopicOrPartition` (and librdkafka's local `UnknownTopic`/`UnknownPartition`) is
/// transient on purpose: Kafka marks it retriable (the topic may be being created), and when the
/// output topic is missing every record would fail, so retrying, with `/health` unhealthy, is
/// what an operator can act on; dead-lettering the whole stream is not.
pub(crate) fn classify(code: RDKafkaErrorCode) -> Failure {
    use RDKafkaErrorCode as C;
    match code {
        // Local (librdkafka refuses the record before sending it) or from the broker.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidTopic
        | C::TopicAuthorizationFailed
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation
        | C::BadMessage
        | C::KeySerialization
        | C::ValueSerialization => Failure::Permanent,
        C::Fatal
        | C::Fenced
        | C::ProducerFenced
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::InvalidRequiredAcks => Failure::Fatal,
        _ => Failure::Transient,
    }
}

/// Sorts a produce error; one without a code (cannot happen for produce errors) is transient.
pub(crate) fn failure_of(e: &KafkaError) -> Failure {
    e.rdkafka_error_code().map_or(Failure::Transient, classify)
}

/// What becomes of a record that was refused for good, by where it was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A decision: to the dead-letter topic, whole, with the reason.
    DeadLetter,
    /// A dead letter: again, without its payload, key and input headers (reason and source
    /// position only).
    Strip,
    /// A stripped dead letter: nothing smaller can be sent; log, count, and move the offset on.
    GiveUp,
}

pub(crate) fn on_refused(to: Topic) -> Refused {
    match to {
        Topic::Output => Refused::DeadLetter,
        Topic::DeadLetter(_) => Refused::Strip,
        Topic::Stripped(_) => Refused::GiveUp,
    }
}

/// The capped exponential backoff before retry `attempt` (1, 2, …): 200 ms doubling to 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.clamp(1, 6)).min(5_000))
}

/// Which topic a record went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    Output,
    DeadLetter(&'static str),
    /// A dead letter of this kind without its payload: the whole one was refused.
    Stripped(&'static str),
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
    /// The fast model's labels, for the `triage.label` header.
    labels: Vec<String>,
    /// Its version, for the `triage.model` header.
    model_version: String,
    /// The `routed` counter of each (route, label), made at its first use.
    routed: Vec<Option<metrics::Counter>>,
    pending: Pending,
    /// Deliveries that finished while the sink waited for room in the producer's queue.
    completed: VecDeque<DeliveryOutcome>,
}

/// A record not (yet) in the log, to be sent to `topic`: no timestamp, partition or offset.
fn unsent(
    topic: &str,
    payload: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
) -> OwnedMessage {
    OwnedMessage::new(
        payload,
        key,
        topic.to_string(),
        Timestamp::NotAvailable,
        -1,
        -1,
        headers,
    )
}

/// The most headers triage adds to a record (a decision's label, route and model; a dead
/// letter's error, kind and source).
const ADDED_HEADERS: usize = 3;

/// An input record's headers, copied with room for the ones triage adds (librdkafka grows a
/// full header list by reallocating it), but for those named as triage's own: triage writes
/// them, and a reader must find only triage's.
pub(crate) fn input_headers(h: &BorrowedHeaders) -> OwnedHeaders {
    h.iter().filter(|hd| !header::ALL.contains(&hd.key)).fold(
        OwnedHeaders::new_with_capacity(h.count() + ADDED_HEADERS),
        OwnedHeaders::insert,
    )
}

fn record_headers(base: Option<OwnedHeaders>, extra: &[(&str, &[u8])]) -> OwnedHeaders {
    debug_assert!(extra.len() <= ADDED_HEADERS);
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
    pub(crate) fn new(
        producer: FutureProducer,
        output: &str,
        dead_letter: &str,
        labels: &[String],
        model_version: &str,
    ) -> Self {
        Self {
            producer,
            output_topic: output.to_string(),
            dead_letter_topic: dead_letter.to_string(),
            labels: labels.to_vec(),
            model_version: model_version.to_string(),
            routed: Vec::new(),
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
    /// source) and tries again. Any other refusal comes back to the source as a failed delivery
    /// (in [`KafkaSink::take_completed`]), to be sorted like one.
    async fn enqueue(
        &mut self,
        to: Topic,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
        meta: Meta,
    ) -> Result<()> {
        // The topic is borrowed from its own field, apart from the ones the loop below changes.
        let topic = match to {
            Topic::Output => &self.output_topic,
            Topic::DeadLetter(_) | Topic::Stripped(_) => &self.dead_letter_topic,
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
                Err((e, back)) => {
                    let owned = unsent(
                        topic,
                        back.payload.map(<[u8]>::to_vec),
                        back.key.map(<[u8]>::to_vec),
                        back.headers,
                    );
                    self.completed.push_back((meta, Ok(Err((e, owned)))));
                    return Ok(());
                }
            }
        }
    }

    /// Produces an owned record after `delay`, without waiting: the outcome, delivered or
    /// failed (a refusal by `send_result` included), comes out of [`KafkaSink::next_delivery`].
    fn send_later(&mut self, msg: OwnedMessage, meta: Meta, delay: Duration) {
        let producer = self.producer.clone();
        self.pending.push(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            loop {
                let mut rec = FutureRecord::to(msg.topic()).payload(msg.payload().unwrap_or(&[]));
                if let Some(k) = msg.key() {
                    rec = rec.key(k);
                }
                if let Some(h) = msg.headers() {
                    rec = rec.headers(h.clone());
                }
                let err = match producer.send_result(rec) {
                    Ok(fut) => return (meta, fut.await),
                    Err((e, _)) => e,
                };
                if err != KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                    return (meta, Ok(Err((err, msg))));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    /// Re-sends a record that failed transiently after a capped exponential backoff. Its
    /// offset stays unstored meanwhile, so a crash re-reads it: nothing is lost.
    pub(crate) fn retry(&mut self, owned: OwnedMessage, mut meta: Meta) {
        meta.attempt += 1;
        let delay = backoff(meta.attempt);
        self.send_later(owned, meta, delay);
    }

    /// Sends what replaces a record that was refused for good (see [`Refused`]): the dead
    /// letter of a decision, or the stripped dead letter of a dead letter. Returns `false` when
    /// nothing is left to send (a stripped dead letter was refused).
    pub(crate) fn refused(&mut self, owned: OwnedMessage, meta: Meta, reason: &str) -> bool {
        let source = format!("{}/{}/{}", meta.tp.0, meta.tp.1, meta.offset);
        let (msg, to) = match on_refused(meta.topic) {
            Refused::GiveUp => return false,
            Refused::DeadLetter => {
                let headers = record_headers(
                    owned.headers().cloned(),
                    &[
                        (header::ERROR, reason.as_bytes()),
                        (header::ERROR_KIND, PRODUCE_REJECTED.as_bytes()),
                        (header::SOURCE, source.as_bytes()),
                    ],
                );
                let msg = unsent(
                    &self.dead_letter_topic,
                    owned.payload().map(<[u8]>::to_vec),
                    owned.key().map(<[u8]>::to_vec),
                    Some(headers),
                );
                (msg, Topic::DeadLetter(PRODUCE_REJECTED))
            }
            Refused::Strip => {
                let kind = match meta.topic {
                    Topic::DeadLetter(k) | Topic::Stripped(k) => k,
                    Topic::Output => PRODUCE_REJECTED,
                };
                let first = owned
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|x| x.key == header::ERROR)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default();
                let error = format!(
                    "{first}; the dead letter was refused too ({reason}): its payload, key and \
                     headers were dropped"
                );
                let headers = record_headers(
                    None,
                    &[
                        (header::ERROR, error.as_bytes()),
                        (header::ERROR_KIND, kind.as_bytes()),
                        (header::SOURCE, source.as_bytes()),
                    ],
                );
                let msg = unsent(&self.dead_letter_topic, None, None, Some(headers));
                (msg, Topic::Stripped(kind))
            }
        };
        let meta = Meta {
            topic: to,
            attempt: 0,
            ..meta
        };
        self.send_later(msg, meta, Duration::ZERO);
        true
    }
}

impl Sink for KafkaSink {
    type Origin = Origin;

    async fn decision(&mut self, record: &[u8], v: Verdict, origin: Origin) -> Result<()> {
        let label = &self.labels[v.label];
        // Counted here, where every decision passes; the handle is made once per pair.
        let slot = v.route as usize * self.labels.len() + v.label;
        if self.routed.len() <= slot {
            self.routed.resize(slot + 1, None);
        }
        self.routed[slot]
            .get_or_insert_with(|| {
                metrics::counter!(metric::ROUTED, "route" => v.route.as_str(), "label" => label.clone())
            })
            .increment(1);
        let headers = record_headers(
            origin.headers,
            &[
                (header::LABEL, label.as_bytes()),
                (header::ROUTE, v.route.as_str().as_bytes()),
                (header::MODEL, self.model_version.as_bytes()),
            ],
        );
        let meta = Meta {
            topic: Topic::Output,
            ..origin.meta
        };
        self.enqueue(Topic::Output, origin.key.as_deref(), record, headers, meta)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_are_sorted_by_kind() {
        use RDKafkaErrorCode as C;
        // What the broker or librdkafka will never take: dead-lettered.
        for c in [
            C::MessageSizeTooLarge, // also librdkafka's local "message.max.bytes" check
            C::InvalidMessageSize,
            C::MessageBatchTooLarge,
            C::InvalidTopic,
            C::TopicAuthorizationFailed,
            C::InvalidRecord,
            C::InvalidTimestamp,
            C::PolicyViolation,
            C::BadMessage,
        ] {
            assert_eq!(classify(c), Failure::Permanent, "{c:?}");
        }
        // What may succeed later: retried.
        for c in [
            C::MessageTimedOut,
            C::RequestTimedOut,
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::NotEnoughReplicas,
            C::NotEnoughReplicasAfterAppend,
            C::NetworkException,
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::UnknownTopicOrPartition,
            C::UnknownTopic,
            C::UnknownPartition,
            C::InvalidDifferentRecord, // another record of the batch was invalid
            C::PurgeQueue,
            C::QueueFull,
            C::KafkaStorageError,
        ] {
            assert_eq!(classify(c), Failure::Transient, "{c:?}");
        }
        // The producer cannot go on.
        for c in [C::Fatal, C::ProducerFenced, C::ClusterAuthorizationFailed] {
            assert_eq!(classify(c), Failure::Fatal, "{c:?}");
        }
        assert_eq!(
            failure_of(&KafkaError::MessageProduction(C::MessageSizeTooLarge)),
            Failure::Permanent
        );
        assert_eq!(
            failure_of(&KafkaError::MessageProduction(C::MessageTimedOut)),
            Failure::Transient
        );
    }

    #[test]
    fn a_refused_record_falls_back_until_the_offset_can_move_on() {
        assert_eq!(on_refused(Topic::Output), Refused::DeadLetter);
        assert_eq!(
            on_refused(Topic::DeadLetter(PRODUCE_REJECTED)),
            Refused::Strip
        );
        assert_eq!(on_refused(Topic::DeadLetter("not_json")), Refused::Strip);
        assert_eq!(on_refused(Topic::Stripped("not_json")), Refused::GiveUp);
    }

    #[test]
    fn backoff_is_exponential_and_capped() {
        let b: Vec<u64> = (1..=10).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(b[..5], [200, 400, 800, 1600, 3200]);
        assert!(b[5..].iter().all(|&ms| ms == 5_000), "{b:?}");
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }
}
