//! The model file: a magic line with the format version, a checksum line, a JSON header line,
//! then the little-endian arrays (bucket ids, IDF, weights, intercepts). Reading validates every
//! part, so a damaged or foreign file is refused with the reason, never half loaded.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Model, NONE, TfidfConfig, TrainingInfo, interleave, point_unknown_at_zero_row};
use crate::analyzer::{Analyzer, AnalyzerConfig};
use crate::error::{ClassifierError, Result};
use crate::logistic::LogisticConfig;
use crate::metrics::EvalReport;

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
/// Largest IDF a model file may hold. Training gives `1 + ln((1 + n) / (1 + df)) < 1 + ln(n)`,
/// under 45 for any number of messages.
const MAX_IDF: f32 = 1e3;
/// Largest weight or intercept magnitude a model file may hold. Trained weights are
/// L2-regularised and stay far below it (the default model's largest is about 10). With these
/// bounds a score is at most (features) × 12 × 1e3 × 1e9: finite in f32 for any text up to
/// terabytes.
const MAX_WEIGHT: f32 = 1e9;

impl Model {
    /// The table's feature rows, without the all-zero row at the end.
    pub(super) fn rows(&self) -> &[f32] {
        &self.table[..self.buckets.len() * (self.header.labels.len() + 1)]
    }

    pub(super) fn body(&self) -> Vec<u8> {
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
        triage_core::paths::write_file(path, |f| {
            writeln!(f, "{MAGIC} {FORMAT_VERSION}")?;
            writeln!(f, "sha256 {}", self.sha256)?;
            writeln!(f, "{header}")?;
            f.write_all(&body)
        })
        .map_err(|e| ClassifierError::io(path, e))
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
        let table = interleave(&idf, &weights, k);
        let index = point_unknown_at_zero_row(index, buckets.len());
        Ok(Model {
            header,
            analyzer,
            scoring: super::Scoring::for_labels(&table, k, &index, n_word),
            index,
            buckets,
            table,
            intercept,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::TrainConfig;
    use super::*;
    use crate::NoProgress;
    use crate::data::Example;

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
