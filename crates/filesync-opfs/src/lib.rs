//! `filesync-opfs` will provide `OpfsFs`, the Origin Private File System as a
//! [`filesync_core::fs::FileSystem`] for `wasm32-unknown-unknown`, tested in headless Chromium.
//!
//! **Status: not implemented yet.** This crate has no public API; it exists so the workspace has
//! its final shape. See the browser issue and `ARCHITECTURE.md`.
