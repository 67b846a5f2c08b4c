//! Loading ONNX Runtime once per process, and building sessions with deliberate thread settings.
//!
//! ONNX Runtime is loaded at run time from `libonnxruntime.so.1.31.1` (`ort`'s `load-dynamic` feature). The path
//! comes from [`ModelsConfig::runtime_path`]: the explicit `runtime_path`, else `$ORT_DYLIB_PATH`, else
//! `<cache_dir>/onnxruntime/libonnxruntime.so.1.31.1` where `scripts/install-models.sh` puts it.
//!
//! ONNX Runtime allows one environment per process, so every crate of the workspace that needs a session should
//! get the environment from [`init`] (or [`get`]) rather than calling `ort::init` itself.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::SessionBuilder;

use crate::error::{ModelsError, Result};
use crate::{Device, ModelsConfig};

/// The loaded ONNX Runtime: its environment and the library it came from. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    library: PathBuf,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Loads ONNX Runtime from the path `config` names (see the module docs), once per process.
///
/// Thread-safe and idempotent: later calls return the runtime loaded first, whatever path they name (a different
/// path is logged as a warning). A failed load (missing or wrong library) is not remembered, so a later call with a
/// correct path can still succeed.
pub fn init(config: &ModelsConfig) -> Result<Runtime> {
    init_from(&config.runtime_path())
}

/// Loads ONNX Runtime from `library` (see [`init`]).
pub fn init_from(library: &Path) -> Result<Runtime> {
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    let wanted = std::path::absolute(library).unwrap_or_else(|_| library.to_path_buf());
    if let Some(runtime) = slot.as_ref() {
        if !same_file(&runtime.library, &wanted) {
            tracing::warn!(
                loaded = %runtime.library.display(),
                requested = %wanted.display(),
                "ONNX Runtime is already loaded in this process; ignoring the other library path"
            );
        }
        return Ok(runtime.clone());
    }
    if !wanted.is_file() {
        return Err(ModelsError::RuntimeNotFound { path: wanted });
    }
    let load_error = |reason: String| ModelsError::RuntimeLoad {
        path: wanted.clone(),
        reason,
    };
    let env = ort::init_from(&wanted)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("triage")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    tracing::info!(library = %wanted.display(), "loaded ONNX Runtime");
    let runtime = Runtime {
        env,
        library: wanted,
    };
    *slot = Some(runtime.clone());
    Ok(runtime)
}

/// The runtime loaded by an earlier [`init`], if any.
pub fn get() -> Option<Runtime> {
    RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Runtime {
    /// The ONNX Runtime environment, for building other sessions in the same process.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The shared library this runtime was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether the loaded ONNX Runtime was built with the CUDA execution provider.
    pub fn cuda_available(&self) -> bool {
        ep::CUDA::is_available().unwrap_or(false)
    }

    /// Builds a session for `model` with the config's threads and device: intra-op threads as configured, one
    /// inter-op thread, no spinning. A file that ONNX Runtime cannot load gives [`ModelsError::ModelCorrupt`].
    pub fn session(&self, model: &Path, config: &ModelsConfig) -> Result<Session> {
        if !model.is_file() {
            return Err(ModelsError::ModelMissing {
                path: model.to_path_buf(),
            });
        }
        let option = |what: &str, e: ort::Error<SessionBuilder>| {
            ModelsError::Config(format!("ONNX Runtime rejected session option {what}: {e}"))
        };
        let threads = config.effective_intra_threads();
        let mut builder = Session::builder(&self.env)
            .map_err(|e| ModelsError::Config(format!("cannot create a session builder: {e}")))?
            .with_intra_threads(threads)
            .map_err(|e| option("intra_threads", e))?
            .with_inter_threads(1)
            .map_err(|e| option("inter_threads", e))?
            .with_intra_op_spinning(false)
            .map_err(|e| option("session.intra_op.allow_spinning=0", e))?
            .with_inter_op_spinning(false)
            .map_err(|e| option("session.inter_op.allow_spinning=0", e))?;
        if config.device == Device::Cuda {
            builder = self.with_cuda(builder, config.cuda_device_id, model);
        }
        builder
            .commit_from_file(model)
            .map_err(|e| ModelsError::ModelCorrupt {
                path: model.to_path_buf(),
                reason: e.to_string(),
            })
    }

    fn with_cuda(&self, builder: SessionBuilder, device_id: i32, model: &Path) -> SessionBuilder {
        if !self.cuda_available() {
            tracing::warn!(
                library = %self.library.display(),
                model = %model.display(),
                "device = \"cuda\" but this ONNX Runtime has no CUDA execution provider; running on the CPU"
            );
            return builder;
        }
        let cuda = ep::CUDA::default()
            .with_device_id(device_id)
            .build()
            .error_on_failure();
        match builder.with_execution_providers([cuda]) {
            Ok(builder) => {
                tracing::info!(model = %model.display(), device_id, "using the CUDA execution provider");
                builder
            }
            Err(e) => {
                tracing::warn!(
                    model = %model.display(),
                    error = %e,
                    "could not register the CUDA execution provider; running on the CPU"
                );
                e.recover()
            }
        }
    }
}
