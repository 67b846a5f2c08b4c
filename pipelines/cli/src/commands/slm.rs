//! `triage slm …`: the second-opinion models.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;
use triage_classifier::read_jsonl;
use triage_core::config::Config;
use triage_eval::head::train_head;
use triage_models::{Encoder, Head, TrainOptions};

use crate::exit::{CmdResult, Failure};
use crate::progress::Bars;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the second-opinion head: logistic regression on sentence embeddings of labelled
    /// data (the same data as the fast model).
    TrainHead(TrainHeadArgs),
    /// Build a zero-shot head from label descriptions, for labels without training data.
    ZeroShot(ZeroShotArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainHeadArgs {
    /// Labelled training data (JSONL with "text" and "label").
    #[arg(long)]
    data: PathBuf,
    /// Where to write the head (JSON).
    #[arg(long)]
    out: PathBuf,
    /// L2 strength.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// L-BFGS iterations at most.
    #[arg(long, default_value_t = 200)]
    max_iterations: u64,
    /// Service configuration (for `[slm.models]`: where the runtime and models are).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ZeroShotArgs {
    /// TOML table `label = "description"`.
    #[arg(long)]
    descriptions: PathBuf,
    /// Where to write the head (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Softmax temperature on cosine similarities.
    #[arg(long, default_value_t = 0.05)]
    temperature: f32,
    /// Service configuration (for `[slm.models]`).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cmd: Command) -> CmdResult {
    match cmd {
        Command::TrainHead(a) => train(a),
        Command::ZeroShot(a) => zero_shot(a),
    }
}

fn train(a: TrainHeadArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let models = super::models(&config)?;
    let data = read_jsonl(&a.data)?;
    let encoder = Encoder::from_config(&models)?;
    let options = TrainOptions {
        alpha: a.alpha,
        max_iterations: a.max_iterations,
    };
    let t = train_head(
        &encoder,
        &data,
        &models.cache_dir(),
        &options,
        &mut Bars::default(),
    )?;
    eprintln!(
        "embedded {} messages in {:.1}s",
        data.len(),
        t.embed_seconds
    );
    t.head.save(&a.out)?;
    eprintln!(
        "trained a {}-label head in {:.1}s (training accuracy {:.2}%); wrote {}",
        t.head.labels().len(),
        t.train_seconds,
        100.0 * t.train_accuracy,
        a.out.display()
    );
    Ok(())
}

fn zero_shot(a: ZeroShotArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let text = std::fs::read_to_string(&a.descriptions)
        .map_err(|e| Failure::external(anyhow!("reading {}: {e}", a.descriptions.display())))?;
    let table: std::collections::BTreeMap<String, String> = toml::from_str(&text)
        .map_err(|e| Failure::usage(anyhow!("{}: {e}", a.descriptions.display())))?;
    let pairs: Vec<(&str, &str)> = table
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encoder = Encoder::from_config(&super::models(&config)?)?;
    let head = Head::zero_shot_from_descriptions(&encoder, &pairs, a.temperature)?;
    head.save(&a.out)?;
    eprintln!(
        "wrote a zero-shot head for {} labels to {}",
        pairs.len(),
        a.out.display()
    );
    Ok(())
}
