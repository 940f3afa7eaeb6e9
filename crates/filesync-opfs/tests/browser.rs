//! `OpfsFs` on a page (the main thread) of headless Chromium: the shared `fs_conformance!` suite, the same suite
//! through the fallback without `move()`, and the OPFS-specific tests. Run with
//! `wasm-bindgen-test-runner` (see README.md); skipped on native targets.
#![cfg(target_arch = "wasm32")]

mod common;

use filesync_opfs::OpfsFs;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

mod conformance {
    use super::*;
    filesync_core::fs_conformance!(
        #[wasm_bindgen_test]
        crate::common::fresh().await
    );
}

mod conformance_without_move {
    use super::*;
    filesync_core::fs_conformance!(
        #[wasm_bindgen_test]
        OpfsFs::scratch().await.expect("open").without_move()
    );
}

#[wasm_bindgen_test]
async fn request_persistence_does_not_fail() {
    common::request_persistence_does_not_fail().await;
}

#[wasm_bindgen_test]
async fn open_rejects_bad_base() {
    common::open_rejects_bad_base().await;
}

#[wasm_bindgen_test]
async fn base_dirs_are_isolated() {
    common::base_dirs_are_isolated().await;
}

#[wasm_bindgen_test]
async fn temp_entries_are_hidden() {
    common::temp_entries_are_hidden().await;
}

#[wasm_bindgen_test]
async fn failed_write_leaves_no_temp_entry() {
    common::failed_write_leaves_no_temp_entry().await;
}

#[wasm_bindgen_test]
async fn write_then_stat_reports_size_and_time() {
    common::write_then_stat_reports_size_and_time().await;
}

#[wasm_bindgen_test]
async fn write_over_directory_fails() {
    common::write_over_directory_fails().await;
}

#[wasm_bindgen_test]
async fn dropped_write_cleans_up() {
    common::dropped_write_cleans_up().await;
}

#[wasm_bindgen_test]
async fn stress_failed_writes() {
    common::stress_failed_writes().await;
}
