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
    /// Which token the requests carried: admin, read or none.
    token: &'static str,
    /// Every request's method, path and answer, from the HAR report.
    answers: Vec<(String, String, u16)>,
    operations: u64,
    cases: u64,
    failures: Vec<serde_json::Value>,
    errors: Vec<serde_json::Value>,
    phases: String,
    seconds: f64,
}

fn schemathesis(
    url: &str,
    token: Option<(&'static str, &str)>,
    mode: &'static str,
    dir: &std::path::Path,
) -> Run {
    let checks = match mode {
        "positive" => "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        _ => "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
    };
    let scope = token.map_or("none", |t| t.0);
    let report = dir.join(format!("{mode}-{scope}"));
    // Through python3, whichever directory pip put the script in.
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())"])
        .args(["run", &format!("{url}/api/openapi.json")]);
    if let Some((_, token)) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd
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
    let answers = answers(&report.join("requests.har"));
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
        token: scope,
        answers,
        operations: v["operations"]["tested"].as_u64().unwrap(),
        cases: v["test_cases"]["generated"].as_u64().unwrap(),
        failures: v["failures"].as_array().unwrap().clone(),
        errors: v["errors"].as_array().unwrap().clone(),
        phases,
        seconds: v["running_time"].as_f64().unwrap_or(0.0),
    };
    println!("{mode}, {scope} token: slowest requests: {}", slowest.join(", "));
    assert!(
        run.failures.is_empty() && run.errors.is_empty() && out.status.success(),
        "schemathesis ({mode}, {scope} token) found problems:\n{text}"
    );
    run
}

/// (method, path, status) of every request in the HAR report.
fn answers(har: &std::path::Path) -> Vec<(String, String, u16)> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(har).unwrap_or_default()).unwrap_or_default();
    v["log"]["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let url = e["request"]["url"].as_str().unwrap_or("");
            let path =
                url.split_once("//").map_or(url, |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
            (
                e["request"]["method"].as_str().unwrap_or("?").to_owned(),
                path.split('?').next().unwrap_or("").to_owned(),
                e["response"]["status"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
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
    // same way whatever they are). Reads need a token, as on a network.
    opts.coordinator_toml = "[api]\nprepare_wait_ms = 2000\nrequire_token_for_reads = true\n\n[faults]\ndefault_duration_ms = 5000\nmax_duration_ms = 15000\nanswer_timeout_ms = 5000\n".into();
    let tb = Testbed::up(&opts).await.unwrap();
    let c = tb.client();
    // Something for the stateful phase and the lookups to find: a trained
    // model needs collected data, which this short run does not make; the
    // nodes, the database and the running workload are there.
    assert_eq!(c.nodes().await.unwrap().nodes.len(), 2, "the agent and the database");
    // A read token, made the way an operator makes one.
    let made = Command::new(distdiag_testbed::bin("distdiag-coordinator"))
        .arg("--config")
        .arg(tb.state.dir.join("coordinator.toml"))
        .arg("--data-dir")
        .arg(tb.state.dir.join("coordinator"))
        .args(["token", "create", "--name", "schemathesis", "--scope", "read"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let read_token = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1500)); // reread within a second
    let url = tb.url("");
    let token = tb.token.clone();
    let dir = work.path().to_owned();
    let runs = tokio::task::spawn_blocking(move || {
        [
            schemathesis(&url, Some(("admin", &token)), "positive", &dir),
            schemathesis(&url, Some(("admin", &token)), "negative", &dir),
            schemathesis(&url, Some(("read", &read_token)), "positive", &dir),
            schemathesis(&url, None, "positive", &dir),
        ]
    })
    .await
    .unwrap();
    println!(
        "| mode | token | operations | generated cases | failures | errors | phases | seconds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.mode,
            r.token,
            r.operations,
            r.cases,
            r.failures.len(),
            r.errors.len(),
            r.phases,
            r.seconds
        );
        assert!(r.operations >= 42, "{} operations tested", r.operations);
    }
    // The refusals, request by request: a read token reads everything and
    // is refused (403) on every mutating request; without a token every
    // request for data is refused (401), only /health and the document
    // answer.
    let (read, none) = (&runs[2], &runs[3]);
    let data = |path: &str| {
        (path.starts_with("/api/") && path != "/api/openapi.json") || path == "/metrics"
    };
    let mut tally = std::collections::BTreeMap::<(&str, &str, u16), usize>::new();
    for (run, (method, path, status)) in
        [read, none].iter().flat_map(|r| r.answers.iter().map(move |a| (r, a)))
    {
        let expected = match (run.token, method.as_str(), data(path)) {
            (_, _, false) => *status < 400,
            ("read", "GET", true) => ![401, 403].contains(status),
            ("read", _, true) => *status == 403,
            (_, _, true) => *status == 401,
        };
        assert!(expected, "{} token: {method} {path} answered {status}", run.token);
        let kind = if method == "GET" { "read" } else { "mutating" };
        *tally.entry((run.token, kind, *status)).or_default() += 1;
    }
    for ((token, kind, status), n) in &tally {
        println!("{token} token, {kind} requests: {n} answered {status}");
    }
    // ... and every documented operation was among them.
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let matches = |template: &str, path: &str| {
        let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
    };
    let mut refused = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().map(|m| m.to_uppercase()) {
            if !data(template) || template.ends_with("/stream") {
                continue;
            }
            for (run, status) in [(none, 401), (read, 403)] {
                if run.token == "read" && method == "GET" {
                    continue;
                }
                let seen = run
                    .answers
                    .iter()
                    .any(|(m, p, s)| *m == method && matches(template, p) && *s == status);
                assert!(seen, "{method} {template}: no {status} with the {} token", run.token);
                refused += 1;
            }
        }
    }
    println!("{refused} operation and token pairs refused as documented");
    // Whatever the generated requests started, the coordinator still
    // answers and stops it all.
    let stopped = c.stop_fault(None).await.unwrap();
    assert!(stopped.failed.is_empty(), "{stopped:?}");
    c.stop_all_workloads().await.unwrap();
    let problems = tb.down();
    assert!(problems.is_empty(), "{problems:?}");
}
