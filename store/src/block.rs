//! Columnar compressed blocks of rows: the unit the store writes to its
//! block files.
//!
//! A block holds the rows of one node over a time span, column by column:
//!
//! ```text
//! u8      format (1)
//! varint  row count n
//! bits    timestamps: first raw (64 bits), first delta, then delta-of-delta
//! varint  column count c
//! c ×     varint metric index, varint payload length
//! c ×     payload
//! ```
//!
//! A column payload starts with one byte: mode in the low two bits
//! (0 = integer values, 1 = integer deltas, 2 = integer delta-of-deltas,
//! 3 = XOR floats), bit 2 set when a presence bitmap follows (integer modes
//! only), bits 3..5 the decimal scale code `k` (values are stored as
//! `round(v·10^d)`, `d` = `k` places for 0 to 6 and 9 places for code 7, so
//! counters of µs or ns reported in seconds stay integers; used only when
//! that is exact to the bit), bit 6 set when
//! the integers are bit-packed (format 2). Columns that are entirely missing
//! are left out. The encoder tries every applicable mode and keeps the
//! smallest, so each column decodes bit-exactly to what was appended.
//!
//! Integers are written either one by one with a prefix code (zero in one
//! bit, small magnitudes in few: good for steady series with rare jumps) or
//! bit-packed: the first `order` integers (values, deltas: 1, delta-of-deltas:
//! 2) as zigzag varints, then the minimum of the rest, a width byte, and every
//! other integer minus the minimum in exactly `width` bits (frame of
//! reference). Packing costs the block's range in bits per value, which is
//! what noisy counters and gauges need and a constant column's zero: measured
//! on the synthetic set of `make bench` (a quarter constant, a quarter
//! two-decimal gauges, half noisy counters; their entropy is about 0.86
//! bytes a value), 1.380 bytes per value encoded with the prefix code alone,
//! 0.958 with packing among the choices; this host's real series in one
//! 60-row block 0.773 and 0.679 (docs/performance.md).
//! Format 1 blocks (prefix code only) still decode.

use thiserror::Error;

const FORMAT: u8 = 2;
const MODE_VALUES: u8 = 0;
const MODE_DELTA: u8 = 1;
const MODE_DOD: u8 = 2;
const MODE_XOR: u8 = 3;
const FLAG_BITMAP: u8 = 0b100;
const FLAG_PACKED: u8 = 0b100_0000;
const MAX_SCALE: u8 = 7;

#[derive(Debug, Error, PartialEq)]
pub enum BlockError {
    #[error("block truncated")]
    Truncated,
    #[error("unknown block format {0}")]
    Format(u8),
    #[error("corrupt block: {0}")]
    Corrupt(&'static str),
}

/// Bits, most significant first, into bytes; the last byte is padded with
/// zeros. Whole bytes leave the accumulator as soon as they are complete.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u128,
    /// Bits in `acc` not yet in `bytes` (0..8 between calls).
    pending: u32,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter { bytes: Vec::new(), acc: 0, pending: 0 }
    }
    /// Appends the low `n` (≤ 64) bits of `value`.
    fn push(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = if n >= 64 { value } else { value & ((1u64 << n) - 1) };
        self.acc = (self.acc << n) | u128::from(v);
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.bytes.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u128 << self.pending) - 1;
    }
    fn bit(&mut self, b: bool) {
        self.push(u64::from(b), 1);
    }
    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.bytes.push((self.acc << (8 - self.pending)) as u8);
        }
        self.bytes
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize, // bit position
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }
    fn read(&mut self, mut n: u32) -> Result<u64, BlockError> {
        let mut out = 0u64;
        while n > 0 {
            let byte = *self.bytes.get(self.pos / 8).ok_or(BlockError::Truncated)?;
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = avail.min(n);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            out = (out << take) | chunk;
            self.pos += take as usize;
            n -= take;
        }
        Ok(out)
    }
    fn bit(&mut self) -> Result<bool, BlockError> {
        Ok(self.read(1)? == 1)
    }
    fn byte_len(&self) -> usize {
        self.pos.div_ceil(8)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Prefix-coded signed integer: `0` for zero, else a unary bucket selector and
/// the zigzagged value in the bucket's width.
const BUCKETS: [u32; 5] = [7, 12, 20, 32, 64];

fn put_signed(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.bit(false);
        return;
    }
    let z = zigzag(v);
    for (i, &width) in BUCKETS.iter().enumerate() {
        if width == 64 || z < (1u64 << width) {
            // i+1 ones, then a zero unless this is the last bucket.
            w.push((1u64 << (i + 1)) - 1, (i + 1) as u32);
            if i + 1 < BUCKETS.len() {
                w.bit(false);
            }
            w.push(z, width);
            return;
        }
    }
}

fn get_signed(r: &mut BitReader<'_>) -> Result<i64, BlockError> {
    let mut ones = 0usize;
    while ones < BUCKETS.len() && r.bit()? {
        ones += 1;
    }
    if ones == 0 {
        return Ok(0);
    }
    Ok(unzigzag(r.read(BUCKETS[ones - 1])?))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, BlockError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos).ok_or(BlockError::Truncated)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BlockError::Corrupt("varint too long"))
}

fn encode_timestamps(ts: &[i64]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &t) in ts.iter().enumerate() {
        match i {
            0 => w.push(t as u64, 64),
            1 => {
                prev_delta = t.wrapping_sub(prev);
                put_signed(&mut w, prev_delta);
            }
            _ => {
                let d = t.wrapping_sub(prev);
                put_signed(&mut w, d.wrapping_sub(prev_delta));
                prev_delta = d;
            }
        }
        prev = t;
    }
    w.finish()
}

fn decode_timestamps(bytes: &[u8], n: usize) -> Result<(Vec<i64>, usize), BlockError> {
    let mut r = BitReader::new(bytes);
    let mut out = Vec::with_capacity(n);
    let mut prev = 0i64;
    let mut delta = 0i64;
    for i in 0..n {
        let t = match i {
            0 => r.read(64)? as i64,
            1 => {
                delta = get_signed(&mut r)?;
                prev.wrapping_add(delta)
            }
            _ => {
                delta = delta.wrapping_add(get_signed(&mut r)?);
                prev.wrapping_add(delta)
            }
        };
        out.push(t);
        prev = t;
    }
    Ok((out, r.byte_len()))
}

/// Decimal places of scale code `k` (a column's 3-bit field): 0 to 6, and
/// 9 for nanoseconds given in seconds (cgroup CPU time). Blocks before
/// 2026-12-07 used codes 0 to 4, which mean the same.
fn pow10(k: u8) -> f64 {
    10f64.powi(if k == 7 { 9 } else { i32::from(k) })
}

/// The smallest decimal scale at which every present value is an exact integer.
fn integer_scale(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    'scale: for k in 0..=MAX_SCALE {
        let p = pow10(k);
        let mut ints = Vec::with_capacity(values.len());
        for &v in values {
            let r = (v * p).round();
            if r.is_nan() || r.abs() >= 9.007_199_254_740_992e15 {
                continue 'scale;
            }
            let i = r as i64;
            // The decoder computes exactly this; -0.0 fails here and goes to XOR.
            if (i as f64 / p).to_bits() != v.to_bits() {
                continue 'scale;
            }
            ints.push(i);
        }
        return Some((k, ints));
    }
    None
}

fn encode_ints(ints: &[i64], order2: bool) -> Vec<u8> {
    let mut w = BitWriter::new();
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &v) in ints.iter().enumerate() {
        if i == 0 {
            put_signed(&mut w, v);
        } else {
            let d = v.wrapping_sub(prev);
            if order2 {
                put_signed(&mut w, d.wrapping_sub(prev_delta));
            } else {
                put_signed(&mut w, d);
            }
            prev_delta = d;
        }
        prev = v;
    }
    w.finish()
}

fn decode_ints(bytes: &[u8], n: usize, order2: bool) -> Result<Vec<i64>, BlockError> {
    let mut r = BitReader::new(bytes);
    let mut out = Vec::with_capacity(n);
    let mut prev = 0i64;
    let mut delta = 0i64;
    for i in 0..n {
        let v = if i == 0 {
            get_signed(&mut r)?
        } else if order2 {
            delta = delta.wrapping_add(get_signed(&mut r)?);
            prev.wrapping_add(delta)
        } else {
            delta = get_signed(&mut r)?;
            prev.wrapping_add(delta)
        };
        out.push(v);
        prev = v;
    }
    Ok(out)
}

/// Differences of consecutive integers (the first kept), wrapping as the
/// decoder adds them back.
fn differences(v: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(v.len());
    out.extend(v.first());
    out.extend(v.windows(2).map(|w| w[1].wrapping_sub(w[0])));
    out
}

/// Bit-packs residuals of `order` (0: the values, 1: their deltas, 2: their
/// delta-of-deltas): the first `order` as varints, the rest packed.
fn encode_packed(r: &[i64], order: u8) -> Vec<u8> {
    let lead = r.len().min(usize::from(order));
    let mut out = Vec::new();
    for &v in &r[..lead] {
        put_varint(&mut out, zigzag(v));
    }
    let rest = &r[lead..];
    let (Some(&min), Some(&max)) = (rest.iter().min(), rest.iter().max()) else {
        return out;
    };
    put_varint(&mut out, zigzag(min));
    let range = (i128::from(max) - i128::from(min)) as u128;
    let width = 128 - range.leading_zeros();
    out.push(width as u8);
    let mut w = BitWriter::new();
    if width > 0 {
        for &v in rest {
            w.push((i128::from(v) - i128::from(min)) as u64, width);
        }
    }
    out.extend(w.finish());
    out
}

fn decode_packed(bytes: &[u8], n: usize, order: u8) -> Result<Vec<i64>, BlockError> {
    let mut pos = 0;
    let lead = n.min(usize::from(order));
    let mut r = Vec::with_capacity(n);
    for _ in 0..lead {
        r.push(unzigzag(get_varint(bytes, &mut pos)?));
    }
    if n > lead {
        let min = unzigzag(get_varint(bytes, &mut pos)?);
        let width = u32::from(*bytes.get(pos).ok_or(BlockError::Truncated)?);
        pos += 1;
        if width > 64 {
            return Err(BlockError::Corrupt("packed width"));
        }
        let body = &bytes[pos..];
        if (n - lead) as u64 * u64::from(width) > body.len() as u64 * 8 {
            return Err(BlockError::Truncated);
        }
        let mut br = BitReader::new(body);
        for _ in lead..n {
            r.push(min.wrapping_add(br.read(width)? as i64));
        }
    }
    for _ in 0..order {
        for i in 1..r.len() {
            r[i] = r[i].wrapping_add(r[i - 1]);
        }
    }
    Ok(r)
}

fn encode_xor(values: &[f64]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let mut prev = 0u64;
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for (i, v) in values.iter().enumerate() {
        let bits = v.to_bits();
        if i == 0 {
            w.push(bits, 64);
        } else {
            let x = bits ^ prev;
            if x == 0 {
                w.bit(false);
            } else {
                let l = x.leading_zeros().min(31);
                let t = x.trailing_zeros();
                if lead != u32::MAX && l >= lead && t >= trail {
                    w.push(0b10, 2);
                    w.push(x >> trail, 64 - lead - trail);
                } else {
                    let len = 64 - l - t;
                    w.push(0b11, 2);
                    w.push(u64::from(l), 5);
                    w.push(u64::from(len - 1), 6);
                    w.push(x >> t, len);
                    lead = l;
                    trail = t;
                }
            }
        }
        prev = bits;
    }
    w.finish()
}

fn decode_xor(bytes: &[u8], n: usize) -> Result<Vec<f64>, BlockError> {
    let mut r = BitReader::new(bytes);
    let mut out = Vec::with_capacity(n);
    let mut prev = 0u64;
    let (mut lead, mut trail) = (0u32, 0u32);
    for i in 0..n {
        let bits = if i == 0 {
            r.read(64)?
        } else if !r.bit()? {
            prev
        } else if !r.bit()? {
            let len = 64u32.checked_sub(lead + trail).ok_or(BlockError::Corrupt("xor window"))?;
            prev ^ (r.read(len)? << trail)
        } else {
            lead = r.read(5)? as u32;
            let len = r.read(6)? as u32 + 1;
            trail = 64u32.checked_sub(lead + len).ok_or(BlockError::Corrupt("xor window"))?;
            prev ^ (r.read(len)? << trail)
        };
        out.push(f64::from_bits(bits));
        prev = bits;
    }
    Ok(out)
}

/// Encodes one column (one value per row, `NaN` = missing). `None` when the
/// whole column is missing.
fn encode_column(col: &[f64]) -> Option<Vec<u8>> {
    let present: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
    if present.is_empty() {
        return None;
    }
    let mut best = {
        let mut p = vec![MODE_XOR];
        p.extend(encode_xor(col));
        p
    };
    if let Some((k, ints)) = integer_scale(&present) {
        let has_gaps = present.len() != col.len();
        let mut head = Vec::new();
        let flags = (k << 3) | if has_gaps { FLAG_BITMAP } else { 0 };
        if has_gaps {
            let mut bm = vec![0u8; col.len().div_ceil(8)];
            for (i, v) in col.iter().enumerate() {
                if !v.is_nan() {
                    bm[i / 8] |= 1 << (i % 8);
                }
            }
            head = bm;
        }
        let deltas = differences(&ints);
        let candidates = [
            (MODE_DELTA, encode_ints(&ints, false)),
            (MODE_DOD, encode_ints(&ints, true)),
            (MODE_VALUES | FLAG_PACKED, encode_packed(&ints, 0)),
            (MODE_DELTA | FLAG_PACKED, encode_packed(&deltas, 1)),
            (MODE_DOD | FLAG_PACKED, encode_packed(&differences(&deltas), 2)),
        ];
        for (mode, body) in candidates {
            if 1 + head.len() + body.len() < best.len() {
                let mut p = vec![mode | flags];
                p.extend_from_slice(&head);
                p.extend(body);
                best = p;
            }
        }
    }
    Some(best)
}

fn decode_column(payload: &[u8], n: usize) -> Result<Vec<f64>, BlockError> {
    let (&head, body) = payload.split_first().ok_or(BlockError::Truncated)?;
    let mode = head & 0b11;
    if head & 0b1000_0000 != 0 {
        return Err(BlockError::Corrupt("column mode"));
    }
    let packed = head & FLAG_PACKED != 0;
    if mode == MODE_XOR && !packed {
        return decode_xor(body, n);
    }
    if mode == MODE_XOR || (mode == MODE_VALUES && !packed) {
        return Err(BlockError::Corrupt("column mode"));
    }
    let k = (head >> 3) & 0b111;
    if k > MAX_SCALE {
        return Err(BlockError::Corrupt("column scale"));
    }
    let (present, body) = if head & FLAG_BITMAP != 0 {
        let len = n.div_ceil(8);
        if body.len() < len {
            return Err(BlockError::Truncated);
        }
        let bm = &body[..len];
        ((0..n).map(|i| bm[i / 8] & (1 << (i % 8)) != 0).collect::<Vec<_>>(), &body[len..])
    } else {
        (vec![true; n], body)
    };
    let count = present.iter().filter(|p| **p).count();
    let ints = if packed {
        decode_packed(body, count, mode)?
    } else {
        decode_ints(body, count, mode == MODE_DOD)?
    };
    let p = pow10(k);
    let mut it = ints.into_iter();
    present
        .into_iter()
        .map(|here| {
            if here {
                it.next().map(|i| i as f64 / p).ok_or(BlockError::Truncated)
            } else {
                Ok(f64::NAN)
            }
        })
        .collect()
}

/// Encodes rows (sorted by strictly increasing timestamp) into a block.
/// `values[j]` of a row belongs to metric index `j`; short rows are padded
/// with missing values.
pub fn encode(rows: &[(i64, &[f64])]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_varint(&mut out, rows.len() as u64);
    let ts: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let tbytes = encode_timestamps(&ts);
    put_varint(&mut out, tbytes.len() as u64);
    out.extend(tbytes);
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut cols = Vec::new();
    let mut col = Vec::with_capacity(rows.len());
    for j in 0..width {
        col.clear();
        col.extend(rows.iter().map(|r| r.1.get(j).copied().unwrap_or(f64::NAN)));
        if let Some(p) = encode_column(&col) {
            cols.push((j, p));
        }
    }
    put_varint(&mut out, cols.len() as u64);
    for (j, p) in &cols {
        put_varint(&mut out, *j as u64);
        put_varint(&mut out, p.len() as u64);
    }
    for (_, p) in cols {
        out.extend(p);
    }
    out
}

/// A parsed block header: timestamps decoded, columns located but not decoded.
#[derive(Debug)]
pub struct BlockView<'a> {
    pub timestamps: Vec<i64>,
    columns: Vec<(usize, &'a [u8])>,
}

impl<'a> BlockView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BlockError> {
        let (&format, _) = bytes.split_first().ok_or(BlockError::Truncated)?;
        if format != FORMAT && format != 1 {
            return Err(BlockError::Format(format));
        }
        let mut pos = 1;
        let n = usize::try_from(get_varint(bytes, &mut pos)?)
            .map_err(|_| BlockError::Corrupt("row count"))?;
        let tlen = get_varint(bytes, &mut pos)? as usize;
        let tend =
            pos.checked_add(tlen).filter(|e| *e <= bytes.len()).ok_or(BlockError::Truncated)?;
        if n > tlen.saturating_mul(8) + 1 {
            return Err(BlockError::Corrupt("row count"));
        }
        let (timestamps, _) = decode_timestamps(&bytes[pos..tend], n)?;
        pos = tend;
        let c = get_varint(bytes, &mut pos)? as usize;
        if c > bytes.len() {
            return Err(BlockError::Corrupt("column count"));
        }
        let mut dir = Vec::with_capacity(c);
        for _ in 0..c {
            let j = get_varint(bytes, &mut pos)? as usize;
            let len = get_varint(bytes, &mut pos)? as usize;
            dir.push((j, len));
        }
        let mut columns = Vec::with_capacity(c);
        for (j, len) in dir {
            let end =
                pos.checked_add(len).filter(|e| *e <= bytes.len()).ok_or(BlockError::Truncated)?;
            columns.push((j, &bytes[pos..end]));
            pos = end;
        }
        Ok(BlockView { timestamps, columns })
    }

    /// Number of stored (not entirely missing) columns.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Decodes the column of metric `index`; `None` if it is absent (all missing).
    pub fn column(&self, index: usize) -> Result<Option<Vec<f64>>, BlockError> {
        match self.columns.iter().find(|(j, _)| *j == index) {
            Some((_, p)) => decode_column(p, self.timestamps.len()).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes every column back into rows of `width` values.
    pub fn rows(&self, width: usize) -> Result<Vec<(i64, Vec<f64>)>, BlockError> {
        let n = self.timestamps.len();
        let width = width.max(self.columns.iter().map(|(j, _)| j + 1).max().unwrap_or(0));
        let mut rows: Vec<(i64, Vec<f64>)> =
            self.timestamps.iter().map(|&t| (t, vec![f64::NAN; width])).collect();
        for (j, p) in &self.columns {
            let col = decode_column(p, n)?;
            for (row, v) in rows.iter_mut().zip(col) {
                row.1[*j] = v;
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(rows: &[(i64, Vec<f64>)]) -> Vec<(i64, Vec<f64>)> {
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let bytes = encode(&refs);
        let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        BlockView::parse(&bytes).unwrap().rows(width).unwrap()
    }

    fn same(a: &[(i64, Vec<f64>)], b: &[(i64, Vec<f64>)]) -> bool {
        let width = a.iter().map(|r| r.1.len()).max().unwrap_or(0);
        a.len() == b.len()
            && a.iter().zip(b).all(|((t1, v1), (t2, v2))| {
                t1 == t2
                    && (0..width).all(|j| {
                        let x = v1.get(j).copied().unwrap_or(f64::NAN);
                        let y = v2.get(j).copied().unwrap_or(f64::NAN);
                        (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
                    })
            })
    }

    #[test]
    fn signed_buckets_roundtrip_edges() {
        let vals = [0, 1, -1, 63, -64, 64, 2047, -2048, 1 << 19, -(1 << 31), i64::MAX, i64::MIN];
        let mut w = BitWriter::new();
        for v in vals {
            put_signed(&mut w, v);
        }
        let b = w.finish();
        let mut r = BitReader::new(&b);
        for v in vals {
            assert_eq!(get_signed(&mut r).unwrap(), v);
        }
    }

    #[test]
    fn regular_counters_and_gauges_compress_below_two_bytes_per_value() {
        // 300 rows at 1 s with a few ms of jitter: a steady counter, a constant,
        // a 2-decimal gauge and a noisy byte counter.
        let mut rows = Vec::new();
        let mut bytes_ctr = 1_000_000_000.0;
        for i in 0..300i64 {
            bytes_ctr += 50_000.0 + ((i * 7919) % 1000) as f64;
            // As parsed from /proc/loadavg text: an exact two-decimal value.
            let load = (50 + i % 17) as f64 / 100.0;
            rows.push((
                1_700_000_000_000 + i * 1000 + (i % 3),
                vec![1000.0 + i as f64 * 100.0, 0.0, load, bytes_ctr],
            ));
        }
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let size = encode(&refs).len();
        let per_value = size as f64 / (300.0 * 4.0);
        assert!(per_value < 2.0, "{per_value} bytes per value");
        assert!(same(&rows, &roundtrip(&rows)));
    }

    #[test]
    fn microsecond_and_nanosecond_counters_in_seconds_are_packed_as_integers() {
        // As the agent reports PSI (µs / 1e6), cgroup CPU time (ns / 1e9)
        // and its own collectors' time (ns / 1e9): a float per value before.
        let mut rng = 12345u64;
        let mut next = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            rng >> 44
        };
        let (mut us, mut ns) = (1_234_567_u64, 98_765_432_101_u64);
        let rows: Vec<(i64, Vec<f64>)> = (0..300)
            .map(|i| {
                us += 20_000 + next() % 1000;
                ns += 30_000 + next() % 1000;
                (i * 1000, vec![us as f64 / 1e6, ns as f64 / 1e9])
            })
            .collect();
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let bytes = encode(&refs);
        // About 10 bits a value of noise; floats took 6 or 7 bytes.
        assert!(bytes.len() < 300 * 2 * 2, "{} bytes", bytes.len());
        assert!(same(&roundtrip(&rows), &rows));
    }

    #[test]
    fn special_values_survive() {
        let rows = vec![
            (-5, vec![f64::NAN, -0.0, f64::INFINITY, 1e300, 0.1 + 0.2]),
            (0, vec![1.0, 0.0, f64::NEG_INFINITY, -1e-300, 3.0]),
            (7, vec![f64::NAN, 5.5, 1.0, f64::MIN_POSITIVE]),
        ];
        assert!(same(&rows, &roundtrip(&rows)));
    }

    #[test]
    fn missing_columns_are_left_out_and_read_back_as_absent() {
        let rows = [(1, vec![f64::NAN, 2.0]), (2, vec![f64::NAN, 3.0])];
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let b = encode(&refs);
        let v = BlockView::parse(&b).unwrap();
        assert_eq!(v.column(0).unwrap(), None);
        assert_eq!(v.column(1).unwrap(), Some(vec![2.0, 3.0]));
        assert_eq!(v.timestamps, vec![1, 2]);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert_eq!(BlockView::parse(&[]).unwrap_err(), BlockError::Truncated);
        assert_eq!(BlockView::parse(&[9]).unwrap_err(), BlockError::Format(9));
        let rows = [(1, vec![1.0, 2.0]), (2, vec![3.0, 4.0])];
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let b = encode(&refs);
        for cut in 0..b.len() {
            if let Ok(v) = BlockView::parse(&b[..cut]) {
                let _ = v.rows(2);
            }
        }
    }

    proptest! {
        #[test]
        fn any_rows_roundtrip_bit_exactly(
            start in any::<i32>(),
            steps in prop::collection::vec(1i64..5000, 1..60),
            width in 0usize..6,
            seed in prop::collection::vec(prop_oneof![any::<f64>(), (-1000i64..1000).prop_map(|i| i as f64 / 100.0), Just(f64::NAN)], 1..400),
        ) {
            let mut t = i64::from(start);
            let mut rows = Vec::new();
            let mut k = 0;
            for s in steps {
                t += s;
                let vals = (0..width).map(|_| { k += 1; seed[k % seed.len()] }).collect();
                rows.push((t, vals));
            }
            prop_assert!(same(&rows, &roundtrip(&rows)));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = BlockView::parse(&bytes) {
                let _ = v.rows(4);
            }
        }
    }

    #[test]
    fn noisy_and_constant_columns_are_bit_packed() {
        // A counter with a noisy rate of about 1,000/s (a delta range of 400:
        // 9 bits packed, 11 with the prefix code), a constant, a gauge of
        // two decimals within ±5.
        let mut rows = Vec::new();
        let mut ctr = 5e9;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as f64
        };
        for i in 0..300i64 {
            ctr += 800.0 + noise(401);
            let gauge = (4000.0 + noise(1000)) / 100.0;
            rows.push((1_700_000_000_000 + i * 1000, vec![ctr, 7.0, gauge]));
        }
        let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let bytes = encode(&refs);
        let view = BlockView::parse(&bytes).unwrap();
        let heads: Vec<u8> = view.columns.iter().map(|(_, p)| p[0]).collect();
        assert!(heads.iter().all(|h| h & FLAG_PACKED != 0), "{heads:?}");
        let sizes: Vec<usize> = view.columns.iter().map(|(_, p)| p.len()).collect();
        // 9 and 10 bits a value; the constant in a few bytes.
        assert!(sizes[0] <= 300 * 9 / 8 + 16 && sizes[2] <= 300 * 10 / 8 + 16, "{sizes:?}");
        assert!(sizes[1] <= 8, "{sizes:?}");
        assert!(same(&rows, &roundtrip(&rows)));
        // With gaps and at the edges of i64.
        let edges = vec![
            (1, vec![i64::MIN as f64, 0.0]),
            (2, vec![f64::NAN, 1.0]),
            (3, vec![i64::MAX as f64, f64::NAN]),
            (4, vec![0.0, 1.0]),
        ];
        assert!(same(&edges, &roundtrip(&edges)));
    }

    #[test]
    fn format_1_blocks_still_decode() {
        // Hand-made format 1 block: 2 rows at t = 1000, 2000; metric 0 in
        // delta mode with the prefix code (values 5, 6).
        let mut w = BitWriter::new();
        w.push(1000, 64);
        put_signed(&mut w, 1000);
        let ts = w.finish();
        let mut col = BitWriter::new();
        put_signed(&mut col, 5);
        put_signed(&mut col, 1);
        let col = col.finish();
        let mut b = vec![1u8, 2, ts.len() as u8];
        b.extend(&ts);
        b.extend([1, 0, 1 + col.len() as u8, MODE_DELTA]);
        b.extend(&col);
        let v = BlockView::parse(&b).unwrap();
        assert_eq!(v.timestamps, vec![1000, 2000]);
        assert_eq!(v.column(0).unwrap(), Some(vec![5.0, 6.0]));
        // Unknown head bits and a packed XOR column are refused.
        assert!(decode_column(&[0b1000_0001, 0], 1).is_err());
        assert!(decode_column(&[MODE_XOR | FLAG_PACKED, 0], 1).is_err());
        assert!(decode_column(&[MODE_VALUES], 1).is_err());
    }
}
