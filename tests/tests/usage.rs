//! Options out of their range are usage errors (exit 2) that name the option, before any work:
//! each of these had been taken, and either turned a check off (`eval --min-accuracy NaN`),
//! failed as something else (`--min-accuracy 50`, meant as per cent, was a failed quality gate,
//! exit 3), gave scores that meant nothing (`tune --folds 400` over 400 messages) or aborted the
//! process (`replay --threads 20000`), or wrote a model never trained (`train --max-iterations
//! 0`).

use std::path::{Path, PathBuf};
use std::process::Command;

use triage_tests::{code_and_stderr, triage_bin, two_label_data, workspace};

#[test]
fn out_of_range_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let data = data.to_str().unwrap();
    let out = dir.path().join("out.jsonl");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["eval", "--data", data, "--min-accuracy", "NaN"],
            "--min-accuracy",
        ),
        (
            &["eval", "--data", data, "--min-accuracy", "50"],
            "--min-accuracy",
        ),
        (
            &["eval", "--data", data, "--min-macro-f1=-0.1"],
            "--min-macro-f1",
        ),
        (&["tune", "--data", data, "--margin", "NaN"], "--margin"),
        (&["tune", "--data", data, "--margin", "5"], "--margin"),
        (
            &[
                "train",
                "--data",
                data,
                "--distill",
                data,
                "--distill-min-confidence",
                "NaN",
                "--out",
                out,
            ],
            "--distill-min-confidence",
        ),
        (&["tune", "--data", data, "--folds", "24"], "--folds 24"),
        (
            &[
                "replay",
                "--input",
                "examples/messages.jsonl",
                "--output",
                out,
                "--threads",
                "0",
            ],
            "--threads",
        ),
        (
            &[
                "replay",
                "--input",
                "examples/messages.jsonl",
                "--output",
                out,
                "--threads",
                "20000",
            ],
            "--threads",
        ),
        (
            &[
                "train",
                "--data",
                data,
                "--max-iterations",
                "0",
                "--out",
                out,
            ],
            "max_iterations",
        ),
        (&["bench", "--data", data, "--repeat", "0"], "--repeat"),
        // No second opinion runs without --cascade: the flag had been ignored.
        (
            &["eval", "--data", data, "--finetuned", "somewhere"],
            "add --cascade",
        ),
        (
            &[
                "replay",
                "--input",
                "examples/messages.jsonl",
                "--output",
                "-",
                "--json",
            ],
            "--json",
        ),
        (
            &["classify", "--max-message-bytes", "0"],
            "max_message_bytes",
        ),
        (
            &["train", "--data", "-", "--dev", "-", "--out", out],
            "only one of --data, --dev and --distill",
        ),
    ];
    for (args, named) in cases {
        let run = Command::new(triage_bin())
            .current_dir(workspace())
            .args(*args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(out).exists(), "nothing written");
    // Settings that would dead-letter every message are configuration errors.
    for (var, value, named) in [
        (
            "TRIAGE__INPUT__MAX_MESSAGE_BYTES",
            "0",
            "input.max_message_bytes",
        ),
        ("TRIAGE__INPUT__TEXT_FIELD", "", "input.text_field"),
        // An unknown key from the environment: the variable named, not "`TRIAGE__` environment
        // variable(s)".
        (
            "TRIAGE__ROUTER__BOGUS",
            "1",
            "unknown key `bogus`; expected one of `default_threshold`",
        ),
        (
            "TRIAGE__ROUTER__BOGUS",
            "1",
            "in the environment variable TRIAGE__ROUTER__BOGUS",
        ),
        // Every drafted reply failed with it ("degraded"), after a clean start.
        (
            "TRIAGE__SLM__GENERATE__TEMPERATURE",
            "-1",
            "slm.generate.temperature",
        ),
    ] {
        let run = Command::new(triage_bin())
            .current_dir(workspace())
            .env(var, value)
            .args([
                "replay",
                "--input",
                "examples/messages.jsonl",
                "--output",
                out,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(named), "{var}={value}: {err}");
    }
    // In range, the same commands run.
    let run = Command::new(triage_bin())
        .args(["eval", "--data", data, "--min-accuracy", "0"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `eval` on data whose labels the model does not have (the default model on an intent set)
/// says so, instead of reporting 0% with no reason given.
#[test]
fn eval_names_the_labels_the_model_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intents.jsonl");
    std::fs::write(
        &data,
        "{\"text\":\"where is my card\",\"label\":\"card_arrival\"}\n\
         {\"text\":\"thanks!\",\"label\":\"positive\"}\n",
    )
    .unwrap();
    let run = Command::new(triage_bin())
        .arg("eval")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains(
            "1 of 2 messages have a label the model does not know (1 label: card_arrival)"
        ),
        "{err}"
    );
}

/// A directory given as replay's input is refused before the output is created (it had left an
/// empty output file behind, then failed on the first read).
#[test]
fn replay_of_a_directory_creates_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = Command::new(triage_bin())
        .args(["replay", "--input"])
        .arg(dir.path())
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    assert!(!out.exists());
}

/// `train` and `eval` read their data from standard input with `--data -`, as `replay --input -`
/// and `classify` do (it had been "-: No such file or directory").
#[test]
fn train_and_eval_read_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(two_label_data(dir.path())).unwrap();
    let model = dir.path().join("m.triage");
    let piped = |args: &[&std::ffi::OsStr]| {
        let mut child = Command::new(triage_bin())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let o = std::ffi::OsStr::new;
    piped(&[
        o("train"),
        o("--data"),
        o("-"),
        o("--out"),
        model.as_os_str(),
    ]);
    let report = piped(&[
        o("eval"),
        o("--data"),
        o("-"),
        o("--model"),
        model.as_os_str(),
        o("--json"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["n"], 24, "{v}");
}

/// Distilled rows are checked as labelled rows are. `train --distill` took an empty label (a
/// class `""` of the model), a confidence of 7, and labels the labelled data lacks (a sentiment
/// model that answered `activate_my_card`), exit 0; each is now refused (exit 2), naming it.
#[test]
fn distilled_rows_are_checked_like_labelled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let model = dir.path().join("m.triage");
    let train_with = |distill: &std::path::Path| {
        code_and_stderr(
            Command::new(triage_bin())
                .args(["train", "--data"])
                .arg(&data)
                .arg("--distill")
                .arg(distill)
                .arg("--out")
                .arg(&model),
        )
    };
    let cases = [
        (
            r#"{"text":"meh","label":"","confidence":0.9}"#,
            "the label is empty",
        ),
        (
            r#"{"text":"hmm","label":"positive","confidence":7}"#,
            "between 0 and 1, not 7",
        ),
        (
            r#"{"text":"my card","label":"activate_my_card","confidence":0.9}"#,
            "\"activate_my_card\" (1 rows)",
        ),
    ];
    for (row, want) in cases {
        let distill = dir.path().join("d.jsonl");
        std::fs::write(
            &distill,
            format!("{{\"text\":\"fine\",\"label\":\"negative\"}}\n{row}\n"),
        )
        .unwrap();
        let (code, err) = train_with(&distill);
        assert_eq!(code, Some(2), "{row}: {err}");
        assert!(err.contains(want), "{row}: {err}");
        assert!(!model.exists(), "{row}: a model was written");
    }
    // Rows as `triage slm label` writes them (extra fields, an id) are taken.
    let distill = dir.path().join("d.jsonl");
    std::fs::write(
        &distill,
        "{\"id\":7,\"text\":\"so good\",\"label\":\"positive\",\"confidence\":0.93,\"probabilities\":{\"positive\":0.93,\"negative\":0.07}}\n",
    )
    .unwrap();
    let (code, err) = train_with(&distill);
    assert_eq!(code, Some(0), "{err}");
    assert!(model.exists());
}

/// A reader that goes away (`triage eval | head -1`) ends the command quietly with 141, as the
/// help says, on stdout or stderr: `println!` had panicked with a backtrace, exit 101.
#[test]
fn a_closed_output_ends_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let model = dir.path().join("m.triage");
    // The pipe's read end is closed before the command writes anything.
    let mut eval = Command::new(triage_bin())
        .args(["eval", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(eval.stdout.take());
    let out = eval.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.is_empty(), "not quiet: {err}");
    let mut train = Command::new(triage_bin())
        .args(["train", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&model)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(train.stderr.take());
    assert_eq!(train.wait().unwrap().code(), Some(141));
    // A file written to `-` (stdout) whose reader went away: 141 too, quietly (it had been
    // "error: -: Broken pipe", exit 1).
    let mut to_stdout = Command::new(triage_bin())
        .args(["train", "--data"])
        .arg(&data)
        .args(["--out", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(to_stdout.stdout.take());
    let out = to_stdout.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("error"), "{err}");
}

/// `config --check` reads the Kafka settings as librdkafka does, as `run` does when it starts:
/// an unknown property, or TLS in this build without OpenSSL, had "checked out" (exit 0) and then
/// stopped `run` (exit 2). And a property set from the environment by its librdkafka name.
#[test]
fn config_check_refuses_what_librdkafka_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    for (props, want) in [
        ("\"foo.bar\" = \"1\"", "foo.bar"),
        ("\"security.protocol\" = \"SASL_SSL\"", "OpenSSL"),
    ] {
        std::fs::write(
            &cfg,
            format!("[kafka.properties]\n{props}\n[slm]\nmode = \"off\"\n"),
        )
        .unwrap();
        let (code, err) = code_and_stderr(
            Command::new(triage_bin())
                .args(["config", "--check", "--config"])
                .arg(&cfg),
        );
        assert_eq!(code, Some(2), "{props}: {err}");
        assert!(err.contains(want), "{props}: {err}");
    }
    std::fs::write(&cfg, "[slm]\nmode = \"off\"\n").unwrap();
    let run = Command::new(triage_bin())
        .args(["config", "--check", "--config"])
        .arg(&cfg)
        .env("TRIAGE__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "7000")
        .env("TRIAGE__KAFKA__PROPERTIES__sasl.username", "alice")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("\"session.timeout.ms\" = \"7000\""), "{out}");
    assert!(out.contains("\"sasl.username\" = \"alice\""), "{out}");
}

/// `run`'s own arguments are checked before the models load and the metrics endpoint listens:
/// a bad `--from-timestamp` had come after eight lines of start-up log.
#[test]
fn run_checks_its_arguments_before_it_starts() {
    let (code, err) = code_and_stderr(Command::new(triage_bin()).current_dir(workspace()).args([
        "run",
        "--from-timestamp",
        "yesterday",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--from-timestamp \"yesterday\""), "{err}");
    assert!(!err.contains("model loaded"), "{err}");
}

/// A model file named where none exists is the user's to fix (exit 2), said with where the name
/// came from: `config --check` (and `replay`, `run`) for `[model] path`, any command for
/// `--model`. It had been "nope.triage: No such file or directory", exit 1.
#[test]
fn a_model_named_where_none_is_says_who_named_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        "[model]\npath = \"nope.triage\"\n[slm]\nmode = \"off\"\n",
    )
    .unwrap();
    let messages = dir.path().join("in.jsonl");
    std::fs::write(&messages, "{\"text\": \"hello\"}\n").unwrap();
    let out = dir.path().join("out.jsonl");
    for (args, want) in [
        (
            vec!["config", "--check", "--config", cfg.to_str().unwrap()],
            "configuration: [model] path nope.triage does not exist (relative to",
        ),
        (
            vec![
                "replay",
                "--config",
                cfg.to_str().unwrap(),
                "--input",
                messages.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
            "configuration: [model] path nope.triage does not exist",
        ),
        (
            vec![
                "bench",
                "--model",
                "nope.triage",
                "--data",
                messages.to_str().unwrap(),
            ],
            "--model nope.triage does not exist",
        ),
    ] {
        let (code, err) = code_and_stderr(
            Command::new(triage_bin())
                .current_dir(dir.path())
                .args(&args),
        );
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.contains("`triage train` makes one"),
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists());
}

/// Generation settings with which every drafted reply comes out wrong are refused at start: an
/// empty stop string (every reply empty, exit 0) and a per-label prompt for a label the model
/// does not have (never used; a misspelt `generative` label was already refused).
#[test]
fn generation_settings_that_fail_every_reply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    let out = dir.path().join("out.jsonl");
    for (generate, named) in [
        ("stop = [\"\"]", "slm.generate.stop"),
        ("[slm.generate.per_label]\nnegativ = \"x\"", "negativ"),
    ] {
        std::fs::write(&cfg, format!("[slm.generate]\n{generate}\n")).unwrap();
        let (code, err) = code_and_stderr(
            Command::new(triage_bin())
                .current_dir(workspace())
                .args(["replay", "--input", "examples/messages.jsonl", "--config"])
                .arg(&cfg)
                .arg("--output")
                .arg(&out),
        );
        assert_eq!(code, Some(2), "{generate}: {err}");
        assert!(err.contains(named), "{generate}: {err}");
    }
}

/// `bench` times the lines it can read and says which it left out: a line that is not UTF-8 had
/// been dropped without a word, so the rate was of fewer messages than the file holds.
#[test]
fn bench_names_the_lines_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mixed.jsonl");
    std::fs::write(
        &data,
        b"{\"text\":\"hello there\"}\n\xff\xfe not utf-8\n{\"text\":\"thanks a lot\"}\n",
    )
    .unwrap();
    let (code, stderr) = code_and_stderr(
        Command::new(triage_bin())
            .args(["bench", "--repeat", "1", "--data"])
            .arg(&data),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("1 line(s)") && stderr.contains("line 2"),
        "no word of the skipped line: {stderr}"
    );
}

/// A file none of whose lines can be read says why (the first line's reason), not only that it
/// holds no messages.
#[test]
fn a_file_of_unreadable_lines_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("latin1.txt");
    std::fs::write(&data, b"caf\xe9 terrible\nna\xefve\n").unwrap();
    let (code, stderr) = code_and_stderr(
        Command::new(triage_bin())
            .args(["bench", "--repeat", "1", "--data"])
            .arg(&data),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(":1:") && stderr.contains("UTF-8") && stderr.contains("2 skipped"),
        "{stderr}"
    );
}

/// `n` messages over 200 labels, 56 words each, each word in `copies` messages of one label, and
/// a configuration of word unigrams only (plus `extra`): a fit whose size is set by `n / copies`.
fn many_labels(dir: &Path, n: u32, copies: u32, extra: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("many-labels.jsonl");
    let mut lines = String::new();
    for i in 0..n {
        let group = i / copies;
        let words: Vec<String> = (0..56).map(|w| format!("w{}", group * 56 + w)).collect();
        lines.push_str(&format!(
            "{{\"text\":\"{}\",\"label\":\"l{}\"}}\n",
            words.join(" "),
            group % 200
        ));
    }
    std::fs::write(&data, lines).unwrap();
    let config = dir.join("words.toml");
    std::fs::write(
        &config,
        format!(
            "[analyzer]\nword_ngrams = [1, 1]\nchar_ngrams = [0, 0]\nhash_bits = 20\n\n{extra}"
        ),
    )
    .unwrap();
    (data, config)
}

/// `triage` (its arguments to be added) under a 3 GiB address-space limit (`ulimit -v`).
fn in_3_gib_of_address_space() -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 3145728 && exec \"$0\" \"$@\"")
        .arg(triage_bin());
    cmd
}

/// A many-label fit that would not fit in memory is refused before it starts, naming what it
/// needs and settings that need less (exit 2), where it used to grow until the kernel or the
/// allocator killed it. The limit here is `ulimit -v` (a container's cgroup limit and the free
/// memory are read the same way); the data is 200 labels over about 110,000 distinct words, a
/// fit of 22M weights (4.2 GiB with the default L-BFGS history), against a 3 GiB address space.
#[test]
fn a_fit_that_cannot_fit_in_memory_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    // Each word in two messages of one label: every word a feature, in few messages.
    let (data, config) = many_labels(dir.path(), 4_000, 2, "");
    let out = dir.path().join("m.triage");
    let (code, stderr) = code_and_stderr(
        in_3_gib_of_address_space()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, Some(2), "{stderr}");
    for part in [
        "not enough memory",
        "× 200 labels",
        "history of 10",
        "[tfidf] max_features",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    assert!(!out.exists(), "no model is written");
}

/// `eval` and `bench` say which weight format they scored with (`--weights`, or `auto`'s choice
/// for the label count), in text and in JSON: the figures of an int8 or 4-bit model are those of
/// that format, not of the model file's f32 weights.
#[test]
fn eval_and_bench_name_the_weights_they_scored_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let model = dir.path().join("m.triage");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    triage_tests::triage(&["train", "--data", d, "--out", m]);
    for (weights, expected) in [("auto", "f32"), ("int8", "int8"), ("int4", "int4")] {
        let text = triage_tests::triage(&["eval", "--model", m, "--data", d, "--weights", weights]);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("(2 labels, {expected} weights)")),
            "--weights {weights}: {first}"
        );
        let json: serde_json::Value = serde_json::from_str(&triage_tests::triage(&[
            "eval",
            "--model",
            m,
            "--data",
            d,
            "--weights",
            weights,
            "--json",
        ]))
        .unwrap();
        assert_eq!(json["weights"], expected, "--weights {weights}");
        let bench = triage_tests::triage(&[
            "bench",
            "--model",
            m,
            "--data",
            d,
            "--weights",
            weights,
            "--repeat",
            "1",
        ]);
        assert!(bench.contains(&format!("{expected} weights")), "{bench}");
    }
}

/// `tune` sizes each fold's fit as `train` does, and what an earlier fold freed counts as free:
/// three folds of a fit that takes half of a 3 GiB address space run one after the other (the
/// allocator had kept the first fold's memory, and the second fold was refused). Twelve
/// iterations, so that the L-BFGS history fills, as it does in a real fit.
#[test]
fn tune_folds_each_fit_where_one_fits() {
    let dir = tempfile::tempdir().unwrap();
    // Each word in three messages of one label: about 36,700 features in a fold's training part
    // (those in two of its messages), 200 labels: a fit of 7.3M weights, 1.4 GiB.
    let (data, config) = many_labels(dir.path(), 3_000, 3, "[logistic]\nmax_iterations = 12\n");
    let out = in_3_gib_of_address_space()
        .args(["tune", "--alpha", "0.1", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("chosen by 3-fold cross-validation"),
        "{stderr}"
    );
}

/// `train` warns about what in its data is probably a mistake, and trains on: labels that differ
/// only in case or white space, a label with one example, a text with two labels, and `--dev`
/// labels the model does not know (which `eval` warns about too).
#[test]
fn train_warns_about_labels_that_look_like_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    triage_tests::append_lines(
        &data,
        "{\"text\": \"thank you so much, lovely help 0\", \"label\": \"negative\"}\n\
         {\"text\": \"thanks a lot\", \"label\": \"Positive \"}\n",
    );
    let dev = dir.path().join("dev.jsonl");
    std::fs::write(
        &dev,
        "{\"text\": \"broken\", \"label\": \"negative\"}\n{\"text\": \"meh\", \"label\": \"neutral\"}\n",
    )
    .unwrap();
    let out = dir.path().join("m.triage");
    let (code, stderr) = code_and_stderr(
        Command::new(triage_bin())
            .args(["train", "--data"])
            .arg(&data)
            .arg("--dev")
            .arg(&dev)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, Some(0), "{stderr}");
    for part in [
        r#"warning: labels "Positive " and "positive" differ only in case or white space (1, 12 examples)"#,
        r#"warning: 1 label has a single example: "Positive ""#,
        r#"warning: 1 text has more than one label: "thank you so much, lovely help 0" ("negative", "positive")"#,
        "warning: --dev: 1 of 2 messages have a label the model does not know (1 label: neutral)",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    // Once: the reader's own log line had said it a second time.
    assert_eq!(stderr.matches("differ only in case").count(), 1, "{stderr}");
    assert!(out.exists());
}

/// The same data and settings give the same model file, so the same `model_version` in every
/// decision: a changed version means a changed model, not a rebuild (the fit's times are not
/// written to the file). And a model file written with them still loads.
#[test]
fn retraining_the_same_data_gives_the_same_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let (a, b) = (dir.path().join("a.triage"), dir.path().join("b.triage"));
    for out in [&a, &b] {
        let (code, stderr) = code_and_stderr(
            Command::new(triage_bin())
                .args(["train", "--data"])
                .arg(&data)
                .arg("--out")
                .arg(out),
        );
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("time: "),
            "the times are still printed: {stderr}"
        );
    }
    let (a_bytes, b_bytes) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(a_bytes == b_bytes, "two trainings on the same data differ");
    let text = String::from_utf8_lossy(&a_bytes);
    assert!(!text.contains("fit_seconds"), "times in the file");
}

/// `replay`, `classify` and `run` dead-letter a message over `[input] max_message_bytes`
/// unclassified; `eval`, `bench` and `train` take it, and say so (eval with the limit its
/// `--config` sets).
#[test]
fn eval_bench_and_train_name_messages_the_service_would_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_label_data(dir.path());
    let mut text = std::fs::read_to_string(&data).unwrap();
    let long = format!("thanks {}", "a lot ".repeat(12_000));
    text.push_str(&format!(
        "{{\"text\": \"{long}\", \"label\": \"positive\"}}\n"
    ));
    std::fs::write(&data, &text).unwrap();
    let model = dir.path().join("m.triage");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[input]\nmax_message_bytes = 40\n").unwrap();
    let run = |args: &[&str]| {
        let (code, stderr) = code_and_stderr(Command::new(triage_bin()).args(args));
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stderr
    };
    let (d, m, c) = (
        data.to_str().unwrap(),
        model.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let n = long.len();
    let stderr = run(&["train", "--data", d, "--out", m]);
    let want = format!(
        "warning: 1 of 25 messages is longer than 65536 bytes (the longest {n}), the limit of \
         replay, classify and run"
    );
    assert!(stderr.contains(&want), "{want:?} not in {stderr}");
    assert!(stderr.contains("the model learns from them"), "{stderr}");
    let stderr = run(&["eval", "--model", m, "--data", d]);
    assert!(
        stderr.contains(&want) && stderr.contains("; eval scores them"),
        "{stderr}"
    );
    let stderr = run(&["bench", "--model", m, "--data", d, "--repeat", "1"]);
    assert!(
        stderr.contains(&want) && stderr.contains("; bench times them"),
        "{stderr}"
    );
    // eval counts against the limit the service would apply.
    let stderr = run(&["eval", "--model", m, "--data", d, "--config", c]);
    assert!(
        stderr.contains("warning: 13 of 25 messages are longer than 40 bytes"),
        "{stderr}"
    );
    // Under the limit, nothing to say.
    std::fs::write(&data, text.lines().take(24).collect::<Vec<_>>().join("\n")).unwrap();
    let stderr = run(&["eval", "--model", m, "--data", d]);
    assert!(!stderr.contains("longer than"), "{stderr}");
}
