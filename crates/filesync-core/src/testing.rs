//! Conformance suites (feature `testing`): one `pub async fn` per contract rule, run against
//! every implementation through [`fs_conformance!`](crate::fs_conformance),
//! [`store_conformance!`](crate::store_conformance) and
//! [`remote_conformance!`](crate::remote_conformance), and fault-injecting wrappers
//! ([`remote::FaultyRemote`], [`fs::FaultyFs`]). With feature `server`, `signer` holds the
//! `ObjectSigner` suite, run through `signer_conformance!`, and `event_log` the relay
//! `EventLog` suite, run through `event_log_conformance!`; `s3s` starts a real S3 server and
//! `sync` waits for engines to settle.

#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod event_log;
pub mod fs;
pub mod remote;
#[cfg(not(target_arch = "wasm32"))]
pub mod s3s;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod signer;
pub mod store;
pub mod sync;
