//! `triage run`: the Kafka service.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use triage_core::config::Config;
use triage_service::Processor;
use triage_service::kafka::RunOptions;
use triage_service::metrics::Health;

use crate::exit::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service configuration (TOML); `TRIAGE__SECTION__KEY` environment variables override it,
    /// e.g. `TRIAGE__KAFKA__BROKERS=kafka:9092`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Re-classify the input topics from the beginning, with a consumer group of its own.
    #[arg(long, conflicts_with = "from_timestamp")]
    from_beginning: bool,
    /// Re-classify from this time (RFC 3339, e.g. 2026-11-27T10:00:00Z, or Unix milliseconds),
    /// with a consumer group of its own.
    #[arg(long)]
    from_timestamp: Option<String>,
    /// Consumer group id (overrides the configuration and the replay group). With
    /// --from-beginning it must be a group with no committed offsets on the topics (they would
    /// win over the beginning), and not the service's own.
    #[arg(long)]
    group: Option<String>,
    /// Exit cleanly once no message has arrived for this many seconds (for replays). A run that
    /// gets no partition in this time (and at least 30 s, for the group join) stops too: exit 1
    /// naming the consumer's last error (a topic that does not exist, brokers out of reach), or
    /// 0 with a warning where there was none (the group's other members hold every partition).
    #[arg(long)]
    exit_when_idle: Option<f64>,
}

fn parse_timestamp(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        anyhow!("--from-timestamp {s:?}: {e}; expected Unix milliseconds or RFC 3339 (2026-11-27T10:00:00Z)")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow!("--from-timestamp {s:?} is before 1970"))?
        .as_millis();
    Ok(ms as i64)
}

/// What the service checks and loads before it connects: logging, the Kafka properties, the
/// model, and the processor (policy, budget, deferral model, output, SLM). `triage config
/// --check` runs it too.
pub fn prepare(config: &Config) -> Result<Processor, Failure> {
    crate::logging::init(config);
    config
        .kafka
        .validate()
        .map_err(|e| Failure::usage(anyhow!("configuration: {e}")))?;
    let model = Arc::new(super::load_model(None, config)?);
    tracing::info!(model = model.version(), labels = ?model.labels(), "model loaded");
    Ok(Processor::from_config(model, config, &super::root()?)?)
}

pub fn run(a: Args) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    // The arguments first: a bad one is said before the models load and the metrics listen.
    let from_timestamp = a
        .from_timestamp
        .as_deref()
        .map(parse_timestamp)
        .transpose()
        .map_err(Failure::usage)?;
    let processor = Arc::new(prepare(&config)?);
    let opts = RunOptions {
        from_beginning: a.from_beginning,
        from_timestamp,
        group_id: a.group.clone(),
        exit_when_idle: a.exit_when_idle.map(std::time::Duration::from_secs_f64),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::external(anyhow!("starting the async runtime: {e}")))?;
    let summary = runtime.block_on(async {
        let health = Arc::new(Health::default());
        if config.metrics.enabled {
            let handle = triage_service::metrics::install_recorder()?;
            triage_service::metrics::serve(&config.metrics, handle, Arc::clone(&health)).await?;
        }
        triage_service::kafka::run(
            processor,
            config.kafka.clone(),
            config.input.clone(),
            opts,
            health,
        )
        .await
    })?;
    eprintln!(
        "{}",
        serde_json::to_string(&summary).map_err(Failure::external)?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_timestamps() {
        assert_eq!(
            super::parse_timestamp("1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(super::parse_timestamp("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            super::parse_timestamp("2026-11-27T10:00:00Z").unwrap(),
            1_795_773_600_000
        );
        assert!(super::parse_timestamp("yesterday").is_err());
    }
}
