//! A command's output paths, checked against its inputs before anything is written.
//!
//! `triage train --data log.jsonl --out log.jsonl` used to replace the training data with the
//! model; `triage replay --output` naming its input truncated the log before reading it. Every
//! command that writes a file calls [`refuse_overwriting`] first, so that such a slip is a
//! configuration error (exit 2) that destroys nothing.
//!
//! ```
//! use std::path::Path;
//! use triage_core::paths::refuse_overwriting;
//!
//! let dir = std::env::temp_dir().join(format!("triage-paths-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let data = dir.join("train.jsonl");
//! std::fs::write(&data, "{}\n").unwrap();
//! let model = dir.join("model.triage");
//!
//! // Another path is fine, whether or not it exists yet.
//! refuse_overwriting(&[("--data", Some(&*data))], &[("--out", Some(&*model))]).unwrap();
//! // The input under another spelling is refused, with both options named.
//! let err = refuse_overwriting(
//!     &[("--data", Some(&*data))],
//!     &[("--out", Some(&*dir.join(".").join("train.jsonl")))],
//! )
//! .unwrap_err();
//! assert!(err.to_string().contains("--out"), "{err}");
//! assert!(err.to_string().contains("--data"), "{err}");
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CoreError;

/// `-`: stdin as an input, stdout as an output; never the same file as a named path.
const STDIO: &str = "-";

/// Refuses file outputs that would write over an input, or over each other, or that name a
/// directory or a path under a file (`train --out .` had trained for minutes and then failed to
/// write, exit 1). Directories on an output's path that do not exist yet are made when it is
/// written ([`write_file`]).
///
/// `inputs` and `outputs` are `(option, path)` pairs (`("--data", Some(path))`; `None` for an
/// option not given). An output names an input when both are the same file, however spelled
/// (`./x`, a symbolic or hard link); two outputs clash when they are the same file or, where
/// neither exists yet, the same path once their directories are resolved. `-` (stdin or stdout)
/// is never a clash.
pub fn refuse_overwriting(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
) -> Result<(), CoreError> {
    for &(option, path) in outputs {
        if let Some(path) = path
            && path.is_dir()
        {
            return Err(CoreError::OutputIsDirectory {
                output: option.to_owned(),
                path: path.to_path_buf(),
            });
        }
        // The nearest part of the path that exists must be a directory.
        if let Some(path) = path
            && path.as_os_str() != STDIO
            && let Some(existing) = path.ancestors().skip(1).find(|a| a.exists())
            && !existing.as_os_str().is_empty()
            && !existing.is_dir()
        {
            return Err(CoreError::OutputParentNotDirectory {
                output: option.to_owned(),
                path: path.to_path_buf(),
                parent: existing.to_path_buf(),
            });
        }
    }
    refuse_clashes(inputs, outputs)
}

/// [`refuse_overwriting`] for outputs that may be directories (`slm finetune --out DIR`): only
/// the clashes with inputs and with each other.
pub fn refuse_clashes(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
) -> Result<(), CoreError> {
    let given = |list: &[(&str, Option<&Path>)]| -> Vec<(String, PathBuf)> {
        list.iter()
            .filter_map(|&(option, path)| Some((option.to_owned(), path?.to_path_buf())))
            .filter(|(_, path)| path.as_os_str() != STDIO)
            .collect()
    };
    let (inputs, outputs) = (given(inputs), given(outputs));
    for (i, (out_option, out)) in outputs.iter().enumerate() {
        for (in_option, input) in &inputs {
            if same_existing(input, out) {
                return Err(CoreError::Overwrite {
                    output: out_option.clone(),
                    path: out.clone(),
                    input: in_option.clone(),
                    input_path: input.clone(),
                });
            }
        }
        for (other_option, other) in &outputs[i + 1..] {
            if same_existing(out, other) || same_new(out, other) {
                return Err(CoreError::SameOutput {
                    first: out_option.clone(),
                    second: other_option.clone(),
                    path: other.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Both exist and are one file.
fn same_existing(a: &Path, b: &Path) -> bool {
    same_file::is_same_file(a, b).unwrap_or(false)
}

/// Where a path that may not exist yet would be created: its directory resolved, its name kept.
fn resolved(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(dir.canonicalize().ok()?.join(name))
}

/// Neither exists, and both would be created at the same place.
fn same_new(a: &Path, b: &Path) -> bool {
    !a.exists() && !b.exists() && resolved(a).is_some_and(|r| Some(r) == resolved(b))
}

/// Writes a file whole or not at all (`-`: stdout). `write` fills a new temporary file beside `path` (a name no
/// other file has: never an input that happens to be called `model.tmp`), which is synced and
/// then renamed over `path`, so that a reader sees the old file or the new one, never half of one,
/// and a failed write leaves the old one in place. Missing directories on the way are made. The file gets `path`'s permissions where it
/// exists, else the usual ones for a new file. A symbolic link is followed (the file it names is
/// replaced, the link kept). A `path` that exists and is not a regular file (a device such as
/// `/dev/stdout` or `/dev/full`, a named pipe) is written in place: a rename would put a file
/// where the device was.
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if path.as_os_str() == STDIO {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write(&mut out)?;
        return out.flush();
    }
    let existing = std::fs::metadata(path).ok();
    if let Some(m) = &existing
        && !m.is_file()
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        write(&mut f)?;
        return f.flush();
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() && existing.is_some() => path.canonicalize()?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(match &existing {
            Some(m) => m.permissions(),
            None => std::fs::Permissions::from_mode(0o666),
        });
    }
    std::fs::create_dir_all(dir)?;
    // Its error names the temporary file's path (`.model.triage.x1y2.part`); the directory
    // means more to the user.
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {}", dir.display(), e.kind())))?;
    let mut f = std::io::BufWriter::new(tmp);
    write(&mut f)?;
    let tmp = f.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("triage-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_however_spelled() {
        let d = dir("spellings");
        let data = d.join("data.jsonl");
        std::fs::write(&data, "x\n").unwrap();
        std::fs::hard_link(&data, d.join("hard.jsonl")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&data, d.join("soft.jsonl")).unwrap();
        let mut spellings = vec![
            data.clone(),
            d.join(".").join("data.jsonl"),
            d.join("hard.jsonl"),
        ];
        if cfg!(unix) {
            spellings.push(d.join("soft.jsonl"));
        }
        for out in &spellings {
            let err = refuse_overwriting(
                &[("--dev", None), ("--data", Some(&data))],
                &[("--out", Some(out))],
            )
            .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("--out ") && text.contains("is the --data file"),
                "{text}"
            );
            assert_eq!(crate::Diagnose::domain(&err), crate::ErrorDomain::User);
        }
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "x\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn other_paths_and_stdio_pass() {
        let d = dir("pass");
        let data = d.join("data.jsonl");
        std::fs::write(&data, "x\n").unwrap();
        let other = d.join("other.jsonl");
        std::fs::write(&other, "y\n").unwrap();
        let dash = Path::new("-");
        for out in [other.as_path(), &d.join("new.triage"), dash] {
            refuse_overwriting(
                &[("--input", Some(&data)), ("--dev", None)],
                &[("--out", Some(out))],
            )
            .unwrap();
        }
        // stdin in and stdout out are not one file.
        refuse_overwriting(&[("--input", Some(dash))], &[("--output", Some(dash))]).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_outputs_on_one_path_are_refused_before_either_exists() {
        let d = dir("outputs");
        let a = d.join("calibrated.toml");
        let err = refuse_overwriting(
            &[],
            &[
                ("--out", Some(&a)),
                ("--deferral-out", Some(&d.join(".").join("calibrated.toml"))),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--out and --deferral-out name one file"),
            "{err}"
        );
        refuse_overwriting(
            &[],
            &[
                ("--out", Some(&a)),
                ("--deferral-out", Some(&d.join("d.json"))),
            ],
        )
        .unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_file_replaces_whole_and_spares_every_other_file() {
        let d = dir("write");
        let out = d.join("model.triage");
        // A file with the name a fixed temporary name would have had is left alone.
        let bystander = d.join("model.tmp");
        std::fs::write(&bystander, "training data\n").unwrap();
        write_file(&out, |w| w.write_all(b"one")).unwrap();
        write_file(&out, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(std::fs::read(&bystander).unwrap(), b"training data\n");
        // A failed write leaves the old file and no temporary one.
        let err = write_file(&out, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk gone"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A link is followed: the file it names is replaced, the link stays a link.
        #[cfg(unix)]
        {
            let link = d.join("link.triage");
            std::os::unix::fs::symlink(&out, &link).unwrap();
            write_file(&link, |w| w.write_all(b"three")).unwrap();
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(std::fs::read(&out).unwrap(), b"three");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_file_writes_a_device_in_place() {
        use std::os::unix::fs::FileTypeExt;
        // /dev/full refuses every write: the error comes back, and the device stays a device.
        let err = write_file(Path::new("/dev/full"), |w| w.write_all(&[0; 1 << 16]));
        assert!(err.is_err());
        let kind = std::fs::metadata("/dev/full").unwrap().file_type();
        assert!(kind.is_char_device());
        write_file(Path::new("/dev/null"), |w| w.write_all(b"x")).unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}
