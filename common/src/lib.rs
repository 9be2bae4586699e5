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
pub mod pem;
pub mod proto;

pub use catalog::{MetricDesc, MetricKind};
pub use codec::{CodecError, FrameDecoder};
pub use proto::{AgentMsg, Batch, CoordMsg, Hello, ProtocolError, Row};
