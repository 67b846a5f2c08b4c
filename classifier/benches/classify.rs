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
//!   model's own settings (analyser, TF-IDF, logistic).
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
use triage_classifier::{Example, Model, NoProgress, Scratch, TrainConfig, read_jsonl};

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
        let mut s = Scratch::default();
        let mut probs = Vec::new();
        b.iter(|| {
            let mut acc = 0f32;
            for t in &texts {
                model.predict_into(black_box(t), &mut s, &mut probs);
                acc += probs[0];
            }
            black_box(acc)
        })
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

criterion_group!(classify, benches);
criterion_main!(classify);
