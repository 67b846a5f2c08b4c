//! `triage replay` end to end on the sample log shipped in `examples/`, with the built-in
//! default model: no broker, no data sets, no models to fetch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use triage_tests::{probability_sum, probability_sum_tolerance, triage, workspace};

/// `triage replay --json` of `input` into `out` and `dlq`, with the configuration `config` or
/// the defaults: its summary.
fn replay_json(input: &Path, out: &Path, dlq: &Path, config: Option<&Path>) -> serde_json::Value {
    let mut args = vec![
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--dead-letter",
        dlq.to_str().unwrap(),
        "--json",
    ];
    if let Some(config) = config {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    let summary = triage(&args);
    serde_json::from_str(&summary).unwrap()
}

/// `triage replay --input - --json` on `threads` threads into `out`, its stdin, stdout and stderr
/// piped.
fn replay_from_pipe(out: &Path, threads: &str, config: Option<&Path>) -> std::process::Child {
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(triage_tests::triage_bin());
    cmd.args(["replay", "--input", "-", "--json", "--threads", threads])
        .arg("--output")
        .arg(out);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A configuration file in `dir` with the SLM off (the tests of the file path need no model).
fn slm_off(dir: &Path) -> PathBuf {
    let config = dir.join("slm-off.toml");
    std::fs::write(&config, "[slm]\nmode = \"off\"\n").unwrap();
    config
}

#[test]
fn replays_the_sample_log_with_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("dlq.jsonl");
    let input = workspace().join("examples/messages.jsonl");
    let summary = replay_json(&input, &out, &dlq, None);

    let input_lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let decisions: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // Nothing lost: every line is either a decision or a dead letter.
    assert_eq!(decisions.len() + dead.len(), input_lines.len());
    assert!(summary.get("slm_unavailable").is_none(), "{summary}");
    assert_eq!(summary["decisions"], decisions.len());
    assert_eq!(summary["dead_lettered"], dead.len());

    // The four malformed lines, each with its line number and reason.
    let kinds: HashSet<&str> = dead.iter().map(|d| d["error"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        HashSet::from(["not_json", "missing_text", "empty_text", "wrong_type"])
    );
    for d in &dead {
        let line = d["line"].as_u64().unwrap() as usize;
        assert_eq!(d["raw"].as_str().unwrap(), input_lines[line - 1]);
        assert!(!d["reason"].as_str().unwrap().is_empty());
    }

    // Every good line has a decision with its id, a known label, probabilities that sum to 1,
    // a route with its reason, and the other input fields kept.
    let labels = ["ambiguous", "negative", "neutral", "positive"];
    let ids: HashSet<&str> = decisions
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), decisions.len());
    for d in &decisions {
        assert!(labels.contains(&d["label"].as_str().unwrap()), "{d}");
        let p = probability_sum(d);
        assert!((p - 1.0).abs() <= probability_sum_tolerance(d), "{d}");
        let conf = d["confidence"].as_f64().unwrap();
        assert_eq!(
            conf,
            d["probabilities"][d["label"].as_str().unwrap()]
                .as_f64()
                .unwrap()
        );
        assert!(
            ["fast", "second_opinion", "generate", "over_budget"]
                .contains(&d["route"].as_str().unwrap())
        );
        assert!(!d["reason"].as_str().unwrap().is_empty());
        assert!(d["fields"]["user"].is_string() && d["fields"]["channel"].is_string());
        assert_eq!(d["model_version"].as_str().unwrap().len(), 12);
        assert!(d["timings_us"]["classify"].as_f64().unwrap() >= 0.0);
    }
    // The default model reads the obvious ones right.
    let label_of = |id: &str| {
        decisions.iter().find(|d| d["id"] == id).unwrap()["label"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(label_of("msg-0001"), "positive"); // "Thanks so much, the refund came through…"
    assert_eq!(label_of("msg-0010"), "negative"); // "Absolutely terrible experience…"
}

/// `triage classify` with `input` on its standard input: its records.
fn classify(input: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(triage_tests::triage_bin())
        .arg("classify")
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn classify_reads_plain_lines_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "I love this, thank you!\n{\"id\": 7, \"text\": \"this is awful\"}\n",
    )
    .unwrap();
    let lines = classify(&input);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "positive");
    assert_eq!(lines[1]["label"], "negative");
    // The id is kept, written as a string (as decision records write it).
    assert_eq!(lines[1]["id"], "7");
    assert!(lines[0].get("id").is_none());
}

/// `triage classify` over the sample log, which holds lines without a string text or with an
/// empty one, and one that is not JSON: each of those gets a record saying why in its place, and
/// every other line its label.
#[test]
fn classify_carries_on_past_a_line_without_text() {
    let input = workspace().join("examples/messages.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let records = classify(&input);
    let non_blank: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    assert_eq!(records.len(), non_blank.len(), "a record for every line");
    let mut refused = 0;
    for (r, (i, line)) in records.iter().zip(non_blank) {
        let text = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(|v| v.is_object())
            .map(|v| v["text"].clone());
        match text {
            Some(t) if t.as_str().is_none_or(|t| t.trim().is_empty()) => {
                refused += 1;
                assert_eq!(r["line"], i + 1, "{r}");
                let kind = match t {
                    serde_json::Value::Null => "missing_text",
                    serde_json::Value::String(_) => "empty_text",
                    _ => "wrong_type",
                };
                assert_eq!(r["error"], kind, "{r}");
                assert!(r.get("label").is_none(), "{r}");
            }
            // Meant as JSON but not JSON (the sample's `{"id": "msg-bad-1", "text":
            // "unterminated`): refused as replay dead-letters it, not classified as text.
            None if line.trim_start().starts_with("{\"") => {
                refused += 1;
                assert_eq!(r["line"], i + 1, "{r}");
                assert_eq!(r["error"], "not_json", "{r}");
            }
            _ => assert!(r["label"].is_string(), "line {}: {r}", i + 1),
        }
    }
    assert!(
        refused >= 4,
        "the sample log has lines without a string text, or with an empty one"
    );
}

/// A file as Windows tools write it (a byte order mark, CRLF line ends, no newline at the end)
/// and a payload the JSON parser refuses in the text (a lone surrogate escape, which had
/// crashed the replay): every line is a decision or a dead letter, and the first line is a
/// message.
#[test]
fn a_windows_file_and_a_refused_escape_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, dlq) = (
        dir.path().join("in.jsonl"),
        dir.path().join("out.jsonl"),
        dir.path().join("dlq.jsonl"),
    );
    std::fs::write(
        &input,
        b"\xEF\xBB\xBF{\"id\":\"first\",\"text\":\"thank you so much\"}\r\n\
          {\"id\":\"lone\",\"text\":\"a lone \\ud800 surrogate\"}\r\n\
          \r\n\
          {\"id\":\"field\",\"text\":\"fine\",\"meta\":{\"who\":\"\\udc00\"}}\r\n\
          {\"id\":\"pair\",\"text\":\"fine\",\"who\":\"\\ud83d\\ude00\"}\r\n\
          {\"id\":\"last\",\"text\":\"this is awful\"}",
    )
    .unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let summary = triage(&[
        "replay",
        "--input",
        &path(&input),
        "--output",
        &path(&out),
        "--dead-letter",
        &path(&dlq),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Every record reads back with a strict parser: a lone surrogate in a field kept raw is
    // refused, as in the text, not copied into a record; a surrogate pair is kept.
    let records = read(&out);
    let ids: Vec<&str> = records.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["first", "pair", "last"]);
    assert_eq!(records[1]["fields"]["who"], "\u{1F600}");
    let dead = read(&dlq);
    let lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 4]);
    for d in &dead {
        assert_eq!(d["error"], "not_json");
        assert!(d["reason"].as_str().unwrap().contains("escape"), "{d}");
    }
    assert!(
        dead[1]["reason"].as_str().unwrap().contains("\"meta\""),
        "{}",
        dead[1]
    );
    assert_eq!(summary["lines"], 6);
    assert_eq!(summary["blank"], 1);

    // `triage classify` on the same file: the first line is JSON, its id kept; the line with a
    // refused escape in its text is classified as plain text; a field `classify` does not copy
    // does not matter there.
    let classified = classify(&input);
    let ids: Vec<Option<&str>> = classified
        .iter()
        .map(|c| c.get("id").map(|id| id.as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            Some("first"),
            None,
            Some("field"),
            Some("pair"),
            Some("last")
        ]
    );
}

#[test]
fn bad_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[router]\ndefault_treshold = 0.7\n").unwrap();
    let out = std::process::Command::new(triage_tests::triage_bin())
        .args(["replay", "--input", "-", "--output", "-", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default_treshold"), "{err}");
}

/// `triage config --check` refuses what `run` and `replay` would refuse at start (here a
/// threshold for a label the model lacks, which parses), and passes a configuration they accept.
#[test]
fn config_check_refuses_what_run_would() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[router.thresholds]\nangry = 0.7\n").unwrap();
    let config = |path: &Path, check: bool| {
        let mut cmd = std::process::Command::new(triage_tests::triage_bin());
        cmd.args(["config", "--config"]).arg(path);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(config(&bad, false).0, Some(0), "it parses");
    let (code, err) = config(&bad, true);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"angry\", which the model does not have"),
        "{err}"
    );
    let (code, err) = config(&slm_off(dir.path()), true);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the configuration checks out: model"), "{err}");
    // `[slm] mode = "auto"` degrades for models not installed, not for what the configuration
    // gets wrong: these had "checked out", and replay then degraded every second opinion.
    for (section, named) in [
        (
            "[slm.executor]\nthreads = 0\n",
            "slm.executor threads must be > 0",
        ),
        (
            "[slm.executor]\nmax_batch = 0\n",
            "slm.executor max_batch must be > 0",
        ),
        (
            "[slm]\nhead = \"no-such.head.json\"\n",
            "slm.head no-such.head.json does not exist",
        ),
    ] {
        let cfg = dir.path().join("slm.toml");
        std::fs::write(&cfg, section).unwrap();
        let (code, err) = config(&cfg, true);
        assert_eq!(code, Some(2), "{section}: {err}");
        assert!(err.contains(named), "{section}: {err}");
        let out = dir.path().join("out.jsonl");
        let run = std::process::Command::new(triage_tests::triage_bin())
            .current_dir(workspace())
            .args(["replay", "--input", "examples/messages.jsonl", "--config"])
            .arg(&cfg)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{section}: {err}");
        assert!(err.contains(named), "{section}: {err}");
    }
}

/// Replay on several threads writes what one thread writes: the same decisions in the same
/// order (the budget applied in input order across chunks), the same dead letters with the same
/// line numbers, the same summary; only the measured timings differ. The log is long enough for
/// several chunks, has a final line without a newline, and uses a budget tight enough that the
/// order decides which messages are `over_budget`.
#[test]
fn replay_on_threads_writes_what_one_thread_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(workspace().join("examples/messages.jsonl")).unwrap();
    let mut log = sample.repeat(80);
    log.push_str(r#"{"id":"last","text":"no newline after me"}"#);
    let input = dir.path().join("log.jsonl");
    std::fs::write(&input, &log).unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        "[router]\ndefault_threshold = 0.7\n[budget]\nmax_share = 0.05\nburst = 2\n[slm]\nmode = \"off\"\n",
    )
    .unwrap();
    let run = |threads: &str| {
        let out = dir.path().join(format!("out{threads}.jsonl"));
        let dlq = dir.path().join(format!("dlq{threads}.jsonl"));
        let summary = triage(&[
            "replay",
            "--threads",
            threads,
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--dead-letter",
            dlq.to_str().unwrap(),
            "--json",
        ]);
        let mut summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
        for timing in ["seconds", "mean_classify_us"] {
            summary.as_object_mut().unwrap().remove(timing);
        }
        let mut decisions: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for d in &mut decisions {
            d.as_object_mut().unwrap().remove("timings_us");
        }
        (summary, decisions, std::fs::read_to_string(&dlq).unwrap())
    };
    let one = run("1");
    let lines = log.lines().count();
    assert!(log.len() > 3 * 128 * 1024, "the log spans several chunks");
    assert_eq!(one.0["lines"], lines);
    assert_eq!(one.1.len() + one.2.lines().count(), lines);
    assert_eq!(one.1.last().unwrap()["id"], "last");
    let routes: HashSet<&str> = one.1.iter().map(|d| d["route"].as_str().unwrap()).collect();
    assert!(
        routes.contains("over_budget") && routes.contains("degraded"),
        "{routes:?}"
    );
    // The summary says why there is `degraded` and `over_budget` and no second opinion.
    let why = one.0["slm_unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("[slm] mode = \"off\""), "{}", one.0);
    for threads in ["2", "3"] {
        let many = run(threads);
        assert_eq!(many.0, one.0, "summary on {threads} threads");
        assert_eq!(many.2, one.2, "dead letters on {threads} threads");
        assert_eq!(many.1.len(), one.1.len());
        for (i, (a, b)) in one.1.iter().zip(&many.1).enumerate() {
            assert_eq!(a, b, "decision {i} on {threads} threads");
        }
    }
}

/// `[output] top_k = 2` through `triage replay`: each record lists the two most probable
/// labels, most probable first, with the probabilities the full record has for them; the rest
/// of the record is the same. A `top_k` over the limit is a usage error.
#[test]
fn top_k_lists_the_most_probable_labels_first() {
    let dir = tempfile::tempdir().unwrap();
    let input = workspace().join("examples/messages.jsonl");
    let run = |name: &str, config: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, format!("[slm]\nmode = \"off\"\n{config}")).unwrap();
        let out = dir.path().join(format!("{name}.jsonl"));
        let o = std::process::Command::new(triage_tests::triage_bin())
            .args(["replay", "--input", input.to_str().unwrap(), "--output"])
            .arg(&out)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            o.status.code(),
            std::fs::read_to_string(&out).unwrap_or_default(),
        )
    };
    let (code, all) = run("all", "");
    assert_eq!(code, Some(0));
    let (code, top) = run("top", "[output]\ntop_k = 2\n");
    assert_eq!(code, Some(0));
    let (all, top): (Vec<&str>, Vec<&str>) = (all.lines().collect(), top.lines().collect());
    assert!(!all.is_empty());
    assert_eq!(all.len(), top.len());
    for (a, t) in all.iter().zip(&top) {
        let full: serde_json::Value = serde_json::from_str(a).unwrap();
        let listed = &t[t.find("\"probabilities\":{").unwrap() + 17..];
        let listed: Vec<(String, f64)> = listed[..listed.find('}').unwrap()]
            .split(',')
            .map(|m| {
                let (k, v) = m.split_once(':').unwrap();
                (serde_json::from_str(k).unwrap(), v.parse().unwrap())
            })
            .collect();
        // The two listed are the most probable: each as the full record has it, in order,
        // none left out above them (the order is of the unrounded probabilities, so two that
        // round alike may come in either name order).
        let probs = full["probabilities"].as_object().unwrap();
        assert_eq!(listed.len(), 2, "{t}");
        assert_eq!(listed[0].0, full["label"].as_str().unwrap(), "{t}");
        assert!(listed[0].1 >= listed[1].1, "{t}");
        for (k, v) in &listed {
            assert_eq!(probs[k].as_f64().unwrap(), *v, "{t}");
        }
        for (k, v) in probs {
            if listed.iter().all(|(l, _)| l != k) {
                assert!(v.as_f64().unwrap() <= listed[1].1, "{k} left out: {t}");
            }
        }
        // The rest of the record is the same (the timings are measured anew).
        let mut t: serde_json::Value = serde_json::from_str(t).unwrap();
        let mut f = full.clone();
        for v in [&mut t, &mut f] {
            let o = v.as_object_mut().unwrap();
            o.remove("probabilities");
            o.remove("timings_us");
        }
        assert_eq!(t, f);
    }
    let (code, _) = run("over", "[output]\ntop_k = 65\n");
    assert_eq!(code, Some(2), "top_k over the limit is a usage error");
}

/// SIGTERM or SIGINT mid-replay: the lines read so far are decided and written, whole and in
/// order, the summary says where it stopped (`interrupted`, `lines`), and the exit code is
/// 128 + the signal. The input is an endless pipe: only the signal can end the replay.
#[test]
fn a_signal_stops_a_replay_after_whole_lines() {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    for (sig, code, threads) in [("TERM", 143, "1"), ("INT", 130, "2")] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let mut child = replay_from_pipe(&out, threads, None);
        let mut stdin = child.stdin.take().unwrap();
        // Writes messages m1, m2, ... until the pipe breaks; returns how many it wrote.
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let mut batch = Vec::new();
                for _ in 0..1_000 {
                    n += 1;
                    writeln!(
                        batch,
                        r#"{{"id":"m{n}","text":"message {n}: thanks, it works"}}"#
                    )
                    .unwrap();
                }
                if stdin.write_all(&batch).is_err() {
                    return n;
                }
            }
        });
        let start = Instant::now();
        while std::fs::metadata(&out).map_or(0, |m| m.len()) < 4 << 20 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no decisions written in 120 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        triage_tests::signal(child.id(), sig);
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(code), "SIG{sig}: {stderr}");
        let written = writer.join().unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        assert_eq!(summary["interrupted"], true, "{summary}");
        let lines = summary["lines"].as_u64().unwrap();
        assert!(lines > 0 && lines < written, "{lines} of {written}");
        assert_eq!(summary["decisions"], lines);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with('\n'));
        let mut records = 0u64;
        for (i, line) in text.lines().enumerate() {
            let d: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(d["id"], format!("m{}", i + 1));
            records += 1;
        }
        assert_eq!(
            records, lines,
            "SIG{sig}: every line read has its decision, no other"
        );
        assert!(!dir.path().join("out.jsonl.dead-letter.jsonl").exists());
    }
}

/// A reader that stops early (`triage replay --output - | head`, `triage classify | head`): the
/// next write fails with EPIPE, and triage ends quietly with 141 (128 + SIGPIPE), as a tool that
/// SIGPIPE ends, instead of an error message and exit 1.
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    // Far more records than a pipe's buffer holds: the pipe breaks while triage is writing.
    let log = dir.path().join("log.jsonl");
    let mut lines = Vec::new();
    for n in 0..20_000 {
        writeln!(
            lines,
            r#"{{"id":"m{n}","text":"message {n}: where is my order?"}}"#
        )
        .unwrap();
    }
    std::fs::write(&log, &lines).unwrap();
    let config = slm_off(dir.path());
    let commands: [(&str, Vec<&std::ffi::OsStr>); 3] = [
        (
            "replay, 1 thread",
            vec!["replay".as_ref(), "--threads".as_ref(), "1".as_ref()],
        ),
        (
            "replay, 2 threads",
            vec!["replay".as_ref(), "--threads".as_ref(), "2".as_ref()],
        ),
        ("classify", vec!["classify".as_ref()]),
    ];
    for (what, args) in commands {
        let mut cmd = Command::new(triage_tests::triage_bin());
        cmd.args(&args);
        if args[0] == "replay" {
            cmd.arg("--input")
                .arg(&log)
                .args(["--output", "-", "--config"]);
            cmd.arg(&config)
                .arg("--dead-letter")
                .arg(dir.path().join("dlq.jsonl"));
            cmd.stdin(Stdio::null());
        } else {
            cmd.stdin(std::fs::File::open(&log).unwrap());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is dropped here: the pipe has no reader any more.
        let record: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(record["id"], "m0", "{what}: {first}");
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(141), "{what}: {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("Broken pipe"),
            "{what}: {stderr}"
        );
    }
}

/// A pipe that goes quiet (`tail -f log | triage replay --input -`): the lines already received
/// are decided and written out (flushed) without waiting for a chunk to fill, and SIGTERM stops
/// the replay while it waits for more, with the summary and exit code of a signal.
#[test]
fn a_quiet_pipe_gets_its_decisions_and_a_signal_still_stops_it() {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let config = slm_off(dir.path());
    let lines_in = |path: &Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let wait_for = |path: &Path, n: usize| {
        let start = Instant::now();
        while lines_in(path) < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{n} decisions not written 30 s after their lines (a quiet pipe holds them back)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("out-{threads}.jsonl"));
        let mut child = replay_from_pipe(&out, threads, Some(&config));
        let mut stdin = child.stdin.take().unwrap();
        for n in 1..=3 {
            writeln!(stdin, r#"{{"id":"m{n}","text":"order {n} is late"}}"#).unwrap();
        }
        stdin.flush().unwrap();
        wait_for(&out, 3);
        // A line cut in two by a pause is decided once whole.
        write!(stdin, r#"{{"id":"m4","text":"#).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        writeln!(stdin, r#""and order 4"}}"#).unwrap();
        stdin.flush().unwrap();
        wait_for(&out, 4);
        // The pipe stays open and quiet: only the signal can end the replay.
        triage_tests::signal(child.id(), "TERM");
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "SIGTERM not seen in 30 s while the input pipe was quiet"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(143), "{threads} threads: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        assert_eq!(summary["interrupted"], true, "{summary}");
        assert_eq!(summary["lines"], 4, "{summary}");
        assert_eq!(summary["decisions"], 4, "{summary}");
        let ids: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| {
                let d: serde_json::Value = serde_json::from_str(l).unwrap();
                d["id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids, ["m1", "m2", "m3", "m4"], "{threads} threads");
        drop(stdin);
    }
}

/// `--output` or `--dead-letter` naming the input (or each other) is refused before anything is
/// written: `File::create` would have truncated the log before it was read, and the replay would
/// have ended "successfully" with 0 lines and the log gone. A different spelling of the same file
/// (`dir/../log.jsonl`, a link) is the same file.
#[test]
fn replay_refuses_to_write_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let log = dir.path().join("log.jsonl");
    let text =
        "{\"id\":\"a\",\"text\":\"thanks!\"}\n{\"id\":\"b\",\"text\":\"where is my order\"}\n";
    std::fs::write(&log, text).unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "").unwrap();
    let other = sub.join("../log.jsonl");
    let config = slm_off(dir.path());
    let cases: [(&str, &Path, &Path); 4] = [
        ("--output", &other, &dir.path().join("dl.jsonl")),
        ("--output", &link, &dir.path().join("dl.jsonl")),
        ("--dead-letter", &out, &log),
        ("--dead-letter", &out, &out),
    ];
    for (option, output, dead_letter) in cases {
        let run = std::process::Command::new(triage_tests::triage_bin())
            .args(["replay", "--input"])
            .arg(&log)
            .arg("--output")
            .arg(output)
            .arg("--dead-letter")
            .arg(dead_letter)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            run.status.code(),
            Some(2),
            "{output:?} {dead_letter:?}: {stderr}"
        );
        assert!(stderr.contains(option), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            text,
            "the log is intact"
        );
    }
    // Distinct files: the replay runs.
    let run = std::process::Command::new(triage_tests::triage_bin())
        .args(["replay", "--input"])
        .arg(&link)
        .arg("--output")
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

/// A gzip-compressed log (by its first bytes, whatever its name), of two members as `cat a.gz
/// b.gz` makes, is replayed as the plain log, from a file or from stdin: the same records and the
/// same dead letters. So is a log in UTF-16 with a byte order mark (what Windows PowerShell's `>`
/// writes), little- or big-endian, compressed or not; and `triage classify` labels it as the plain
/// one (it had labelled every line after the first as text full of NUL characters).
#[test]
fn a_gzip_or_utf16_log_replays_as_the_plain_one() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    // The SLM off: its answers can depend on how calls batch and on timeouts on a busy machine.
    let config = slm_off(dir.path());
    let plain = std::fs::read(workspace().join("examples/messages.jsonl")).unwrap();
    let half = plain.len() / 2;
    let mut gz = Vec::new();
    for part in [&plain[..half], &plain[half..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    assert_ne!(gz, plain);
    let text = std::str::from_utf8(&plain).unwrap();
    let utf16 = |bom: [u8; 2], bytes: fn(u16) -> [u8; 2]| -> Vec<u8> {
        bom.into_iter()
            .chain(text.encode_utf16().flat_map(bytes))
            .collect()
    };
    let le = utf16([0xff, 0xfe], u16::to_le_bytes);
    let be = utf16([0xfe, 0xff], u16::to_be_bytes);
    let mut le_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    le_gz.write_all(&le).unwrap();
    let le_gz = le_gz.finish().unwrap();
    let inputs = [
        ("plain.jsonl", plain.as_slice(), false),
        ("log.bin", gz.as_slice(), false),
        ("stdin.gz", gz.as_slice(), true),
        ("utf16le.jsonl", le.as_slice(), false),
        ("utf16be.jsonl", be.as_slice(), true),
        ("utf16le.jsonl.gz", le_gz.as_slice(), false),
    ];
    let mut outputs = Vec::new();
    for (name, bytes, stdin) in inputs {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = dir.path().join(format!("{name}.out"));
        let dl = dir.path().join(format!("{name}.dl"));
        let summary = if stdin {
            let run = std::process::Command::new(triage_tests::triage_bin())
                .args(["replay", "--input", "-", "--json", "--output"])
                .arg(&out)
                .arg("--dead-letter")
                .arg(&dl)
                .arg("--config")
                .arg(&config)
                .stdin(std::fs::File::open(&input).unwrap())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{stderr}");
            serde_json::from_slice(&run.stdout).unwrap()
        } else {
            replay_json(&input, &out, &dl, Some(&config))
        };
        let records: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| {
                let mut d: serde_json::Value = serde_json::from_str(l).unwrap();
                d.as_object_mut().unwrap().remove("timings_us");
                d
            })
            .collect();
        outputs.push((summary, records, std::fs::read_to_string(&dl).unwrap()));
    }
    let plain = &outputs[0];
    assert!(plain.0["decisions"].as_u64().unwrap() > 50, "{}", plain.0);
    assert!(
        plain.0["dead_lettered"].as_u64().unwrap() > 0,
        "{}",
        plain.0
    );
    for (gz, (name, ..)) in outputs[1..].iter().zip(&inputs[1..]) {
        for key in ["lines", "decisions", "dead_lettered", "blank"] {
            assert_eq!(plain.0[key], gz.0[key], "{name}: {key}");
        }
        assert_eq!(plain.1, gz.1, "{name}: the same records");
        assert_eq!(plain.2, gz.2, "{name}: the same dead letters");
    }
    let labels = classify(&dir.path().join("plain.jsonl"));
    assert!(labels.len() > 50);
    for name in ["utf16le.jsonl", "utf16be.jsonl", "utf16le.jsonl.gz"] {
        assert_eq!(classify(&dir.path().join(name)), labels, "classify {name}");
    }
}

/// A log that cannot be read to its end (a gzip stream cut short) still gets a record for every
/// whole line read before the cut, in order, on one thread or several; then the replay fails
/// (exit 1) and says how far it got. The lines of the chunk being filled had been lost, and the
/// error said nothing of what was written.
#[test]
fn a_truncated_gzip_log_is_replayed_up_to_the_cut() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain: String = (1..=20_000)
        .map(|i| format!("{{\"id\":\"m-{i}\",\"text\":\"message {i} is fine, thanks\"}}\n"))
        .collect();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(plain.as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    let input = dir.path().join("cut.jsonl.gz");
    std::fs::write(&input, &gz[..gz.len() * 6 / 10]).unwrap();
    let cfg = slm_off(dir.path());
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("out{threads}.jsonl"));
        let run = std::process::Command::new(triage_tests::triage_bin())
            .args(["replay", "--threads", threads, "--config"])
            .arg(&cfg)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{err}");
        let read: usize = err
            .split("could not be read past line ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        assert!((1_000..20_000).contains(&read), "{err}");
        let ids: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect();
        let want: Vec<String> = (1..=read).map(|i| format!("\"m-{i}\"")).collect();
        assert_eq!(ids, want, "threads {threads}: every line read, in order");
    }
}
