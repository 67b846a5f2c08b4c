//! Criterion benchmarks of the fast classifier, on real messages.
//!
//! ```text
//! cargo bench -p triage-classifier --bench classify
//! cargo bench -p triage-classifier --bench classify -- predict   # one group only
//! ```
//!
//! - `analyse/features/<data>`: `Analyzer::features` (tokenise, normalise, word + char n-grams, hash) per
//!   message, with a reused `Scratch`;
//! - `predict/predict_into/<data>`: the whole hot path, `Model::predict_into` with a reused `Scratch` and
//!   output buffer (analyse + TF-IDF + logistic + softmax);
//! - `train/train_5000/<data>`: `Model::train` on the first 5,000 training messages, with the default
//!   model's own settings (analyser, TF-IDF, logistic);
//! - `labels/<k>_<data>_<format>`: `predict_into` over each data set's test split, at 4 labels (the
//!   default model, GoEmotions), 77 (banking77) and 151 (clinc150), with the weights held as f32,
//!   as int8 and as 4-bit weights ([`WeightFormat`]). The banking77 and clinc150 models are
//!   trained once with `configs/<data>.toml` on their train split and cached under
//!   `target/bench-models/`.
//!
//! The model is the built-in default, `models/default/sentiment4.triage`. Messages are the
//! GoEmotions sentiment4 test split (training: the train split) under `$TRIAGE_DATA` (default
//! `../shared/data`, relative to the workspace root). Without that data the bench falls back to
//! the texts of `examples/messages.jsonl` (and, for training, those texts labelled by the default
//! model), and says so on stderr. Throughput is reported in messages (elements) per second.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use triage_classifier::{
    Example, Model, NoProgress, Scratch, TrainConfig, WeightFormat, read_jsonl,
};

const TRAIN_SUBSET: usize = 5_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("TRIAGE_DATA")
        .map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from);
    let dir = if dir.is_absolute() {
        dir
    } else {
        workspace().join(dir)
    };
    dir.canonicalize().unwrap_or(dir)
}

/// The texts of the JSONL lines that have a string `text` field (malformed lines are skipped).
fn texts_of(path: &Path) -> Vec<String> {
    triage_core::jsonl::read_texts(path, triage_core::jsonl::OtherLines::Skip)
        .unwrap_or_else(|e| panic!("{e}"))
        .texts
}

/// (test texts, training examples, where they came from, a tag for the benchmark names).
fn data(model: &Model) -> (Vec<String>, Vec<Example>, String, &'static str) {
    let dir = data_dir().join("goemotions_sentiment4");
    let (test, train) = (dir.join("test.jsonl"), dir.join("train.jsonl"));
    if test.is_file() && train.is_file() {
        let texts = read_jsonl(&test)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| e.text)
            .collect();
        let mut examples = read_jsonl(&train).unwrap_or_else(|e| panic!("{e}"));
        examples.truncate(TRAIN_SUBSET);
        return (texts, examples, dir.display().to_string(), "goemotions");
    }
    let fallback = workspace().join("examples/messages.jsonl");
    eprintln!(
        "classify bench: WARNING: {} not found (set TRIAGE_DATA); falling back to the {} texts of {} \
         (training: those texts labelled by the default model, repeated to {TRAIN_SUBSET}). \
         These figures are not comparable with the GoEmotions ones.",
        dir.display(),
        texts_of(&fallback).len(),
        fallback.display()
    );
    let texts = texts_of(&fallback);
    let examples = texts
        .iter()
        .cycle()
        .take(TRAIN_SUBSET)
        .map(|t| Example {
            id: None,
            text: t.clone(),
            label: model.predict(t).label,
        })
        .collect();
    (
        texts,
        examples,
        fallback.display().to_string(),
        "examples_fallback",
    )
}

/// Times `predict_into` over every text, with a reused scratch and output buffer.
fn predict_all(b: &mut criterion::Bencher<'_>, model: &Model, texts: &[String]) {
    let mut s = Scratch::default();
    let mut probs = Vec::new();
    b.iter(|| {
        let mut acc = 0f32;
        for t in texts {
            model.predict_into(black_box(t), &mut s, &mut probs);
            acc += probs[0];
        }
        black_box(acc)
    })
}

fn benches(c: &mut Criterion) {
    let model = Model::default_model();
    // The data set is part of each benchmark's name, so that criterion never compares a fallback
    // run with a GoEmotions baseline.
    let (texts, train, source, tag) = data(&model);
    assert!(!texts.is_empty(), "no messages in {source}");
    eprintln!(
        "classify bench: {} messages from {source}; model {} ({} labels); training subset {}",
        texts.len(),
        model.version(),
        model.labels().len(),
        train.len()
    );
    let n = texts.len() as u64;

    // Analyse only: text -> hashed feature ids.
    let mut g = c.benchmark_group("analyse");
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("features/{tag}"), |b| {
        let analyzer = model.analyzer();
        let mut s = Scratch::default();
        b.iter(|| {
            for t in &texts {
                // black_box(&mut s): the features written into it count as used.
                analyzer.features(black_box(t), black_box(&mut s));
            }
        })
    });
    g.finish();

    // The whole hot path: analyse + TF-IDF + logistic + softmax, buffers reused.
    let mut g = c.benchmark_group("predict");
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("predict_into/{tag}"), |b| {
        predict_all(b, &model, &texts)
    });
    g.finish();

    // Training on a subset, with the default model's own settings.
    let header = model.header();
    let config = TrainConfig {
        analyzer: header.analyzer.clone(),
        tfidf: header.tfidf.clone(),
        logistic: header.logistic.clone(),
    };
    let mut g = c.benchmark_group("train");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(train.len() as u64));
    g.bench_function(format!("train_{}/{tag}", train.len()), |b| {
        b.iter(|| {
            let m = Model::train(black_box(&train), &config, &mut NoProgress)
                .unwrap_or_else(|e| panic!("training failed: {e}"));
            black_box(m.labels().len())
        })
    });
    g.finish();
}

/// A model for `dataset` trained with `configs/<dataset>.toml`, cached by the config's and the
/// training file's content; with its test texts. `None` (and a warning) without the data.
fn many_label_model(dataset: &str) -> Option<(Model, Vec<String>)> {
    let dir = data_dir().join(dataset);
    let (train, test) = (dir.join("train.jsonl"), dir.join("test.jsonl"));
    if !(train.is_file() && test.is_file()) {
        eprintln!(
            "classify bench: WARNING: {} not found (set TRIAGE_DATA); the labels/{dataset} \
             benchmarks do not run",
            dir.display()
        );
        return None;
    }
    let config_text = std::fs::read_to_string(workspace().join(format!("configs/{dataset}.toml")))
        .unwrap_or_else(|e| panic!("configs/{dataset}.toml: {e}"));
    let train_bytes = std::fs::read(&train).unwrap_or_else(|e| panic!("{}: {e}", train.display()));
    let mut h = Sha256::new();
    h.update(config_text.as_bytes());
    h.update(&train_bytes);
    let key = hex_prefix(&h.finalize());
    let cache = workspace().join("target/bench-models");
    let path = cache.join(format!("{dataset}-{key}.triage"));
    let model = if path.is_file() {
        Model::load(&path).unwrap_or_else(|e| panic!("{e}"))
    } else {
        eprintln!(
            "classify bench: training {dataset} once (cached as {})",
            path.display()
        );
        let config: TrainConfig =
            toml::from_str(&config_text).unwrap_or_else(|e| panic!("configs/{dataset}.toml: {e}"));
        let examples = read_jsonl(&train).unwrap_or_else(|e| panic!("{e}"));
        let mut m = Model::train(&examples, &config, &mut NoProgress)
            .unwrap_or_else(|e| panic!("training {dataset}: {e}"));
        std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
        m.save(&path).unwrap_or_else(|e| panic!("{e}"));
        m
    };
    let texts = read_jsonl(&test)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.text)
        .collect();
    Some((model, texts))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// `predict_into` at 4, 77 and 151 labels, with f32, int8 and 4-bit weights.
fn labels(c: &mut Criterion) {
    let default = Model::default_model();
    let (texts, _, _, tag) = data(&default);
    let mut sets = vec![(default, texts, tag.to_string())];
    for ds in ["banking77", "clinc150"] {
        if let Some((m, t)) = many_label_model(ds) {
            sets.push((m, t, ds.to_string()));
        }
    }
    let mut g = c.benchmark_group("labels");
    for (mut model, texts, tag) in sets {
        g.throughput(Throughput::Elements(texts.len() as u64));
        for format in [WeightFormat::F32, WeightFormat::Int8, WeightFormat::Int4] {
            model.set_weight_format(format);
            let k = model.labels().len();
            g.bench_function(format!("{k}_{tag}_{format:?}").to_lowercase(), |b| {
                predict_all(b, &model, &texts)
            });
        }
    }
    g.finish();
}

criterion_group!(classify, benches, labels);
criterion_main!(classify);
