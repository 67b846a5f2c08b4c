//! sha256 verification of model files against a `sha256sum`-format manifest.
//!
//! The manifest `scripts/models.sha256` pins every file `scripts/install-models.sh` installs, with paths relative
//! to the cache directory (`models/all-minilm-l6-v2-int8/model_int8.onnx`, ...). It is compiled into this crate
//! ([`Manifest::builtin`]), so a loaded model is always the one the tests were run against.

use std::path::{Path, PathBuf};

use crate::error::{ModelsError, Result};

const BUILTIN: &str = include_str!("../../scripts/models.sha256");
const BUILTIN_NAME: &str = "<built-in scripts/models.sha256>";

/// One manifest line: a file and its expected sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Path relative to the directory the manifest describes.
    pub path: PathBuf,
}

/// A parsed `sha256sum`-format manifest (`<hex>  <path>` per line; `#` comments and blank lines ignored).
#[derive(Debug, Clone)]
pub struct Manifest {
    source: PathBuf,
    entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest compiled into the crate (`scripts/models.sha256`).
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN, Path::new(BUILTIN_NAME))
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelsError::Manifest {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// The manifest at `path`, or the built-in one when `path` is `None`.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(Self::builtin, Self::load)
    }

    /// Parses manifest text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let bad = |line_no: usize, why: &str| ModelsError::Manifest {
            path: source.to_path_buf(),
            reason: format!("line {line_no}: {why}"),
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hash, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(i + 1, "expected `<sha256>  <path>`"))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(i + 1, "the hash is not 64 hex digits"));
            }
            // `sha256sum` writes "<hash>  <path>" (text mode) or "<hash> *<path>" (binary mode).
            let path = rest.trim_start().trim_start_matches('*');
            if path.is_empty() {
                return Err(bad(i + 1, "missing path"));
            }
            entries.push(ManifestEntry {
                sha256: hash.to_ascii_lowercase(),
                path: PathBuf::from(path),
            });
        }
        if entries.is_empty() {
            return Err(ModelsError::Manifest {
                path: source.to_path_buf(),
                reason: "it has no entries".into(),
            });
        }
        Ok(Self {
            source: source.to_path_buf(),
            entries,
        })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Checks every entry, relative to `root` (the cache directory). Returns the number of files checked.
    pub fn verify_root(&self, root: &Path) -> Result<usize> {
        for entry in &self.entries {
            verify_file(&root.join(&entry.path), &entry.sha256)?;
        }
        Ok(self.entries.len())
    }

    /// Checks the entries of one model directory: those whose parent directory has the same name as `dir`
    /// (`models/all-minilm-l6-v2-int8/*` for `.../all-minilm-l6-v2-int8`). Returns the number of files checked;
    /// a directory the manifest does not know is an error.
    pub fn verify_dir(&self, dir: &Path) -> Result<usize> {
        let name = dir.file_name();
        let mut checked = 0;
        for entry in &self.entries {
            if entry.path.parent().and_then(Path::file_name) == name
                && let Some(file) = entry.path.file_name()
            {
                verify_file(&dir.join(file), &entry.sha256)?;
                checked += 1;
            }
        }
        if checked == 0 {
            return Err(ModelsError::Manifest {
                path: self.source.clone(),
                reason: format!(
                    "no entries for a model directory named {:?} ({}): add its files to the manifest, \
                     or set verify_checksums = false for a model of your own",
                    name.unwrap_or_default(),
                    dir.display()
                ),
            });
        }
        Ok(checked)
    }
}

/// The lower-case hex sha256 of a file ([`ModelsError::ModelMissing`] if it does not exist).
pub fn sha256_file(path: &Path) -> Result<String> {
    triage_core::sha256_file(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelsError::ModelMissing {
            path: path.to_path_buf(),
        },
        _ => ModelsError::io(path, e),
    })
}

/// Checks one file against an expected sha256: [`ModelsError::ModelMissing`] if it does not exist,
/// [`ModelsError::ChecksumMismatch`] if it differs.
pub fn verify_file(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ModelsError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_covers_both_models() {
        let m = Manifest::builtin().expect("built-in manifest parses");
        let has = |p: &str| m.entries().iter().any(|e| e.path == Path::new(p));
        assert!(has("onnxruntime/libonnxruntime.so.1.31.1"));
        assert!(has("models/all-minilm-l6-v2-int8/model_int8.onnx"));
        assert!(has("models/smollm2-135m-instruct-int4/model.onnx.data"));
    }

    #[test]
    fn verify_dir_detects_missing_and_mismatched_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("m");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("a.bin"), b"hello").expect("write");
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let text = format!("# comment\n{hello}  models/m/a.bin\n{hello} *models/m/b.bin\n");
        let m = Manifest::parse(&text, Path::new("test")).expect("parses");
        match m.verify_dir(&dir) {
            Err(ModelsError::ModelMissing { path }) => assert!(path.ends_with("b.bin")),
            other => panic!("expected ModelMissing, got {other:?}"),
        }
        std::fs::write(dir.join("b.bin"), b"hullo").expect("write");
        match m.verify_dir(&dir) {
            Err(ModelsError::ChecksumMismatch { path, .. }) => assert!(path.ends_with("b.bin")),
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
        std::fs::write(dir.join("b.bin"), b"hello").expect("write");
        assert_eq!(m.verify_dir(&dir).expect("verifies"), 2);
        assert!(matches!(
            m.verify_dir(&tmp.path().join("other")),
            Err(ModelsError::Manifest { .. })
        ));
    }

    #[test]
    fn malformed_manifest_is_rejected() {
        assert!(Manifest::parse("xyz  a\n", Path::new("t")).is_err());
        assert!(Manifest::parse("# only comments\n", Path::new("t")).is_err());
    }
}
