//! The trained model: analyser + frozen TF-IDF + logistic weights, training, scoring and the
//! model file.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::analyzer::{Analyzer, AnalyzerConfig, Scratch};
use crate::data::Example;
use crate::error::{ClassifierError, Result};
use crate::logistic::{self, Csr, FitReport, IterationHook, LogisticConfig};
use crate::metrics::EvalReport;

/// TF-IDF settings. IDF is computed once, at fit, and frozen into the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TfidfConfig {
    /// Use `1 + ln(tf)` instead of raw counts.
    pub sublinear_tf: bool,
    /// Keep only features seen in at least this many training messages.
    pub min_df: u32,
    /// Keep at most this many features per block (word, char), the most frequent first.
    pub max_features: Option<usize>,
    /// L2-normalise each block's vector.
    pub l2_norm: bool,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        Self {
            sublinear_tf: true,
            min_df: 2,
            max_features: None,
            l2_norm: true,
        }
    }
}

/// Everything `train` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Text analysis.
    pub analyzer: AnalyzerConfig,
    /// Term weighting.
    pub tfidf: TfidfConfig,
    /// The classifier.
    pub logistic: LogisticConfig,
}

/// Where training time went, and how the optimiser ended.
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
    /// Seconds spent analysing and vectorising.
    pub vectorise_seconds: f64,
    /// Seconds spent in L-BFGS.
    pub fit_seconds: f64,
    /// SHA-256 of the training file, when trained from one.
    pub data_sha256: Option<String>,
    /// The training file's name, when trained from one.
    pub data_file: Option<String>,
    /// When training finished (seconds since the Unix epoch).
    pub trained_at_unix: u64,
    /// The triage version that trained it.
    pub trainer_version: String,
}

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

/// Progress callbacks for training (the CLI draws bars from them).
pub trait TrainProgress: Send {
    /// A phase starts; `total` units of work if known.
    fn phase(&mut self, _name: &str, _total: Option<u64>) {}
    /// `n` more units done in the current phase.
    fn advance(&mut self, _n: u64) {}
    /// The optimiser finished iteration `iter` with this mean loss.
    fn iteration(&mut self, _iter: u64, _loss: f64) {}
    /// The phase is over.
    fn finish_phase(&mut self) {}
}

/// A [`TrainProgress`] that reports nothing.
pub struct NoProgress;
impl TrainProgress for NoProgress {}

/// What the model file's header says (everything except the arrays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelHeader {
    /// Always `"tfidf-logistic"`.
    pub kind: String,
    /// Class labels, in probability order.
    pub labels: Vec<String>,
    /// How text is analysed.
    pub analyzer: AnalyzerConfig,
    /// TF-IDF settings used at fit.
    pub tfidf: TfidfConfig,
    /// Solver settings used at fit.
    pub logistic: LogisticConfig,
    /// Features per block (word, char): the body holds `n_word + n_char` rows.
    pub n_features: [usize; 2],
    /// How it was trained.
    pub training: TrainingInfo,
    /// Metrics on a held-out set, if one was given.
    pub eval: Option<EvalReport>,
    /// Free-form description (e.g. the data source for the model card).
    pub description: Option<String>,
    /// Byte length of the binary body that follows the header.
    pub body_bytes: usize,
}

/// The magic first line; the number is the format version.
const MAGIC: &str = "TRIAGE-MODEL";
/// The model file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const NONE: u32 = u32::MAX;
/// Largest IDF a model file may hold. Training gives `1 + ln((1 + n) / (1 + df)) < 1 + ln(n)`,
/// under 45 for any number of messages.
const MAX_IDF: f32 = 1e3;
/// Largest weight or intercept magnitude a model file may hold. Trained weights are
/// L2-regularised and stay far below it (the default model's largest is about 10). With these
/// bounds a score is at most (features) × 12 × 1e3 × 1e9: finite in f32 for any text up to
/// terabytes.
const MAX_WEIGHT: f32 = 1e9;

/// A trained TF-IDF + logistic regression classifier.
pub struct Model {
    header: ModelHeader,
    analyzer: Analyzer,
    /// bucket -> row; buckets the model does not know map to the all-zero row after the last.
    index: Vec<u32>,
    /// Bucket id of each row (kept to write the model back).
    buckets: Vec<u32>,
    /// Row-major `(rows + 1) × (1 + k)`: each feature's IDF followed by its `k` weights, so
    /// scoring a feature touches one cache line; then one row of zeros for unknown buckets.
    table: Vec<f32>,
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
    /// Trains a model on labelled examples.
    pub fn train(
        examples: &[Example],
        config: &TrainConfig,
        progress: &mut dyn TrainProgress,
    ) -> Result<Self> {
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
        progress.phase("analyse", Some(examples.len() as u64));
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
        progress.phase("fit", Some(config.logistic.max_iterations));
        let (tx, rx) = std::sync::mpsc::channel::<(u64, f64)>();
        let hook: IterationHook = Box::new(move |it, loss| {
            let _ = tx.send((it, loss));
        });
        let fitted = std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                logistic::fit(
                    &x,
                    &y,
                    labels.len(),
                    sw.as_deref(),
                    &config.logistic,
                    Some(hook),
                )
            });
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
                trained_at_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                trainer_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            eval: None,
            description: None,
            body_bytes: 0,
        };
        let mut model = Model {
            header,
            analyzer,
            index: point_unknown_at_zero_row(index, buckets.len()),
            table: interleave(&idf, &weights.w, weights.k),
            buckets,
            intercept: weights.b,
            sha256: String::new(),
        };
        model.header.body_bytes = model.body().len();
        Ok(model)
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
        self.analyzer.features(text, s);
        s.counter.reset(s.features.len());
        for &b in &s.features {
            s.counter.add(b);
        }
        // Each distinct feature's table row, looked up in a loop without branches (a feature
        // the model does not know reads the all-zero row and adds nothing), so that the cache
        // misses of the lookups overlap. The analyser emits word features before character
        // features and the counter keeps first-seen order, so the word block comes first.
        let sublinear = self.header.tfidf.sublinear_tf;
        let char_offset = self.analyzer.char_offset();
        let mut n_word = 0;
        s.rows.clear();
        for (b, t) in s.counter.iter() {
            s.rows
                .push((self.index[b as usize], tf_weight(t, sublinear)));
            n_word += (b < char_offset) as usize;
        }
        let (word, char) = s.rows.split_at(n_word);
        out.clear();
        out.extend_from_slice(&self.intercept);
        match out.len() {
            2 => self.score::<2>(word, char, out),
            3 => self.score::<3>(word, char, out),
            4 => self.score::<4>(word, char, out),
            5 => self.score::<5>(word, char, out),
            6 => self.score::<6>(word, char, out),
            _ => self.score_dyn(word, char, out),
        }
        softmax(out);
    }

    /// Adds the normalised TF-IDF vector times the weights to `out`: each block's partial score
    /// and squared norm are summed separately and combined at the end (per-block L2
    /// normalisation is a per-block scale). `K` is the label count, known at compile time so
    /// that the accumulators stay in registers.
    #[inline]
    fn score<const K: usize>(&self, word: &[(u32, f32)], char: &[(u32, f32)], out: &mut [f32]) {
        let (mut w, mut ch) = ([0.0f32; K], [0.0f32; K]);
        self.combine(word, char, &mut w, &mut ch, out);
    }

    /// [`Self::score`] for any label count.
    fn score_dyn(&self, word: &[(u32, f32)], char: &[(u32, f32)], out: &mut [f32]) {
        let (mut w, mut ch) = (vec![0.0f32; out.len()], vec![0.0f32; out.len()]);
        self.combine(word, char, &mut w, &mut ch, out);
    }

    /// Scores both blocks into `w` and `ch` (zeroed, one slot per label) and adds their
    /// normalised sum to `out`.
    #[inline(always)]
    fn combine(
        &self,
        word: &[(u32, f32)],
        char: &[(u32, f32)],
        w: &mut [f32],
        ch: &mut [f32],
        out: &mut [f32],
    ) {
        let wi = self.block(word, w);
        let ci = self.block(char, ch);
        for ((o, &w), &ch) in out.iter_mut().zip(w.iter()).zip(ch.iter()) {
            *o += w * wi + ch * ci;
        }
    }

    /// Adds each row's TF-IDF value times its weights to `part` (one slot per label); returns
    /// the block's L2 normalisation factor.
    #[inline(always)]
    fn block(&self, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
        let stride = part.len() + 1;
        let mut norm2 = 0.0f32;
        for &(row, tf) in rows {
            let start = row as usize * stride;
            let r = &self.table[start..start + stride];
            let v = tf * r[0];
            norm2 += v * v;
            for (p, &wt) in part.iter_mut().zip(&r[1..]) {
                *p += v * wt;
            }
        }
        self.inv_norm(norm2)
    }

    /// The factor that L2-normalises a block with squared norm `norm2` (1 without L2 norm).
    #[inline]
    fn inv_norm(&self, norm2: f32) -> f32 {
        if !self.header.tfidf.l2_norm {
            1.0
        } else if norm2 > 0.0 {
            1.0 / norm2.sqrt()
        } else {
            0.0
        }
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
        let (best, &conf) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        Prediction {
            label: self.header.labels[best].clone(),
            confidence: conf,
            probabilities: probs.to_vec(),
        }
    }

    /// The table's feature rows, without the all-zero row at the end.
    fn rows(&self) -> &[f32] {
        &self.table[..self.buckets.len() * (self.header.labels.len() + 1)]
    }

    fn body(&self) -> Vec<u8> {
        let k = self.header.labels.len();
        let rows = self.rows();
        let mut body = Vec::with_capacity(4 * (self.buckets.len() + rows.len() + k));
        for &b in &self.buckets {
            body.extend_from_slice(&b.to_le_bytes());
        }
        let idf = rows.iter().step_by(k + 1);
        let weights = rows.chunks_exact(k + 1).flat_map(|row| row[1..].iter());
        for &v in idf.chain(weights).chain(&self.intercept) {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body
    }

    /// Writes the model file: a magic line with the format version, a checksum line, a JSON
    /// header line, then the little-endian arrays (bucket ids, IDF, weights, intercepts).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let body = self.body();
        self.header.body_bytes = body.len();
        let header = serde_json::to_string(&self.header)
            .map_err(|e| ClassifierError::model_file(path, format!("cannot encode header: {e}")))?;
        let mut hasher = Sha256::new();
        hasher.update(header.as_bytes());
        hasher.update(b"\n");
        hasher.update(&body);
        self.sha256 = hex::encode(hasher.finalize());
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            writeln!(f, "{MAGIC} {FORMAT_VERSION}")?;
            writeln!(f, "sha256 {}", self.sha256)?;
            writeln!(f, "{header}")?;
            f.write_all(&body)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| ClassifierError::io(path, e))
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ClassifierError::io(path, e))?;
        Self::read(BufReader::new(file), path)
    }

    /// Reads and validates a model from bytes (`path` only names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::read(BufReader::new(bytes), path)
    }

    fn read<R: Read>(mut r: BufReader<R>, path: &Path) -> Result<Self> {
        let bad = |reason: String| ClassifierError::model_file(path, reason);
        let mut line = Vec::new();
        let mut read_line = |r: &mut BufReader<R>, what: &str, max: u64| -> Result<String> {
            line.clear();
            r.by_ref()
                .take(max)
                .read_until(b'\n', &mut line)
                .map_err(|e| ClassifierError::io(path, e))?;
            if line.last() != Some(&b'\n') {
                return Err(bad(format!("truncated or malformed {what}")));
            }
            line.pop();
            String::from_utf8(line.clone()).map_err(|_| bad(format!("{what} is not UTF-8")))
        };
        let magic = read_line(&mut r, "first line", 64)
            .map_err(|_| bad("not a triage model file (no \"TRIAGE-MODEL\" first line)".into()))?;
        let version = magic.strip_prefix(MAGIC).map(str::trim).ok_or_else(|| {
            bad("not a triage model file (no \"TRIAGE-MODEL\" first line)".into())
        })?;
        let version: u32 = version
            .parse()
            .map_err(|_| bad(format!("unreadable format version {version:?}")))?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, but this triage reads version {FORMAT_VERSION}: \
                 retrain the model with this version (triage train) or use a matching triage"
            )));
        }
        let sum_line = read_line(&mut r, "checksum line", 128)?;
        let expected = sum_line
            .strip_prefix("sha256 ")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("malformed checksum line".into()))?
            .to_string();
        let header_line = read_line(&mut r, "header", 64 << 20)?;
        let mut body = Vec::new();
        r.read_to_end(&mut body)
            .map_err(|e| ClassifierError::io(path, e))?;
        let mut hasher = Sha256::new();
        hasher.update(header_line.as_bytes());
        hasher.update(b"\n");
        hasher.update(&body);
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            return Err(bad(format!(
                "checksum mismatch (file says {expected}, content hashes to {actual}): the file \
                 is corrupt or was edited; restore it or retrain"
            )));
        }
        let header: ModelHeader =
            serde_json::from_str(&header_line).map_err(|e| bad(format!("invalid header: {e}")))?;
        Self::from_parts(header, &body, actual).map_err(bad)
    }

    fn from_parts(
        header: ModelHeader,
        body: &[u8],
        sha256: String,
    ) -> std::result::Result<Self, String> {
        if header.kind != "tfidf-logistic" {
            return Err(format!("unknown model kind {:?}", header.kind));
        }
        let analyzer = Analyzer::new(header.analyzer.clone()).map_err(|e| e.to_string())?;
        let k = header.labels.len();
        if k < 2 {
            return Err("fewer than two labels".into());
        }
        let [n_word, n_char] = header.n_features;
        let d = n_word
            .checked_add(n_char)
            .ok_or("feature counts overflow")?;
        let expect = d
            .checked_mul(k + 2)
            .and_then(|v| v.checked_add(k))
            .and_then(|v| v.checked_mul(4))
            .ok_or("feature counts overflow")?;
        if body.len() != expect || header.body_bytes != expect {
            return Err(format!(
                "body is {} bytes, expected {expect} for {d} features and {k} labels",
                body.len()
            ));
        }
        let words = |bytes: &[u8]| -> Vec<[u8; 4]> {
            bytes
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect()
        };
        let (b_bytes, rest) = body.split_at(4 * d);
        let (idf_bytes, rest) = rest.split_at(4 * d);
        let (w_bytes, i_bytes) = rest.split_at(4 * d * k);
        let buckets: Vec<u32> = words(b_bytes).into_iter().map(u32::from_le_bytes).collect();
        let idf: Vec<f32> = words(idf_bytes)
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let weights: Vec<f32> = words(w_bytes).into_iter().map(f32::from_le_bytes).collect();
        let intercept: Vec<f32> = words(i_bytes).into_iter().map(f32::from_le_bytes).collect();
        // Finite is not enough: values near f32::MAX overflow while scoring, and the
        // probabilities come out NaN (found while writing the `model_body` fuzz target, whose
        // assertion it trips). The bounds are far above what training produces and keep every
        // score finite for any text.
        if idf
            .iter()
            .chain(&weights)
            .chain(&intercept)
            .any(|v| !v.is_finite())
        {
            return Err("non-finite values in the weights".into());
        }
        if let Some(v) = idf.iter().find(|v| !(0.0..=MAX_IDF).contains(*v)) {
            return Err(format!(
                "IDF value {v} outside [0, {MAX_IDF}]: not a model that triage trained"
            ));
        }
        if let Some(v) = weights
            .iter()
            .chain(&intercept)
            .find(|v| v.abs() > MAX_WEIGHT)
        {
            return Err(format!(
                "weight {v} outside [-{MAX_WEIGHT:e}, {MAX_WEIGHT:e}]: not a model that triage \
                 trained"
            ));
        }
        let n_buckets = header.analyzer.n_buckets();
        let split = analyzer.char_offset();
        let mut index = vec![NONE; n_buckets];
        for (row, &b) in buckets.iter().enumerate() {
            let in_char_block = b >= split;
            if b as usize >= n_buckets || in_char_block != (row >= n_word) {
                return Err(format!("bucket id {b} out of range for row {row}"));
            }
            if index[b as usize] != NONE {
                return Err(format!("bucket id {b} appears twice"));
            }
            index[b as usize] = row as u32;
        }
        Ok(Model {
            header,
            analyzer,
            index: point_unknown_at_zero_row(index, buckets.len()),
            buckets,
            table: interleave(&idf, &weights, k),
            intercept,
            sha256,
        })
    }
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

fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let ex = |t: &str, l: &str| Example {
            id: None,
            text: t.into(),
            label: l.into(),
        };
        let data = [
            ex("good great", "pos"),
            ex("good nice", "pos"),
            ex("bad awful", "neg"),
            ex("bad terrible", "neg"),
        ];
        let mut config = TrainConfig::default();
        config.tfidf.min_df = 1;
        config.analyzer.hash_bits = 10;
        Model::train(&data, &config, &mut NoProgress).unwrap()
    }

    /// The model file of `m` with its floats (IDF, then weights, then intercepts) rewritten by
    /// `edit`, behind a correct checksum.
    fn file_with(m: &Model, edit: impl Fn(&mut [f32], &mut [f32], &mut [f32])) -> Vec<u8> {
        let k = m.labels().len();
        let d = m.buckets.len();
        let mut idf: Vec<f32> = m.rows().iter().step_by(k + 1).copied().collect();
        let mut w: Vec<f32> = m
            .rows()
            .chunks_exact(k + 1)
            .flat_map(|r| r[1..].to_vec())
            .collect();
        let mut b = m.intercept.clone();
        edit(&mut idf, &mut w, &mut b);
        let mut body = Vec::new();
        for &x in &m.buckets {
            body.extend_from_slice(&x.to_le_bytes());
        }
        for &v in idf.iter().chain(&w).chain(&b) {
            body.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(body.len(), 4 * (d + d * (k + 1) + k));
        let mut header = m.header.clone();
        header.body_bytes = body.len();
        let header = serde_json::to_string(&header).unwrap();
        let mut h = Sha256::new();
        h.update(header.as_bytes());
        h.update(b"\n");
        h.update(&body);
        let mut f = format!(
            "{MAGIC} {FORMAT_VERSION}\nsha256 {}\n{header}\n",
            hex::encode(h.finalize())
        )
        .into_bytes();
        f.extend_from_slice(&body);
        f
    }

    fn load_err(bytes: &[u8]) -> String {
        match Model::from_bytes(bytes, Path::new("m.triage")) {
            Err(e @ ClassifierError::ModelFile { .. }) => e.to_string(),
            Err(e) => panic!("expected a ModelFile error, got {e}"),
            Ok(m) => panic!("loaded; predicts {:?}", m.predict("good bad great awful")),
        }
    }

    /// Regression (found with the `model_body` fuzz target): finite but extreme IDF values or
    /// weights behind a valid checksum loaded, and every prediction was NaN. They are refused at
    /// load now.
    #[test]
    fn extreme_weights_are_refused_at_load() {
        let m = tiny();
        // Unchanged, the same construction loads and predicts a distribution.
        let ok = Model::from_bytes(&file_with(&m, |_, _, _| {}), Path::new("m")).unwrap();
        let p = ok.predict("good bad great awful");
        assert!(p.probabilities.iter().all(|v| v.is_finite()), "{p:?}");

        let e = load_err(&file_with(&m, |idf, _, _| idf.fill(3e38)));
        assert!(e.contains("IDF value"), "{e}");
        let e = load_err(&file_with(&m, |idf, _, _| idf[0] = -1.0));
        assert!(e.contains("IDF value"), "{e}");
        let e = load_err(&file_with(&m, |_, w, _| w[0] = -3e38));
        assert!(e.contains("weight"), "{e}");
        let e = load_err(&file_with(&m, |_, _, b| b[1] = 2e9));
        assert!(e.contains("weight"), "{e}");
        let e = load_err(&file_with(&m, |_, w, _| w[0] = f32::NAN));
        assert!(e.contains("non-finite"), "{e}");

        // At the bounds, scores stay finite even for a long text of repeated features.
        let edge = file_with(&m, |idf, w, b| {
            idf.fill(MAX_IDF);
            for (i, x) in w.iter_mut().enumerate() {
                *x = if i % 2 == 0 { MAX_WEIGHT } else { -MAX_WEIGHT };
            }
            b.fill(MAX_WEIGHT);
        });
        let edge = Model::from_bytes(&edge, Path::new("m")).unwrap();
        let long = "good great bad awful nice terrible ".repeat(20_000);
        for text in ["good", "bad awful", long.as_str()] {
            let p = edge.predict(text);
            assert!(p.probabilities.iter().all(|v| v.is_finite()), "{p:?}");
            let sum: f32 = p.probabilities.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "{p:?}");
        }
    }
}
