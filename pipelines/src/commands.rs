//! The subcommands. Each parses its arguments, calls the library, and prints.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::json;
use triage_classifier::{
    ClassWeight, EvalReport, Example, Model, Scratch, TrainConfig, read_jsonl, sha256_file,
};
use triage_pipelines::config::{Config, LogFormat};
use triage_pipelines::decision::{Processor, SlmStage};
use triage_pipelines::progress::{self, TrainBars};
use triage_pipelines::replay::{ReplayOptions, replay as run_replay};

use crate::Failure;

type CmdResult = Result<(), Failure>;

fn load_train_config(path: Option<&Path>) -> anyhow::Result<TrainConfig> {
    match path {
        None => Ok(TrainConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading training config {}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow!("training config {}: {e}", p.display()))
        }
    }
}

/// The processing path for a configuration: policy, budget, and the SLM stage.
fn build_processor(model: Arc<Model>, config: &Config) -> anyhow::Result<Processor> {
    let root = std::env::current_dir().context("current directory")?;
    let slm = SlmStage::load(&config.slm, &model, &config.router, &root)?;
    Ok(Processor::new(
        model,
        config.router.clone(),
        config.budget.clone(),
        slm,
    )?)
}

/// Loads a model file, or the built-in default model when `path` is `None`.
fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(p) => Ok(Model::load(p)?),
        None => Ok(triage_pipelines::default_model()?),
    }
}

fn evaluate(model: &Model, data: &[Example]) -> EvalReport {
    evaluate_detailed(model, data).0
}

/// [`evaluate`], also returning each message's confidence and whether it was labelled right.
fn evaluate_detailed(model: &Model, data: &[Example]) -> (EvalReport, Vec<f32>, Vec<bool>) {
    let labels = model.labels();
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let (mut truth, mut pred, mut conf) = (Vec::new(), Vec::new(), Vec::new());
    let pb = progress::bar(data.len() as u64, "messages");
    pb.set_message("eval");
    for ex in data {
        model.predict_into(&ex.text, &mut scratch, &mut probs);
        let (best, &c) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        // Labels unknown to the model count as errors: give them an index past the end.
        truth.push(labels.iter().position(|l| *l == ex.label));
        pred.push(best);
        conf.push(c);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let unknown = truth.iter().filter(|t| t.is_none()).count();
    let mut all_labels = labels.to_vec();
    if unknown > 0 {
        all_labels.push("<unknown label>".into());
    }
    let unk = labels.len();
    let truth: Vec<usize> = truth.into_iter().map(|t| t.unwrap_or(unk)).collect();
    let correct = truth.iter().zip(&pred).map(|(t, p)| t == p).collect();
    (
        EvalReport::new(&all_labels, &truth, &pred, &conf),
        conf,
        correct,
    )
}

// ---------------------------------------------------------------- train

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Labelled training data (JSONL with "text" and "label").
    #[arg(long)]
    data: PathBuf,
    /// Optional held-out data; its metrics are stored in the model file.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Where to write the model file.
    #[arg(long)]
    out: PathBuf,
    /// Training settings (TOML: [analyzer], [tfidf], [logistic]); defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the L2 strength (scikit-learn's 1/C).
    #[arg(long)]
    alpha: Option<f64>,
    /// Override the maximum L-BFGS iterations.
    #[arg(long)]
    max_iterations: Option<u64>,
    /// A description stored in the model file (e.g. the data source).
    #[arg(long)]
    description: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn train(a: TrainArgs) -> CmdResult {
    let mut config = load_train_config(a.config.as_deref()).map_err(Failure::Usage)?;
    if let Some(alpha) = a.alpha {
        config.logistic.alpha = alpha;
    }
    if let Some(m) = a.max_iterations {
        config.logistic.max_iterations = m;
    }
    let data = read_jsonl(&a.data)?;
    let dev = a.dev.as_deref().map(read_jsonl).transpose()?;
    let t0 = Instant::now();
    let mut bars = TrainBars::default();
    let mut model = Model::train(&data, &config, &mut bars)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    {
        let h = model.header_mut();
        h.training.data_sha256 = Some(sha256_file(&a.data)?);
        h.training.data_file = a.data.file_name().map(|f| f.to_string_lossy().into_owned());
        h.description = a.description.clone();
    }
    if let Some(dev) = &dev {
        let report = evaluate(&model, dev);
        model.header_mut().eval = Some(report);
    }
    model.save(&a.out)?;
    let h = model.header();
    let t = &h.training;
    if a.json {
        let out = json!({
            "model": a.out,
            "sha256": model.sha256(),
            "labels": h.labels,
            "n_train": t.n_train,
            "n_features": t.n_features,
            "nnz": t.nnz,
            "fit": t.fit,
            "vectorise_seconds": t.vectorise_seconds,
            "fit_seconds": t.fit_seconds,
            "train_seconds": train_seconds,
            "dev": h.eval.as_ref().map(|e| json!({"accuracy": e.accuracy, "macro_f1": e.macro_f1})),
        });
        println!("{out}");
    } else {
        eprintln!(
            "trained on {} messages, {} labels, {} + {} features (word + char), {} non-zeros",
            t.n_train,
            h.labels.len(),
            t.n_features[0],
            t.n_features[1],
            t.nnz
        );
        eprintln!(
            "L-BFGS: {} after {} iterations ({} evaluations), mean loss {:.5}",
            t.fit.termination, t.fit.iterations, t.fit.evaluations, t.fit.final_loss
        );
        if !t.fit.converged {
            eprintln!(
                "note: the optimiser did not converge; raise [logistic] max_iterations for a \
                 tighter fit"
            );
        }
        eprintln!(
            "time: {:.2}s analyse + vectorise, {:.2}s fit, {:.2}s total",
            t.vectorise_seconds, t.fit_seconds, train_seconds
        );
        if let Some(e) = &h.eval {
            eprintln!(
                "dev: accuracy {:.2}%, macro-F1 {:.4} on {} messages",
                100.0 * e.accuracy,
                e.macro_f1,
                e.n
            );
        }
        eprintln!("wrote {} (sha256 {})", a.out.display(), model.sha256());
    }
    Ok(())
}

// ---------------------------------------------------------------- eval

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled test data (JSONL with "text" and "label").
    #[arg(long)]
    data: PathBuf,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Exit with code 3 unless accuracy (0-1) is at least this.
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Exit with code 3 unless macro-F1 (0-1) is at least this.
    #[arg(long)]
    min_macro_f1: Option<f64>,
    /// Also write an HTML report with charts (report.html and SVGs) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also evaluate the cascade: fast only, second opinion only, and the cascade at the
    /// configured thresholds and budget (needs the small language models).
    #[arg(long)]
    cascade: bool,
    /// Second-opinion head for --cascade (overrides the configuration).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Service configuration (model, thresholds, budget, `[slm]`), e.g. from `triage calibrate`.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn eval(a: EvalArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let model = load_model(a.model.as_deref().or(config.model.path.as_deref()))?;
    let cascade = if a.cascade {
        Some(crate::cmd_slm::eval_cascade(
            &config,
            &model,
            a.head.as_deref(),
            &a.data,
        )?)
    } else {
        None
    };
    let data = read_jsonl(&a.data)?;
    let (report, confidences, correct) = evaluate_detailed(&model, &data);
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
        v["model_version"] = json!(model.version());
        if let Some(c) = &cascade {
            v["cascade"] = c.json.clone();
        }
        println!("{v}");
    } else {
        println!(
            "model {} ({} labels), data {}",
            model.version(),
            model.labels().len(),
            a.data.display()
        );
        print!("{}", report.to_text());
        if let Some(c) = &cascade {
            print!("{}", c.text);
        }
    }
    if let Some(dir) = &a.report {
        let input = triage_pipelines::report::ReportInput::new(
            report.clone(),
            model.version(),
            a.data.display().to_string(),
            confidences,
            correct,
        );
        let input = match &cascade {
            Some(c) => triage_pipelines::report::ReportInput {
                cascade: Some(c.rows.clone()),
                operating_point: Some(triage_pipelines::report::OperatingPoint::Threshold(
                    f64::from(config.router.default_threshold),
                )),
                ..input
            },
            None => input,
        };
        let html = triage_pipelines::report::write_report(dir, &input)?;
        // Keep stdout pure JSON under --json.
        if a.json {
            eprintln!("report: {}", html.display());
        } else {
            println!("report: {}", html.display());
        }
    }
    if let Some(min) = a.min_accuracy
        && report.accuracy < min
    {
        return Err(Failure::Gate(format!(
            "accuracy {:.4} < {min}",
            report.accuracy
        )));
    }
    if let Some(min) = a.min_macro_f1
        && report.macro_f1 < min
    {
        return Err(Failure::Gate(format!(
            "macro-F1 {:.4} < {min}",
            report.macro_f1
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- classify

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The JSON field holding the text when input lines are JSON objects.
    #[arg(long, default_value = "text")]
    text_field: String,
}

pub fn classify(a: ClassifyArgs) -> CmdResult {
    let model = load_model(a.model.as_deref())?;
    let labels = model.labels().to_vec();
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    for (i, line) in stdin.lines().enumerate() {
        let line = line.with_context(|| format!("reading stdin line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        // A JSON object with the text field, or else the whole line is the text.
        let (id, text) = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(obj)) => match obj.get(&a.text_field) {
                Some(serde_json::Value::String(t)) => (obj.get("id").cloned(), t.clone()),
                _ => {
                    return Err(Failure::Runtime(anyhow!(
                        "line {}: JSON object without a string {:?} field",
                        i + 1,
                        a.text_field
                    )));
                }
            },
            _ => (None, line.clone()),
        };
        model.predict_into(&text, &mut scratch, &mut probs);
        let p = model.prediction(&probs);
        let probabilities: BTreeMap<&str, f32> = labels
            .iter()
            .map(String::as_str)
            .zip(p.probabilities.iter().copied())
            .collect();
        let mut rec = json!({
            "label": p.label,
            "confidence": p.confidence,
            "probabilities": probabilities,
        });
        if let Some(id) = id {
            rec["id"] = id;
        }
        writeln!(out, "{rec}").context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

// ---------------------------------------------------------------- replay

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The message log: JSONL with "id" and "text" (other fields are kept). `-` for stdin.
    #[arg(long)]
    input: PathBuf,
    /// Where decisions go, one JSON object per line. `-` for stdout.
    #[arg(long)]
    output: PathBuf,
    /// Where bad lines go, with their line number and the reason [default: OUTPUT with
    /// `.dead-letter.jsonl` appended].
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Service configuration (TOML); `TRIAGE__…` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model file (overrides the configuration); the built-in default model otherwise.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print the summary as JSON on stdout (needs --output to be a file).
    #[arg(long)]
    json: bool,
}

pub fn replay(a: ReplayArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let model_path = a.model.clone().or(config.model.path.clone());
    let model = Arc::new(load_model(model_path.as_deref())?);
    let processor = build_processor(model, &config)?;
    let dead_letter = a.dead_letter.clone().unwrap_or_else(|| {
        if a.output == Path::new("-") {
            PathBuf::from("dead-letter.jsonl")
        } else {
            let mut p = a.output.clone().into_os_string();
            p.push(".dead-letter.jsonl");
            PathBuf::from(p)
        }
    });
    let opts = ReplayOptions {
        input: a.input.clone(),
        output: a.output.clone(),
        dead_letter: dead_letter.clone(),
        input_config: config.input.clone(),
    };
    let summary = run_replay(&processor, &opts)?;
    if a.json && a.output != Path::new("-") {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(anyhow::Error::from)?
        );
    } else {
        eprint!("{}", summary.to_text());
        if summary.dead_lettered > 0 {
            eprintln!("dead letters written to {}", dead_letter.display());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- tune

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Training data.
    #[arg(long)]
    data: PathBuf,
    /// A dev split to score on; without it, k-fold cross-validation on the training data.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Folds for cross-validation (without --dev).
    #[arg(long, default_value_t = 3)]
    folds: usize,
    /// Base training settings (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Alphas to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.1, 0.3, 1.0])]
    alpha: Vec<f64>,
    /// Class weights to try: none, balanced, balanced_sqrt (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["none".to_string()])]
    class_weight: Vec<String>,
    /// Choose by this metric: accuracy, macro_f1, or mean (of the two).
    #[arg(long, default_value = "mean")]
    metric: String,
    /// Write the best settings here (TOML).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn tune(a: TuneArgs) -> CmdResult {
    let base = load_train_config(a.config.as_deref()).map_err(Failure::Usage)?;
    if !matches!(a.metric.as_str(), "accuracy" | "macro_f1" | "mean") {
        return Err(Failure::Usage(anyhow!(
            "--metric must be accuracy, macro_f1 or mean"
        )));
    }
    if a.dev.is_none() && a.folds < 2 {
        return Err(Failure::Usage(anyhow!("--folds must be at least 2")));
    }
    let data = read_jsonl(&a.data)?;
    let dev = a.dev.as_deref().map(read_jsonl).transpose()?;
    // Deterministic fold assignment: a hash of the position, so folds are interleaved.
    let fold_of = |i: usize| (i.wrapping_mul(2654435761) >> 7) % a.folds;
    let mut results = Vec::new();
    for cw in &a.class_weight {
        let class_weight = match cw.as_str() {
            "none" => ClassWeight::None,
            "balanced" => ClassWeight::Balanced,
            "balanced_sqrt" => ClassWeight::BalancedSqrt,
            other => {
                return Err(Failure::Usage(anyhow!(
                    "--class-weight takes none, balanced or balanced_sqrt, not {other:?}"
                )));
            }
        };
        for &alpha in &a.alpha {
            let mut cfg = base.clone();
            cfg.logistic.alpha = alpha;
            cfg.logistic.class_weight = class_weight.clone();
            let t0 = Instant::now();
            let (acc, f1) = if let Some(dev) = &dev {
                let m = Model::train(&data, &cfg, &mut triage_classifier::NoProgress)?;
                let r = evaluate(&m, dev);
                (r.accuracy, r.macro_f1)
            } else {
                let (mut acc, mut f1) = (0.0, 0.0);
                for f in 0..a.folds {
                    let (train, held): (Vec<_>, Vec<_>) =
                        data.iter().enumerate().partition(|(i, _)| fold_of(*i) != f);
                    let train: Vec<Example> = train.into_iter().map(|(_, e)| e.clone()).collect();
                    let held: Vec<Example> = held.into_iter().map(|(_, e)| e.clone()).collect();
                    let m = Model::train(&train, &cfg, &mut triage_classifier::NoProgress)?;
                    let r = evaluate(&m, &held);
                    acc += r.accuracy / a.folds as f64;
                    f1 += r.macro_f1 / a.folds as f64;
                }
                (acc, f1)
            };
            eprintln!(
                "alpha {alpha:<8} class_weight {cw:<9} accuracy {:.2}%  macro-F1 {:.4}  ({:.1}s)",
                100.0 * acc,
                f1,
                t0.elapsed().as_secs_f64()
            );
            results.push((cfg, acc, f1));
        }
    }
    let key = |r: &(TrainConfig, f64, f64)| match a.metric.as_str() {
        "accuracy" => r.1,
        "macro_f1" => r.2,
        _ => (r.1 + r.2) / 2.0,
    };
    let best = results
        .iter()
        .max_by(|x, y| key(x).total_cmp(&key(y)))
        .ok_or_else(|| Failure::Usage(anyhow!("nothing to try")))?;
    let how = if dev.is_some() {
        "on the dev split".to_string()
    } else {
        format!("by {}-fold cross-validation", a.folds)
    };
    eprintln!(
        "best {how}: alpha {} class_weight {:?}: accuracy {:.2}%, macro-F1 {:.4}",
        best.0.logistic.alpha,
        best.0.logistic.class_weight,
        100.0 * best.1,
        best.2
    );
    let toml = toml::to_string(&best.0).map_err(anyhow::Error::from)?;
    match &a.out {
        Some(p) => std::fs::write(p, toml).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{toml}"),
    }
    Ok(())
}

// ---------------------------------------------------------------- bench

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Messages to classify (JSONL with "text", or plain lines).
    #[arg(long)]
    data: PathBuf,
    /// Passes over the data (after one warm-up pass); the best pass counts.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn bench(a: BenchArgs) -> CmdResult {
    let model = load_model(a.model.as_deref())?;
    let file = std::fs::File::open(&a.data).with_context(|| format!("{}", a.data.display()))?;
    let mut texts = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.context("reading data")?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
                Some(t) => texts.push(t.to_string()),
                None => texts.push(line),
            },
            Err(_) => texts.push(line),
        }
    }
    if texts.is_empty() {
        bail_usage("no messages in the data file")?;
    }
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let mut checksum = 0.0f64;
    for t in &texts {
        model.predict_into(t, &mut scratch, &mut probs);
    }
    let mut best = f64::INFINITY;
    for _ in 0..a.repeat.max(1) {
        let t0 = Instant::now();
        for t in &texts {
            model.predict_into(t, &mut scratch, &mut probs);
            checksum += probs[0] as f64;
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let rate = texts.len() as f64 / best;
    if a.json {
        println!(
            "{}",
            json!({"messages": texts.len(), "seconds": best, "msgs_per_sec": rate,
                   "us_per_msg": 1e6 / rate, "checksum": checksum})
        );
    } else {
        println!(
            "{} messages in {:.4}s (best of {}): {:.0} msg/s, {:.3} µs/msg, one thread",
            texts.len(),
            best,
            a.repeat,
            rate,
            1e6 / rate
        );
    }
    Ok(())
}

fn bail_usage(msg: &str) -> Result<(), Failure> {
    Err(Failure::Usage(anyhow!("{msg}")))
}

// ---------------------------------------------------------------- run

#[derive(Args, Debug)]
pub struct RunArgs {
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
    /// Consumer group id (overrides the configuration and the replay group).
    #[arg(long)]
    group: Option<String>,
    /// Exit cleanly once no message has arrived for this many seconds (for replays).
    #[arg(long)]
    exit_when_idle: Option<f64>,
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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

pub fn run(a: RunArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    init_logging(&config);
    config
        .kafka
        .validate()
        .map_err(|e| Failure::Usage(anyhow!("configuration: {e}")))?;
    let model = Arc::new(load_model(config.model.path.as_deref())?);
    tracing::info!(model = model.version(), labels = ?model.labels(), "model loaded");
    let processor = Arc::new(build_processor(model, &config)?);
    let from_timestamp = a
        .from_timestamp
        .as_deref()
        .map(parse_timestamp)
        .transpose()
        .map_err(Failure::Usage)?;
    let opts = triage_pipelines::kafka::RunOptions {
        from_beginning: a.from_beginning,
        from_timestamp,
        group_id: a.group.clone(),
        exit_when_idle: a.exit_when_idle.map(std::time::Duration::from_secs_f64),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let health = Arc::new(triage_pipelines::metrics::Health::default());
        if config.metrics.enabled {
            let handle = triage_pipelines::metrics::install_recorder()?;
            triage_pipelines::metrics::serve(&config.metrics, handle, Arc::clone(&health)).await?;
        }
        triage_pipelines::kafka::run(
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
        serde_json::to_string(&summary).map_err(anyhow::Error::from)?
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Service configuration (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn config(a: ConfigArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    print!("{}", config.redacted_toml()?);
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
