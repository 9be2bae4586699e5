//! End-to-end tests of distdiag live in `tests/`; their shared helpers are
//! the testbed crate's (`distdiag_testbed`).
