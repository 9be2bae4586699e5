//! The vocabulary of distdiag's REST API: every request and response type
//! under `/api`, shared by the coordinator that serves them and by the
//! clients that read them (the `distdiag` CLI, the testbed, the tests).

pub mod faults;
