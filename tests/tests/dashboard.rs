//! The dashboard: its committed build is what its sources build to, and in
//! Debian's Chromium (driven by playwright-core, tests/web/dashboard.mjs)
//! every panel shows real data from a coordinator with an agent and a
//! MariaDB server — a fault started from the page is active and drawn as a
//! band on a chart, then stopped; a workload prepared and started shows
//! live TPS; a training run started from the page ends with an active
//! model; every control has a label and is reachable by keyboard.
//! Screenshots of every panel are written to
//! `$CARGO_TARGET_DIR/dashboard-screenshots/`.

// Runs npm, node and the coordinator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use distdiag_api::faults::{DurationArg, StartRequest};
use distdiag_testbed::db::DbServer;
use distdiag_testbed::*;
use distdiag_workload::db::DialectKind;

fn root() -> PathBuf {
    distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn npm_ci(dir: &Path) -> bool {
    if dir.join("node_modules").is_dir() {
        return true;
    }
    Command::new("npm")
        .current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund"])
        .status()
        .is_ok_and(|s| s.success())
}

fn node_available() -> bool {
    Command::new("node").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn the_committed_build_is_what_the_sources_build_to() {
    if !node_available() {
        return skip("node is missing");
    }
    let web = root().join("coordinator/web");
    assert!(npm_ci(&web), "npm ci in coordinator/web failed");
    let out = tempfile::tempdir().unwrap();
    let schema = out.path().join("schema.d.ts");
    let gen = Command::new("npx")
        .current_dir(&web)
        .args(["openapi-typescript", "../../docs/openapi.json", "-o"])
        .arg(&schema)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    assert_eq!(
        std::fs::read_to_string(&schema).unwrap(),
        std::fs::read_to_string(web.join("src/schema.d.ts")).unwrap(),
        "src/schema.d.ts is not the API's: cd coordinator/web && npm run build"
    );
    let tsc = Command::new("npx").current_dir(&web).args(["tsc", "--noEmit"]).output().unwrap();
    assert!(
        tsc.status.success(),
        "the dashboard does not type-check against the API:\n{}",
        String::from_utf8_lossy(&tsc.stdout)
    );
    let dist = out.path().join("dist");
    let build = Command::new("npx")
        .current_dir(&web)
        .args(["vite", "build", "--outDir"])
        .arg(&dist)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    for f in ["index.html", "app.js", "app.css"] {
        let (a, b) = (
            std::fs::read(dist.join(f)).unwrap(),
            std::fs::read(web.join("dist").join(f)).unwrap(),
        );
        assert!(a == b, "coordinator/web/dist/{f} is not what its sources build to: cd coordinator/web && npm run build");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_works_in_chromium() {
    if !node_available() || !Path::new("/usr/bin/chromium").exists() {
        return skip(
            "node or /usr/bin/chromium is missing (scripts/install-deps.sh installs chromium)",
        );
    }
    let Some(server) = DbServer::start_or_skip(DialectKind::Mysql) else { return };
    let web_tests = root().join("tests/web");
    assert!(npm_ci(&web_tests), "npm ci in tests/web failed");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let cfg = tmp.path().join("coordinator.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nrequire_token_for_reads = true\n\n[probe]\ninterval_ms = 1000\n\n[diagnosis.window]\nwindow_ms = 5000\nstride_ms = 2500\nbaseline_ms = 30000\n\n{}",
            server.config_toml("local").replace("[[databases]]", "[[databases]]\nhost_node = \"n1\"")
        ),
    )
    .unwrap();
    let (api, quic) = free_ports();
    let coord = Coordinator::start(&data, api, quic, &["--config", cfg.to_str().unwrap()]);
    let agent_cfg = agent_config("n1", &certs, quic, &tmp.path().join("agent"), 1000);
    let agent = distdiag_agent::start(agent_cfg, None).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || agent.status().connected).await);
    let c = coord.client();

    // Training data through the API (the page trains on it): a normal
    // period and one case of each of two types.
    c.normal_start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    c.normal_stop().await.unwrap();
    for (kind, params) in [
        ("cpu_stress", serde_json::json!({"load_percent": 80})),
        ("disk_stress", serde_json::json!({"bytes": 8 << 20})),
    ] {
        let req = StartRequest {
            kind: kind.into(),
            params: serde_json::from_value(params).unwrap(),
            duration: Some(DurationArg::Seconds(20.0)),
            collect_training_data: Some(true),
            pre_s: Some(5),
            post_s: Some(5),
            ..StartRequest::default()
        };
        c.start_fault(&req).await.unwrap();
        let ended = poll_until(
            Duration::from_secs(40),
            || c.active_faults(),
            |a| a.as_ref().is_ok_and(|a| a.anomalies.is_empty()),
        )
        .await;
        assert!(ended.is_ok());
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let (url, token, shots) = (coord.url(""), coord.token(), shots.clone());
        move || {
            Command::new("node")
                .current_dir(root().join("tests/web"))
                .args(["dashboard.mjs", "panels", &url, &token])
                .arg(&shots)
                .arg("n1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the dashboard test failed (screenshots in {}):\n{said}\n{}",
        shots.display(),
        coord.log_text()
    );
    println!("{said}screenshots: {}", shots.display());
    let models = c.models().await.unwrap();
    assert!(models.active.is_some(), "the page's training left no active model");
    agent.stop(Duration::from_secs(2)).await;
}
