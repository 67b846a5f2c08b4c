//! Multinomial logistic regression on sparse features.
//!
//! The objective and solver are linfa-logistic's: the summed cross-entropy of a softmax over
//! `X·W + b`, plus `alpha/2 · ‖W‖²` (the intercept is not penalised), minimised by L-BFGS as
//! linfa-logistic runs it through argmin (history 10, a strong Wolfe line search), in
//! [`crate::lbfgs`], which does the same arithmetic in place. linfa-logistic's own `fit` only takes a
//! dense matrix, which text vocabularies cannot afford (rust-ml/linfa#192), so the cost and
//! gradient here walk a CSR matrix instead. `alpha` plays the role of scikit-learn's `1/C`.
//!
//! Optional per-sample weights (from class weights) scale each sample's cross-entropy.

use serde::{Deserialize, Serialize};

use crate::error::{ClassifierError, Result};
use crate::lbfgs;
use crate::model::scoring;

/// A compressed-sparse-row matrix of `f32` features.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    /// Row `i` spans `indptr[i]..indptr[i + 1]` of `indices` and `values`.
    pub indptr: Vec<usize>,
    /// Column ids.
    pub indices: Vec<u32>,
    /// Values.
    pub values: Vec<f32>,
    /// Number of columns.
    pub n_cols: usize,
}

impl Csr {
    /// An empty matrix with `n_cols` columns.
    pub fn new(n_cols: usize) -> Self {
        Self {
            indptr: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
            n_cols,
        }
    }

    /// Appends a row.
    pub fn push_row(&mut self, cols: &[u32], vals: &[f32]) {
        debug_assert_eq!(cols.len(), vals.len());
        self.indices.extend_from_slice(cols);
        self.values.extend_from_slice(vals);
        self.indptr.push(self.indices.len());
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Row `i` as (columns, values).
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }

    /// Non-zero count.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
}

/// Solver settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogisticConfig {
    /// L2 strength on the summed loss (scikit-learn's `1/C`).
    pub alpha: f64,
    /// L-BFGS iterations at most.
    pub max_iterations: u64,
    /// Stop when the gradient's L2 norm, divided by the total sample weight, falls below this.
    pub gradient_tolerance: f64,
    /// Class weights: none, `balanced` (n / (k · n_class)), its square root (the default), or
    /// explicit per label.
    pub class_weight: ClassWeight,
    /// L-BFGS curvature pairs kept (scikit-learn's and linfa's 10). Each pair holds two vectors
    /// of every weight, so a many-label fit's memory is mostly here ([`fit_memory`]); fewer
    /// pairs need less memory and usually more iterations.
    #[serde(skip_serializing_if = "is_default_history")]
    pub history: usize,
}

/// The L-BFGS history of scikit-learn and linfa-logistic.
pub const DEFAULT_HISTORY: usize = 10;

// A model file written with the default history reads as before (and older triage reads it).
fn is_default_history(h: &usize) -> bool {
    *h == DEFAULT_HISTORY
}

/// Bytes the fit allocates for `n_features × k` weights with an L-BFGS history of `history`
/// pairs, beyond the training matrix: the parameters, the gradient, the search direction, the
/// trial point and its gradient (`f64`), `2 · history` vectors of the curvature pairs (`f64`),
/// and the sweep's weights and gradient (`f32`).
///
/// ```
/// use triage_classifier::logistic::fit_memory;
/// // 95,187 features × 711 labels (GoEmotions' label strings with default settings): 13.1 GiB
/// // (the fit's peak resident size was 13.5 GiB, the data included).
/// let gib = fit_memory(95_187, 711, 10) as f64 / (1u64 << 30) as f64;
/// assert!((gib - 13.1).abs() < 0.05, "{gib}");
/// assert_eq!(fit_memory(1000, 4, 3) - fit_memory(1000, 4, 2), 2 * 8 * 1001 * 4);
/// ```
pub fn fit_memory(n_features: usize, k: usize, history: usize) -> u64 {
    let params = ((n_features + 1) * k) as u64;
    let weights = (n_features * k) as u64;
    params * 8 * (5 + 2 * history.max(1) as u64) + weights * 4 * 2
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            max_iterations: 200,
            gradient_tolerance: 1e-5,
            // A rare class (the hate speech of a moderation stream) is not drowned by the
            // common ones; on balanced data every weight is 1. docs/accuracy.md, "Class weights".
            class_weight: ClassWeight::BalancedSqrt,
            history: DEFAULT_HISTORY,
        }
    }
}

/// How to weight classes in the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every sample counts once.
    #[default]
    None,
    /// Each class's weight is `n / (k · n_class)`, as scikit-learn's `"balanced"`.
    Balanced,
    /// The square root of the balanced weight: a milder correction that keeps more accuracy.
    BalancedSqrt,
    /// Explicit weights by label; labels not listed weigh 1.
    Explicit(std::collections::BTreeMap<String, f64>),
}

/// What the optimiser did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Whether L-BFGS met its tolerance (rather than running out of iterations or failing a
    /// line search).
    pub converged: bool,
    /// Why the solver stopped, in words (argmin's wording).
    pub termination: String,
    /// Iterations run.
    pub iterations: u64,
    /// Final objective value divided by the total sample weight.
    pub final_loss: f64,
    /// Cost/gradient evaluations.
    pub evaluations: u64,
}

/// A fitted weight matrix, row-major `n_features × n_classes`, and the intercepts.
#[derive(Debug, Clone)]
pub struct Weights {
    /// `w[j * k + c]` is feature `j`'s weight for class `c`.
    pub w: Vec<f32>,
    /// One intercept per class.
    pub b: Vec<f32>,
    /// Number of classes.
    pub k: usize,
}

/// The sparse problem: the data, the class count, the L2 strength, and scratch buffers that
/// every evaluation reuses.
struct Problem<'a> {
    x: &'a Csr,
    y: &'a [u32],
    sample_weight: Option<&'a [f64]>,
    k: usize,
    alpha: f64,
    /// The weights and their gradient in `f32`, for the sweep.
    w: Vec<f32>,
    gw: Vec<f32>,
}

impl<'a> Problem<'a> {
    fn new(
        x: &'a Csr,
        y: &'a [u32],
        sample_weight: Option<&'a [f64]>,
        k: usize,
        alpha: f64,
    ) -> Option<Self> {
        Some(Self {
            x,
            y,
            sample_weight,
            k,
            alpha,
            w: lbfgs::try_zeros(x.n_cols * k)?,
            gw: lbfgs::try_zeros(x.n_cols * k)?,
        })
    }

    /// Cost at `params`, with the gradient written into `grad`. The sweep over the samples runs
    /// in `f32` (weights and gradient accumulators; half the memory traffic, which is what
    /// bounds it), the loss and the regulariser in `f64`. Few-class problems get a loop
    /// unrolled for their class count.
    fn compute(&mut self, params: &[f64], grad: &mut [f64]) -> f64 {
        let k = self.k;
        let d = self.x.n_cols;
        let (w64, b64) = params.split_at(d * k);
        for (w, &v) in self.w.iter_mut().zip(w64) {
            *w = v as f32;
        }
        let b: Vec<f32> = b64.iter().map(|&v| v as f32).collect();
        let mut w = std::mem::take(&mut self.w);
        let mut gw = std::mem::take(&mut self.gw);
        gw.fill(0.0);
        let mut gb = vec![0.0f64; k];
        let mut loss = match k {
            2 => self.sweep::<2>(&w, &b, &mut gw, &mut gb),
            3 => self.sweep::<3>(&w, &b, &mut gw, &mut gb),
            4 => self.sweep::<4>(&w, &b, &mut gw, &mut gb),
            5 => self.sweep::<5>(&w, &b, &mut gw, &mut gb),
            6 => self.sweep::<6>(&w, &b, &mut gw, &mut gb),
            8 => self.sweep::<8>(&w, &b, &mut gw, &mut gb),
            _ => self.sweep::<0>(&w, &b, &mut gw, &mut gb),
        };
        let (grad_w, grad_b) = grad.split_at_mut(d * k);
        let mut reg = 0.0;
        for ((out, &g), &wj) in grad_w.iter_mut().zip(&gw).zip(w64) {
            reg += wj * wj;
            *out = g as f64 + self.alpha * wj;
        }
        grad_b.copy_from_slice(&gb);
        loss += 0.5 * self.alpha * reg;
        std::mem::swap(&mut self.w, &mut w);
        std::mem::swap(&mut self.gw, &mut gw);
        loss
    }

    /// One pass over the samples: returns the data loss, accumulates the gradient. `K` is the
    /// class count when it is a compile-time constant, 0 otherwise.
    fn sweep<const K: usize>(&self, w: &[f32], b: &[f32], gw: &mut [f32], gb: &mut [f64]) -> f64 {
        let k = if K == 0 { self.k } else { K };
        let mut h = vec![0.0f32; k];
        let mut loss = 0.0f64;
        for i in 0..self.x.n_rows() {
            let (cols, vals) = self.x.row(i);
            h.copy_from_slice(b);
            for (&j, &v) in cols.iter().zip(vals) {
                let j = j as usize * k;
                let row = &w[j..j + k];
                for c in 0..k {
                    h[c] += v * row[c];
                }
            }
            let yi = self.y[i] as usize;
            let hy = h[yi];
            // The scorer's softmax arithmetic (vectorised, within 2 ulp of `expf`): a scalar
            // `expf` per class was a large share of a many-class fit.
            let max = scoring::max(&h);
            let sum = scoring::exp_shifted(&mut h, max);
            let sw = self.sample_weight.map_or(1.0, |s| s[i]);
            // -log softmax(h)[y] = lse(h) - h_y = ln(sum) + max - h_y
            loss += sw * ((sum as f64).ln() + (max - hy) as f64);
            let inv = sw as f32 / sum;
            for hc in h.iter_mut() {
                *hc *= inv;
            }
            h[yi] -= sw as f32;
            for (gbc, hc) in gb.iter_mut().zip(&h) {
                *gbc += *hc as f64;
            }
            for (&j, &v) in cols.iter().zip(vals) {
                let j = j as usize * k;
                let row = &mut gw[j..j + k];
                for c in 0..k {
                    row[c] += v * h[c];
                }
            }
        }
        loss
    }
}

/// Called after every L-BFGS iteration with (iteration, objective / total weight).
pub type IterationHook = Box<dyn FnMut(u64, f64) + Send>;

/// Fits multinomial logistic regression on `x` with class ids `y` in `0..k`.
pub fn fit(
    x: &Csr,
    y: &[u32],
    k: usize,
    sample_weight: Option<&[f64]>,
    config: &LogisticConfig,
    hook: Option<IterationHook>,
) -> Result<(Weights, FitReport)> {
    if x.n_rows() != y.len() {
        return Err(ClassifierError::Data(format!(
            "{} rows but {} labels",
            x.n_rows(),
            y.len()
        )));
    }
    if k < 2 {
        return Err(ClassifierError::Data(
            "training needs at least two classes".into(),
        ));
    }
    if !(config.alpha.is_finite() && config.alpha >= 0.0) {
        return Err(ClassifierError::Config(format!(
            "alpha must be finite and >= 0, got {}",
            config.alpha
        )));
    }
    if config.max_iterations == 0 {
        return Err(ClassifierError::Config(
            "max_iterations must be at least 1 (0 would write an untrained model)".into(),
        ));
    }
    if config.history == 0 {
        return Err(ClassifierError::Config(
            "history must be at least 1 (L-BFGS needs a curvature pair)".into(),
        ));
    }
    let total_weight: f64 = sample_weight.map_or(y.len() as f64, |s| s.iter().sum());
    let d = x.n_cols;
    // Every large buffer is taken fallibly before the first iteration: where the memory is not
    // there after all (the check before the fit counts what is free, not how the allocator can
    // place it under an address-space limit), the fit ends with an error, not an abort.
    let out_of_memory = || {
        ClassifierError::Memory(format!(
            "the fit could not allocate its buffers: it needs about {:.2} GiB for {} weights \
             with an L-BFGS history of {}, and the allocator could not place that much. To need \
             less: a smaller [logistic] history, a [tfidf] max_features cap, a higher min_df",
            fit_memory(x.n_cols, k, config.history) as f64 / (1u64 << 30) as f64,
            x.n_cols * k,
            config.history
        ))
    };
    let mut problem =
        Problem::new(x, y, sample_weight, k, config.alpha).ok_or_else(out_of_memory)?;
    let settings = lbfgs::Settings {
        history: config.history,
        max_iterations: config.max_iterations,
        tolerance_grad: config.gradient_tolerance * total_weight,
        tolerance_cost: 1e-10 * total_weight,
    };
    let mut params: Vec<f64> = lbfgs::try_zeros((d + 1) * k).ok_or_else(out_of_memory)?;
    let mut hook = hook;
    let outcome = lbfgs::minimise(
        &mut params,
        |p, g| problem.compute(p, g),
        settings,
        |iteration, cost| {
            if let Some(hook) = hook.as_mut() {
                hook(iteration, cost / total_weight);
            }
        },
    );
    if outcome.termination == lbfgs::Termination::OutOfMemory {
        return Err(out_of_memory());
    }
    if !outcome.cost.is_finite() {
        return Err(ClassifierError::Optimiser(format!(
            "L-BFGS ended at a non-finite cost ({})",
            outcome.termination.text()
        )));
    }
    let w = params[..d * k].iter().map(|&v| v as f32).collect();
    let b = params[d * k..].iter().map(|&v| v as f32).collect();
    Ok((
        Weights { w, b, k },
        FitReport {
            converged: outcome.termination == lbfgs::Termination::Converged,
            termination: outcome.termination.text(),
            iterations: outcome.iterations,
            final_loss: outcome.cost / total_weight,
            evaluations: outcome.evaluations,
        },
    ))
}

/// Per-sample weights for a class-weight setting, or `None` when every sample weighs 1.
pub fn sample_weights(
    config: &ClassWeight,
    y: &[u32],
    labels: &[String],
) -> Result<Option<Vec<f64>>> {
    let k = labels.len();
    let class_w: Vec<f64> = match config {
        ClassWeight::None => return Ok(None),
        ClassWeight::Balanced | ClassWeight::BalancedSqrt => {
            let power = if *config == ClassWeight::BalancedSqrt {
                0.5
            } else {
                1.0
            };
            let mut counts = vec![0usize; k];
            for &c in y {
                counts[c as usize] += 1;
            }
            counts
                .iter()
                .map(|&n| {
                    if n == 0 {
                        0.0
                    } else {
                        (y.len() as f64 / (k as f64 * n as f64)).powf(power)
                    }
                })
                .collect()
        }
        ClassWeight::Explicit(map) => {
            for name in map.keys() {
                if !labels.contains(name) {
                    return Err(ClassifierError::Config(format!(
                        "class_weight names label {name:?}, which is not in the training data"
                    )));
                }
            }
            labels
                .iter()
                .map(|l| map.get(l).copied().unwrap_or(1.0))
                .collect()
        }
    };
    // Balanced data (or weights of 1): the unweighted fit, which is the same fit.
    if class_w.iter().all(|&w| w == 1.0) {
        return Ok(None);
    }
    Ok(Some(y.iter().map(|&c| class_w[c as usize]).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;
    use linfa_logistic::MultiLogisticRegression;
    use ndarray::Array2;

    /// A small, deterministic 3-class problem with overlapping classes.
    fn toy(n: usize, d: usize) -> (Array2<f64>, Vec<u32>) {
        let mut x = Array2::<f64>::zeros((n, d));
        let mut y = Vec::with_capacity(n);
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64) / (1u64 << 31) as f64
        };
        for i in 0..n {
            let c = (i % 3) as u32;
            for j in 0..d {
                // Sparse-ish: most entries zero, class-dependent mean on a few columns.
                if rnd() < 0.3 {
                    let signal = if j % 3 == c as usize { 0.8 } else { 0.0 };
                    x[[i, j]] = signal + rnd() - 0.5;
                }
            }
            y.push(c);
        }
        (x, y)
    }

    fn to_csr(x: &Array2<f64>) -> Csr {
        let mut m = Csr::new(x.ncols());
        for row in x.rows() {
            let (cols, vals): (Vec<u32>, Vec<f32>) = row
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(j, v)| (j as u32, *v as f32))
                .unzip();
            m.push_row(&cols, &vals);
        }
        m
    }

    /// The sparse trainer and linfa-logistic's dense `fit` minimise the same objective, so on a
    /// problem small enough for the dense path they must reach the same model.
    #[test]
    fn matches_linfa_logistic_dense_fit() {
        let (x, y) = toy(300, 12);
        let alpha = 1.0;
        let dataset = Dataset::new(x.clone(), ndarray::Array1::from(y.clone()));
        let dense = MultiLogisticRegression::default()
            .alpha(alpha)
            .max_iterations(500)
            .gradient_tolerance(1e-8)
            .fit(&dataset)
            .unwrap();
        let dense_p = dense.predict_probabilities(&x);

        let cfg = LogisticConfig {
            alpha,
            max_iterations: 500,
            gradient_tolerance: 1e-10,
            class_weight: ClassWeight::None,
            history: DEFAULT_HISTORY,
        };
        let (wts, report) = fit(&to_csr(&x), &y, 3, None, &cfg, None).unwrap();
        assert!(report.iterations > 1);
        for (i, row) in x.rows().into_iter().enumerate() {
            let mut h: Vec<f64> = wts.b.iter().map(|&b| b as f64).collect();
            for (j, &v) in row.iter().enumerate() {
                for (c, hc) in h.iter_mut().enumerate() {
                    *hc += v * wts.w[j * 3 + c] as f64;
                }
            }
            let m = h.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = h.iter().map(|v| (v - m).exp()).sum();
            for c in 0..3 {
                let p = (h[c] - m).exp() / s;
                // linfa orders classes by value: 0, 1, 2 as here.
                assert!(
                    (p - dense_p[[i, c]]).abs() < 2e-3,
                    "row {i} class {c}: sparse {p} vs linfa {}",
                    dense_p[[i, c]]
                );
            }
        }
    }

    /// A fit whose buffers the allocator cannot give ends with [`ClassifierError::Memory`],
    /// not an abort ("memory allocation of N bytes failed"): here 2^40 features, terabytes.
    #[test]
    fn a_fit_without_the_memory_for_its_buffers_is_an_error() {
        let mut x = Csr::new(1 << 40);
        x.push_row(&[0], &[1.0]);
        x.push_row(&[1], &[1.0]);
        let err = fit(&x, &[0, 1], 2, None, &LogisticConfig::default(), None).unwrap_err();
        assert!(matches!(err, ClassifierError::Memory(_)), "{err:?}");
        assert!(err.to_string().contains("could not allocate"), "{err}");
        // And the minimiser alone, for a parameter vector it cannot shadow.
        let mut params = vec![0.0; 4];
        let settings = lbfgs::Settings {
            history: usize::MAX / 64,
            max_iterations: 1,
            tolerance_grad: 0.0,
            tolerance_cost: 0.0,
        };
        let outcome = lbfgs::minimise(&mut params, |_, _| 0.0, settings, |_, _| {});
        assert_eq!(outcome.termination, lbfgs::Termination::OutOfMemory);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = toy(40, 5);
        let csr = to_csr(&x);
        let sw: Vec<f64> = (0..40).map(|i| 0.5 + (i % 4) as f64 * 0.25).collect();
        let mut p = Problem::new(&csr, &y, Some(&sw), 3, 0.7).expect("memory");
        let params: Vec<f64> = (0..18)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0)
            .collect();
        let mut g = vec![0.0; 18];
        let mut scratch = vec![0.0; 18];
        p.compute(&params, &mut g);
        for i in 0..params.len() {
            let mut hi = params.clone();
            let mut lo = params.clone();
            // The sweep runs in f32, so the step must be well above f32 rounding of the params.
            hi[i] += 1e-3;
            lo[i] -= 1e-3;
            let fd = (p.compute(&hi, &mut scratch) - p.compute(&lo, &mut scratch)) / 2e-3;
            let tol = 2e-3 * (1.0 + g[i].abs());
            assert!(
                (fd - g[i]).abs() < tol,
                "param {i}: fd {fd} vs grad {}",
                g[i]
            );
        }
    }

    #[test]
    fn balanced_weights_invert_frequency() {
        let y = [0, 0, 0, 1];
        let labels = vec!["a".to_string(), "b".to_string()];
        let w = sample_weights(&ClassWeight::Balanced, &y, &labels)
            .unwrap()
            .unwrap();
        assert!((w[0] - 4.0 / 6.0).abs() < 1e-12);
        assert!((w[3] - 2.0).abs() < 1e-12);
        let w = sample_weights(&ClassWeight::BalancedSqrt, &y, &labels)
            .unwrap()
            .unwrap();
        assert!((w[3] - 2f64.sqrt()).abs() < 1e-12);
        let bad = ClassWeight::Explicit([("zzz".to_string(), 2.0)].into());
        assert!(sample_weights(&bad, &y, &labels).is_err());
        // Balanced data: every weight would be 1, so the fit is the unweighted one.
        let even = [0, 1, 0, 1];
        for cw in [ClassWeight::Balanced, ClassWeight::BalancedSqrt] {
            assert_eq!(sample_weights(&cw, &even, &labels).unwrap(), None);
        }
    }

    #[test]
    fn the_default_weighs_classes_by_the_square_root_of_balanced() {
        assert_eq!(
            LogisticConfig::default().class_weight,
            ClassWeight::BalancedSqrt
        );
        // A config that names no class weight gets the default; one that says "none" gets none.
        let c: LogisticConfig = toml::from_str("alpha = 1.0").unwrap();
        assert_eq!(c.class_weight, ClassWeight::BalancedSqrt);
        let c: LogisticConfig = toml::from_str("class_weight = \"none\"").unwrap();
        assert_eq!(c.class_weight, ClassWeight::None);
    }
}
