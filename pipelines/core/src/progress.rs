//! Progress of long work (training, embedding, evaluating, replaying). Libraries report through
//! [`Progress`]; the binary draws bars from it, and tests pass [`NoProgress`].

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Messages.
    Messages,
    /// Bytes of input.
    Bytes,
    /// Optimiser iterations.
    Iterations,
    /// Training steps (batches).
    Steps,
}

/// Progress callbacks. Every method has a no-op default.
pub trait Progress: Send {
    /// A phase starts; `total` units of work if known.
    fn phase(&mut self, _name: &str, _total: Option<u64>, _unit: Unit) {}
    /// `n` more units done in the current phase.
    fn advance(&mut self, _n: u64) {}
    /// The optimiser finished iteration `iter` with this mean loss.
    fn iteration(&mut self, _iter: u64, _loss: f64) {}
    /// A short status for the current phase (e.g. the dev accuracy after an epoch).
    fn message(&mut self, _text: &str) {}
    /// The phase is over.
    fn finish_phase(&mut self) {}
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
