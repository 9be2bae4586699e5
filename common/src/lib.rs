//! Shared vocabulary of distdiag: the wire protocol between agent and
//! coordinator ([`proto`]), its length-prefixed frame codec ([`codec`]), the
//! metric catalog and counter arithmetic ([`catalog`]) and the fault
//! specifications the coordinator sends to agents ([`fault`]).
//!
//! This crate has no sockets, no runtime and no clock: everything here is a
//! pure function or a plain data type, so both sides and the tests can rely on
//! it without pulling in I/O.

pub mod catalog;
pub mod codec;
pub mod fault;
pub mod inbound;
pub mod pem;
pub mod proto;

pub use catalog::{MetricDesc, MetricKind};
pub use codec::{CodecError, FrameDecoder};
pub use proto::{AgentMsg, Batch, CoordMsg, Hello, ProtocolError, Row};

/// The systemd watchdog period asked of this process, in µs: `WATCHDOG_USEC`
/// when `WATCHDOG_PID` is unset or names this process (as libsystemd's
/// `sd_watchdog_enabled` reads them; the `sd-notify` crate also demands
/// `WATCHDOG_PID`, which a manager need not set).
pub fn systemd_watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => (usec > 0).then_some(usec),
    }
}
