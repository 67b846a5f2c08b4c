//! No command writes over one of its own inputs. `triage train --data x --out x` used to replace
//! the training data with the model, exit 0; each command that writes a file now refuses an
//! output that is one of its inputs (however spelled) before it reads or writes anything, exit 2.
//! (`triage replay`'s own test is in `replay.rs`.)

use std::path::Path;
use std::process::Command;

use triage_tests::two_label_data as labelled;

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(triage_tests::triage_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn no_command_writes_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled(dir.path());
    let before = std::fs::read(&data).unwrap();
    // The data file under another spelling, as a user might type it.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let same = sub.join("..").join("train.jsonl");
    let descriptions = dir.path().join("labels.toml");
    std::fs::write(
        &descriptions,
        "positive = \"happy\"\nnegative = \"angry\"\n",
    )
    .unwrap();
    let s = |p: &Path| p.as_os_str().to_owned();
    let o = |x: &str| std::ffi::OsString::from(x);
    let cases: Vec<(Vec<std::ffi::OsString>, &str, &str)> = vec![
        (
            vec![o("train"), o("--data"), s(&data), o("--out"), s(&same)],
            "--out",
            "--data",
        ),
        (
            vec![
                o("train"),
                o("--data"),
                s(&data),
                o("--dev"),
                s(&data),
                o("--out"),
                s(&same),
            ],
            "--out",
            "--data",
        ),
        (
            vec![o("tune"), o("--data"), s(&data), o("--out"), s(&same)],
            "--out",
            "--data",
        ),
        (
            vec![
                o("calibrate"),
                o("--dev"),
                s(&data),
                o("--budget"),
                o("0.15"),
                o("--out"),
                s(&same),
            ],
            "--out",
            "--dev",
        ),
        (
            vec![
                o("slm"),
                o("label"),
                o("--input"),
                s(&data),
                o("--output"),
                s(&same),
            ],
            "--output",
            "--input",
        ),
        (
            vec![
                o("slm"),
                o("train-head"),
                o("--data"),
                s(&data),
                o("--out"),
                s(&same),
            ],
            "--out",
            "--data",
        ),
        (
            vec![
                o("slm"),
                o("zero-shot"),
                o("--descriptions"),
                s(&descriptions),
                o("--out"),
                s(&descriptions),
            ],
            "--out",
            "--descriptions",
        ),
    ];
    for (args, output, input) in &cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{output} ")) && stderr.contains(&format!("the {input} file")),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&data).unwrap(),
            before,
            "{args:?}: the data is intact"
        );
    }
    assert!(
        std::fs::read_to_string(&descriptions)
            .unwrap()
            .starts_with("positive")
    );
    // Two outputs on one path are refused too.
    let (code, stderr) = run(&[
        &o("calibrate"),
        &o("--dev"),
        &s(&data),
        &o("--budget"),
        &o("0.15"),
        &o("--out"),
        &s(&dir.path().join("c.toml")),
        &o("--deferral-out"),
        &s(&sub.join("../c.toml")),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--out and --deferral-out name one file"),
        "{stderr}"
    );
    // Another path: the model is written, the data untouched.
    let model = dir.path().join("model.triage");
    let (code, stderr) = run(&[
        &o("train"),
        &o("--data"),
        &s(&data),
        &o("--out"),
        &s(&model),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::metadata(&model).unwrap().len() > 0);
    assert_eq!(std::fs::read(&data).unwrap(), before);
}

/// A model is written whole or not at all, through a temporary file beside it. That file used to
/// be `<out>.tmp`, so `train --data mydata.tmp --out mydata.triage` deleted the training data
/// (renamed the model over it), exit 0; and a device given as `--out` was replaced by a file.
#[test]
fn train_writes_no_file_but_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mydata.tmp");
    std::fs::rename(labelled(dir.path()), &data).unwrap();
    let dev = dir.path().join("dev.tmp");
    std::fs::copy(&data, &dev).unwrap();
    let before = std::fs::read(&data).unwrap();
    let s = |p: &Path| p.as_os_str().to_owned();
    let o = |x: &str| std::ffi::OsString::from(x);
    for (out, extra) in [("mydata.triage", None), ("dev.model", Some(&dev))] {
        let mut args = vec![o("train"), o("--data"), s(&data)];
        if let Some(d) = extra {
            args.extend([o("--dev"), s(d)]);
        }
        args.extend([o("--out"), s(&dir.path().join(out))]);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(std::fs::read(&data).unwrap(), before, "--out {out}");
        assert_eq!(std::fs::read(&dev).unwrap(), before, "--out {out}");
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dev.model", "dev.tmp", "mydata.tmp", "mydata.triage"]
    );
    // A model to standard output through its device: the bytes come down the pipe.
    let out = Command::new(triage_tests::triage_bin())
        .arg("train")
        .arg("--data")
        .arg(&data)
        .args(["--out", "/dev/stdout"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = std::fs::read(dir.path().join("mydata.triage")).unwrap();
    assert!(out.stdout.ends_with(&model[model.len() - 64..]));
    assert!(
        out.stdout.starts_with(&model[..8]),
        "{:?}",
        &out.stdout[..16]
    );
}

/// `slm finetune` replaces its `--out` directory whole, after training. It used to take any
/// directory: `--data mydir/train.jsonl --out mydir` (or `--out .`) would have deleted the data,
/// and everything else there, once the model was written. It now refuses, at once (before the
/// PyTorch venv), a directory that holds an input, the working directory, or anything but an
/// earlier fine-tuned model's files; the data stays.
#[test]
fn finetune_replaces_no_directory_but_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled(dir.path());
    let before = std::fs::read(&data).unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let s = |p: &Path| p.as_os_str().to_owned();
    let o = |x: &str| std::ffi::OsString::from(x);
    let cases = [
        (s(dir.path()), "holds the --data file"),
        (s(&dir.path().join(".")), "holds the --data file"),
        (
            s(&mine),
            "holds notes.txt, which is not part of a fine-tuned model",
        ),
        (s(&data), "--out"),
    ];
    for (out, want) in cases {
        let (code, stderr) = run(&[
            &o("slm"),
            &o("finetune"),
            &o("--data"),
            &s(&data),
            &o("--out"),
            &out,
        ]);
        assert_eq!(code, Some(2), "--out {out:?}: {stderr}");
        assert!(stderr.contains(want), "--out {out:?}: {stderr}");
        assert!(!stderr.contains("venv"), "refused after starting: {stderr}");
    }
    // The working directory, however named.
    let out = Command::new(triage_tests::triage_bin())
        .current_dir(&mine)
        .args(["slm", "finetune", "--data"])
        .arg(&data)
        .args(["--out", "."])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("working directory"), "{stderr}");
    assert_eq!(std::fs::read(&data).unwrap(), before);
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"keep me");
}

/// A file the configuration names is an input too. `replay --output`, `slm label --output` and
/// `calibrate --out` naming the configured `[model] path` (or `[slm] head`) had replaced the
/// model with decisions, exit 0; each is now refused before anything is read or written.
#[test]
fn no_command_writes_over_a_file_its_configuration_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled(dir.path());
    let model = dir.path().join("m.triage");
    let (code, stderr) = run(&[
        "train".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        model.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let before = std::fs::read(&model).unwrap();
    let head = dir.path().join("h.json");
    std::fs::write(&head, "{}").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"{}\"\n[slm]\nhead = \"{}\"\n",
            model.display(),
            head.display()
        ),
    )
    .unwrap();
    let s = |p: &Path| p.as_os_str().to_owned();
    let o = |x: &str| std::ffi::OsString::from(x);
    let same_model = dir.path().join(".").join("m.triage");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                o("replay"),
                o("--config"),
                s(&config),
                o("--input"),
                s(&data),
                o("--output"),
                s(&same_model),
            ],
            "[model] path",
        ),
        (
            vec![
                o("replay"),
                o("--config"),
                s(&config),
                o("--input"),
                s(&data),
                o("--output"),
                s(&dir.path().join("out.jsonl")),
                o("--dead-letter"),
                s(&head),
            ],
            "[slm] head",
        ),
        (
            vec![
                o("slm"),
                o("label"),
                o("--config"),
                s(&config),
                o("--input"),
                s(&data),
                o("--output"),
                s(&model),
            ],
            "[model] path",
        ),
        (
            vec![
                o("calibrate"),
                o("--config"),
                s(&config),
                o("--dev"),
                s(&data),
                o("--budget"),
                o("0.2"),
                o("--out"),
                s(&model),
            ],
            "[model] path",
        ),
    ];
    // A model directory given as an option is the configuration's too; and the commands that
    // write a head check the other files (a head may replace the configured head).
    let finetuned = dir.path().join("ft");
    std::fs::create_dir(&finetuned).unwrap();
    std::fs::write(finetuned.join("model_int8.onnx"), "onnx").unwrap();
    let descriptions = dir.path().join("labels.toml");
    std::fs::write(
        &descriptions,
        "positive = \"happy\"\nnegative = \"angry\"\n",
    )
    .unwrap();
    let more: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                o("slm"),
                o("label"),
                o("--finetuned"),
                s(&finetuned),
                o("--input"),
                s(&data),
                o("--output"),
                s(&finetuned.join("model_int8.onnx")),
            ],
            "[slm] finetuned",
        ),
        (
            vec![
                o("slm"),
                o("train-head"),
                o("--config"),
                s(&config),
                o("--data"),
                s(&data),
                o("--out"),
                s(&model),
            ],
            "[model] path",
        ),
        (
            vec![
                o("slm"),
                o("zero-shot"),
                o("--config"),
                s(&config),
                o("--descriptions"),
                s(&descriptions),
                o("--out"),
                s(&same_model),
            ],
            "[model] path",
        ),
    ];
    for (args, named) in cases.into_iter().chain(more) {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = run(&refs);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(&model).unwrap(), before, "{args:?}");
        assert_eq!(std::fs::read(&head).unwrap(), b"{}", "{args:?}");
        assert_eq!(
            std::fs::read(finetuned.join("model_int8.onnx")).unwrap(),
            b"onnx"
        );
    }
}

/// `-` as an output is stdout, as it is stdin as an input: `train --out -` (and `slm label
/// --output -`, `slm train-head --out -`) had written a file named `-` in the working directory.
#[test]
fn a_dash_output_is_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled(dir.path());
    let out = Command::new(triage_tests::triage_bin())
        .current_dir(dir.path())
        .args(["train", "--data"])
        .arg(&data)
        .args(["--out", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.starts_with(b"TRIAGE-MODEL"),
        "no model on stdout"
    );
    assert!(!dir.path().join("-").exists(), "a file named - was written");
}

/// A file output that cannot be a file is refused before any work, exit 2, naming the option:
/// one that is a directory (`train --out .` had trained and then failed with "Is a directory",
/// exit 1) or that lies under a file; and `eval --report` naming a file (it had evaluated, then
/// ended with "File exists", exit 1). One under directories that do not exist yet makes them, as
/// `replay --output` and `eval --report` did (`train --out new/m.triage` had trained, then failed
/// naming a `.part` file).
#[test]
fn outputs_that_cannot_be_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled(dir.path());
    let sub = dir.path().join("models");
    std::fs::create_dir(&sub).unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let under = file.join("m.triage");
    let elsewhere = dir.path().join("out.jsonl");
    let s = |p: &Path| p.as_os_str().to_owned();
    let o = |x: &str| std::ffi::OsString::from(x);
    let mut cases: Vec<(Vec<std::ffi::OsString>, &str, &str)> = Vec::new();
    for (out, why) in [(&sub, "is a directory"), (&under, "not a directory")] {
        for command in ["train", "tune"] {
            cases.push((
                vec![o(command), o("--data"), s(&data), o("--out"), s(out)],
                "--out",
                why,
            ));
        }
        cases.push((
            vec![o("replay"), o("--input"), s(&data), o("--output"), s(out)],
            "--output",
            why,
        ));
        cases.push((
            vec![
                o("replay"),
                o("--input"),
                s(&data),
                o("--output"),
                s(&elsewhere),
                o("--dead-letter"),
                s(out),
            ],
            "--dead-letter",
            why,
        ));
    }
    cases.push((
        vec![o("eval"), o("--data"), s(&data), o("--report"), s(&file)],
        "--report",
        "is a file",
    ));
    for (args, option, why) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(option) && stderr.contains(why),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("fit") && !stderr.contains("wrote") && !stderr.contains("accuracy"),
            "{args:?} worked before refusing: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&sub).unwrap().count(),
        0,
        "wrote into the directory"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert!(
        !elsewhere.exists(),
        "replay wrote its output before refusing"
    );
    // Directories that do not exist yet are made.
    let model = dir.path().join("new").join("deeper").join("m.triage");
    let (code, stderr) = run(&[
        &o("train"),
        &o("--data"),
        &s(&data),
        &o("--out"),
        &s(&model),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(model.is_file(), "no model at {}", model.display());
}
