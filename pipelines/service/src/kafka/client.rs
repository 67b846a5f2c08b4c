//! The Kafka clients: a consumer that stores offsets only when told, and an idempotent
//! producer; their context logs through `tracing` and records rebalances for the loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, ClientContext};
use triage_core::config::KafkaConfig;
use triage_core::config::kafka::{Delivery, client_config_error};

use super::offsets::Tp;
use crate::error::{Result, ServiceError};

#[derive(Debug)]
pub(crate) enum RebalanceEvent {
    Revoked(Vec<Tp>),
    Assigned(Vec<Tp>),
}

/// Logs through `tracing` and records rebalances for the main loop. Never blocks.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) events: Mutex<Vec<RebalanceEvent>>,
    /// The last error that retrying cannot mend (a refused authentication, a failed TLS
    /// handshake): librdkafka reports it here, while the consumer itself says only
    /// `AllBrokersDown`.
    pub(crate) fatal: Mutex<Option<String>>,
}

impl Ctx {
    /// Whether a rebalance was recorded that the loop has not applied yet.
    pub(crate) fn has_events(&self) -> bool {
        self.events.lock().is_ok_and(|e| !e.is_empty())
    }
}

fn tpl_to_vec(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
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
        if let Some(code) = error.rdkafka_error_code()
            && is_configuration(code)
            && let Ok(mut fatal) = self.fatal.lock()
        {
            *fatal = Some(format!("{error}: {reason}"));
        }
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

/// Errors that mean the client's settings (credentials, TLS) are wrong, not that a broker is
/// away for now.
fn is_configuration(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::Authentication
            | C::SaslAuthenticationFailed
            | C::SSL
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
    )
}

pub(crate) type Consumer_ = StreamConsumer<Ctx>;

/// The consumer's `session.timeout.ms` unless `[kafka.properties]` sets it.
pub(crate) const DEFAULT_SESSION_TIMEOUT_MS: &str = "10000";
/// Its `heartbeat.interval.ms` (a third of the session timeout).
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL_MS: &str = "3000";
/// Its `partition.assignment.strategy`.
pub(crate) const DEFAULT_ASSIGNMENT_STRATEGY: &str = "cooperative-sticky";

pub(crate) fn kafka_err(what: &str, e: KafkaError) -> ServiceError {
    match &e {
        // Never rdkafka's Display of a refused property: it ends with the value (maybe a secret).
        KafkaError::ClientConfig(_, desc, key, value) => ServiceError::Config(format!(
            "kafka: {what}: {}",
            client_config_error(desc, key, value)
        )),
        KafkaError::ClientCreation(_) => ServiceError::Config(format!("kafka: {what}: {e}")),
        _ => ServiceError::Kafka {
            message: format!("{what}: {e}"),
            retryable: true,
        },
    }
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

/// Checks the consumer's and the producer's settings as librdkafka reads them, without creating a
/// client or reaching a broker: an unknown property, or a value this build cannot take
/// (`security.protocol = "SASL_SSL"` needs OpenSSL), is a configuration error here rather than
/// when `triage run` starts. `triage config --check` calls it.
pub fn check_client_configs(k: &KafkaConfig) -> Result<()> {
    consumer_config(k, &k.group_id, None)
        .create_native_config()
        .map_err(|e| kafka_err("the consumer's settings", e))?;
    let transactional = (k.delivery == Delivery::ExactlyOnce).then_some("triage-check");
    producer_config(k, transactional)
        .create_native_config()
        .map_err(|e| kafka_err("the producer's settings", e))?;
    Ok(())
}

pub(crate) fn make_consumer(
    k: &KafkaConfig,
    group: &str,
    instance_id: Option<&str>,
) -> Result<Arc<Consumer_>> {
    let consumer: Consumer_ = consumer_config(k, group, instance_id)
        .create_with_context(Ctx::default())
        .map_err(|e| kafka_err("creating the consumer", e))?;
    Ok(Arc::new(consumer))
}

fn consumer_config(k: &KafkaConfig, group: &str, instance_id: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set_log_level(log_level(k, &k.consumer_properties));
    if let Some(id) = instance_id {
        c.set("group.instance.id", id);
    }
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", k.commit_interval_ms.to_string())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A new group starts at the beginning: nothing published before it is skipped.
        .set("auto.offset.reset", "earliest")
        // A dead member's partitions wait for its session to expire, and tansu takes about half
        // of it for every join: librdkafka's 45 s made a restart wait 83 s. 10 s (Kafka's own
        // default before 3.0) with static membership gives them back in seconds; a member that
        // stalls for longer than this is expelled (docs/kafka.md, "Restarts").
        .set("session.timeout.ms", DEFAULT_SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", DEFAULT_HEARTBEAT_INTERVAL_MS)
        .set("partition.assignment.strategy", DEFAULT_ASSIGNMENT_STRATEGY);
    for (key, v) in k.properties.iter().chain(&k.consumer_properties) {
        c.set(key, v);
    }
    // Managed settings win over pass-through ones (validate() refuses most clashes).
    c.set("enable.auto.offset.store", "false");
    if k.delivery == Delivery::ExactlyOnce {
        // Offsets are committed by the producer's transaction only; transactional input is read
        // as its readers must read triage's output.
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
    }
    c
}

/// The producer; transactional (`transactional.id`) when `transactional_id` is given.
pub(crate) fn make_producer(
    k: &KafkaConfig,
    transactional_id: Option<&str>,
) -> Result<FutureProducer> {
    producer_config(k, transactional_id)
        .create()
        .map_err(|e| kafka_err("creating the producer", e))
}

fn producer_config(k: &KafkaConfig, transactional_id: Option<&str>) -> ClientConfig {
    let mut c = client_config(k, &BTreeMap::new());
    c.set_log_level(log_level(k, &k.producer_properties));
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (key, v) in &k.producer_properties {
        c.set(key, v);
    }
    if let Some(id) = transactional_id {
        c.set("transactional.id", id);
    }
    c
}
