//! Runtime loading. Its own test binary, so that no other test has loaded ONNX Runtime first.

mod common;

use triage_models::{ModelsError, runtime};

#[test]
fn missing_or_bad_library_is_an_error_and_a_later_good_path_still_works() {
    let tmp = tempfile::tempdir().expect("tempdir");

    let missing = tmp.path().join("libonnxruntime.so.1.31.1");
    let err = runtime::init_from(&missing).expect_err("no library there");
    assert!(
        matches!(err, ModelsError::RuntimeNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("scripts/install-models.sh") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );
    assert!(err.needs_install());

    std::fs::write(&missing, b"not a shared library").expect("write");
    let err = runtime::init_from(&missing).expect_err("not a library");
    assert!(matches!(err, ModelsError::RuntimeLoad { .. }), "{err:?}");
    assert!(runtime::get().is_none());

    // The failures were not remembered: the real library loads, once.
    let cfg = common::config();
    let rt = common::installed("ONNX Runtime", runtime::init(&cfg));
    assert_eq!(rt.library(), cfg.runtime_path().as_path());
    assert!(!rt.cuda_available(), "the pinned PyPI wheel is CPU-only");
    // Idempotent, also from several threads, and a different path afterwards is ignored (with a warning).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                assert_eq!(
                    runtime::init(&cfg).expect("already loaded").library(),
                    rt.library()
                )
            });
        }
    });
    assert_eq!(
        runtime::init_from(&missing)
            .expect("already loaded")
            .library(),
        rt.library()
    );
}
