//! A topic's log as it is stored, transaction markers included, read with the Kafka Fetch API
//! (version 4) over a plain TCP connection, and the `read_committed` view computed from it.
//!
//! Why: a `read_committed` consumer relies on the broker's list of aborted transactions in
//! every fetch response to drop aborted records. tansu 0.6.0 writes the COMMIT and ABORT
//! control records and keeps the last stable offset, but always sends that list empty, so
//! librdkafka's `read_committed` consumer shows aborted records too (docs/kafka.md,
//! "Exactly-once"). This reader applies the markers itself, as a broker's aborted-transaction
//! index would: a transactional record counts once its producer's next marker in the partition
//! is a COMMIT, is dropped when it is an ABORT, and is still open without one.
//!
//! It reads one broker (the test broker is a single tansu), uncompressed record batches
//! (triage's producer does not compress) and panics on anything else.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A data record of the log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The producer id of its batch.
    pub producer_id: i64,
    /// Whether its batch was written in a transaction.
    pub transactional: bool,
}

impl LogRecord {
    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).expect("JSON value")
    }

    /// A header's value as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// The log's records sorted by what the markers made of them.
#[derive(Debug, Default, Clone)]
pub struct TxnView {
    /// Records a `read_committed` reader must see: non-transactional ones and those of
    /// committed transactions, by partition and offset.
    pub committed: Vec<LogRecord>,
    /// Records of aborted transactions.
    pub aborted: Vec<LogRecord>,
    /// Records of transactions with no marker yet.
    pub open: Vec<LogRecord>,
    /// COMMIT markers (one per partition a transaction wrote to).
    pub commit_markers: usize,
    /// ABORT markers (one per partition a transaction wrote to).
    pub abort_markers: usize,
}

struct Batch {
    last: i64,
    producer_id: i64,
    transactional: bool,
    /// `Some(true)` COMMIT, `Some(false)` ABORT, `None` data.
    marker: Option<bool>,
    records: Vec<LogRecord>,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        s
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn varlong(&mut self) -> i64 {
        let (mut shift, mut raw) = (0u32, 0u64);
        loop {
            let x = self.take(1)[0];
            raw |= u64::from(x & 0x7f) << shift;
            shift += 7;
            if x & 0x80 == 0 {
                break;
            }
        }
        ((raw >> 1) as i64) ^ -((raw & 1) as i64)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.varlong();
        (n >= 0).then(|| self.take(n as usize).to_vec())
    }
    fn string(&mut self) -> String {
        let n = self.i16();
        String::from_utf8_lossy(self.take(n.max(0) as usize)).into_owned()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// One Fetch v4 (isolation READ_UNCOMMITTED: everything, markers included) of one partition
/// from `offset`: its record set.
fn fetch(conn: &mut TcpStream, topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(1i16.to_be_bytes()); // Fetch
    body.extend(4i16.to_be_bytes()); // version 4
    body.extend(7i32.to_be_bytes()); // correlation id
    put_str(&mut body, "triage-tests-txnlog");
    body.extend((-1i32).to_be_bytes()); // replica id
    body.extend(50i32.to_be_bytes()); // max wait ms
    body.extend(1i32.to_be_bytes()); // min bytes
    body.extend((64i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // READ_UNCOMMITTED
    body.extend(1i32.to_be_bytes());
    put_str(&mut body, topic);
    body.extend(1i32.to_be_bytes());
    body.extend(partition.to_be_bytes());
    body.extend(offset.to_be_bytes());
    body.extend((64i32 << 20).to_be_bytes()); // partition max bytes
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    conn.write_all(&frame).expect("send a fetch request");
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).expect("read a fetch response");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut resp).expect("read a fetch response");
    let mut c = Cursor { b: &resp, i: 0 };
    assert_eq!(c.i32(), 7, "correlation id");
    c.i32(); // throttle time
    assert_eq!(c.i32(), 1, "one topic in the response");
    c.string();
    assert_eq!(c.i32(), 1, "one partition in the response");
    assert_eq!(c.i32(), partition);
    let err = c.i16();
    assert_eq!(err, 0, "fetch error code for {topic}/{partition}");
    c.i64(); // high watermark
    c.i64(); // last stable offset
    let aborted = c.i32();
    for _ in 0..aborted.max(0) {
        c.i64();
        c.i64();
    }
    let n = c.i32();
    if n > 0 {
        c.take(n as usize).to_vec()
    } else {
        Vec::new()
    }
}

/// The complete batches in a record set (a fetch may end with a partial one).
fn batches(partition: i32, set: &[u8]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut c = Cursor { b: set, i: 0 };
    while c.i + 12 <= set.len() {
        let start = c.i;
        let base = c.i64();
        let len = c.i32() as usize;
        if start + 12 + len > set.len() {
            break;
        }
        c.i32(); // partition leader epoch
        let magic = c.i8();
        assert_eq!(magic, 2, "record batch version 2");
        c.i32(); // crc
        let attributes = c.i16();
        assert_eq!(
            attributes & 7,
            0,
            "compressed batches are not supported here"
        );
        let last_delta = c.i32();
        c.i64(); // first timestamp
        c.i64(); // max timestamp
        let producer_id = c.i64();
        c.i16(); // producer epoch
        c.i32(); // base sequence
        let count = c.i32();
        let transactional = attributes & 0x10 != 0;
        let control = attributes & 0x20 != 0;
        let mut records = Vec::new();
        for _ in 0..count {
            let rec_len = c.varlong() as usize;
            let rec_end = c.i + rec_len;
            c.i8(); // attributes
            c.varlong(); // timestamp delta
            let delta = c.varlong();
            let key = c.bytes();
            let value = c.bytes();
            let nh = c.varlong();
            let mut headers = Vec::new();
            for _ in 0..nh.max(0) {
                let k = c.bytes().unwrap_or_default();
                let v = c.bytes().unwrap_or_default();
                headers.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
            c.i = rec_end;
            records.push(LogRecord {
                partition,
                offset: base + delta,
                key,
                value,
                headers,
                producer_id,
                transactional,
            });
        }
        c.i = start + 12 + len;
        let marker = if control {
            let key = records
                .first()
                .and_then(|r| r.key.clone())
                .expect("a control record has a key");
            // version (int16), type (int16): 0 ABORT, 1 COMMIT
            Some(i16::from_be_bytes([key[2], key[3]]) == 1)
        } else {
            None
        };
        out.push(Batch {
            last: base + i64::from(last_delta),
            producer_id,
            transactional,
            marker,
            records: if control { Vec::new() } else { records },
        });
    }
    out
}

/// Reads partitions `0..partitions` of `topic` on the broker at `addr` to their end and sorts
/// the records by the transaction markers.
pub fn read_committed_view(addr: &str, topic: &str, partitions: i32) -> TxnView {
    let mut conn = TcpStream::connect(addr).expect("connect to the broker");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut view = TxnView::default();
    for p in 0..partitions {
        let mut next = 0i64;
        let mut pending: HashMap<i64, Vec<LogRecord>> = HashMap::new();
        loop {
            let set = fetch(&mut conn, topic, p, next);
            let got = batches(p, &set);
            let before = next;
            for b in got {
                if b.last < next {
                    continue; // already seen (a broker may repeat the batch holding `next`)
                }
                next = b.last + 1;
                match b.marker {
                    Some(commit) => {
                        let held = pending.remove(&b.producer_id).unwrap_or_default();
                        if commit {
                            view.commit_markers += 1;
                            view.committed.extend(held);
                        } else {
                            view.abort_markers += 1;
                            view.aborted.extend(held);
                        }
                    }
                    None if b.transactional => {
                        pending.entry(b.producer_id).or_default().extend(b.records)
                    }
                    None => view.committed.extend(b.records),
                }
            }
            if next == before {
                break;
            }
        }
        view.open.extend(pending.into_values().flatten());
    }
    for v in [&mut view.committed, &mut view.aborted, &mut view.open] {
        v.sort_by_key(|r| (r.partition, r.offset));
    }
    view
}
