//! A deterministic simulation of filesync: several engines (each a device with its own
//! filesystem and store, which outlive the engine's process), one relay and one remote, driven
//! through random operations and faults on a paused tokio clock. One seed decides everything,
//! so a failing seed replays exactly: `cargo xtask sim --seed <seed>`.
//!
//! Operations: save (often of content another file already has), update, delete, read,
//! restart, go offline and back. Faults: failed, corrupt, hanging and cut transfers (through
//! [`FaultyRemote`](filesync_core::testing::remote::FaultyRemote)); failed pushes and pulls and lost push acknowledgements (the relay stored
//! the batch, the client saw an error); relay restarts (every connection refused, streams cut);
//! leadership loss; and process crashes between any two store or filesystem calls ([`parts::Life`]).
//!
//! After the run the world heals (faults cleared, everyone online, dead processes restarted)
//! and, once the engines settle, the checks verify: every engine holds the relay's events in
//! the relay's order and identical rows; every live file's bytes on every engine and in the
//! remote hash to its content hash; every acknowledged save, update and delete is in the
//! relay's log; no read ever returned bytes that do not match their hash; and no local content
//! and no remote object is left that no live file uses.

#![allow(clippy::missing_docs_in_private_items)]

pub mod parts;
mod rng;
mod world;

pub use rng::SimRng;
pub use world::{Config, Failure, Report, Sabotage, run_seed, run_with};
