//! `IdbStore` on a page (the main thread) of headless Chromium: the shared `store_conformance!` suite and
//! the IndexedDB-specific tests (all in `common::idb::idb_tests!`). Run with
//! `wasm-bindgen-test-runner` (see README.md); skipped on native targets.
#![cfg(target_arch = "wasm32")]

#[macro_use]
mod common;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

idb_tests!();
