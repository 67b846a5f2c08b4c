//! Text analysis: normalise, tokenise, stem, and emit hashed n-gram features.
//!
//! Features live in two hashed spaces of `2^hash_bits` buckets each: word n-grams first, then
//! character n-grams inside word boundaries (`char_wb`, as in scikit-learn: each word is padded
//! with a space on both sides). The two blocks are normalised separately by the vectoriser, like
//! a union of two TF-IDF vectorisers.
//!
//! Nothing here allocates per token once [`Scratch`] buffers have grown to the message size.

use std::fmt;

use rust_stemmers::{Algorithm, Stemmer};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::error::{ClassifierError, Result};
use crate::tokenize::{self, Token, TokenKind};

/// Stemming language (Snowball stemmers from `rust-stemmers`), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum StemLanguage {
    /// No stemming.
    #[default]
    None,
    Arabic,
    Danish,
    Dutch,
    English,
    Finnish,
    French,
    German,
    Greek,
    Hungarian,
    Italian,
    Norwegian,
    Portuguese,
    Romanian,
    Russian,
    Spanish,
    Swedish,
    Tamil,
    Turkish,
}

impl StemLanguage {
    fn algorithm(self) -> Option<Algorithm> {
        use StemLanguage as L;
        Some(match self {
            L::None => return None,
            L::Arabic => Algorithm::Arabic,
            L::Danish => Algorithm::Danish,
            L::Dutch => Algorithm::Dutch,
            L::English => Algorithm::English,
            L::Finnish => Algorithm::Finnish,
            L::French => Algorithm::French,
            L::German => Algorithm::German,
            L::Greek => Algorithm::Greek,
            L::Hungarian => Algorithm::Hungarian,
            L::Italian => Algorithm::Italian,
            L::Norwegian => Algorithm::Norwegian,
            L::Portuguese => Algorithm::Portuguese,
            L::Romanian => Algorithm::Romanian,
            L::Russian => Algorithm::Russian,
            L::Spanish => Algorithm::Spanish,
            L::Swedish => Algorithm::Swedish,
            L::Tamil => Algorithm::Tamil,
            L::Turkish => Algorithm::Turkish,
        })
    }
}

/// How text becomes features. Stored in the model file, so a model always analyses text the way
/// it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzerConfig {
    /// Lower-case the text.
    pub lowercase: bool,
    /// NFKC-normalise non-ASCII text (ASCII text skips it: it is already in NFKC).
    pub nfkc: bool,
    /// Stem words before word n-grams (character n-grams always see the unstemmed word).
    pub stem: StemLanguage,
    /// Word n-gram range `[min, max]`; `[0, 0]` turns word features off. At most 3.
    pub word_ngrams: [u8; 2],
    /// Character n-gram range inside word boundaries `[min, max]`; `[0, 0]` turns them off. At
    /// most 8.
    pub char_ngrams: [u8; 2],
    /// Each of the two feature blocks has `2^hash_bits` buckets (10..=24).
    pub hash_bits: u8,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            nfkc: true,
            stem: StemLanguage::None,
            word_ngrams: [1, 2],
            char_ngrams: [2, 5],
            hash_bits: 20,
        }
    }
}

impl AnalyzerConfig {
    /// Checks ranges; called by [`Analyzer::new`].
    pub fn validate(&self) -> Result<()> {
        let [wmin, wmax] = self.word_ngrams;
        let [cmin, cmax] = self.char_ngrams;
        if (wmin == 0) != (wmax == 0) || wmin > wmax || wmax > 3 {
            return Err(ClassifierError::Config(format!(
                "word_ngrams must be [0, 0] or 1 <= min <= max <= 3, got [{wmin}, {wmax}]"
            )));
        }
        if (cmin == 0) != (cmax == 0) || cmin > cmax || cmax > 8 {
            return Err(ClassifierError::Config(format!(
                "char_ngrams must be [0, 0] or 1 <= min <= max <= 8, got [{cmin}, {cmax}]"
            )));
        }
        if wmax == 0 && cmax == 0 {
            return Err(ClassifierError::Config(
                "word_ngrams and char_ngrams cannot both be off".into(),
            ));
        }
        if !(10..=24).contains(&self.hash_bits) {
            return Err(ClassifierError::Config(format!(
                "hash_bits must be in 10..=24, got {}",
                self.hash_bits
            )));
        }
        Ok(())
    }

    /// The number of buckets over both blocks.
    pub fn n_buckets(&self) -> usize {
        2usize << self.hash_bits
    }
}

/// Turns text into hashed feature ids. Cheap to share between threads; per-thread state lives in
/// a [`Scratch`].
pub struct Analyzer {
    config: AnalyzerConfig,
    stemmer: Option<Stemmer>,
    shift: u32,
    char_offset: u32,
}

impl fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analyzer")
            .field("config", &self.config)
            .finish()
    }
}

/// Reusable per-thread buffers for analysis and scoring.
#[derive(Default)]
pub struct Scratch {
    pub(crate) normalised: String,
    pub(crate) tokens: Vec<Token>,
    pub(crate) chars: Vec<u32>,
    pub(crate) features: Vec<u32>,
    stems: FxHashMap<Box<str>, u64>,
    pub(crate) counter: Counter,
    pub(crate) logits: Vec<f32>,
}

/// Counts repeated feature ids within one message: a small open-addressing table that stays in
/// L1 cache and is reset by clearing only the slots it used.
#[derive(Default)]
pub(crate) struct Counter {
    /// (key, count) slots.
    slots: Vec<(u32, u16)>,
    used: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl Counter {
    /// Empties the table and makes room for `n` distinct keys at load ≤ 1/2.
    pub(crate) fn reset(&mut self, n: usize) {
        let want = (2 * n).next_power_of_two().max(64);
        if self.slots.len() < want {
            self.slots = vec![(EMPTY, 0); want];
        } else {
            for &slot in &self.used {
                self.slots[slot as usize].0 = EMPTY;
            }
        }
        self.used.clear();
    }

    #[inline]
    pub(crate) fn add(&mut self, key: u32) {
        let mask = self.slots.len() - 1;
        let mut i = (key.wrapping_mul(0x9e37_79b9) >> 7) as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.0 == key {
                slot.1 = slot.1.saturating_add(1);
                return;
            }
            if slot.0 == EMPTY {
                *slot = (key, 1);
                self.used.push(i as u32);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The distinct keys with their counts, in first-seen order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.used.iter().map(|&slot| self.slots[slot as usize])
    }
}

/// Stem memo entries kept per thread before the table is cleared.
const STEM_CACHE_MAX: usize = 1 << 18;

const SEED_WORD: u64 = 0x243f_6a88_85a3_08d3;
const SEED_CHAR: u64 = 0x1319_8a2e_0370_7344;
const URL_TOKEN: &str = "\u{1}url";
const MENTION_TOKEN: &str = "\u{1}mention";

#[inline(always)]
fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95)
}

#[inline]
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    for &b in chunks.remainder() {
        h = mix(h, b as u64);
    }
    mix(h, bytes.len() as u64)
}

impl Analyzer {
    /// Builds an analyser, validating the configuration.
    pub fn new(config: AnalyzerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            stemmer: config.stem.algorithm().map(Stemmer::create),
            shift: 64 - config.hash_bits as u32,
            char_offset: 1u32 << config.hash_bits,
            config,
        })
    }

    /// The configuration this analyser was built from.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// Bucket ids below this belong to the word block; the rest to the character block.
    pub fn char_offset(&self) -> u32 {
        self.char_offset
    }

    #[inline(always)]
    fn bucket(&self, h: u64) -> u32 {
        // Fibonacci hashing: the high bits of a multiply are well mixed.
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as u32
    }

    /// Normalises and tokenises `text` into the scratch buffers, returning the tokens' count.
    pub fn tokenize(&self, text: &str, s: &mut Scratch) -> usize {
        tokenize::normalise(
            text,
            self.config.lowercase,
            self.config.nfkc,
            &mut s.normalised,
        );
        tokenize::tokenize(&s.normalised, &mut s.tokens);
        s.tokens.len()
    }

    /// The tokens of `text` as strings (for inspection and tests; the hot path never builds
    /// strings).
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut s = Scratch::default();
        self.tokenize(text, &mut s);
        s.tokens
            .iter()
            .map(|t| match t.kind {
                TokenKind::Url => "<url>".to_string(),
                TokenKind::Mention => "<mention>".to_string(),
                _ => t.text(&s.normalised).to_string(),
            })
            .collect()
    }

    /// Analyses `text` and leaves its feature ids (with repeats) in `s.features`.
    pub fn features(&self, text: &str, s: &mut Scratch) {
        self.tokenize(text, s);
        s.features.clear();
        let [wmin, wmax] = self.config.word_ngrams;
        if wmax > 0 {
            self.word_features(s, wmin as usize, wmax as usize);
        }
        let [cmin, cmax] = self.config.char_ngrams;
        if cmax > 0 {
            self.char_features(s, cmin as usize, cmax as usize);
        }
    }

    fn token_hash(&self, tok: &Token, s: &mut Scratch) -> u64 {
        let text = match tok.kind {
            TokenKind::Url => return hash_bytes(SEED_WORD, URL_TOKEN.as_bytes()),
            TokenKind::Mention => return hash_bytes(SEED_WORD, MENTION_TOKEN.as_bytes()),
            TokenKind::Symbol => tok.text(&s.normalised),
            TokenKind::Word => tok.text(&s.normalised),
        };
        match (&self.stemmer, tok.kind) {
            (Some(stemmer), TokenKind::Word) => {
                if let Some(&h) = s.stems.get(text) {
                    return h;
                }
                let h = hash_bytes(SEED_WORD, stemmer.stem(text).as_bytes());
                if s.stems.len() >= STEM_CACHE_MAX {
                    s.stems.clear();
                }
                s.stems.insert(text.into(), h);
                h
            }
            _ => hash_bytes(SEED_WORD, text.as_bytes()),
        }
    }

    fn word_features(&self, s: &mut Scratch, nmin: usize, nmax: usize) {
        // The last (nmax - 1) token hashes, newest last.
        let mut prev = [0u64; 2];
        for (have, i) in (0..s.tokens.len()).enumerate() {
            let tok = s.tokens[i];
            let h = self.token_hash(&tok, s);
            if nmin <= 1 {
                s.features.push(self.bucket(mix(h, 1)));
            }
            // n-grams ending here: (prev[..], h)
            let mut g = h;
            for n in 2..=nmax {
                if have < n - 1 {
                    break;
                }
                g = mix(prev[2 - (n - 1)], g);
                if n >= nmin {
                    s.features.push(self.bucket(mix(g, n as u64)));
                }
            }
            prev[0] = prev[1];
            prev[1] = h;
        }
    }

    /// Character n-grams of each padded word. An n-gram's hash depends only on its characters:
    /// ASCII n-grams of up to 7 bytes are packed into a `u64` (their bytes plus the length), so
    /// the common case costs one multiply per n-gram; longer or non-ASCII n-grams are hashed
    /// character by character.
    fn char_features(&self, s: &mut Scratch, nmin: usize, nmax: usize) {
        let off = self.char_offset;
        let shift = self.shift;
        let bucket = |h: u64| off + (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as u32;
        let Scratch {
            normalised,
            tokens,
            chars,
            features,
            ..
        } = s;
        // Upper bound on what follows, so the pushes below never reallocate.
        let span: usize = tokens.iter().map(|t| (t.end - t.start) as usize + 2).sum();
        features.reserve(span * (nmax - nmin + 1));
        for tok in tokens.iter() {
            if matches!(tok.kind, TokenKind::Url | TokenKind::Mention) {
                continue;
            }
            let text = &normalised[tok.start as usize..tok.end as usize];
            if text.is_ascii() && nmax <= 7 {
                // Sliding window over " word ": `win` holds the last bytes, newest lowest.
                let bytes = text.as_bytes();
                let mut win: u64 = 0;
                let mut have = 0usize;
                let mut emit = |c: u8, have: &mut usize| {
                    win = (win << 8) | c as u64;
                    *have += 1;
                    let top = nmax.min(*have);
                    let mut n = nmin;
                    while n <= top {
                        features.push(bucket((win & MASKS[n]) | ((n as u64) << 56)));
                        n += 1;
                    }
                };
                emit(b' ', &mut have);
                for &c in bytes {
                    emit(c, &mut have);
                }
                emit(b' ', &mut have);
                continue;
            }
            chars.clear();
            chars.push(b' ' as u32);
            chars.extend(text.chars().map(u32::from));
            chars.push(b' ' as u32);
            let p = chars.as_slice();
            for start in 0..p.len() {
                let end = (start + nmax).min(p.len());
                let window = &p[start..end];
                for n in nmin..=window.len() {
                    features.push(bucket(char_gram_hash(&window[..n])));
                }
            }
        }
    }
}

/// `MASKS[n]` keeps the low `n` bytes of a window.
const MASKS: [u64; 8] = [
    0,
    0xff,
    0xffff,
    0xff_ffff,
    0xffff_ffff,
    0xff_ffff_ffff,
    0xffff_ffff_ffff,
    0xff_ffff_ffff_ffff,
];

/// The hash of one character n-gram (see [`Analyzer::char_features`]); ASCII n-grams of up to 7
/// characters take the packed form so both paths agree.
fn char_gram_hash(gram: &[u32]) -> u64 {
    if gram.len() <= 7 && gram.iter().all(|&c| c < 128) {
        let mut packed = 0u64;
        for &c in gram {
            packed = (packed << 8) | c as u64;
        }
        return packed | ((gram.len() as u64) << 56);
    }
    let mut h = SEED_CHAR;
    for &c in gram {
        h = mix(h, c as u64);
    }
    mix(h, gram.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(cfg: AnalyzerConfig, text: &str) -> Vec<u32> {
        let a = Analyzer::new(cfg).unwrap();
        let mut s = Scratch::default();
        a.features(text, &mut s);
        s.features.clone()
    }

    #[test]
    fn counts_word_ngrams() {
        let cfg = AnalyzerConfig {
            char_ngrams: [0, 0],
            ..Default::default()
        };
        // 3 unigrams + 2 bigrams
        assert_eq!(feats(cfg.clone(), "a b c").len(), 5);
        let tri = AnalyzerConfig {
            word_ngrams: [1, 3],
            ..cfg.clone()
        };
        assert_eq!(feats(tri, "a b c").len(), 6);
        let bi_only = AnalyzerConfig {
            word_ngrams: [2, 2],
            ..cfg
        };
        assert_eq!(feats(bi_only, "a b c").len(), 2);
    }

    #[test]
    fn counts_char_wb_ngrams_like_sklearn() {
        let cfg = AnalyzerConfig {
            word_ngrams: [0, 0],
            char_ngrams: [2, 5],
            ..Default::default()
        };
        // " ab " has 3 bigrams, 2 trigrams, 1 four-gram; sklearn's char_wb gives the same 6.
        assert_eq!(feats(cfg.clone(), "ab").len(), 6);
        // " a " -> " a", "a ", " a "
        assert_eq!(feats(cfg.clone(), "a").len(), 3);
        // All char features land in the char block.
        let a = Analyzer::new(cfg.clone()).unwrap();
        assert!(feats(cfg, "hello").iter().all(|&f| f >= a.char_offset()));
    }

    #[test]
    fn packed_and_generic_char_hashes_agree() {
        // "naïve" takes the generic path; its ASCII n-grams must match those of "naive".
        let cfg = AnalyzerConfig {
            word_ngrams: [0, 0],
            char_ngrams: [3, 3],
            ..Default::default()
        };
        let a = feats(cfg.clone(), "naïve");
        let b = feats(cfg, "naive");
        // " na" and "ve " are shared; "naï", "aïv", "ïve" are not.
        let shared = a.iter().filter(|f| b.contains(f)).count();
        assert_eq!(shared, 2, "{a:?} vs {b:?}");
    }

    #[test]
    fn same_text_same_features_and_case_folding() {
        let cfg = AnalyzerConfig::default();
        assert_eq!(feats(cfg.clone(), "Hello World"), feats(cfg, "hello world"));
    }

    #[test]
    fn stemming_merges_inflections() {
        let cfg = AnalyzerConfig {
            char_ngrams: [0, 0],
            word_ngrams: [1, 1],
            stem: StemLanguage::English,
            ..Default::default()
        };
        assert_eq!(feats(cfg.clone(), "running"), feats(cfg.clone(), "run"));
        let plain = AnalyzerConfig {
            stem: StemLanguage::None,
            ..cfg
        };
        assert_ne!(feats(plain.clone(), "running"), feats(plain, "run"));
    }

    #[test]
    fn rejects_bad_config() {
        for bad in [
            AnalyzerConfig {
                word_ngrams: [2, 1],
                ..Default::default()
            },
            AnalyzerConfig {
                word_ngrams: [0, 0],
                char_ngrams: [0, 0],
                ..Default::default()
            },
            AnalyzerConfig {
                hash_bits: 30,
                ..Default::default()
            },
        ] {
            assert!(Analyzer::new(bad).is_err());
        }
    }
}
