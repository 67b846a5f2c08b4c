//! Offline replay: a message log (JSONL) in, one decision per message out, bad lines to a
//! dead-letter file. No broker needed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use triage_classifier::Scratch;

use crate::decision::{Decision, Processor};
use crate::error::{PipelineError, Result};
use crate::message::{DecodeError, InputConfig, decode};
use crate::progress;

/// Where replay reads and writes. `-` means stdin / stdout.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The message log.
    pub input: PathBuf,
    /// Decisions, one JSON object per line.
    pub output: PathBuf,
    /// Dead letters, one JSON object per bad line.
    pub dead_letter: PathBuf,
    /// How payloads are read.
    pub input_config: InputConfig,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Decisions written.
    pub decisions: u64,
    /// Lines sent to the dead-letter file.
    pub dead_lettered: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// Decisions per route.
    pub by_route: BTreeMap<String, u64>,
    /// Decisions per label.
    pub by_label: BTreeMap<String, u64>,
    /// Dead letters per error kind.
    pub dead_letter_kinds: BTreeMap<String, u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Mean classify time per message, microseconds.
    pub mean_classify_us: f64,
}

/// A dead-letter record for a bad line.
#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    line: u64,
    error: &'static str,
    reason: String,
    /// The line as text (lossy if it was not UTF-8).
    raw: std::borrow::Cow<'a, str>,
    /// The exact bytes, hex-encoded, when the line was not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

fn open_out(path: &Path) -> Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufWriter::new(std::io::stdout().lock())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    }
    let f = File::create(path).map_err(|e| PipelineError::io(path, e))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
}

/// Lines decided before the SLM calls among them are awaited together (so they batch) and the
/// chunk is written out in input order.
const CHUNK: usize = 256;

/// One line's outcome within a chunk.
enum Slot {
    Decision(Box<Decision>),
    Pending(usize),
    Dead(u64, DecodeError, Vec<u8>),
}

/// Runs a replay to the end of the input.
pub fn replay(processor: &Processor, opts: &ReplayOptions) -> Result<ReplaySummary> {
    let t0 = Instant::now();
    let (reader, total): (Box<dyn Read>, u64) = if opts.input == Path::new("-") {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let f = File::open(&opts.input).map_err(|e| PipelineError::io(&opts.input, e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), len)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| PipelineError::io(&opts.input, e))?;
    let pb = progress::bytes_bar(total);
    pb.set_message("replay");
    let mut reader = BufReader::with_capacity(1 << 16, pb.wrap_read(reader));
    let mut sink = Sink {
        out: open_out(&opts.output)?,
        dlq: None,
        opts,
        record: Vec::new(),
    };
    let mut summary = ReplaySummary::default();
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let mut line = Vec::new();
    let mut classify_us = 0.0;
    let mut eof = false;
    while !eof {
        // Decide a chunk on the fast path; collect the SLM calls.
        let mut slots = Vec::with_capacity(CHUNK);
        let mut pending: Vec<(Decision, String)> = Vec::new();
        while slots.len() < CHUNK {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| PipelineError::io(&opts.input, e))?;
            if n == 0 {
                eof = true;
                break;
            }
            summary.lines += 1;
            let lineno = summary.lines;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                summary.blank += 1;
                continue;
            }
            match decode(&line, &opts.input_config, || format!("line-{lineno}")) {
                Ok(msg) => {
                    let d = processor.decide(&msg, &mut scratch, &mut probs);
                    classify_us += d.timings_us.classify;
                    if d.route.uses_slm() {
                        slots.push(Slot::Pending(pending.len()));
                        pending.push((d, msg.text));
                    } else {
                        slots.push(Slot::Decision(Box::new(d)));
                    }
                }
                Err(err) => slots.push(Slot::Dead(lineno, err, line.clone())),
            }
        }
        // The SLM calls of the chunk, concurrently (the executor batches them).
        let resolved: Vec<Decision> = runtime.block_on(futures::future::join_all(
            pending
                .iter()
                .map(|(d, text)| processor.resolve(d.clone(), text)),
        ));
        for slot in slots {
            match slot {
                Slot::Decision(d) => sink.decision(&d, &mut summary)?,
                Slot::Pending(i) => sink.decision(&resolved[i], &mut summary)?,
                Slot::Dead(lineno, err, raw) => sink.dead(lineno, &err, &raw, &mut summary)?,
            }
        }
    }
    sink.out
        .flush()
        .map_err(|e| PipelineError::io(&opts.output, e))?;
    if let Some(mut w) = sink.dlq {
        w.flush()
            .map_err(|e| PipelineError::io(&opts.dead_letter, e))?;
    }
    pb.finish_and_clear();
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.mean_classify_us = if summary.decisions > 0 {
        classify_us / summary.decisions as f64
    } else {
        0.0
    };
    Ok(summary)
}

struct Sink<'a> {
    out: Box<dyn Write>,
    dlq: Option<Box<dyn Write>>,
    opts: &'a ReplayOptions,
    record: Vec<u8>,
}

impl Sink<'_> {
    fn decision(&mut self, d: &Decision, summary: &mut ReplaySummary) -> Result<()> {
        let out_err = |e| PipelineError::io(&self.opts.output, e);
        *summary
            .by_route
            .entry(d.route.as_str().to_string())
            .or_default() += 1;
        *summary.by_label.entry(d.label.clone()).or_default() += 1;
        self.record.clear();
        serde_json::to_writer(&mut self.record, d)
            .map_err(|e| out_err(std::io::Error::other(e)))?;
        self.record.push(b'\n');
        self.out.write_all(&self.record).map_err(out_err)?;
        summary.decisions += 1;
        Ok(())
    }

    fn dead(
        &mut self,
        line: u64,
        err: &DecodeError,
        raw: &[u8],
        summary: &mut ReplaySummary,
    ) -> Result<()> {
        let raw_utf8 = std::str::from_utf8(raw).is_ok();
        let dl = DeadLetter {
            line,
            error: err.kind(),
            reason: err.to_string(),
            raw: String::from_utf8_lossy(raw),
            raw_hex: (!raw_utf8).then(|| hex::encode(raw)),
        };
        if self.dlq.is_none() {
            self.dlq = Some(open_out(&self.opts.dead_letter)?);
        }
        if let Some(w) = self.dlq.as_mut() {
            let dl_err = |e| PipelineError::io(&self.opts.dead_letter, e);
            serde_json::to_writer(&mut *w, &dl).map_err(|e| dl_err(std::io::Error::other(e)))?;
            w.write_all(b"\n").map_err(dl_err)?;
        }
        summary.dead_lettered += 1;
        *summary
            .dead_letter_kinds
            .entry(err.kind().to_string())
            .or_default() += 1;
        tracing::debug!(line, error = err.kind(), "dead-lettered");
        Ok(())
    }
}

impl ReplaySummary {
    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let rate = if self.seconds > 0.0 {
            self.decisions as f64 / self.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "replayed {} lines in {:.2}s ({:.0} msg/s): {} decisions, {} dead-lettered, {} blank",
            self.lines, self.seconds, rate, self.decisions, self.dead_lettered, self.blank
        );
        let _ = writeln!(s, "mean classify time {:.2} µs", self.mean_classify_us);
        let pct = |n: u64| 100.0 * n as f64 / self.decisions.max(1) as f64;
        let _ = writeln!(s, "routes:");
        for (k, v) in &self.by_route {
            let _ = writeln!(s, "  {k:<16} {v:>8}  {:>5.1}%", pct(*v));
        }
        let _ = writeln!(s, "labels:");
        for (k, v) in &self.by_label {
            let _ = writeln!(s, "  {k:<16} {v:>8}  {:>5.1}%", pct(*v));
        }
        if !self.dead_letter_kinds.is_empty() {
            let _ = writeln!(s, "dead letters:");
            for (k, v) in &self.dead_letter_kinds {
                let _ = writeln!(s, "  {k:<16} {v:>8}");
            }
        }
        s
    }
}
