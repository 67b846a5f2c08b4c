//! `triage replay` end to end on the sample log shipped in `examples/`, with the built-in
//! default model: no broker, no data sets, no models to fetch.

use std::collections::HashSet;

use triage_tests::{probability_sum, triage, workspace};

#[test]
fn replays_the_sample_log_with_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("dlq.jsonl");
    let input = workspace().join("examples/messages.jsonl");
    let summary = triage(&[
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--dead-letter",
        dlq.to_str().unwrap(),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();

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
        assert!((p - 1.0).abs() < 1e-4, "{d}");
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

#[test]
fn classify_reads_plain_lines_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "I love this, thank you!\n{\"id\": 7, \"text\": \"this is awful\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(triage_tests::triage_bin())
        .arg("classify")
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "positive");
    assert_eq!(lines[1]["label"], "negative");
    assert_eq!(lines[1]["id"], 7);
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
