//! Evaluation: accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix, and the
//! coverage/accuracy table that the router's thresholds are read from.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The label.
    pub label: String,
    /// Of the messages predicted as this label, the share that are.
    pub precision: f64,
    /// Of the messages with this label, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Messages with this label.
    pub support: usize,
}

/// One row of the coverage table: defer the messages whose confidence is below `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageRow {
    /// Confidence threshold.
    pub threshold: f64,
    /// Share of messages below the threshold (what a router would defer).
    pub deferred: f64,
    /// Accuracy on the messages at or above it (what the fast path keeps); `None` where it
    /// keeps none.
    pub kept_accuracy: Option<f64>,
    /// Accuracy on the deferred messages; `None` where none is deferred.
    pub deferred_accuracy: Option<f64>,
}

/// A full evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Messages evaluated.
    pub n: usize,
    /// Share predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1.
    pub macro_f1: f64,
    /// Per class, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// Labels, in the matrix's order.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Thresholds 0.50, 0.55, … 0.95.
    pub coverage: Vec<CoverageRow>,
}

/// The thresholds of the coverage table.
pub fn coverage_thresholds() -> Vec<f64> {
    (0..10).map(|i| 0.5 + 0.05 * i as f64).collect()
}

impl EvalReport {
    /// Builds a report from true and predicted class ids (indices into `labels`) and the
    /// confidence of each prediction.
    pub fn new(
        labels: &[String],
        truth: &[usize],
        predicted: &[usize],
        confidence: &[f32],
    ) -> Self {
        let k = labels.len();
        let n = truth.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    label: labels[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        // Macro-F1 over the classes present in the truth or the predictions (as scikit-learn).
        let present: Vec<&ClassMetrics> = per_class
            .iter()
            .enumerate()
            .filter(|(c, m)| m.support > 0 || confusion.iter().any(|row| row[*c] > 0))
            .map(|(_, m)| m)
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|m| m.f1).sum::<f64>() / present.len() as f64
        };
        let coverage = coverage_thresholds()
            .into_iter()
            .map(|t| {
                let (mut kept, mut kept_ok, mut def, mut def_ok) = (0usize, 0usize, 0usize, 0usize);
                for i in 0..n {
                    let ok = truth[i] == predicted[i];
                    if (confidence[i] as f64) < t {
                        def += 1;
                        def_ok += ok as usize;
                    } else {
                        kept += 1;
                        kept_ok += ok as usize;
                    }
                }
                CoverageRow {
                    threshold: t,
                    deferred: ratio(def, n),
                    kept_accuracy: (kept > 0).then(|| ratio(kept_ok, kept)),
                    deferred_accuracy: (def > 0).then(|| ratio(def_ok, def)),
                }
            })
            .collect();
        EvalReport {
            n,
            accuracy: ratio(correct, n),
            macro_f1,
            per_class,
            labels: labels.to_vec(),
            confusion,
            coverage,
        }
    }

    /// A human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "messages {}   accuracy {:.2}%   macro-F1 {:.4}\n",
            self.n,
            100.0 * self.accuracy,
            self.macro_f1
        );
        let w = self
            .labels
            .iter()
            .map(|l| columns(l))
            .max()
            .unwrap_or(5)
            .clamp(5, 28);
        let _ = writeln!(s, "{:<w$}  precision  recall      f1  support", "label");
        for m in &self.per_class {
            let _ = writeln!(
                s,
                "{}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                fit(&m.label, w, false),
                m.precision,
                m.recall,
                m.f1,
                m.support
            );
        }
        if self.labels.len() <= 12 {
            let _ = writeln!(s, "\nconfusion matrix (rows: true, columns: predicted)");
            let cw = self
                .confusion
                .iter()
                .flatten()
                .map(|v| v.to_string().len())
                .max()
                .unwrap_or(1)
                .max(4);
            let _ = write!(s, "{:<w$}", "");
            for l in &self.labels {
                let _ = write!(s, " {}", fit(l, cw, true));
            }
            let _ = writeln!(s);
            for (l, row) in self.labels.iter().zip(&self.confusion) {
                let _ = write!(s, "{}", fit(l, w, false));
                for v in row {
                    let _ = write!(s, " {v:>cw$}");
                }
                let _ = writeln!(s);
            }
        } else {
            let _ = writeln!(
                s,
                "\nconfusion matrix: {} labels, shown with --json or --report; most confused pairs:",
                self.labels.len()
            );
            let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
            for (t, row) in self.confusion.iter().enumerate() {
                for (p, &v) in row.iter().enumerate() {
                    if t != p && v > 0 {
                        pairs.push((v, t, p));
                    }
                }
            }
            pairs.sort_by(|a, b| b.cmp(a));
            for (v, t, p) in pairs.into_iter().take(10) {
                let _ = writeln!(s, "  {v:>4}  {} -> {}", self.labels[t], self.labels[p]);
            }
        }
        let _ = writeln!(
            s,
            "\ncoverage: defer messages below a confidence threshold\nthreshold  deferred  kept-accuracy  deferred-accuracy"
        );
        for r in &self.coverage {
            // Nothing kept (or nothing deferred) has no accuracy: a dash, not 0.00%.
            let pct = |share: Option<f64>| match share {
                Some(a) => format!("{:.2}%", 100.0 * a),
                None => "–".to_string(),
            };
            let _ = writeln!(
                s,
                "{:>9.2}  {:>7.1}%  {:>13}  {:>17}",
                r.threshold,
                100.0 * r.deferred,
                pct(r.kept_accuracy),
                pct(r.deferred_accuracy)
            );
        }
        s
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The columns `s` takes in a terminal: two for a wide character (CJK, most emoji), none for a
/// combining mark (`{:<w$}` counts characters, which misaligned a label such as `café ☕`).
fn columns(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` cut to `w` terminal columns and padded to them, on the left where `right` (aligned right).
fn fit(s: &str, w: usize, right: bool) -> String {
    use unicode_width::UnicodeWidthChar;
    let (mut out, mut used) = (String::new(), 0);
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw > w {
            break;
        }
        used += cw;
        out.push(c);
    }
    let pad = " ".repeat(w - used);
    if right { pad + &out } else { out + &pad }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels with wide characters keep the tables aligned: every row of the confusion matrix
    /// ends in the same terminal column.
    #[test]
    fn wide_labels_keep_the_tables_aligned() {
        let labels = vec![
            "café ☕".to_string(),
            "plain".to_string(),
            "日本語".to_string(),
        ];
        let r = EvalReport::new(&labels, &[0, 1, 2, 0], &[0, 1, 2, 1], &[0.9, 0.9, 0.9, 0.6]);
        let text = r.to_text();
        let matrix: Vec<&str> = text
            .split("columns: predicted)\n")
            .nth(1)
            .unwrap()
            .lines()
            .take(4)
            .collect();
        let ends: Vec<usize> = matrix.iter().map(|l| columns(l)).collect();
        assert!(
            ends.iter().all(|&e| e == ends[0]),
            "{ends:?}\n{}",
            matrix.join("\n")
        );
        let table: Vec<usize> = text
            .lines()
            .skip_while(|l| !l.starts_with("label"))
            .take(4)
            .map(columns)
            .collect();
        assert!(table.iter().all(|&e| e == table[0]), "{table:?}");
        assert_eq!(fit("日本語", 4, false), "日本");
        assert_eq!(fit("ab", 4, true), "  ab");
    }

    #[test]
    fn hand_computed_metrics() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // truth a a a b ; predicted a a b b
        let r = EvalReport::new(
            &labels,
            &[0, 0, 0, 1],
            &[0, 0, 1, 1],
            &[0.9, 0.6, 0.55, 0.99],
        );
        assert_eq!(r.confusion, vec![vec![2, 1], vec![0, 1]]);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        // a: p=1 r=2/3 f1=0.8 ; b: p=0.5 r=1 f1=2/3
        assert!((r.per_class[0].f1 - 0.8).abs() < 1e-12);
        assert!((r.per_class[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.macro_f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // threshold 0.6: defers the 0.55 one (wrong) -> kept accuracy 3/3
        let row = r
            .coverage
            .iter()
            .find(|c| (c.threshold - 0.6).abs() < 1e-9)
            .unwrap();
        assert!((row.deferred - 0.25).abs() < 1e-12);
        assert_eq!(row.kept_accuracy, Some(1.0));
        assert_eq!(row.deferred_accuracy, Some(0.0));
        assert!(r.to_text().contains("macro-F1 0.7333"));
        // Nothing deferred has no deferred accuracy, nothing kept no kept accuracy: a dash.
        let all_kept = EvalReport::new(&labels, &[0, 1], &[0, 1], &[0.99, 0.99]);
        let none_kept = EvalReport::new(&labels, &[0, 1], &[0, 1], &[0.4, 0.4]);
        let rows = |r: &EvalReport| -> Vec<String> {
            let text = r.to_text();
            let table = text
                .split("deferred-accuracy\n")
                .nth(1)
                .unwrap()
                .to_string();
            table.lines().map(str::to_string).collect()
        };
        for line in rows(&all_kept) {
            assert!(line.ends_with('–') && line.contains("100.00%"), "{line}");
        }
        for line in rows(&none_kept) {
            assert!(line.contains("100.0%") && line.contains("  –  "), "{line}");
        }
        // In JSON: null, not 0.
        assert!(
            all_kept
                .coverage
                .iter()
                .all(|c| c.deferred_accuracy.is_none())
        );
        let json = serde_json::to_value(&none_kept).unwrap();
        assert!(json["coverage"][0]["kept_accuracy"].is_null(), "{json}");
    }
}
