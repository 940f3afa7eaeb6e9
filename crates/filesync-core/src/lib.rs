#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs)]
#![cfg_attr(not(target_arch = "wasm32"), warn(clippy::future_not_send))]
// wasm32 is single-threaded: shared state behind `Arc` need not be `Send`.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod api;
pub mod cas;
pub mod contract;
mod engine;
pub mod error;
pub mod events;
pub mod fs;
pub mod hash;
pub mod preprocess;
pub mod remote;
pub mod rt;
pub mod schema;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod server;
pub mod status;
pub mod store;
pub mod sync;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;

pub use api::{FileSync, FileSyncBuilder};
pub use engine::{Options, RetryPolicy};
pub use error::{BoxError, Error, Result};
