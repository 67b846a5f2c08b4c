//! Fault tests against the real broker (short versions; `scripts/faults.sh` runs the long ones):
//! repeated `kill -9` during a stream, and SLM failures and timeouts inside `triage run`.
//! Nothing may be lost; duplicates are counted and reported.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use triage_tests::{
    Reader, Record, Service, ServiceConfig, broker, committed, create_topics, messages, produce,
    produce_in_background, require_broker, unique,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect()
}

fn all_present(n: usize) -> impl Fn(&[Record]) -> bool {
    move |recs: &[Record]| {
        let seen: HashSet<String> = ids(recs).into_iter().collect();
        (0..n).all(|i| seen.contains(&format!("m-{i}")))
    }
}

/// `TRIAGE_FAULT_ROUNDS` kills (default 3) at random moments of a `TRIAGE_FAULT_MESSAGES`-message
/// stream (default 30,000), each followed by a restart: no id may be lost.
#[test]
fn random_kill_9_rounds_lose_nothing() {
    let addr = broker();
    require_broker(&addr);
    let rounds = env_usize("TRIAGE_FAULT_ROUNDS", 3);
    let n = env_usize("TRIAGE_FAULT_MESSAGES", 30_000);
    let rate = env_usize("TRIAGE_FAULT_RATE", 4_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("random kills: {rounds} rounds over {n} messages at {rate}/s, seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (input, output, dlq, group) = (
        unique("kills-in"),
        unique("kills-out"),
        unique("kills-dlq"),
        unique("kills-group"),
    );
    create_topics(&addr, &[&input, &output, &dlq], 4);
    let cfg = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &input,
        output: &output,
        dlq: &dlq,
        extra: "",
    };
    let stream_secs = n as f64 / rate as f64;
    let producer = produce_in_background(&addr, &input, messages(n), rate);
    let reader = Reader::start(&addr, &output);
    let t0 = Instant::now();
    for round in 0..rounds {
        let mut svc = Service::start(&cfg, &[]);
        // Kill at a random moment of this round's share of the stream (after the group join).
        let share = stream_secs / rounds as f64;
        let wait = 2.0 + share * (next() % 1000) as f64 / 1000.0;
        std::thread::sleep(Duration::from_secs_f64(wait));
        svc.assert_running();
        svc.signal("KILL");
        assert_eq!(svc.wait(Duration::from_secs(10)), None);
        eprintln!(
            "round {}: killed after {:.1}s, {} outputs so far",
            round + 1,
            wait,
            reader.count()
        );
    }
    let mut last = Service::start(&cfg, &[]);
    producer.join().expect("producer");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !reader.wait_for(Duration::from_millis(500), all_present(n)) {
        last.assert_running();
        assert!(
            Instant::now() < deadline,
            "ids missing after the kills; log:\n{}",
            last.log_text()
        );
    }
    let all = ids(&reader.records());
    let unique_ids: HashSet<&String> = all.iter().collect();
    assert!((0..n).all(|i| unique_ids.contains(&format!("m-{i}"))));
    eprintln!(
        "random kills: {rounds} kill -9 rounds, {n} ids, 0 lost, {} duplicates, {:.0}s",
        all.len() - unique_ids.len(),
        t0.elapsed().as_secs_f64()
    );
    last.signal("TERM");
    assert_eq!(last.wait(Duration::from_secs(60)), Some(0));
}

/// SLM calls fail or time out for a share of messages inside `triage run`: every message still
/// gets a decision (`degraded` where the SLM gave none) and the committed offsets reach the end.
#[test]
fn slm_faults_degrade_and_offsets_advance() {
    let addr = broker();
    require_broker(&addr);
    let (input, output, dlq, group) = (
        unique("slmf-in"),
        unique("slmf-out"),
        unique("slmf-dlq"),
        unique("slmf-group"),
    );
    create_topics(&addr, &[&input, &output, &dlq], 2);
    let n = env_usize("TRIAGE_SLM_FAULT_MESSAGES", 1_500);
    let placed = produce(&addr, &input, &messages(n), &[]);
    let cfg = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &input,
        output: &output,
        dlq: &dlq,
        // First come, first served: this test is about calls that fail or hang, not about which
        // calls a saturated SLM sheds (tests/tests/overload.rs), and the burst saturates it.
        extra: "[router]\ndefault_threshold = 0.9\n[budget]\nmax_share = 1.0\n\
                [slm]\nmode = \"on\"\n[slm.executor]\ntimeout_ms = 1500\nadmission = \"arrival\"\n\
                [slm.fault]\nerror_share = 0.2\ntimeout_share = 0.1\n",
    };
    let reader = Reader::start(&addr, &output);
    let mut svc = Service::start(&cfg, &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !reader.wait_for(Duration::from_millis(500), all_present(n)) {
        svc.assert_running();
        assert!(
            Instant::now() < deadline,
            "not every message got a decision; log:\n{}",
            svc.log_text()
        );
    }
    let records = reader.records();
    let mut routes: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let d = r.json();
        *routes
            .entry(d["route"].as_str().unwrap().to_string())
            .or_default() += 1;
        if d["route"] == "degraded" {
            assert_eq!(d["label"], d["fast"]["label"]);
        }
    }
    eprintln!("SLM fault injection: routes {routes:?}");
    assert!(
        routes.get("degraded").copied().unwrap_or(0) > 0,
        "{routes:?}"
    );
    assert!(
        routes.get("second_opinion").copied().unwrap_or(0) > 0,
        "{routes:?}"
    );
    svc.signal("TERM");
    assert_eq!(
        svc.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        svc.log_text()
    );
    // Offsets advanced to the end of every partition.
    let mut end: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in &placed {
        let e = end.entry(p).or_insert(-1);
        *e = (*e).max(o);
    }
    let commits = committed(&addr, &group, &input, 2);
    for (p, last) in end {
        assert_eq!(commits.get(&p).copied(), Some(last + 1), "partition {p}");
    }
}
