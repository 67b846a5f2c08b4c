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

    /// Decodes and classifies `items`, in parallel, in order; each message's probabilities go
    /// to its `k` floats of `probs` (`items.len() * k` long).
    pub(crate) fn prepare<'a>(
        &self,
        processor: &Processor,
        input: &InputConfig,
        items: &[Item<'a>],
        probs: &mut [f32],
        k: usize,
    ) -> Vec<Prepared<'a>> {
        debug_assert_eq!(probs.len(), items.len() * k);
        let n = items.len();
        let mut out: Vec<Option<Prepared<'a>>> = (0..n).map(|_| None).collect();
        let parts = self.threads.min(n / MIN_PER_THREAD).max(1);
        if parts == 1 {
            prepare_part(processor, input, items, &mut out, probs, k);
        } else {
            let per = n.div_ceil(parts);
            self.pool.in_place_scope(|s| {
                let mut chunks = items
                    .chunks(per)
                    .zip(out.chunks_mut(per))
                    .zip(probs.chunks_mut(per * k));
                let mine = chunks.next();
                for ((it, o), p) in chunks {
                    s.spawn(move |_| prepare_part(processor, input, it, o, p, k));
                }
                if let Some(((it, o), p)) = mine {
                    prepare_part(processor, input, it, o, p, k);
                }
            });
        }
        out.into_iter()
            .map(|o| o.expect("every message of a batch is prepared"))
            .collect()
    }
}

fn prepare_part<'a>(
    processor: &Processor,
    input: &InputConfig,
    items: &[Item<'a>],
    out: &mut [Option<Prepared<'a>>],
    probs: &mut [f32],
    k: usize,
) {
    SCRATCH.with(|cell| {
        let (scratch, buf) = &mut *cell.borrow_mut();
        for ((item, slot), p) in items.iter().zip(out.iter_mut()).zip(probs.chunks_mut(k)) {
            let r = decode(item.payload, input, || {
                format!("{}/{}/{}", item.topic, item.partition, item.offset)
            })
            .map(|m| {
                let c = processor.classify(&m, scratch, buf);
                p.copy_from_slice(buf);
                (m, c)
            });
            *slot = Some(r);
        }
    });
}
