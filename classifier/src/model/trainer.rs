//! Training: analyse every message once, choose the features and freeze their IDF, build the
//! TF-IDF matrix, fit the logistic regression. Nothing here runs when a model predicts.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use triage_core::{Progress, Unit, memory};

use super::{
    Model, ModelHeader, NONE, TrainConfig, interleave, point_unknown_at_zero_row, tf_weight,
};
use crate::analyzer::{Analyzer, Scratch};
use crate::data::Example;
use crate::error::{ClassifierError, Result};
use crate::logistic::{self, Csr, FitReport, IterationHook};

/// Where training time went, and how the optimiser ended. (Files written before December 2026
/// also hold the times and the time of training: read, and ignored.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Training messages.
    pub n_train: usize,
    /// Features kept (word, char).
    pub n_features: [usize; 2],
    /// Non-zeros in the training matrix.
    pub nnz: usize,
    /// The optimiser's report.
    pub fit: FitReport,
    /// Seconds spent analysing and vectorising. This and the other times are not written to
    /// the model file: the same data and settings give the same file, so the same
    /// `model_version`, and a changed version means a changed model.
    #[serde(default, skip_serializing)]
    pub vectorise_seconds: f64,
    /// Seconds spent in L-BFGS (not in the file).
    #[serde(default, skip_serializing)]
    pub fit_seconds: f64,
    /// SHA-256 of the training file, when trained from one.
    pub data_sha256: Option<String>,
    /// The training file's name, when trained from one.
    pub data_file: Option<String>,
    /// The triage version that trained it.
    pub trainer_version: String,
}

impl Model {
    /// Trains a model on labelled examples.
    pub fn train(
        examples: &[Example],
        config: &TrainConfig,
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        Self::train_weighted(examples, None, config, progress)
    }

    /// Trains a model on labelled examples, each row's loss scaled by its weight in
    /// `row_weights` (one per example, finite and ≥ 0; `None`: all 1). The class weights of
    /// `config` multiply in. Distillation uses it: rows labelled by the second opinion count
    /// less than rows a person labelled.
    pub fn train_weighted(
        examples: &[Example],
        row_weights: Option<&[f64]>,
        config: &TrainConfig,
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        if let Some(w) = row_weights {
            if w.len() != examples.len() {
                return Err(ClassifierError::Data(format!(
                    "{} row weights for {} examples",
                    w.len(),
                    examples.len()
                )));
            }
            if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(ClassifierError::Data(format!(
                    "row weight {bad}: weights must be finite and at least 0"
                )));
            }
        }
        let analyzer = Analyzer::new(config.analyzer.clone())?;
        let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(ClassifierError::Data(format!(
                "need at least two labels, found {}",
                labels.len()
            )));
        }
        let y: Vec<u32> = examples
            .iter()
            .map(|e| labels.binary_search(&e.label).unwrap_or(0) as u32)
            .collect();

        // 1. Analyse every message once: its (bucket, count) pairs, and document frequencies.
        let t0 = Instant::now();
        progress.phase("analyse", Some(examples.len() as u64), Unit::Messages);
        let n_buckets = config.analyzer.n_buckets();
        let mut df = vec![0u32; n_buckets];
        let mut docs: Vec<(u32, u16)> = Vec::new();
        let mut doc_ptr = Vec::with_capacity(examples.len() + 1);
        doc_ptr.push(0usize);
        let mut s = Scratch::default();
        for (i, ex) in examples.iter().enumerate() {
            analyzer.features(&ex.text, &mut s);
            s.features.sort_unstable();
            let mut j = 0;
            while j < s.features.len() {
                let b = s.features[j];
                let mut n = 1usize;
                while j + n < s.features.len() && s.features[j + n] == b {
                    n += 1;
                }
                df[b as usize] += 1;
                docs.push((b, n.min(u16::MAX as usize) as u16));
                j += n;
            }
            doc_ptr.push(docs.len());
            if i % 1024 == 1023 {
                progress.advance(1024);
            }
        }
        progress.advance(examples.len() as u64 % 1024);
        progress.finish_phase();

        // 2. Choose features (min_df, max_features per block) and freeze the IDF.
        let split = analyzer.char_offset();
        let min_df = config.tfidf.min_df.max(1);
        let mut chosen: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for (b, &n) in df.iter().enumerate() {
            if n >= min_df {
                chosen[(b as u32 >= split) as usize].push(b as u32);
            }
        }
        // Most frequent first: the rows that most messages touch sit together in memory, which
        // is what the training sweep and scoring are bound by.
        for block in chosen.iter_mut() {
            block.sort_by_key(|&b| (std::cmp::Reverse(df[b as usize]), b));
            if let Some(max) = config.tfidf.max_features {
                block.truncate(max);
            }
        }
        let n_word = chosen[0].len();
        let buckets: Vec<u32> = chosen.concat();
        if buckets.is_empty() {
            return Err(ClassifierError::Data(
                "no feature occurs in min_df training messages: lower min_df or add data".into(),
            ));
        }
        let mut index = vec![NONE; n_buckets];
        for (row, &b) in buckets.iter().enumerate() {
            index[b as usize] = row as u32;
        }
        let n = examples.len() as f64;
        let idf: Vec<f32> = buckets
            .iter()
            .map(|&b| (((1.0 + n) / (1.0 + df[b as usize] as f64)).ln() + 1.0) as f32)
            .collect();
        drop(df);

        // 3. The TF-IDF matrix, each block L2-normalised.
        let mut x = Csr::new(buckets.len());
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for i in 0..examples.len() {
            cols.clear();
            vals.clear();
            let mut norm2 = [0.0f64; 2];
            for &(b, count) in &docs[doc_ptr[i]..doc_ptr[i + 1]] {
                let row = index[b as usize];
                if row == NONE {
                    continue;
                }
                let v = tf_weight(count, config.tfidf.sublinear_tf) * idf[row as usize];
                norm2[(row as usize >= n_word) as usize] += (v as f64) * (v as f64);
                cols.push(row);
                vals.push(v);
            }
            if config.tfidf.l2_norm {
                let inv = norm2.map(|n2| if n2 > 0.0 { 1.0 / n2.sqrt() } else { 0.0 });
                for (c, v) in cols.iter().zip(vals.iter_mut()) {
                    *v = (*v as f64 * inv[(*c as usize >= n_word) as usize]) as f32;
                }
            }
            x.push_row(&cols, &vals);
        }
        drop(docs);
        let vectorise_seconds = t0.elapsed().as_secs_f64();

        // 4. Fit.
        let t1 = Instant::now();
        let sw = logistic::sample_weights(&config.logistic.class_weight, &y, &labels)?;
        let sw = match (sw, row_weights) {
            (sw, None) => sw,
            (None, Some(r)) => Some(r.to_vec()),
            (Some(c), Some(r)) => Some(c.iter().zip(r).map(|(c, r)| c * r).collect()),
        };
        let k = labels.len();
        let history = config.logistic.history;
        let blocks = [n_word, buckets.len() - n_word];
        if let Some(note) = fit_memory_note(blocks, k, history, memory::available())? {
            progress.message(&note);
        }
        progress.phase(
            "fit",
            Some(config.logistic.max_iterations),
            Unit::Iterations,
        );
        let (tx, rx) = std::sync::mpsc::channel::<(u64, f64)>();
        let hook: IterationHook = Box::new(move |it, loss| {
            let _ = tx.send((it, loss));
        });
        let fitted = std::thread::scope(|scope| {
            let handle = scope
                .spawn(|| logistic::fit(&x, &y, k, sw.as_deref(), &config.logistic, Some(hook)));
            for (it, loss) in rx {
                progress.iteration(it, loss);
            }
            handle.join()
        })
        .map_err(|_| ClassifierError::Optimiser("the optimiser thread panicked".into()))??;
        progress.finish_phase();
        let (weights, fit) = fitted;
        let fit_seconds = t1.elapsed().as_secs_f64();

        let header = ModelHeader {
            kind: "tfidf-logistic".into(),
            labels,
            analyzer: config.analyzer.clone(),
            tfidf: config.tfidf.clone(),
            logistic: config.logistic.clone(),
            n_features: [n_word, buckets.len() - n_word],
            training: TrainingInfo {
                n_train: examples.len(),
                n_features: [n_word, buckets.len() - n_word],
                nnz: x.nnz(),
                fit,
                vectorise_seconds,
                fit_seconds,
                data_sha256: None,
                data_file: None,
                trainer_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            eval: None,
            description: None,
            body_bytes: 0,
        };
        let table = interleave(&idf, &weights.w, weights.k);
        let index = point_unknown_at_zero_row(index, buckets.len());
        let mut model = Model {
            header,
            analyzer,
            scoring: super::Scoring::for_labels(&table, weights.k, &index, n_word),
            index,
            table,
            buckets,
            intercept: weights.b,
            sha256: String::new(),
        };
        model.header.body_bytes = model.body().len();
        Ok(model)
    }
}

/// What a fit of `n_features × k` weights with `history` L-BFGS pairs will hold: an error before
/// it starts where that is more than `available` bytes, with settings that need less; a note
/// where it is over a GiB (a many-label fit), so that a user sees it before the wait.
/// `blocks` are the word and character blocks' feature counts.
fn fit_memory_note(
    blocks: [usize; 2],
    k: usize,
    history: usize,
    available: Option<u64>,
) -> Result<Option<String>> {
    const GIB: f64 = (1u64 << 30) as f64;
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / GIB);
    // Two decimals where need and room are compared: 2.0 against 2.0 says nothing.
    let gib2 = |b: u64| format!("{:.2} GiB", b as f64 / GIB);
    let n_features = blocks[0] + blocks[1];
    let need = logistic::fit_memory(n_features, k, history);
    let what = format!(
        "{:.1}M weights ({n_features} features × {k} labels) with an L-BFGS history of {history}",
        (n_features * k) as f64 / 1e6
    );
    let Some(free) = available.filter(|&free| need > free) else {
        return Ok(
            (need as f64 >= GIB).then(|| format!("the fit will hold about {}: {what}", gib(need)))
        );
    };
    // Suggestions leave a quarter of what is free: the process holds more than the fit (the
    // training matrix, the allocator's own overhead), and under an address-space limit
    // (`ulimit -v`) the allocator needs room to place each buffer.
    let target = free / 4 * 3;
    let mut less = Vec::new();
    if let Some(h) = (3..history)
        .rev()
        .find(|&h| logistic::fit_memory(n_features, k, h) <= target)
    {
        less.push(format!(
            "[logistic] history = {h} needs {} (more iterations to the same optimum)",
            gib2(logistic::fit_memory(n_features, k, h))
        ));
    }
    let per_feature = logistic::fit_memory(1, k, history) - logistic::fit_memory(0, k, history);
    let fixed = logistic::fit_memory(0, k, history);
    let room = (target.saturating_sub(fixed) / per_feature.max(1)) as usize;
    // `max_features` caps each block: the largest cap whose two blocks fit in `room` together.
    let (small, large) = (blocks[0].min(blocks[1]), blocks[0].max(blocks[1]));
    let cap = if room >= 2 * small {
        (room - small).min(large)
    } else {
        room / 2
    };
    let kept = blocks[0].min(cap) + blocks[1].min(cap);
    if kept > 0 && cap < large {
        less.push(format!(
            "[tfidf] max_features = {cap} (a cap on each block, word and character) keeps {kept} \
             features of {n_features}"
        ));
    }
    less.push("a higher [tfidf] min_df, or fewer n-gram lengths, keeps fewer features".into());
    less.push("fewer labels (rare ones merged)".into());
    Err(ClassifierError::Memory(format!(
        "the fit needs about {} for {what}, and about {} is free; to need less: {}",
        gib2(need),
        gib2(free),
        less.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    /// A fit that would not fit in memory is refused before it starts, with settings that
    /// would fit; a large one that fits is announced; a small one says nothing.
    #[test]
    fn a_fit_larger_than_free_memory_is_refused_with_what_would_fit() {
        const GIB: u64 = 1 << 30;
        // GoEmotions' 711 label strings with default settings: 88,141 word and 7,046 character
        // features, 13.1 GiB (peak RSS 13.5 GiB).
        let goemotions = [88_141, 7_046];
        let err = fit_memory_note(goemotions, 711, 10, Some(10 * GIB)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClassifierError::Memory(_)), "{err:?}");
        for part in [
            "about 13.11 GiB",
            "about 10.00 GiB is free",
            "67.7M weights (95187 features × 711 labels)",
            "history of 10",
            "[logistic] history = 4 needs 7.06 GiB",
            "[tfidf] max_features = ",
            "min_df",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        // Each suggestion fits in three quarters of what is free, and the next one up would not.
        let after = |text: &str, key: &str| -> usize {
            let rest = text.split(key).nth(1).unwrap();
            rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()]
                .parse()
                .unwrap()
        };
        let h = after(&text, "history = ");
        assert!(logistic::fit_memory(95_187, 711, h) <= 10 * GIB / 4 * 3);
        assert!(logistic::fit_memory(95_187, 711, h + 1) > 10 * GIB / 4 * 3);
        let kept_with = |blocks: [usize; 2], cap: usize| blocks[0].min(cap) + blocks[1].min(cap);
        let check_cap = |blocks: [usize; 2], free: u64| {
            let text = fit_memory_note(blocks, 711, 10, Some(free))
                .unwrap_err()
                .to_string();
            let (cap, kept) = (after(&text, "max_features = "), after(&text, " keeps "));
            assert_eq!(kept, kept_with(blocks, cap), "{text}");
            assert!(
                logistic::fit_memory(kept, 711, 10) <= free / 4 * 3,
                "{text}"
            );
            let more = kept_with(blocks, cap + 1);
            assert!(logistic::fit_memory(more, 711, 10) > free / 4 * 3, "{text}");
        };
        check_cap(goemotions, 8 * GIB);
        // One block alone (character n-grams off): the cap is not halved.
        check_cap([106_454, 0], 3 * GIB);
        // Blocks of similar size: the cap binds both.
        check_cap([50_000, 45_187], 8 * GIB);
        // Too little even for three pairs: no history is offered.
        let text = fit_memory_note(goemotions, 711, 10, Some(GIB))
            .unwrap_err()
            .to_string();
        assert!(!text.contains("history ="), "{text}");
        // Fits: a note over a GiB, nothing under one, nothing where memory is unknown and small.
        let note = fit_memory_note(goemotions, 711, 10, Some(20 * GIB))
            .unwrap()
            .unwrap();
        assert!(
            note.starts_with("the fit will hold about 13.1 GiB"),
            "{note}"
        );
        assert_eq!(
            fit_memory_note(goemotions, 711, 10, None).unwrap(),
            Some(note)
        );
        assert_eq!(
            fit_memory_note([40_000, 10_000], 4, 10, Some(GIB)).unwrap(),
            None
        );
    }

    fn ex(t: &str, l: &str) -> Example {
        Example {
            id: None,
            text: t.into(),
            label: l.into(),
        }
    }

    /// Rows weighted 0 teach nothing, and heavier rows pull the decision their way: the basis
    /// of distillation (machine-labelled rows at a reduced weight).
    #[test]
    fn row_weights_scale_what_a_row_teaches() {
        let data = [
            ex("good great", "pos"),
            ex("bad awful", "neg"),
            // Conflicting rows for "meh".
            ex("meh", "pos"),
            ex("meh", "neg"),
        ];
        let mut config = TrainConfig::default();
        config.tfidf.min_df = 1;
        config.analyzer.hash_bits = 10;
        let train = |w: &[f64]| {
            Model::train_weighted(&data, Some(w), &config, &mut NoProgress)
                .unwrap()
                .predict("meh")
        };
        assert_eq!(train(&[1.0, 1.0, 1.0, 0.0]).label, "pos");
        assert_eq!(train(&[1.0, 1.0, 0.0, 1.0]).label, "neg");
        let even = train(&[1.0, 1.0, 1.0, 1.0]).confidence;
        let leaning = train(&[1.0, 1.0, 1.0, 0.3]);
        assert_eq!(leaning.label, "pos");
        assert!(
            leaning.confidence > even,
            "{} <= {even}",
            leaning.confidence
        );
        // Bad weights are errors, not silent.
        for bad in [
            &[1.0, 1.0, 1.0][..],
            &[1.0, 1.0, 1.0, -1.0],
            &[1.0, 1.0, 1.0, f64::NAN],
        ] {
            assert!(Model::train_weighted(&data, Some(bad), &config, &mut NoProgress).is_err());
        }
    }
}
