//! What the workspace's tests and benchmarks share, instead of including each other's sources:
//! scratch PostgreSQL databases (`scratch`), a throwaway primary with a streaming-replication
//! standby (`cluster`), the `continuum` binary run as a child process (`process`), a clinic of
//! Synthea patients served with access control on and a browser without JavaScript (`clinic`),
//! larger populations made from the Synthea sample (`synthea`), pinned third-party Python
//! packages for the tests' external clients (`python`), and the coded entries of a C-CDA
//! document counted from its XML (`ccda`).
//!
//! A dev-dependency of the crates whose tests use it (and a dependency of `continuum-bench`);
//! never of a shipping crate. It depends on no workspace crate, so that any crate's tests may
//! use it without a cycle, and it hands out URLs and `postgres::Client`s, never a store's types.

// Not `clippy::unwrap_used`/`expect_used`: this whole crate is test scaffolding, a library only
// so that the tests and benchmarks of every crate can share it; a failure panics.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test scaffolding: a failure panics, like assert!")]

pub mod ccda;
pub mod clinic;
pub mod cluster;
pub mod process;
pub mod python;
pub mod scratch;
pub mod synthea;
