//! How the weights are held for scoring, and the kernels that read them.
//!
//! Scoring one feature reads its IDF and one weight per label. With few labels an f32 row is
//! one cache line ([`WeightFormat::F32`]). With many, the bytes grow with the label count, so
//! from [`INT8_FROM_LABELS`] labels each row is held as int8 with one f32 scale
//! ([`WeightFormat::Int8`]): a quarter of the bytes, and a rounding error of at most
//! `max|w| / 254` per weight; from [`INT4_FROM_LABELS`] as 4-bit weights from the row's
//! minimum ([`WeightFormat::Int4`]), an eighth of the bytes (clinc150's 20,010 rows of 151
//! labels: 1.7 MiB instead of 3.2, within a 2 MiB L2 cache). (Pruning the small weights into
//! (label, weight) pairs was measured and lost: see docs/accuracy.md.)
//!
//! The model file keeps f32 weights; the quantised table is built at load, its weights padded
//! to whole groups of 16 labels (32 for 4-bit weights), and scoring reads it two rows a pass
//! while asking for the rows a few features ahead to be fetched into cache. The kernels are compiled three times,
//! for the x86-64 baseline, for AVX2 + FMA and for AVX-512, and the widest the CPU has is
//! picked at run time ([`Kernel`]: 4, 8 or 16 lanes in the dense label loops and in the
//! softmax's exponentials). Every kernel does the same arithmetic in the same order, so they
//! give the same probabilities bit for bit (a test compares them).

use serde::{Deserialize, Serialize};

/// How the weights are held for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// `[idf, w_0 .. w_k-1]` as f32: exact.
    F32,
    /// `[idf, scale]` as f32, then `k` int8 weights (`w ≈ scale · q`).
    Int8,
    /// `[idf, scale]` as f32, then `k` 4-bit weights (`w ≈ min + scale · q`, `q` in 0..=15):
    /// the row's minimum adds the same to every label's score, so scoring leaves it out.
    Int4,
}

impl WeightFormat {
    /// Its name, as `--weights` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
        }
    }

    /// The format a model with `k` labels is scored with by default: f32 up to
    /// [`INT8_FROM_LABELS`] − 1 labels (a row is at most two cache lines), int8 from there,
    /// 4-bit from [`INT4_FROM_LABELS`].
    pub fn for_labels(k: usize) -> Self {
        if k >= INT4_FROM_LABELS {
            Self::Int4
        } else if k >= INT8_FROM_LABELS {
            Self::Int8
        } else {
            Self::F32
        }
    }
}

/// The label count from which [`WeightFormat::for_labels`] picks int8.
pub const INT8_FROM_LABELS: usize = 16;

/// The label count from which [`WeightFormat::for_labels`] picks 4-bit weights. At 151 labels
/// (clinc150) they scored 5% faster than int8 with AVX-512 and 3–4% with AVX2, at the same
/// accuracy; at 77 (banking77) as fast with AVX-512 and 3–6% slower with AVX2, whose int8
/// kernel holds up to 80 labels' sums in registers (docs/accuracy.md, "Scoring many labels").
pub const INT4_FROM_LABELS: usize = 128;

/// `x / scale` rounded to int8.
#[inline]
fn quantise(x: f32, scale: f32) -> i8 {
    (x / scale).round().clamp(-127.0, 127.0) as i8
}

/// A row's largest weight magnitude, and the int8 scale that maps it to 127.
fn row_scale(w: &[f32]) -> f32 {
    let max = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max > 0.0 { max / 127.0 } else { 0.0 }
}

/// Bytes before a quantised row's weights: its IDF and its scale, as f32.
const Q_HEAD: usize = 8;

/// The int8 rows hold their weights in whole groups of this many labels (zeros after the last
/// label), so that the label loop has no remainder: one AVX-512 vector, two AVX2 ones, four
/// SSE2 ones a group. With 151 labels a loop of 16-label groups reads 160 weights where the
/// compiled loop over exactly 151 ran its last 23 labels four or one at a time.
pub(crate) const LABEL_GROUP: usize = 16;

/// The quantised table: one row per feature, `[idf f32][scale f32][k × i8]`, the weights padded
/// with zeros to a whole number of [`LABEL_GROUP`]s, then an all-zero row for unknown buckets;
/// and its own bucket → row index. With 4-bit weights (`nibbles`) a row is `[idf f32][scale
/// f32]` and `k` weights `q` in 0..=15 (`w ≈ min + scale · q`), padded to whole pairs of groups:
/// byte `j` of each 16 holds label `j` of the pair's first group in its low four bits and label
/// `j` of the second in its high four. The row's minimum times its TF-IDF value would add the
/// same to every label's score, which the softmax cancels, so it is not kept.
///
/// The rows are ordered by IDF, the feature in most training messages first, so that the rows
/// most messages read share cache lines and pages with each other instead of with rare ones.
#[derive(Debug, Clone)]
pub(crate) struct QuantTable {
    bytes: Vec<u8>,
    stride: usize,
    /// 4-bit weights (two a byte) instead of int8.
    pub(crate) nibbles: bool,
    /// The label count padded to whole [`LABEL_GROUP`]s (pairs of them with `nibbles`): the
    /// weights a row holds.
    padded: usize,
    index: RowIndex,
}

/// Bucket → row of a [`QuantTable`] or of an [`F32Blocks`] block: two bytes a bucket while the
/// rows fit, so that the index takes half the cache it would.
#[derive(Debug, Clone)]
pub(crate) enum RowIndex {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl QuantTable {
    /// Quantises the f32 `table` (rows of `1 + k`: IDF then weights; the last row all zero),
    /// whose rows `index` gives by bucket, to int8 or to 4-bit weights (`nibbles`).
    pub(crate) fn new(table: &[f32], k: usize, index: &[u32], nibbles: bool) -> Self {
        let padded = k.next_multiple_of(if nibbles {
            2 * LABEL_GROUP
        } else {
            LABEL_GROUP
        });
        let stride = Q_HEAD + if nibbles { padded / 2 } else { padded };
        let rows = table.len() / (k + 1);
        let features = rows - 1;
        let idf = |r: usize| table[r * (k + 1)];
        let mut order: Vec<usize> = (0..features).collect();
        order.sort_by(|&a, &b| idf(a).total_cmp(&idf(b)).then(a.cmp(&b)));
        // Where each row of `table` goes; the all-zero row stays last.
        let mut place = vec![features as u32; rows];
        for (to, &from) in order.iter().enumerate() {
            place[from] = to as u32;
        }
        let index = if rows <= usize::from(u16::MAX) + 1 {
            RowIndex::U16(index.iter().map(|&r| place[r as usize] as u16).collect())
        } else {
            RowIndex::U32(index.iter().map(|&r| place[r as usize]).collect())
        };
        let mut bytes = vec![0u8; rows * stride];
        for (src, &to) in table.chunks_exact(k + 1).zip(&place) {
            let dst = &mut bytes[to as usize * stride..(to as usize + 1) * stride];
            let (idf, w) = (src[0], &src[1..]);
            dst[..4].copy_from_slice(&idf.to_le_bytes());
            if nibbles {
                let lo = w.iter().fold(f32::INFINITY, |m, &x| m.min(x));
                let hi = w.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let scale = if hi > lo { (hi - lo) / 15.0 } else { 0.0 };
                dst[4..8].copy_from_slice(&scale.to_le_bytes());
                if scale > 0.0 {
                    for (l, &x) in w.iter().enumerate() {
                        let q = ((x - lo) / scale).round().clamp(0.0, 15.0) as u8;
                        let (c, j) = (l / (2 * LABEL_GROUP), l % (2 * LABEL_GROUP));
                        let at = Q_HEAD + c * LABEL_GROUP + j % LABEL_GROUP;
                        dst[at] |= if j < LABEL_GROUP { q } else { q << 4 };
                    }
                }
                continue;
            }
            let scale = row_scale(w);
            dst[4..8].copy_from_slice(&scale.to_le_bytes());
            if scale > 0.0 {
                for (q, &x) in dst[Q_HEAD..Q_HEAD + k].iter_mut().zip(w) {
                    *q = quantise(x, scale) as u8;
                }
            }
        }
        Self {
            bytes,
            stride,
            nibbles,
            padded,
            index,
        }
    }

    /// The label count padded to whole [`LABEL_GROUP`]s: the length [`block_int8`] wants of
    /// its label accumulators (the slots after the last label stay zero).
    pub(crate) fn padded_labels(&self) -> usize {
        self.padded
    }

    /// Its bucket → row index.
    pub(crate) fn index(&self) -> &RowIndex {
        &self.index
    }

    /// The all-zero row, which the buckets the model does not know point at (the last).
    pub(crate) fn zero_row(&self) -> u32 {
        (self.bytes.len() / self.stride - 1) as u32
    }

    /// The row of `bucket`.
    #[cfg(test)]
    pub(crate) fn row_of(&self, bucket: usize) -> u32 {
        match &self.index {
            RowIndex::U16(ix) => u32::from(ix[bucket]),
            RowIndex::U32(ix) => ix[bucket],
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// The f32 tables a model is scored with: one per block (word features, then character ones),
/// each an all-zero row 0 followed by the block's `[idf, w_0 .. w_k-1]` rows in file order, and
/// a bucket → row index into its own block's table (a bucket the model does not know reads
/// row 0). Two tables where the file has one, so that a row number needs only the larger block's
/// range: two bytes a bucket while that fits 16 bits, as the default model's 51,114 word and
/// 14,864 character rows do (the 65,979 rows of one table would not), and the index takes half
/// the cache.
#[derive(Debug, Clone)]
pub(crate) struct F32Blocks {
    word: Vec<f32>,
    char: Vec<f32>,
    index: RowIndex,
}

impl F32Blocks {
    /// The all-zero row of each block, which the buckets the model does not know point at.
    pub(crate) const ZERO_ROW: u32 = 0;

    /// Splits the f32 `table` (rows of `1 + k`: the `n_word` word rows, the character rows,
    /// then the all-zero row), whose rows `index` gives by bucket.
    pub(crate) fn new(table: &[f32], k: usize, index: &[u32], n_word: usize) -> Self {
        let stride = k + 1;
        let features = table.len() / stride - 1;
        let block = |rows: std::ops::Range<usize>| {
            let mut t = vec![0.0; stride];
            t.extend_from_slice(&table[rows.start * stride..rows.end * stride]);
            t
        };
        // A row of the file → its row in its block's table; the all-zero row → 0.
        let local = |r: u32| match r as usize {
            r if r >= features => 0,
            r if r < n_word => r + 1,
            r => r - n_word + 1,
        };
        let index = if n_word.max(features - n_word) < usize::from(u16::MAX) + 1 {
            RowIndex::U16(index.iter().map(|&r| local(r) as u16).collect())
        } else {
            RowIndex::U32(index.iter().map(|&r| local(r) as u32).collect())
        };
        Self {
            word: block(0..n_word),
            char: block(n_word..features),
            index,
        }
    }

    /// Its bucket → row index (a row of the bucket's own block).
    pub(crate) fn index(&self) -> &RowIndex {
        &self.index
    }

    /// The word block's table.
    pub(crate) fn word(&self) -> &[f32] {
        &self.word
    }

    /// The character block's table.
    pub(crate) fn char(&self) -> &[f32] {
        &self.char
    }
}

/// Adds each row's TF-IDF value times its f32 weights to `part` (one slot per label); returns
/// the block's squared norm.
#[inline(always)]
pub(crate) fn block_f32(table: &[f32], rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    let stride = part.len() + 1;
    let mut norm2 = 0.0f32;
    for &(row, tf) in rows {
        let start = row as usize * stride;
        let r = &table[start..start + stride];
        let v = tf * r[0];
        norm2 += v * v;
        for (p, &wt) in part.iter_mut().zip(&r[1..]) {
            *p += v * wt;
        }
    }
    norm2
}

/// [`block_f32`] over the int8 table, two rows a pass (one load and store of `part` for two
/// rows' weights), [`LABEL_GROUP`] labels a step, with the rows [`PREFETCH_AHEAD`] ahead fetched
/// into cache meanwhile: from a few dozen labels the table outgrows the caches, and a row read
/// on demand waited for memory. `part` has [`QuantTable::padded_labels`] slots.
#[inline(always)]
pub(crate) fn block_int8<L: LabelLoop>(
    t: &QuantTable,
    rows: &[(u32, f32)],
    part: &mut [f32],
) -> f32 {
    assert_eq!(part.len(), t.padded, "one slot per padded label");
    if let Some(norm2) = L::block_in_registers(t, rows, part) {
        return norm2;
    }
    quant_rows(
        t,
        rows,
        part,
        |part, qa, qb, sa, sb| L::add_pair(part, qa, qb, sa, sb),
        |part, q, s| {
            for (p, &x) in part.iter_mut().zip(q) {
                *p += s * f32::from(x as i8);
            }
        },
    )
}

/// [`block_int8`] over a table of 4-bit weights: `part[l] += sa · a[l] + sb · b[l]` a pair of
/// rows, in that order of operations in every kernel, the weights unsigned (the row's minimum
/// left out: the same for every label).
#[inline(always)]
pub(crate) fn block_int4<L: LabelLoop>(
    t: &QuantTable,
    rows: &[(u32, f32)],
    part: &mut [f32],
) -> f32 {
    assert_eq!(part.len(), t.padded, "one slot per padded label");
    if let Some(norm2) = L::block_int4_own(t, rows, part) {
        return norm2;
    }
    quant_rows(
        t,
        rows,
        part,
        |part, qa, qb, sa, sb| {
            let chunks = part.as_chunks_mut::<{ 2 * LABEL_GROUP }>().0;
            let (qa, qb) = (
                qa.as_chunks::<LABEL_GROUP>().0,
                qb.as_chunks::<LABEL_GROUP>().0,
            );
            for ((p, a), b) in chunks.iter_mut().zip(qa).zip(qb) {
                let (lo, hi) = p.split_at_mut(LABEL_GROUP);
                for j in 0..LABEL_GROUP {
                    lo[j] += sa * f32::from(a[j] & 15) + sb * f32::from(b[j] & 15);
                }
                for j in 0..LABEL_GROUP {
                    hi[j] += sa * f32::from(a[j] >> 4) + sb * f32::from(b[j] >> 4);
                }
            }
        },
        |part, q, s| {
            let chunks = part.as_chunks_mut::<{ 2 * LABEL_GROUP }>().0;
            for (p, a) in chunks.iter_mut().zip(q.as_chunks::<LABEL_GROUP>().0) {
                let (lo, hi) = p.split_at_mut(LABEL_GROUP);
                for j in 0..LABEL_GROUP {
                    lo[j] += s * f32::from(a[j] & 15);
                }
                for j in 0..LABEL_GROUP {
                    hi[j] += s * f32::from(a[j] >> 4);
                }
            }
        },
    )
}

/// The row loop of [`block_int8`] and its versions: each pair of rows' weights and scales to
/// `pair`, the last odd row's to `one`, each adding to the accumulators `acc`, with the rows
/// [`PREFETCH_AHEAD`] ahead asked for meanwhile; returns the block's squared norm.
#[inline(always)]
fn quant_rows<A: ?Sized>(
    t: &QuantTable,
    rows: &[(u32, f32)],
    acc: &mut A,
    pair: impl Fn(&mut A, &[u8], &[u8], f32, f32),
    one: impl Fn(&mut A, &[u8], f32),
) -> f32 {
    let mut norm2 = 0.0f32;
    for &(row, _) in rows.iter().take(PREFETCH_AHEAD) {
        t.prefetch(row);
    }
    let mut pairs = rows.chunks_exact(2);
    let mut next = PREFETCH_AHEAD;
    for two in pairs.by_ref() {
        for &(row, _) in rows.get(next..rows.len().min(next + 2)).unwrap_or(&[]) {
            t.prefetch(row);
        }
        next += 2;
        let (va, sa, qa) = t.row(two[0]);
        let (vb, sb, qb) = t.row(two[1]);
        norm2 += va * va + vb * vb;
        pair(acc, qa, qb, sa, sb);
    }
    for &single in pairs.remainder() {
        let (v, s, q) = t.row(single);
        norm2 += v * v;
        one(acc, q, s);
    }
    norm2
}

/// The label loop of [`block_int8`] and [`block_int4`]: `part[l] += sa · a[l] + sb · b[l]` over
/// whole [`LABEL_GROUP`]s, in that order of operations whatever the compilation (so every kernel
/// gives the same sums bit for bit).
pub(crate) trait LabelLoop {
    /// Adds two int8 rows, scaled, to `part` (all three of the same length, a multiple of
    /// [`LABEL_GROUP`]).
    fn add_pair(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32);

    /// [`block_int8`] with its label accumulators held in registers, where this loop has such
    /// a version for `part`'s length (`part` zero on entry); `None` where it has not.
    #[inline(always)]
    fn block_in_registers(_t: &QuantTable, _rows: &[(u32, f32)], _part: &mut [f32]) -> Option<f32> {
        None
    }

    /// [`block_int4`] in this loop's own instructions, where it has them (the accumulators in
    /// registers with AVX-512, in `part` with AVX2); `None` where it has not.
    #[inline(always)]
    fn block_int4_own(_t: &QuantTable, _rows: &[(u32, f32)], _part: &mut [f32]) -> Option<f32> {
        None
    }
}

/// The label loop as plain Rust, vectorised by the compiler for the target it is compiled for
/// (the baseline kernel).
pub(crate) struct Portable;

impl LabelLoop for Portable {
    #[inline(always)]
    fn add_pair(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32) {
        for ((p, &a), &b) in part.iter_mut().zip(a).zip(b) {
            *p += sa * f32::from(a as i8) + sb * f32::from(b as i8);
        }
    }
}

/// `Some` of the register kernel `$f::<G>` for `$part`'s `G` label groups where `G` is one of
/// those listed, else `None`. The caller states why calling `$f` is safe (its CPU features).
#[cfg(target_arch = "x86_64")]
macro_rules! by_groups {
    ($f:ident, $t:expr, $rows:expr, $part:expr; $($g:literal)*) => {
        match $part.len() / LABEL_GROUP {
            $($g => Some(
                #[allow(unsafe_code)]
                unsafe { $f::<$g>($t, $rows, $part) }
            ),)*
            _ => None,
        }
    };
}

/// The label loop in AVX2 instructions, one 16-label group (two vectors) a step. Only for code
/// compiled with AVX2, on a CPU that has it.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl LabelLoop for Avx2 {
    #[inline(always)]
    fn add_pair(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32) {
        // SAFETY: `Avx2` is used only inside `Model::score_avx2`, which runs where the CPU has
        // AVX2 (`Kernel::available`).
        #[allow(unsafe_code)]
        unsafe {
            add_pair_avx2(part, a, b, sa, sb)
        }
    }

    /// Up to 80 labels (five groups: ten registers of the sixteen). Beyond, two passes over
    /// the rows, each holding half the groups, were slower at 151 labels (−2% to −12%, four
    /// rounds) than the sums in memory.
    #[inline(always)]
    fn block_in_registers(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> Option<f32> {
        // SAFETY: as `add_pair` above.
        by_groups!(block_int8_avx2, t, rows, part; 1 2 3 4 5)
    }

    #[inline(always)]
    fn block_int4_own(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> Option<f32> {
        // SAFETY: `Avx2` is used only where the CPU has AVX2 (as `add_pair` above).
        #[allow(unsafe_code)]
        Some(unsafe { block_int4_avx2(t, rows, part) })
    }
}

/// [`block_int4`] with AVX2, the accumulators in `part`: the same operations in the same order
/// as the other kernels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn block_int4_avx2(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    // Labels `8h..8h + 8` of the two groups of a 32-label chunk `q` (16 bytes), as f32.
    #[inline(always)]
    fn eighths(q: &[u8; LABEL_GROUP], h: usize) -> (__m256, __m256) {
        // SAFETY: 8 bytes inside `q` (an unaligned load); AVX2 is enabled in the caller.
        #[allow(unsafe_code)]
        unsafe {
            let x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(q[8 * h..].as_ptr().cast()));
            let lo = _mm256_and_si256(x, _mm256_set1_epi32(15));
            let hi = _mm256_srli_epi32::<4>(x);
            (_mm256_cvtepi32_ps(lo), _mm256_cvtepi32_ps(hi))
        }
    }
    // `p[at..at + 8] += v`.
    #[inline(always)]
    fn add(p: &mut [f32], at: usize, v: __m256) {
        let p = p[at..at + 8].as_mut_ptr();
        // SAFETY: 8 elements inside `p` (unaligned loads and stores).
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v))
        };
    }
    quant_rows(
        t,
        rows,
        part,
        |part, qa, qb, sa, sb| {
            let (sa, sb) = (_mm256_set1_ps(sa), _mm256_set1_ps(sb));
            let chunks = part.as_chunks_mut::<{ 2 * LABEL_GROUP }>().0;
            let (qa, qb) = (
                qa.as_chunks::<LABEL_GROUP>().0,
                qb.as_chunks::<LABEL_GROUP>().0,
            );
            for ((p, a), b) in chunks.iter_mut().zip(qa).zip(qb) {
                for h in 0..2 {
                    let (a0, a1) = eighths(a, h);
                    let (b0, b1) = eighths(b, h);
                    add(
                        p,
                        8 * h,
                        _mm256_add_ps(_mm256_mul_ps(sa, a0), _mm256_mul_ps(sb, b0)),
                    );
                    add(
                        p,
                        LABEL_GROUP + 8 * h,
                        _mm256_add_ps(_mm256_mul_ps(sa, a1), _mm256_mul_ps(sb, b1)),
                    );
                }
            }
        },
        |part, q, s| {
            let s = _mm256_set1_ps(s);
            let chunks = part.as_chunks_mut::<{ 2 * LABEL_GROUP }>().0;
            for (p, a) in chunks.iter_mut().zip(q.as_chunks::<LABEL_GROUP>().0) {
                for h in 0..2 {
                    let (a0, a1) = eighths(a, h);
                    add(p, 8 * h, _mm256_mul_ps(s, a0));
                    add(p, LABEL_GROUP + 8 * h, _mm256_mul_ps(s, a1));
                }
            }
        },
    )
}

/// [`block_int8`] for `G` label groups with AVX2, the accumulators in registers (two 8-lane
/// registers a group): the same operations in the same order, so the same sums bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn block_int8_avx2<const G: usize>(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    assert_eq!(part.len(), G * LABEL_GROUP, "one slot per padded label");
    // The int8 weights of half `h` of group `g` of a row's weights, as f32.
    #[inline(always)]
    fn half(q: &[u8], g: usize, h: usize) -> __m256 {
        let q = &q[g * LABEL_GROUP + h * 8..g * LABEL_GROUP + h * 8 + 8];
        // SAFETY: 8 bytes inside `q` (an unaligned load); AVX2 is enabled in the caller.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.as_ptr().cast())))
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    let norm2 = quant_rows(
        t,
        rows,
        &mut acc,
        |acc, qa, qb, sa, sb| {
            let (sa, sb) = (_mm256_set1_ps(sa), _mm256_set1_ps(sb));
            for (g, acc) in acc.iter_mut().enumerate() {
                for (h, acc) in acc.iter_mut().enumerate() {
                    let sum = _mm256_add_ps(
                        _mm256_mul_ps(sa, half(qa, g, h)),
                        _mm256_mul_ps(sb, half(qb, g, h)),
                    );
                    *acc = _mm256_add_ps(*acc, sum);
                }
            }
        },
        |acc, q, s| {
            let s = _mm256_set1_ps(s);
            for (g, acc) in acc.iter_mut().enumerate() {
                for (h, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(s, half(q, g, h)));
                }
            }
        },
    );
    for (p, acc) in part.as_chunks_mut::<LABEL_GROUP>().0.iter_mut().zip(acc) {
        for (h, acc) in acc.into_iter().enumerate() {
            // SAFETY: 8 elements inside a 16-element group of `part` (an unaligned store).
            #[allow(unsafe_code)]
            unsafe {
                _mm256_storeu_ps(p[h * 8..].as_mut_ptr(), acc)
            };
        }
    }
    norm2
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn add_pair_avx2(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32) {
    use std::arch::x86_64::*;
    let (part, _) = part.as_chunks_mut::<LABEL_GROUP>();
    let (a, _) = a.as_chunks::<LABEL_GROUP>();
    let (b, _) = b.as_chunks::<LABEL_GROUP>();
    let (sa, sb) = (_mm256_set1_ps(sa), _mm256_set1_ps(sb));
    for ((p, a), b) in part.iter_mut().zip(a).zip(b) {
        for half in 0..2 {
            let at = half * 8;
            // SAFETY: each pointer is 8 elements inside a 16-element group of its slice
            // (unaligned loads and stores).
            #[allow(unsafe_code)]
            unsafe {
                let qa = _mm_loadl_epi64(a[at..].as_ptr().cast());
                let qb = _mm_loadl_epi64(b[at..].as_ptr().cast());
                let fa = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qa));
                let fb = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qb));
                let sum = _mm256_add_ps(_mm256_mul_ps(sa, fa), _mm256_mul_ps(sb, fb));
                let p = p[at..].as_mut_ptr();
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), sum));
            }
        }
    }
}

/// The label loop in AVX-512 instructions, one 16-label group a step. The compiler's own loop
/// ran 32 labels a step and the rest four at a time (77 labels padded to 80: two steps, then
/// four of four). Only for code compiled with AVX-512F, on a CPU that has it.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl LabelLoop for Avx512 {
    #[inline(always)]
    fn add_pair(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32) {
        // SAFETY: `Avx512` is used only inside `Model::score_avx512`, which runs where the CPU
        // has AVX-512F (`Kernel::available`).
        #[allow(unsafe_code)]
        unsafe {
            add_pair_avx512(part, a, b, sa, sb)
        }
    }

    /// Up to 256 labels: one register a group, the whole block long (32 registers: up to 16
    /// accumulators, the rest for the rows), instead of a load and a store of `part` for every
    /// pair of rows.
    #[inline(always)]
    fn block_in_registers(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> Option<f32> {
        // SAFETY: as `add_pair` above.
        by_groups!(block_int8_avx512, t, rows, part; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }

    /// Up to 256 labels in registers; above, the same lookups with the sums in `part` (the
    /// portable loop ran a third of int8's speed at 711 labels).
    #[inline(always)]
    fn block_int4_own(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> Option<f32> {
        // SAFETY: as `add_pair` above.
        by_groups!(block_int4_avx512, t, rows, part; 2 4 6 8 10 12 14 16).or_else(|| {
            // SAFETY: as `add_pair` above.
            #[allow(unsafe_code)]
            Some(unsafe { block_int4_avx512_part(t, rows, part) })
        })
    }
}

/// The 4-bit weights of groups `2c` and `2c + 1` of a row's weights `q`, each times the row's
/// scale: looked up in `times`, the 16 products `scale · 0` .. `scale · 15` (one multiply a row
/// instead of two conversions and two multiplies a chunk; the same products, so the same sums).
/// `vpermps` reads an index's low four bits: the low nibble needs no mask. Inlined into
/// functions compiled with AVX-512F only.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn int4_chunk_avx512(
    q: &[u8],
    c: usize,
    times: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let q = &q[c * LABEL_GROUP..(c + 1) * LABEL_GROUP];
    // SAFETY: 16 bytes inside `q` (an unaligned load); AVX-512F is enabled in the callers.
    #[allow(unsafe_code)]
    unsafe {
        let x = _mm512_cvtepu8_epi32(_mm_loadu_si128(q.as_ptr().cast()));
        let hi = _mm512_srli_epi32::<4>(x);
        (
            _mm512_permutexvar_ps(x, times),
            _mm512_permutexvar_ps(hi, times),
        )
    }
}

/// `scale · 0` .. `scale · 15`, the products [`int4_chunk_avx512`] looks up.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn int4_times_avx512(scale: f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: AVX-512F is enabled in the callers (this is inlined into them).
    #[allow(unsafe_code)]
    unsafe {
        _mm512_mul_ps(
            _mm512_set1_ps(scale),
            _mm512_setr_ps(
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                15.0,
            ),
        )
    }
}

/// [`block_int4`] with AVX-512 for any number of label groups, the sums in `part`: the
/// lookups of [`block_int4_avx512`], and a load and a store of `part` a 16-label group and
/// pair of rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn block_int4_avx512_part(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    // `p[..16] += v`.
    #[inline(always)]
    fn add(p: &mut [f32], v: __m512) {
        let p = p[..LABEL_GROUP].as_mut_ptr();
        // SAFETY: 16 elements inside `p` (unaligned loads and stores).
        #[allow(unsafe_code)]
        unsafe {
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), v))
        };
    }
    quant_rows(
        t,
        rows,
        part,
        |part, qa, qb, sa, sb| {
            let (ta, tb) = (int4_times_avx512(sa), int4_times_avx512(sb));
            for (c, p) in part
                .as_chunks_mut::<{ 2 * LABEL_GROUP }>()
                .0
                .iter_mut()
                .enumerate()
            {
                let (a0, a1) = int4_chunk_avx512(qa, c, ta);
                let (b0, b1) = int4_chunk_avx512(qb, c, tb);
                let (lo, hi) = p.split_at_mut(LABEL_GROUP);
                add(lo, _mm512_add_ps(a0, b0));
                add(hi, _mm512_add_ps(a1, b1));
            }
        },
        |part, q, s| {
            let ts = int4_times_avx512(s);
            for (c, p) in part
                .as_chunks_mut::<{ 2 * LABEL_GROUP }>()
                .0
                .iter_mut()
                .enumerate()
            {
                let (a0, a1) = int4_chunk_avx512(q, c, ts);
                let (lo, hi) = p.split_at_mut(LABEL_GROUP);
                add(lo, a0);
                add(hi, a1);
            }
        },
    )
}

/// [`block_int4`] for `G` label groups with AVX-512, the accumulators in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn block_int4_avx512<const G: usize>(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    assert_eq!(part.len(), G * LABEL_GROUP, "one slot per padded label");
    let mut acc = [_mm512_setzero_ps(); G];
    let norm2 = quant_rows(
        t,
        rows,
        &mut acc,
        |acc, qa, qb, sa, sb| {
            let (ta, tb) = (int4_times_avx512(sa), int4_times_avx512(sb));
            for (c, acc) in acc.as_chunks_mut::<2>().0.iter_mut().enumerate() {
                let (a0, a1) = int4_chunk_avx512(qa, c, ta);
                let (b0, b1) = int4_chunk_avx512(qb, c, tb);
                acc[0] = _mm512_add_ps(acc[0], _mm512_add_ps(a0, b0));
                acc[1] = _mm512_add_ps(acc[1], _mm512_add_ps(a1, b1));
            }
        },
        |acc, q, s| {
            let ts = int4_times_avx512(s);
            for (c, acc) in acc.as_chunks_mut::<2>().0.iter_mut().enumerate() {
                let (a0, a1) = int4_chunk_avx512(q, c, ts);
                acc[0] = _mm512_add_ps(acc[0], a0);
                acc[1] = _mm512_add_ps(acc[1], a1);
            }
        },
    );
    for (p, acc) in part.as_chunks_mut::<LABEL_GROUP>().0.iter_mut().zip(acc) {
        // SAFETY: a whole 16-element group of `part` (an unaligned store).
        #[allow(unsafe_code)]
        unsafe {
            _mm512_storeu_ps(p.as_mut_ptr(), acc)
        };
    }
    norm2
}

/// [`block_int8`] for `G` label groups with AVX-512, the accumulators in registers: the same
/// operations in the same order (`acc + (sa · a + sb · b)` a pair, `acc + s · a` for the last odd
/// row, from zero), so the same sums bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn block_int8_avx512<const G: usize>(t: &QuantTable, rows: &[(u32, f32)], part: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    assert_eq!(part.len(), G * LABEL_GROUP, "one slot per padded label");
    // The int8 weights of group `g` of a row's (padded) weights, as f32.
    #[inline(always)]
    fn group(q: &[u8], g: usize) -> __m512 {
        let q = &q[g * LABEL_GROUP..(g + 1) * LABEL_GROUP];
        // SAFETY: 16 bytes inside `q` (an unaligned load); AVX-512F is enabled in the caller.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q.as_ptr().cast())))
        }
    }
    let mut acc = [_mm512_setzero_ps(); G];
    let norm2 = quant_rows(
        t,
        rows,
        &mut acc,
        |acc, qa, qb, sa, sb| {
            let (sa, sb) = (_mm512_set1_ps(sa), _mm512_set1_ps(sb));
            for (g, acc) in acc.iter_mut().enumerate() {
                let sum = _mm512_add_ps(
                    _mm512_mul_ps(sa, group(qa, g)),
                    _mm512_mul_ps(sb, group(qb, g)),
                );
                *acc = _mm512_add_ps(*acc, sum);
            }
        },
        |acc, q, s| {
            let s = _mm512_set1_ps(s);
            for (g, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(s, group(q, g)));
            }
        },
    );
    for (p, acc) in part.as_chunks_mut::<LABEL_GROUP>().0.iter_mut().zip(acc) {
        // SAFETY: a whole 16-element group of `part` (an unaligned store).
        #[allow(unsafe_code)]
        unsafe {
            _mm512_storeu_ps(p.as_mut_ptr(), acc)
        };
    }
    norm2
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn add_pair_avx512(part: &mut [f32], a: &[u8], b: &[u8], sa: f32, sb: f32) {
    use std::arch::x86_64::*;
    let (part, _) = part.as_chunks_mut::<LABEL_GROUP>();
    let (a, _) = a.as_chunks::<LABEL_GROUP>();
    let (b, _) = b.as_chunks::<LABEL_GROUP>();
    let (sa, sb) = (_mm512_set1_ps(sa), _mm512_set1_ps(sb));
    for ((p, a), b) in part.iter_mut().zip(a).zip(b) {
        // SAFETY: each pointer is a whole 16-element group of its slice (unaligned loads and
        // stores).
        #[allow(unsafe_code)]
        unsafe {
            let fa = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(a.as_ptr().cast())));
            let fb = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().cast())));
            let sum = _mm512_add_ps(_mm512_mul_ps(sa, fa), _mm512_mul_ps(sb, fb));
            let p = p.as_mut_ptr();
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), sum));
        }
    }
}

/// How many rows ahead [`block_int8`] asks for rows to be fetched into cache.
const PREFETCH_AHEAD: usize = 8;

impl QuantTable {
    /// The TF-IDF value of `(row, tf)`, that value times the row's scale, and the row's
    /// weights (padded).
    #[inline(always)]
    fn row(&self, (row, tf): (u32, f32)) -> (f32, f32, &[u8]) {
        let start = row as usize * self.stride;
        let r = &self.bytes[start..start + self.stride];
        let idf = f32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        let scale = f32::from_le_bytes([r[4], r[5], r[6], r[7]]);
        let v = tf * idf;
        (v, v * scale, &r[Q_HEAD..])
    }

    /// Asks the CPU to fetch `row`'s cache lines (a hint: nothing is read, nothing can fault).
    #[inline(always)]
    fn prefetch(&self, row: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let start = row as usize * self.stride;
            let Some(r) = self.bytes.get(start..start + self.stride) else {
                return;
            };
            for line in (0..r.len()).step_by(64).chain([r.len() - 1]) {
                // SAFETY: a prefetch is a hint that reads nothing architecturally and never
                // faults, and the address is inside `self.bytes` anyway.
                #[allow(unsafe_code)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(r[line..].as_ptr().cast::<i8>())
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = row;
    }
}

/// `e^x` for `x <= 0`, in plain arithmetic that the compiler vectorises (a call of `expf` per
/// label was a fifth of the scoring time at 151 labels). Cephes' `expf`: `x = n ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, and `2^n` built in the exponent bits;
/// within 2 ulp of `expf` (a test checks it). Below -87.3 (where `2^n` would leave the normal
/// range) it returns `e^-87.3`, about 1e-38, which no softmax sum can notice.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // 1.5 · 2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.3);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // `t` is `ROUND + n` with `n` a small integer, in `ROUND`'s binade (steps of 1), so `n` is
    // also the difference of their bit patterns: integer lanes, where `n as i32` (a saturating
    // cast) is compiled one lane at a time.
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((ni + 127) as u32) << 23)
}

/// The largest of `v` (−∞ when empty), over eight lanes so that it vectorises (a fold over one
/// accumulator is a chain the compiler must keep in order). NaNs are skipped.
#[inline(always)]
pub(crate) fn max(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = v.chunks_exact(8);
    for c in chunks.by_ref() {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Replaces each `x` of `v` by `e^(x − max)` (`max` at least every `x`) and returns their sum,
/// summed over eight lanes: a softmax's numerators and denominator.
#[inline(always)]
pub(crate) fn exp_shifted(v: &mut [f32], max: f32) -> f32 {
    for x in v.iter_mut() {
        *x = exp_nonpositive(*x - max);
    }
    let mut lanes = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in chunks.by_ref() {
        for (s, &x) in lanes.iter_mut().zip(c) {
            *s += x;
        }
    }
    lanes.iter().chain(chunks.remainder()).sum()
}

/// Which compilation of the scoring kernel runs: picked once per process from what the CPU has,
/// the widest first. `TRIAGE_CPU_KERNEL` (`baseline`, `avx2` or `avx512`) can ask for a
/// narrower one, to compare them or to keep a machine off AVX-512; a kernel the CPU lacks (or
/// a name it does not know) leaves the widest in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The x86-64 baseline (SSE2: 4 lanes), or the target's default elsewhere.
    Baseline,
    /// AVX2 + FMA: 8 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 (F, BW, VL): 16 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The kernels this CPU can run, narrowest first.
    pub fn available() -> Vec<Kernel> {
        let mut k = vec![Kernel::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                k.push(Kernel::Avx2);
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                    k.push(Kernel::Avx512);
                }
            }
        }
        k
    }

    /// The kernel scoring uses in this process (see the type's documentation).
    #[inline]
    pub fn detected() -> Kernel {
        static PICKED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *PICKED.get_or_init(|| {
            let available = Self::available();
            let widest = *available.last().expect("the baseline is always there");
            match std::env::var("TRIAGE_CPU_KERNEL") {
                Ok(name) if !name.trim().is_empty() => {
                    let names: Vec<&str> = available.iter().map(|k| k.name()).collect();
                    let asked = name.trim().to_ascii_lowercase();
                    available
                        .into_iter()
                        .find(|k| k.name() == asked)
                        .unwrap_or_else(|| {
                            tracing::warn!(
                                asked = %name,
                                available = ?names,
                                using = widest.name(),
                                "TRIAGE_CPU_KERNEL names no kernel this CPU has"
                            );
                            widest
                        })
                }
                _ => widest,
            }
        })
    }

    /// Its name, as `TRIAGE_CPU_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Baseline => "baseline",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rows_round_to_within_half_a_step() {
        let k = 20;
        // Two rows with different ranges, then the zero row.
        let mut table = Vec::new();
        // Row 1 is the more frequent feature (lower IDF): it goes first in the int8 table.
        for (r, amp) in [(0, 3.0f32), (1, 0.01)] {
            table.push(2.5 - r as f32);
            table.extend((0..k).map(|i| amp * ((i as f32 * 0.7 + r as f32).sin())));
        }
        table.extend(std::iter::repeat_n(0.0, k + 1));
        // Buckets 0 and 1 hold rows 0 and 1; bucket 2 is unknown (the zero row).
        let q = QuantTable::new(&table, k, &[0, 1, 2], false);
        assert_eq!(q.padded_labels(), 32);
        assert_eq!(q.len_bytes(), 3 * (8 + 32));
        assert_eq!([q.row_of(0), q.row_of(1), q.row_of(2)], [1, 0, 2]);
        for row in 0..2u32 {
            let mut exact = vec![0.0f32; k];
            let mut approx = vec![0.0f32; q.padded_labels()];
            let n_exact = block_f32(&table, &[(row, 2.0)], &mut exact);
            let n_approx =
                block_int8::<Portable>(&q, &[(q.row_of(row as usize), 2.0)], &mut approx);
            assert_eq!(n_exact, n_approx, "the norm uses the exact IDF");
            let src = &table[row as usize * (k + 1) + 1..(row as usize + 1) * (k + 1)];
            let max = src.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let v = 2.0 * table[row as usize * (k + 1)];
            for (e, a) in exact.iter().zip(&approx) {
                assert!((e - a).abs() <= v * max / 254.0 * 1.001, "{e} vs {a}");
            }
            assert!(
                approx[k..].iter().all(|&x| x == 0.0),
                "the padding adds nothing"
            );
        }
        let mut zero = vec![0.0f32; q.padded_labels()];
        assert_eq!(
            block_int8::<Portable>(&q, &[(q.row_of(2), 5.0)], &mut zero),
            0.0
        );
        assert!(zero.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn int4_rows_round_to_within_half_a_step_from_the_rows_minimum() {
        let k = 40;
        let mut table = Vec::new();
        for (r, amp) in [(0, 3.0f32), (1, 0.01)] {
            table.push(2.5 - r as f32);
            table.extend((0..k).map(|i| amp * ((i as f32 * 0.7 + r as f32).sin())));
        }
        table.extend(std::iter::repeat_n(0.0, k + 1));
        let q = QuantTable::new(&table, k, &[0, 1, 2], true);
        assert_eq!(q.padded_labels(), 64, "whole pairs of 16-label groups");
        assert_eq!(q.len_bytes(), 3 * (8 + 32), "two weights a byte");
        for row in 0..2u32 {
            let mut exact = vec![0.0f32; k];
            let mut approx = vec![0.0f32; q.padded_labels()];
            let n_exact = block_f32(&table, &[(row, 2.0)], &mut exact);
            let n_approx =
                block_int4::<Portable>(&q, &[(q.row_of(row as usize), 2.0)], &mut approx);
            assert_eq!(n_exact, n_approx, "the norm uses the exact IDF");
            let src = &table[row as usize * (k + 1) + 1..(row as usize + 1) * (k + 1)];
            let lo = src.iter().fold(f32::INFINITY, |m, &x| m.min(x));
            let hi = src.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let v = 2.0 * table[row as usize * (k + 1)];
            // The score leaves out the row's minimum, the same for every label.
            for (e, a) in exact.iter().zip(&approx) {
                let step = (hi - lo) / 15.0;
                assert!(
                    (e - v * lo - a).abs() <= v * step / 2.0 * 1.001 + 1e-6,
                    "{e} vs {a}"
                );
            }
            assert!(
                approx[k..].iter().all(|&x| x == 0.0),
                "the padding adds nothing"
            );
        }
        let mut zero = vec![0.0f32; q.padded_labels()];
        assert_eq!(
            block_int4::<Portable>(&q, &[(q.row_of(2), 5.0)], &mut zero),
            0.0
        );
        assert!(zero.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn the_format_follows_the_label_count() {
        assert_eq!(WeightFormat::for_labels(4), WeightFormat::F32);
        assert_eq!(
            WeightFormat::for_labels(INT8_FROM_LABELS - 1),
            WeightFormat::F32
        );
        assert_eq!(WeightFormat::for_labels(77), WeightFormat::Int8);
        assert_eq!(
            WeightFormat::for_labels(INT4_FROM_LABELS - 1),
            WeightFormat::Int8
        );
        assert_eq!(WeightFormat::for_labels(151), WeightFormat::Int4);
    }
}
