//! The published decision record, written straight into a byte buffer.
//!
//! Every decision, in replay and in Kafka, is written by [`RecordWriter::write`]: field for
//! field the JSON of [`crate::Decision`] (which reads it back), without building one. The
//! labels and the model version are escaped once, when the writer is made; the message's other
//! fields are copied through as the raw JSON they came as; numbers are written short:
//! - probabilities and confidences with at most 4 decimals ([`PROBABILITY_DECIMALS`]: the
//!   fast model's probabilities are not calibrated to 1e-4, so more digits would only be
//!   noise), trailing zeros dropped (`0.9763`, `0.25`, `1`);
//! - timings in microseconds with at most 3 decimals (to the nanosecond): `24.126`, not
//!   `24.125999999999998`.

use triage_core::config::output::MAX_TOP_K;
use triage_core::message::{Fields, write_json_str};
use triage_router::Route;

use crate::processor::Timings;

/// Decimals kept in published probabilities and confidences.
pub const PROBABILITY_DECIMALS: u32 = 4;

/// Decimals kept in published timings (microseconds).
pub const MICROSECOND_DECIMALS: u32 = 3;

/// The value a published probability reads back as: `p` rounded to
/// [`PROBABILITY_DECIMALS`] decimals.
pub fn published_probability(p: f32) -> f32 {
    let scale = 10f64.powi(PROBABILITY_DECIMALS as i32);
    ((f64::from(p) * scale).round() / scale) as f32
}

/// A message's other fields, as the record copies them.
#[derive(Debug, Clone, Copy)]
pub enum Members<'a> {
    /// Straight from the decoded payload.
    Raw(&'a Fields<'a>),
    /// Already written as object members (`"k":v,...`), for a message that waited for the SLM.
    Written(&'a [u8]),
}

impl Members<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Members::Raw(f) => f.is_empty(),
            Members::Written(w) => w.is_empty(),
        }
    }
}

/// What a record says, by label index; [`RecordWriter`] knows the label names.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The message id.
    pub id: &'a str,
    /// The published label.
    pub label: usize,
    /// Its confidence.
    pub confidence: f32,
    /// The published probabilities, in the model's label order.
    pub probabilities: &'a [f32],
    /// The route.
    pub route: Route,
    /// Why.
    pub reason: &'a str,
    /// The fast classifier's label and confidence.
    pub fast: (usize, f32),
    /// The second opinion's label and confidence.
    pub second_opinion: Option<(usize, f32)>,
    /// The drafted reply.
    pub reply: Option<&'a str>,
    /// Time spent.
    pub timings: Timings,
    /// The input's other fields.
    pub fields: Members<'a>,
}

/// Writes decision records for one model's labels.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    /// Each label as a JSON string (quoted, escaped), by label index.
    quoted: Vec<Vec<u8>>,
    /// Label indices in the order the `probabilities` object lists them (sorted by name).
    sorted: Vec<usize>,
    /// Each label's place in name order, by label index.
    rank: Vec<u32>,
    /// How many labels `probabilities` lists, the most probable first; 0 for every label in
    /// name order (`[output] top_k`).
    top_k: usize,
    /// `,"model_version":"…","timings_us":{"classify":`: constant per model.
    model_version: Vec<u8>,
}

/// Each label as a JSON string (escaped once), and the label indices in name order: the order
/// in which `probabilities` is written.
pub(crate) fn quoted_labels(labels: &[String]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let quoted = labels
        .iter()
        .map(|l| {
            let mut q = Vec::new();
            write_json_str(&mut q, l);
            q
        })
        .collect();
    let mut sorted: Vec<usize> = (0..labels.len()).collect();
    sorted.sort_by(|&a, &b| labels[a].cmp(&labels[b]));
    (quoted, sorted)
}

impl RecordWriter {
    /// A writer for a model's labels and version whose records list the `top_k` most probable
    /// labels' probabilities (all of them if there are fewer), most probable first and ties in
    /// name order (`[output] top_k`); 0 lists every label in name order. `top_k` is at most
    /// [`MAX_TOP_K`] (`OutputConfig::validate`).
    pub fn new(labels: &[String], model_version: &str, top_k: usize) -> Self {
        assert!(
            top_k <= MAX_TOP_K,
            "top_k is validated: at most {MAX_TOP_K}"
        );
        let top_k = top_k.min(labels.len());
        let (quoted, sorted) = quoted_labels(labels);
        let mut model = b",\"model_version\":".to_vec();
        write_json_str(&mut model, model_version);
        model.extend_from_slice(b",\"timings_us\":{\"classify\":");
        let mut rank = vec![0; labels.len()];
        for (n, &i) in sorted.iter().enumerate() {
            rank[i] = n as u32;
        }
        Self {
            quoted,
            sorted,
            rank,
            top_k,
            model_version: model,
        }
    }

    /// Appends the record (one JSON object, no newline) to `out`.
    pub fn write(&self, v: &View<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        write_json_str(out, v.id);
        out.extend_from_slice(b",\"label\":");
        out.extend_from_slice(&self.quoted[v.label]);
        out.extend_from_slice(b",\"confidence\":");
        write_probability(out, v.confidence);
        out.extend_from_slice(b",\"probabilities\":{");
        if self.top_k == 0 {
            for (n, &i) in self.sorted.iter().enumerate() {
                self.probability(out, n, i, v.probabilities[i]);
            }
        } else {
            let mut top = [(0.0f32, 0usize); MAX_TOP_K];
            let top = self.top(v.probabilities, &mut top);
            for (n, &(p, i)) in top.iter().enumerate() {
                self.probability(out, n, i, p);
            }
        }
        out.extend_from_slice(b"},\"route\":\"");
        out.extend_from_slice(v.route.as_str().as_bytes());
        out.extend_from_slice(b"\",\"reason\":");
        write_json_str(out, v.reason);
        out.extend_from_slice(b",\"fast\":");
        self.label(out, v.fast);
        if let Some(so) = v.second_opinion {
            out.extend_from_slice(b",\"second_opinion\":");
            self.label(out, so);
        }
        if let Some(reply) = v.reply {
            out.extend_from_slice(b",\"reply\":");
            write_json_str(out, reply);
        }
        out.extend_from_slice(&self.model_version);
        write_decimal(out, v.timings.classify, MICROSECOND_DECIMALS);
        if let Some(slm) = v.timings.slm {
            out.extend_from_slice(b",\"slm\":");
            write_decimal(out, slm, MICROSECOND_DECIMALS);
        }
        out.push(b'}');
        if !v.fields.is_empty() {
            out.extend_from_slice(b",\"fields\":{");
            match v.fields {
                Members::Raw(f) => f.write_members(out),
                Members::Written(w) => out.extend_from_slice(w),
            }
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// The `n`-th member of `probabilities`: label `i` with probability `p`.
    #[inline]
    fn probability(&self, out: &mut Vec<u8>, n: usize, i: usize, p: f32) {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&self.quoted[i]);
        out.push(b':');
        write_probability(out, p);
    }

    /// The `top_k` most probable labels as (probability, label index), most probable first,
    /// ties in name order: one pass over the probabilities in label order, in which the labels
    /// below the floor are passed over sixteen at a time, and the others are inserted in place.
    /// The floor starts at [`top_floor`] (so that, at 151 labels, a handful are inserted instead
    /// of the few dozen that beat the running fifth in label order) and rises to the last kept
    /// label once `top_k` are kept.
    fn top<'t>(&self, probs: &[f32], buf: &'t mut [(f32, usize); MAX_TOP_K]) -> &'t [(f32, usize)] {
        let k = self.top_k;
        let mut len = 0;
        let mut floor = top_floor(probs, k);
        let mut consider = |i: usize, floor: &mut f32| {
            let p = probs[i];
            if p < *floor {
                return;
            }
            let r = self.rank[i];
            let beats = |&(q, j): &(f32, usize)| p > q || (p == q && r < self.rank[j]);
            let mut at = len;
            if len == k {
                if !beats(&buf[k - 1]) {
                    return;
                }
                at = k - 1;
            } else {
                len += 1;
            }
            while at > 0 && beats(&buf[at - 1]) {
                buf[at] = buf[at - 1];
                at -= 1;
            }
            buf[at] = (p, i);
            if len == k {
                *floor = buf[k - 1].0;
            }
        };
        // Sixteen labels a step: a mask of those not below the floor (compared as vectors),
        // then only those, in label order. The floor may rise within a step: `consider` checks
        // again.
        let (groups, rest) = probs.as_chunks::<FLOOR_GROUPS>();
        for (n, g) in groups.iter().enumerate() {
            let mut mask = 0u32;
            for (j, &p) in g.iter().enumerate() {
                // Not `p >= floor`: a NaN passes, as `consider` lets it.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                let keep = !(p < floor);
                mask |= u32::from(keep) << j;
            }
            while mask != 0 {
                consider(
                    n * FLOOR_GROUPS + mask.trailing_zeros() as usize,
                    &mut floor,
                );
                mask &= mask - 1;
            }
        }
        for i in probs.len() - rest.len()..probs.len() {
            consider(i, &mut floor);
        }
        &buf[..len]
    }

    fn label(&self, out: &mut Vec<u8>, (label, confidence): (usize, f32)) {
        out.extend_from_slice(b"{\"label\":");
        out.extend_from_slice(&self.quoted[label]);
        out.extend_from_slice(b",\"confidence\":");
        write_probability(out, confidence);
        out.push(b'}');
    }
}

/// Interleaved groups of [`top_floor`]: label `i` is in group `i % FLOOR_GROUPS`.
const FLOOR_GROUPS: usize = 16;

/// A probability that the `k`-th largest of `probs` is at least: the `k`-th largest of the
/// maxima of [`FLOOR_GROUPS`] groups of labels, since each of the `k` groups with the largest
/// maxima holds a label at or above it. The maxima of interleaved groups (label `i` in group
/// `i % 16`) are lane-wise maxima of whole vectors, computed without a branch. Minus infinity
/// (no floor) when `k` is over the group count or there are too few labels for it to pay.
fn top_floor(probs: &[f32], k: usize) -> f32 {
    if k == 0 || k > FLOOR_GROUPS || probs.len() < 2 * FLOOR_GROUPS {
        return f32::NEG_INFINITY;
    }
    let mut max = [f32::NEG_INFINITY; FLOOR_GROUPS];
    let (groups, rest) = probs.as_chunks::<FLOOR_GROUPS>();
    for g in groups {
        for (m, &p) in max.iter_mut().zip(g) {
            *m = if p > *m { p } else { *m };
        }
    }
    for (m, &p) in max.iter_mut().zip(rest) {
        *m = if p > *m { p } else { *m };
    }
    // The k-th largest of the sixteen maxima, by insertion into the k largest so far.
    let mut best = [f32::NEG_INFINITY; FLOOR_GROUPS];
    for &m in &max {
        if m > best[k - 1] {
            let mut at = k - 1;
            while at > 0 && m > best[at - 1] {
                best[at] = best[at - 1];
                at -= 1;
            }
            best[at] = m;
        }
    }
    best[k - 1]
}

fn write_probability(out: &mut Vec<u8>, p: f32) {
    let x = f64::from(p);
    if !(0.0..=1.0).contains(&x) {
        return write_decimal(out, x, PROBABILITY_DECIMALS);
    }
    // Every record has a few of these: `0`, `1` or `0.dddd` with trailing zeros dropped, the
    // same digits as `write_decimal`, each length copied as a constant (no `memcpy` call).
    const { assert!(PROBABILITY_DECIMALS == 4) };
    // Rounded half away from zero, as `f64::round` (a call into libm) does: the fractional
    // part of a non-negative f64 below 2^52 is exact.
    let y = x * 1e4;
    let n = y as usize + usize::from(y - (y as usize) as f64 >= 0.5);
    if n == 0 || n == 10_000 {
        out.push(if n == 0 { b'0' } else { b'1' });
        return;
    }
    let (hi, lo) = (n / 100 * 2, n % 100 * 2);
    let d = [
        b'0',
        b'.',
        PAIRS[hi],
        PAIRS[hi + 1],
        PAIRS[lo],
        PAIRS[lo + 1],
    ];
    match (
        n.is_multiple_of(1000),
        n.is_multiple_of(100),
        n.is_multiple_of(10),
    ) {
        (true, _, _) => out.extend_from_slice(&d[..3]),
        (_, true, _) => out.extend_from_slice(&d[..4]),
        (_, _, true) => out.extend_from_slice(&d[..5]),
        _ => out.extend_from_slice(&d),
    }
}

/// Writes `x` rounded to at most `decimals` decimals, trailing zeros dropped (`0.25`, `3`).
/// Values out of the plain range (not finite, or 1e15 and over) are written as serde_json
/// writes them.
pub fn write_decimal(out: &mut Vec<u8>, x: f64, decimals: u32) {
    // The published decimals as constants, so that the divisions below become multiplications
    // (this runs for every number of every record).
    match decimals {
        PROBABILITY_DECIMALS => decimal(out, x, PROBABILITY_DECIMALS),
        MICROSECOND_DECIMALS => decimal(out, x, MICROSECOND_DECIMALS),
        _ => decimal(out, x, decimals),
    }
}

#[inline(always)]
fn decimal(out: &mut Vec<u8>, x: f64, decimals: u32) {
    let scale = 10u64.pow(decimals);
    if !(x.is_finite() && x.abs() < 1e15) {
        serde_json::to_writer(&mut *out, &x).expect("writing to a Vec cannot fail");
        return;
    }
    let n = (x.abs() * scale as f64).round() as u64;
    // Written right to left into one buffer, two digits at a time, then copied once.
    let mut buf = [0u8; 40];
    let (int, frac) = (n / scale, n % scale);
    let mut i = buf.len();
    let mut end = buf.len();
    if frac != 0 {
        let (mut f, mut d) = (frac, decimals);
        while d >= 2 {
            i -= 2;
            let k = (f % 100) as usize * 2;
            buf[i..i + 2].copy_from_slice(&PAIRS[k..k + 2]);
            f /= 100;
            d -= 2;
        }
        if d == 1 {
            i -= 1;
            buf[i] = b'0' + f as u8;
        }
        while buf[end - 1] == b'0' {
            end -= 1;
        }
        i -= 1;
        buf[i] = b'.';
    }
    let mut int = int;
    while int >= 100 {
        i -= 2;
        let k = (int % 100) as usize * 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[k..k + 2]);
        int /= 100;
    }
    if int >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[int as usize * 2..int as usize * 2 + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + int as u8;
    }
    if x < 0.0 && n > 0 {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..end]);
}

/// "00", "01", ..., "99".
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[cfg(test)]
mod tests {
    use super::*;

    /// The `probabilities` object a writer with `top_k` writes for `probs`, as (label, value)
    /// in the order written.
    fn listed(labels: &[&str], top_k: usize, probs: &[f32]) -> Vec<(String, f64)> {
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let w = RecordWriter::new(&labels, "v", top_k);
        let view = View {
            id: "m",
            label: 0,
            confidence: probs[0],
            probabilities: probs,
            route: Route::Fast,
            reason: "r",
            fast: (0, probs[0]),
            second_opinion: None,
            reply: None,
            timings: Timings {
                classify: 1.0,
                slm: None,
            },
            fields: Members::Written(b""),
        };
        let mut out = Vec::new();
        w.write(&view, &mut out);
        let json = std::str::from_utf8(&out).unwrap();
        let obj = &json[json.find("\"probabilities\":").unwrap() + 16..];
        let obj = &obj[..=obj.find('}').unwrap()];
        // serde_json keeps a map's order only with its preserve_order feature: read the
        // members as written instead.
        obj.trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|m| {
                let (k, v) = m.split_once(':').unwrap();
                (serde_json::from_str(k).unwrap(), v.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn top_k_lists_the_most_probable_first_ties_in_name_order() {
        let labels = ["c", "a", "d", "b", "e"];
        let probs = [0.1, 0.3, 0.05, 0.3, 0.25];
        let names = |v: Vec<(String, f64)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(names(listed(&labels, 0, &probs)), ["a", "b", "c", "d", "e"]);
        assert_eq!(names(listed(&labels, 5, &probs)), ["a", "b", "e", "c", "d"]);
        assert_eq!(names(listed(&labels, 9, &probs)), ["a", "b", "e", "c", "d"]);
        assert_eq!(names(listed(&labels, 1, &probs)), ["a"]);
        assert_eq!(names(listed(&labels, 3, &probs)), ["a", "b", "e"]);
        assert_eq!(
            listed(&labels, 2, &probs),
            [("a".to_string(), 0.3), ("b".to_string(), 0.3)]
        );
        // Against sorting every label, over many draws: label counts on both sides of the
        // floor's 32 and not whole groups of 16, values with many ties, spread evenly, or
        // skewed as a softmax's are (one label far ahead, most near zero).
        let mut x = 7u64;
        let mut draw = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 40
        };
        for n in [20, 31, 32, 77, 151] {
            let labels: Vec<String> = (0..n).map(|i| format!("l{:03}", (i * 37) % n)).collect();
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            for round in 0..300 {
                let probs: Vec<f32> = (0..n)
                    .map(|_| match round % 3 {
                        0 => (draw() % 20) as f32 / 1e5,
                        1 => (draw() % 100_000) as f32 / 1e5,
                        _ => (-((draw() % 1000) as f32) / 50.0).exp(),
                    })
                    .collect();
                let mut want: Vec<usize> = (0..n).collect();
                want.sort_by(|&a, &b| {
                    probs[b]
                        .total_cmp(&probs[a])
                        .then(labels[a].cmp(&labels[b]))
                });
                for k in [1, 2, 5, 16, 17, MAX_TOP_K] {
                    let k = k.min(n);
                    let got = names(listed(&refs, k, &probs));
                    let want: Vec<String> = want[..k].iter().map(|&i| labels[i].clone()).collect();
                    assert_eq!(got, want, "{n} labels, top {k}, round {round}");
                }
            }
        }
    }

    #[test]
    fn the_floor_is_at_most_the_kth_largest() {
        let mut x = 11u64;
        for n in [32, 33, 77, 151, 160] {
            for round in 0..200 {
                let probs: Vec<f32> = (0..n)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 40) % if round % 2 == 0 { 7 } else { 1_000_000 }) as f32
                    })
                    .collect();
                let mut sorted = probs.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                for k in 1..=FLOOR_GROUPS {
                    let floor = top_floor(&probs, k);
                    assert!(floor <= sorted[k - 1], "{n} labels, k {k}: {floor}");
                    assert!(floor > f32::NEG_INFINITY, "{n} labels, k {k}: no floor");
                }
                assert_eq!(top_floor(&probs, FLOOR_GROUPS + 1), f32::NEG_INFINITY);
            }
        }
        assert_eq!(top_floor(&[0.5; 31], 1), f32::NEG_INFINITY);
    }

    fn dec(x: f64, d: u32) -> String {
        let mut out = Vec::new();
        write_decimal(&mut out, x, d);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_are_short_and_read_back_rounded() {
        assert_eq!(dec(24.125999999999998, 3), "24.126");
        assert_eq!(dec(0.97634, 4), "0.9763");
        assert_eq!(dec(0.25, 4), "0.25");
        assert_eq!(dec(1.0, 4), "1");
        assert_eq!(dec(0.0, 4), "0");
        assert_eq!(dec(0.00004, 4), "0");
        assert_eq!(dec(0.99996, 4), "1");
        assert_eq!(dec(0.0001, 4), "0.0001");
        assert_eq!(dec(-2.5, 3), "-2.5");
        assert_eq!(dec(-0.0001, 3), "0");
        assert_eq!(dec(123456.0405, 3), "123456.041");
        assert_eq!(dec(100.0, 3), "100");
        assert_eq!(dec(10.05, 3), "10.05");
        assert_eq!(dec(9.9999, 3), "10");
        assert_eq!(dec(0.5, 1), "0.5");
        assert_eq!(dec(0.123456, 5), "0.12346");
        assert_eq!(dec(7.4, 0), "7");
        assert_eq!(dec(f64::NAN, 3), "null");
        assert_eq!(dec(1e20, 3), "1e+20");
        // Every value reads back as the decimal it was rounded to.
        for i in 0..20_000u32 {
            let x = f64::from(i) * 0.000_173_1 + 0.000_01;
            let s = dec(x, 4);
            let back: f64 = s.parse().unwrap();
            assert!((back - (x * 1e4).round() / 1e4).abs() < 1e-12, "{x} -> {s}");
            assert!(
                s.split('.')
                    .nth(1)
                    .is_none_or(|f| f.len() <= 4 && !f.ends_with('0'))
            );
            let t = x * 1234.5678;
            let s = dec(t, 3);
            let back: f64 = s.parse().unwrap();
            assert!((back - (t * 1e3).round() / 1e3).abs() < 1e-9, "{t} -> {s}");
            assert!(
                s.split('.')
                    .nth(1)
                    .is_none_or(|f| f.len() <= 3 && !f.ends_with('0'))
            );
            let p = x as f32;
            let s = dec(f64::from(p), 4);
            assert_eq!(s.parse::<f32>().unwrap(), published_probability(p), "{p}");
        }
    }

    #[test]
    fn probabilities_are_written_as_write_decimal_writes_them() {
        let prob = |p: f32| {
            let mut out = Vec::new();
            write_probability(&mut out, p);
            String::from_utf8(out).unwrap()
        };
        // Each four-decimal value, the floats on either side of it and of the half-way point
        // to the next (where rounding turns), and the values out of [0, 1].
        let mut ps = vec![
            -0.0,
            -1e-5,
            1.00004,
            1.5,
            f32::NAN,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ];
        for i in 0..=10_000u32 {
            for c in [i as f32 / 1e4, (i as f32 + 0.5) / 1e4] {
                ps.extend([c.next_down(), c, c.next_up()]);
            }
        }
        for p in ps {
            assert_eq!(prob(p), dec(f64::from(p), PROBABILITY_DECIMALS), "{p:e}");
        }
    }
}
