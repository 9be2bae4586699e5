//! Deployment as its users run it, with the real tools: the systemd units
//! pass `systemd-analyze verify` and stay within their exposure goals
//! (`systemd-analyze security`: coordinator ≤ 2.0, agent ≤ 5.0); both
//! programs tell a `NOTIFY_SOCKET` READY=1 and keep pinging WATCHDOG=1;
//! the Ansible roles pass `ansible-lint --profile production`, their
//! argument specs name the options of their defaults key for key, and
//! `ansible-playbook` installs a coordinator and an agent into scratch roots
//! on this machine (local connection, start-stop-daemon as this machine has
//! no systemd running), leaves them connected, and changes nothing when run
//! again. The Kubernetes manifests render with `kubectl kustomize` and pass
//! `kubernetes-validate --strict` (offline schemas); the container image
//! builds with podman from the programs (stripped) and holds what the
//! manifests run.

// Runs systemd-analyze, ansible and the programs under test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distdiag_testbed::{bin, bin_dir, free_ports, skip};

fn root() -> PathBuf {
    distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A unit file with the programs' install paths pointed at the built ones.
fn unit_here(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("systemd").join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("/usr/local/bin", &bin_dir().display().to_string()))
        .unwrap();
    path
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    if !have("systemd-analyze", "--version") {
        return skip("systemd-analyze is missing (Debian package systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    println!("| unit | verify | exposure | goal |\n|---|---|---|---|");
    for (unit, goal) in [("distdiag-coordinator.service", 2.0), ("distdiag-agent.service", 5.0)] {
        let path = unit_here(unit, dir.path());
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.trim().is_empty(), "{unit}: {said}");
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for ").map(|(_, r)| r.to_owned()))
            .and_then(|r| {
                r.split(": ").nth(1).and_then(|v| v.split_whitespace().next().map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level:\n{text}"));
        println!("| {unit} | ok | {exposure} | ≤ {goal} |");
        assert!(exposure <= goal, "{unit}: exposure {exposure} > {goal}\n{text}");
    }
}

/// The coordinator on `data`, quiet, listening where it is told.
fn coordinator(data: &Path, api: std::net::SocketAddr, ingest: std::net::SocketAddr) -> Command {
    let mut c = Command::new(bin("distdiag-coordinator"));
    c.arg("--data-dir")
        .arg(data)
        .args(["--api-listen", &api.to_string(), "--ingest-listen", &ingest.to_string(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Reads notifications until `want` were all seen or `timeout` passed.
fn notifications(sock: &UnixDatagram, want: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline
        && !want.iter().all(|w| seen.iter().any(|s: &String| s.lines().any(|l| l == *w)))
    {
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn both_programs_tell_systemd_they_are_ready_and_alive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coord");
    let certs = distdiag_testbed::make_certs(&data.join("certs"), &["n1"]);
    let (api, ingest) = free_ports();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut coord = coordinator(&data, api, ingest)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .spawn()
        .unwrap();
    let seen = notifications(&sock, &["READY=1", "WATCHDOG=1"], Duration::from_secs(20));
    let _ = coord.kill();
    let _ = coord.wait();
    let all = seen.join("\n");
    assert!(all.lines().any(|l| l == "READY=1"), "coordinator: {seen:?}");
    assert!(all.lines().any(|l| l == "WATCHDOG=1"), "coordinator: {seen:?}");

    // The agent, with its coordinator, the same way.
    let mut coord = coordinator(&data, api, ingest).spawn().unwrap();
    let cfg = distdiag_testbed::agent_config("n1", &certs, ingest, &dir.path().join("agent"), 500);
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut agent = Command::new(bin("distdiag-agent"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("run")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = notifications(&sock, &["READY=1", "WATCHDOG=1"], Duration::from_secs(20));
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let _ = agent.wait();
    let _ = coord.kill();
    let _ = coord.wait();
    let all = seen.join("\n");
    assert!(all.lines().any(|l| l == "READY=1"), "agent: {seen:?}");
    assert!(all.lines().any(|l| l == "WATCHDOG=1"), "agent: {seen:?}");
}

fn yaml_keys(path: &Path, spec: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let indent = if spec { "      " } else { "" };
    let mut keys: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(indent))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains(':'))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .filter(|k| !spec || (k.starts_with("coordinator_") || k.starts_with("agent_")))
        .collect();
    keys.sort();
    keys
}

#[test]
fn ansible_roles_are_lint_clean_and_their_specs_match_their_defaults() {
    for role in ["coordinator", "agent"] {
        let r = root().join("ansible/roles").join(role);
        let defaults = yaml_keys(&r.join("defaults/main.yml"), false);
        let spec = yaml_keys(&r.join("meta/argument_specs.yml"), true);
        assert!(!defaults.is_empty());
        assert_eq!(defaults, spec, "{role}: defaults/main.yml and meta/argument_specs.yml differ");
    }
    if !have("ansible-lint", "--version") {
        return skip("ansible-lint is missing (scripts/install-deps.sh installs it from PyPI)");
    }
    let out = Command::new("ansible-lint")
        .current_dir(root().join("ansible"))
        .args(["--profile", "production", "--offline", "--nocolor", "site.yml"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ansible-lint:\n{text}");
    println!("{}", text.lines().last().unwrap_or(""));
}

fn stop_daemon(pidfile: &Path) {
    let _ = Command::new("start-stop-daemon")
        .args(["--stop", "--retry", "TERM/20/KILL/5", "--oknodo", "--pidfile"])
        .arg(pidfile)
        .status();
}

/// Stops what a playbook run started, however the test ends.
struct Started(Vec<PathBuf>);

impl Drop for Started {
    fn drop(&mut self) {
        // The agent first: it reverts its faults and says goodbye.
        for p in &self.0 {
            stop_daemon(p);
        }
    }
}

fn recap(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.contains(" : ok="))
        .map(|l| {
            let host = l.split_whitespace().next().unwrap().to_owned();
            let changed = l
                .split("changed=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            (host, changed)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ansible_playbook_installs_a_connected_cluster_and_is_idempotent() {
    if !have("ansible-playbook", "--version") || !have("start-stop-daemon", "--version") {
        return skip("ansible-playbook or start-stop-daemon is missing (scripts/install-deps.sh installs them)");
    }
    let work = tempfile::tempdir().unwrap();
    let (api, ingest) = free_ports();
    let (coord_root, agent_root) = (work.path().join("coord"), work.path().join("n1"));
    let _started = Started(vec![
        agent_root.join("run/distdiag-agent.pid"),
        coord_root.join("run/distdiag-coordinator.pid"),
    ]);
    let inventory = work.path().join("inventory.yml");
    let bins = bin_dir().display().to_string();
    let xgb = std::env::var("XGBOOST_LIB_DIR")
        .map(PathBuf::from)
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/distdiag-deps/xgboost-cpu-3.4.1"));
    std::fs::write(
        &inventory,
        format!(
            r#"all:
  vars:
    ansible_connection: local
    ansible_become: false
    # The Python that runs ansible-playbook: the targets are this host.
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  children:
    distdiag_coordinator:
      hosts:
        coord:
          coordinator_prefix: "{coord}"
          coordinator_user: root
          coordinator_group: root
          coordinator_create_user: false
          coordinator_service_manager: none
          coordinator_bin_source_dir: "{bins}"
          coordinator_xgboost_source_dir: "{xgb}"
          coordinator_cert_stage_dir: "{stage}"
          coordinator_api_listen: "{api}"
          coordinator_api_tls: true
          coordinator_ingest_listen: "{ingest}"
          coordinator_server_names: [localhost, 127.0.0.1]
    distdiag_agents:
      hosts:
        n1:
          agent_prefix: "{agent}"
          agent_service_manager: none
          agent_bin_source_dir: "{bins}"
          agent_cert_stage_dir: "{stage}"
          agent_coordinator: "{ingest}"
          agent_server_name: localhost
          agent_state_dir: /state
"#,
            coord = coord_root.display(),
            agent = agent_root.display(),
            xgb = xgb.display(),
            stage = work.path().join("certs").display(),
        ),
    )
    .unwrap();
    let play = || {
        let out = Command::new("ansible-playbook")
            .current_dir(root().join("ansible"))
            .arg("-i")
            .arg(&inventory)
            .arg("site.yml")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ansible-playbook failed:\n{text}");
        text
    };
    let first = play();
    let changed: u64 = recap(&first).iter().map(|r| r.1).sum();
    assert!(changed > 5, "the first run installs things:\n{first}");
    // The playbook's own last play waited until the agent was connected; say it again.
    // Over HTTPS (coordinator_api_tls), trusting the cluster CA the role made.
    let ca = std::fs::read(coord_root.join("var/lib/distdiag/certs/ca.pem")).unwrap();
    let c = distdiag_api::Client::new(&format!("https://{api}")).with_ca_cert(&ca).unwrap();
    let nodes = c.nodes().await.unwrap().nodes;
    assert!(nodes.iter().any(|n| n.node == "n1" && n.connected), "{nodes:?}");
    assert!(coord_root.join("var/lib/distdiag/certs/node-n1.pem").is_file());
    assert!(agent_root.join("etc/distdiag/node.key").is_file());
    let second = play();
    let recaps = recap(&second);
    println!("first run: {changed} changes; second run: {recaps:?}");
    assert!(
        recaps.len() == 2 && recaps.iter().all(|r| r.1 == 0),
        "a second run changed something:\n{second}"
    );
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    if !have("kubectl", "version") && !have("kubectl", "--help") {
        return skip("kubectl is missing (Debian package kubernetes-client)");
    }
    if !have("kubernetes-validate", "--version") {
        return skip(
            "kubernetes-validate is missing (scripts/install-deps.sh installs it from PyPI)",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["dev", "prod"] {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(root().join("k8s/overlays").join(overlay))
            .output()
            .unwrap();
        assert!(out.status.success(), "{overlay}: {}", String::from_utf8_lossy(&out.stderr));
        let yaml = String::from_utf8(out.stdout).unwrap();
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let v = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{overlay}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let kinds: Vec<&str> = yaml.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
        for kind in [
            "DaemonSet",
            "Deployment",
            "Service",
            "PersistentVolumeClaim",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "PriorityClass",
        ] {
            assert!(kinds.contains(&kind), "{overlay} lacks a {kind}: {kinds:?}");
        }
        // Least privilege, as the manifests promise.
        assert!(!yaml.contains("privileged: true"), "{overlay}: a privileged container");
        assert!(yaml.contains("readOnlyRootFilesystem: true"));
        assert!(yaml.contains("- NET_ADMIN") && !yaml.contains("- ALL\n          add"));
        println!("{overlay}: {} objects, valid", kinds.len());
    }
}

#[test]
fn the_container_image_builds_and_holds_both_programs() {
    if !have("podman", "--version") {
        return skip("podman is missing (Debian package podman)");
    }
    // The programs `make test` built, without their debug sections (the
    // same layout `make image` gives the release ones): a fresh machine has
    // no release build, and a stale one would not be what is under test.
    let programs = tempfile::tempdir().unwrap();
    for p in ["distdiag-coordinator", "distdiag-agent", "distdiag"] {
        let out = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(programs.path().join(p))
            .arg(bin_dir().join(p))
            .output()
            .unwrap();
        assert!(out.status.success(), "strip {p}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tag = format!("localhost/distdiag-test:{}", std::process::id());
    let rootfs = root().join("image/rootfs");
    let out = Command::new(root().join("scripts/image-rootfs.sh"))
        .arg(programs.path())
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(out.status.success(), "image-rootfs: {}", String::from_utf8_lossy(&out.stderr));
    let build = Command::new("podman")
        .current_dir(root())
        .args(["build", "--quiet", "-t", &tag, "."])
        .output()
        .unwrap();
    assert!(build.status.success(), "podman build: {}", String::from_utf8_lossy(&build.stderr));
    let inspect = Command::new("podman").args(["image", "inspect", &tag]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["User"], "65532:65532", "the coordinator runs as non-root");
    assert_eq!(cfg["Entrypoint"][0], "/usr/local/bin/distdiag-coordinator");
    let tar = tempfile::NamedTempFile::new().unwrap();
    let save = Command::new("podman")
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(tar.path())
        .arg(&tag)
        .status()
        .unwrap();
    assert!(save.success());
    let _ = Command::new("podman").args(["rmi", "-f", &tag]).status();
    let _ = std::fs::remove_dir_all(&rootfs);
    println!("image {tag}: {} MB", std::fs::metadata(tar.path()).unwrap().len() >> 20);
    // The layer holds the programs, the XGBoost library and the loader.
    let unpacked = tempfile::tempdir().unwrap();
    let ok = Command::new("tar")
        .arg("-xf")
        .arg(tar.path())
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut files = String::new();
    for blob in std::fs::read_dir(unpacked.path().join("blobs/sha256")).unwrap().flatten() {
        let list = Command::new("tar")
            .arg("-tzf")
            .arg(blob.path())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if list.status.success() {
            files.push_str(&String::from_utf8_lossy(&list.stdout));
        }
    }
    for f in [
        "usr/local/bin/distdiag-coordinator",
        "usr/local/bin/distdiag-agent",
        "usr/local/lib/distdiag/xgboost/lib/libxgboost.so",
        "etc/passwd",
    ] {
        assert!(files.lines().any(|l| l.trim_start_matches("./") == f), "{f} is not in the image");
    }
}
