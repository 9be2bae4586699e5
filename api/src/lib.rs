//! The vocabulary of distdiag's REST API: every request and response type
//! under `/api`, with its OpenAPI schema (utoipa), shared by the coordinator
//! that serves them and by everything that reads them — the `distdiag` CLI,
//! the testbed, the tests and the benchmark — through the typed [`Client`]
//! (feature `client`, on by default).
//!
//! This crate holds data and the checks that belong to the data (ranges,
//! names); it has no HTTP server and no runtime of its own, so the pure
//! diagnosis crate can use its types without pulling either in.

pub mod database;
pub mod eval;
pub mod faults;
pub mod metrics;
pub mod models;
pub mod nodes;
pub mod ranks;
pub mod training;
pub mod workload;

#[cfg(feature = "client")]
mod client;

#[cfg(feature = "client")]
pub use client::{Client, ClientError};
pub use distdiag_dataset::{CasePeriod, Dataset, FaultEvent, Manifest, WindowConfig};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}
