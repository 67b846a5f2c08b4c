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
    /// most 8. The default, 3-grams alone, scored within 0.3 points of the best range on three
    /// dev splits (goemotions_sentiment4, goemotions_single, clinc150; docs/accuracy.md) with a
    /// quarter of the character features of 2–5.
    pub char_ngrams: [u8; 2],
    /// Each of the two feature blocks has `2^hash_bits` buckets (10..=24). The default, 18,
    /// scored as well as 20 on two dev splits (goemotions_sentiment4 65.52% against 65.42%,
    /// clinc150 91.06% against 91.03%) and keeps the bucket index (4 bytes a bucket) at 2 MiB
    /// instead of 8, nearer the cache (docs/accuracy.md).
    pub hash_bits: u8,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            nfkc: true,
            stem: StemLanguage::None,
            word_ngrams: [1, 2],
            char_ngrams: [3, 3],
            hash_bits: 18,
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
    pub(crate) text: TextBufs,
    /// Feature ids of the last [`Analyzer::features`] call, with repeats.
    pub(crate) features: Vec<u32>,
    pub(crate) counter: Counter,
    /// Distinct known features of a message: (table row, tf weight).
    pub(crate) rows: Vec<(u32, f32)>,
    pub(crate) logits: Vec<f32>,
    /// Per-block partial scores (word, then char) for models with many labels.
    pub(crate) parts: Vec<f32>,
}

/// The analyser's own buffers: the normalised text, its tokens and the stem memo.
#[derive(Default)]
pub(crate) struct TextBufs {
    pub(crate) normalised: String,
    /// `normalised` is all ASCII.
    ascii: bool,
    pub(crate) tokens: Vec<Token>,
    chars: Vec<u32>,
    stems: FxHashMap<Box<str>, u64>,
}

/// Counts repeated feature ids within one message, keeping the distinct ids in first-seen
/// order.
///
/// Nearly every feature of a chat message is distinct, so a message of up to [`SMALL`] features
/// first asks a 4,096-bit filter (512 bytes, in L1): a clear bit proves the id new. A set bit is
/// a repeat or (one chance in 16 or less) a collision: the item that set it is checked first
/// (its index is kept beside the filter, valid only where the bit is set, so nothing but the
/// filter is cleared), and only a collision looks back through the ids seen so far. Longer
/// messages use an open-addressing table, reset by clearing only the slots it used.
pub(crate) struct Counter {
    /// The distinct ids with their counts, in first-seen order: the first `len`. The vector
    /// only grows (to the largest message's feature count), so that a message writes into it
    /// without clearing or pushing.
    items: Vec<(u32, u16)>,
    len: usize,
    /// Small messages: the filter bits of the ids seen.
    seen: [u64; 64],
    /// Small messages: where a filter bit is set, the index in `items` of the id that set it
    /// (the low byte: an index of 256 and over reads as another item, and is looked for).
    first: [u8; 4096],
    /// Large messages: slots of (id, index into `items`), `EMPTY` when free.
    slots: Vec<(u32, u32)>,
    /// The slots in use, to clear them.
    used: Vec<u32>,
    large: bool,
}

/// Messages with at most this many features use the filter.
const SMALL: usize = 256;

const EMPTY: u32 = u32::MAX;

impl Default for Counter {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            len: 0,
            seen: [0; 64],
            first: [0; 4096],
            slots: Vec::new(),
            used: Vec::new(),
            large: false,
        }
    }
}

impl Counter {
    /// Empties the counter, for a message of at most `n` feature ids.
    pub(crate) fn reset(&mut self, n: usize) {
        self.len = 0;
        if self.items.len() < n {
            self.items.resize(n, (0, 0));
        }
        if self.large {
            for &slot in &self.used {
                self.slots[slot as usize].0 = EMPTY;
            }
            self.used.clear();
        }
        self.large = n > SMALL;
        if self.large {
            // Load at most 1/2.
            let want = (2 * n).next_power_of_two();
            if self.slots.len() < want {
                self.slots = vec![(EMPTY, 0); want];
            }
        } else {
            self.seen = [0; 64];
        }
    }

    /// Counts `keys`, at most the `n` feature ids [`Self::reset`] was called for.
    #[inline]
    pub(crate) fn add_all(&mut self, keys: &[u32]) {
        if self.large {
            for &key in keys {
                self.add_large(key);
            }
            return;
        }
        // On separate borrows, so that the slice's address and the count stay in registers (a
        // store into the vector might change its own fields as far as the compiler knows).
        self.len = count_small(
            keys,
            &mut self.seen,
            &mut self.first,
            &mut self.items,
            self.len,
        );
    }

    fn add_large(&mut self, key: u32) {
        let h = key.wrapping_mul(0x9e37_79b9);
        let mask = self.slots.len() - 1;
        let mut i = (h >> 7) as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.0 == key {
                let item = &mut self.items[slot.1 as usize];
                item.1 = item.1.saturating_add(1);
                return;
            }
            if slot.0 == EMPTY {
                self.slots[i] = (key, self.len as u32);
                self.items[self.len] = (key, 1);
                self.len += 1;
                self.used.push(i as u32);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// How many distinct keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The distinct keys with their counts, in first-seen order.
    pub(crate) fn items(&self) -> &[(u32, u16)] {
        &self.items[..self.len]
    }
}

/// [`Counter::add_all`] for a small message: `items[..len]` are the distinct ids so far, and
/// `items` has room for one more per key. Returns the new count.
#[inline(always)]
fn count_small(
    keys: &[u32],
    seen: &mut [u64; 64],
    first: &mut [u8; 4096],
    items: &mut [(u32, u16)],
    mut len: usize,
) -> usize {
    for &key in keys {
        let bit = (key.wrapping_mul(0x9e37_79b9) >> 20) as usize;
        let (word, mask) = (bit >> 6, 1u64 << (bit & 63));
        if seen[word] & mask == 0 {
            seen[word] |= mask;
            first[bit] = len as u8;
            items[len] = (key, 1);
            len += 1;
            continue;
        }
        // A repeat of the id that set the bit (the usual case: a word or n-gram said twice).
        let f = first[bit] as usize;
        if f < len && items[f].0 == key {
            items[f].1 = items[f].1.saturating_add(1);
            continue;
        }
        match items[..len].iter_mut().rev().find(|item| item.0 == key) {
            Some(item) => item.1 = item.1.saturating_add(1),
            None => {
                items[len] = (key, 1);
                len += 1;
            }
        }
    }
    len
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

/// [`hash_bytes`] of `text[start..end]`, without a branch on the length of a short token: the
/// bytes after the last full eight (and whatever follows them in `text`) are all mixed in, and
/// the chain is read after the token's own. Falls back to [`hash_bytes`]'s loop within eight
/// bytes of the end of `text`.
#[inline]
fn hash_span(seed: u64, text: &[u8], start: usize, end: usize) -> u64 {
    let bytes = &text[start..end];
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    let rest = chunks.remainder();
    let at = end - rest.len();
    match text.get(at..at + 8) {
        Some(next) => {
            let mut chain = [h; 8];
            for k in 0..7 {
                chain[k + 1] = mix(chain[k], next[k] as u64);
            }
            h = chain[rest.len() & 7];
        }
        None => {
            for &b in rest {
                h = mix(h, b as u64);
            }
        }
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
        let t = &mut s.text;
        tokenize::normalise(
            text,
            self.config.lowercase,
            self.config.nfkc,
            &mut t.normalised,
        );
        t.ascii = t.normalised.is_ascii();
        tokenize::tokenize(&t.normalised, &mut t.tokens);
        t.tokens.len()
    }

    /// The tokens of `text` as strings (for inspection and tests; the hot path never builds
    /// strings).
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut s = Scratch::default();
        self.tokenize(text, &mut s);
        let t = &s.text;
        t.tokens
            .iter()
            .map(|tok| match tok.kind {
                TokenKind::Url => "<url>".to_string(),
                TokenKind::Mention => "<mention>".to_string(),
                _ => tok.text(&t.normalised).to_string(),
            })
            .collect()
    }

    /// Analyses `text` and leaves its feature ids (with repeats) in `s.features`: all word
    /// features first, then all character features.
    pub fn features(&self, text: &str, s: &mut Scratch) {
        self.tokenize(text, s);
        s.features.clear();
        // Room for every feature and the 7 slots of the last short word's n-gram writes, so
        // that no write below reallocates.
        s.features.reserve(self.max_features(&s.text) + 7);
        let [wmin, wmax] = self.config.word_ngrams;
        if wmax > 0 {
            self.word_features(&mut s.text, wmin as usize, wmax as usize, &mut s.features);
        }
        let [cmin, cmax] = self.config.char_ngrams;
        if cmax > 0 {
            self.char_features(&mut s.text, cmin as usize, cmax as usize, &mut s.features);
        }
    }

    /// An upper bound on the feature ids of the tokens in `t`.
    fn max_features(&self, t: &TextBufs) -> usize {
        let [wmin, wmax] = self.config.word_ngrams;
        let [cmin, cmax] = self.config.char_ngrams;
        let words = if wmax > 0 {
            t.tokens.len() * (wmax - wmin + 1) as usize
        } else {
            0
        };
        let chars = if cmax > 0 {
            let span: usize = t
                .tokens
                .iter()
                .map(|t| (t.end - t.start) as usize + 2)
                .sum();
            span * (cmax - cmin + 1) as usize
        } else {
            0
        };
        words + chars
    }

    fn token_hash(&self, tok: &Token, s: &mut TextBufs) -> u64 {
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
            _ => hash_span(
                SEED_WORD,
                s.normalised.as_bytes(),
                tok.start as usize,
                tok.end as usize,
            ),
        }
    }

    #[inline]
    fn word_features(&self, s: &mut TextBufs, nmin: usize, nmax: usize, features: &mut Vec<u32>) {
        // The last (nmax - 1) token hashes, newest last.
        let mut prev = [0u64; 2];
        for (have, i) in (0..s.tokens.len()).enumerate() {
            let tok = s.tokens[i];
            let h = self.token_hash(&tok, s);
            if nmin <= 1 {
                features.push(self.bucket(mix(h, 1)));
            }
            // n-grams ending here: (prev[..], h)
            let mut g = h;
            for n in 2..=nmax {
                if have < n - 1 {
                    break;
                }
                g = mix(prev[2 - (n - 1)], g);
                if n >= nmin {
                    features.push(self.bucket(mix(g, n as u64)));
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
    #[inline]
    fn char_features(&self, s: &mut TextBufs, nmin: usize, nmax: usize, features: &mut Vec<u32>) {
        let off = self.char_offset;
        let shift = self.shift;
        let bucket = |h: u64| off + (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as u32;
        let TextBufs {
            normalised,
            ascii,
            tokens,
            chars,
            ..
        } = s;
        for tok in tokens.iter() {
            if matches!(tok.kind, TokenKind::Url | TokenKind::Mention) {
                continue;
            }
            let text = &normalised[tok.start as usize..tok.end as usize];
            let bytes = text.as_bytes();
            let ascii = *ascii || text.is_ascii();
            if nmin == nmax && nmin >= 2 && nmax <= 7 && bytes.len() + 2 >= nmin && ascii {
                let (n, mask, tag) = (nmin, MASKS[nmin], (nmin as u64) << 56);
                let start = tok.start as usize;
                if bytes.len() <= 6
                    && let Some(next) = normalised.as_bytes().get(start..start + 8)
                {
                    // A word of up to 6 bytes: " word " fits a u64 (first byte highest), and
                    // its `count` n-grams are its windows from the left. All 7 windows are
                    // hashed and written, and the vector cut back to the real ones: no branch
                    // on the word's length.
                    let l = bytes.len();
                    let word =
                        u64::from_be_bytes(next.try_into().unwrap_or_default()) >> (64 - 8 * l);
                    let padded = (0x20u64 << (8 * (l + 1))) | (word << 8) | 0x20;
                    let count = l + 3 - n;
                    let mut grams = [0u32; 7];
                    for (g, slot) in grams.iter_mut().enumerate() {
                        let shift = 8 * (count.wrapping_sub(1 + g) & 7);
                        *slot = bucket(((padded >> shift) & mask) | tag);
                    }
                    let len = features.len();
                    features.extend_from_slice(&grams);
                    features.truncate(len + count);
                    continue;
                }
                // One n-gram length (the default model's 4): after the first n - 1 bytes of
                // " word ", each byte ends one n-gram: a loop with no branch but its own.
                let (head, rest) = bytes.split_at(n - 2);
                let mut win = head.iter().fold(b' ' as u64, |w, &c| (w << 8) | c as u64);
                for &c in rest {
                    win = (win << 8) | c as u64;
                    features.push(bucket((win & mask) | tag));
                }
                win = (win << 8) | b' ' as u64;
                features.push(bucket((win & mask) | tag));
                continue;
            }
            if ascii && nmax <= 7 {
                // Sliding window over " word ": `win` holds the last bytes, newest lowest.
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

    proptest::proptest! {
        /// The word hash without a length branch is the plain one, for every span of the text,
        /// near its end or not.
        #[test]
        fn hash_span_is_hash_bytes(
            text in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            a in 0usize..40,
            b in 0usize..40,
        ) {
            let (start, end) = (a.min(b).min(text.len()), a.max(b).min(text.len()));
            proptest::prop_assert_eq!(
                hash_span(SEED_WORD, &text, start, end),
                hash_bytes(SEED_WORD, &text[start..end])
            );
        }

        /// Character n-grams of one length (the path taken by the default model) are those of
        /// the general definition: every n characters of each padded word, hashed by
        /// `char_gram_hash`.
        #[test]
        fn single_length_char_grams_match_definition(
            text in "[a-zA-Z0-9 '!?.é]{0,40}",
            n in 2u8..=7,
        ) {
            let cfg = AnalyzerConfig {
                word_ngrams: [0, 0],
                char_ngrams: [n, n],
                ..Default::default()
            };
            let a = Analyzer::new(cfg.clone()).unwrap();
            let mut s = Scratch::default();
            a.tokenize(&text, &mut s);
            let t = &s.text;
            let mut want = Vec::new();
            for tok in t.tokens.iter() {
                let mut p = vec![b' ' as u32];
                p.extend(tok.text(&t.normalised).chars().map(u32::from));
                p.push(b' ' as u32);
                for w in p.windows(n as usize) {
                    want.push(a.char_offset() + a.bucket(char_gram_hash(w)));
                }
            }
            proptest::prop_assert_eq!(feats(cfg, &text), want);
        }

        /// Both ways of counting (filter for small messages, table for large) give each
        /// distinct id once, in first-seen order, with its count; a reused counter gives what a
        /// fresh one gives.
        #[test]
        fn counter_counts_in_first_seen_order(
            before in proptest::collection::vec(0u32..600, 0..700),
            keys in proptest::collection::vec(0u32..600, 0..700),
        ) {
            let mut want: Vec<(u32, u16)> = Vec::new();
            for &k in &keys {
                match want.iter_mut().find(|(x, _)| *x == k) {
                    Some(w) => w.1 += 1,
                    None => want.push((k, 1)),
                }
            }
            let mut c = Counter::default();
            c.reset(before.len());
            c.add_all(&before);
            c.reset(keys.len());
            c.add_all(&keys);
            proptest::prop_assert_eq!(c.items(), &want[..]);
        }
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
