//! Offline replay: a message log (JSONL) in, one decision per message out, bad lines to a
//! dead-letter file. No broker needed. The source reads lines; [`FileSink`] writes them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use triage_classifier::Scratch;
use triage_core::message::{DecodeError, InputConfig};
use triage_core::{Progress, Unit};

use crate::error::{Result, ServiceError};
use crate::processor::{Decision, Processor, Step};
use crate::sink::Sink;

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
        std::fs::create_dir_all(dir).map_err(|e| ServiceError::io(dir, e))?;
    }
    let f = File::create(path).map_err(|e| ServiceError::io(path, e))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
}

/// Counts the bytes read for the progress report.
struct Counted<'p, R> {
    inner: R,
    progress: &'p mut dyn Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Lines decided before the SLM calls among them are awaited together (so they batch) and the
/// chunk is written out in input order.
const CHUNK: usize = 256;

/// Runs a replay to the end of the input.
pub fn replay(
    processor: &Processor,
    opts: &ReplayOptions,
    progress: &mut dyn Progress,
) -> Result<ReplaySummary> {
    let t0 = Instant::now();
    let (reader, total): (Box<dyn Read>, Option<u64>) = if opts.input == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = File::open(&opts.input).map_err(|e| ServiceError::io(&opts.input, e))?;
        let len = f.metadata().map(|m| m.len()).ok();
        (Box::new(f), len)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| ServiceError::io(&opts.input, e))?;
    progress.phase("replay", total, Unit::Bytes);
    let mut sink = FileSink::new(opts)?;
    let mut reader = BufReader::with_capacity(
        1 << 16,
        Counted {
            inner: reader,
            progress: &mut *progress,
        },
    );
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let mut line = Vec::new();
    let mut classify_us = 0.0;
    let mut eof = false;
    while !eof {
        // Decide a chunk on the fast path and collect its SLM calls; then await those together
        // (the executor batches them) and write the chunk out in input order.
        let mut chunk: Vec<(Step, u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| ServiceError::io(&opts.input, e))?;
            if n == 0 {
                eof = true;
                break;
            }
            sink.summary.lines += 1;
            let lineno = sink.summary.lines;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                sink.summary.blank += 1;
                continue;
            }
            let step = processor.step(
                &line,
                &opts.input_config,
                || format!("line-{lineno}"),
                &mut scratch,
                &mut probs,
            );
            let raw = match &step {
                Step::Dead(_) => line.clone(),
                Step::Done(d) => {
                    classify_us += d.timings_us.classify;
                    Vec::new()
                }
                Step::Slm(p) => {
                    classify_us += p.classify_us();
                    Vec::new()
                }
            };
            chunk.push((step, lineno, raw));
        }
        runtime.block_on(write_chunk(processor, &mut sink, chunk))?;
    }
    drop(reader);
    let mut summary = sink.finish()?;
    progress.finish_phase();
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.mean_classify_us = if summary.decisions > 0 {
        classify_us / summary.decisions as f64
    } else {
        0.0
    };
    Ok(summary)
}

/// Resolves the chunk's SLM calls concurrently, then writes every line's result in order.
async fn write_chunk(
    processor: &Processor,
    sink: &mut FileSink<'_>,
    chunk: Vec<(Step, u64, Vec<u8>)>,
) -> Result<()> {
    let mut order = Vec::with_capacity(chunk.len());
    let mut pending = Vec::new();
    for (step, lineno, raw) in chunk {
        match step {
            Step::Slm(p) => {
                order.push((None, lineno, raw));
                pending.push(processor.resolve(*p));
            }
            other => order.push((Some(other), lineno, raw)),
        }
    }
    let mut resolved = futures::future::join_all(pending).await.into_iter();
    for (step, lineno, raw) in order {
        match step {
            None => {
                let d = resolved.next().ok_or_else(|| {
                    ServiceError::Internal("a resolved decision is missing".into())
                })?;
                sink.decision(&d, lineno).await?;
            }
            Some(Step::Done(d)) => sink.decision(&d, lineno).await?,
            Some(Step::Dead(e)) => sink.dead_letter(&e, &raw, lineno).await?,
            Some(Step::Slm(_)) => unreachable!("SLM steps were taken out above"),
        }
    }
    Ok(())
}

/// Writes decisions to the output file and dead letters to the dead-letter file (opened at
/// the first one), and counts them.
pub struct FileSink<'a> {
    out: Box<dyn Write>,
    dlq: Option<Box<dyn Write>>,
    opts: &'a ReplayOptions,
    record: Vec<u8>,
    summary: ReplaySummary,
}

impl<'a> FileSink<'a> {
    /// Opens the output.
    pub fn new(opts: &'a ReplayOptions) -> Result<Self> {
        Ok(Self {
            out: open_out(&opts.output)?,
            dlq: None,
            opts,
            record: Vec::new(),
            summary: ReplaySummary::default(),
        })
    }

    /// Flushes both files; returns the counts.
    pub fn finish(mut self) -> Result<ReplaySummary> {
        self.out
            .flush()
            .map_err(|e| ServiceError::io(&self.opts.output, e))?;
        if let Some(mut w) = self.dlq.take() {
            w.flush()
                .map_err(|e| ServiceError::io(&self.opts.dead_letter, e))?;
        }
        Ok(self.summary)
    }
}

impl Sink for FileSink<'_> {
    /// The line number.
    type Origin = u64;

    async fn decision(&mut self, d: &Decision, _line: u64) -> Result<()> {
        let out_err = |e| ServiceError::io(&self.opts.output, e);
        let summary = &mut self.summary;
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

    async fn dead_letter(&mut self, err: &DecodeError, raw: &[u8], line: u64) -> Result<()> {
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
            let dl_err = |e| ServiceError::io(&self.opts.dead_letter, e);
            serde_json::to_writer(&mut *w, &dl).map_err(|e| dl_err(std::io::Error::other(e)))?;
            w.write_all(b"\n").map_err(dl_err)?;
        }
        self.summary.dead_lettered += 1;
        *self
            .summary
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
