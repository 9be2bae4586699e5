//! Time-series receivers for tests and benchmarks: Debian's
//! VictoriaMetrics (single node) and Prometheus with its remote-write
//! receiver, each a process on a free loopback port with its data in a
//! directory of the caller's.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_ports;

/// Series as a receiver answers them: labels → [(ms, value)].
pub type SeriesSet = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    Victoria,
    Prometheus,
}

/// A receiver process on a loopback port, its data in `dir`.
pub struct Receiver {
    pub kind: Kind,
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Receiver {
    pub fn start(kind: Kind, dir: &Path) -> Receiver {
        let program = match kind {
            Kind::Victoria => "victoria-metrics",
            Kind::Prometheus => "prometheus",
        };
        assert!(
            Command::new("which").arg(program).output().is_ok_and(|o| o.status.success()),
            "{program} is not installed (scripts/install-deps.sh installs it)"
        );
        let addr = free_ports().0;
        let mut r = Receiver { kind, child: None, addr, dir: dir.to_owned() };
        r.spawn();
        r
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let mut cmd = match self.kind {
            Kind::Victoria => {
                let mut c = Command::new("victoria-metrics");
                c.arg(format!("-httpListenAddr={}", self.addr))
                    .arg(format!("-storageDataPath={}", self.dir.join("data").display()))
                    .arg("-retentionPeriod=1y")
                    // Show samples at once (not 30 s behind) and uncached.
                    .arg("-search.latencyOffset=0s")
                    .arg("-search.disableCache");
                c
            }
            Kind::Prometheus => {
                let cfg = self.dir.join("prometheus.yml");
                std::fs::write(&cfg, "global: {}\n").unwrap();
                let mut c = Command::new("prometheus");
                c.arg(format!("--config.file={}", cfg.display()))
                    .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
                    .arg(format!("--web.listen-address={}", self.addr))
                    .arg("--web.enable-remote-write-receiver");
                c
            }
        };
        let child = cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        self.child = Some(child.spawn().unwrap());
        let ready = match self.kind {
            Kind::Victoria => "/health",
            Kind::Prometheus => "/-/ready",
        };
        for _ in 0..300 {
            if http_ok(self.addr, ready) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{:?} did not come up: {}", self.kind, self.log());
    }

    /// Stops it cleanly (SIGTERM: both flush what they acknowledged).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every series of `node` over the last hour, raw samples, by PromQL:
    /// labels → [(ms, value)].
    pub async fn node_series(&self, node: &str) -> SeriesSet {
        let now = distdiag_store::now_ms() as f64 / 1000.0 + 1.0;
        let url = format!("http://{}/api/v1/query", self.addr);
        let body: serde_json::Value = reqwest::Client::new()
            .get(url)
            .query(&[
                ("query", format!("{{node=\"{node}\"}}[1h]")),
                ("time", format!("{now:.3}")),
                ("nocache", "1".into()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{body}");
        let mut out = BTreeMap::new();
        for s in body["data"]["result"].as_array().unwrap() {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(s["metric"].clone()).unwrap();
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let ms = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (ms, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            out.insert(labels, points);
        }
        out
    }
}

/// A plain HTTP/1.0 GET answered 200 (the receivers' readiness pages).
fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
