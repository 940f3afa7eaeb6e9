//! The filesync web demo: a page in plain HTML and CSS whose logic is this crate compiled to
//! `wasm32-unknown-unknown`. Files are saved to OPFS (`filesync_opfs::OpfsFs`) first, events
//! go to IndexedDB (`filesync_opfs::IdbStore`), and the engine syncs both through the server
//! that serves the page (`filesync-r2 --static-dir`): bytes through signed URLs, events through
//! the relay. One tab per store leads (Web Locks); the others follow and take over when it
//! closes.
//!
//! Build and serve it with `cargo xtask demo --web`; the page reads `?store=` and `?token=`
//! from its URL. Natively this crate is empty (only its end-to-end test is built).

#[cfg(target_arch = "wasm32")]
mod app;
