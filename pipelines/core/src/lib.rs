//! # triage-core
//!
//! What every triage crate shares, and nothing that does I/O beyond reading a file:
//! - [`config`]: the service configuration, one serde struct per TOML section, each with
//!   defaults and `deny_unknown_fields`; loaded from a file plus `TRIAGE__…` environment
//!   overrides;
//! - [`message`]: an input payload decoded into a [`message::Message`], or a
//!   [`message::DecodeError`] that names what is wrong (for the dead-letter record);
//! - [`error`]: the [`ErrorDomain`] and [`RetryHint`] every error type of triage reports, so that
//!   one place (the binary) decides exit codes and retries;
//! - [`names`]: metric, header and record field names, written once;
//! - [`progress`]: the progress callbacks long work reports through (the binary draws bars);
//! - [`jsonl`]: reading JSONL files, the format of every data set and message log;
//! - [`paths`]: a command's output paths checked against its inputs before anything is written;
//! - [`memory`]: how much memory the process can still take (`/proc`, the cgroup's limit);
//! - [`argmax`] and [`sha256_file`], used across the crates.
//!
//! ```
//! use triage_core::config::Config;
//! use triage_core::message::decode;
//!
//! let config = Config::default();
//! let m = decode(br#"{"id":"m-1","text":"hi there","user":"u9"}"#, &config.input, || "line-1".into())
//!     .unwrap();
//! assert_eq!((&*m.id, &*m.text), ("m-1", "hi there"));
//! assert_eq!(m.fields.get("user").map(|v| v.get()), Some(r#""u9""#));
//! assert_eq!(triage_core::argmax(&[0.1, 0.7, 0.2]), (1, 0.7));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod jsonl;
pub mod memory;
pub mod message;
pub mod names;
pub mod paths;
pub mod progress;

use std::path::Path;

pub use error::{Diagnose, ErrorDomain, RetryHint};
pub use progress::{NoProgress, Progress, Unit};

/// The index and value of the largest element (the last one among equals, as
/// [`Iterator::max_by`] does; NaN sorts above everything by [`f32::total_cmp`]); `(0, 0.0)` for
/// an empty slice.
pub fn argmax(values: &[f32]) -> (usize, f32) {
    // Two passes the compiler runs many lanes a step (it runs `max_by`'s index-carrying chain
    // one element at a time, a visible cost at 151 labels on every message): the largest key
    // of `total_cmp`'s order, then the last element with it.
    let key = |x: f32| {
        let b = x.to_bits() as i32;
        b ^ (((b >> 31) as u32) >> 1) as i32
    };
    let Some(top) = values.iter().map(|&x| key(x)).max() else {
        return (0, 0.0);
    };
    let i = values
        .iter()
        .rposition(|&x| key(x) == top)
        .expect("the largest key is some element's");
    (i, values[i])
}

/// SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_takes_the_last_of_equals() {
        assert_eq!(super::argmax(&[0.5, 0.5]), (1, 0.5));
        assert_eq!(super::argmax(&[]), (0, 0.0));
        assert_eq!(super::argmax(&[0.2, 0.1]), (0, 0.2));
    }

    proptest::proptest! {
        /// The same index and value as `max_by` with `total_cmp` (the last of equals; NaN,
        /// infinities and signed zeros in their total order), bit for bit.
        #[test]
        fn argmax_is_max_by_total_cmp(values in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::f32::ANY,
                proptest::sample::select(vec![0.0f32, -0.0, 0.5, 1.0, f32::NAN, -f32::NAN]),
            ],
            0..200,
        )) {
            let want = values
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0));
            let got = super::argmax(&values);
            proptest::prop_assert_eq!((got.0, got.1.to_bits()), (want.0, want.1.to_bits()));
        }
    }
}
