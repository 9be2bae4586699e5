//! The API against its own OpenAPI document, with schemathesis (PyPI):
//! requests generated for every operation from `/api/openapi.json` — valid
//! ones (every check) and invalid ones (no server error, answers as
//! documented) — plus the stateful phase along the document's links,
//! against a live coordinator with a connected agent and a MariaDB server
//! on a one-node testbed (its own network namespace and cgroup, so the
//! faults the generated requests start stay inside it), the token given.
//!
//! The server-sent event stream is left out: it stays open by design.
//! `positive_data_acceptance` is not checked: some valid requests are
//! refused for the coordinator's state, not their shape (nothing collected
//! yet, a workload not prepared), which a schema cannot say.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Command;

use distdiag_testbed::skip;
use distdiag_testbed::testbed::{prerequisites, DbKind, Options, Testbed};

struct Run {
    mode: &'static str,
    operations: u64,
    cases: u64,
    failures: Vec<serde_json::Value>,
    errors: Vec<serde_json::Value>,
    phases: String,
    seconds: f64,
}

fn schemathesis(url: &str, token: &str, mode: &'static str, dir: &std::path::Path) -> Run {
    let checks = match mode {
        "positive" => "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        _ => "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
    };
    let report = dir.join(mode);
    // Through python3, whichever directory pip put the script in.
    let out = Command::new("python3")
        .args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())"])
        .args(["run", &format!("{url}/api/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--mode", mode, "--checks", checks])
        .args(["--max-examples", "5", "--seed", "1", "--request-timeout", "60"])
        .args(["--exclude-path", "/api/anomaly/ranks/stream"])
        .args(["--workers", "1", "--no-color", "--report", "json,har"])
        .arg("--report-json-path")
        .arg(report.join("run.json"))
        .arg("--report-har-path")
        .arg(report.join("requests.har"))
        .output()
        .expect("schemathesis");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let slowest = slowest_requests(&report.join("requests.har"));
    let json = std::fs::read(report.join("run.json")).unwrap_or_else(|e| {
        panic!("no report ({e}):\n{text}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let phases = v["phases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, p)| format!("{k} {}", p["status"].as_str().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ");
    let run = Run {
        mode,
        operations: v["operations"]["tested"].as_u64().unwrap(),
        cases: v["test_cases"]["generated"].as_u64().unwrap(),
        failures: v["failures"].as_array().unwrap().clone(),
        errors: v["errors"].as_array().unwrap().clone(),
        phases,
        seconds: v["running_time"].as_f64().unwrap_or(0.0),
    };
    println!("{mode}: slowest requests: {}", slowest.join(", "));
    assert!(
        run.failures.is_empty() && run.errors.is_empty() && out.status.success(),
        "schemathesis ({mode}) found problems:\n{text}"
    );
    run
}

/// The five slowest requests of the HAR report: "METHOD path ms".
fn slowest_requests(har: &std::path::Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(har).unwrap_or_default()).unwrap_or_default();
    let mut entries: Vec<(f64, String)> = v["log"]["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let url = e["request"]["url"].as_str().unwrap_or("");
            let path =
                url.split_once("//").map_or(url, |(_, r)| r.split_once('/').map_or(r, |(_, p)| p));
            let path: String = path.split('?').next().unwrap_or("").chars().take(60).collect();
            (
                e["time"].as_f64().unwrap_or(0.0),
                format!("{} /{path}", e["request"]["method"].as_str().unwrap_or("?")),
            )
        })
        .collect();
    entries.sort_by(|a, b| b.0.total_cmp(&a.0));
    entries.iter().take(5).map(|(t, r)| format!("{r} {t:.0} ms")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_server_error_and_answers_as_documented() {
    if let Err(why) = prerequisites(DbKind::Mariadb) {
        return skip(&why);
    }
    let installed = Command::new("python3")
        .args(["-c", "import schemathesis"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return skip("schemathesis is not installed (scripts/install-deps.sh installs it)");
    }
    let work = tempfile::Builder::new().prefix("distdiag-st").tempdir_in("/var/tmp").unwrap();
    let mut opts = Options::new(&work.path().join("tb"), DbKind::Mariadb);
    opts.nodes = 1;
    opts.net = 60 + (std::process::id() % 40) as u8;
    opts.table_size = 2000;
    // Generated requests ask for hour-long faults and minute-long waits:
    // short bounds keep the run within minutes (the bounds are checked the
    // same way whatever they are).
    opts.coordinator_toml = "[api]\nprepare_wait_ms = 2000\n\n[faults]\ndefault_duration_ms = 5000\nmax_duration_ms = 15000\nanswer_timeout_ms = 5000\n".into();
    let tb = Testbed::up(&opts).await.unwrap();
    let c = tb.client();
    // Something for the stateful phase and the lookups to find: a trained
    // model needs collected data, which this short run does not make; the
    // nodes, the database and the running workload are there.
    assert_eq!(c.nodes().await.unwrap().nodes.len(), 2, "the agent and the database");
    let url = tb.url("");
    let token = tb.token.clone();
    let dir = work.path().to_owned();
    let runs = tokio::task::spawn_blocking(move || {
        ["positive", "negative"].map(|mode| schemathesis(&url, &token, mode, &dir))
    })
    .await
    .unwrap();
    println!("| mode | operations | generated cases | failures | errors | phases | seconds |");
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} |",
            r.mode,
            r.operations,
            r.cases,
            r.failures.len(),
            r.errors.len(),
            r.phases,
            r.seconds
        );
        assert!(r.operations >= 42, "{} operations tested", r.operations);
    }
    // Whatever the generated requests started, the coordinator still
    // answers and stops it all.
    let stopped = c.stop_fault(None).await.unwrap();
    assert!(stopped.failed.is_empty(), "{stopped:?}");
    c.stop_all_workloads().await.unwrap();
    let problems = tb.down();
    assert!(problems.is_empty(), "{problems:?}");
}
