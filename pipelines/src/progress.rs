//! Progress bars on a terminal, silence when piped (indicatif draws nothing when stderr is not a
//! TTY).

use indicatif::{ProgressBar, ProgressStyle};
use triage_classifier::TrainProgress;

/// A bar with a rate and an ETA.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} {{msg:<10}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    pb.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// A byte-counting bar (for reading files).
pub fn bytes_bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<10} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// Training progress drawn as one bar per phase.
#[derive(Default)]
pub struct TrainBars {
    current: Option<ProgressBar>,
}

impl TrainProgress for TrainBars {
    fn phase(&mut self, name: &str, total: Option<u64>) {
        let unit = if name == "fit" {
            "iterations"
        } else {
            "messages"
        };
        let pb = bar(total.unwrap_or(0), unit);
        pb.set_message(name.to_string());
        self.current = Some(pb);
    }
    fn advance(&mut self, n: u64) {
        if let Some(pb) = &self.current {
            pb.inc(n);
        }
    }
    fn iteration(&mut self, iter: u64, loss: f64) {
        if let Some(pb) = &self.current {
            pb.set_position(iter + 1);
            pb.set_message(format!("fit {loss:.4}"));
        }
    }
    fn finish_phase(&mut self) {
        if let Some(pb) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}
