//! `triage calibrate`.

use std::path::PathBuf;

use anyhow::anyhow;
use triage_classifier::{TrainConfig, read_jsonl};
use triage_core::config::Config;
use triage_core::paths::refuse_overwriting;
use triage_eval::calibrate::{Method, candidates};
use triage_eval::cascade::{Goal, calibrate, out_of_scope_floor};
use triage_eval::score::{Folds, SecondOpinion, out_of_fold};
use triage_eval::train::read_train_config;

use crate::exit::{CmdResult, Failure};
use crate::progress::Bars;

#[derive(clap::Args, Debug)]
pub struct Args {
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
    #[command(flatten)]
    second: super::SecondOpinionArgs,
    /// Also calibrate with this frozen head as the second opinion, and keep whichever second
    /// opinion gives the better cascade on the calibration data (with --finetuned and --budget;
    /// not with --folds, where the fine-tuned model would have seen the calibration data).
    #[arg(long, requires_all = ["finetuned", "budget"], conflicts_with = "folds")]
    compare_head: Option<PathBuf>,
    /// Where to write the calibrated configuration (TOML).
    #[arg(long)]
    out: PathBuf,
    /// When the data has no dev split: treat `--dev` as training data and calibrate on K-fold
    /// out-of-fold predictions (a fast model and a head trained per fold, with the fast model's
    /// own settings, or --train-config's).
    #[arg(long)]
    folds: Option<usize>,
    /// Fast-model training settings for --folds (TOML, as for `triage train`); the fast model's
    /// own (those it was trained with) when omitted.
    #[arg(long, requires = "folds")]
    train_config: Option<PathBuf>,
    /// L2 strength of the per-fold heads (--folds).
    #[arg(long, default_value_t = 0.1)]
    head_alpha: f64,
    /// Consider max-probability routing only (no learned deferral).
    #[arg(long)]
    no_deferral: bool,
    /// Consider learned deferral only (no max-probability routing): to measure it where
    /// max-probability routing would be chosen.
    #[arg(long, conflicts_with_all = ["no_deferral", "target_accuracy"])]
    only_deferral: bool,
    /// Where the learned deferral model is written when it is chosen [default: OUT with
    /// `.deferral.json` appended; `deferral.json` with `--out -`].
    #[arg(long)]
    deferral_out: Option<PathBuf>,
    /// The label of messages no other label fits (CLINC150's `oos`). When the model has it,
    /// the floor of fast confidence under which a message gets it is chosen on the calibration
    /// data (`[router] out_of_scope_below`), before the routing; where no floor helps, or with
    /// `none`, the floor is off.
    #[arg(long, default_value = "oos")]
    out_of_scope_label: String,
}

pub fn run(a: Args) -> CmdResult {
    let deferral_out = a.deferral_out.clone().unwrap_or_else(|| {
        if a.out == std::path::Path::new("-") {
            // The configuration goes to stdout; the model beside the working directory.
            return PathBuf::from("deferral.json");
        }
        let mut p = a.out.clone().into_os_string();
        p.push(".deferral.json");
        PathBuf::from(p)
    });
    refuse_overwriting(
        &[
            ("--dev", Some(&a.dev)),
            ("--config", a.config.as_deref()),
            ("--model", a.model.as_deref()),
            ("--head", a.second.head.as_deref()),
            ("--compare-head", a.compare_head.as_deref()),
            ("--train-config", a.train_config.as_deref()),
        ],
        &[
            ("--out", Some(&a.out)),
            ("--deferral-out", Some(&deferral_out)),
        ],
    )?;
    let mut config = Config::load(a.config.as_deref())?;
    super::refuse_overwriting_configured(
        &a.second.applied(&config),
        &[
            ("--out", Some(&a.out)),
            ("--deferral-out", Some(&deferral_out)),
        ],
    )?;
    let goal = match (a.budget, a.target_accuracy) {
        (Some(b), None) if (0.0..=1.0).contains(&b) => Goal::Budget(b),
        (None, Some(t)) if (0.0..=1.0).contains(&t) => Goal::TargetAccuracy(t),
        _ => {
            return Err(Failure::usage(anyhow!(
                "give one of --budget or --target-accuracy, each within 0..=1"
            )));
        }
    };
    let model = super::load_model(a.model.as_deref(), &config)?;
    let root = super::root()?;
    let examples = read_jsonl(&a.dev)?;
    let n = examples.len();
    let mut bars = Bars::default();
    let scored = match a.folds {
        Some(k) if k >= 2 => {
            let second =
                SecondOpinion::load(&config, &root, None, a.second.head.as_deref(), &model)?;
            let train_config = match &a.train_config {
                Some(tc) => read_train_config(Some(tc))?,
                None => {
                    let h = model.header();
                    TrainConfig {
                        analyzer: h.analyzer.clone(),
                        tfidf: h.tfidf.clone(),
                        logistic: h.logistic.clone(),
                    }
                }
            };
            let settings = Folds {
                folds: k,
                train_config,
                head_alpha: a.head_alpha,
            };
            out_of_fold(
                &second,
                examples.clone(),
                model.labels(),
                &settings,
                &mut bars,
            )?
        }
        Some(_) => return Err(Failure::usage(anyhow!("--folds must be at least 2"))),
        None => {
            let second = a.second.load(&config, &model)?;
            second.score(&model, examples.clone(), &mut bars)?
        }
    };
    let inputs = scored.inputs();
    let floor = (a.out_of_scope_label != "none")
        .then(|| out_of_scope_floor(&inputs, &a.out_of_scope_label))
        .flatten();
    // Calibration owns the floor as it owns the thresholds: set where one helps, off otherwise.
    match &floor {
        Some(f) => eprintln!(
            "out-of-scope floor: confidence under {:.3} gets {:?} (fast only {:.2}% against {:.2}% \
             without, on the calibration data)",
            f.below,
            f.label,
            100.0 * f.accuracy,
            100.0 * f.accuracy_without
        ),
        None if model.labels().contains(&a.out_of_scope_label) => eprintln!(
            "out-of-scope floor: none ({:?} under no floor helps the fast path on the calibration \
             data)",
            a.out_of_scope_label
        ),
        None => {}
    }
    config.router.out_of_scope_label = floor.as_ref().map(|f| f.label.clone());
    config.router.out_of_scope_below = floor.as_ref().map_or(0.0, |f| f.below);
    let summary = match goal {
        Goal::Budget(b) => {
            let best_of = |inputs, which: &str| -> Result<_, Failure> {
                let mut all = candidates(inputs, b, &config.router, !a.no_deferral)?;
                if a.only_deferral {
                    all.retain(|c| c.method == Method::LearnedDeferral);
                }
                eprintln!(
                    "candidates with the {which} on {n} calibration messages, {:.0}% budget:",
                    100.0 * b
                );
                for c in &all {
                    eprintln!(
                        "  {:<16} combine {:<8} accuracy {:.2}%  to the SLM {:.1}%",
                        format!("{:?}", c.method),
                        format!("{:?}", c.combine).to_lowercase(),
                        100.0 * c.accuracy,
                        100.0 * c.share
                    );
                }
                all.into_iter()
                    .next()
                    .ok_or_else(|| Failure::usage(anyhow!("no candidate")))
            };
            let mut best = best_of(&inputs, "configured second opinion")?;
            if let Some(head) = &a.compare_head {
                let frozen = SecondOpinion::load(&config, &root, None, Some(head), &model)?;
                let scored = frozen.score(&model, examples, &mut bars)?;
                let with_head = best_of(&scored.inputs(), "frozen head")?;
                let head_wins = with_head.accuracy > best.accuracy;
                eprintln!(
                    "second opinion: {} (cascade {:.2}% with the fine-tuned model, {:.2}% with the frozen head)",
                    if head_wins {
                        "the frozen head"
                    } else {
                        "the fine-tuned model"
                    },
                    100.0 * best.accuracy,
                    100.0 * with_head.accuracy
                );
                if head_wins {
                    best = with_head;
                    config.slm.finetuned = None;
                    config.slm.head = Some(head.clone());
                } else {
                    config.slm.finetuned = a.second.finetuned.clone();
                    config.slm.head = None;
                }
            }
            config.router = best.policy.clone();
            config.slm.combine = best.combine;
            config.budget.max_share = b;
            if let Some(d) = &best.deferral {
                let path = deferral_out.clone();
                let json = serde_json::to_string_pretty(d).map_err(Failure::external)?;
                super::write_file(&path, json.as_bytes())?;
                config.router.deferral = Some(path);
            }
            format!(
                "{:?} routing, combine {:?}; {:.1}% to the SLM; accuracy {:.2}%",
                best.method,
                best.combine,
                100.0 * best.share,
                100.0 * best.accuracy
            )
        }
        Goal::TargetAccuracy(target) => {
            let cal = calibrate(&inputs, goal, &config.router, config.slm.combine)?;
            let what = format!(
                "threshold {:.3}{}; {:.1}% to the SLM; accuracy {:.2}% (fast only {:.2}%)",
                cal.default_threshold,
                if cal.per_label.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} per-label)", cal.per_label.len())
                },
                100.0 * cal.share,
                100.0 * cal.accuracy,
                100.0 * cal.fast_accuracy
            );
            if !cal.reached {
                // Nothing written: a configuration that misses its target is not a calibration.
                return Err(Failure::Gate(format!(
                    "--target-accuracy {target}: out of reach on these {n} messages; the most \
                     accurate cascade found: {what}. Nothing written: ask for at most {:.4}, or \
                     calibrate for a --budget",
                    (cal.accuracy * 1e4).floor() / 1e4
                )));
            }
            config.router.default_threshold = cal.default_threshold;
            config.router.thresholds = cal.per_label.iter().cloned().collect();
            config.router.deferral = None;
            // The run-time budget would cap the share the target needs.
            if cal.share > config.budget.max_share {
                let raised = (cal.share * 100.0).ceil() / 100.0;
                eprintln!(
                    "[budget] max_share raised from {} to {raised}: the target needs {:.1}% of \
                     the messages at the SLM, which the budget would have capped",
                    config.budget.max_share,
                    100.0 * cal.share
                );
                config.budget.max_share = raised;
            }
            what
        }
    };
    if let Some(m) = &a.model {
        config.model.path = Some(m.clone());
    }
    if a.compare_head.is_none() && (a.second.finetuned.is_some() || a.second.head.is_some()) {
        config.slm.finetuned = a.second.finetuned.clone();
        config.slm.head = a.second.head.clone();
    }
    // The Kafka section as the file has it: its secrets kept (a redacted `***` would be the
    // password `triage run` sends), and none taken from `TRIAGE__KAFKA__…` variables, which stay
    // in the environment they came from.
    config.kafka = Config::load_file(a.config.as_deref())?.kafka;
    // The files it names, absolute: a configuration's relative paths are read from the current
    // directory, and the one written here is used from others (`--head models/…` had made a
    // file that worked only where calibrate ran).
    for path in [
        &mut config.model.path,
        &mut config.slm.head,
        &mut config.slm.finetuned,
        &mut config.router.deferral,
    ]
    .into_iter()
    .flatten()
    {
        if path.is_relative() {
            *path = std::path::absolute(&*path).map_err(Failure::external)?;
        }
    }
    let toml = toml::to_string(&config).map_err(Failure::external)?;
    super::write_file(&a.out, toml.as_bytes())?;
    eprintln!(
        "calibrated on {n} messages: {summary}; wrote {}",
        a.out.display()
    );
    Ok(())
}
