//! `OpfsFs` on a page (the main thread) of headless Chromium: the shared `fs_conformance!` suite, the same
//! suite through the fallback without `move()`, and the OPFS-specific tests (all in
//! `common::fs::opfs_tests!`). Run with `wasm-bindgen-test-runner` (see README.md); skipped on
//! native targets.
#![cfg(target_arch = "wasm32")]

#[macro_use]
mod common;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

opfs_tests!();
