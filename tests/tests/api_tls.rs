//! The API over HTTPS (`api.tls`): a real coordinator process, real TLS on
//! loopback, the typed client, the CLI and plain reqwest as the clients.

// End-to-end tests start the programs they test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::Write;
use std::time::Duration;

use distdiag_api::Client;
use distdiag_testbed::*;

fn write_config(path: &std::path::Path, text: &str) {
    std::fs::File::create(path).unwrap().write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_with_the_cluster_certificate_or_given_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let config = tmp.path().join("coordinator.toml");
    write_config(&config, "[api]\ntls = true\n");
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &["--config", config.to_str().unwrap()]);
    let ca = std::fs::read(certs.ca_cert()).unwrap();
    let url = format!("https://127.0.0.1:{}", api.port());

    // The typed client trusting the cluster CA: reads, a mutating request
    // with the token, by address and by name (both in the certificate).
    let client = Client::new(&url).with_ca_cert(&ca).unwrap().with_token(coord.token());
    let health = client.health().await.unwrap();
    assert!(health.storage.writable);
    assert!(client.nodes().await.unwrap().nodes.is_empty());
    client.stop_all_workloads().await.unwrap();
    let by_name =
        Client::new(&format!("https://localhost:{}", api.port())).with_ca_cert(&ca).unwrap();
    by_name.health().await.unwrap();
    let log = coord.log_text();
    assert!(log.contains(&format!("https://{api}")), "{log}");
    // The dashboard page comes over the same listener.
    let page = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"), "not the dashboard");

    // Refused: a client that does not trust the CA, and plain HTTP on the
    // HTTPS port. Neither disturbs the listener.
    let untrusting = Client::new(&url).health().await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    let plain = reqwest::get(format!("http://127.0.0.1:{}/health", api.port())).await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // Handshakes are off the accept path: connections that never send a
    // ClientHello (held for the whole check) do not delay anyone else
    // (were the handshake inline, this request would wait out the 10 s
    // handshake timeout of the first of them).
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(tokio::net::TcpStream::connect(api).await.unwrap());
    }
    let quick = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answer = quick.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    drop(silent);

    // The CLI finds the CA in the data directory, or takes --ca-cert.
    let cli = |args: &[&str]| {
        std::process::Command::new(bin("distdiag"))
            .args(["--url", &url, "--data-dir", data.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["nodes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let missing = tmp.path().join("nosuch.pem");
    let out = cli(&["--ca-cert", missing.to_str().unwrap(), "nodes"]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch.pem"));

    // Given files instead of the cluster certificate: another CA's.
    assert!(coord.stop().success());
    let other = make_certs(&tmp.path().join("other"), &[]);
    write_config(
        &config,
        &format!(
            "[api]\ntls = true\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            other.server_cert().display(),
            other.server_key().display()
        ),
    );
    coord.restart();
    let other_ca = std::fs::read(other.ca_cert()).unwrap();
    Client::new(&url).with_ca_cert(&other_ca).unwrap().health().await.unwrap();
    let cluster = Client::new(&url).with_ca_cert(&ca).unwrap().health().await;
    assert!(cluster.is_err(), "the cluster CA still verifies: {cluster:?}");
    assert!(coord.stop().success());

    // A configuration naming only one of the two files is refused up front.
    write_config(&config, "[api]\ntls = true\ntls_cert = \"/x.pem\"\n");
    let out = std::process::Command::new(bin("distdiag-coordinator"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_key"));
}
