//! Offline replay: a message log (JSONL) in, one decision per message out, bad lines to a
//! dead-letter file. No broker needed. The source reads chunks of lines, decides them (on one
//! thread or several, the output in input order either way); [`FileSink`] writes them. A pipe
//! (stdin, a FIFO) is read on a thread of its own, so that a quiet one has the lines it sent
//! decided and written out at once, and a stop asked for by a signal is seen while it is quiet.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use triage_classifier::Scratch;
use triage_core::message::{DecodeError, InputConfig, Message, decode};
use triage_core::paths::refuse_overwriting;
use triage_core::{Progress, Unit};
use triage_router::{Budget, Route};

use crate::error::{Result, ServiceError};
use crate::processor::{Classified, Processor, Record, Step, Verdict};

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
    /// Threads deciding chunks of lines (1: all on the calling thread).
    pub threads: usize,
    /// Set (non-zero: the signal's number, by a signal handler) to stop reading: the lines read
    /// so far, whole lines only, are decided and written, the files flushed, and the summary
    /// says [`ReplaySummary::interrupted`].
    pub stop: Arc<AtomicUsize>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Lines read (blank lines included): every line before them has its decision or its dead
    /// letter, also after an interruption.
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
    /// Stopped before the end of the input ([`ReplayOptions::stop`]): the rest of it, from line
    /// `lines + 1`, was not read.
    pub interrupted: bool,
    /// Why no second opinion ran (`[slm] mode = "off"`, or models not installed), if none did:
    /// then `degraded` counts the messages the SLM would have been asked about, and
    /// `over_budget` those the budget held back, applied as the service would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slm_unavailable: Option<String>,
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

/// How long a pipe may stay silent before the lines already read are decided and written (and
/// a stop asked for by a signal is seen).
const IDLE: Duration = Duration::from_millis(100);

/// A pipe or terminal read on a thread of its own, so that the replay never blocks in `read`:
/// after [`IDLE`] without data, [`Read::read`] fails with [`std::io::ErrorKind::WouldBlock`] and
/// the caller decides what it has, or sees that it was asked to stop. (A blocking `read` cannot be
/// cancelled: when the replay stops before the input ends, the thread stays blocked in it until
/// the process ends.)
struct Stream {
    from_reader: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    at: usize,
}

impl Stream {
    /// Reads `input` on a new thread; a gzip stream or UTF-16 text is decoded there
    /// ([`triage_core::jsonl::decoded`]).
    fn spawn(input: impl Read + Send + 'static) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("replay-input".into())
            .spawn(move || {
                let mut input = match triage_core::jsonl::decoded(input) {
                    Ok(input) => input,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = vec![0; 1 << 16];
                    let r = match input.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(Self {
            from_reader: rx,
            buf: Vec::new(),
            at: 0,
        })
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::mpsc::RecvTimeoutError;
        if self.at == self.buf.len() {
            match self.from_reader.recv_timeout(IDLE) {
                Ok(r) => (self.buf, self.at) = (r?, 0),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                // The input ended.
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Bytes per chunk (whole lines; a longer line makes a longer chunk): a chunk is decided on the
/// fast path, then its SLM calls are awaited together (so that they batch) and its results
/// written out in input order. With several threads, each takes whole chunks.
const CHUNK_BYTES: usize = 128 * 1024;

/// Byte buffers for chunks and their results, used again instead of freed: fresh large buffers
/// cost a page fault per page.
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn get(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put(&self, mut buf: Vec<u8>) {
        // A buffer that grew around an over-long line is let go: kept, it would hold that much
        // memory for the rest of the replay.
        if buf.capacity() > 4 * CHUNK_BYTES {
            return;
        }
        buf.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 64 {
            pool.push(buf);
        }
    }
}

/// One chunk of the input: whole lines, as read.
struct Chunk {
    /// Its place in the input (0, 1, 2, ...): the order results are written in.
    seq: u64,
    /// The line number of its first line.
    first_line: u64,
    /// The lines, each with its `\n` (the last one may lack it).
    bytes: Vec<u8>,
    /// Cut short because the input went quiet: its results are to be written out and flushed
    /// before more is read.
    idle: bool,
}

/// What a chunk became: the bytes to append to each file, and its counts.
#[derive(Default)]
struct Done {
    out: Vec<u8>,
    dead: Vec<u8>,
    counts: Counts,
}

/// A summary's counts, by label and route index, summed over chunks.
#[derive(Default)]
struct Counts {
    lines: u64,
    blank: u64,
    decisions: u64,
    dead_lettered: u64,
    by_route: [u64; ROUTES.len()],
    by_label: Vec<u64>,
    dead_letter_kinds: BTreeMap<&'static str, u64>,
    classify_us: f64,
}

const ROUTES: [Route; 5] = [
    Route::Fast,
    Route::SecondOpinion,
    Route::Generate,
    Route::OverBudget,
    Route::Degraded,
];

fn route_index(r: Route) -> usize {
    ROUTES.iter().position(|&x| x == r).unwrap_or(0)
}

impl Counts {
    fn decision(&mut self, v: Verdict) {
        self.decisions += 1;
        self.by_route[route_index(v.route)] += 1;
        if self.by_label.len() <= v.label {
            self.by_label.resize(v.label + 1, 0);
        }
        self.by_label[v.label] += 1;
        self.classify_us += v.classify_us;
    }

    fn add(&mut self, o: &Counts) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.decisions += o.decisions;
        self.dead_lettered += o.dead_lettered;
        for (a, b) in self.by_route.iter_mut().zip(o.by_route) {
            *a += b;
        }
        if self.by_label.len() < o.by_label.len() {
            self.by_label.resize(o.by_label.len(), 0);
        }
        for (a, b) in self.by_label.iter_mut().zip(&o.by_label) {
            *a += b;
        }
        for (k, v) in &o.dead_letter_kinds {
            *self.dead_letter_kinds.entry(k).or_default() += v;
        }
        self.classify_us += o.classify_us;
    }
}

/// Whose turn it is to route: chunk `next` routes its messages under `budget`, then hands it
/// on, so that the budget sees the messages in input order whatever the number of threads
/// (the same routes as one thread: every prefix of the input keeps the share).
struct Turn {
    state: Mutex<(u64, Budget)>,
    changed: Condvar,
    /// Set when the replay stops early: nobody waits for a turn that will not come.
    abort: AtomicBool,
}

impl Turn {
    /// Runs `f` with the budget once every earlier chunk has routed; `None` if aborted.
    fn take<R>(&self, seq: u64, f: impl FnOnce(&mut Budget) -> R) -> Option<R> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.0 != seq {
            if self.abort.load(Ordering::Relaxed) {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let r = f(&mut state.1);
        state.0 += 1;
        self.changed.notify_all();
        Some(r)
    }
}

/// A line of a chunk after the fast path.
enum Slot {
    /// Blank: skipped.
    Blank,
    /// Its record is in the chunk's output at this range.
    Decided(std::ops::Range<usize>, Verdict),
    /// Waits for the SLM (the index into the chunk's pending calls).
    Slm(usize),
    /// Not a message: dead-lettered.
    Dead(DecodeError, std::ops::Range<usize>),
}

/// One thread's reusable buffers.
struct Worker<'p> {
    processor: &'p Processor,
    input: &'p InputConfig,
    pool: &'p Pool,
    scratch: Scratch,
    probs: Vec<f32>,
    runtime: tokio::runtime::Runtime,
}

impl<'p> Worker<'p> {
    fn new(
        processor: &'p Processor,
        input: &'p InputConfig,
        pool: &'p Pool,
    ) -> std::io::Result<Self> {
        Ok(Self {
            processor,
            input,
            pool,
            scratch: Scratch::default(),
            probs: Vec::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?,
        })
    }

    /// Decides a chunk: decode and classify every line, route them in input order when the
    /// chunk's turn comes, write the decided ones, await the SLM calls together, and write
    /// everything out in input order. `None` if the replay was aborted meanwhile.
    fn chunk(&mut self, chunk: Chunk, turn: &Turn) -> Option<Done> {
        let done = self.decide(&chunk, turn);
        self.pool.put(chunk.bytes);
        done
    }

    fn decide(&mut self, chunk: &Chunk, turn: &Turn) -> Option<Done> {
        let p = self.processor;
        let mut done = Done {
            out: self.pool.get(),
            dead: self.pool.get(),
            counts: Counts::default(),
        };
        let lines = split_lines(&chunk.bytes);
        // 1. Decode every line, then classify the messages (in parallel with other chunks): one
        //    pass each, so that decoding does not evict the model's rows between two messages.
        let mut read: Vec<Option<Result<(Message<'_>, Classified), DecodeError>>> =
            Vec::with_capacity(lines.len());
        for (i, raw) in lines.iter().enumerate() {
            let line = trim_newline(raw);
            done.counts.lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                done.counts.blank += 1;
                read.push(None);
                continue;
            }
            let lineno = chunk.first_line + i as u64;
            let r = decode(line, self.input, || format!("line-{lineno}"));
            read.push(Some(r.map(|m| (m, Classified::default()))));
        }
        let k = p.labels().len();
        let mut all_probs: Vec<f32> = Vec::with_capacity(lines.len() * k);
        p.classify_all(
            read.iter_mut().flatten().flatten(),
            &mut self.scratch,
            &mut self.probs,
            &mut all_probs,
        );
        // 2. Route, in input order across chunks.
        let routings = turn.take(chunk.seq, |budget| {
            p.route_all(
                read.iter()
                    .map(|r| r.as_ref().and_then(|r| r.as_ref().ok()).map(|(_, c)| c)),
                &all_probs,
                budget,
            )
        })?;
        // 3. Write what is decided; collect the SLM calls.
        let mut slots = Vec::with_capacity(lines.len());
        let mut pending = Vec::new();
        let mut at = 0;
        for ((r, routing), raw) in read.into_iter().zip(routings).zip(&lines) {
            let slot = match (r, routing) {
                (None, _) => Slot::Blank,
                (Some(Err(e)), _) => {
                    let start = done.dead.len();
                    done.dead.extend_from_slice(trim_newline(raw));
                    Slot::Dead(e, start..done.dead.len())
                }
                (Some(Ok((msg, c))), Some(routing)) => {
                    let probs = &all_probs[at..at + k];
                    at += k;
                    let start = done.out.len();
                    match p.finish(&msg, &c, routing, probs, &mut done.out) {
                        Step::Done(v) => {
                            done.out.push(b'\n');
                            Slot::Decided(start..done.out.len(), v)
                        }
                        Step::Slm(pend) => {
                            pending.push(p.resolve(*pend));
                            Slot::Slm(pending.len() - 1)
                        }
                        Step::Dead(_) => unreachable!("a decoded message is not dead"),
                    }
                }
                (Some(Ok(_)), None) => unreachable!("every message is routed"),
            };
            slots.push(slot);
        }
        // 4. Await the SLM calls together, then write the chunk in input order.
        let mut resolved: Vec<Option<Record>> = if pending.is_empty() {
            Vec::new()
        } else {
            self.runtime
                .block_on(futures::future::join_all(pending))
                .into_iter()
                .map(Some)
                .collect()
        };
        // Without SLM calls the decided records are already the chunk's output, in order.
        let decided = if resolved.is_empty() {
            None
        } else {
            let d = std::mem::take(&mut done.out);
            done.out.reserve(d.len() + resolved.len() * 512);
            Some(d)
        };
        let raw_dead = std::mem::replace(&mut done.dead, self.pool.get());
        for (i, slot) in slots.into_iter().enumerate() {
            let lineno = chunk.first_line + i as u64;
            match slot {
                Slot::Blank => {}
                Slot::Decided(range, v) => {
                    if let Some(d) = &decided {
                        done.out.extend_from_slice(&d[range]);
                    }
                    done.counts.decision(v);
                }
                Slot::Slm(j) => {
                    let record = resolved[j].take().expect("each SLM result is written once");
                    done.out.extend_from_slice(&record.json);
                    done.out.push(b'\n');
                    done.counts.decision(record.verdict);
                }
                Slot::Dead(e, range) => {
                    write_dead_letter(&mut done.dead, &e, &raw_dead[range], lineno);
                    done.counts.dead_lettered += 1;
                    *done.counts.dead_letter_kinds.entry(e.kind()).or_default() += 1;
                    tracing::debug!(line = lineno, error = e.kind(), "dead-lettered");
                }
            }
        }
        self.pool.put(raw_dead);
        if let Some(d) = decided {
            self.pool.put(d);
        }
        Some(done)
    }
}

/// The lines of a chunk, each with its `\n` (the last one may lack it).
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::with_capacity(bytes.len() / 64 + 1);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        lines.push(&bytes[start..=end]);
        start = end + 1;
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

/// How many lines [`split_lines`] finds.
fn line_count(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    (newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))) as u64
}

fn trim_newline(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// Appends a dead-letter record (one JSON line) for a bad line.
fn write_dead_letter(out: &mut Vec<u8>, err: &DecodeError, raw: &[u8], line: u64) {
    let raw_utf8 = std::str::from_utf8(raw).is_ok();
    // Room for the whole record at once (the raw line, escaped, and its hex where it is not
    // UTF-8): a dead letter for a 300 MB line is not grown by doubling, a copy each time.
    out.reserve(raw.len() + if raw_utf8 { 0 } else { 2 * raw.len() } + 256);
    let dl = DeadLetter {
        line,
        error: err.kind(),
        reason: err.to_string(),
        raw: String::from_utf8_lossy(raw),
        raw_hex: (!raw_utf8).then(|| hex::encode(raw)),
    };
    serde_json::to_writer(&mut *out, &dl).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}

/// Reads whole lines into chunks of about [`CHUNK_BYTES`].
struct Chunker<'a, R> {
    reader: R,
    pool: &'a Pool,
    seq: u64,
    next_line: u64,
    /// The start of a line the last read cut off.
    carry: Vec<u8>,
    eof: bool,
    /// Non-zero: stop reading.
    stop: &'a AtomicUsize,
    /// Stopped by [`Chunker::stop`] before the end of the input.
    interrupted: bool,
    /// The input could not be read on (a truncated gzip stream, a disk error): the whole lines
    /// read before it were the last chunk, and the replay ends with this error once they are
    /// decided and written.
    failed: Option<std::io::Error>,
}

impl<R: Read> Chunker<'_, R> {
    fn next(&mut self) -> std::io::Result<Option<Chunk>> {
        if !self.eof && self.stop.load(Ordering::Relaxed) != 0 {
            self.interrupted = true;
            self.eof = true;
            self.carry.clear();
            return Ok(None);
        }
        let mut bytes = self.pool.get();
        bytes.append(&mut self.carry);
        let mut want = CHUNK_BYTES;
        let mut idle = false;
        // `bytes[..searched]` holds no newline: a line longer than a chunk is searched once,
        // not again after every read (a 300 MB line took 30 s, rescanned 2,300 times).
        let mut searched = 0;
        loop {
            if !self.eof && bytes.len() < want {
                match fill(&mut self.reader, &mut bytes, want, self.stop) {
                    Ok(Fill::Full) => {}
                    Ok(Fill::Idle) => idle = true,
                    Ok(Fill::Ended) => self.eof = true,
                    Err(e) => {
                        // Whole lines only, as for a stop; the error ends the replay after them.
                        let keep = memchr::memrchr(b'\n', &bytes).map_or(0, |end| end + 1);
                        bytes.truncate(keep);
                        self.carry.clear();
                        self.failed = Some(e);
                        self.eof = true;
                    }
                    Ok(Fill::Stopped) => {
                        // Whole lines only: the cut one is left unread, as the rest is.
                        let keep = memchr::memrchr(b'\n', &bytes).map_or(0, |end| end + 1);
                        bytes.truncate(keep);
                        self.interrupted = true;
                        self.eof = true;
                    }
                }
            }
            if self.eof {
                break;
            }
            match memchr::memrchr(b'\n', &bytes[searched..]) {
                Some(i) => {
                    let end = searched + i;
                    self.carry.extend_from_slice(&bytes[end + 1..]);
                    bytes.truncate(end + 1);
                    break;
                }
                // One line longer than a chunk: read on.
                None => {
                    searched = bytes.len();
                    want += CHUNK_BYTES;
                }
            }
        }
        if self.seq == 0 && bytes.starts_with(triage_core::jsonl::BOM) {
            bytes.drain(..triage_core::jsonl::BOM.len());
        }
        if bytes.is_empty() {
            self.pool.put(bytes);
            return Ok(None);
        }
        let lines = line_count(&bytes);
        let chunk = Chunk {
            seq: self.seq,
            first_line: self.next_line + 1,
            bytes,
            idle,
        };
        self.seq += 1;
        self.next_line += lines;
        Ok(Some(chunk))
    }
}

/// How [`fill`] ended.
enum Fill {
    /// `want` bytes read.
    Full,
    /// The input ended.
    Ended,
    /// Asked to stop (a slow input, a pipe say, is not waited for).
    Stopped,
    /// The input went quiet ([`Stream`]) with at least one whole line read.
    Idle,
}

/// Reads into `bytes` until it holds `want` bytes, the input ends, `stop` is set, or the input
/// goes quiet (a read fails with `WouldBlock`) with a whole line read.
///
/// One `read` a chunk where the input allows: `read_to_end` on a `take` began every chunk with a
/// 32-byte probe and then grew its reads from the buffer's spare room: five `read` calls a chunk
/// over a 95 MB log (3,684 in all, against 744 now), up to fifteen in a fresh buffer.
fn fill(
    reader: &mut impl Read,
    bytes: &mut Vec<u8>,
    want: usize,
    stop: &AtomicUsize,
) -> std::io::Result<Fill> {
    let mut at = bytes.len();
    bytes.resize(want, 0);
    let ended = loop {
        if at == want {
            break Ok(Fill::Full);
        }
        if stop.load(Ordering::Relaxed) != 0 {
            break Ok(Fill::Stopped);
        }
        match reader.read(&mut bytes[at..]) {
            Ok(0) => break Ok(Fill::Ended),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if memchr::memchr(b'\n', &bytes[..at]).is_some() {
                    break Ok(Fill::Idle);
                }
            }
            Err(e) => break Err(e),
        }
    };
    bytes.truncate(at);
    ended
}

/// Runs a replay to the end of the input.
///
/// With `threads` above 1, whole chunks of lines are decided on that many threads while this
/// one reads and writes; the output is the same as with one thread (the same records in the
/// same order, the budget applied in input order), but for the measured timings.
pub fn replay(
    processor: &Processor,
    opts: &ReplayOptions,
    progress: &mut dyn Progress,
) -> Result<ReplaySummary> {
    let t0 = Instant::now();
    refuse_overwriting(
        &[("--input", Some(&opts.input))],
        &[
            ("--output", Some(&opts.output)),
            ("--dead-letter", Some(&opts.dead_letter)),
        ],
    )?;
    let read_err = |e| ServiceError::io(&opts.input, e);
    // A file is read where it is; a pipe (stdin, a FIFO), which can go quiet, through a thread.
    let (reader, total): (Box<dyn Read>, Option<u64>) = if opts.input == Path::new("-") {
        (
            Box::new(Stream::spawn(std::io::stdin()).map_err(read_err)?),
            None,
        )
    } else {
        let f = File::open(&opts.input).map_err(read_err)?;
        match f.metadata() {
            Ok(m) if m.is_file() => (Box::new(f), Some(m.len())),
            // Refused before the output is created (a directory opens, and fails only when read).
            Ok(m) if m.is_dir() => {
                return Err(read_err(std::io::Error::from(
                    std::io::ErrorKind::IsADirectory,
                )));
            }
            _ => (Box::new(Stream::spawn(f).map_err(read_err)?), None),
        }
    };
    progress.phase("replay", total, Unit::Bytes);
    // The progress counts the bytes of the file, compressed or not.
    let counted = Counted {
        inner: reader,
        progress: &mut *progress,
    };
    // A file is decoded here (gzip, UTF-16); a pipe on its reading thread.
    let reader: Box<dyn Read + '_> = if total.is_some() {
        triage_core::jsonl::decoded(counted).map_err(read_err)?
    } else {
        Box::new(counted)
    };
    let mut sink = FileSink::new(opts)?;
    let pool = Pool::default();
    let mut chunks = Chunker {
        reader,
        pool: &pool,
        seq: 0,
        next_line: 0,
        carry: Vec::new(),
        eof: false,
        stop: &opts.stop,
        interrupted: false,
        failed: None,
    };
    let turn = Turn {
        state: Mutex::new((0, processor.new_budget())),
        changed: Condvar::new(),
        abort: AtomicBool::new(false),
    };
    let threads = opts.threads.max(1);
    let mut counts = Counts::default();
    if threads == 1 {
        let mut worker = Worker::new(processor, &opts.input_config, &pool)
            .map_err(|e| ServiceError::io(&opts.input, e))?;
        while let Some(chunk) = chunks.next().map_err(read_err)? {
            let idle = chunk.idle;
            let done = worker
                .chunk(chunk, &turn)
                .ok_or_else(|| ServiceError::Internal("replay aborted".into()))?;
            sink.write(&done)?;
            if idle {
                sink.flush()?;
            }
            counts.add(&done.counts);
            pool.put(done.out);
            pool.put(done.dead);
        }
    } else {
        std::thread::scope(|scope| -> Result<()> {
            // Chunk n goes to worker n % threads, whose results come back in its order: reading
            // the workers' results round-robin restores the input order.
            let mut to_workers = Vec::with_capacity(threads);
            let mut from_workers = Vec::with_capacity(threads);
            for _ in 0..threads {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
                let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
                let mut worker = Worker::new(processor, &opts.input_config, &pool)
                    .map_err(|e| ServiceError::io(&opts.input, e))?;
                let turn = &turn;
                scope.spawn(move || {
                    for chunk in rx {
                        let Some(done) = worker.chunk(chunk, turn) else {
                            return;
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                });
                to_workers.push(tx);
                from_workers.push(done_rx);
            }
            let r = (|| -> Result<()> {
                let (mut sent, mut written) = (0u64, 0u64);
                // Writes the next chunk's results, and flushes the files after them if asked.
                let mut write_next = |written: &mut u64, flush: bool| -> Result<()> {
                    let done = from_workers[(*written % threads as u64) as usize]
                        .recv()
                        .map_err(|_| ServiceError::Internal("a replay thread stopped".into()))?;
                    sink.write(&done)?;
                    if flush {
                        sink.flush()?;
                    }
                    counts.add(&done.counts);
                    pool.put(done.out);
                    pool.put(done.dead);
                    *written += 1;
                    Ok(())
                };
                while let Some(chunk) = chunks.next().map_err(read_err)? {
                    let idle = chunk.idle;
                    to_workers[(sent % threads as u64) as usize]
                        .send(chunk)
                        .map_err(|_| ServiceError::Internal("a replay thread stopped".into()))?;
                    sent += 1;
                    // The input went quiet: everything read so far out before waiting for more.
                    let ahead = if idle { 0 } else { 2 * threads as u64 };
                    while sent - written > ahead {
                        let last = idle && sent - written == 1;
                        write_next(&mut written, last)?;
                    }
                }
                to_workers.clear();
                while written < sent {
                    write_next(&mut written, false)?;
                }
                Ok(())
            })();
            if r.is_err() {
                turn.abort.store(true, Ordering::Relaxed);
                to_workers.clear();
            }
            r
        })?;
    }
    let interrupted = chunks.interrupted;
    let (failed, read) = (chunks.failed.take(), chunks.next_line);
    drop(chunks);
    let mut summary = sink.finish()?;
    if let Some(e) = failed {
        // What was read is decided and written (finished above); then the error, saying so.
        return Err(read_err(std::io::Error::new(
            e.kind(),
            format!(
                "{e}: the input could not be read past line {read}; the decisions and dead \
                 letters of lines 1 to {read} are written"
            ),
        )));
    }
    summary.interrupted = interrupted;
    summary.slm_unavailable = processor.slm_status().err().map(str::to_string);
    progress.finish_phase();
    let labels = processor.labels();
    summary.lines = counts.lines;
    summary.blank = counts.blank;
    summary.decisions = counts.decisions;
    summary.dead_lettered = counts.dead_lettered;
    for (r, n) in ROUTES.iter().zip(counts.by_route) {
        if n > 0 {
            summary.by_route.insert(r.as_str().to_string(), n);
        }
    }
    for (l, &n) in labels.iter().zip(&counts.by_label) {
        if n > 0 {
            summary.by_label.insert(l.clone(), n);
        }
    }
    for (k, n) in counts.dead_letter_kinds {
        summary.dead_letter_kinds.insert(k.to_string(), n);
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.mean_classify_us = if summary.decisions > 0 {
        counts.classify_us / summary.decisions as f64
    } else {
        0.0
    };
    Ok(summary)
}

/// Writes decisions to the output file and dead letters to the dead-letter file (opened at
/// the first one).
pub struct FileSink<'a> {
    out: Box<dyn Write>,
    dlq: Option<Box<dyn Write>>,
    opts: &'a ReplayOptions,
}

impl<'a> FileSink<'a> {
    /// Opens the output.
    pub fn new(opts: &'a ReplayOptions) -> Result<Self> {
        Ok(Self {
            out: open_out(&opts.output)?,
            dlq: None,
            opts,
        })
    }

    /// Appends a decided chunk to the files.
    fn write(&mut self, done: &Done) -> Result<()> {
        self.out
            .write_all(&done.out)
            .map_err(|e| ServiceError::io(&self.opts.output, e))?;
        if !done.dead.is_empty() {
            if self.dlq.is_none() {
                self.dlq = Some(open_out(&self.opts.dead_letter)?);
            }
            if let Some(w) = self.dlq.as_mut() {
                w.write_all(&done.dead)
                    .map_err(|e| ServiceError::io(&self.opts.dead_letter, e))?;
            }
        }
        Ok(())
    }

    /// Flushes both files.
    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| ServiceError::io(&self.opts.output, e))?;
        if let Some(w) = self.dlq.as_mut() {
            w.flush()
                .map_err(|e| ServiceError::io(&self.opts.dead_letter, e))?;
        }
        Ok(())
    }

    /// Flushes both files.
    pub fn finish(mut self) -> Result<ReplaySummary> {
        self.flush()?;
        Ok(ReplaySummary::default())
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
        if self.interrupted {
            let _ = writeln!(
                s,
                "interrupted: every line up to line {} is decided or dead-lettered; the rest was \
                 not read (to go on: tail -n +{} INPUT)",
                self.lines,
                self.lines + 1
            );
        }
        let _ = writeln!(s, "mean classify time {:.2} µs", self.mean_classify_us);
        let pct = |n: u64| 100.0 * n as f64 / self.decisions.max(1) as f64;
        let _ = writeln!(s, "routes:");
        for (k, v) in &self.by_route {
            let _ = writeln!(s, "  {k:<16} {v:>8}  {:>5.1}%", pct(*v));
        }
        if let Some(why) = &self.slm_unavailable {
            let _ = writeln!(
                s,
                "  no second opinion ran ({why}): `degraded` would have gone to the SLM and \
                 kept the fast label; `over_budget` is what [budget] held back, applied as the \
                 service would"
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The memchr line split finds the lines `split_inclusive` finds.
        #[test]
        fn split_lines_matches_split_inclusive(bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200)) {
            let want: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
            prop_assert_eq!(split_lines(&bytes), want.clone());
            prop_assert_eq!(line_count(&bytes), want.len() as u64);
        }
    }

    /// Without a second opinion the text summary says why, and what `degraded` and
    /// `over_budget` then mean (they had read as a budget too small).
    #[test]
    fn a_summary_without_a_second_opinion_says_so() {
        let mut summary = ReplaySummary {
            decisions: 37,
            ..ReplaySummary::default()
        };
        summary.by_route.insert("degraded".into(), 10);
        summary.by_route.insert("over_budget".into(), 22);
        summary.by_route.insert("fast".into(), 5);
        assert!(!summary.to_text().contains("no second opinion"));
        summary.slm_unavailable = Some("the SLM is off ([slm] mode = \"off\")".into());
        let text = summary.to_text();
        assert!(
            text.contains("no second opinion ran (the SLM is off ([slm] mode = \"off\"))"),
            "{text}"
        );
        assert!(
            text.contains("`over_budget` is what [budget] held back"),
            "{text}"
        );
    }

    /// A line many chunks long arrives whole, in one chunk, between the lines around it; the
    /// buffer that held it is not kept for later chunks.
    #[test]
    fn a_line_longer_than_many_chunks_is_one_chunk() {
        let long = format!("{{\"text\":\"{}\"}}\n", "x".repeat(20 * CHUNK_BYTES));
        let input = format!("{{\"text\":\"a\"}}\n{long}{{\"text\":\"b\"}}\nc");
        let pool = Pool::default();
        let stop = AtomicUsize::new(0);
        let mut chunker = Chunker {
            reader: std::io::Cursor::new(input.as_bytes()),
            pool: &pool,
            seq: 0,
            next_line: 0,
            carry: Vec::new(),
            eof: false,
            stop: &stop,
            interrupted: false,
            failed: None,
        };
        let mut chunks = Vec::new();
        while let Some(c) = chunker.next().unwrap() {
            assert_eq!(
                c.first_line,
                1 + chunks.iter().map(|b: &Vec<u8>| line_count(b)).sum::<u64>()
            );
            chunks.push(c.bytes);
        }
        assert_eq!(chunks.concat(), input.as_bytes());
        let lines: Vec<&[u8]> = chunks.iter().flat_map(|c| split_lines(c)).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], long.as_bytes());
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c.ends_with(b"\n"))
        );
        let n = chunks.len();
        for c in chunks {
            pool.put(c);
        }
        for _ in 0..n {
            assert!(pool.get().capacity() <= 4 * CHUNK_BYTES);
        }
    }
}
