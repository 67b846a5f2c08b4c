//! `[kafka] classify_threads > 1`: the messages already waiting in the consumer's queue are
//! taken together, decoded and classified on several threads (the loop's own and a pool's),
//! then routed and published by the loop in the order they were consumed.

use std::cell::RefCell;

use triage_classifier::Scratch;
use triage_core::message::{DecodeError, InputConfig, Message, decode};

use crate::error::{Result, ServiceError};
use crate::processor::{Classified, Processor};

/// The most messages taken together.
pub(crate) const BATCH_MAX: usize = 256;

/// Below this many messages a thread, a batch is not split (handing work to another thread
/// costs more than it saves).
const MIN_PER_THREAD: usize = 16;

/// One consumed message, as the batch sees it.
pub(crate) struct Item<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// A message after the parallel part: decoded and classified, or why it is not a message.
pub(crate) type Prepared<'a> = std::result::Result<(Message<'a>, Classified), DecodeError>;

/// The threads besides the loop's own.
pub(crate) struct Workers {
    pool: rayon::ThreadPool,
    threads: usize,
}

thread_local! {
    /// Each thread's classify buffers, made once.
    static SCRATCH: RefCell<(Scratch, Vec<f32>)> = RefCell::new((Scratch::default(), Vec::new()));
}

impl Workers {
    /// `threads` in all: the caller's and `threads - 1` in a pool.
    pub(crate) fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.saturating_sub(1).max(1))
            .thread_name(|i| format!("triage-classify-{i}"))
            .build()
            .map_err(|e| ServiceError::Internal(format!("starting the classify threads: {e}")))?;
        Ok(Self { pool, threads })
    }

    /// Decodes and classifies `items`, in parallel, in order; the messages' probabilities go
    /// to `probs`, one row after another, as [`Processor::classify_all`] lays them out.
    pub(crate) fn prepare<'a>(
        &self,
        processor: &Processor,
        input: &InputConfig,
        items: &[Item<'a>],
        probs: &mut Vec<f32>,
    ) -> Vec<Prepared<'a>> {
        let n = items.len();
        let parts = self.threads.min(n / MIN_PER_THREAD).max(1);
        if parts == 1 {
            return prepare_part(processor, input, items, probs);
        }
        // The loop's thread takes the first part, the pool the others, each into its own
        // buffers; they are joined in order after.
        let per = n.div_ceil(parts);
        let (mine, rest) = items.split_at(per);
        let mut theirs: Vec<(&[Item<'a>], Vec<Prepared<'a>>, Vec<f32>)> = rest
            .chunks(per)
            .map(|it| (it, Vec::new(), Vec::new()))
            .collect();
        let mut out = Vec::new();
        self.pool.in_place_scope(|s| {
            for (it, o, p) in theirs.iter_mut() {
                s.spawn(move |_| *o = prepare_part(processor, input, it, p));
            }
            out = prepare_part(processor, input, mine, probs);
        });
        out.reserve(n - out.len());
        for (_, o, p) in theirs {
            out.extend(o);
            probs.extend_from_slice(&p);
        }
        out
    }
}

/// Decodes every item, then classifies the messages in one pass.
fn prepare_part<'a>(
    processor: &Processor,
    input: &InputConfig,
    items: &[Item<'a>],
    probs: &mut Vec<f32>,
) -> Vec<Prepared<'a>> {
    let mut out: Vec<Prepared<'a>> = items
        .iter()
        .map(|item| {
            decode(item.payload, input, || {
                format!("{}/{}/{}", item.topic, item.partition, item.offset)
            })
            .map(|m| (m, Classified::default()))
        })
        .collect();
    SCRATCH.with(|cell| {
        let (scratch, buf) = &mut *cell.borrow_mut();
        processor.classify_all(out.iter_mut().flatten(), scratch, buf, probs);
    });
    out
}
