//! Fails when the wire format changes by accident: fixed messages must encode
//! to the committed bytes. After an intended change (with a protocol version
//! bump), regenerate with `DISTDIAG_BLESS=1 cargo test -p distdiag-common --test wire_format`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use distdiag_common::catalog::MetricDesc;
use distdiag_common::codec::{decode_payload, encode_frame, HEADER_LEN};
use distdiag_common::fault::{FaultSpec, MemorySize};
use distdiag_common::proto::*;

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let hello = AgentMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        node: "node-1".into(),
        host: HostFacts {
            hostname: "db1".into(),
            kernel: "6.1.0".into(),
            cpus: 8,
            mem_total_bytes: 16 << 30,
            boot_time_s: 1_700_000_000,
            agent_version: "0.1.0".into(),
        },
        capabilities: Capabilities {
            cgroup: CgroupVersion::V2,
            net_admin: true,
            fault_backends: vec![FaultBackend {
                kind: "network_delay".into(),
                mechanism: "nfqueue".into(),
            }],
            missing: vec![MissingBackend {
                kind: "network_bandwidth".into(),
                reason: "tc is not installed".into(),
            }],
        },
        catalog: vec![
            MetricDesc::counter("cpu.user", "seconds"),
            MetricDesc::gauge("mem.available", "bytes"),
        ],
        interval_ms: 1000,
    });
    let batch = AgentMsg::Batch(Batch {
        seq: 42,
        rows: vec![
            Row { ts_ms: 1_700_000_000_000, values: vec![12.5, 1024.0] },
            Row { ts_ms: 1_700_000_001_000, values: vec![13.25, f64::NAN] },
        ],
    });
    let ack = CoordMsg::Ack { seq: 42 };
    let refused = CoordMsg::Refused(ProtocolError::VersionMismatch { ours: 1, theirs: 2 });
    let apply = CoordMsg::ApplyFault {
        id: "f1".into(),
        spec: FaultSpec::MemoryStress { size: MemorySize::Bytes(256 << 20) },
        deadline_ms: 1_700_000_060_000,
    };
    let max = DEFAULT_MAX_FRAME;
    vec![
        ("hello", encode_frame(&hello, max).unwrap()),
        ("batch", encode_frame(&batch, max).unwrap()),
        ("ack", encode_frame(&ack, max).unwrap()),
        ("refused", encode_frame(&refused, max).unwrap()),
        ("apply_fault", encode_frame(&apply, max).unwrap()),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn wire_bytes_match_the_golden_fixture() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join(format!("tests/fixtures/wire_v{PROTOCOL_VERSION}.txt"));
    let now: String = fixtures().iter().map(|(n, b)| format!("{n} {}\n", hex(b))).collect();
    if std::env::var_os("DISTDIAG_BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("golden fixture present");
    assert_eq!(now, golden, "wire format changed: bump PROTOCOL_VERSION and re-bless on purpose");
}

#[test]
fn golden_bytes_decode_back() {
    for (name, frame) in fixtures() {
        let p = &frame[HEADER_LEN..];
        let ok = if matches!(name, "hello" | "batch") {
            decode_payload::<AgentMsg>(p, DEFAULT_MAX_FRAME).is_ok()
        } else {
            decode_payload::<CoordMsg>(p, DEFAULT_MAX_FRAME).is_ok()
        };
        assert!(ok, "{name} does not decode");
    }
}
