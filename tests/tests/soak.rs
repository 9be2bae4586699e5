//! The soak tool on a small scale (`make soak` runs it at 1,000 agents):
//! simulated agents over real QUIC + mTLS, a steady period, kill -9 of the
//! coordinator at random moments, and every row counted afterwards.

// End-to-end tests start the programs they test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use distdiag_testbed::bin;

#[test]
fn the_soak_loses_no_row_across_kills() {
    let out = std::process::Command::new(bin("distdiag-bench"))
        .arg("soak")
        .env("SOAK_AGENTS", "24")
        .env("SOAK_METRICS", "40")
        .env("SOAK_SECONDS", "15")
        .env("SOAK_KILLS", "3")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    println!("{table}");
    assert!(out.status.success(), "{table}\n{log}");
    let stored = table.lines().find(|l| l.contains("rows stored afterwards")).expect("the count");
    assert!(stored.contains("lost 0, values changed 0, rows made up 0"), "{stored}");
    let kills = table.lines().find(|l| l.contains("kill -9")).expect("the kills");
    assert!(kills.contains("| 3 kills;"), "{kills}");
    // Rows made while the coordinator was down went from the backlogs.
    let replayed: u64 = kills
        .split(" rows replayed")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(replayed > 0, "{kills}");
}
