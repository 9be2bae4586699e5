//! Bad flags and bad configuration: a clear message and exit code 64, before
//! anything is bound or written.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Command;

use distdiag_testbed::{bin, free_ports, make_certs};

fn run(bin_name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin(bin_name)).args(args).env("NO_COLOR", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn coordinator_refuses_bad_flags_and_config_with_64() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "bogus = 1\n").unwrap();
    let invalid = tmp.path().join("invalid.toml");
    std::fs::write(&invalid, "[ingest]\nidle_timeout_ms = 1\n").unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    for (args, needle) in [
        (vec!["--api-listen", "nope"], "invalid value"),
        (vec!["--bogus"], "unexpected argument"),
        (vec!["-c", "/nonexistent/x.toml"], "cannot read"),
        (vec!["-c", bad.to_str().unwrap()], "unknown field"),
        (vec!["-c", invalid.to_str().unwrap()], "idle_timeout_ms"),
        (vec!["--data-dir", d], "cert init"),
    ] {
        let (code, out) = run("distdiag-coordinator", &args);
        assert_eq!(code, 64, "{args:?}: {out}");
        assert!(out.contains(needle), "{args:?}: {out}");
    }
    // Nothing was created for the refused run.
    assert!(!data.exists());
    assert_eq!(run("distdiag-coordinator", &["--help"]).0, 0);
    let (code, out) = run("distdiag-coordinator", &["print-default-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("[ingest]"));
}

#[test]
fn coordinator_check_config_accepts_a_complete_setup() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(&tmp.path().join("certs"), &[]);
    let (api, quic) = free_ports();
    let (code, out) = run(
        "distdiag-coordinator",
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--api-listen",
            &api.to_string(),
            "--ingest-listen",
            &quic.to_string(),
            "check-config",
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn agent_refuses_bad_flags_and_config_with_64() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "interval_ms = 5\n").unwrap();
    for (args, needle) in [
        (vec!["--coordinator", "nohost"], "host:port"),
        (vec!["--nope"], "unexpected argument"),
        (vec!["-c", bad.to_str().unwrap()], "interval_ms"),
        (vec!["--node", "bad name"], "node name"),
        (vec!["--certs", "/nonexistent", "--node", "n1", "run"], "does not exist"),
    ] {
        let (code, out) = run("distdiag-agent", &args);
        assert_eq!(code, 64, "{args:?}: {out}");
        assert!(out.contains(needle), "{args:?}: {out}");
    }
    let (code, out) = run("distdiag-agent", &["collect-once"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["mem.total"].as_f64().unwrap() > 0.0);
}

#[test]
fn dataset_filter_drops_a_types_cases_and_refuses_to_overwrite() {
    let fixture =
        distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("fixtures/campaign-mariadb");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("without-loss");
    let (code, text) = run(
        "distdiag",
        &[
            "dataset",
            "filter",
            fixture.to_str().unwrap(),
            "--without-type",
            "network_loss",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let labels = |dir: &std::path::Path| std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    let cases = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cases.csv")).unwrap().lines().count()
    };
    assert!(labels(&fixture).contains("network_loss"));
    assert!(!labels(&out).contains("network_loss"), "{}", labels(&out));
    assert!(labels(&out).contains("cpu_stress"));
    let dropped: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("network_loss: ")?.split(' ').next()?.parse().ok())
        .unwrap();
    assert!(dropped > 0);
    assert_eq!(cases(&out), cases(&fixture) - dropped, "{text}");
    // A non-empty output directory is refused before anything is written; so is no type.
    let (code, text) = run(
        "distdiag",
        &[
            "dataset",
            "filter",
            fixture.to_str().unwrap(),
            "--without-type",
            "cpu_stress",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("not empty"), "{text}");
    assert!(labels(&out).contains("cpu_stress"));
    let (code, text) = run(
        "distdiag",
        &[
            "dataset",
            "filter",
            fixture.to_str().unwrap(),
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("--without-type"), "{text}");
}

/// The worked example of docs/dataset-format.md: a dataset in RCAEval's
/// layout converted by scripts/convert-rcaeval.py reads back with its
/// nodes, cases, groups and labels; a bad line is named by file and line.
#[test]
fn an_rcaeval_layout_converts_and_checks() {
    let root = distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("converted");
    let conv = std::process::Command::new("python3")
        .arg(root.join("../scripts/convert-rcaeval.py"))
        .arg(root.join("fixtures/rcaeval-sample"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let (code, text) = run("distdiag", &["dataset", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("3 nodes, 3 metrics, 3 cases (2 groups), 3 labels"), "{text}");
    for kind in ["cpu_stress: 1", "memory_stress: 1", "network_delay: 1"] {
        assert!(text.contains(kind), "{kind}: {text}");
    }
    // A label on a node without series is reported, not dropped silently.
    let labels = out.join("labels.csv");
    let mut text_labels = std::fs::read_to_string(&labels).unwrap();
    text_labels.push_str("cartservice_cpu-1,\"pay,ment\",cpu_stress,1692569250000,1692569260000\n");
    std::fs::write(&labels, &text_labels).unwrap();
    let (code, text) = run("distdiag", &["dataset", "check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("warning: 1 label(s) on node \"pay,ment\""), "{text}");
    // A bad number: file and line.
    text_labels.push_str("cartservice_cpu-1,cartservice,cpu_stress,soon,1692569260000\n");
    std::fs::write(&labels, &text_labels).unwrap();
    let (code, text) = run("distdiag", &["dataset", "check", out.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(text.contains("labels.csv:6"), "{text}");
}
