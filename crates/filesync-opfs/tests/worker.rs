//! `OpfsFs` in a dedicated worker of headless Chromium: the shared `fs_conformance!` suite, the same suite
//! through the fallback without `move()`, and the OPFS-specific tests. Run with
//! `wasm-bindgen-test-runner` (see README.md); skipped on native targets.
#![cfg(target_arch = "wasm32")]

mod common;

use filesync_opfs::OpfsFs;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

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
async fn blob_is_the_file() {
    common::blob_is_the_file().await;
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
async fn move_is_detected() {
    common::move_is_detected().await;
}

#[wasm_bindgen_test]
async fn failed_writes_never_leave_entries() {
    common::failed_writes_never_leave_entries().await;
}

#[wasm_bindgen_test]
async fn crate_doc_example() {
    common::crate_doc_example().await.expect("example");
}

#[wasm_bindgen_test]
async fn replaced_mid_read_never_mixes() {
    let outcome = common::replaced_mid_read_never_mixes().await;
    wasm_bindgen_test::console_log!("replaced mid-read: {outcome}");
}
