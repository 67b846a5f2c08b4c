//! One routing policy: the service's processing path (`Processor::step` + `resolve`, as
//! `triage replay` and `triage run` call it) and the offline simulation (`cascade::simulate`, as
//! `triage calibrate` and `triage eval --cascade` call it) give every message of a random
//! stream the same route, label and probabilities (as published, to 4 decimals), with generative
//! labels, a budget and, in some cases, a learned deferral model or an out-of-scope floor.
//!
//! The fast model is a real one, trained here on a small vocabulary; the SLM is a stand-in whose
//! answer is a fixed function of the text, given to both sides.

use std::sync::Arc;

use ndarray::Array2;
use proptest::prelude::*;
use triage_classifier::{Example, Model, NoProgress, Scratch, TrainConfig};
use triage_core::config::{BudgetConfig, Combine, Config, PolicyConfig};
use triage_eval::cascade::{CascadeInputs, simulate};
use triage_router::deferral::NUMERIC_FEATURES;
use triage_router::{Deferral, Router};
use triage_service::record::published_probability;
use triage_service::slm::{BackendError, SlmBackend, SlmStage};
use triage_service::{Decision, Processor, Step};

const WORDS: [&str; 12] = [
    "great", "thanks", "broken", "refund", "maybe", "hello", "awful", "love", "slow", "ok", "why",
    "late",
];
const LABELS: [&str; 4] = ["ambiguous", "negative", "neutral", "positive"];

fn model() -> Arc<Model> {
    static MODEL: std::sync::OnceLock<Arc<Model>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let mut data = Vec::new();
            for (i, w) in WORDS.iter().enumerate() {
                for j in 0..6 {
                    let other = WORDS[(i + j + 1) % WORDS.len()];
                    data.push(Example {
                        id: None,
                        text: format!("{w} {other} {w}"),
                        label: LABELS[(i + j / 3) % 4].to_string(),
                    });
                }
            }
            let mut config = TrainConfig::default();
            config.tfidf.min_df = 1;
            config.analyzer.hash_bits = 12;
            Arc::new(Model::train(&data, &config, &mut NoProgress).expect("trains"))
        })
        .clone()
}

/// The stand-in SLM's second opinion: a distribution that depends only on the text.
fn second_opinion(text: &str) -> Vec<f32> {
    let h = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let raw: Vec<f32> = (0..4)
        .map(|i| 1.0 + ((h >> (8 * i)) & 0xff) as f32)
        .collect();
    let sum: f32 = raw.iter().sum();
    raw.iter().map(|v| v / sum).collect()
}

struct StandIn;

impl SlmBackend for StandIn {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(texts.iter().map(|t| second_opinion(t)).collect())
    }
    fn generate(&self, text: &str, label: &str) -> Result<String, BackendError> {
        Ok(format!("{label}: {text}"))
    }
}

fn stream() -> impl Strategy<Value = Vec<String>> {
    let text = proptest::collection::vec(proptest::sample::select(&WORDS[..]), 1..6)
        .prop_map(|w| w.join(" "));
    proptest::collection::vec(text, 1..200)
}

/// A deferral model with random weights over the features of the four labels.
fn deferral() -> impl Strategy<Value = Option<Deferral>> {
    let d = NUMERIC_FEATURES + LABELS.len();
    proptest::option::of(
        (
            proptest::collection::vec(-3.0f32..3.0, d),
            proptest::collection::vec(-1.0f32..1.0, d),
            -2.0f32..2.0,
        )
            .prop_map(move |(weights, mean, bias)| Deferral {
                format: 1,
                labels: LABELS.iter().map(|l| l.to_string()).collect(),
                mean,
                scale: vec![1.0; d],
                weights,
                bias,
                provenance: "random (one_policy test)".into(),
            }),
    )
}

fn policy() -> impl Strategy<Value = (PolicyConfig, BudgetConfig, Combine, Option<Deferral>)> {
    (
        0.0f32..1.0,
        proptest::sample::subsequence(&LABELS[..], 0..3),
        0.0f32..1.0,
        0.0f64..=1.0,
        0u32..20,
        any::<bool>(),
        deferral(),
        proptest::option::of((proptest::sample::select(&LABELS[..]), 0.0f32..0.6)),
    )
        .prop_map(
            |(t, generative, gmin, share, burst, replace, deferral, oos)| {
                (
                    PolicyConfig {
                        default_threshold: t,
                        generative: generative.into_iter().map(String::from).collect(),
                        generate_min_confidence: gmin,
                        deferral: deferral.as_ref().map(|_| "deferral.json".into()),
                        // With a deferral model, the threshold applies to its score.
                        deferral_threshold: t,
                        out_of_scope_label: oos.map(|(l, _)| l.to_string()),
                        out_of_scope_below: oos.map_or(0.0, |(_, b)| b),
                        ..Default::default()
                    },
                    BudgetConfig {
                        max_share: share,
                        burst,
                        max_per_second: None,
                    },
                    if replace {
                        Combine::Replace
                    } else {
                        Combine::Average
                    },
                    deferral,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn service_and_simulation_route_alike(texts in stream(), (policy, budget, combine, deferral) in policy()) {
        let model = model();
        // `[router] deferral` is read relative to the config's folder.
        let root = tempfile::tempdir().unwrap();
        if let Some(d) = &deferral {
            std::fs::write(root.path().join("deferral.json"), serde_json::to_vec(d).unwrap()).unwrap();
        }
        let mut config = Config {
            router: policy.clone(),
            budget: budget.clone(),
            ..Default::default()
        };
        config.slm.combine = combine;
        config.slm.executor.max_wait_ms = 0;
        // Shedding by a saturated SLM (`over_budget` at run time) depends on the clock, as the
        // budget's rate limit does, so the simulation has neither. One message at a time never
        // saturates the stand-in; the long window only keeps a stalled machine from shedding.
        config.slm.executor.admission_window_ms = 60_000;

        // The service's path, message by message in stream order.
        let stage = SlmStage::with_backend(Arc::new(StandIn), &config.slm).unwrap();
        let processor = Processor::new(Arc::clone(&model), &config, stage, root.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (mut scratch, mut probs, mut out) = (Scratch::default(), Vec::new(), Vec::new());
        let mut service = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let payload = serde_json::json!({"id": i.to_string(), "text": t}).to_string();
            out.clear();
            let record = match processor.step(payload.as_bytes(), &config.input, || "x".into(), &mut scratch, &mut probs, &mut out) {
                Step::Done(_) => out.clone(),
                Step::Slm(p) => rt.block_on(processor.resolve(*p)).json,
                Step::Dead(e) => panic!("{e}"),
            };
            // What is published, read back.
            let d: Decision = serde_json::from_slice(&record).unwrap();
            service.push(d);
        }

        // The offline simulation, on the same probabilities.
        let k = model.labels().len();
        let mut fast = Array2::<f32>::zeros((texts.len(), k));
        let mut second = Array2::<f32>::zeros((texts.len(), k));
        let (mut unseen, mut bytes) = (Vec::new(), Vec::new());
        for (i, t) in texts.iter().enumerate() {
            model.predict_into(t, &mut scratch, &mut probs);
            unseen.push(model.unseen_share(&scratch));
            bytes.push(t.len());
            fast.row_mut(i).assign(&ndarray::ArrayView1::from(&probs[..]));
            second.row_mut(i).assign(&ndarray::ArrayView1::from(&second_opinion(t)[..]));
        }
        let truth = vec![0; texts.len()];
        let inputs = CascadeInputs {
            labels: model.labels(),
            truth: &truth,
            fast: &fast,
            second: &second,
            unseen: &unseen,
            bytes: &bytes,
        };
        let router = Router::from_config(policy, combine, model.labels(), root.path()).unwrap();
        prop_assert_eq!(router.deferral().is_some(), deferral.is_some());
        let offline = simulate(&router, Some(&budget), &inputs).unwrap();

        prop_assert_eq!(service.len(), offline.len());
        for (i, (d, o)) in service.iter().zip(&offline).enumerate() {
            prop_assert_eq!(d.route, o.route, "message {}: {:?}", i, texts[i]);
            prop_assert_eq!(&d.label, &model.labels()[o.label], "message {}", i);
            // Published to 4 decimals: the simulation's figures, rounded the same way.
            prop_assert_eq!(d.confidence, published_probability(o.confidence), "message {}", i);
            let published: Vec<f32> = model.labels().iter().map(|l| d.probabilities[l]).collect();
            let simulated: Vec<f32> = o.probabilities.iter().map(|&p| published_probability(p)).collect();
            prop_assert_eq!(&published, &simulated, "message {}", i);
            prop_assert_eq!(&d.reason, &o.reason, "message {}", i);
        }
    }
}
