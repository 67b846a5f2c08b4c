//! One module per subcommand: its arguments, and the library calls that do the work.

pub mod bench;
pub mod calibrate;
pub mod classify;
pub mod config;
pub mod eval;
pub mod replay;
pub mod run;
pub mod slm;
pub mod train;
pub mod tune;

use std::path::PathBuf;

use triage_classifier::Model;
use triage_core::config::Config;
use triage_eval::score::SecondOpinion;

/// The directory relative paths in a configuration are resolved against: the current one.
pub fn root() -> Result<PathBuf, crate::exit::Failure> {
    std::env::current_dir()
        .map_err(|e| crate::exit::Failure::external(anyhow::anyhow!("current directory: {e}")))
}

/// Refuses outputs that name a file the configuration names (`[model] path`, `[slm] head`, ...),
/// as [`triage_core::paths::refuse_overwriting`] does for a command's own options: `replay
/// --output` naming the configured model had replaced it with decisions.
pub fn refuse_overwriting_configured(
    config: &Config,
    outputs: &[(&str, Option<&std::path::Path>)],
) -> Result<(), crate::exit::Failure> {
    refuse_overwriting_configured_but(config, outputs, &[])
}

/// As [`refuse_overwriting_configured`], but for the keys in `except`: the file a command makes
/// anew (`slm train-head --out` may replace the `[slm] head` it does not read).
pub fn refuse_overwriting_configured_but(
    config: &Config,
    outputs: &[(&str, Option<&std::path::Path>)],
    except: &[&str],
) -> Result<(), crate::exit::Failure> {
    let named = config.named_files();
    let inputs: Vec<(&str, Option<&std::path::Path>)> = named
        .iter()
        .filter(|(key, _)| !except.contains(&key.as_str()))
        .map(|(key, path)| (key.as_str(), Some(path.as_path())))
        .collect();
    Ok(triage_core::paths::refuse_overwriting(&inputs, outputs)?)
}

/// A `clap` value parser for a share, a score or a margin: a finite number in 0..=1 (`NaN` had
/// turned `eval --min-accuracy` off, and `50`, meant as per cent, failed as a quality gate).
pub fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number between 0 and 1")),
    }
}

/// Writes `bytes` to `path` whole or not at all ([`triage_core::paths::write_file`]).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), crate::exit::Failure> {
    triage_core::paths::write_file(path, |w| w.write_all(bytes)).map_err(|e| {
        crate::exit::Failure::external(anyhow::anyhow!("writing {}: {e}", path.display()))
    })
}

/// The fast model: `--model`'s (`flag`), else the configuration's `[model] path`, else the
/// built-in one. A named file that does not exist is a usage or configuration error (exit 2),
/// said with where the name came from; a file that exists but does not load stays a runtime one.
pub fn load_model(
    flag: Option<&std::path::Path>,
    config: &Config,
) -> Result<Model, crate::exit::Failure> {
    let (path, key) = match (flag, config.model.path.as_deref()) {
        (Some(p), _) => (Some(p), "--model"),
        (None, Some(p)) => (Some(p), "configuration: [model] path"),
        (None, None) => (None, ""),
    };
    if let Some(p) = path
        && !p.exists()
    {
        return Err(crate::exit::Failure::usage(anyhow::anyhow!(
            "{key} {} does not exist{} (`triage train` makes one)",
            p.display(),
            if p.is_relative() {
                format!(" (relative to {})", root()?.display())
            } else {
                String::new()
            }
        )));
    }
    Ok(Model::load_or_default(path)?)
}

/// The models' settings of a configuration, resolved.
pub fn models(config: &Config) -> Result<triage_core::config::ModelsConfig, crate::exit::Failure> {
    Ok(config.slm.models.resolved(&root()?))
}

/// How the fast model holds its weights for scoring (`--weights`), for bench and eval.
#[derive(clap::Args, Debug)]
pub struct WeightsArgs {
    /// How the fast model holds its weights: `auto` (f32 below 16 labels, int8 from 16, 4-bit
    /// from 128), `f32`, `int8` or `int4`. The model file is the same; only scoring changes.
    #[arg(long, value_enum, default_value_t = Weights::Auto)]
    pub weights: Weights,
}

/// `--weights`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// By label count: f32 below 16 labels, int8 from 16, 4-bit from 128.
    Auto,
    /// Exact f32 weights.
    F32,
    /// int8 weights with a per-row scale.
    Int8,
    /// 4-bit weights with a per-row scale and minimum.
    Int4,
}

impl WeightsArgs {
    /// Sets `model`'s weight format as asked.
    pub fn apply(&self, model: &mut Model) {
        use triage_classifier::WeightFormat;
        let format = match self.weights {
            Weights::Auto => WeightFormat::for_labels(model.labels().len()),
            Weights::F32 => WeightFormat::F32,
            Weights::Int8 => WeightFormat::Int8,
            Weights::Int4 => WeightFormat::Int4,
        };
        if model.weight_format() != format {
            model.set_weight_format(format);
        }
    }
}

/// The second opinion's overrides that the offline commands share.
#[derive(clap::Args, Debug)]
pub struct SecondOpinionArgs {
    /// Fine-tuned second opinion (a `triage slm finetune` directory; overrides the
    /// configuration).
    #[arg(long)]
    pub finetuned: Option<PathBuf>,
    /// Frozen second opinion's head (overrides the configuration).
    #[arg(long, conflicts_with = "finetuned")]
    pub head: Option<PathBuf>,
}

impl SecondOpinionArgs {
    /// `config` with these overrides, to check outputs against the files they name.
    pub fn applied(&self, config: &Config) -> Config {
        let mut c = config.clone();
        if self.finetuned.is_some() || self.head.is_some() {
            c.slm.finetuned = self.finetuned.clone();
            c.slm.head = self.head.clone();
        }
        c
    }

    /// The second opinion of `config` for `model`, with these overrides.
    pub fn load(
        &self,
        config: &Config,
        model: &Model,
    ) -> Result<SecondOpinion, crate::exit::Failure> {
        Ok(SecondOpinion::load(
            config,
            &root()?,
            self.finetuned.as_deref(),
            self.head.as_deref(),
            model,
        )?)
    }
}
