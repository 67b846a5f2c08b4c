//! `triage slm …`: the second-opinion models.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;
use triage_classifier::read_jsonl;
use triage_core::config::Config;
use triage_core::paths::refuse_overwriting;
use triage_eval::finetune::{FinetuneRequest, finetune as finetune_model};
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
    /// Fine-tune the sentence encoder end to end on labelled data: an int8 ONNX second opinion
    /// for `[slm] finetuned` (PyTorch in a hash-checked venv made on first use; a GPU when one
    /// is present).
    Finetune(FinetuneArgs),
    /// Label unlabelled messages with the second opinion (JSONL with "text", "label",
    /// "confidence", "probabilities"), for `triage train --distill`.
    Label(LabelArgs),
}

#[derive(clap::Args, Debug)]
pub struct LabelArgs {
    /// Messages to label (JSONL with "text"; other lines are skipped and counted).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the labelled rows.
    #[arg(long)]
    output: PathBuf,
    /// Service configuration (its `[slm]` second opinion and `[model]`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Fast model whose labels to use (overrides the configuration).
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    second: super::SecondOpinionArgs,
}

#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    /// Labelled training data (JSONL with "text" and "label").
    #[arg(long)]
    data: PathBuf,
    /// Labelled dev data: the best epoch is chosen on it [default: a stratified 10% of --data].
    #[arg(long)]
    dev: Option<PathBuf>,
    /// The model directory to write. It is replaced whole, so it must be new, empty, or an
    /// earlier fine-tuned model (its manifest's files and nothing else): a directory holding the
    /// data, other files, or the working directory is refused before training.
    #[arg(long)]
    out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 1)]
    epochs: u32,
    /// Train on at most this many messages (a seeded shuffle of --data).
    #[arg(long)]
    max_train: Option<usize>,
    /// Random seed (shuffling, initialisation, dropout).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Longest input in tokens (longer messages are truncated, in training and in serving).
    #[arg(long, default_value_t = 64)]
    max_seq_len: usize,
    /// Keep only the encoder's first N transformer layers (of all-MiniLM-L6-v2's 6): a smaller,
    /// faster second opinion, at some accuracy [default: all 6].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=6))]
    layers: Option<u8>,
    /// Quantisation-aware steps after training, as a share of an epoch (0: none): the forward
    /// pass sees the int8 model ONNX Runtime will serve, so that the two agree (the parity gate)
    /// [default: 0.25].
    #[arg(long, value_parser = qat_fraction)]
    qat_fraction: Option<f64>,
    /// Threads (0: every CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Least top-label agreement of the served model with PyTorch on held-back dev messages;
    /// below it the command exits with code 3 (the model is kept, to inspect).
    #[arg(long, default_value_t = 0.99)]
    min_parity: f64,
    /// Held-back dev messages for the parity check.
    #[arg(long, default_value_t = 1000)]
    holdout: usize,
    /// Labelled test data: its accuracy goes into the model card (never used to choose).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Service configuration (for `[slm.models]`: the cache and ONNX Runtime).
    #[arg(long)]
    config: Option<PathBuf>,
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
        Command::Finetune(a) => finetune(a),
        Command::Label(a) => label(a),
    }
}

fn label(a: LabelArgs) -> CmdResult {
    refuse_overwriting(
        &[
            ("--input", Some(&a.input)),
            ("--config", a.config.as_deref()),
            ("--model", a.model.as_deref()),
            ("--head", a.second.head.as_deref()),
        ],
        &[("--output", Some(&a.output))],
    )?;
    let config = Config::load(a.config.as_deref())?;
    super::refuse_overwriting_configured(
        &a.second.applied(&config),
        &[("--output", Some(&a.output))],
    )?;
    let model = super::load_model(a.model.as_deref(), &config)?;
    let second = a.second.load(&config, &model)?;
    let t0 = std::time::Instant::now();
    let done = triage_eval::distill::label(
        &second,
        model.labels(),
        &a.input,
        &a.output,
        &mut Bars::default(),
    )?;
    eprintln!(
        "labelled {} messages with the {} second opinion in {:.1} s ({} line{} without a text skipped); wrote {}",
        done.rows,
        second.mapped.model.kind(),
        t0.elapsed().as_secs_f64(),
        done.skipped,
        if done.skipped == 1 { "" } else { "s" },
        a.output.display()
    );
    Ok(())
}

fn qat_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=10.0).contains(&f) => Ok(f),
        _ => Err(format!("'{s}' is not a share of an epoch between 0 and 10")),
    }
}

fn finetune(a: FinetuneArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let models = super::models(&config)?;
    let req = FinetuneRequest {
        data: a.data,
        dev: a.dev,
        out: a.out,
        epochs: a.epochs,
        max_train: a.max_train,
        seed: a.seed,
        max_seq_len: a.max_seq_len,
        layers: a.layers.map(usize::from),
        qat_fraction: a.qat_fraction,
        threads: a.threads,
        min_parity: a.min_parity,
        holdout: a.holdout,
        test: a.test,
    };
    let t0 = std::time::Instant::now();
    let out = finetune_model(&req, &models, &mut Bars::default())?;
    let s = &out.summary;
    eprintln!(
        "fine-tuned in {:.0} s (training {:.0} s): dev accuracy {:.2}% int8 ({:.2}% in PyTorch); wrote {}",
        t0.elapsed().as_secs_f64(),
        s["training_seconds"].as_f64().unwrap_or(0.0),
        100.0 * s["dev_accuracy_int8"].as_f64().unwrap_or(0.0),
        100.0 * s["dev_accuracy_fp32"].as_f64().unwrap_or(0.0),
        out.out.display()
    );
    let p = &out.parity;
    eprintln!(
        "parity as served (ONNX Runtime, one message at a time) against PyTorch on {} held-back \
         messages: {:.2}% same top label, largest probability difference {:.3}",
        p.n,
        100.0 * p.agreement,
        p.max_probability_diff
    );
    if p.agreement < a.min_parity {
        return Err(Failure::Gate(format!(
            "parity {:.4} < --min-parity {} (the model is kept in {})",
            p.agreement,
            a.min_parity,
            out.out.display()
        )));
    }
    eprintln!("use it with [slm] finetuned = \"{}\"", out.out.display());
    Ok(())
}

fn train(a: TrainHeadArgs) -> CmdResult {
    refuse_overwriting(
        &[("--data", Some(&a.data)), ("--config", a.config.as_deref())],
        &[("--out", Some(&a.out))],
    )?;
    let config = Config::load(a.config.as_deref())?;
    super::refuse_overwriting_configured_but(&config, &[("--out", Some(&a.out))], &["[slm] head"])?;
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
    refuse_overwriting(
        &[
            ("--descriptions", Some(&a.descriptions)),
            ("--config", a.config.as_deref()),
        ],
        &[("--out", Some(&a.out))],
    )?;
    let config = Config::load(a.config.as_deref())?;
    super::refuse_overwriting_configured_but(&config, &[("--out", Some(&a.out))], &["[slm] head"])?;
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
