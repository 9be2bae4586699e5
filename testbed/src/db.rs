//! Real database servers for tests: a private MariaDB or seekdb (the
//! OceanBase kernel from the PyPI package `pylibseekdb`) on a free loopback
//! port, in a temporary directory, killed and removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distdiag_workload::db::{DbTarget, DialectKind};

pub struct DbServer {
    pub kind: DialectKind,
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Path of the `seekdb` binary shipped by `pylibseekdb`, if installed.
pub fn find_seekdb() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import pylibseekdb, os; print(os.path.dirname(pylibseekdb.__file__))"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("seekdb");
    (out.status.success() && p.is_file()).then_some(p)
}

/// Path of the `seekdb` binary; panics with how to install it.
pub fn seekdb_binary() -> PathBuf {
    find_seekdb().expect("pylibseekdb is not installed (scripts/install-deps.sh installs it)")
}

/// Why a server of `kind` cannot start here (its program is missing).
pub fn missing(kind: DialectKind) -> Option<String> {
    let found = match kind {
        DialectKind::Mysql => ["mariadb-install-db", "mariadbd"].iter().all(|p| {
            Command::new("which").arg(p).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
        }),
        DialectKind::Oceanbase => find_seekdb().is_some(),
    };
    (!found).then(|| match kind {
        DialectKind::Mysql => {
            "no MariaDB server (scripts/install-deps.sh installs mariadb-server)".into()
        }
        DialectKind::Oceanbase => "no seekdb (scripts/install-deps.sh installs pylibseekdb)".into(),
    })
}

impl DbServer {
    /// A server of `kind`; None, after [`crate::skip`], when its program is
    /// not installed (a failure under `make test`).
    pub fn start_or_skip(kind: DialectKind) -> Option<DbServer> {
        if let Some(why) = missing(kind) {
            crate::skip(&why);
            return None;
        }
        Some(Self::start(kind))
    }

    pub fn start(kind: DialectKind) -> DbServer {
        match kind {
            DialectKind::Mysql => Self::mariadb(),
            DialectKind::Oceanbase => Self::seekdb(),
        }
    }

    pub fn mariadb() -> DbServer {
        let dir = tempfile::Builder::new().prefix("distdiag-mariadb").tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db (scripts/install-deps.sh installs mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("mariadb.log")).expect("log");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args([
                "--user=root",
                "--skip-log-bin",
                "--performance-schema=ON",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
                "--innodb-lock-wait-timeout=5",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd");
        let mut s = DbServer { kind: DialectKind::Mysql, port, child, dir };
        s.wait_ready(Duration::from_secs(60));
        s
    }

    pub fn seekdb() -> DbServer {
        let dir = tempfile::Builder::new().prefix("distdiag-seekdb").tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("seekdb.out")).expect("log");
        let child = Command::new(seekdb_binary())
            .arg("--nodaemon")
            .arg("--port")
            .arg(port.to_string())
            .arg("--base-dir")
            .arg(dir.path().join("base"))
            .args(["--parameter", "datafile_size=1G", "--parameter", "log_disk_size=2G"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("seekdb");
        let mut s = DbServer { kind: DialectKind::Oceanbase, port, child, dir };
        s.wait_ready(Duration::from_secs(120));
        s
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let t = self.target("probe");
        // Its own runtime on its own thread: callers may be inside one.
        let answers = |t: DbTarget| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    match t.connect(false, Duration::from_secs(2)).await {
                        Ok(c) => {
                            let _ = c.disconnect().await;
                            true
                        }
                        Err(_) => false,
                    }
                })
            })
            .join()
            .unwrap_or(false)
        };
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{:?} server exited with {status}", self.kind);
            }
            if answers(t.clone()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{:?} server on port {} did not answer within {timeout:?}", self.kind, self.port);
    }

    /// A coordinator target for this server.
    pub fn target(&self, name: &str) -> DbTarget {
        DbTarget {
            name: name.into(),
            dialect: self.kind,
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            password: None,
            password_env: None,
            schema: "distdiag".into(),
            host_node: None,
        }
    }

    /// The `[[databases]]` entry for a coordinator config file.
    pub fn config_toml(&self, name: &str) -> String {
        let dialect = match self.kind {
            DialectKind::Mysql => "mysql",
            DialectKind::Oceanbase => "oceanbase",
        };
        format!("[[databases]]\nname = \"{name}\"\ndialect = \"{dialect}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nschema = \"distdiag\"\n", self.port)
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
