//! Property tests of the analyser and of prediction, on arbitrary text.
//!
//! Feature ids live in `Scratch`, which is private to the crate, so "same features" is checked
//! through what they determine: the tokens (`Analyzer::tokens`) and a model's probabilities,
//! compared bit for bit.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use triage_classifier::{
    Analyzer, AnalyzerConfig, Example, Model, NoProgress, Scratch, StemLanguage, TrainConfig,
};

fn bits(p: &[f32]) -> Vec<u32> {
    p.iter().map(|v| v.to_bits()).collect()
}

/// Valid analyser configurations.
fn analyzer_config() -> impl Strategy<Value = AnalyzerConfig> {
    let range = |max: u8| (1..=max).prop_flat_map(move |a| (Just(a), a..=max));
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![
            StemLanguage::None,
            StemLanguage::English,
            StemLanguage::French,
            StemLanguage::Russian,
            StemLanguage::Arabic,
            StemLanguage::Tamil,
        ]),
        prop::option::of(range(3)),
        prop::option::of(range(8)),
        10u8..=16,
    )
        .prop_filter("one block on", |(_, _, _, w, c, _)| {
            w.is_some() || c.is_some()
        })
        .prop_map(|(lowercase, nfkc, stem, w, c, hash_bits)| AnalyzerConfig {
            lowercase,
            nfkc,
            stem,
            word_ngrams: w.map_or([0, 0], |(a, b)| [a, b]),
            char_ngrams: c.map_or([0, 0], |(a, b)| [a, b]),
            hash_bits,
        })
}

/// Chat-like text: words, emoji, URLs, mentions, emoticons, non-Latin scripts, odd white space
/// and combining marks, mixed with arbitrary characters.
fn chat_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[A-Za-z']{1,10}",
        Just("https://example.org/x?y=1".to_string()),
        Just("www.a.b".to_string()),
        Just("@someone".to_string()),
        Just(":-)".to_string()),
        Just("<3".to_string()),
        Just("!!!".to_string()),
        Just("😀👍🏽".to_string()),
        Just("naïve Café ǅemal ﬁne Ⅻ".to_string()),
        Just("Привет мир".to_string()),
        Just("東京タワー".to_string()),
        Just("مرحبا".to_string()),
        Just("e\u{301}\u{308}".to_string()),
        Just("\u{3000}\u{a0}\t\n".to_string()),
        ".{1,6}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| v.join(" "))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![chat_text(), any::<String>(), "[ -~]{0,40}"]
}

struct Models {
    /// A tiny model trained here, and the same model saved and loaded back.
    trained: Model,
    loaded: Model,
    /// Trained with stemming and long char n-grams (the generic, non-packed hash path).
    stemmed: Model,
    stemmed_loaded: Model,
    /// The shipped default model (4 labels).
    default: Model,
}

fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let ex = |t: &str, l: &str| Example {
            id: None,
            text: t.into(),
            label: l.into(),
        };
        let data = vec![
            ex("thank you so much, this is great 😀", "positive"),
            ex("love it, great work :)", "positive"),
            ex("Merci beaucoup, c'est génial", "positive"),
            ex("this is awful, I hate it", "negative"),
            ex("terrible service, hate this :(", "negative"),
            ex("Это ужасно, ненавижу", "negative"),
            ex("what time does the store open", "question"),
            ex("how do I reset my password?", "question"),
            ex("where is 東京タワー ?", "question"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let train = |config: TrainConfig, name: &str| {
            let mut m = Model::train(&data, &config, &mut NoProgress).expect("trains");
            let path = dir.path().join(name);
            m.save(&path).expect("saves");
            let loaded = Model::load(&path).expect("loads");
            (m, loaded)
        };
        let mut config = TrainConfig::default();
        config.tfidf.min_df = 1;
        config.analyzer.hash_bits = 12;
        let (trained, loaded) = train(config.clone(), "a.triage");
        config.analyzer.stem = StemLanguage::English;
        config.analyzer.word_ngrams = [1, 3];
        config.analyzer.char_ngrams = [1, 8];
        config.tfidf.sublinear_tf = false;
        config.tfidf.l2_norm = false;
        let (stemmed, stemmed_loaded) = train(config, "b.triage");
        let default = Model::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/sentiment4.triage"),
        )
        .expect("the shipped default model loads");
        Models {
            trained,
            loaded,
            stemmed,
            stemmed_loaded,
            default,
        }
    })
}

fn check_probabilities(m: &Model, text: &str) -> Result<(), TestCaseError> {
    let p = m.predict(text);
    prop_assert_eq!(p.probabilities.len(), m.labels().len());
    for &v in &p.probabilities {
        prop_assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{:?}", p);
    }
    let sum: f32 = p.probabilities.iter().sum();
    prop_assert!((sum - 1.0).abs() <= 1e-4, "sum {} for {:?}", sum, text);
    prop_assert!(m.labels().contains(&p.label));
    prop_assert_eq!(
        p.confidence,
        p.probabilities.iter().copied().fold(f32::MIN, f32::max)
    );
    Ok(())
}

/// Case variants that are case-stable letter for letter: ASCII and letters of Latin-1, Greek
/// (without the final-sigma rule) and Cyrillic, whose upper and lower forms map one to one.
fn bicameral_text() -> impl Strategy<Value = String> {
    "[ -~àéïôüçñÀÉÏÔÜÇÑαβγδεζηθλμπρτφωΑΒΓΔΕΖΗΘΛΜΠΡΤΦΩжзийклмнЖЗИЙКЛМН]{0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Tokens and features never panic, for any text under any valid configuration, and
    /// reusing a `Scratch` gives what a fresh one gives.
    #[test]
    fn analysis_never_panics(config in analyzer_config(), text in any_text(),
                             other in any_text()) {
        let a = Analyzer::new(config).expect("valid config");
        let mut s = Scratch::default();
        let tokens = a.tokens(&text);
        prop_assert_eq!(a.tokenize(&text, &mut s), tokens.len());
        a.features(&other, &mut s);
        a.features(&text, &mut s);
        prop_assert_eq!(a.tokenize(&text, &mut Scratch::default()), tokens.len());
    }

    /// Out-of-range configurations are refused with an error, never a panic.
    #[test]
    fn any_config_validates_or_errors(w in any::<[u8; 2]>(), c in any::<[u8; 2]>(),
                                      hash_bits in any::<u8>()) {
        let config = AnalyzerConfig { word_ngrams: w, char_ngrams: c, hash_bits,
                                      ..Default::default() };
        let ok = config.validate().is_ok();
        prop_assert_eq!(Analyzer::new(config).is_ok(), ok);
    }

    /// Deterministic: the same text gives the same tokens and bit-identical probabilities,
    /// through `predict` (thread-local scratch) and `predict_into` with a fresh or a reused
    /// scratch.
    #[test]
    fn deterministic(text in any_text(), before in any_text()) {
        let m = models();
        for model in [&m.trained, &m.stemmed, &m.default] {
            prop_assert_eq!(model.analyzer().tokens(&text), model.analyzer().tokens(&text));
            let p = model.predict(&text);
            let mut s = Scratch::default();
            let mut out = Vec::new();
            model.predict_into(&before, &mut s, &mut out);
            model.predict_into(&text, &mut s, &mut out);
            prop_assert_eq!(bits(&out), bits(&p.probabilities));
            model.predict_into(&text, &mut Scratch::default(), &mut out);
            prop_assert_eq!(bits(&out), bits(&p.probabilities));
        }
    }

    /// Lower and upper case give the same tokens and probabilities.
    #[test]
    fn case_insensitive(text in bicameral_text()) {
        let m = models();
        let (lower, upper) = (text.to_lowercase(), text.to_uppercase());
        for model in [&m.trained, &m.stemmed, &m.default] {
            let a = model.analyzer();
            prop_assert_eq!(a.tokens(&lower), a.tokens(&upper));
            prop_assert_eq!(a.tokens(&text), a.tokens(&upper));
            prop_assert_eq!(bits(&model.predict(&lower).probabilities),
                            bits(&model.predict(&upper).probabilities));
        }
    }

    /// For any text, every model's probabilities are finite, in [0, 1], and sum to 1 ± 1e-4.
    #[test]
    fn probabilities_are_a_distribution(text in any_text()) {
        let m = models();
        for model in [&m.trained, &m.loaded, &m.stemmed, &m.stemmed_loaded, &m.default] {
            check_probabilities(model, &text)?;
        }
    }

    /// A model saved and loaded back predicts bit-identically on any text.
    #[test]
    fn saved_and_loaded_predict_identically(text in any_text()) {
        let m = models();
        for (a, b) in [(&m.trained, &m.loaded), (&m.stemmed, &m.stemmed_loaded)] {
            let (p, q) = (a.predict(&text), b.predict(&text));
            prop_assert_eq!(&p.label, &q.label);
            prop_assert_eq!(bits(&p.probabilities), bits(&q.probabilities));
        }
    }
}
