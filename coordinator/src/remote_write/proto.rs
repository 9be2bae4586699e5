//! The Prometheus remote-write 1.0 message (`prometheus.WriteRequest`),
//! encoded by hand: four messages, two field types, and a series' labels
//! encoded once when its node's catalog is learnt rather than per send.
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }  // ms
//! ```

/// Appends `v` as a protobuf varint.
pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field (`tag` already holds its wire type 2).
fn bytes_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The encoded `labels` fields of a TimeSeries. Labels must come sorted by
/// name, without duplicates (receivers refuse anything else).
pub(super) fn encode_labels(labels: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut label = Vec::new();
    for (name, value) in labels {
        label.clear();
        bytes_field(&mut label, 0x0A, name.as_bytes());
        bytes_field(&mut label, 0x12, value.as_bytes());
        bytes_field(&mut out, 0x0A, &label);
    }
    out
}

/// Appends one TimeSeries (field 1 of WriteRequest) with pre-encoded
/// labels and `(timestamp ms, value)` samples.
pub(super) fn push_series(out: &mut Vec<u8>, labels: &[u8], samples: &[(i64, f64)]) {
    let mut body = Vec::with_capacity(labels.len() + samples.len() * 22);
    body.extend_from_slice(labels);
    let mut sample = Vec::with_capacity(20);
    for (ts, v) in samples {
        sample.clear();
        sample.push(0x09);
        sample.extend_from_slice(&v.to_le_bytes());
        sample.push(0x10);
        // int64: negative values as their two's complement, ten bytes.
        varint(&mut sample, *ts as u64);
        bytes_field(&mut body, 0x12, &sample);
    }
    bytes_field(out, 0x0A, &body);
}

#[cfg(test)]
pub(crate) mod decode {
    //! A decoder for the tests: what a receiver reads back.

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// (tag, payload) of each length-delimited or fixed field of `b`.
    fn fields(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let tag = b[i];
            i += 1;
            match tag & 7 {
                2 => {
                    let n = varint(b, &mut i) as usize;
                    out.push((tag, b[i..i + n].to_vec()));
                    i += n;
                }
                1 => {
                    out.push((tag, b[i..i + 8].to_vec()));
                    i += 8;
                }
                0 => {
                    let v = varint(b, &mut i);
                    out.push((tag, v.to_le_bytes().to_vec()));
                }
                w => panic!("unexpected wire type {w}"),
            }
        }
        out
    }

    pub(crate) type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

    pub(crate) fn write_request(b: &[u8]) -> Vec<Series> {
        fields(b)
            .into_iter()
            .map(|(tag, ts)| {
                assert_eq!(tag, 0x0A);
                let (mut labels, mut samples) = (Vec::new(), Vec::new());
                for (tag, f) in fields(&ts) {
                    let parts = fields(&f);
                    match tag {
                        0x0A => {
                            let s = |k: usize| String::from_utf8(parts[k].1.clone()).unwrap();
                            labels.push((s(0), s(1)));
                        }
                        0x12 => {
                            let v = f64::from_le_bytes(parts[0].1[..8].try_into().unwrap());
                            let t = u64::from_le_bytes(parts[1].1[..8].try_into().unwrap()) as i64;
                            samples.push((t, v));
                        }
                        t => panic!("unexpected TimeSeries field {t}"),
                    }
                }
                (labels, samples)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_decodes_to_what_was_encoded() {
        let labels = vec![
            ("__name__".to_string(), "distdiag_cpu_user_seconds_total".to_string()),
            ("cpu".to_string(), "cpu0".to_string()),
            ("node".to_string(), "n1".to_string()),
        ];
        let mut req = Vec::new();
        let samples = [(1_700_000_000_123, 0.25), (-5, f64::MAX), (0, -1e-300)];
        push_series(&mut req, &encode_labels(&labels), &samples);
        push_series(&mut req, &encode_labels(&labels[..1]), &[(1, 2.0)]);
        let back = decode::write_request(&req);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, labels);
        assert_eq!(back[0].1, samples);
        assert_eq!(back[1], (labels[..1].to_vec(), vec![(1, 2.0)]));
    }

    #[test]
    fn fields_are_laid_out_as_the_protobuf_wire_format_says() {
        // Label{name:"a", value:"b"} in TimeSeries.labels, Sample{1.0, 150}.
        let mut req = Vec::new();
        push_series(&mut req, &encode_labels(&[("a".into(), "b".into())]), &[(150, 1.0)]);
        let sample = [&[0x09][..], &1.0f64.to_le_bytes(), &[0x10, 0x96, 0x01]].concat();
        let series = [&[0x0A, 6, 0x0A, 1, b'a', 0x12, 1, b'b', 0x12, 12][..], &sample].concat();
        let expected = [&[0x0A, series.len() as u8][..], &series].concat();
        assert_eq!(req, expected);
    }
}
