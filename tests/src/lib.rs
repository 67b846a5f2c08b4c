//! Test harness for the end-to-end tests in `tests/tests/`: finds the `triage` binary, the data,
//! and the broker; creates topics; produces and reads messages; runs triage as a subprocess.
//!
//! Nothing here mocks anything: the broker is a real Kafka-protocol broker (tansu, started by
//! `scripts/test.sh`), and triage is the release binary.
#![forbid(unsafe_code)]

pub mod txnlog;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The release `triage` binary (`TRIAGE_BIN` overrides). Panics with instructions if missing.
pub fn triage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIAGE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let p = target.join("release").join("triage");
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build --release -p triage` \
         (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The labelled data sets: `TRIAGE_DATA` (relative paths are relative to the workspace root, as
/// in scripts/test.sh), default `../shared/data` beside the workspace.
pub fn data_root() -> PathBuf {
    workspace().join(
        std::env::var_os("TRIAGE_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/data")),
    )
}

/// The labelled data sets' root when every file in `needs` (paths relative to it) is there, or
/// why a test that needs them cannot run (the reason of its skip).
pub fn data_dir(needs: &[&str]) -> Result<PathBuf, String> {
    let dir = data_root();
    match needs.iter().find(|f| !dir.join(f).is_file()) {
        None => Ok(dir),
        Some(missing) => Err(format!(
            "{} not found (set TRIAGE_DATA to the labelled data sets)",
            dir.join(missing).display()
        )),
    }
}

/// Records that `test` did not run, and why, where a reader of the test command's output sees
/// it: on stdout, which a test harness of our own (`harness = false`) does not capture, and as a
/// line `<test>: <reason>` in the file `$TRIAGE_SKIP_LOG`, which `scripts/test.sh` lists in its
/// final summary. A test that calls this must also not report `ok`: see
/// `tests/tests/accuracy.rs`, which marks such tests `ignored`.
pub fn record_skip(test: &str, reason: &str) {
    println!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {test}: {reason}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    );
    if let Some(log) = std::env::var_os("TRIAGE_SKIP_LOG") {
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "cannot record the skip of {test} in {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// Runs triage to completion, returning stdout; panics with stderr on failure.
pub fn triage(args: &[&str]) -> String {
    let out = Command::new(triage_bin())
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run triage");
    assert!(
        out.status.success(),
        "triage {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a `triage` command (`Command::new(triage_bin()).args(...)`) to its end: its exit code and
/// its stderr.
pub fn code_and_stderr(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run triage");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes 24 labelled lines, two labels (`positive`, `negative`), to `dir/train.jsonl`.
pub fn two_label_data(dir: &Path) -> PathBuf {
    let p = dir.join("train.jsonl");
    let mut s = String::new();
    for i in 0..12 {
        s.push_str(&format!(
            "{{\"text\": \"thank you so much, lovely help {i}\", \"label\": \"positive\"}}\n\
             {{\"text\": \"this is broken again and nobody answers {i}\", \"label\": \"negative\"}}\n"
        ));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// Appends `lines` (each ending in a newline) to the file at `path`.
pub fn append_lines(path: &Path, lines: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

// ------------------------------------------------------------------ broker

/// The test broker's address (`TRIAGE_BROKER`, default 127.0.0.1:9092).
pub fn broker() -> String {
    std::env::var("TRIAGE_BROKER").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Fails (never skips) when the broker is not reachable.
pub fn require_broker(addr: &str) {
    let ok = addr
        .parse::<std::net::SocketAddr>()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
        .is_some();
    assert!(
        ok,
        "no Kafka broker at {addr}: start one with `scripts/broker.sh start` (scripts/test.sh \
         does this), or set TRIAGE_BROKER"
    );
}

/// A unique name for this test run: the process, the clock and a counter (two tests of one
/// process may read the same clock value: the clock alone once gave two of them one topic).
pub fn unique(prefix: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{prefix}-{}-{}-{seq}",
        std::process::id(),
        n % 1_000_000_000
    )
}

/// Client settings that suit tansu: fast group joins.
pub fn client(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr);
    c
}

/// Creates topics with `partitions` partitions each.
pub fn create_topics(addr: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client(addr).create().expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let res = block_on(admin.create_topics(&new, &AdminOptions::new())).expect("create topics");
    for r in res {
        match r {
            // The names are unique to the test ([`unique`]): one that exists is this call's
            // own, created by a request the admin client retried after a slow answer.
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err(e) => panic!("topic not created: {e:?}"),
        }
    }
}

/// A minimal executor for the admin future (rdkafka's admin futures are runtime-agnostic).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = Box::pin(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Produces `payloads` (key = index) to `topic` and waits until all are acknowledged. Returns
/// where each payload landed: `(partition, offset)` by payload index.
pub fn produce(
    addr: &str,
    topic: &str,
    payloads: &[Vec<u8>],
    headers: &[(&str, &str)],
) -> Vec<(i32, i64)> {
    produce_with(addr, topic, payloads, headers, 0)
}

fn produce_keyed(
    addr: &str,
    topic: &str,
    payloads: &[Vec<u8>],
    key_base: usize,
) -> Vec<(i32, i64)> {
    produce_with(addr, topic, payloads, &[], key_base)
}

fn produce_with(
    addr: &str,
    topic: &str,
    payloads: &[Vec<u8>],
    headers: &[(&str, &str)],
    key_base: usize,
) -> Vec<(i32, i64)> {
    let placing = Placing::new(addr, payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        placing.send(topic, i, key_base + i, p, Some(h));
    }
    placing.finish()
}

/// A producer that records where each of `n` messages landed, by index.
struct Placing {
    producer: ThreadedProducer<PlacedContext>,
    placed: std::sync::Arc<std::sync::Mutex<Vec<(i32, i64)>>>,
}

struct PlacedContext(std::sync::Arc<std::sync::Mutex<Vec<(i32, i64)>>>);

impl rdkafka::ClientContext for PlacedContext {}

impl rdkafka::producer::ProducerContext for PlacedContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, i: usize) {
        match r {
            Ok(m) => self.0.lock().unwrap()[i] = (m.partition(), m.offset()),
            Err((e, _)) => panic!("test producer delivery failed: {e}"),
        }
    }
}

impl Placing {
    fn new(addr: &str, n: usize) -> Placing {
        let placed = std::sync::Arc::new(std::sync::Mutex::new(vec![(-1, -1); n]));
        let producer = client(addr)
            .set("linger.ms", "5")
            .set("acks", "all")
            .create_with_context(PlacedContext(std::sync::Arc::clone(&placed)))
            .expect("producer");
        Placing { producer, placed }
    }

    /// Queues message `i` (key `key`), waiting while the producer's queue is full.
    fn send(
        &self,
        topic: &str,
        i: usize,
        key: usize,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let key = key.to_string();
        let mut rec = BaseRecord::with_opaque_to(topic, i)
            .payload(payload)
            .key(key.as_str());
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits until every message is acknowledged; where each landed.
    fn finish(self) -> Vec<(i32, i64)> {
        self.producer.flush(Duration::from_secs(60)).expect("flush");
        drop(self.producer);
        let placed = self.placed.lock().unwrap().clone();
        assert!(
            placed.iter().all(|&(p, _)| p >= 0),
            "some test messages were not acknowledged"
        );
        placed
    }
}

/// Produces `payloads` from a background thread at about `rate` messages per second; the
/// handle yields where each landed.
pub fn produce_in_background(
    addr: &str,
    topic: &str,
    payloads: Vec<Vec<u8>>,
    rate: usize,
) -> std::thread::JoinHandle<Vec<(i32, i64)>> {
    let (addr, topic) = (addr.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut placed = Vec::with_capacity(payloads.len());
        let batch = (rate / 20).max(1);
        for (i, chunk) in payloads.chunks(batch).enumerate() {
            // Pace: chunk i may start at i / 20 seconds.
            let due = Duration::from_secs_f64(i as f64 / 20.0);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let base = i * batch;
            let got = produce_keyed(&addr, &topic, chunk, base);
            placed.extend(got);
        }
        placed
    })
}

/// As [`produce_in_background`], through one producer for the whole run, so that the rate holds
/// on a busy machine (a producer per chunk, as there, reaches a fraction of it): `rate`
/// messages per second in 20 chunks a second, each handed over as one burst.
pub fn produce_steadily(
    addr: &str,
    topic: &str,
    payloads: Vec<Vec<u8>>,
    rate: usize,
) -> std::thread::JoinHandle<Vec<(i32, i64)>> {
    let (addr, topic) = (addr.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let placing = Placing::new(&addr, payloads.len());
        let start = Instant::now();
        let batch = (rate / 20).max(1);
        for (c, chunk) in payloads.chunks(batch).enumerate() {
            let due = Duration::from_secs_f64(c as f64 / 20.0);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            for (j, p) in chunk.iter().enumerate() {
                let i = c * batch + j;
                placing.send(&topic, i, i, p, None);
            }
        }
        placing.finish()
    })
}

/// Reads a topic continuously in the background (from the beginning, with its own group).
pub struct Reader {
    records: std::sync::Arc<std::sync::Mutex<Vec<Record>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    /// Starts reading `topic`.
    pub fn start(addr: &str, topic: &str) -> Reader {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer = client(addr)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let (r, st) = (Arc::clone(&records), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    r.lock().unwrap().push(to_record(&m));
                }
            }
        });
        Reader {
            records,
            stop,
            handle: Some(handle),
        }
    }

    /// Records read so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// A copy of the records read so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until `done(records)` or the timeout; returns whether it was done.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if done(&self.records.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        done(&self.records.lock().unwrap())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn to_record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

/// A broker of the test's own (for tests that stop it), started with `scripts/broker.sh`.
pub struct OwnBroker {
    /// Its address.
    pub addr: String,
}

impl OwnBroker {
    /// Starts tansu on 127.0.0.1:`port`.
    pub fn start(port: u16) -> OwnBroker {
        let addr = format!("127.0.0.1:{port}");
        let ok = Command::new(workspace().join("scripts/broker.sh"))
            .arg("start")
            .env("TRIAGE_BROKER", &addr)
            .status()
            .expect("scripts/broker.sh")
            .success();
        assert!(ok, "could not start a broker at {addr}");
        OwnBroker { addr }
    }

    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        let out = Command::new(workspace().join("scripts/broker.sh"))
            .arg("status")
            .env("TRIAGE_BROKER", &self.addr)
            .output()
            .expect("scripts/broker.sh status");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("pid ")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no broker pid in {text:?}"))
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("scripts/broker.sh"))
            .arg("stop")
            .env("TRIAGE_BROKER", &self.addr)
            .status();
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Record {
    /// A header's value as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// Reads `topic` from the beginning with a fresh group until `done(&records)` or the timeout.
pub fn read_until(
    addr: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = client(addr)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(to_record(&m)),
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {
                if done(&out) {
                    break;
                }
            }
        }
    }
    out
}

/// The group's committed offsets for `topic`'s partitions `0..partitions`.
pub fn committed(addr: &str, group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client(addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ triage as a service

/// A running `triage run` process.
pub struct Service {
    /// The child process.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Settings for one `triage run`.
pub struct ServiceConfig<'a> {
    /// Broker.
    pub broker: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// Input topic.
    pub input: &'a str,
    /// Output topic.
    pub output: &'a str,
    /// Dead-letter topic.
    pub dlq: &'a str,
    /// Extra TOML appended to the config file.
    pub extra: &'a str,
}

/// One test's topics (input, output, dead letters) and consumer group, unique to the run.
pub struct Topics {
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Dead-letter topic.
    pub dlq: String,
    /// Consumer group.
    pub group: String,
}

impl Topics {
    /// Names them after `name` and creates the three topics with `partitions` partitions each.
    pub fn create(addr: &str, name: &str, partitions: i32) -> Topics {
        let t = Topics {
            input: unique(&format!("{name}-in")),
            output: unique(&format!("{name}-out")),
            dlq: unique(&format!("{name}-dlq")),
            group: unique(&format!("{name}-group")),
        };
        create_topics(addr, &[&t.input, &t.output, &t.dlq], partitions);
        t
    }

    /// A `triage run` over these topics on `broker`, with `extra` TOML appended to its config.
    pub fn config<'a>(&'a self, broker: &'a str, extra: &'a str) -> ServiceConfig<'a> {
        ServiceConfig {
            broker,
            group: &self.group,
            input: &self.input,
            output: &self.output,
            dlq: &self.dlq,
            extra,
        }
    }
}

impl Service {
    /// Starts `triage run` with a config file for these topics; `args` are extra CLI flags.
    /// The group timeouts are the tests' short ones (`session.timeout.ms` 3000).
    pub fn start(c: &ServiceConfig<'_>, args: &[&str]) -> Service {
        Self::start_with(c, args, true, &[])
    }

    /// As [`Service::start`], with triage's default group timeouts (no `session.timeout.ms`).
    pub fn start_default_timeouts(c: &ServiceConfig<'_>, args: &[&str]) -> Service {
        Self::start_with(c, args, false, &[])
    }

    /// As [`Service::start`], with these environment variables (e.g. `TRIAGE__KAFKA__…`
    /// overrides of the `[kafka]` section, which `extra` cannot reach).
    pub fn start_env(c: &ServiceConfig<'_>, args: &[&str], env: &[(&str, &str)]) -> Service {
        Self::start_with(c, args, true, env)
    }

    fn start_with(
        c: &ServiceConfig<'_>,
        args: &[&str],
        test_timeouts: bool,
        env: &[(&str, &str)],
    ) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("triage.toml");
        let log = dir.path().join("triage.log");
        let mut f = std::fs::File::create(&cfg).expect("config");
        let timeouts = if test_timeouts {
            "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n\"heartbeat.interval.ms\" = \"1000\"\n"
        } else {
            ""
        };
        write!(
            f,
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\ninput_topics = [\"{}\"]\n\
             output_topic = \"{}\"\ndead_letter_topic = \"{}\"\ncommit_interval_ms = 500\n\
             shutdown_timeout_ms = 20000\n{timeouts}\
             [metrics]\nenabled = false\n{}\n",
            c.broker, c.group, c.input, c.output, c.dlq, c.extra
        )
        .expect("write config");
        let child = Command::new(triage_bin())
            .current_dir(workspace())
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("RUST_LOG", "info,librdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn triage run");
        Service {
            child,
            log,
            _dir: dir,
        }
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    /// SIGTERM, then a clean exit (status 0) within 60 s, or a panic with the log.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        assert_eq!(
            self.wait(Duration::from_secs(60)),
            Some(0),
            "{}",
            self.log_text()
        );
    }

    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Waits for exit, up to `timeout`; returns the exit code (None if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "triage did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("triage exited early ({status}); log:\n{}", self.log_text());
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON summary triage prints on a clean exit.
    pub fn summary(&self) -> serde_json::Value {
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.starts_with('{') && l.contains("\"consumed\""))
            .unwrap_or_else(|| panic!("no summary in the log:\n{log}"));
        serde_json::from_str(line).expect("summary JSON")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to a process with `kill(1)`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A synthetic message log: `n` JSON messages with ids `m-0..`, texts cycling through real
/// chat-like sentences.
pub fn messages(n: usize) -> Vec<Vec<u8>> {
    const TEXTS: &[&str] = &[
        "thank you so much, this fixed it!",
        "this is the worst service I have ever had",
        "where can I download my invoice?",
        "wait, so the discount is only for new customers?",
        "love the new update 😍",
        "my order arrived broken and nobody answers",
        "can I change my delivery address?",
        "not sure I understand how this works",
    ];
    (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("m-{i}"), "text": TEXTS[i % TEXTS.len()], "seq": i})
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// The sum of a decision record's `probabilities` (a label → probability object).
/// How far a decision's published probabilities may sum from 1: each is rounded to 4 decimals
/// (`triage_service::record::PROBABILITY_DECIMALS`), so by at most 5e-5 per label.
pub fn probability_sum_tolerance(decision: &serde_json::Value) -> f64 {
    let labels = decision["probabilities"].as_object().map_or(0, |p| p.len());
    5e-5 * labels as f64 + 1e-6
}

pub fn probability_sum(decision: &serde_json::Value) -> f64 {
    decision["probabilities"]
        .as_object()
        .expect("decision has a probabilities object")
        .values()
        .map(|v| v.as_f64().expect("a probability is a number"))
        .sum()
}
