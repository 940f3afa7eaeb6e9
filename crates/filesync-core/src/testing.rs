//! Conformance suites (feature `testing`): one `pub async fn` per contract rule, run against
//! every implementation through [`fs_conformance!`](crate::fs_conformance) and
//! [`store_conformance!`](crate::store_conformance), and fault-injecting wrappers
//! ([`remote::FaultyRemote`], [`fs::FaultyFs`]).

pub mod fs;
pub mod remote;
pub mod store;
