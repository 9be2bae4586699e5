//! Length-prefixed bincode frames with a hard size limit.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, a
//! bincode encoding (varint integers, little endian) of one message. The
//! decoder is sans-I/O: feed it bytes in whatever chunks the transport hands
//! out and take complete payloads back; a length above the limit is an error
//! before any of the payload is buffered.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::proto::{AgentMsg, Hello, ProtocolError, PROTOCOL_VERSION};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u32 },
    #[error("cannot decode frame: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("protocol version {theirs} is not supported (this side speaks {ours})")]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("the first message must be a hello")]
    NotHello,
}

impl From<CodecError> for ProtocolError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::FrameTooLarge { len, max } => ProtocolError::FrameTooLarge { len, max },
            CodecError::VersionMismatch { ours, theirs } => {
                ProtocolError::VersionMismatch { ours, theirs }
            }
            CodecError::NotHello => {
                ProtocolError::Unexpected("the first message must be a hello".into())
            }
            CodecError::Decode(m) | CodecError::Encode(m) => ProtocolError::Malformed(m),
        }
    }
}

fn options(max: u32) -> impl Options {
    bincode::DefaultOptions::new().with_limit(u64::from(max))
}

/// Encodes `msg` as one frame (header included).
pub fn encode_frame<T: Serialize>(msg: &T, max: u32) -> Result<Vec<u8>, CodecError> {
    let payload = options(max).serialize(msg).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => CodecError::FrameTooLarge { len: u64::MAX, max },
        other => CodecError::Encode(other.to_string()),
    })?;
    let len = u32::try_from(payload.len())
        .map_err(|_| CodecError::FrameTooLarge { len: payload.len() as u64, max })?;
    if len > max {
        return Err(CodecError::FrameTooLarge { len: u64::from(len), max });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes one payload (without header). Trailing bytes are an error.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8], max: u32) -> Result<T, CodecError> {
    options(max).deserialize(payload).map_err(|e| CodecError::Decode(e.to_string()))
}

/// Decodes the first payload of a connection, which must be a hello of this
/// protocol version. The version is read before the rest of the message, so a
/// peer speaking another version gets [`CodecError::VersionMismatch`] even when
/// the remainder of its hello has a different shape.
pub fn decode_hello(payload: &[u8], max: u32) -> Result<Hello, CodecError> {
    let head: (u32, u16) = options(max)
        .allow_trailing_bytes()
        .deserialize(payload)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if head.0 != 0 {
        return Err(CodecError::NotHello);
    }
    if head.1 != PROTOCOL_VERSION {
        return Err(CodecError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: head.1 });
    }
    match decode_payload::<AgentMsg>(payload, max)? {
        AgentMsg::Hello(h) => Ok(h),
        _ => Err(CodecError::NotHello),
    }
}

/// Incremental frame splitter.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(max: u32) -> Self {
        FrameDecoder { max, buf: Vec::new() }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next complete payload, if one is buffered. A header announcing
    /// more than the limit is an error as soon as the header is complete.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > self.max {
            return Err(CodecError::FrameTooLarge { len: u64::from(len), max: self.max });
        }
        let total = HEADER_LEN + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MetricDesc, MetricKind};
    use crate::proto::*;
    use proptest::prelude::*;

    fn hello(version: u16) -> Hello {
        Hello {
            version,
            node: "n1".into(),
            host: HostFacts {
                hostname: "h".into(),
                kernel: "6.1".into(),
                cpus: 2,
                mem_total_bytes: 1 << 30,
                boot_time_s: 1,
                agent_version: "0.1.0".into(),
            },
            capabilities: Capabilities {
                cgroup: CgroupVersion::V1,
                net_admin: false,
                fault_backends: vec![],
                missing: vec![],
            },
            catalog: vec![MetricDesc {
                name: "cpu.user".into(),
                kind: MetricKind::Counter,
                unit: "seconds".into(),
            }],
            interval_ms: 1000,
        }
    }

    #[test]
    fn hello_roundtrips_and_version_is_checked_first() {
        let f = encode_frame(&AgentMsg::Hello(hello(PROTOCOL_VERSION)), DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            decode_hello(&f[HEADER_LEN..], DEFAULT_MAX_FRAME).unwrap(),
            hello(PROTOCOL_VERSION)
        );
        let f = encode_frame(&AgentMsg::Hello(hello(7)), DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            decode_hello(&f[HEADER_LEN..], DEFAULT_MAX_FRAME),
            Err(CodecError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: 7 })
        );
        // A future hello whose tail we cannot parse still yields the version error.
        let mut p = f[HEADER_LEN..HEADER_LEN + 2].to_vec();
        p.extend_from_slice(&[0xff; 3]);
        assert!(matches!(
            decode_hello(&p, DEFAULT_MAX_FRAME),
            Err(CodecError::VersionMismatch { theirs: 7, .. })
        ));
        let b = encode_frame(&AgentMsg::Heartbeat { ts_ms: 5 }, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(decode_hello(&b[HEADER_LEN..], DEFAULT_MAX_FRAME), Err(CodecError::NotHello));
    }

    #[test]
    fn oversized_frames_are_refused_on_both_sides() {
        let big = AgentMsg::Batch(Batch {
            seq: 1,
            rows: vec![Row { ts_ms: 1, values: vec![1.5; 1000] }],
        });
        assert!(matches!(encode_frame(&big, 100), Err(CodecError::FrameTooLarge { .. })));
        let mut d = FrameDecoder::new(100);
        d.push(&101u32.to_be_bytes());
        assert_eq!(d.next_frame(), Err(CodecError::FrameTooLarge { len: 101, max: 100 }));
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let r = decode_payload::<AgentMsg>(&[0xde, 0xad, 0xbe, 0xef, 0x01], DEFAULT_MAX_FRAME);
        assert!(matches!(r, Err(CodecError::Decode(_))));
        // Trailing bytes after a valid message are refused too.
        let mut f = encode_frame(&AgentMsg::Heartbeat { ts_ms: 5 }, DEFAULT_MAX_FRAME).unwrap();
        f.push(0);
        assert!(decode_payload::<AgentMsg>(&f[HEADER_LEN..], DEFAULT_MAX_FRAME).is_err());
    }

    fn arb_row() -> impl Strategy<Value = Row> {
        (any::<i64>(), prop::collection::vec(any::<f64>(), 0..40))
            .prop_map(|(ts_ms, values)| Row { ts_ms, values })
    }

    fn arb_msg() -> impl Strategy<Value = AgentMsg> {
        prop_oneof![
            (any::<u64>(), prop::collection::vec(arb_row(), 0..8))
                .prop_map(|(seq, rows)| AgentMsg::Batch(Batch { seq, rows })),
            any::<i64>().prop_map(|ts_ms| AgentMsg::Heartbeat { ts_ms }),
            ("[a-z]{1,12}", "[a-z]{0,8}")
                .prop_map(|(n, u)| AgentMsg::Catalog(vec![MetricDesc::gauge(n, &u)])),
        ]
    }

    fn same_bits(a: &AgentMsg, b: &AgentMsg) -> bool {
        // Compare floats by bit pattern so NaN payloads must survive too.
        match (a, b) {
            (AgentMsg::Batch(x), AgentMsg::Batch(y)) => {
                x.seq == y.seq
                    && x.rows.len() == y.rows.len()
                    && x.rows.iter().zip(&y.rows).all(|(r, s)| {
                        r.ts_ms == s.ts_ms
                            && r.values.len() == s.values.len()
                            && r.values
                                .iter()
                                .zip(&s.values)
                                .all(|(p, q)| p.to_bits() == q.to_bits())
                    })
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn frames_roundtrip_through_any_chunking(msgs in prop::collection::vec(arb_msg(), 1..6), cuts in prop::collection::vec(1usize..64, 1..20)) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend(encode_frame(m, DEFAULT_MAX_FRAME).unwrap());
            }
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < wire.len() {
                let n = cuts[i % cuts.len()].min(wire.len() - pos);
                d.push(&wire[pos..pos + n]);
                pos += n;
                i += 1;
                while let Some(p) = d.next_frame().unwrap() {
                    got.push(decode_payload::<AgentMsg>(&p, DEFAULT_MAX_FRAME).unwrap());
                }
            }
            prop_assert_eq!(d.buffered(), 0);
            prop_assert_eq!(got.len(), msgs.len());
            for (a, b) in msgs.iter().zip(&got) {
                prop_assert!(same_bits(a, b));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload::<AgentMsg>(&bytes, DEFAULT_MAX_FRAME);
            let _ = decode_payload::<CoordMsg>(&bytes, DEFAULT_MAX_FRAME);
            let _ = decode_hello(&bytes, DEFAULT_MAX_FRAME);
        }
    }
}
