//! The service configuration: one TOML file plus `TRIAGE__SECTION__KEY` environment overrides,
//! validated at start. Every section rejects unknown keys, so a typo is an error, not a silent
//! default. One module per section; the crate that acts on a section validates its values.

pub mod kafka;
pub mod metrics;
pub mod models;
pub mod output;
pub mod router;
pub mod slm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use kafka::KafkaConfig;
pub use metrics::MetricsConfig;
pub use models::{Device, ModelsConfig};
pub use output::OutputConfig;
pub use router::{BudgetConfig, Combine, PolicyConfig};
pub use slm::{Admission, ExecutorConfig, FaultConfig, GenerateConfig, SlmConfig, SlmMode};

use crate::error::CoreError;
pub use crate::message::InputConfig;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The fast classifier.
    pub model: ModelConfig,
    /// How input payloads are read.
    pub input: InputConfig,
    /// What each decision record holds.
    pub output: OutputConfig,
    /// The routing policy: thresholds and generative labels.
    pub router: PolicyConfig,
    /// The SLM budget.
    pub budget: BudgetConfig,
    /// Logging.
    pub log: LogConfig,
    /// Kafka (for `triage run`).
    pub kafka: KafkaConfig,
    /// The metrics and health endpoint.
    pub metrics: MetricsConfig,
    /// The small language models: second opinion and drafted replies.
    pub slm: SlmConfig,
}

/// Which fast model to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A model file from `triage train`; unset means the default model built into the binary
    /// (4 sentiment categories, trained on GoEmotions).
    pub path: Option<PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `triage=debug` (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The files this configuration names, which a command reads: the fast model, the deferral
    /// model, the second opinion's head, and the files of the model directories it sets
    /// (`[slm] finetuned`, `[slm.models] encoder_dir`, `generator_dir`), each with its key. A
    /// command checks its outputs against them as against its options
    /// ([`crate::paths::refuse_overwriting`]): `replay --output` naming the `[model] path` had
    /// replaced the model with decisions.
    pub fn named_files(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = [
            ("[model] path", &self.model.path),
            ("[router] deferral", &self.router.deferral),
            ("[slm] head", &self.slm.head),
            ("[slm.models] runtime_path", &self.slm.models.runtime_path),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key.to_owned(), path.clone()?)))
        .collect();
        for (key, dir) in [
            ("[slm] finetuned", &self.slm.finetuned),
            ("[slm.models] encoder_dir", &self.slm.models.encoder_dir),
            ("[slm.models] generator_dir", &self.slm.models.generator_dir),
        ] {
            let Some(entries) = dir.as_deref().and_then(|d| std::fs::read_dir(d).ok()) else {
                continue;
            };
            files.extend(entries.flatten().map(|e| (key.to_owned(), e.path())));
        }
        files
    }

    /// Defaults, then the TOML file (if any), then `TRIAGE__…` environment variables
    /// (`TRIAGE__KAFKA__BROKERS=host:9092` sets `kafka.brokers`).
    pub fn load(file: Option<&Path>) -> Result<Self, CoreError> {
        Self::figment(file, true)
    }

    /// Defaults, then the TOML file (if any), without the environment: what a file written from
    /// this one should hold (`triage calibrate --out`), so that a secret given as a variable is
    /// never written to disk.
    pub fn load_file(file: Option<&Path>) -> Result<Self, CoreError> {
        Self::figment(file, false)
    }

    fn figment(file: Option<&Path>, env: bool) -> Result<Self, CoreError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(CoreError::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        if env {
            fig = fig
                .merge(
                    Env::prefixed("TRIAGE__")
                        .filter(|key| property_var(key.as_str()).is_none())
                        .split("__"),
                )
                .merge(Serialized::defaults(kafka_properties_from_env(
                    std::env::vars(),
                )));
        }
        fig.extract().map_err(|e| CoreError::Config(describe(e)))
    }

    /// The configuration as TOML, with secrets redacted (for `triage config`).
    pub fn redacted_toml(&self) -> Result<String, CoreError> {
        let mut c = self.clone();
        c.kafka = c.kafka.redacted();
        toml::to_string(&c).map_err(|e| CoreError::Config(e.to_string()))
    }
}

/// The librdkafka property maps of `[kafka]`, which environment variables reach by their own rule.
const PROPERTY_MAPS: [&str; 3] = ["properties", "consumer_properties", "producer_properties"];

/// `KAFKA__PROPERTIES__SASL_PASSWORD` (a variable's name after `TRIAGE__`): the map and the
/// librdkafka property it sets. figment splits keys at dots, so `sasl.password` could not be
/// named the usual way; here the property's name is taken whole, and one without a dot is read as
/// librdkafka spells it, lower case with dots (`SASL_PASSWORD` is `sasl.password`, as in
/// Confluent's images).
fn property_var(key: &str) -> Option<(&'static str, String)> {
    let (section, rest) = key.split_once("__")?;
    let (map, name) = rest.split_once("__")?;
    if !section.eq_ignore_ascii_case("kafka") || name.is_empty() {
        return None;
    }
    let map = PROPERTY_MAPS
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(map))?;
    let name = if name.contains('.') {
        name.to_owned()
    } else {
        name.to_ascii_lowercase().replace('_', ".")
    };
    Some((map, name))
}

/// `{"kafka": {"properties": {...}, ...}}` from the `TRIAGE__KAFKA__<MAP>__<NAME>` variables.
fn kafka_properties_from_env(
    vars: impl Iterator<Item = (String, String)>,
) -> BTreeMap<&'static str, BTreeMap<&'static str, BTreeMap<String, String>>> {
    let mut maps: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    for (var, value) in vars {
        let Some(key) = var.strip_prefix("TRIAGE__") else {
            continue;
        };
        if let Some((map, name)) = property_var(key) {
            maps.entry(map).or_default().insert(name, value);
        }
    }
    let mut out = BTreeMap::new();
    if !maps.is_empty() {
        out.insert("kafka", maps);
    }
    out
}

/// figment's errors, each with its key as the file spells it (`router.foo`: figment's own
/// message says `default.router.foo`, after its profile, which triage does not use) and where it
/// came from.
fn describe(err: figment::Error) -> String {
    use figment::error::Kind;
    err.into_iter()
        .map(|e| {
            let mut line = match &e.kind {
                // figment's wording quotes serde's list in a second pair of backticks
                // ("expected `one of `a`, `b``"); and a near miss is worth naming.
                Kind::UnknownField(found, expected) | Kind::UnknownVariant(found, expected) => {
                    let what = if matches!(e.kind, Kind::UnknownField(..)) {
                        "unknown key"
                    } else {
                        "unknown value"
                    };
                    let near = expected
                        .iter()
                        .map(|k| (strsim::jaro_winkler(found, k), k))
                        .filter(|(score, _)| *score > 0.85)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
                    format!(
                        "{what} `{found}`{near}; expected one of {}",
                        list.join(", ")
                    )
                }
                kind => kind.to_string(),
            };
            if !e.path.is_empty() {
                line.push_str(&format!(" for key `{}`", e.path.join(".")));
            }
            if let Some(md) = &e.metadata {
                match &md.source {
                    Some(source) => line.push_str(&format!(" in {source} {}", md.name)),
                    // The environment: the variable itself, not "`TRIAGE__` environment
                    // variable(s)".
                    None if md.name.contains("environment") && !e.path.is_empty() => {
                        line.push_str(&format!(
                            " in the environment variable TRIAGE__{}",
                            e.path.join("__").to_uppercase()
                        ))
                    }
                    None => line.push_str(&format!(" in {}", md.name)),
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown key is named with the keys that are known (once quoted, not twice), and the
    /// nearest where one is near.
    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn unknown_keys_are_named_with_a_near_miss() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[router]\ndefault_threshhold = 0.5\n")?;
            let err = Config::load(Some(Path::new("t.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "unknown key `default_threshhold` (did you mean `default_threshold`?); \
                     expected one of `default_threshold`, `thresholds`,"
                ),
                "{err}"
            );
            assert!(!err.contains("`one of"), "{err}");
            // (An environment variable is named by tests/tests/usage.rs: one set here would
            // reach the other tests of this process.)
            Ok(())
        });
    }

    /// A librdkafka property from the environment: its name has dots, which figment splits
    /// into tables ("found map, expected a string" for `sasl.password`). The name is taken
    /// whole, or in upper case with `_` for its dots; the other variables work as before.
    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn kafka_properties_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "[kafka.properties]
\"client.id\" = \"file\"\n",
            )?;
            jail.set_env("TRIAGE__KAFKA__PROPERTIES__sasl.password", "s3cret");
            jail.set_env("TRIAGE__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "7000");
            jail.set_env("TRIAGE__KAFKA__PRODUCER_PROPERTIES__LINGER_MS", "20");
            jail.set_env("TRIAGE__KAFKA__BROKERS", "env:9092");
            let c = Config::load(Some(Path::new("t.toml"))).expect("valid");
            let p = &c.kafka.properties;
            assert_eq!(p["sasl.password"], "s3cret");
            assert_eq!(p["session.timeout.ms"], "7000");
            assert_eq!(p["client.id"], "file");
            assert_eq!(c.kafka.producer_properties["linger.ms"], "20");
            assert_eq!(c.kafka.brokers, "env:9092");
            // Not from the environment where the file alone is asked for.
            let f = Config::load_file(Some(Path::new("t.toml"))).expect("valid");
            assert!(!f.kafka.properties.contains_key("sasl.password"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn file_then_env_and_unknown_keys_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "[router]\ndefault_threshold = 0.7\n[input]\ntext_field = \"body\"\n",
            )?;
            jail.set_env("TRIAGE__BUDGET__MAX_SHARE", "0.05");
            let c = Config::load(Some(Path::new("t.toml"))).expect("valid");
            assert_eq!(c.router.default_threshold, 0.7);
            assert_eq!(c.input.text_field, "body");
            assert_eq!(c.budget.max_share, 0.05);

            jail.create_file("bad.toml", "[router]\ndefault_treshold = 0.7\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.to_string().contains("default_treshold"), "{err}");
            // The key as the file spells it, without figment's profile.
            assert!(
                err.to_string()
                    .contains("for key `router.default_treshold` in "),
                "{err}"
            );
            assert!(!err.to_string().contains("default.router"), "{err}");
            Ok(())
        });
    }

    /// examples/triage.toml documents every `[slm.executor]` key with its default.
    #[test]
    fn the_example_lists_the_executor_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/triage.toml");
        let c = Config::load(Some(&example)).expect("the example parses");
        assert_eq!(c.slm.executor, ExecutorConfig::default());
        let text = std::fs::read_to_string(&example).unwrap();
        let section = &text[text.find("[slm.executor]").expect("section")..];
        let section = &section[..section[1..].find("\n[").map_or(section.len(), |i| i + 1)];
        let toml::Value::Table(keys) = toml::Value::try_from(ExecutorConfig::default()).unwrap()
        else {
            panic!("a table")
        };
        for key in keys.keys() {
            assert!(
                section.contains(&format!("\n{key} = ")),
                "examples/triage.toml does not list [slm.executor] {key}"
            );
        }
    }
}
