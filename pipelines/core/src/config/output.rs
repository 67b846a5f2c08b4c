//! `[output]`: what each decision record holds.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// The most labels `[output] top_k` can ask for (0 asks for every label).
pub const MAX_TOP_K: usize = 64;

/// What each decision record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// How many labels the record's `probabilities` object lists. 0 (the default): every label,
    /// in name order. From 1 to [`MAX_TOP_K`]: the `top_k` most probable (every label when the
    /// model has fewer), most probable first (by the probabilities before their rounding to 4
    /// decimals; ties in name order). A model with dozens or hundreds of labels (intents) otherwise
    /// writes a probability for each of them into every record, about 3 KB at 151 labels, where
    /// a consumer reads the first few.
    pub top_k: usize,
}

impl OutputConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.top_k > MAX_TOP_K {
            return Err(CoreError::Config(format!(
                "[output] top_k = {} is over {MAX_TOP_K} (0 lists every label)",
                self.top_k
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_bounded() {
        assert!(OutputConfig::default().validate().is_ok());
        assert!(OutputConfig { top_k: MAX_TOP_K }.validate().is_ok());
        let err = OutputConfig {
            top_k: MAX_TOP_K + 1,
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("top_k"), "{err}");
    }
}
