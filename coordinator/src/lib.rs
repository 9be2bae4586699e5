//! The distdiag coordinator: receives agents' samples over QUIC with mutual
//! TLS into the store, probes the databases and drives their workloads and
//! faults, collects training data, trains and serves the models, ranks root
//! causes online, and serves all of it over the REST API and the dashboard.
//! `main.rs` is a thin shell over [`app::start`]; tests drive the library.

pub mod api;
pub mod app;
pub mod chaos;
pub mod config;
pub mod dbfault;
pub mod dbprobe;
pub mod faults;
pub mod https;
pub mod ingest;
pub mod kube;
pub mod models;
pub mod online;
pub mod remote_write;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod training;
