//! The `[slm.models]` section: where the ONNX Runtime and the models live and how to run them
//! (`triage-models` loads them).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default cache directory, relative to the project root (what `scripts/install-models.sh` fills).
pub const DEFAULT_CACHE_DIR: &str = ".cache/triage";
/// Runtime library location inside the cache directory.
pub const RUNTIME_LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.31.1";
/// Encoder directory inside the cache directory.
pub const ENCODER_DIR: &str = "models/all-minilm-l6-v2-int8";
/// Generator directory inside the cache directory.
pub const GENERATOR_DIR: &str = "models/smollm2-135m-instruct-int4";
/// The fine-tuned second opinion of the built-in default model, inside the cache directory
/// (`scripts/install-models.sh` installs it from `models/default/sentiment4-minilm/`).
pub const DEFAULT_FINETUNED_DIR: &str = "models/triage-sentiment4-minilm";

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider. Needs a CUDA build of ONNX Runtime (the pinned PyPI
    /// `onnxruntime` wheel is CPU-only); when CUDA cannot be used the session falls back to the CPU with a
    /// warning.
    Cuda,
}

/// Configuration for the runtime and both models.
///
/// Relative paths are resolved against the current directory, or against a project root with
/// [`ModelsConfig::resolved`]. Every field has a default, so an empty table is a valid configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Path of `libonnxruntime.so.1.31.1`. Default: `$ORT_DYLIB_PATH` if set, else
    /// `<cache_dir>/onnxruntime/libonnxruntime.so.1.31.1`.
    pub runtime_path: Option<PathBuf>,
    /// Directory `scripts/install-models.sh` installs into. Default: `$TRIAGE_CACHE` if set, else `.cache/triage`.
    pub cache_dir: Option<PathBuf>,
    /// Encoder directory (`model_int8.onnx`, `tokenizer.json`). Default: `<cache_dir>/models/all-minilm-l6-v2-int8`.
    pub encoder_dir: Option<PathBuf>,
    /// Generator directory (`model.onnx`, `model.onnx.data`, `genai_config.json`, `tokenizer.json`).
    /// Default: `<cache_dir>/models/smollm2-135m-instruct-int4`.
    pub generator_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session. 0 (the default) means the number of CPUs divided by
    /// `encoder_sessions`, capped at 4. Idle threads never spin (`session.intra_op.allow_spinning = 0`).
    pub intra_threads: usize,
    /// Number of encoder sessions, so that this many threads can embed at once (default 1). Each session holds
    /// its own copy of the weights (about 30 MB).
    pub encoder_sessions: usize,
    /// Longest encoder input in tokens; longer texts are truncated (default 256, the model's training length).
    pub max_seq_len: usize,
    /// Texts per encoder forward pass when `Encoder::embed` is given more (default 64).
    pub encoder_batch_size: usize,
    /// `cpu` (default) or `cuda`.
    pub device: Device,
    /// CUDA device ordinal when `device = "cuda"` (default 0).
    pub cuda_device_id: i32,
    /// Check model files against the sha256 manifest before loading them (default true; hashing ~110 MB costs
    /// about half a second).
    pub verify_checksums: bool,
    /// sha256sum-format manifest to check against. Default: the manifest compiled into this crate
    /// (`scripts/models.sha256`).
    pub manifest: Option<PathBuf>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            runtime_path: None,
            cache_dir: None,
            encoder_dir: None,
            generator_dir: None,
            intra_threads: 0,
            encoder_sessions: 1,
            max_seq_len: 256,
            encoder_batch_size: 64,
            device: Device::Cpu,
            cuda_device_id: 0,
            verify_checksums: true,
            manifest: None,
        }
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl ModelsConfig {
    /// The cache directory: `cache_dir`, else `$TRIAGE_CACHE`, else `.cache/triage`.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| env_path("TRIAGE_CACHE"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
    }

    /// The runtime library: `runtime_path`, else `$ORT_DYLIB_PATH`, else the install location in the cache.
    pub fn runtime_path(&self) -> PathBuf {
        self.runtime_path
            .clone()
            .or_else(|| env_path("ORT_DYLIB_PATH"))
            .unwrap_or_else(|| self.cache_dir().join(RUNTIME_LIBRARY))
    }

    /// The encoder directory.
    pub fn encoder_dir(&self) -> PathBuf {
        self.encoder_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir().join(ENCODER_DIR))
    }

    /// Where the built-in default model's fine-tuned second opinion is installed.
    pub fn default_finetuned_dir(&self) -> PathBuf {
        self.cache_dir().join(DEFAULT_FINETUNED_DIR)
    }

    /// The generator directory.
    pub fn generator_dir(&self) -> PathBuf {
        self.generator_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir().join(GENERATOR_DIR))
    }

    /// A copy with every default filled in and every relative path joined to `root` (environment variables are
    /// read now).
    pub fn resolved(&self, root: &Path) -> Self {
        let abs = |p: PathBuf| if p.is_absolute() { p } else { root.join(p) };
        let cache = abs(self.cache_dir());
        let with_cache = Self {
            cache_dir: Some(cache),
            ..self.clone()
        };
        Self {
            runtime_path: Some(abs(with_cache.runtime_path())),
            encoder_dir: Some(abs(with_cache.encoder_dir())),
            generator_dir: Some(abs(with_cache.generator_dir())),
            manifest: self.manifest.clone().map(abs),
            ..with_cache
        }
    }

    /// The intra-op thread count a session gets (`intra_threads`, or the automatic choice).
    pub fn effective_intra_threads(&self) -> usize {
        if self.intra_threads > 0 {
            return self.intra_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (cpus / self.encoder_sessions.max(1)).clamp(1, 4)
    }

    /// Checks the values that would otherwise fail late; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.encoder_sessions == 0 {
            return Err("encoder_sessions must be at least 1".into());
        }
        if !(2..=512).contains(&self.max_seq_len) {
            return Err(format!(
                "max_seq_len must be between 2 and 512 (the encoder's position limit), got {}",
                self.max_seq_len
            ));
        }
        if self.encoder_batch_size == 0 {
            return Err("encoder_batch_size must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_is_default_and_unknown_fields_are_rejected() {
        let cfg: ModelsConfig = serde_json::from_str("{}").expect("empty config parses");
        assert_eq!(cfg, ModelsConfig::default());
        let err = serde_json::from_str::<ModelsConfig>(r#"{"intra_thread": 2}"#)
            .expect_err("typo must be rejected");
        assert!(err.to_string().contains("unknown field"), "{err}");
        let cfg: ModelsConfig =
            serde_json::from_str(r#"{"device": "cuda", "intra_threads": 2}"#).expect("parses");
        assert_eq!(cfg.device, Device::Cuda);
        assert_eq!(cfg.effective_intra_threads(), 2);
    }

    #[test]
    fn resolved_paths_are_absolute() {
        let cfg = ModelsConfig {
            cache_dir: Some("c".into()),
            runtime_path: Some("/opt/ort.so".into()),
            ..ModelsConfig::default()
        }
        .resolved(Path::new("/proj"));
        assert_eq!(cfg.runtime_path(), PathBuf::from("/opt/ort.so"));
        assert_eq!(
            cfg.encoder_dir(),
            PathBuf::from("/proj/c/models/all-minilm-l6-v2-int8")
        );
        assert_eq!(
            cfg.generator_dir(),
            PathBuf::from("/proj/c/models/smollm2-135m-instruct-int4")
        );
    }
}
