//! # triage-service
//!
//! The running cascade: sources, the shared processing path, the SLM stage and sinks.
//!
//! ```text
//!  source ──payload──► Processor::step ──► decode ─► classify ─► Router::route
//!  (file lines,                               │ bad input                │ fast / over_budget
//!   Kafka records)                            ▼                          ▼
//!                                        Sink::dead_letter          Sink::decision
//!                                                                        ▲
//!            second_opinion / generate ─► Processor::resolve ─► SLM ─► Router::settle
//!
//!  Kafka: Sink acknowledgements ──► offset tracker ──► store_offset (then commit)
//! ```
//!
//! - [`processor`]: decode, classify, route, and settle after the SLM (the one path of replay
//!   and Kafka);
//! - [`slm`]: the SLM executor (threads, batching, timeouts) and its backends;
//! - [`sink`]: the shape of a sink, and publishing a step's result;
//! - [`file`](mod@file): replay of a message log (file source and sink);
//! - [`kafka`]: the Kafka service (consumer, offsets, producer sink), at-least-once;
//! - [`metrics`]: the Prometheus and health endpoint;
//! - [`classify`]: `triage classify`'s line-by-line fast path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod error;
pub mod file;
pub mod kafka;
pub mod metrics;
pub mod processor;
pub mod record;
pub mod sink;
pub mod slm;

pub use error::{Result, ServiceError};
pub use processor::{
    Classified, Decision, Label, Pending, Processor, Record, Step, Timings, Verdict,
};
