//! `triage run` against a real Kafka-protocol broker (tansu; `scripts/test.sh` starts it).
//! Each test has its own topics and consumer group. Nothing here asserts on watermarks or lag,
//! which tansu reports wrongly.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use triage_tests::{
    OwnBroker, Reader, Record, Service, ServiceConfig, Topics, broker, committed, messages,
    probability_sum, probability_sum_tolerance, produce, produce_in_background, require_broker,
    signal,
};

/// Waits for the reader while checking that every service is still running.
fn progress(
    reader: &Reader,
    services: &mut [&mut Service],
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if reader.wait_for(Duration::from_millis(500), &done) {
            return;
        }
        for s in services.iter_mut() {
            s.assert_running();
        }
    }
    let logs: Vec<String> = services.iter().map(|s| s.log_text()).collect();
    panic!(
        "timed out after {timeout:?} with {} records; logs:\n{}",
        reader.count(),
        logs.join("\n----\n")
    );
}

const PARTITIONS: i32 = 4;

fn topics(addr: &str, name: &str) -> Topics {
    Topics::create(addr, name, PARTITIONS)
}

fn config<'a>(addr: &'a str, t: &'a Topics) -> ServiceConfig<'a> {
    t.config(addr, "")
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect()
}

fn all_ids_present(n: usize) -> impl Fn(&[Record]) -> bool {
    move |recs: &[Record]| {
        let seen: HashSet<String> = ids(recs).into_iter().collect();
        (0..n).all(|i| seen.contains(&format!("m-{i}")))
    }
}

/// Counts what a run delivered: (unique ids, duplicates). Panics listing any lost id.
fn check_nothing_lost(records: &[Record], n: usize, what: &str) -> (usize, usize) {
    let all = ids(records);
    let unique: HashSet<&String> = all.iter().collect();
    let lost: Vec<String> = (0..n)
        .map(|i| format!("m-{i}"))
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} of {n} ids lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let dups = all.len() - unique.len();
    eprintln!("{what}: {n} ids delivered, {dups} duplicates (at-least-once)");
    (unique.len(), dups)
}

/// Message `seq` of [`messages`] has text `seq % 8`: every copy of a text gets one fast label.
fn assert_one_fast_label_per_text(records: &[Record]) {
    let mut by_text: HashMap<usize, String> = HashMap::new();
    for r in records {
        let d = r.json();
        let seq = d["fields"]["seq"].as_u64().unwrap() as usize;
        let fast = d["fast"]["label"].as_str().unwrap().to_string();
        assert_eq!(
            by_text.entry(seq % 8).or_insert_with(|| fast.clone()),
            &fast,
            "text {}",
            seq % 8
        );
    }
    assert_eq!(by_text.len(), 8, "every text was seen");
}

#[test]
fn ten_thousand_messages_end_to_end() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "e2e");
    let n = 10_000;
    // Headers named as triage's own are the producer's to set, not to keep: triage's replace
    // them (a reader taking the first `triage.label` had got "forged").
    let placed = produce(
        &addr,
        &t.input,
        &messages(n),
        &[
            ("trace", "abc"),
            ("triage.label", "forged"),
            ("triage.route", "forged"),
        ],
    );
    let reader = Reader::start(&addr, &t.output);
    let mut svc = Service::start(&config(&addr, &t), &[]);
    progress(
        &reader,
        &mut [&mut svc],
        Duration::from_secs(120),
        all_ids_present(n),
    );
    let records = reader.records();
    check_nothing_lost(&records, n, "end to end");
    let labels = ["ambiguous", "negative", "neutral", "positive"];
    for r in &records {
        let d = r.json();
        let id = d["id"].as_str().unwrap();
        let i: usize = id[2..].parse().unwrap();
        // The key is kept (the producer keyed message i with "i"); headers kept and added.
        assert_eq!(r.key.as_deref(), Some(i.to_string().as_bytes()));
        assert_eq!(r.header("trace").as_deref(), Some("abc"));
        let label = d["label"].as_str().unwrap();
        assert!(labels.contains(&label));
        assert_eq!(r.header("triage.label").as_deref(), Some(label));
        assert_eq!(r.header("triage.route").as_deref(), d["route"].as_str());
        assert!(
            r.headers.iter().all(|(_, v)| v != b"forged"),
            "{:?}",
            r.headers
        );
        let p = probability_sum(&d);
        assert!((p - 1.0).abs() <= probability_sum_tolerance(&d), "{d}");
        assert!(d["confidence"].as_f64().unwrap() >= 0.25);
        assert!(!d["reason"].as_str().unwrap().is_empty());
        assert_eq!(d["model_version"].as_str().unwrap().len(), 12);
        assert_eq!(d["fields"]["seq"], i);
        // Decisions land in the output partition of the same key, so ordering per key holds.
        assert!(placed[i].0 >= 0);
    }
    // Same text, same fast label: the classifier is deterministic across the stream. (The
    // published label may differ between copies: a copy the budget lets through to the second
    // opinion gets the averaged probabilities, one over the budget keeps the fast label.)
    for r in &records {
        let d = r.json();
        if d["route"] == "fast" {
            assert_eq!(d["label"], d["fast"]["label"]);
        }
    }
    assert_one_fast_label_per_text(&records);
    svc.signal("TERM");
    assert_eq!(svc.wait(Duration::from_secs(60)), Some(0));
    let s = svc.summary();
    assert_eq!(s["consumed"], n);
    assert_eq!(s["abandoned"], 0);
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "poison");
    let big = format!("{{\"id\":\"big\",\"text\":\"{}\"}}", "x".repeat(70_000));
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"this is not json".to_vec()),
        ("not_utf8", b"{\"id\":\"u\",\"text\":\"\xff\xfe\"}".to_vec()),
        ("missing_text", br#"{"id":"nt","body":"hello"}"#.to_vec()),
        ("empty_text", br#"{"id":"et","text":"  "}"#.to_vec()),
        ("too_large", big.into_bytes()),
        ("wrong_type", br#"{"id":"wt","text":["a","b"]}"#.to_vec()),
        // Escapes and numbers the parser refuses in the text or the id (they had crashed the
        // decoder, and with it the service, before anything was committed).
        (
            "not_json",
            br#"{"id":"ls","text":"a lone \ud800 surrogate"}"#.to_vec(),
        ),
        (
            "not_json",
            br#"{"id":1e400,"text":"an id out of range"}"#.to_vec(),
        ),
        // The same in a field kept raw: refused, not copied into a record that a strict reader
        // of the output topic would refuse.
        (
            "not_json",
            br#"{"id":"lf","text":"fine","meta":{"who":"\udc00"}}"#.to_vec(),
        ),
        (
            "not_json",
            br#"{"id":"nf","text":"fine","n":[1e400]}"#.to_vec(),
        ),
        // A record without a value (a compacted topic's tombstone, say).
        ("not_json", Vec::new()),
    ];
    // Good messages around the poison ones.
    let good = messages(200);
    let mut payloads = good[..100].to_vec();
    payloads.extend(poison.iter().map(|(_, p)| p.clone()));
    payloads.extend(good[100..].iter().cloned());
    produce(
        &addr,
        &t.input,
        &payloads,
        &[("origin", "poison-test"), ("triage.error.kind", "forged")],
    );
    let out = Reader::start(&addr, &t.output);
    let dlq = Reader::start(&addr, &t.dlq);
    let mut svc = Service::start(&config(&addr, &t), &[]);
    assert!(
        out.wait_for(Duration::from_secs(90), all_ids_present(200)),
        "good messages were not all processed; log:\n{}",
        svc.log_text()
    );
    assert!(dlq.wait_for(Duration::from_secs(30), |r| r.len() >= poison.len()));
    let dead = dlq.records();
    assert_eq!(
        dead.len(),
        poison.len(),
        "exactly the poison messages are dead-lettered"
    );
    for (kind, bytes) in &poison {
        // The original bytes and headers, plus the reason and where it came from.
        let d = dead
            .iter()
            .find(|r| &r.payload == bytes)
            .unwrap_or_else(|| panic!("{kind}: no dead letter with the original payload"));
        assert_eq!(d.header("triage.error.kind").as_deref(), Some(*kind));
        assert_eq!(d.header("origin").as_deref(), Some("poison-test"));
        assert!(d.headers.iter().all(|(_, v)| v != b"forged"), "{kind}");
        assert!(!d.header("triage.error").unwrap().is_empty());
        assert!(d.header("triage.source").unwrap().starts_with(&t.input));
    }
    let empty = dead.iter().find(|r| r.payload.is_empty()).unwrap();
    let reason = empty.header("triage.error").unwrap();
    assert!(reason.contains("the payload is empty"), "{reason}");
    svc.signal("TERM");
    assert_eq!(svc.wait(Duration::from_secs(60)), Some(0));
    let s = svc.summary();
    assert_eq!(s["dead_lettered"], poison.len());
    assert_eq!(s["produced"], 200);
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "kill");
    let n = 30_000;
    // Messages keep arriving while triage runs, is killed, and restarts.
    let producer = produce_in_background(&addr, &t.input, messages(n), 4_000);
    let reader = Reader::start(&addr, &t.output);
    let mut svc = Service::start(&config(&addr, &t), &[]);
    progress(&reader, &mut [&mut svc], Duration::from_secs(90), |r| {
        r.len() >= n / 5
    });
    svc.signal("KILL");
    assert_eq!(
        svc.wait(Duration::from_secs(10)),
        None,
        "killed by a signal"
    );
    let before = reader.count();
    assert!(
        before < n,
        "the kill came too late to test anything ({before} of {n} done)"
    );
    let mut again = Service::start(&config(&addr, &t), &[]);
    producer.join().expect("producer thread");
    progress(
        &reader,
        &mut [&mut again],
        Duration::from_secs(120),
        all_ids_present(n),
    );
    let (_, dups) = check_nothing_lost(&reader.records(), n, "kill -9 and restart");
    eprintln!("kill -9 after {before} outputs: {dups} duplicates re-published after the restart");
    again.signal("TERM");
    assert_eq!(again.wait(Duration::from_secs(60)), Some(0));
}

#[test]
fn two_instances_share_partitions_and_survive_one_leaving() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "pair");
    let n = 40_000;
    let producer = produce_in_background(&addr, &t.input, messages(n), 3_000);
    let reader = Reader::start(&addr, &t.output);
    // Dynamic membership: on tansu, two static members (triage's default) do not share a
    // group. The one that stays never gets the partitions of the one that left (20,002 of
    // 40,000 consumed in 180 s, "partitions assigned []" every 6 s), or one gets nothing, or
    // both rebalance every 6 s with eager assignment (docs/kafka.md, "Restarts").
    let dynamic = [("TRIAGE__KAFKA__GROUP_INSTANCE_ID", "none")];
    let mut a = Service::start_env(&config(&addr, &t), &[], &dynamic);
    let mut b = Service::start_env(&config(&addr, &t), &[], &dynamic);
    // Let the group settle with both members and work for a while.
    progress(
        &reader,
        &mut [&mut a, &mut b],
        Duration::from_secs(90),
        |r| r.len() >= n / 3,
    );
    a.signal("TERM");
    assert_eq!(
        a.wait(Duration::from_secs(60)),
        Some(0),
        "first instance exits cleanly"
    );
    producer.join().expect("producer thread");
    progress(
        &reader,
        &mut [&mut b],
        Duration::from_secs(180),
        all_ids_present(n),
    );
    check_nothing_lost(&reader.records(), n, "two instances, one leaves");
    b.signal("TERM");
    assert_eq!(b.wait(Duration::from_secs(60)), Some(0));
    let (sa, sb) = (a.summary(), b.summary());
    let (ca, cb) = (
        sa["consumed"].as_u64().unwrap(),
        sb["consumed"].as_u64().unwrap(),
    );
    eprintln!("instance A consumed {ca}, instance B consumed {cb}");
    assert!(
        ca > 0 && cb > 0,
        "partitions were not shared: {ca} / {cb}; logs:\n{}\n----\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(ca + cb >= n as u64);
}

#[test]
fn broker_outage_then_recovery_loses_nothing() {
    // A broker of our own: this test freezes it.
    let own = OwnBroker::start(19_192);
    let addr = own.addr.clone();
    let t = topics(&addr, "outage");
    let n = 20_000;
    let producer = produce_in_background(&addr, &t.input, messages(n), 2_000);
    let mut svc = Service::start(&config(&addr, &t), &[]);
    let reader = Reader::start(&addr, &t.output);
    progress(&reader, &mut [&mut svc], Duration::from_secs(90), |r| {
        r.len() >= n / 5
    });
    // Unreachable for longer than the session timeout (3 s).
    let pid = own.pid();
    signal(pid, "STOP");
    std::thread::sleep(Duration::from_secs(8));
    signal(pid, "CONT");
    producer.join().expect("producer thread");
    progress(
        &reader,
        &mut [&mut svc],
        Duration::from_secs(180),
        all_ids_present(n),
    );
    check_nothing_lost(&reader.records(), n, "broker outage");
    svc.signal("TERM");
    assert_eq!(svc.wait(Duration::from_secs(60)), Some(0));
}

#[test]
fn sigterm_drains_and_commits_exactly_what_was_delivered() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "term");
    let n = 30_000;
    let producer = produce_in_background(&addr, &t.input, messages(n), 4_000);
    let reader = Reader::start(&addr, &t.output);
    let mut svc = Service::start(&config(&addr, &t), &[]);
    progress(&reader, &mut [&mut svc], Duration::from_secs(90), |r| {
        r.len() >= n / 5
    });
    svc.signal("TERM");
    assert_eq!(
        svc.wait(Duration::from_secs(60)),
        Some(0),
        "clean exit on SIGTERM"
    );
    let placed = producer.join().expect("producer thread");
    let s = svc.summary();
    assert_eq!(s["ended_by"], "SIGTERM");
    assert_eq!(s["abandoned"], 0);
    // Let the reader catch up with everything triage delivered before it exited.
    let delivered = s["produced"].as_u64().unwrap() as usize;
    assert!(
        delivered < n,
        "SIGTERM came after the end: nothing was tested mid-stream"
    );
    assert!(reader.wait_for(Duration::from_secs(30), |r| r.len() >= delivered));
    let records = reader.records();
    assert_eq!(
        records.len(),
        delivered,
        "the reader saw what triage says it delivered"
    );
    // Per input partition: the highest input offset whose decision was delivered.
    let mut top: HashMap<i32, i64> = HashMap::new();
    for r in &records {
        let seq = r.json()["fields"]["seq"].as_u64().unwrap() as usize;
        let (p, o) = placed[seq];
        let e = top.entry(p).or_insert(-1);
        *e = (*e).max(o);
    }
    let commits = committed(&addr, &t.group, &t.input, PARTITIONS);
    for p in 0..PARTITIONS {
        let want = top.get(&p).map_or(-1, |o| o + 1);
        let got = commits.get(&p).copied().unwrap_or(-1);
        assert_eq!(
            got,
            want,
            "partition {p}: committed {got}, but decisions were delivered up to offset {}",
            want - 1
        );
    }
    // Every input below a committed offset has its decision: nothing committed undelivered.
    let delivered_seqs: HashSet<usize> = records
        .iter()
        .map(|r| r.json()["fields"]["seq"].as_u64().unwrap() as usize)
        .collect();
    for (seq, &(p, o)) in placed.iter().enumerate() {
        if o < commits.get(&p).copied().unwrap_or(-1) {
            assert!(
                delivered_seqs.contains(&seq),
                "m-{seq} committed but not delivered"
            );
        }
    }
}

/// A SIGTERM while the service starts (clients made, group not yet joined) is a graceful stop,
/// not death by the signal's default action: the handler is registered before anything else.
#[test]
fn sigterm_while_starting_is_a_clean_exit() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "term-start");
    let mut svc = Service::start(&config(&addr, &t), &[]);
    let started = std::time::Instant::now();
    while !svc.log_text().contains("starting kafka pipeline") {
        svc.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pipeline did not start; log:\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    svc.signal("TERM");
    assert_eq!(
        svc.wait(Duration::from_secs(60)),
        Some(0),
        "SIGTERM during start-up; log:\n{}",
        svc.log_text()
    );
    assert_eq!(svc.summary()["ended_by"], "SIGTERM");
}

#[test]
fn replay_from_the_beginning_reclassifies_the_topic() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "replay");
    let n = 500;
    produce(&addr, &t.input, &messages(n), &[]);
    let reader = Reader::start(&addr, &t.output);
    // The normal group reads everything once and exits when idle.
    let mut first = Service::start(&config(&addr, &t), &["--exit-when-idle", "3"]);
    assert_eq!(
        first.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        first.log_text()
    );
    assert!(reader.wait_for(Duration::from_secs(30), |r| r.len() >= n));
    // Running the same group again finds nothing new...
    let mut again = Service::start(&config(&addr, &t), &["--exit-when-idle", "3"]);
    assert_eq!(again.wait(Duration::from_secs(120)), Some(0));
    assert_eq!(
        again.summary()["consumed"],
        0,
        "the committed group re-read messages"
    );
    // ...while --from-beginning re-reads the topic's history with a group of its own.
    let mut replay = Service::start(
        &config(&addr, &t),
        &["--from-beginning", "--exit-when-idle", "3"],
    );
    assert_eq!(
        replay.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        replay.log_text()
    );
    assert_eq!(replay.summary()["consumed"], n);
    assert!(reader.wait_for(Duration::from_secs(30), |r| r.len() >= 2 * n));
    let records = reader.records();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ids(&records) {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), n);
    assert!(
        counts.values().all(|&c| c == 2),
        "each message classified twice"
    );
    // A group named with --group that has committed offsets would resume from them and re-read
    // nothing (it had ended "idle", exit 0, consumed 0); the service's own group would also take
    // the live service's partitions. Both are refused.
    let mut by_time = Service::start(
        &config(&addr, &t),
        &["--from-timestamp", "0", "--group", &t.group],
    );
    let code = by_time.wait(Duration::from_secs(60));
    let log = by_time.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("the service's own group"), "{log}");
    for (group, why) in [
        (t.group.as_str(), "the service's own group"),
        ("committed-elsewhere", "committed offsets"),
    ] {
        if group == "committed-elsewhere" {
            let mut other = Service::start(
                &config(&addr, &t),
                &["--group", group, "--exit-when-idle", "3"],
            );
            assert_eq!(other.wait(Duration::from_secs(120)), Some(0));
            assert_eq!(other.summary()["consumed"], n);
        }
        let mut refused = Service::start(
            &config(&addr, &t),
            &[
                "--from-beginning",
                "--group",
                group,
                "--exit-when-idle",
                "3",
            ],
        );
        let code = refused.wait(Duration::from_secs(60));
        let log = refused.log_text();
        assert_eq!(code, Some(2), "{log}");
        assert!(log.contains(why), "{log}");
    }
}

#[test]
fn a_record_the_producer_refuses_is_dead_lettered_and_its_partition_moves_on() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "refused");
    // librdkafka refuses a record above the producer's message.max.bytes at once
    // (MsgSizeTooLarge), before the broker sees it: a permanent error. The input (30 kB) is
    // under the input limit (64 KiB), its decision (which keeps the input's other fields) is not
    // under 20,000 bytes; nor is its dead letter (the refused decision), so the stripped dead
    // letter (reason and source, no payload) is what reaches the dead-letter topic.
    let extra = "[kafka.producer_properties]\n\"message.max.bytes\" = \"20000\"\n";
    let good = messages(400);
    let big_at = 150;
    let big = format!(
        "{{\"id\":\"big\",\"text\":\"hello there\",\"pad\":\"{}\"}}",
        "x".repeat(30_000)
    );
    let mut payloads = good[..big_at].to_vec();
    payloads.push(big.into_bytes());
    payloads.extend(good[big_at..].iter().cloned());
    let placed = produce(&addr, &t.input, &payloads, &[("origin", "refused-test")]);
    let (big_p, big_o) = placed[big_at];
    let after_in_partition = placed[big_at + 1..]
        .iter()
        .filter(|&&(p, _)| p == big_p)
        .count();
    assert!(
        after_in_partition > 0,
        "no message after the big one in its partition"
    );
    let out = Reader::start(&addr, &t.output);
    let dlq = Reader::start(&addr, &t.dlq);
    let cfg = ServiceConfig {
        extra,
        ..config(&addr, &t)
    };
    let mut svc = Service::start(&cfg, &[]);
    progress(
        &out,
        &mut [&mut svc],
        Duration::from_secs(90),
        all_ids_present(good.len()),
    );
    assert!(
        dlq.wait_for(Duration::from_secs(30), |r| !r.is_empty()),
        "no dead letter; log:\n{}",
        svc.log_text()
    );
    svc.terminate();
    let s = svc.summary();
    assert_eq!(s["produced"], good.len(), "{s}");
    assert_eq!(s["dead_lettered"], 1, "{s}");
    // The decision, then its dead letter, were refused; the stripped dead letter was taken.
    assert_eq!(s["produce_rejected"], 2, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(s["abandoned"], 0, "{s}");
    let dead = dlq.records();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(
        d.header("triage.error.kind").as_deref(),
        Some("produce_rejected")
    );
    let reason = d.header("triage.error").unwrap();
    assert!(
        reason.contains("MessageSizeTooLarge") && reason.contains("payload"),
        "the reason names the refusal: {reason}"
    );
    assert_eq!(
        d.header("triage.source"),
        Some(format!("{}/{big_p}/{big_o}", t.input))
    );
    assert!(
        d.payload.is_empty(),
        "the stripped dead letter has no payload"
    );
    // Every partition, the big one's included, is committed to its end: the refused record
    // did not pin its partition.
    let commits = committed(&addr, &t.group, &t.input, PARTITIONS);
    for p in 0..PARTITIONS {
        let end = placed
            .iter()
            .filter(|&&(pp, _)| pp == p)
            .map(|&(_, o)| o + 1)
            .max()
            .unwrap_or(-1);
        assert_eq!(
            commits.get(&p).copied().unwrap_or(-1),
            end,
            "partition {p} (the big message's: {big_p}) is not committed to its end"
        );
    }
    // And the group, restarted, re-reads nothing.
    let mut again = Service::start(&cfg, &["--exit-when-idle", "3"]);
    assert_eq!(again.wait(Duration::from_secs(120)), Some(0));
    assert_eq!(again.summary()["consumed"], 0, "{}", again.log_text());
}

/// Seconds from `since` until `svc`'s log says "partitions assigned", polling.
fn seconds_until_assigned(svc: &mut Service, since: std::time::Instant, limit: Duration) -> f64 {
    while since.elapsed() < limit {
        if svc.log_text().contains("partitions assigned") {
            return since.elapsed().as_secs_f64();
        }
        svc.assert_running();
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no partitions within {limit:?} of the restart; log:\n{}",
        svc.log_text()
    );
}

#[test]
fn kill_9_then_restart_gets_the_partitions_back_in_seconds_with_the_default_config() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "restart");
    let n = 20_000;
    let producer = produce_in_background(&addr, &t.input, messages(n), 4_000);
    let reader = Reader::start(&addr, &t.output);
    // The default group settings: no session.timeout.ms of the tests', static membership "auto".
    let mut svc = Service::start_default_timeouts(&config(&addr, &t), &[]);
    progress(&reader, &mut [&mut svc], Duration::from_secs(120), |r| {
        r.len() >= n / 5
    });
    svc.signal("KILL");
    let killed = std::time::Instant::now();
    let mut again = Service::start_default_timeouts(&config(&addr, &t), &[]);
    assert_eq!(
        svc.wait(Duration::from_secs(10)),
        None,
        "killed by a signal"
    );
    let secs = seconds_until_assigned(&mut again, killed, Duration::from_secs(120));
    eprintln!("kill -9 and restart: partitions back after {secs:.2} s");
    // The issue's goal is 10 s; the bound is generous for a loaded machine (it was 83 s).
    assert!(secs <= 30.0, "partitions came back after {secs:.1} s");
    producer.join().expect("producer thread");
    progress(
        &reader,
        &mut [&mut again],
        Duration::from_secs(120),
        all_ids_present(n),
    );
    check_nothing_lost(&reader.records(), n, "kill -9 and fast restart");
    again.signal("TERM");
    assert_eq!(again.wait(Duration::from_secs(60)), Some(0));
}

/// `[kafka] classify_threads = 2`: messages taken in batches and classified on two threads are
/// all decided, the poison among them dead-lettered, every text gets the same fast label, and
/// each input partition's fast-path decisions reach each output partition in the order consumed.
#[test]
fn two_classify_threads_lose_nothing_and_keep_each_partitions_order() {
    let addr = broker();
    require_broker(&addr);
    let t = topics(&addr, "threads");
    let n = 20_000;
    let good = messages(n);
    let mut payloads = Vec::with_capacity(n + n / 1000);
    let mut poison = 0;
    for (i, g) in good.iter().enumerate() {
        if i % 1000 == 500 {
            payloads.push(b"this is not json".to_vec());
            poison += 1;
        }
        payloads.push(g.clone());
    }
    // Message j of `payloads` is keyed "j"; the decision keeps the key.
    let placed = produce(&addr, &t.input, &payloads, &[]);
    let out = Reader::start(&addr, &t.output);
    let dlq = Reader::start(&addr, &t.dlq);
    let mut svc = Service::start_env(
        &config(&addr, &t),
        &[],
        &[("TRIAGE__KAFKA__CLASSIFY_THREADS", "2")],
    );
    progress(
        &out,
        &mut [&mut svc],
        Duration::from_secs(120),
        all_ids_present(n),
    );
    assert!(dlq.wait_for(Duration::from_secs(30), |r| r.len() >= poison));
    let records = out.records();
    let (_, dups) = check_nothing_lost(&records, n, "two classify threads");
    assert_eq!(dups, 0, "a clean run publishes each decision once");
    assert_eq!(dlq.records().len(), poison);
    // Order: along each output partition, the input offsets of each input partition rise, for
    // the decisions of the fast path (a message that waits for the SLM is published when its
    // answer comes, after later ones: by design, polling goes on meanwhile).
    let mut by_out: HashMap<i32, Vec<&Record>> = HashMap::new();
    let mut fast = 0;
    for r in records.iter().filter(|r| r.json()["route"] == "fast") {
        by_out.entry(r.partition).or_default().push(r);
        fast += 1;
    }
    assert!(fast > n / 2, "{fast} of {n} decisions on the fast path");
    for (q, mut recs) in by_out {
        recs.sort_by_key(|r| r.offset);
        let mut last: HashMap<i32, i64> = HashMap::new();
        for r in recs {
            let j: usize = std::str::from_utf8(r.key.as_deref().expect("keyed"))
                .unwrap()
                .parse()
                .unwrap();
            let (p, off) = placed[j];
            if let Some(&prev) = last.get(&p) {
                assert!(
                    off > prev,
                    "output partition {q}: input {p}/{off} published after {p}/{prev}"
                );
            }
            last.insert(p, off);
        }
    }
    // The same text gets the same fast label on either thread.
    assert_one_fast_label_per_text(&records);
    svc.signal("TERM");
    assert_eq!(svc.wait(Duration::from_secs(60)), Some(0));
    let s = svc.summary();
    assert_eq!(s["consumed"], n + poison);
    assert_eq!(s["produced"], n);
    assert_eq!(s["dead_lettered"], poison);
    assert_eq!(s["abandoned"], 0);
    // The messages waiting in the queue were taken together.
    let batches = s["classify_batches"].as_u64().unwrap();
    eprintln!(
        "two classify threads: {} messages in {batches} batches",
        n + poison
    );
    assert!(
        batches > 0 && batches < (n + poison) as u64 / 2,
        "{batches} batches"
    );
}

/// `--exit-when-idle` on a topic that does not exist: the run had waited forever (the idle clock
/// started only with the first partitions). It now gives up once the group join's grace (30 s)
/// is over, exit 1, naming the topic and the consumer's error.
#[test]
fn exit_when_idle_ends_a_run_that_never_gets_a_partition() {
    let addr = broker();
    require_broker(&addr);
    let missing = triage_tests::unique("never-created");
    let group = triage_tests::unique("never-group");
    let c = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &missing,
        output: "never-out",
        dlq: "never-dlq",
        extra: "",
    };
    let started = std::time::Instant::now();
    let mut svc = Service::start(&c, &["--exit-when-idle", "1"]);
    let code = svc.wait(Duration::from_secs(90));
    let log = svc.log_text();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("no partition of {missing} was assigned")),
        "{log}"
    );
    assert!(started.elapsed() >= Duration::from_secs(30), "{log}");
}

/// Credentials the brokers refuse (SASL against this broker, which has none): the run had ended
/// "AllBrokersDown … (this may succeed if run again later)", exit 1, the cause only in earlier
/// log lines. It now names the refusal and the settings to check, exit 2.
#[test]
fn exit_when_idle_names_refused_credentials() {
    let addr = broker();
    require_broker(&addr);
    let topic = triage_tests::unique("sasl-in");
    let group = triage_tests::unique("sasl-group");
    let c = ServiceConfig {
        broker: &addr,
        group: &group,
        input: &topic,
        output: "sasl-out",
        dlq: "sasl-dlq",
        extra: "",
    };
    let mut svc = Service::start_env(
        &c,
        &["--exit-when-idle", "1"],
        &[
            (
                "TRIAGE__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                "SASL_PLAINTEXT",
            ),
            ("TRIAGE__KAFKA__PROPERTIES__SASL_MECHANISMS", "PLAIN"),
            ("TRIAGE__KAFKA__PROPERTIES__SASL_USERNAME", "bob"),
            ("TRIAGE__KAFKA__PROPERTIES__SASL_PASSWORD", "not-a-password"),
        ],
    );
    let code = svc.wait(Duration::from_secs(90));
    let log = svc.log_text();
    assert_eq!(code, Some(2), "{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(last.contains("the brokers refused this client"), "{log}");
    assert!(last.contains("Authentication"), "{last}");
    assert!(!last.contains("may succeed if run again"), "{last}");
    assert!(
        !log.contains("not-a-password"),
        "the password in the log: {log}"
    );
}

/// `/health` while the brokers are out of reach: the loop's beat had never run (the consumer's
/// errors came first in its select), so it reported a beat 56 years old. It beats now, and says
/// so with a small age.
#[test]
fn health_beats_while_the_brokers_are_down() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = ServiceConfig {
        broker: "127.0.0.1:1",
        group: "down-group",
        input: "down-in",
        output: "down-out",
        dlq: "down-dlq",
        extra: "",
    };
    let mut svc = Service::start_env(
        &c,
        &[],
        &[
            ("TRIAGE__METRICS__ENABLED", "true"),
            ("TRIAGE__METRICS__LISTEN", &format!("127.0.0.1:{port}")),
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    svc.assert_running();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect(&reply);
    let age = v["last_beat_ms_ago"]
        .as_u64()
        .unwrap_or_else(|| panic!("no beat: {reply}"));
    assert!(age < 5_000, "{reply}");
    svc.terminate();
}
