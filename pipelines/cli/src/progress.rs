//! Progress bars on a terminal, silence when piped (indicatif draws nothing when stderr is not a
//! TTY). The libraries report through [`triage_core::Progress`]; this draws it.

use std::time::{Duration, Instant};

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

/// Where no bar is drawn (stderr is a file or a pipe: a log, a CI job), a line this often
/// instead, so that long work (a many-label fit, an embedding pass) shows that it moves.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// One bar per phase; messages above the bar, or to stderr where no bar is drawn, and then a
/// progress line every [`LOG_EVERY`].
pub struct Bars {
    current: Option<Phase>,
    log_every: Duration,
}

struct Phase {
    pb: ProgressBar,
    name: String,
    unit: Unit,
    /// No bar is drawn (read once: `is_hidden` takes a lock, and `advance` may come a message
    /// at a time).
    hidden: bool,
    logged: Instant,
}

impl Default for Bars {
    fn default() -> Self {
        Self {
            current: None,
            log_every: LOG_EVERY,
        }
    }
}

impl Bars {
    /// The line a log gets for the current phase, where no bar is drawn and one is due.
    fn due_line(&mut self) -> Option<String> {
        let phase = self.current.as_mut()?;
        if !phase.hidden || phase.logged.elapsed() < self.log_every {
            return None;
        }
        phase.logged = Instant::now();
        Some(log_line(&phase.pb, &phase.name, phase.unit))
    }

    fn log_if_due(&mut self) {
        if let Some(line) = self.due_line() {
            eprintln!("{line}");
        }
    }
}

/// `fit 1.1339: 37/200 iterations, 5m 12s so far, about 22m 54s to go`.
fn log_line(pb: &ProgressBar, name: &str, unit: Unit) -> String {
    let unit = match unit {
        Unit::Messages => "messages",
        Unit::Bytes => "bytes",
        Unit::Iterations => "iterations",
        Unit::Steps => "steps",
    };
    let message = pb.message();
    let what = if message.is_empty() {
        name.to_string()
    } else {
        message
    };
    let done = pb.position();
    let so_far = indicatif::HumanDuration(pb.elapsed());
    match pb.length().filter(|&n| n > 0) {
        Some(total) if done > 0 && done < total => format!(
            "{what}: {done}/{total} {unit}, {so_far} so far, about {} to go",
            indicatif::HumanDuration(pb.eta())
        ),
        Some(total) => format!("{what}: {done}/{total} {unit}, {so_far} so far"),
        None => format!("{what}: {done} {unit}, {so_far} so far"),
    }
}

impl Progress for Bars {
    fn phase(&mut self, name: &str, total: Option<u64>, unit: Unit) {
        let pb = bar(total.unwrap_or(0), unit);
        pb.set_message(name.to_string());
        self.current = Some(Phase {
            hidden: pb.is_hidden(),
            pb,
            name: name.to_string(),
            unit,
            logged: Instant::now(),
        });
    }
    fn advance(&mut self, n: u64) {
        if let Some(phase) = &self.current {
            phase.pb.inc(n);
        }
        self.log_if_due();
    }
    fn iteration(&mut self, iter: u64, loss: f64) {
        if let Some(phase) = &self.current {
            phase.pb.set_position(iter + 1);
            phase.pb.set_message(format!("{} {loss:.4}", phase.name));
        }
        self.log_if_due();
    }
    fn message(&mut self, text: &str) {
        match &self.current {
            // A hidden bar (stderr piped to a log) prints nothing, and the line must still show.
            Some(phase) if !phase.hidden => phase.pb.println(text),
            _ => eprintln!("{text}"),
        }
    }
    fn finish_phase(&mut self) {
        if let Some(phase) = self.current.take() {
            phase.pb.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::ProgressDrawTarget;

    /// Where no bar is drawn, a line is due once `log_every` has passed since the last, and it
    /// says how far the phase is, its loss, and how long it has taken.
    #[test]
    fn a_log_gets_a_line_where_no_bar_is_drawn() {
        let mut bars = Bars {
            current: None,
            log_every: Duration::from_millis(50),
        };
        bars.phase("fit", Some(200), Unit::Iterations);
        let phase = bars.current.as_mut().unwrap();
        phase.pb.set_draw_target(ProgressDrawTarget::hidden());
        phase.hidden = true;
        bars.iteration(36, 1.133_92);
        assert_eq!(bars.due_line(), None, "not yet due");
        std::thread::sleep(Duration::from_millis(60));
        // (`iteration` and `advance` print the due line themselves.)
        let line = bars.due_line().expect("due");
        assert!(
            line.starts_with("fit 1.1339: 37/200 iterations, "),
            "{line}"
        );
        assert!(line.contains("so far, about "), "{line}");
        assert_eq!(bars.due_line(), None, "the clock starts again");
        // A bar that is drawn gets no lines.
        bars.phase("analyse", Some(10), Unit::Messages);
        bars.current.as_mut().unwrap().hidden = false;
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(bars.due_line(), None);
    }
}
