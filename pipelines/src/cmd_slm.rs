//! Subcommands for the small-language-model stage: training the second-opinion head,
//! calibrating thresholds, and evaluating the cascade.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use ndarray::Array2;
use triage_classifier::{Example, Model, Scratch, read_jsonl};
use triage_models::{Encoder, Head, TrainOptions};
use triage_pipelines::cascade::{self, CascadeInputs, Goal};
use triage_pipelines::config::Config;

use crate::Failure;

type CmdResult = Result<(), Failure>;

#[derive(Subcommand, Debug)]
pub enum SlmCommand {
    /// Train the second-opinion head: logistic regression on sentence embeddings of labelled
    /// data (the same data as the fast model).
    TrainHead(TrainHeadArgs),
    /// Build a zero-shot head from label descriptions, for labels without training data.
    ZeroShot(ZeroShotArgs),
}

#[derive(Args, Debug)]
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

#[derive(Args, Debug)]
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

fn encoder(config: &Config) -> anyhow::Result<Encoder> {
    let root = std::env::current_dir().context("current directory")?;
    let models = config.slm.models.resolved(&root);
    Ok(Encoder::from_config(&models)?)
}

fn cache_dir(config: &Config) -> PathBuf {
    let root = std::env::current_dir().unwrap_or_default();
    config.slm.models.resolved(&root).cache_dir()
}

pub fn slm(cmd: SlmCommand) -> CmdResult {
    match cmd {
        SlmCommand::TrainHead(a) => train_head(a),
        SlmCommand::ZeroShot(a) => zero_shot(a),
    }
}

fn train_head(a: TrainHeadArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let data = read_jsonl(&a.data)?;
    let mut labels: Vec<String> = data.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let y: Vec<usize> = data
        .iter()
        .map(|e| labels.binary_search(&e.label).unwrap_or(0))
        .collect();
    let enc = encoder(&config)?;
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let t0 = std::time::Instant::now();
    let x = cascade::embed_cached(&enc, &texts, &cache_dir(&config))?;
    eprintln!(
        "embedded {} messages in {:.1}s",
        texts.len(),
        t0.elapsed().as_secs_f64()
    );
    let t1 = std::time::Instant::now();
    let head = Head::train(
        &x,
        &y,
        &labels,
        &TrainOptions {
            alpha: a.alpha,
            max_iterations: a.max_iterations,
        },
    )?;
    let train_acc = {
        let pred = head.predict(&x)?;
        pred.iter().zip(&y).filter(|(p, t)| p == t).count() as f64 / y.len() as f64
    };
    head.save(&a.out)?;
    eprintln!(
        "trained a {}-label head in {:.1}s (training accuracy {:.2}%); wrote {}",
        labels.len(),
        t1.elapsed().as_secs_f64(),
        100.0 * train_acc,
        a.out.display()
    );
    Ok(())
}

fn zero_shot(a: ZeroShotArgs) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    let text = std::fs::read_to_string(&a.descriptions)
        .with_context(|| format!("reading {}", a.descriptions.display()))?;
    let table: std::collections::BTreeMap<String, String> = toml::from_str(&text)
        .map_err(|e| Failure::Usage(anyhow!("{}: {e}", a.descriptions.display())))?;
    let pairs: Vec<(&str, &str)> = table
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let head = Head::zero_shot_from_descriptions(&encoder(&config)?, &pairs, a.temperature)?;
    head.save(&a.out)?;
    eprintln!(
        "wrote a zero-shot head for {} labels to {}",
        pairs.len(),
        a.out.display()
    );
    Ok(())
}

// ------------------------------------------------------------------ cascade inputs

/// Fast and second-opinion probabilities for a labelled file.
struct Scored {
    labels: Vec<String>,
    truth: Vec<usize>,
    fast: Array2<f32>,
    second: Array2<f32>,
    examples: Vec<Example>,
}

fn load_head(config: &Config, head: Option<&Path>, model: &Model) -> anyhow::Result<Head> {
    let path = head.map(Path::to_path_buf).or(config.slm.head.clone());
    Ok(match path {
        Some(p) => Head::load(&p)?,
        None if model.sha256() == triage_pipelines::default_model_sha256() => {
            Head::from_json(triage_pipelines::DEFAULT_HEAD)?
        }
        None => {
            return Err(anyhow!(
                "no second-opinion head: pass --head or set [slm] head (train one with `triage slm train-head`)"
            ));
        }
    })
}

fn score(config: &Config, model: &Model, head: &Head, data: &Path) -> anyhow::Result<Scored> {
    let examples = read_jsonl(data)?;
    let labels = model.labels().to_vec();
    let columns: Vec<usize> = labels
        .iter()
        .map(|l| {
            head.labels()
                .iter()
                .position(|h| h == l)
                .ok_or_else(|| anyhow!("the head has no label {l:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let k = labels.len();
    let mut fast = Array2::<f32>::zeros((examples.len(), k));
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        model.predict_into(&ex.text, &mut scratch, &mut probs);
        for (c, p) in probs.iter().enumerate() {
            fast[[i, c]] = *p;
        }
    }
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let x = cascade::embed_cached(&encoder(config)?, &texts, &cache_dir(config))?;
    let hp = head.predict_proba(&x)?;
    let mut second = Array2::<f32>::zeros((examples.len(), k));
    for (i, row) in hp.rows().into_iter().enumerate() {
        for (c, &col) in columns.iter().enumerate() {
            second[[i, c]] = row[col];
        }
    }
    let truth = examples
        .iter()
        .map(|e| labels.iter().position(|l| *l == e.label).unwrap_or(k))
        .collect();
    Ok(Scored {
        labels,
        truth,
        fast,
        second,
        examples,
    })
}

fn load_model(path: Option<&Path>, config: &Config) -> anyhow::Result<Model> {
    match path.map(Path::to_path_buf).or(config.model.path.clone()) {
        Some(p) => Ok(Model::load(&p)?),
        None => Ok(triage_pipelines::default_model()?),
    }
}

// ------------------------------------------------------------------ calibrate

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Labelled calibration data: a dev split or training data, never the test split.
    #[arg(long)]
    dev: PathBuf,
    /// The largest share of messages to send to the SLM.
    #[arg(long, conflicts_with = "target_accuracy")]
    budget: Option<f64>,
    /// Reach this accuracy (0-1) with the smallest share sent to the SLM.
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// Service configuration to start from; the thresholds are written into a copy.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Fast model (overrides the configuration).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Second-opinion head (overrides the configuration).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Where to write the calibrated configuration (TOML).
    #[arg(long)]
    out: PathBuf,
    /// When the data has no dev split: treat `--dev` as training data and calibrate on K-fold
    /// out-of-fold predictions (a fast model and a head trained per fold, with --train-config).
    #[arg(long, requires = "train_config")]
    folds: Option<usize>,
    /// Fast-model training settings for --folds (TOML, as for `triage train`).
    #[arg(long)]
    train_config: Option<PathBuf>,
    /// L2 strength of the per-fold heads (--folds).
    #[arg(long, default_value_t = 0.1)]
    head_alpha: f64,
}

/// Out-of-fold fast and head probabilities on `data`: for each fold, a fast model and a head are
/// trained on the other folds and score the held-out one.
fn out_of_fold(
    config: &Config,
    data: &Path,
    train_config: &Path,
    folds: usize,
    head_alpha: f64,
    labels: &[String],
) -> anyhow::Result<Scored> {
    let examples = read_jsonl(data)?;
    let text = std::fs::read_to_string(train_config)
        .with_context(|| format!("reading {}", train_config.display()))?;
    let tc: triage_classifier::TrainConfig =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", train_config.display()))?;
    let k = labels.len();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let x = cascade::embed_cached(&encoder(config)?, &texts, &cache_dir(config))?;
    let truth: Vec<usize> = examples
        .iter()
        .map(|e| labels.iter().position(|l| *l == e.label).unwrap_or(k))
        .collect();
    let fold_of = |i: usize| (i.wrapping_mul(2654435761) >> 7) % folds;
    let mut fast = Array2::<f32>::zeros((examples.len(), k));
    let mut second = Array2::<f32>::zeros((examples.len(), k));
    for f in 0..folds {
        let train_idx: Vec<usize> = (0..examples.len()).filter(|&i| fold_of(i) != f).collect();
        let held: Vec<usize> = (0..examples.len()).filter(|&i| fold_of(i) == f).collect();
        let train: Vec<Example> = train_idx.iter().map(|&i| examples[i].clone()).collect();
        eprintln!(
            "fold {}/{folds}: training on {} messages",
            f + 1,
            train.len()
        );
        let m = Model::train(&train, &tc, &mut triage_classifier::NoProgress)?;
        if m.labels() != labels {
            return Err(anyhow!("fold {f} lacks some labels; use fewer folds"));
        }
        let xs = x.select(ndarray::Axis(0), &train_idx);
        let ys: Vec<usize> = train_idx.iter().map(|&i| truth[i]).collect();
        let head = Head::train(
            &xs,
            &ys,
            labels,
            &TrainOptions {
                alpha: head_alpha,
                ..TrainOptions::default()
            },
        )?;
        let hp = head.predict_proba(&x.select(ndarray::Axis(0), &held))?;
        let mut scratch = Scratch::default();
        let mut probs = Vec::new();
        for (j, &i) in held.iter().enumerate() {
            m.predict_into(&examples[i].text, &mut scratch, &mut probs);
            for c in 0..k {
                fast[[i, c]] = probs[c];
                second[[i, c]] = hp[[j, c]];
            }
        }
    }
    Ok(Scored {
        labels: labels.to_vec(),
        truth,
        fast,
        second,
        examples,
    })
}

pub fn calibrate(a: CalibrateArgs) -> CmdResult {
    let mut config = Config::load(a.config.as_deref())?;
    let goal = match (a.budget, a.target_accuracy) {
        (Some(b), None) if (0.0..=1.0).contains(&b) => Goal::Budget(b),
        (None, Some(t)) if (0.0..=1.0).contains(&t) => Goal::TargetAccuracy(t),
        _ => {
            return Err(Failure::Usage(anyhow!(
                "give one of --budget or --target-accuracy, each within 0..=1"
            )));
        }
    };
    let model = load_model(a.model.as_deref(), &config)?;
    let s = match (a.folds, &a.train_config) {
        (Some(k), Some(tc)) if k >= 2 => {
            out_of_fold(&config, &a.dev, tc, k, a.head_alpha, model.labels())?
        }
        (Some(_), _) => return Err(Failure::Usage(anyhow!("--folds must be at least 2"))),
        _ => {
            let head = load_head(&config, a.head.as_deref(), &model)?;
            score(&config, &model, &head, &a.dev)?
        }
    };
    let inputs = CascadeInputs {
        labels: &s.labels,
        truth: &s.truth,
        fast: &s.fast,
        second: &s.second,
    };
    let cal = cascade::calibrate(&inputs, goal, config.slm.combine);
    config.router.default_threshold = cal.default_threshold;
    config.router.thresholds = cal.per_label.iter().cloned().collect();
    if let Goal::Budget(b) = goal {
        config.budget.max_share = b;
    }
    if let Some(m) = &a.model {
        config.model.path = Some(m.clone());
    }
    if let Some(h) = &a.head {
        config.slm.head = Some(h.clone());
    }
    let toml = config.redacted_toml()?;
    std::fs::write(&a.out, toml).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "calibrated on {} messages: threshold {:.3}{}; {:.1}% to the SLM; accuracy {:.2}% \
         (fast only {:.2}%); wrote {}",
        s.examples.len(),
        cal.default_threshold,
        if cal.per_label.is_empty() {
            String::new()
        } else {
            format!(" (+{} per-label)", cal.per_label.len())
        },
        100.0 * cal.share,
        100.0 * cal.accuracy,
        100.0 * cal.fast_accuracy,
        a.out.display()
    );
    Ok(())
}

// ------------------------------------------------------------------ eval --cascade

/// The cascade on a labelled file: its rows, a JSON summary and a printable table.
pub struct CascadeEval {
    /// Fast only, second opinion only, both, the cascade, the cascade under the budget.
    pub rows: Vec<cascade::CascadeRow>,
    /// The same as JSON, with the out-of-scope figures when the labels have `oos`.
    pub json: serde_json::Value,
    /// The same as text.
    pub text: String,
}

/// Evaluates the cascade with the thresholds, budget and combination rule of `config`.
pub fn eval_cascade(
    config: &Config,
    model: &Model,
    head_path: Option<&Path>,
    data: &Path,
) -> Result<CascadeEval, Failure> {
    use std::fmt::Write as _;
    let head = load_head(config, head_path, model)?;
    let s = score(config, model, &head, data)?;
    let inputs = CascadeInputs {
        labels: &s.labels,
        truth: &s.truth,
        fast: &s.fast,
        second: &s.second,
    };
    let thresholds: Vec<f32> = s
        .labels
        .iter()
        .map(|l| {
            config
                .router
                .thresholds
                .get(l)
                .copied()
                .unwrap_or(config.router.default_threshold)
        })
        .collect();
    let (mut rows, cascade_pred, routed) =
        cascade::table(&inputs, &thresholds, config.slm.combine, None)
            .map_err(|e| Failure::Runtime(e.into()))?;
    let (budgeted, _, broutes) = cascade::table(
        &inputs,
        &thresholds,
        config.slm.combine,
        Some(&config.budget),
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    let mut with_budget = budgeted[3].clone();
    with_budget.name = format!(
        "cascade, run-time budget {:.0}%",
        100.0 * config.budget.max_share
    );
    rows.push(with_budget);
    let mut json = serde_json::json!({ "rows": rows, "messages": s.examples.len(),
        "default_threshold": config.router.default_threshold,
        "per_label_thresholds": config.router.thresholds.len() });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\ncascade ({} messages; threshold {:.3}, {} per-label; budget {:.0}%)",
        s.examples.len(),
        config.router.default_threshold,
        config.router.thresholds.len(),
        100.0 * config.budget.max_share
    );
    let _ = writeln!(
        text,
        "{:<42} {:>9} {:>9} {:>11}",
        "", "accuracy", "macro-F1", "to the SLM"
    );
    for r in &rows {
        let _ = writeln!(
            text,
            "{:<42} {:>8.2}% {:>9.4} {:>10.1}%",
            r.name,
            100.0 * r.accuracy,
            r.macro_f1,
            100.0 * r.share_to_slm
        );
    }
    // Out-of-scope queries (CLINC150's `oos`): how many the router sends to the SLM, and how many
    // end up labelled oos.
    if let Some(o) = s.labels.iter().position(|l| l == "oos") {
        let n = s.truth.iter().filter(|&&t| t == o).count();
        let count = |flags: &[bool]| {
            s.truth
                .iter()
                .zip(flags)
                .filter(|(t, r)| **t == o && **r)
                .count()
        };
        let (routed_oos, routed_oos_b) = (count(&routed), count(&broutes));
        let fast_oos = s
            .fast
            .rows()
            .into_iter()
            .zip(&s.truth)
            .filter(|(r, t)| **t == o && cascade_argmax(r) == o)
            .count();
        let casc_oos = cascade_pred
            .iter()
            .zip(&s.truth)
            .filter(|(p, t)| **t == o && **p == o)
            .count();
        json["oos"] = serde_json::json!({"queries": n, "routed": routed_oos,
            "routed_with_budget": routed_oos_b, "labelled_oos_fast": fast_oos,
            "labelled_oos_cascade": casc_oos});
        let _ = writeln!(
            text,
            "out-of-scope (oos): {n} queries; routed to the SLM {routed_oos} ({routed_oos_b} with \
             the budget); labelled oos by the fast path {fast_oos}, by the cascade {casc_oos}"
        );
    }
    Ok(CascadeEval { rows, json, text })
}

fn cascade_argmax(r: &ndarray::ArrayView1<'_, f32>) -> usize {
    r.iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |x| x.0)
}
