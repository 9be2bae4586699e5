//! The distdiag coordinator: receives agents' samples over QUIC with mutual
//! TLS, stores them as compressed per-node blocks in sled and serves them over
//! a REST API. `main.rs` is a thin shell over [`app::start`]; tests drive the
//! library directly.

pub mod api;
pub mod app;
pub mod campaign;
pub mod config;
pub mod db;
pub mod dbfault;
pub mod dataset;
pub mod dbprobe;
pub mod diagnose;
pub mod faults;
pub mod ingest;
pub mod models;
pub mod online;
pub mod store;
pub mod telemetry;
pub mod training;
pub mod tls;
pub mod workload;
