//! # triage-models
//!
//! ONNX Runtime wrappers for triage's second opinion: the messages the fast classifier is unsure about.
//!
//! * [`Encoder`]: all-MiniLM-L6-v2 (int8) sentence embeddings, 384-d, mean-pooled and L2-normalised.
//! * [`FinetunedClassifier`]: the encoder fine-tuned end to end on the user's labels (`triage slm finetune`),
//!   one int8 graph from text to class probabilities.
//! * [`Head`]: a classifier on those embeddings, either trained (multinomial logistic regression) or zero-shot
//!   (cosine similarity to label descriptions).
//! * [`Generator`]: SmolLM2-135M-Instruct (int4) chat replies with a KV cache.
//! * [`runtime`]: loads ONNX Runtime (`libonnxruntime.so.1.31.1`) once per process, from an explicit path,
//!   `$ORT_DYLIB_PATH`, or `.cache/triage/onnxruntime/` where `scripts/install-models.sh` puts it.
//! * [`verify`]: sha256 checks of the model files against `scripts/models.sha256` before they are loaded.
//!
//! Nothing is downloaded at run time: `scripts/install-models.sh` installs the runtime and both models, and
//! every error says what to do when something is missing ([`ModelsError`]).
//!
//! ```no_run
//! use std::path::Path;
//! use triage_models::{ChatMessage, Encoder, GenerateOptions, Generator, Head, ModelsConfig, TrainOptions};
//!
//! # fn main() -> triage_models::Result<()> {
//! // Paths default to `<root>/.cache/triage/...`; every field can be set from a `[models]` config table.
//! let config = ModelsConfig::default().resolved(Path::new("/path/to/triage"));
//!
//! let encoder = Encoder::from_config(&config)?;
//! let x = encoder.embed(&["my card was declined", "where is my parcel?", "card got rejected at the shop"])?;
//! let head = Head::train(&x, &[0, 1, 0], &["card", "delivery"], &TrainOptions::default())?;
//! let probs = head.predict_proba(&encoder.embed(&["payment refused"])?)?; // 1 × 2, columns = head.labels()
//! # let _ = probs;
//!
//! let generator = Generator::from_config(&config)?;
//! let reply = generator.chat(
//!     &[ChatMessage::user("Say hello in five words.")],
//!     &GenerateOptions { max_new_tokens: 24, ..GenerateOptions::default() },
//! )?;
//! println!("{} ({} tokens, prefill {:?})", reply.text, reply.tokens.len(), reply.prefill);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod encoder;
pub mod error;
pub mod finetuned;
pub mod generator;
pub mod head;
pub mod runtime;
pub mod second_opinion;
mod text;
pub mod verify;

pub use encoder::Encoder;
pub use error::{ModelsError, Result};
pub use finetuned::{ClassifierCard, FinetunedClassifier};
pub use generator::{ChatMessage, FinishReason, GenerateOptions, Generation, Generator};
pub use head::{DEFAULT_HEAD, Head, HeadKind, TrainOptions};
pub use runtime::Runtime;
pub use second_opinion::{Mapped, SecondOpinion};
/// The `[slm.models]` settings (defined in `triage-core`, with the rest of the configuration).
pub use triage_core::config::models::{self as config, Device, ModelsConfig};
pub use verify::Manifest;
