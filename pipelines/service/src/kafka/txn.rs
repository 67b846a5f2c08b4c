//! Exactly-once delivery (`[kafka] delivery = "exactly_once"`): Kafka transactions around
//! batches of input.
//!
//! - A transaction opens at the first message consumed after the previous one ended, and covers
//!   every message consumed until `transaction_interval_ms` has passed.
//! - Then the loop stops taking messages (it no longer calls `recv()`, so nothing more is read
//!   into this transaction) and waits for the SLM calls and deliveries in flight: a barrier.
//!   SLM calls finish out of order, and the offsets sent to the transaction must cover exactly
//!   the inputs whose records it holds, so the simplest correct point to commit is when nothing
//!   is in flight. Then it sends the next offset of every partition it read to the transaction
//!   (`send_offsets_to_transaction`, with the consumer's group metadata) and commits. Records,
//!   dead letters and input offsets become visible together, or, on abort, not at all.
//! - It aborts instead when the transaction is doomed: a delivery failed (librdkafka makes a
//!   transaction with a failed delivery abortable, and a record missing from a committed
//!   transaction would be lost), a partition it read was revoked (its new owner re-reads from
//!   the last commit), or the run stops on an error. The partitions still assigned are then
//!   rewound (`seek`) to the first offset the transaction read, so the next transaction reads,
//!   and produces, them again. Consecutive aborts back off like retries (200 ms doubling to 5 s),
//!   and `/health` turns unhealthy while they have lasted `retry_unhealthy_ms`.
//! - `transactional.id` is stable per instance ([`super::instance::transactional`]): a restarted
//!   instance's `init_transactions` aborts what its killed predecessor left open.
//!
//! The consumer runs with `enable.auto.commit=false` and never stores or commits an offset
//! itself: the only commits are the transactions'.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use triage_core::names::metric;

use super::client::{Consumer_, kafka_err};
use super::offsets::Tp;
use super::sink::backoff;
use crate::error::{Result, ServiceError};

/// The input a transaction has read: per partition, the first and the last offset.
#[derive(Debug, Default)]
pub(crate) struct Span {
    parts: BTreeMap<Tp, (i64, i64)>,
}

impl Span {
    /// Records a consumed message.
    pub(crate) fn consumed(&mut self, tp: &Tp, offset: i64) {
        match self.parts.get_mut(tp) {
            Some((first, last)) => {
                *first = (*first).min(offset);
                *last = (*last).max(offset);
            }
            None => {
                self.parts.insert(tp.clone(), (offset, offset));
            }
        }
    }

    /// The offsets a commit sends: the next offset to read of every partition read.
    pub(crate) fn commit_offsets(&self) -> Vec<(Tp, i64)> {
        self.parts
            .iter()
            .map(|(tp, &(_, last))| (tp.clone(), last + 1))
            .collect()
    }

    /// Where an abort rewinds to: the first offset read of every partition still held.
    pub(crate) fn rewind_offsets(&self) -> Vec<(Tp, i64)> {
        self.parts
            .iter()
            .map(|(tp, &(first, _))| (tp.clone(), first))
            .collect()
    }

    /// Forgets a revoked partition; whether the transaction had read it.
    pub(crate) fn revoke(&mut self, tp: &Tp) -> bool {
        self.parts.remove(tp).is_some()
    }

    /// Messages of partitions still held (an upper bound: offsets may have gaps).
    pub(crate) fn messages(&self) -> u64 {
        self.parts
            .values()
            .map(|&(first, last)| (last - first + 1) as u64)
            .sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    fn clear(&mut self) {
        self.parts.clear();
    }
}

/// What to do after a transactional call failed, from librdkafka's flags on the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Call it again (a time-out: the outcome is not known yet).
    Retry,
    /// Abort the transaction; the producer stays usable.
    Abort,
    /// The producer is unusable (fenced by a newer instance with the same `transactional.id`,
    /// or a fatal idempotence error): stop.
    Fatal,
}

/// Sorts a failed transactional call by librdkafka's flags: fatal wins, then "requires abort",
/// then retriable; anything else aborts (the safe way: nothing of it becomes visible).
pub(crate) fn on_error(fatal: bool, requires_abort: bool, retriable: bool) -> OnError {
    if fatal {
        OnError::Fatal
    } else if requires_abort {
        OnError::Abort
    } else if retriable {
        OnError::Retry
    } else {
        OnError::Abort
    }
}

fn on_kafka_error(e: &KafkaError) -> OnError {
    match e {
        KafkaError::Transaction(r) => {
            on_error(r.is_fatal(), r.txn_requires_abort(), r.is_retriable())
        }
        _ => OnError::Abort,
    }
}

/// Tries of a retriable transactional call before the transaction is aborted.
const TRIES: u32 = 3;

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Nothing was open.
    Nothing,
    Committed,
    /// Aborted, for this reason; the partitions still held were rewound.
    Aborted(String),
}

/// The transaction state of a run.
pub(crate) struct Txn {
    producer: FutureProducer,
    interval: Duration,
    /// Each transactional call's time-out.
    timeout: Duration,
    span: Span,
    /// When the open transaction began; `None` while none is open.
    began: Option<Instant>,
    /// Why the open transaction must be aborted.
    doomed: Option<String>,
    /// When the open transaction stopped taking messages (due or doomed).
    closing_since: Option<Instant>,
    aborts_in_a_row: u32,
    /// Since when transactions have been aborted without a commit in between.
    failing_since: Option<Instant>,
    pub(crate) committed: u64,
    pub(crate) aborted: u64,
}

fn kafka(what: &str, e: KafkaError) -> ServiceError {
    kafka_err(what, e)
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))
}

impl Txn {
    /// Initialises the transactional producer: fences any earlier producer with the same
    /// `transactional.id` and aborts what it left open.
    pub(crate) async fn init(
        producer: FutureProducer,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Txn> {
        let p = producer.clone();
        blocking("init_transactions", move || p.init_transactions(timeout))
            .await?
            .map_err(|e| kafka("initialising transactions", e))?;
        Ok(Txn {
            producer,
            interval,
            timeout,
            span: Span::default(),
            began: None,
            doomed: None,
            closing_since: None,
            aborts_in_a_row: 0,
            failing_since: None,
            committed: 0,
            aborted: 0,
        })
    }

    /// A message was consumed: opens a transaction if none is, and adds the message to it.
    pub(crate) fn consumed(&mut self, tp: &Tp, offset: i64) -> Result<()> {
        if self.began.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| kafka("beginning a transaction", e))?;
            self.began = Some(Instant::now());
        }
        self.span.consumed(tp, offset);
        Ok(())
    }

    /// The open transaction must be aborted (the first reason is kept).
    pub(crate) fn doom(&mut self, why: impl Into<String>) {
        if self.began.is_some() && self.doomed.is_none() {
            self.doomed = Some(why.into());
        }
    }

    /// A partition was revoked: a transaction that read it cannot commit it any more.
    pub(crate) fn revoked(&mut self, tp: &Tp) {
        if self.span.revoke(tp) {
            self.doom(format!("partition {}/{} was revoked", tp.0, tp.1));
        }
    }

    /// When the open transaction is due, unless it is doomed already.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.began, &self.doomed) {
            (Some(t), None) => Some(t + self.interval),
            _ => None,
        }
    }

    /// Whether the open transaction takes no more messages (due or doomed).
    pub(crate) fn closing(&mut self, now: Instant) -> bool {
        let closing = self.began.is_some()
            && (self.doomed.is_some() || self.deadline().is_some_and(|d| now >= d));
        if closing {
            self.closing_since.get_or_insert(now);
        }
        closing
    }

    /// Whether transactions have been aborting, with no commit in between, for `limit`.
    pub(crate) fn failing_for(&self, limit: Duration) -> bool {
        self.failing_since.is_some_and(|t| t.elapsed() >= limit)
    }

    /// Ends the open transaction once nothing is in flight: commits it, or aborts it when it is
    /// doomed, when `commit` is false, or when the commit fails. After an abort the partitions
    /// still held are rewound when `rewind` is set, and the next transaction waits for the
    /// backoff. An error is returned only when the producer is unusable (or a rewind failed):
    /// the run must stop, and a restart re-reads from the last commit.
    pub(crate) async fn end(
        &mut self,
        consumer: &Arc<Consumer_>,
        commit: bool,
        rewind: bool,
    ) -> Result<Ended> {
        if self.began.is_none() {
            return Ok(Ended::Nothing);
        }
        let since = self.closing_since.unwrap_or_else(Instant::now);
        let reason = match (&self.doomed, commit) {
            (Some(why), _) => Some(why.clone()),
            (None, false) => Some("the run is stopping on an error".to_string()),
            (None, true) => self.commit(consumer).await?,
        };
        let ended = match reason {
            None => {
                tracing::debug!(
                    messages = self.span.messages(),
                    open_ms = self.began.map_or(0, |t| t.elapsed().as_millis() as u64),
                    closing_ms = since.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                self.committed += 1;
                self.aborts_in_a_row = 0;
                self.failing_since = None;
                metrics::counter!(metric::TRANSACTIONS, "outcome" => "committed").increment(1);
                Ended::Committed
            }
            Some(why) => {
                let p = self.producer.clone();
                let timeout = self.timeout;
                blocking("abort_transaction", move || p.abort_transaction(timeout))
                    .await?
                    .map_err(|e| kafka("aborting a transaction", e))?;
                self.aborted += 1;
                self.aborts_in_a_row += 1;
                self.failing_since.get_or_insert(since);
                metrics::counter!(metric::TRANSACTIONS, "outcome" => "aborted").increment(1);
                tracing::warn!(reason = %why, messages = self.span.messages(), in_a_row = self.aborts_in_a_row, "transaction aborted; its input will be read again");
                if rewind {
                    self.rewind(consumer).await?;
                }
                Ended::Aborted(why)
            }
        };
        metrics::histogram!(metric::TRANSACTION_END_SECONDS).record(since.elapsed().as_secs_f64());
        self.span.clear();
        self.began = None;
        self.doomed = None;
        self.closing_since = None;
        if rewind && self.aborts_in_a_row > 0 {
            tokio::time::sleep(backoff(self.aborts_in_a_row)).await;
        }
        Ok(ended)
    }

    /// Sends the offsets and commits: `None` when committed, `Some(reason)` when the
    /// transaction must be aborted instead; an error when the producer is unusable.
    async fn commit(&mut self, consumer: &Arc<Consumer_>) -> Result<Option<String>> {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in self.span.commit_offsets() {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(|e| kafka("listing the offsets to commit", e))?;
        }
        if !self.span.is_empty() {
            let Some(group) = consumer.group_metadata() else {
                return Ok(Some("the consumer has no group metadata".into()));
            };
            let offsets = Arc::new(offsets);
            let group = Arc::new(group);
            let call = |p: FutureProducer, timeout| {
                let (offsets, group) = (Arc::clone(&offsets), Arc::clone(&group));
                move || p.send_offsets_to_transaction(&offsets, &group, timeout)
            };
            if let Some(why) = self
                .retrying("sending offsets to the transaction", call)
                .await?
            {
                return Ok(Some(why));
            }
        }
        self.retrying("committing the transaction", |p, timeout| {
            move || p.commit_transaction(timeout)
        })
        .await
    }

    /// Runs a transactional call, again while it fails retriably: `None` when it succeeded,
    /// `Some(reason)` when the transaction must be aborted.
    async fn retrying<F, G>(&self, what: &'static str, call: F) -> Result<Option<String>>
    where
        F: Fn(FutureProducer, Duration) -> G,
        G: FnOnce() -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        for attempt in 1..=TRIES {
            let r = blocking(what, call(self.producer.clone(), self.timeout)).await?;
            let Err(e) = r else { return Ok(None) };
            match on_kafka_error(&e) {
                OnError::Fatal => return Err(kafka(what, e)),
                OnError::Retry if attempt < TRIES => {
                    tracing::warn!(error = %e, attempt, "{what} failed; trying again");
                }
                OnError::Retry | OnError::Abort => return Ok(Some(format!("{what}: {e}"))),
            }
        }
        Ok(Some(format!("{what}: still failing after {TRIES} tries")))
    }

    /// Seeks every partition the aborted transaction read back to its first offset.
    async fn rewind(&mut self, consumer: &Arc<Consumer_>) -> Result<()> {
        let to = self.span.rewind_offsets();
        if to.is_empty() {
            return Ok(());
        }
        let c = Arc::clone(consumer);
        let timeout = self.timeout;
        blocking("seek", move || {
            for ((topic, partition), offset) in &to {
                c.seek(topic, *partition, Offset::Offset(*offset), timeout)
                    .map_err(|e| {
                        kafka(
                            "rewinding a partition after an abort",
                            KafkaError::Seek(format!("{topic}/{partition} to {offset}: {e}")),
                        )
                    })?;
            }
            Ok(())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(p: i32) -> Tp {
        ("in".into(), p)
    }

    #[test]
    fn a_span_commits_the_next_offsets_and_rewinds_to_the_first() {
        let mut s = Span::default();
        assert!(s.is_empty());
        for o in [5, 6, 7] {
            s.consumed(&tp(0), o);
        }
        s.consumed(&tp(1), 40);
        assert_eq!(s.commit_offsets(), vec![(tp(0), 8), (tp(1), 41)]);
        assert_eq!(s.rewind_offsets(), vec![(tp(0), 5), (tp(1), 40)]);
        assert_eq!(s.messages(), 4);
        // A revoked partition is neither committed nor rewound by this instance.
        assert!(s.revoke(&tp(1)));
        assert!(!s.revoke(&tp(1)));
        assert_eq!(s.commit_offsets(), vec![(tp(0), 8)]);
        assert_eq!(s.rewind_offsets(), vec![(tp(0), 5)]);
        s.clear();
        assert!(s.is_empty() && s.commit_offsets().is_empty());
    }

    #[test]
    fn transactional_errors_are_sorted_fatal_first_and_abort_by_default() {
        assert_eq!(on_error(true, true, true), OnError::Fatal);
        assert_eq!(on_error(false, true, true), OnError::Abort);
        assert_eq!(on_error(false, false, true), OnError::Retry);
        assert_eq!(on_error(false, false, false), OnError::Abort);
        // An error that is not a transaction error (no flags to read) aborts.
        assert_eq!(
            on_kafka_error(&KafkaError::Seek("x".into())),
            OnError::Abort
        );
    }

    proptest! {
        /// Whatever offsets a transaction reads, in order per partition, interleaved over
        /// partitions: the commit resumes right after the last one of each partition and an
        /// abort right at the first, so together the transactions cover each offset once.
        #[test]
        fn commit_and_rewind_cover_each_offset_once(
            runs in proptest::collection::vec((0i32..4, 1i64..50), 1..40)
        ) {
            let mut s = Span::default();
            let mut next: BTreeMap<Tp, i64> = BTreeMap::new();
            let mut first: BTreeMap<Tp, i64> = BTreeMap::new();
            for (p, n) in runs {
                let at = next.entry(tp(p)).or_insert(100 * i64::from(p));
                first.entry(tp(p)).or_insert(*at);
                for _ in 0..n {
                    s.consumed(&tp(p), *at);
                    *at += 1;
                }
            }
            let committed: BTreeMap<Tp, i64> = s.commit_offsets().into_iter().collect();
            let rewound: BTreeMap<Tp, i64> = s.rewind_offsets().into_iter().collect();
            prop_assert_eq!(committed, next);
            prop_assert_eq!(rewound, first);
        }
    }
}
