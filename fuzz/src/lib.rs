//! The fuzz harnesses: what distdiag reads from outside, on arbitrary bytes.
//!
//! - [`frames`]: an agent's QUIC stream as the coordinator reads it — the
//!   frame decoder fed in chunks, the hello, then messages — through the
//!   very checks the ingest runs ([`Inbound`]). The coordinator closes a
//!   connection at its first refused frame; so does the harness.
//! - [`dataset`]: the four files of the dataset export format through the
//!   importer, then what the diagnosis reads from an imported dataset.
//!
//! A harness panics only on a bug: a crash, or an accepted message that
//! does not survive re-encoding. `make fuzz` runs them under AFL++ (`cargo
//! afl`), `make test` briefly; every input of `corpus/` and `regressions/`
//! (each a crash once found, kept) runs in the crate's tests.

// A harness reports a bug by panicking: that is what the fuzzer detects.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use distdiag_common::codec::{decode_payload, encode_frame, HEADER_LEN};
use distdiag_common::inbound::Inbound;
use distdiag_common::proto::{AgentMsg, PROTOCOL_VERSION};
use distdiag_common::FrameDecoder;
use distdiag_dataset::Dataset;

/// Frames larger than this are refused. Smaller than the coordinator's
/// default (8 MiB) so that the refusal is in reach of the fuzzer.
pub const MAX_FRAME: u32 = 1 << 16;
/// The node of the client certificate.
pub const NODE: &str = "n1";
/// "Now" for the clock-skew check: fixed, so that every run is repeatable.
pub const NOW_MS: i64 = 1_800_000_000_000;

/// First byte: the size of the chunks the stream arrives in (1 to 256
/// bytes); the rest: the stream.
pub fn frames(data: &[u8]) {
    let Some((&k, stream)) = data.split_first() else { return };
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut inbound = Inbound::new(NODE, MAX_FRAME);
    let mut greeted = false;
    for piece in stream.chunks(usize::from(k) + 1) {
        dec.push(piece);
        loop {
            let payload = match dec.next_frame() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => return,
            };
            assert!(payload.len() <= MAX_FRAME as usize, "a frame over the limit was let through");
            let checked = if greeted {
                inbound.message(&payload, NOW_MS)
            } else {
                inbound.hello(&payload).map(AgentMsg::Hello)
            };
            let Ok(msg) = checked else { return };
            greeted = true;
            if let AgentMsg::Hello(h) = &msg {
                assert_eq!(h.node, NODE);
                assert_eq!(h.version, PROTOCOL_VERSION);
            }
            // What was accepted encodes, and decodes to what encodes the same.
            let frame = encode_frame(&msg, u32::MAX).expect("an accepted message encodes");
            let again: AgentMsg = decode_payload(&frame[HEADER_LEN..], u32::MAX)
                .expect("a re-encoded message decodes");
            assert_eq!(
                encode_frame(&again, u32::MAX).expect("encodes"),
                frame,
                "a message changed through encode and decode"
            );
        }
    }
}

/// The input cut at its first three NUL bytes: manifest.json, series.csv,
/// labels.csv, cases.csv (as text, invalid UTF-8 replaced).
pub fn dataset(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == 0).map(String::from_utf8_lossy);
    let mut next = || parts.next().unwrap_or_default();
    let (manifest, series, labels, cases) = (next(), next(), next(), next());
    let Ok((ds, _findings)) = Dataset::from_texts(&manifest, &series, &labels, &cases) else {
        return;
    };
    let _ = ds.findings();
    let _ = ds.truths();
    for (_, frame) in ds.period_frames() {
        for node in &frame.nodes {
            assert!(
                node.metrics.values().all(|v| v.len() == frame.len),
                "a frame's series and its length disagree"
            );
        }
    }
}

/// The seed corpus, generated: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use distdiag_common::fault::FaultState;
    use distdiag_common::proto::{Batch, Capabilities, Hello, HostFacts, Row};
    use distdiag_common::MetricDesc;
    let frame = |m: &AgentMsg| encode_frame(m, MAX_FRAME).expect("a seed encodes");
    let catalog =
        vec![MetricDesc::gauge("cpu.user", "percent"), MetricDesc::counter("disk.reads", "count")];
    let hello = AgentMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        node: NODE.into(),
        host: HostFacts::default(),
        capabilities: Capabilities::default(),
        catalog: catalog.clone(),
        interval_ms: 1000,
    });
    let batch = AgentMsg::Batch(Batch {
        seq: 7,
        rows: vec![
            Row { ts_ms: NOW_MS - 2000, values: vec![12.5, 3.0] },
            Row { ts_ms: NOW_MS - 1000, values: vec![f64::NAN] },
        ],
    });
    let mut grown = catalog;
    grown.push(MetricDesc::gauge("mem.used", "bytes"));
    let messages = [
        batch,
        AgentMsg::Catalog(grown),
        AgentMsg::Heartbeat { ts_ms: NOW_MS },
        AgentMsg::FaultStatus { id: "f1".into(), state: FaultState::Applied, detail: "ok".into() },
    ];
    let mut out = Vec::new();
    // Each message after the hello, whole and in 3-byte chunks; the hello alone.
    for (i, m) in messages.iter().enumerate() {
        for chunk in [255u8, 2] {
            let mut data = vec![chunk];
            data.extend(frame(&hello));
            data.extend(frame(m));
            out.push(("frames", format!("hello-then-{i}-chunk-{chunk}"), data));
        }
    }
    let mut all = vec![255u8];
    all.extend(frame(&hello));
    for m in &messages {
        all.extend(frame(m));
    }
    out.push(("frames", "hello-then-all".into(), all));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// This package's directory: as cargo says when it runs the test (a
    /// build reused from a checkout at another path has that path in its
    /// `env!`), else as compiled.
    fn here() -> PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
    }

    fn dataset_seed() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        distdiag_dataset::testing::two_node_cpu_case().export(dir.path()).unwrap();
        let mut out = Vec::new();
        for (i, f) in ["manifest.json", "series.csv", "labels.csv", "cases.csv"].iter().enumerate()
        {
            if i > 0 {
                out.push(0);
            }
            out.extend(std::fs::read(dir.path().join(f)).unwrap());
        }
        out
    }

    fn all_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        let mut s = seeds();
        s.push(("dataset", "two-node-cpu-case".into(), dataset_seed()));
        s
    }

    /// The committed seed corpus is what [`seeds`] makes
    /// (`DISTDIAG_BLESS=1` writes it).
    #[test]
    fn the_seed_corpus_is_current() {
        for (target, name, bytes) in all_seeds() {
            let path = here().join("corpus").join(target).join(&name);
            if std::env::var_os("DISTDIAG_BLESS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is stale: DISTDIAG_BLESS=1 rewrites it",
                path.display()
            );
        }
    }

    fn inputs(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every seed and every input that once crashed a harness runs clean.
    #[test]
    fn corpus_and_regressions_run_clean() {
        let mut n = 0;
        for (target, run) in [("frames", frames as fn(&[u8])), ("dataset", dataset)] {
            for kind in ["corpus", "regressions"] {
                for input in inputs(&here().join(kind).join(target)) {
                    run(&std::fs::read(&input).unwrap());
                    n += 1;
                }
            }
        }
        assert!(n >= 10, "only {n} inputs");
    }

    /// The seeds go deep: every message kind is accepted after the hello,
    /// so the fuzzer starts from inputs that reach every check.
    #[test]
    fn seeds_reach_every_message() {
        for (target, name, bytes) in seeds() {
            assert_eq!(target, "frames");
            let mut dec = FrameDecoder::new(MAX_FRAME);
            dec.push(&bytes[1..]);
            let mut inbound = Inbound::new(NODE, MAX_FRAME);
            inbound.hello(&dec.next_frame().unwrap().unwrap()).unwrap();
            while let Some(p) = dec.next_frame().unwrap() {
                inbound.message(&p, NOW_MS).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}
