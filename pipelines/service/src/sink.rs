//! One shape for every source and sink: a source reads payloads, [`crate::Processor::step`] decides
//! them, and a [`Sink`] takes the results: decisions to the output, undecodable input to the
//! dead letters. A file sink writes lines; the Kafka sink produces records and reports their
//! acknowledgements back to the source, which only then stores offsets.

use triage_core::message::DecodeError;

use crate::error::Result;
use crate::processor::{Pending, Step, Verdict};

/// Where results go.
pub trait Sink {
    /// Where the input came from, as this sink needs it for its record (a line number; a
    /// topic, partition and offset with the record's key and headers).
    type Origin;

    /// Publishes a decision: its record (one JSON object, no newline) and what it says.
    fn decision(
        &mut self,
        record: &[u8],
        verdict: Verdict,
        origin: Self::Origin,
    ) -> impl Future<Output = Result<()>>;

    /// Publishes an input that is not a message, with the reason.
    fn dead_letter(
        &mut self,
        error: &DecodeError,
        raw: &[u8],
        origin: Self::Origin,
    ) -> impl Future<Output = Result<()>>;
}

/// Publishes what [`crate::Processor::step`] decided now (its record is `record`, the bytes
/// `step` appended), or returns the SLM call to await before the decision can be published: the
/// source chooses when to await it (replay awaits a chunk together so that the calls batch;
/// Kafka keeps polling meanwhile) and then publishes the result of
/// [`crate::Processor::resolve`] with [`Sink::decision`].
pub async fn publish<S: Sink>(
    sink: &mut S,
    step: Step,
    record: &[u8],
    raw: &[u8],
    origin: S::Origin,
) -> Result<Option<(Box<Pending>, S::Origin)>> {
    match step {
        Step::Done(v) => sink.decision(record, v, origin).await.map(|()| None),
        Step::Slm(p) => Ok(Some((p, origin))),
        Step::Dead(e) => sink.dead_letter(&e, raw, origin).await.map(|()| None),
    }
}
