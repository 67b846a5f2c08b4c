//! Fault tests against the real broker (short versions; `scripts/faults.sh` runs the long ones):
//! repeated `kill -9` during a stream, at least once and exactly once, and SLM failures and
//! timeouts inside `triage run`. Nothing may be lost; at least once, duplicates are counted and
//! reported; exactly once, there may be none in what a `read_committed` reader sees.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use triage_tests::txnlog::read_committed_view;
use triage_tests::{
    Reader, Record, Service, ServiceConfig, broker, committed, create_topics, messages, produce,
    produce_in_background, produce_steadily, require_broker, unique,
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

/// A random odd seed from the clock, printed by each test so that a failing run can be read.
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
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
    let seed = seed();
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

/// `delivery = "exactly_once"`: `TRIAGE_EOS_FAULT_ROUNDS` kills (default 3) at random moments of
/// a `TRIAGE_EOS_FAULT_MESSAGES`-message stream (default 20,000, at `TRIAGE_EOS_FAULT_RATE`,
/// default 2,000/s), each 0.2-2.2 s after the instance got its partitions, and each followed
/// by a restart: the output's committed transactions hold every
/// id exactly once. The committed view is computed from the log's transaction markers
/// ([`triage_tests::txnlog`]), because tansu does not hide aborted records from a
/// `read_committed` consumer; what librdkafka's `read_committed` consumer saw is reported.
#[test]
fn random_kill_9_rounds_exactly_once() {
    let addr = broker();
    require_broker(&addr);
    let rounds = env_usize("TRIAGE_EOS_FAULT_ROUNDS", 3);
    let n = env_usize("TRIAGE_EOS_FAULT_MESSAGES", 20_000);
    let rate = env_usize("TRIAGE_EOS_FAULT_RATE", 2_000);
    let seed = seed();
    eprintln!(
        "exactly once, random kills: {rounds} rounds over {n} messages at {rate}/s, seed {seed}"
    );
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (input, output, dlq, group) = (
        unique("eos-kills-in"),
        unique("eos-kills-out"),
        unique("eos-kills-dlq"),
        unique("eos-kills-group"),
    );
    let partitions = 4;
    create_topics(&addr, &[&input, &output, &dlq], partitions);
    let cfg = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &input,
        output: &output,
        dlq: &dlq,
        // The fast path only: a transaction waits for its SLM calls, which on 2 cores would
        // put most kills before the first commit (tests/tests/exactly_once.rs has the SLM on).
        // Fetches answered every 10 ms rather than tansu's 500 (docs/kafka.md §3), so that a
        // transaction is open most of the time and the kills land inside one.
        extra: "[slm]\nmode = \"off\"\n[kafka.consumer_properties]\n\"fetch.wait.max.ms\" = \"10\"\n",
    };
    let env = [("TRIAGE__KAFKA__DELIVERY", "exactly_once")];
    let producer = produce_steadily(&addr, &input, messages(n), rate);
    // librdkafka's default isolation level is read_committed: this is the reader.
    let reader = Reader::start(&addr, &output);
    let t0 = Instant::now();
    let mut aborted_before = 0;
    for round in 0..rounds {
        let mut svc = Service::start_env(&cfg, &[], &env);
        // Kill a random 0.2-2.2 s after it has its partitions, so that it dies mid-transaction
        // rather than while joining.
        let joined = Instant::now();
        while !svc.log_text().contains("partitions assigned") {
            svc.assert_running();
            assert!(
                joined.elapsed() < Duration::from_secs(60),
                "no partitions after 60 s; log:\n{}",
                svc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let wait = 0.2 + 2.0 * (next() % 1000) as f64 / 1000.0;
        std::thread::sleep(Duration::from_secs_f64(wait));
        svc.assert_running();
        svc.signal("KILL");
        assert_eq!(svc.wait(Duration::from_secs(10)), None);
        let view = read_committed_view(&addr, &output, partitions);
        eprintln!(
            "round {}: killed {:.1}s after its partitions were assigned; {} records committed, {} left open, {} aborted so far",
            round + 1,
            wait,
            view.committed.len(),
            view.open.len(),
            view.aborted.len(),
        );
        aborted_before = view.aborted.len();
    }
    let mut last = Service::start_env(&cfg, &[], &env);
    let placed = producer.join().expect("producer");
    let deadline = Instant::now() + Duration::from_secs(240);
    let view = loop {
        let view = read_committed_view(&addr, &output, partitions);
        if view.committed.len() >= n {
            break view;
        }
        last.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} of {n} committed after the kills; log:\n{}",
            view.committed.len(),
            last.log_text()
        );
        std::thread::sleep(Duration::from_millis(1000));
    };
    last.terminate();
    let view = {
        let after = read_committed_view(&addr, &output, partitions);
        assert!(after.committed.len() >= view.committed.len());
        after
    };
    let committed_ids: Vec<String> = view
        .committed
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    let unique_ids: HashSet<&String> = committed_ids.iter().collect();
    let lost = (0..n)
        .filter(|i| !unique_ids.contains(&format!("m-{i}")))
        .count();
    let dups = committed_ids.len() - unique_ids.len();
    assert!(
        view.open.is_empty(),
        "{} records left in open transactions",
        view.open.len()
    );
    let seen = ids(&reader.records());
    let seen_unique: HashSet<&String> = seen.iter().collect();
    eprintln!(
        "exactly once, random kills: {rounds} kill -9 rounds, {n} ids: {lost} lost, {dups} duplicates \
         in the committed view ({} COMMIT and {} ABORT markers, {} aborted records, {} of them \
         before the last instance); librdkafka's read_committed consumer on tansu saw {} records, \
         {} duplicates; {:.0}s",
        view.commit_markers,
        view.abort_markers,
        view.aborted.len(),
        aborted_before,
        seen.len(),
        seen.len() - seen_unique.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0, "ids lost");
    assert_eq!(dups, 0, "duplicates among committed outputs");
    assert_eq!(committed_ids.len(), n);
    // Every partition is committed to its end, by the transactions (auto commit is off).
    let commits = committed(&addr, &group, &input, partitions);
    for p in 0..partitions {
        let end = placed
            .iter()
            .filter(|&&(pp, _)| pp == p)
            .map(|&(_, o)| o + 1)
            .max();
        assert_eq!(commits.get(&p).copied(), end, "partition {p}");
    }
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
