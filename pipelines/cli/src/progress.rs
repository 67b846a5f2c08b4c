//! Progress bars on a terminal, silence when piped (indicatif draws nothing when stderr is not a
//! TTY). The libraries report through [`triage_core::Progress`]; this draws it.

use indicatif::{ProgressBar, ProgressStyle};
use triage_core::{Progress, Unit};

/// A bar with a rate and an ETA.
fn bar(len: u64, unit: Unit) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = match unit {
        Unit::Bytes => "{spinner} {msg:<10} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})".to_string(),
        Unit::Messages | Unit::Iterations | Unit::Steps => {
            let unit = match unit {
                Unit::Messages => "messages",
                Unit::Steps => "steps",
                _ => "iterations",
            };
            format!(
                "{{spinner}} {{msg:<10}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
            )
        }
    };
    pb.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// One bar per phase; messages above the bar, or to stderr where no bar is drawn.
#[derive(Default)]
pub struct Bars {
    current: Option<(ProgressBar, String)>,
}

impl Progress for Bars {
    fn phase(&mut self, name: &str, total: Option<u64>, unit: Unit) {
        let pb = bar(total.unwrap_or(0), unit);
        pb.set_message(name.to_string());
        self.current = Some((pb, name.to_string()));
    }
    fn advance(&mut self, n: u64) {
        if let Some((pb, _)) = &self.current {
            pb.inc(n);
        }
    }
    fn iteration(&mut self, iter: u64, loss: f64) {
        if let Some((pb, name)) = &self.current {
            pb.set_position(iter + 1);
            pb.set_message(format!("{name} {loss:.4}"));
        }
    }
    fn message(&mut self, text: &str) {
        match &self.current {
            // A hidden bar (stderr piped to a log) prints nothing, and the line must still show.
            Some((pb, _)) if !pb.is_hidden() => pb.println(text),
            _ => eprintln!("{text}"),
        }
    }
    fn finish_phase(&mut self) {
        if let Some((pb, _)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}
