//! `triage eval --report DIR`: the report's files exist, the charts hold what they should, the
//! page shows the accuracy `triage eval` prints, and it renders in headless Chromium.
//!
//! The rendering step needs `chromium` on PATH; without it the test fails, unless
//! `TRIAGE_SKIP_BROWSER=1`, which skips (loudly) only that step.

use std::path::Path;
use std::process::Command;

use triage_tests::{triage, workspace};

const FIXTURE: &str = "tests/fixtures/labelled.jsonl";
const LABELS: [&str; 4] = ["positive", "negative", "neutral", "ambiguous"];

fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A chart: one SVG document holding all of `expected`.
fn assert_svg(dir: &Path, file: &str, expected: &[&str]) {
    let svg = read(dir, file);
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{file} is not an SVG document: {}",
        &svg[..svg.len().min(200)]
    );
    assert!(
        svg.contains("xmlns=\"http://www.w3.org/2000/svg\""),
        "{file}: no SVG namespace"
    );
    assert_eq!(
        svg.matches("<svg").count(),
        1,
        "{file}: more than one <svg> element"
    );
    for text in expected {
        assert!(svg.contains(text), "{file} lacks {text:?}");
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[test]
fn eval_report_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_dir = dir.path().join("report");
    let report_arg = report_dir.to_str().expect("UTF-8 temp path");
    let out = triage(&["eval", "--data", FIXTURE, "--report", report_arg]);

    // The headline accuracy as `triage eval` prints it ("accuracy 90.00%").
    let accuracy = out
        .split_whitespace()
        .skip_while(|w| *w != "accuracy")
        .nth(1)
        .unwrap_or_else(|| panic!("no accuracy in the output:\n{out}"))
        .to_string();
    assert!(accuracy.ends_with('%'), "accuracy {accuracy:?}");
    let html_path = report_dir.join("report.html");
    assert!(
        out.contains(&format!("report: {}", html_path.display())),
        "eval did not print the report's path:\n{out}"
    );

    let html = read(&report_dir, "report.html");
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "report.html is not an HTML page"
    );
    assert!(
        html.contains(&format!("{accuracy}</div>")),
        "report.html does not show the printed accuracy {accuracy}"
    );
    assert!(html.contains("macro-F1") && html.contains("labelled.jsonl"));
    for label in LABELS {
        assert!(html.contains(label), "report.html lacks the label {label}");
    }
    // Self-contained: the charts are inline, nothing is fetched.
    assert_eq!(html.matches("<svg").count(), 4, "four inline charts");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "report.html fetches remote resources"
    );

    assert_svg(
        &report_dir,
        "confusion.svg",
        &[
            "Confusion matrix",
            "true label",
            "predicted label",
            "positive",
            "negative",
            "neutral",
            "ambiguous",
        ],
    );
    assert_svg(
        &report_dir,
        "per_class.svg",
        &[
            "precision",
            "recall",
            "F1",
            "positive (10)",
            "ambiguous (10)",
            "score",
        ],
    );
    assert_svg(
        &report_dir,
        "coverage.svg",
        &[
            "share of messages deferred to the SLM",
            "accuracy of the fast classifier",
            "0.50",
            "0.95",
        ],
    );
    assert_svg(
        &report_dir,
        "confidence.svg",
        &["confidence of the predicted label", "correct: ", "wrong: "],
    );
    assert!(
        !report_dir.join("cascade.svg").exists(),
        "cascade.svg without cascade figures"
    );

    render_in_browser(&report_dir, &dir.path().join("report.png"));
}

/// Renders the page with `scripts/render-report.sh` and checks the screenshot is a real PNG.
fn render_in_browser(report_dir: &Path, png: &Path) {
    if !on_path("chromium") {
        if std::env::var("TRIAGE_SKIP_BROWSER").as_deref() == Ok("1") {
            triage_tests::record_skip(
                "report_renders_in_a_browser",
                "chromium is not on PATH and TRIAGE_SKIP_BROWSER=1 (the report's files were checked)",
            );
            return;
        }
        panic!(
            "chromium is not on PATH: install it (Debian: `apt-get install chromium`) to check \
             that the report renders, or set TRIAGE_SKIP_BROWSER=1 to skip that step"
        );
    }
    let out = Command::new(workspace().join("scripts/render-report.sh"))
        .arg(report_dir)
        .arg(png)
        .output()
        .expect("run scripts/render-report.sh");
    assert!(
        out.status.success(),
        "scripts/render-report.sh failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 40_000,
        "{} is only {} bytes: the page probably rendered blank",
        png.display(),
        bytes.len()
    );
}

#[test]
fn json_stays_json_with_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_arg = dir.path().to_str().expect("UTF-8 temp path");
    let out = triage(&["eval", "--data", FIXTURE, "--json", "--report", report_arg]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("stdout is one JSON value");
    assert!(v["accuracy"].is_number());
    assert!(dir.path().join("report.html").is_file());
}
