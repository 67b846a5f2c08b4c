//! Any string through the analyser (tokens and features, for several configurations) and the
//! built-in default model: never a panic, and the probabilities are finite and sum to ~1.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use triage_classifier::{Analyzer, AnalyzerConfig, Model, Scratch, StemLanguage};

struct State {
    analyzers: Vec<Analyzer>,
    model: Model,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let configs = [
            AnalyzerConfig::default(),
            // Stemming, word trigrams, and char n-grams past the 7-byte packed fast path.
            AnalyzerConfig {
                stem: StemLanguage::English,
                word_ngrams: [1, 3],
                char_ngrams: [1, 8],
                hash_bits: 10,
                ..Default::default()
            },
            // No case folding, no NFKC, char n-grams only.
            AnalyzerConfig {
                lowercase: false,
                nfkc: false,
                word_ngrams: [0, 0],
                char_ngrams: [3, 3],
                ..Default::default()
            },
            // Word n-grams only, a non-Latin stemmer.
            AnalyzerConfig {
                stem: StemLanguage::Russian,
                word_ngrams: [2, 3],
                char_ngrams: [0, 0],
                hash_bits: 24,
                ..Default::default()
            },
        ];
        State {
            analyzers: configs
                .into_iter()
                .map(|c| Analyzer::new(c).expect("valid analyser config"))
                .collect(),
            model: triage_classifier::Model::default_model(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let st = state();
    // One scratch reused across analysers and inputs, as the service does. (Determinism and
    // fresh-vs-reused scratch equality are property tests in classifier/tests/prop_analyzer.rs;
    // here each input is analysed once per configuration to keep executions cheap.)
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        for a in &st.analyzers {
            a.features(&text, &mut s);
        }
    });
    let _ = st.analyzers[0].tokens(&text);
    let p = st.model.predict(&text);
    let sum: f32 = p.probabilities.iter().sum();
    assert!(
        p.probabilities
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
        "{p:?}"
    );
    assert!((sum - 1.0).abs() < 1e-4, "sum {sum}: {p:?}");
    assert!(p.confidence.is_finite());
    assert!(st.model.labels().contains(&p.label));
});

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}
