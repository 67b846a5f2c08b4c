//! The trained model: analyser + frozen TF-IDF + logistic weights, and scoring (the hot path).
//! Split as tokenizers splits its models: [`config`] (training settings), [`trainer`] (fitting),
//! [`serialization`] (the model file), and here the model and its scoring.

pub mod config;
pub mod scoring;
pub mod serialization;
pub mod trainer;

use std::cell::RefCell;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use config::{TfidfConfig, TrainConfig};
pub use scoring::WeightFormat;
pub use serialization::{FORMAT_VERSION, ModelHeader};
pub use trainer::TrainingInfo;

use crate::analyzer::{Analyzer, Scratch};
use crate::error::Result;
use scoring::{
    F32Blocks, Kernel, LabelLoop, Portable, QuantTable, RowIndex, block_f32, block_int4, block_int8,
};

/// A bucket with no row (before unknown buckets are pointed at the all-zero row).
const NONE: u32 = u32::MAX;

/// The default fast model, built into the binary: four sentiment categories (positive,
/// negative, ambiguous, neutral) trained on GoEmotions. See `models/default/MODEL_CARD.md`.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../../models/default/sentiment4.triage");

/// A prediction: the top label, its probability, and every label's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
    /// Probabilities in [`Model::labels`] order.
    pub probabilities: Vec<f32>,
}

/// A trained TF-IDF + logistic regression classifier.
pub struct Model {
    header: ModelHeader,
    analyzer: Analyzer,
    /// bucket -> row; buckets the model does not know map to the all-zero row after the last.
    index: Vec<u32>,
    /// Bucket id of each row (kept to write the model back).
    buckets: Vec<u32>,
    /// Row-major `(rows + 1) × (1 + k)`: each feature's IDF followed by its `k` weights (the
    /// word rows, then the character rows), then one row of zeros for unknown buckets: the
    /// file's table, which `scoring` is built from.
    table: Vec<f32>,
    /// The tables the model is scored with ([`WeightFormat`]): f32 rows per block, or one
    /// quantised table (int8 or 4-bit).
    scoring: Scoring,
    intercept: Vec<f32>,
    sha256: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("labels", &self.header.labels)
            .field("n_features", &self.header.n_features)
            .finish()
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Model {
    /// The built-in default model ([`DEFAULT_MODEL`]).
    pub fn default_model() -> Self {
        Self::from_bytes(DEFAULT_MODEL, Path::new("<built-in default model>"))
            .expect("the built-in default model is valid (a test checks it)")
    }

    /// A model file, or the built-in default model when `path` is `None`.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::default_model()),
        }
    }

    /// Whether this is the built-in default model.
    pub fn is_default(&self) -> bool {
        static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.sha256 == *SHA.get_or_init(|| Self::default_model().sha256)
    }

    /// Class labels, in the order of [`Prediction::probabilities`].
    pub fn labels(&self) -> &[String] {
        &self.header.labels
    }

    /// The header: configuration, training information and held-out metrics.
    pub fn header(&self) -> &ModelHeader {
        &self.header
    }

    /// Mutable header, to attach metrics, data provenance or a description before saving.
    pub fn header_mut(&mut self) -> &mut ModelHeader {
        &mut self.header
    }

    /// The analyser.
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// A short version string: the first 12 hex digits of the file's SHA-256 (empty until
    /// saved or loaded).
    pub fn version(&self) -> &str {
        &self.sha256[..self.sha256.len().min(12)]
    }

    /// The SHA-256 of the model file's content after its checksum line.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Class probabilities of `text`, written into `out` (resized to the label count), using the
    /// caller's scratch buffers. This is the hot path: no allocation once buffers have grown.
    pub fn predict_into(&self, text: &str, s: &mut Scratch, out: &mut Vec<f32>) {
        // SAFETY: `Kernel::detected` is one of `Kernel::available()`.
        #[allow(unsafe_code)]
        unsafe {
            self.predict_with(Kernel::detected(), text, s, out)
        };
    }

    /// [`Self::predict_into`] with the scoring kernel `kernel` (the tests run each of them).
    ///
    /// # Safety
    /// `kernel` must be one of [`Kernel::available`]: the others are compiled for instructions
    /// this CPU may lack.
    #[allow(unsafe_code)]
    #[inline(always)]
    unsafe fn predict_with(&self, kernel: Kernel, text: &str, s: &mut Scratch, out: &mut Vec<f32>) {
        self.analyzer.features(text, s);
        s.counter.reset(s.features.len());
        s.counter.add_all(&s.features);
        // Each distinct known feature's table row, looked up in a loop without branches, so
        // that the cache misses of the lookups overlap. The analyser emits word features before
        // character features and the counter keeps first-seen order, so the word block comes
        // first.
        let sublinear = self.header.tfidf.sublinear_tf;
        let char_offset = self.analyzer.char_offset();
        let n_word = match &self.scoring {
            Scoring::Quant(q) => match q.index() {
                RowIndex::U16(ix) => rows_of(ix, q.zero_row(), s, sublinear, char_offset),
                RowIndex::U32(ix) => rows_of(ix, q.zero_row(), s, sublinear, char_offset),
            },
            Scoring::F32(t) => match t.index() {
                RowIndex::U16(ix) => rows_of(ix, F32Blocks::ZERO_ROW, s, sublinear, char_offset),
                RowIndex::U32(ix) => rows_of(ix, F32Blocks::ZERO_ROW, s, sublinear, char_offset),
            },
        };
        let (word, char) = s.rows.split_at(n_word);
        out.clear();
        out.extend_from_slice(&self.intercept);
        let part = &mut s.parts;
        match kernel {
            // Calling a function compiled for AVX-512 or AVX2 (the crate's unsafe blocks).
            // SAFETY: the caller passes one of `Kernel::available()` (this function's contract),
            // which names a kernel only where the CPU has its features.
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            Kernel::Avx512 => unsafe { self.score_avx512(word, char, part, out) },
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            Kernel::Avx2 => unsafe { self.score_avx2(word, char, part, out) },
            Kernel::Baseline => {
                self.score::<Portable>(word, char, part, out);
                softmax(out);
            }
        }
    }

    /// [`Self::score`] and [`softmax`] compiled for AVX2 and FMA (8 lanes in the label loops
    /// and in the exponentials).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn score_avx2(
        &self,
        word: &[(u32, f32)],
        char: &[(u32, f32)],
        part: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        self.score::<scoring::Avx2>(word, char, part, out);
        softmax(out);
    }

    /// [`Self::score`] and [`softmax`] compiled for AVX-512 (16 lanes: a 151-label row in ten
    /// steps instead of nineteen). The same arithmetic in the same order as the other kernels:
    /// the same probabilities bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    fn score_avx512(
        &self,
        word: &[(u32, f32)],
        char: &[(u32, f32)],
        part: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        self.score::<scoring::Avx512>(word, char, part, out);
        softmax(out);
    }

    /// Adds the normalised TF-IDF vector times the weights to `out`: each block's partial score
    /// and squared norm are summed separately and combined at the end (per-block L2
    /// normalisation is a per-block scale). Up to six labels, the label count is a compile-time
    /// constant so that the accumulators stay in registers; beyond, they live in `part`.
    #[inline(always)]
    fn score<L: LabelLoop>(
        &self,
        word: &[(u32, f32)],
        char: &[(u32, f32)],
        part: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        match (&self.scoring, out.len()) {
            (Scoring::F32(t), 2) => self.score_k::<2>(t, word, char, out),
            (Scoring::F32(t), 3) => self.score_k::<3>(t, word, char, out),
            (Scoring::F32(t), 4) => self.score_k::<4>(t, word, char, out),
            (Scoring::F32(t), 5) => self.score_k::<5>(t, word, char, out),
            (Scoring::F32(t), 6) => self.score_k::<6>(t, word, char, out),
            (scoring, k) => {
                // The quantised rows hold whole 16-label groups (pairs of them with 4-bit
                // weights); the accumulators match them.
                let k = match scoring {
                    Scoring::Quant(q) => q.padded_labels(),
                    Scoring::F32(_) => k,
                };
                part.clear();
                part.resize(2 * k, 0.0);
                let (w, ch) = part.split_at_mut(k);
                let (nw, nc) = match scoring {
                    Scoring::Quant(q) if q.nibbles => {
                        (block_int4::<L>(q, word, w), block_int4::<L>(q, char, ch))
                    }
                    Scoring::Quant(q) => {
                        (block_int8::<L>(q, word, w), block_int8::<L>(q, char, ch))
                    }
                    Scoring::F32(t) => {
                        (block_f32(t.word(), word, w), block_f32(t.char(), char, ch))
                    }
                };
                self.combine(w, ch, nw, nc, out);
            }
        }
    }

    #[inline(always)]
    fn score_k<const K: usize>(
        &self,
        t: &F32Blocks,
        word: &[(u32, f32)],
        char: &[(u32, f32)],
        out: &mut [f32],
    ) {
        let (mut w, mut ch) = ([0.0f32; K], [0.0f32; K]);
        let nw = block_f32(t.word(), word, &mut w);
        let nc = block_f32(t.char(), char, &mut ch);
        self.combine(&w, &ch, nw, nc, out);
    }

    /// Adds the two blocks' partial scores, each scaled by its normalisation factor, to `out`.
    #[inline(always)]
    fn combine(&self, w: &[f32], ch: &[f32], norm2_word: f32, norm2_char: f32, out: &mut [f32]) {
        let (wi, ci) = (self.inv_norm(norm2_word), self.inv_norm(norm2_char));
        for ((o, &w), &ch) in out.iter_mut().zip(w).zip(ch) {
            *o += w * wi + ch * ci;
        }
    }

    /// How the weights are held for scoring.
    pub fn weight_format(&self) -> WeightFormat {
        match &self.scoring {
            Scoring::F32(_) => WeightFormat::F32,
            Scoring::Quant(q) if q.nibbles => WeightFormat::Int4,
            Scoring::Quant(_) => WeightFormat::Int8,
        }
    }

    /// Holds the weights in `format` from now on (the default is
    /// [`WeightFormat::for_labels`]). The model file is unchanged: it always stores f32.
    pub fn set_weight_format(&mut self, format: WeightFormat) {
        let (k, n_word) = (self.header.labels.len(), self.header.n_features[0]);
        self.scoring = Scoring::new(format, &self.table, k, &self.index, n_word);
    }

    /// The factor that L2-normalises a block with squared norm `norm2` (1 without L2 norm).
    #[inline(always)]
    fn inv_norm(&self, norm2: f32) -> f32 {
        if !self.header.tfidf.l2_norm {
            1.0
        } else if norm2 > 0.0 {
            1.0 / norm2.sqrt()
        } else {
            0.0
        }
    }

    /// The share of the distinct features of the text last predicted with `s`
    /// ([`Model::predict_into`]) that the model has no weights for: n-grams it never saw in
    /// training, or dropped (1 for a text without features). A deferral signal, computed only
    /// when asked.
    pub fn unseen_share(&self, s: &Scratch) -> f32 {
        // The scoring rows are the known distinct features.
        let n = s.counter.len();
        if n == 0 {
            return 1.0;
        }
        (n - s.rows.len()) as f32 / n as f32
    }

    /// The distinct features (known or not) of the text last predicted with `s`
    /// ([`Model::predict_into`]): the cost that grows with the message's length and the
    /// analyser's n-gram ranges (each known one reads a row of weights, each one a lookup).
    pub fn distinct_features(&self, s: &Scratch) -> usize {
        s.counter.len()
    }

    /// Predicts `text`'s label (uses a per-thread scratch buffer).
    pub fn predict(&self, text: &str) -> Prediction {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut probs = std::mem::take(&mut s.logits);
            self.predict_into(text, &mut s, &mut probs);
            let p = self.prediction(&probs);
            s.logits = probs;
            p
        })
    }

    /// Turns probabilities (in label order) into a [`Prediction`].
    pub fn prediction(&self, probs: &[f32]) -> Prediction {
        let (best, conf) = triage_core::argmax(probs);
        Prediction {
            label: self.header.labels[best].clone(),
            confidence: conf,
            probabilities: probs.to_vec(),
        }
    }
}

/// The tables a model is scored with, built from its f32 `table` (rows of `1 + k`: its
/// `n_word` word rows, its character rows, the all-zero row) and `index` at load.
enum Scoring {
    F32(F32Blocks),
    Quant(QuantTable),
}

impl Scoring {
    fn new(format: WeightFormat, table: &[f32], k: usize, index: &[u32], n_word: usize) -> Self {
        match format {
            WeightFormat::F32 => Self::F32(F32Blocks::new(table, k, index, n_word)),
            WeightFormat::Int8 => Self::Quant(QuantTable::new(table, k, index, false)),
            WeightFormat::Int4 => Self::Quant(QuantTable::new(table, k, index, true)),
        }
    }

    /// The default for `k` labels ([`WeightFormat::for_labels`]).
    fn for_labels(table: &[f32], k: usize, index: &[u32], n_word: usize) -> Self {
        Self::new(WeightFormat::for_labels(k), table, k, index, n_word)
    }
}

/// Each distinct feature of `s.counter` that the model knows as (row, TF weight) into `s.rows`,
/// rows from `index`; returns how many are word features (they come first). A bucket the model
/// does not know (its row is `zero`, the all-zero row, which would add nothing) is left out, with
/// no branch: every entry is written and the length moves on only for a known one, so that the
/// lookups' cache misses still overlap.
#[inline(always)]
fn rows_of<I: Copy + Into<u32>>(
    index: &[I],
    zero: u32,
    s: &mut Scratch,
    sublinear: bool,
    char_offset: u32,
) -> usize {
    let (mut len, mut n_word) = (0, 0);
    s.rows.clear();
    s.rows.resize(s.counter.len(), (zero, 0.0));
    for &(b, t) in s.counter.items() {
        let row = index[b as usize].into();
        s.rows[len] = (row, tf_weight(t, sublinear));
        let known = usize::from(row != zero);
        len += known;
        n_word += known & usize::from(b < char_offset);
    }
    s.rows.truncate(len);
    n_word
}

/// Builds the `[idf, w_0 .. w_k-1]` row table, with the all-zero row at the end.
fn interleave(idf: &[f32], weights: &[f32], k: usize) -> Vec<f32> {
    let mut table = Vec::with_capacity((idf.len() + 1) * (k + 1));
    for (i, &v) in idf.iter().enumerate() {
        table.push(v);
        table.extend_from_slice(&weights[i * k..(i + 1) * k]);
    }
    table.resize(table.len() + k + 1, 0.0);
    table
}

/// Points the buckets that have no row (`NONE`) at the all-zero row `rows`.
fn point_unknown_at_zero_row(mut index: Vec<u32>, rows: usize) -> Vec<u32> {
    for row in &mut index {
        if *row == NONE {
            *row = rows as u32;
        }
    }
    index
}

/// `1 + ln(t)` for the counts below 16, which are nearly all of them.
static SUBLINEAR: std::sync::LazyLock<[f32; 16]> = std::sync::LazyLock::new(|| {
    let mut t = [0.0f32; 16];
    for (i, v) in t.iter_mut().enumerate().skip(1) {
        *v = 1.0 + (i as f32).ln();
    }
    t
});

#[inline]
fn tf_weight(count: u16, sublinear: bool) -> f32 {
    if count > 1 && sublinear {
        match SUBLINEAR.get(count as usize) {
            Some(&v) => v,
            None => 1.0 + (count as f32).ln(),
        }
    } else {
        count as f32
    }
}

#[inline(always)]
fn softmax(v: &mut [f32]) {
    let sum = scoring::exp_shifted(v, scoring::max(v));
    let inv = 1.0 / sum;
    for x in v.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_is_within_two_ulp_of_expf() {
        let mut worst = 0u32;
        for i in 0..=873_000 {
            let x = -(i as f32) * 1e-4;
            let (a, b) = (scoring::exp_nonpositive(x), x.exp());
            worst = worst.max(a.to_bits().abs_diff(b.to_bits()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(scoring::exp_nonpositive(0.0), 1.0);
        let floor = scoring::exp_nonpositive(-87.3);
        assert!(floor > 0.0 && floor.is_normal());
        assert_eq!(scoring::exp_nonpositive(-1e4), floor);
        assert_eq!(scoring::exp_nonpositive(f32::NEG_INFINITY), floor);
    }

    /// Every kernel the CPU can run gives the same probabilities, bit for bit, in every weight
    /// format and at label counts that fill no whole vector (5, 37, 151), and at 300, past what
    /// the AVX-512 kernels hold in registers.
    #[test]
    fn every_kernel_gives_the_same_probabilities() {
        use crate::{Example, NoProgress};
        let words = [
            "refund", "card", "card's", "late", "arrived", "pin", "blocked", "transfer", "fee",
            "cash", "atm", "rate", "top", "up", "failed", "declined", "app", "phone", "lost",
            "stolen", "🙂", "straße", "país", "again", "why", "is", "my", "the", "not", "still",
        ];
        let text = |i: usize| -> String {
            (0..3 + i % 9)
                .map(|j| words[(i * 7 + j * j * 3 + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let kernels = Kernel::available();
        assert_eq!(kernels[0], Kernel::Baseline);
        eprintln!("kernels on this CPU: {kernels:?}");
        for labels in [5usize, 37, 151, 300] {
            let data: Vec<Example> = (0..labels * 6)
                .map(|i| Example {
                    id: None,
                    text: text(i),
                    label: format!("l{}", i % labels),
                })
                .collect();
            let mut config = TrainConfig::default();
            config.tfidf.min_df = 1;
            config.logistic.max_iterations = 30;
            let mut model = Model::train(&data, &config, &mut NoProgress).expect("trains");
            for format in [WeightFormat::F32, WeightFormat::Int8, WeightFormat::Int4] {
                model.set_weight_format(format);
                let mut s = Scratch::default();
                for i in 0..200 {
                    let t = text(i * 13 + 5);
                    let mut want = Vec::new();
                    // SAFETY: every kernel comes from `Kernel::available()`.
                    #[allow(unsafe_code)]
                    unsafe {
                        model.predict_with(Kernel::Baseline, &t, &mut s, &mut want)
                    };
                    assert_eq!(want.len(), labels);
                    for &k in &kernels[1..] {
                        let mut got = Vec::new();
                        #[allow(unsafe_code)]
                        unsafe {
                            model.predict_with(k, &t, &mut s, &mut got)
                        };
                        let (w, g): (Vec<u32>, Vec<u32>) = (
                            want.iter().map(|x| x.to_bits()).collect(),
                            got.iter().map(|x| x.to_bits()).collect(),
                        );
                        assert_eq!(
                            w, g,
                            "{k:?} against the baseline, {labels} labels, {format:?}, {t:?}"
                        );
                    }
                }
            }
        }
    }

    /// The f32 blocks, each with its own rows and a two-byte index on the default model, score
    /// as the file's one table does through its four-byte index: the same probabilities bit for
    /// bit, and the same features unknown.
    #[test]
    fn f32_blocks_score_as_the_one_table() {
        let model = Model::default_model();
        let Scoring::F32(t) = &model.scoring else {
            panic!("the default model is scored in f32");
        };
        assert!(matches!(t.index(), RowIndex::U16(_)), "two bytes a bucket");
        let (k, zero_row) = (model.labels().len(), model.buckets.len() as u32);
        let (sublinear, char_offset) = (
            model.header.tfidf.sublinear_tf,
            model.analyzer.char_offset(),
        );
        let mut s = Scratch::default();
        let texts = [
            "Thanks so much, the refund came through this morning! 🙏",
            "This is the third time my order arrived broken. I'm done with you.",
            "zqxv wrrpt qqqq blorf", // nothing the model knows
            "Where can I find the invoice for last month? Straße, país, naïve",
            "ok",
        ];
        let mut unknown_seen = false;
        for text in texts {
            let mut got = Vec::new();
            model.predict_into(text, &mut s, &mut got);
            // The reference: the file's rows, through its own index, in one table (the rows of
            // features the model does not know left out, as scoring leaves them out).
            let rows: Vec<(u32, f32)> = s
                .counter
                .items()
                .iter()
                .map(|&(b, c)| (model.index[b as usize], tf_weight(c, sublinear)))
                .collect();
            let known = |r: &&(u32, f32)| r.0 != zero_row;
            let n_word = s
                .counter
                .items()
                .iter()
                .filter(|&&(b, _)| b < char_offset)
                .count();
            let word: Vec<_> = rows[..n_word].iter().filter(known).copied().collect();
            let char: Vec<_> = rows[n_word..].iter().filter(known).copied().collect();
            let (mut w, mut ch) = (vec![0.0; k], vec![0.0; k]);
            let nw = block_f32(&model.table, &word, &mut w);
            let nc = block_f32(&model.table, &char, &mut ch);
            let mut want = model.intercept.clone();
            model.combine(&w, &ch, nw, nc, &mut want);
            softmax(&mut want);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{text:?}");
            let unknown = rows.iter().filter(|r| r.0 == zero_row).count();
            unknown_seen |= unknown > 0;
            assert_eq!(
                model.unseen_share(&s),
                unknown as f32 / rows.len() as f32,
                "{text:?}"
            );
        }
        assert!(
            unknown_seen,
            "some of the texts have features the model does not know"
        );
    }

    #[test]
    fn softmax_matches_the_exact_one() {
        let logits: Vec<f32> = (0..151).map(|i| ((i as f32) * 0.37).sin() * 9.0).collect();
        let mut fast = logits.clone();
        softmax(&mut fast);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exact: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
        let sum: f64 = exact.iter().sum();
        for (f, e) in fast.iter().zip(&exact) {
            assert!((f64::from(*f) - e / sum).abs() <= 1e-6 * (e / sum) + 1e-9);
        }
        assert!((fast.iter().map(|&p| f64::from(p)).sum::<f64>() - 1.0).abs() < 1e-5);
    }
}
