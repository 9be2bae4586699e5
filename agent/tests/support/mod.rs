//! Shared by the agent's integration tests.

/// A test cannot run here (no root, no cgroup controller, a tool missing).
/// Under `make test` (`DISTDIAG_REQUIRE_ALL=1`) that is a failure, so CI is
/// never green for want of a prerequisite; in a quick `cargo nextest run`
/// without root the test says what it skips and returns.
#[track_caller]
pub(crate) fn skip(why: &str) {
    let required = std::env::var_os("DISTDIAG_REQUIRE_ALL").is_some_and(|v| v == "1");
    assert!(!required, "a prerequisite is missing (DISTDIAG_REQUIRE_ALL=1): {why}");
    println!("SKIP: {why}");
}
