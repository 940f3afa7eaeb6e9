#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs)]
#![cfg_attr(not(target_arch = "wasm32"), warn(clippy::future_not_send))]

pub mod cas;
pub mod error;
pub mod fs;
pub mod hash;
pub mod rt;
pub mod schema;
pub mod store;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{BoxError, Error, Result};
