//! Names that other programs depend on, written once: Prometheus metrics and Kafka headers.
//! (vector's STYLE.md, "const strings".) docs/kafka.md lists them for operators.

/// Prometheus metric names.
pub mod metric {
    /// Messages read from the input (counter).
    pub const CONSUMED: &str = "triage_consumed_total";
    /// Decisions durably published to the output (counter).
    pub const PRODUCED: &str = "triage_produced_total";
    /// Messages durably published to the dead-letter output (counter; label `kind`: the decode
    /// error kind).
    pub const DEAD_LETTERED: &str = "triage_dead_lettered_total";
    /// Decisions by route and label (counter; labels `route`, `label`).
    pub const ROUTED: &str = "triage_routed_total";
    /// Deliveries retried after a transient failure (counter).
    pub const PRODUCE_RETRIES: &str = "triage_produce_retries_total";
    /// Records refused for good by the broker or librdkafka (message too large, invalid or
    /// unauthorised topic, invalid record), then dead-lettered (counter; label `topic`: what was
    /// refused: `output`, `dead_letter`, `stripped_dead_letter`).
    pub const PRODUCE_REJECTED: &str = "triage_produce_rejected_total";
    /// Messages dropped because even their dead letter without payload was refused; their
    /// offset moved on (counter). Anything above 0 needs a look at the logs.
    pub const DEAD_LETTERS_LOST: &str = "triage_dead_letters_lost_total";
    /// Records waiting to be retried after a transient failure (gauge).
    pub const PRODUCE_RETRYING: &str = "triage_produce_retrying";
    /// Partitions paused and resumed by backpressure (counter; label `action`).
    pub const PARTITION_PAUSES: &str = "triage_partition_pauses_total";
    /// Messages received and not yet acknowledged (gauge).
    pub const IN_FLIGHT: &str = "triage_in_flight";
    /// Consumer lag per partition (gauge; labels `topic`, `partition`).
    pub const CONSUMER_LAG: &str = "triage_consumer_lag";
    /// From receipt to acknowledged delivery (histogram, seconds).
    pub const LATENCY: &str = "triage_latency_seconds";
    /// SLM calls by outcome (counter; label `kind`: second_opinion, generate, unavailable,
    /// timeout, shed, error, closed).
    pub const SLM_CALLS: &str = "triage_slm_calls_total";
    /// Messages routed to a saturated SLM and shed by its admission stage, published
    /// `over_budget` with the fast label (counter; label `why`: `window`, not taken within the
    /// admission window; `queue_full`, pushed out by more urgent messages; `replies_full`).
    pub const SLM_SHED: &str = "triage_slm_shed_total";
    /// Time in the SLM, queueing included (histogram, seconds).
    pub const SLM_SECONDS: &str = "triage_slm_seconds";
    /// `delivery = "exactly_once"`: transactions ended (counter; label `outcome`: `committed`,
    /// `aborted`).
    pub const TRANSACTIONS: &str = "triage_transactions_total";
    /// `delivery = "exactly_once"`: how long ending a transaction held the input back, from
    /// when it was due (or doomed) to its commit or abort: the wait for the messages in flight
    /// and the broker's round trips (histogram, seconds).
    pub const TRANSACTION_END_SECONDS: &str = "triage_transaction_end_seconds";
}

/// Kafka header names on triage's records.
pub mod header {
    /// On a decision: the published label.
    pub const LABEL: &str = "triage.label";
    /// On a decision: the route it took.
    pub const ROUTE: &str = "triage.route";
    /// On a decision: the fast model's version.
    pub const MODEL: &str = "triage.model";
    /// On a dead letter: why, in words.
    pub const ERROR: &str = "triage.error";
    /// On a dead letter: the error kind (`not_json`, `too_large`, …).
    pub const ERROR_KIND: &str = "triage.error.kind";
    /// On a dead letter: where the input was (`topic/partition/offset`).
    pub const SOURCE: &str = "triage.source";
    /// Every header triage writes: an input's header of one of these names is not copied onto
    /// the record (a reader taking the first `triage.label` got the producer's).
    pub const ALL: [&str; 6] = [LABEL, ROUTE, MODEL, ERROR, ERROR_KIND, SOURCE];
}
