//! Overload: `triage run` on a real broker with the real fine-tuned second opinion, slowed down
//! with `[slm.fault] delay_ms` so that a burst of messages needs far more second opinions than
//! the SLM can serve in time (every message is unsure: threshold 1.0, no budget).
//!
//! - `admission = "urgency"` (the default): the SLM gets the least confident of the waiting
//!   messages, and the others are published `over_budget` with the fast label at the end of
//!   their window, none `degraded`.
//! - `admission = "arrival"` (the first-come behaviour it replaced): the first messages are
//!   served, whatever their confidence, and the rest time out into `degraded`.

use std::time::{Duration, Instant};

use triage_tests::{
    Reader, Service, ServiceConfig, broker, create_topics, produce, require_broker, unique,
    workspace,
};

/// The sample log's well-formed messages (70, with distinct texts), with ids `o-<n>` in order.
fn burst() -> Vec<Vec<u8>> {
    let log = std::fs::read_to_string(workspace().join("examples/messages.jsonl")).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text")?.as_str().map(str::to_owned))
        .filter(|t| !t.trim().is_empty())
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": format!("o-{i}"), "text": t})
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// One published decision: input position, position in the output, route, fast confidence,
/// reason, and whether the published label is the fast one.
struct Published {
    seq: usize,
    out: usize,
    route: String,
    fast_confidence: f64,
    reason: String,
    fast_label_kept: bool,
}

/// Produces the burst to a fresh one-partition topic, then runs the service over it with this
/// `[slm.executor]` section; returns the decisions in input order.
fn run(executor: &str) -> Vec<Published> {
    let addr = broker();
    require_broker(&addr);
    let (input, output, dlq, group) = (
        unique("overload-in"),
        unique("overload-out"),
        unique("overload-dlq"),
        unique("overload-group"),
    );
    create_topics(&addr, &[&input, &output, &dlq], 1);
    let burst = burst();
    let n = burst.len();
    assert_eq!(n, 70);
    produce(&addr, &input, &burst, &[]);
    // Each model call takes 250 ms more, one message per call: about 4 second opinions/s
    // against 70 asked for at once.
    let extra = format!(
        "[router]\ndefault_threshold = 1.0\n[budget]\nmax_share = 1.0\n\
         [slm]\nmode = \"on\"\n[slm.fault]\ndelay_ms = 250\n\
         [slm.executor]\nmax_batch = 1\nmax_wait_ms = 0\n{executor}"
    );
    let cfg = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &input,
        output: &output,
        dlq: &dlq,
        extra: &extra,
    };
    let reader = Reader::start(&addr, &output);
    let mut svc = Service::start(&cfg, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reader.wait_for(Duration::from_millis(500), |r| r.len() >= n) {
        svc.assert_running();
        assert!(
            Instant::now() < deadline,
            "not every message got a decision; log:\n{}",
            svc.log_text()
        );
    }
    svc.terminate();
    let mut out: Vec<Published> = reader
        .records()
        .iter()
        .enumerate()
        .map(|(out, r)| {
            let d = r.json();
            Published {
                seq: d["id"].as_str().unwrap()[2..].parse().unwrap(),
                out,
                route: d["route"].as_str().unwrap().to_string(),
                fast_confidence: d["fast"]["confidence"].as_f64().unwrap(),
                reason: d["reason"].as_str().unwrap().to_string(),
                fast_label_kept: d["label"] == d["fast"]["label"],
            }
        })
        .collect();
    out.sort_by_key(|p| p.seq);
    out.dedup_by_key(|p| p.seq);
    assert_eq!(out.len(), n, "one decision per message");
    let routes: Vec<&str> = out.iter().map(|p| p.route.as_str()).collect();
    eprintln!("{executor:?}: routes in input order {routes:?}");
    out
}

fn max_confidence<'a>(ps: impl Iterator<Item = &'a Published>) -> f64 {
    ps.map(|p| p.fast_confidence)
        .fold(f64::NEG_INFINITY, f64::max)
}

fn min_confidence<'a>(ps: impl Iterator<Item = &'a Published>) -> f64 {
    ps.map(|p| p.fast_confidence).fold(f64::INFINITY, f64::min)
}

#[test]
fn a_saturated_slm_answers_the_least_confident_and_sheds_the_rest_as_over_budget() {
    let ds = run("admission = \"urgency\"\nadmission_window_ms = 2000\ntimeout_ms = 60000\n");
    let served: Vec<&Published> = ds.iter().filter(|p| p.route == "second_opinion").collect();
    let shed: Vec<&Published> = ds.iter().filter(|p| p.route == "over_budget").collect();
    assert_eq!(
        served.len() + shed.len(),
        ds.len(),
        "only second_opinion and over_budget: none degraded"
    );
    assert!(
        served.len() >= 2 && shed.len() >= 40,
        "{} served, {} shed",
        served.len(),
        shed.len()
    );
    for p in &shed {
        assert!(
            p.fast_label_kept,
            "o-{}: the fast label is published",
            p.seq
        );
        assert!(
            p.reason.contains("SLM saturated") && p.reason.contains("2000 ms admission window"),
            "o-{}: {}",
            p.seq,
            p.reason
        );
    }
    // The idle SLM's worker took the most urgent of the messages that had arrived when it woke
    // up (the first few of the burst: o-0 alone, or more when the loop outran the wake-up), so
    // the first served, the earliest second opinion in the output, chose among a part of the
    // burst. Every later pick chose among all of it (each waits 250 ms for the slowed SLM, the
    // burst arrives within milliseconds): every other served message is less confident than
    // every shed one, the SLM went where the fast classifier was least sure.
    let first = served.iter().map(|p| p.out).min().expect("some served");
    let later_served = served.iter().filter(|p| p.out != first);
    let most_confident_served = max_confidence(later_served.copied());
    let least_confident_shed = min_confidence(shed.iter().copied());
    assert!(
        most_confident_served <= least_confident_shed,
        "a served message (confidence {most_confident_served}) was more confident than a shed \
         one ({least_confident_shed})"
    );
}

#[test]
fn first_come_serves_in_arrival_order_and_times_the_rest_out_as_degraded() {
    let ds = run("admission = \"arrival\"\ntimeout_ms = 2000\n");
    let served: Vec<usize> = ds
        .iter()
        .filter(|p| p.route == "second_opinion")
        .map(|p| p.seq)
        .collect();
    let degraded: Vec<&Published> = ds.iter().filter(|p| p.route == "degraded").collect();
    assert_eq!(served.len() + degraded.len(), ds.len(), "none over_budget");
    assert!(
        !served.is_empty() && degraded.len() >= 40,
        "{} served, {} degraded",
        served.len(),
        degraded.len()
    );
    // The first ones, whatever their confidence.
    assert_eq!(served, (0..served.len()).collect::<Vec<_>>());
    for p in degraded {
        assert!(
            p.fast_label_kept && p.reason.contains("timed out"),
            "{}",
            p.reason
        );
    }
}
