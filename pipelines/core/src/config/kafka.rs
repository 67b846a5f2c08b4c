//! Kafka settings. Any librdkafka property passes through `properties`; secrets never reach a
//! log line or a config dump.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group id. Instances with the same group share the input partitions.
    pub group_id: String,
    /// Topics to consume. An entry that starts with `^` is a regular expression (librdkafka's
    /// pattern subscription): topics that match are joined as they appear, at the next metadata
    /// refresh (`topic.metadata.refresh.interval.ms`, 5 min by default: set it lower in
    /// `[kafka.properties]` for fast-rotating topics).
    pub input_topics: Vec<String>,
    /// Where decisions are published.
    pub output_topic: String,
    /// Where malformed input goes, with the original bytes and headers and the reason.
    pub dead_letter_topic: String,
    /// Messages received but not yet acknowledged by the output, per partition. Above this the
    /// partition is paused (polling goes on); it resumes below half.
    pub max_in_flight_per_partition: usize,
    /// How often stored offsets are committed, in milliseconds.
    pub commit_interval_ms: u64,
    /// On SIGTERM/SIGINT: how long to drain in-flight work before giving up, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// How often consumer lag is sampled for metrics, in milliseconds.
    pub lag_interval_ms: u64,
    /// Threads that decode and classify consumed messages. `1` (the default): the loop's own
    /// thread, one message at a time. `N > 1`: the messages already waiting in the consumer's
    /// queue (up to 256) are taken together, decoded and classified on N threads (the loop's
    /// own and N − 1 workers), then routed and published in the order they were consumed, so
    /// the output of a partition keeps its input order. For one instance that has more cores
    /// than the loop can use; several instances in one consumer group are the other way to
    /// scale. At least once only.
    pub classify_threads: usize,
    /// Static group membership (`group.instance.id`, KIP-345): a member that restarts with the
    /// same id within the session timeout gets its partitions back at once, without a
    /// rebalance. `"auto"` (the default): `<group>.<TRIAGE_INSTANCE_ID>` when that environment
    /// variable is set, else `<group>.<hostname>.<slot>`, where the slot is the lowest number
    /// whose lock file (in the temp directory) this process could take: stable across restarts
    /// of one instance, different for two processes on one host. `""` or `"none"`: dynamic
    /// membership. Anything else: that id, verbatim (it must differ per instance, or they fence
    /// each other). docs/kafka.md has the trade-offs.
    pub group_instance_id: String,
    /// `/health` turns unhealthy while a delivery has been failing and retried for this long,
    /// in milliseconds; healthy again once the retries succeed.
    pub retry_unhealthy_ms: u64,
    /// The delivery guarantee. `at_least_once` (the default): an offset is committed after its
    /// output is acknowledged; a crash re-publishes what was published since the last commit.
    /// `exactly_once`: Kafka transactions; the outputs of a batch of inputs and the inputs'
    /// offsets are committed together, and readers of the output must use
    /// `isolation.level=read_committed`. docs/kafka.md, "Exactly-once".
    pub delivery: Delivery,
    /// `exactly_once` only: how long one transaction takes in messages before it is committed,
    /// in milliseconds. Outputs become visible to `read_committed` readers when their
    /// transaction commits, so this is added to their latency; a shorter interval costs
    /// throughput (every commit waits for the messages in flight and three round trips).
    pub transaction_interval_ms: u64,
    /// `exactly_once` only: the producer's `transactional.id`, which must be stable across
    /// restarts of one instance (a restarted instance aborts what its dead predecessor left
    /// open) and differ between instances. `"auto"` (the default): the consumer's
    /// `group.instance.id` when static membership is on, else derived the same way
    /// (`<group>.<TRIAGE_INSTANCE_ID>`, or `<group>.<hostname>.<slot>`). Anything else: that id,
    /// verbatim.
    pub transactional_id: String,
    /// Extra librdkafka properties for both clients (e.g. `security.protocol`, `sasl.*`,
    /// `ssl.*`, `session.timeout.ms`).
    pub properties: BTreeMap<String, String>,
    /// Extra properties for the consumer only.
    pub consumer_properties: BTreeMap<String, String>,
    /// Extra properties for the producer only.
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "triage".into(),
            input_topics: vec!["triage.in".into()],
            output_topic: "triage.out".into(),
            dead_letter_topic: "triage.dlq".into(),
            max_in_flight_per_partition: 10_000,
            commit_interval_ms: 1000,
            shutdown_timeout_ms: 30_000,
            lag_interval_ms: 10_000,
            classify_threads: 1,
            group_instance_id: AUTO_INSTANCE_ID.into(),
            retry_unhealthy_ms: 10_000,
            delivery: Delivery::AtLeastOnce,
            transaction_interval_ms: 100,
            transactional_id: AUTO_INSTANCE_ID.into(),
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// The most `classify_threads` a configuration may ask for.
pub const MAX_CLASSIFY_THREADS: usize = 64;

/// `group_instance_id` (and `transactional_id`) for an id derived per instance.
pub const AUTO_INSTANCE_ID: &str = "auto";

/// `[kafka] delivery`: what a crash may do to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets are committed after their outputs are acknowledged: nothing is lost, and a crash
    /// publishes again what was published since the last commit.
    #[default]
    AtLeastOnce,
    /// Kafka transactions: outputs and input offsets are committed together, so a
    /// `read_committed` reader sees every input's output once.
    ExactlyOnce,
}

/// What `group_instance_id` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceId {
    /// Dynamic membership.
    Dynamic,
    /// An id derived from the environment, the host and a per-host slot.
    Auto,
    /// This id.
    Fixed(String),
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("passwd")
        || k.contains("credential")
        || k.contains("secret")
        || k.contains("sasl.jaas")
        || k.contains("token")
        || k.contains("ssl.key.pem")
        || k.contains("ssl.keystore")
        || k.ends_with(".key")
        || k.contains("private")
}

/// A copy of the properties with secret values replaced by `***`.
pub fn redact(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let v = if is_secret(k) {
                "***".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// The message for a property that librdkafka refused (`KafkaError::ClientConfig`), without
/// the property's value. rdkafka's own `Display` for that error ends with the value, which for
/// `sasl.password` and the like is a secret that would then reach stderr and the logs.
/// librdkafka's description is kept, with the value masked in it when the key holds a secret.
pub fn client_config_error(description: &str, key: &str, value: &str) -> String {
    let description = if is_secret(key) && !value.is_empty() {
        description.replace(value, "***")
    } else {
        description.to_string()
    };
    format!("client config error for property {key:?}: {description}")
}

impl KafkaConfig {
    /// Checks the settings that would otherwise fail late.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers is empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka.group_id is empty".into());
        }
        if self.input_topics.is_empty() || self.input_topics.iter().any(|t| t.is_empty()) {
            return Err("kafka.input_topics must name at least one topic".into());
        }
        if self.output_topic.is_empty() || self.dead_letter_topic.is_empty() {
            return Err("kafka.output_topic and kafka.dead_letter_topic must be set".into());
        }
        if self.input_topics.contains(&self.output_topic)
            || self.input_topics.contains(&self.dead_letter_topic)
        {
            return Err("an input topic cannot also be the output or dead-letter topic".into());
        }
        // A pattern subscription (`^...`, a regular expression) that takes in triage's own
        // output would consume its decisions and dead letters without end. librdkafka's patterns
        // are a POSIX subset (no look-around, no back-references), which the regex crate reads:
        // one it cannot read would fail the subscription at start.
        for pattern in self.input_topics.iter().filter(|t| t.starts_with('^')) {
            let re = regex::Regex::new(pattern).map_err(|e| {
                format!("kafka.input_topics: {pattern:?} is not a pattern librdkafka can use: {e}")
            })?;
            for (key, topic) in [
                ("output_topic", &self.output_topic),
                ("dead_letter_topic", &self.dead_letter_topic),
            ] {
                if re.is_match(topic) {
                    return Err(format!(
                        "kafka.input_topics: the pattern {pattern:?} matches kafka.{key} {topic:?}: \
                         triage would consume its own records without end; narrow the pattern \
                         (e.g. `^orders\\.in\\..*`)"
                    ));
                }
            }
        }
        if self.commit_interval_ms == 0 {
            return Err(
                "kafka.commit_interval_ms must be at least 1 (librdkafka's 0 turns periodic \
                 commits off: nothing would be committed until a clean shutdown)"
                    .into(),
            );
        }
        if !(1..=MAX_CLASSIFY_THREADS).contains(&self.classify_threads) {
            return Err(format!(
                "kafka.classify_threads must be 1 to {MAX_CLASSIFY_THREADS}, got {}",
                self.classify_threads
            ));
        }
        if self.classify_threads > 1 && self.delivery == Delivery::ExactlyOnce {
            return Err(
                "kafka.classify_threads > 1 is for delivery = \"at_least_once\"; exactly once \
                 takes one message at a time (a rebalance is applied between two messages of a \
                 transaction)"
                    .into(),
            );
        }
        if self.max_in_flight_per_partition == 0 {
            return Err("kafka.max_in_flight_per_partition must be > 0".into());
        }
        for (key, value) in self
            .properties
            .iter()
            .chain(&self.consumer_properties)
            .chain(&self.producer_properties)
        {
            if self.delivery == Delivery::AtLeastOnce
                && key == "enable.auto.commit"
                && value.trim().eq_ignore_ascii_case("false")
            {
                return Err(
                    "kafka property \"enable.auto.commit\" = \"false\" would commit offsets only \
                     at a clean shutdown (a crash re-reads everything since the start); set \
                     kafka.commit_interval_ms instead"
                        .into(),
                );
            }
            if matches!(
                key.as_str(),
                "enable.auto.offset.store"
                    | "auto.commit.interval.ms"
                    | "group.id"
                    | "bootstrap.servers"
                    | "group.instance.id"
                    | "transactional.id"
            ) {
                return Err(format!(
                    "kafka property {key:?} is managed by triage; use the kafka section's own \
                     settings instead"
                ));
            }
            if self.delivery == Delivery::ExactlyOnce
                && matches!(key.as_str(), "enable.auto.commit" | "isolation.level")
            {
                return Err(format!(
                    "kafka property {key:?} is managed by triage with delivery = \"exactly_once\" \
                     (offsets are committed in the transaction; input is read read_committed)"
                ));
            }
        }
        if self.delivery == Delivery::ExactlyOnce && self.transaction_interval_ms == 0 {
            return Err("kafka.transaction_interval_ms must be > 0".into());
        }
        Ok(())
    }

    /// What `group_instance_id` asks for.
    pub fn instance_id(&self) -> InstanceId {
        match self.group_instance_id.trim() {
            "" | "none" => InstanceId::Dynamic,
            AUTO_INSTANCE_ID => InstanceId::Auto,
            id => InstanceId::Fixed(id.to_string()),
        }
    }

    /// The `transactional_id` asked for: `None` for `"auto"` (or empty), else that id.
    pub fn fixed_transactional_id(&self) -> Option<&str> {
        match self.transactional_id.trim() {
            "" | AUTO_INSTANCE_ID => None,
            id => Some(id),
        }
    }

    /// The config as it may be logged: secrets redacted.
    pub fn redacted(&self) -> KafkaConfig {
        KafkaConfig {
            properties: redact(&self.properties),
            consumer_properties: redact(&self.consumer_properties),
            producer_properties: redact(&self.producer_properties),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern that takes in the output or dead-letter topic, and periodic commits turned
    /// off, are refused; a pattern that does not, and plain names, are not.
    #[test]
    fn a_subscription_never_takes_in_triages_own_records() {
        let with = |topics: &[&str]| KafkaConfig {
            input_topics: topics.iter().map(|t| t.to_string()).collect(),
            output_topic: "rx.out".into(),
            dead_letter_topic: "rx.dlq".into(),
            ..KafkaConfig::default()
        };
        let err = with(&["^rx\\..*"]).validate().unwrap_err();
        assert!(err.contains("matches kafka.output_topic"), "{err}");
        let err = with(&["in", "^.*dlq$"]).validate().unwrap_err();
        assert!(err.contains("kafka.dead_letter_topic"), "{err}");
        with(&["^rx\\.in\\..*"]).validate().unwrap();
        with(&["rx.in", "rx.other"]).validate().unwrap();
        for bad in ["^(?!in).*", "^in[2"] {
            let err = with(&[bad]).validate().unwrap_err();
            assert!(err.contains("not a pattern"), "{err}");
        }
        let mut c = with(&["rx.in"]);
        c.commit_interval_ms = 0;
        assert!(c.validate().unwrap_err().contains("commit_interval_ms"));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = KafkaConfig::default();
        c.properties
            .insert("sasl.password".into(), "hunter2".into());
        c.properties
            .insert("ssl.key.password".into(), "s3cret".into());
        c.properties.insert("sasl.username".into(), "alice".into());
        // A typo of a secret key is still a secret (librdkafka refuses it, but the config is
        // logged first).
        c.consumer_properties
            .insert("sasl.passwd".into(), "typo-pw".into());
        c.producer_properties
            .insert("sasl.oauthbearer.client.secret".into(), "xyz".into());
        let dump = format!(
            "{:?} {}",
            c.redacted(),
            toml::to_string(&c.redacted()).unwrap()
        );
        for secret in ["hunter2", "s3cret", "xyz", "typo-pw"] {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
        assert!(dump.contains("alice"));
    }

    #[test]
    fn refused_property_errors_never_show_the_value() {
        // What librdkafka says for a property this build does not support, and for an unknown
        // one: the value is not in the message (rdkafka's Display would append it).
        let m = client_config_error(
            "Configuration property \"ssl.key.password\" not supported in this build",
            "ssl.key.password",
            "s3cret-value",
        );
        assert!(
            !m.contains("s3cret-value") && m.contains("ssl.key.password"),
            "{m}"
        );
        let m = client_config_error(
            "No such configuration property: \"sasl.passwd\"",
            "sasl.passwd",
            "hunter2",
        );
        assert!(
            !m.contains("hunter2") && m.contains("No such configuration property"),
            "{m}"
        );
        // A description that quotes a secret value masks it.
        let m = client_config_error("Invalid value \"hunter2\"", "sasl.password", "hunter2");
        assert!(!m.contains("hunter2") && m.contains("***"), "{m}");
        // A non-secret value may stay: it helps to fix a typo.
        let m = client_config_error("Invalid value \"PLIAN\"", "sasl.mechanism", "PLIAN");
        assert!(m.contains("PLIAN"), "{m}");
    }

    #[test]
    fn instance_id_is_auto_by_default_and_can_be_disabled() {
        let c = KafkaConfig::default();
        assert_eq!(c.instance_id(), InstanceId::Auto);
        for off in ["", "none", " none "] {
            let c = KafkaConfig {
                group_instance_id: off.into(),
                ..Default::default()
            };
            assert_eq!(c.instance_id(), InstanceId::Dynamic, "{off:?}");
        }
        let c: KafkaConfig = toml::from_str("group_instance_id = \"triage-a\"").unwrap();
        assert_eq!(c.instance_id(), InstanceId::Fixed("triage-a".into()));
        // Set in [kafka.properties], it would bypass the per-instance default.
        let mut c = KafkaConfig::default();
        c.consumer_properties
            .insert("group.instance.id".into(), "x".into());
        assert!(c.validate().unwrap_err().contains("managed by triage"));
    }

    #[test]
    fn exactly_once_is_opt_in_and_guards_its_settings() {
        let c = KafkaConfig::default();
        assert_eq!(c.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.fixed_transactional_id(), None);
        let c: KafkaConfig = toml::from_str(
            "delivery = \"exactly_once\"\ntransaction_interval_ms = 250\ntransactional_id = \"t-1\"",
        )
        .unwrap();
        assert_eq!(c.delivery, Delivery::ExactlyOnce);
        assert_eq!(c.transaction_interval_ms, 250);
        assert_eq!(c.fixed_transactional_id(), Some("t-1"));
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<KafkaConfig>("delivery = \"exactly-once\"").is_err());
        // The producer's transactional.id is triage's in either mode.
        let mut c = KafkaConfig::default();
        c.producer_properties
            .insert("transactional.id".into(), "x".into());
        assert!(c.validate().unwrap_err().contains("managed by triage"));
        // Auto commit and the isolation level are free at least once, managed exactly once.
        let mut c = KafkaConfig::default();
        c.consumer_properties
            .insert("enable.auto.commit".into(), "true".into());
        assert!(c.validate().is_ok());
        // ...but not off, nor its interval by another name: nothing would be committed.
        c.consumer_properties
            .insert("enable.auto.commit".into(), "False".into());
        assert!(c.validate().unwrap_err().contains("clean shutdown"));
        let mut d = KafkaConfig::default();
        d.properties
            .insert("auto.commit.interval.ms".into(), "0".into());
        assert!(d.validate().unwrap_err().contains("managed by triage"));
        c.consumer_properties
            .insert("enable.auto.commit".into(), "true".into());
        c.delivery = Delivery::ExactlyOnce;
        assert!(c.validate().unwrap_err().contains("exactly_once"));
        let c = KafkaConfig {
            delivery: Delivery::ExactlyOnce,
            transaction_interval_ms: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn managed_properties_are_refused() {
        let mut c = KafkaConfig::default();
        c.properties
            .insert("enable.auto.offset.store".into(), "true".into());
        assert!(c.validate().unwrap_err().contains("managed by triage"));
        let c = KafkaConfig {
            output_topic: "triage.in".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn classify_threads_are_bounded_and_at_least_once_only() {
        let c: KafkaConfig = toml::from_str("classify_threads = 2").unwrap();
        assert_eq!(c.classify_threads, 2);
        assert!(c.validate().is_ok());
        assert_eq!(KafkaConfig::default().classify_threads, 1);
        for bad in [0, MAX_CLASSIFY_THREADS + 1] {
            let c = KafkaConfig {
                classify_threads: bad,
                ..Default::default()
            };
            assert!(c.validate().unwrap_err().contains("classify_threads"));
        }
        let c = KafkaConfig {
            classify_threads: 2,
            delivery: Delivery::ExactlyOnce,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("at_least_once"));
    }
}
