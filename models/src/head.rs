//! Classification heads on sentence embeddings.
//!
//! * **Logistic**: multinomial logistic regression (linfa-logistic `MultiLogisticRegression`, L2 penalty `alpha`)
//!   trained on the task's own labelled embeddings.
//! * **Zero-shot**: no training data; each label has a description whose embedding is the label's prototype, and
//!   the class probabilities are `softmax(cos(message, prototype) / temperature)`.
//!
//! Both give probabilities whose columns follow [`Head::labels`], and both save to the same JSON format.

use std::path::Path;

use linfa::prelude::Fit;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::encoder::Encoder;
use crate::error::{ModelsError, Result};

/// The second-opinion head shipped for the built-in default fast model: a logistic regression
/// on MiniLM embeddings of the same training data (`triage slm train-head`).
pub const DEFAULT_HEAD: &str = include_str!("../../models/default/sentiment4.head.json");

/// Options for [`Head::train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    /// L2 penalty on the weights (the loss is summed over samples, so this is about `1 / C` of scikit-learn).
    /// Default 0.1.
    pub alpha: f64,
    /// L-BFGS iterations (default 200).
    pub max_iterations: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            max_iterations: 200,
        }
    }
}

/// A classification head: embeddings (`n × dim`) in, probabilities (`n × labels`) out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HeadFile", into = "HeadFile")]
pub struct Head {
    labels: Vec<String>,
    /// `labels × dim`: logistic weights, or unit-norm prototypes.
    weights: Array2<f32>,
    /// Per-label bias (zero for zero-shot).
    bias: Array1<f32>,
    /// Logits are divided by this (1 for logistic).
    temperature: f32,
    kind: HeadKind,
}

/// Which kind of head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Trained multinomial logistic regression.
    Logistic,
    /// Cosine similarity to label-description embeddings.
    ZeroShot,
}

/// The JSON form of a head.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    format: u32,
    kind: HeadKind,
    labels: Vec<String>,
    temperature: f32,
    bias: Vec<f32>,
    /// One row per label.
    weights: Vec<Vec<f32>>,
}

const FORMAT: u32 = 1;

impl From<Head> for HeadFile {
    fn from(h: Head) -> Self {
        Self {
            format: FORMAT,
            kind: h.kind,
            labels: h.labels,
            temperature: h.temperature,
            bias: h.bias.to_vec(),
            weights: h.weights.outer_iter().map(|r| r.to_vec()).collect(),
        }
    }
}

impl TryFrom<HeadFile> for Head {
    type Error = String;

    fn try_from(f: HeadFile) -> std::result::Result<Self, String> {
        if f.format != FORMAT {
            return Err(format!(
                "unsupported head format {} (this build reads {FORMAT})",
                f.format
            ));
        }
        let k = f.labels.len();
        let dim = f.weights.first().map_or(0, Vec::len);
        if k < 2 || f.weights.len() != k || f.bias.len() != k || dim == 0 {
            return Err(format!(
                "inconsistent head: {k} labels, {} weight rows, {} biases",
                f.weights.len(),
                f.bias.len()
            ));
        }
        if f.weights.iter().any(|r| r.len() != dim) {
            return Err("weight rows differ in length".into());
        }
        let weights =
            Array2::from_shape_vec((k, dim), f.weights.concat()).map_err(|e| e.to_string())?;
        let head = Self {
            labels: f.labels,
            weights,
            bias: Array1::from(f.bias),
            temperature: f.temperature,
            kind: f.kind,
        };
        head.check().map_err(|e| e.to_string())?;
        Ok(head)
    }
}

impl Head {
    /// Trains a logistic head on embeddings `x` (`n × dim`) with targets `y` (indices into `labels`). Every label
    /// needs at least one example.
    pub fn train(
        x: &Array2<f32>,
        y: &[usize],
        labels: &[impl AsRef<str>],
        opts: &TrainOptions,
    ) -> Result<Self> {
        let labels: Vec<String> = labels.iter().map(|l| l.as_ref().to_string()).collect();
        let k = labels.len();
        if k < 2 {
            return Err(ModelsError::InvalidInput(
                "a head needs at least two labels".into(),
            ));
        }
        if x.nrows() != y.len() || x.nrows() == 0 || x.ncols() == 0 {
            return Err(ModelsError::InvalidInput(format!(
                "{} embeddings of width {} for {} targets",
                x.nrows(),
                x.ncols(),
                y.len()
            )));
        }
        let mut counts = vec![0usize; k];
        for &t in y {
            *counts.get_mut(t).ok_or_else(|| {
                ModelsError::InvalidInput(format!(
                    "target {t} is not a label index (there are {k} labels)"
                ))
            })? += 1;
        }
        if let Some(missing) = counts.iter().position(|&c| c == 0) {
            return Err(ModelsError::InvalidInput(format!(
                "label {:?} has no training examples",
                labels[missing]
            )));
        }
        if !(opts.alpha.is_finite() && opts.alpha >= 0.0) {
            return Err(ModelsError::InvalidInput(format!(
                "alpha must be >= 0, got {}",
                opts.alpha
            )));
        }

        let dataset = linfa::Dataset::new(x.mapv(f64::from), Array1::from(y.to_vec()));
        let fitted = MultiLogisticRegression::default()
            .alpha(opts.alpha)
            .max_iterations(opts.max_iterations)
            .fit(&dataset)
            .map_err(|e| ModelsError::Training(e.to_string()))?;

        // linfa orders its columns by sorted class value; put them in label order.
        let (params, intercept) = (fitted.params(), fitted.intercept());
        let mut weights = Array2::<f32>::zeros((k, x.ncols()));
        let mut bias = Array1::<f32>::zeros(k);
        for (col, &class) in fitted.classes().iter().enumerate() {
            weights
                .row_mut(class)
                .assign(&params.column(col).mapv(|v| v as f32));
            bias[class] = intercept[col] as f32;
        }
        let head = Self {
            labels,
            weights,
            bias,
            temperature: 1.0,
            kind: HeadKind::Logistic,
        };
        head.check()?;
        Ok(head)
    }

    /// A zero-shot head from label prototypes (`labels × dim`, normalised here) and a softmax temperature
    /// (e.g. 0.05: cosine differences are small).
    pub fn zero_shot(
        labels: &[impl AsRef<str>],
        prototypes: Array2<f32>,
        temperature: f32,
    ) -> Result<Self> {
        let labels: Vec<String> = labels.iter().map(|l| l.as_ref().to_string()).collect();
        if labels.len() < 2 || prototypes.nrows() != labels.len() || prototypes.ncols() == 0 {
            return Err(ModelsError::InvalidInput(format!(
                "{} labels for {} prototypes of width {} (need at least two)",
                labels.len(),
                prototypes.nrows(),
                prototypes.ncols()
            )));
        }
        let mut weights = prototypes;
        for mut row in weights.outer_iter_mut() {
            let norm = row.dot(&row).sqrt().max(1e-12);
            row /= norm;
        }
        let head = Self {
            bias: Array1::zeros(labels.len()),
            labels,
            weights,
            temperature,
            kind: HeadKind::ZeroShot,
        };
        head.check()?;
        Ok(head)
    }

    /// A zero-shot head whose prototypes are the embeddings of `(label, description)` pairs.
    pub fn zero_shot_from_descriptions(
        encoder: &Encoder,
        labels_and_descriptions: &[(&str, &str)],
        temperature: f32,
    ) -> Result<Self> {
        let labels: Vec<&str> = labels_and_descriptions.iter().map(|(l, _)| *l).collect();
        let descriptions: Vec<&str> = labels_and_descriptions.iter().map(|(_, d)| *d).collect();
        Self::zero_shot(&labels, encoder.embed(&descriptions)?, temperature)
    }

    fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(ModelsError::InvalidInput(format!(
                "temperature must be > 0, got {}",
                self.temperature
            )));
        }
        if self
            .weights
            .iter()
            .chain(self.bias.iter())
            .any(|v| !v.is_finite())
        {
            return Err(ModelsError::InvalidInput(
                "head has non-finite weights".into(),
            ));
        }
        Ok(())
    }

    /// Label names, in the order of the probability columns.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Logistic or zero-shot.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// Embedding width the head expects.
    pub fn dim(&self) -> usize {
        self.weights.ncols()
    }

    /// Class probabilities, `n × labels`, each row summing to 1.
    pub fn predict_proba(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.dim() {
            return Err(ModelsError::InvalidInput(format!(
                "embeddings have width {}, the head expects {}",
                x.ncols(),
                self.dim()
            )));
        }
        let mut logits = x.dot(&self.weights.t());
        logits += &self.bias;
        logits /= self.temperature;
        for mut row in logits.axis_iter_mut(Axis(0)) {
            let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row /= sum;
        }
        Ok(logits)
    }

    /// The most probable label index per row.
    pub fn predict(&self, x: &Array2<f32>) -> Result<Vec<usize>> {
        let p = self.predict_proba(x)?;
        Ok(p.outer_iter()
            .map(|row| triage_core::argmax(&row.to_vec()).0)
            .collect())
    }

    /// The head at `path`; without one, the head shipped for the built-in default fast model
    /// ([`DEFAULT_HEAD`]) when `for_default_model`, else an error that says how to train one.
    pub fn resolve(path: Option<&Path>, for_default_model: bool) -> Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None if for_default_model => Self::from_json(DEFAULT_HEAD),
            None => Err(ModelsError::Config(
                "no second-opinion head: set [slm] head (or pass --head); train one for this \
                 model with `triage slm train-head`"
                    .into(),
            )),
        }
    }

    /// Serialises to JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| ModelsError::InvalidInput(format!("cannot serialise head: {e}")))
    }

    /// Parses JSON written by [`Head::to_json`] / [`Head::save`].
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| ModelsError::InvalidInput(format!("not a head: {e}")))
    }

    /// Writes the head as JSON (atomically: a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        triage_core::paths::write_file(path, |f| f.write_all(json.as_bytes()))
            .map_err(|e| ModelsError::io(path, e))
    }

    /// Reads a head saved by [`Head::save`]. A missing file is [`ModelsError::NotMade`] (no
    /// installer makes a head), an unreadable one [`ModelsError::ModelCorrupt`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelsError::NotMade {
                path: path.to_path_buf(),
                what: "a second-opinion head (no such file)",
                made_by: "`triage slm train-head` (or `triage slm zero-shot`)",
            },
            _ => ModelsError::io(path, e),
        })?;
        serde_json::from_str(&text).map_err(|e| ModelsError::ModelCorrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn toy() -> (Array2<f32>, Vec<usize>) {
        let x = array![
            [1.0, 0.1, 0.0],
            [0.9, 0.0, 0.1],
            [0.0, 1.0, 0.1],
            [0.1, 0.9, 0.0],
            [0.0, 0.1, 1.0],
            [0.1, 0.0, 0.9]
        ];
        (x, vec![2, 2, 0, 0, 1, 1])
    }

    #[test]
    fn logistic_head_learns_and_round_trips() {
        let (x, y) = toy();
        let head = Head::train(&x, &y, &["b", "c", "a"], &TrainOptions::default()).expect("trains");
        assert_eq!(head.predict(&x).expect("predicts"), y);
        let p = head.predict_proba(&x).expect("predicts");
        for row in p.outer_iter() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
        let back = Head::from_json(&head.to_json().expect("json")).expect("parses");
        assert_eq!(back, head);
    }

    #[test]
    fn zero_shot_head_prefers_the_nearest_prototype() {
        let protos = array![[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]];
        let head = Head::zero_shot(&["x", "y", "z"], protos, 0.05).expect("builds");
        let (x, _) = toy();
        assert_eq!(head.predict(&x).expect("predicts"), vec![0, 0, 1, 1, 2, 2]);
        assert!(head.predict_proba(&array![[1.0, 0.0]]).is_err());
    }

    #[test]
    fn bad_training_input_is_an_error() {
        let (x, y) = toy();
        assert!(matches!(
            Head::train(&x, &y, &["a", "b", "c", "d"], &TrainOptions::default()),
            Err(ModelsError::InvalidInput(_))
        ));
        assert!(Head::train(&x, &y[..3], &["a", "b", "c"], &TrainOptions::default()).is_err());
        assert!(Head::from_json("{\"format\":1}").is_err());
    }
}
