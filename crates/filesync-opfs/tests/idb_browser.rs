//! `IdbStore` on a page (the main thread) of headless Chromium: the shared `store_conformance!` suite and the
//! IndexedDB-specific tests. Run with `wasm-bindgen-test-runner` (see README.md); skipped on
//! native targets.
#![cfg(target_arch = "wasm32")]

mod idb_common;

use filesync_opfs::IdbStore;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

mod conformance {
    use super::*;
    filesync_core::store_conformance!(
        #[wasm_bindgen_test]
        IdbStore::scratch().await.expect("open a scratch IdbStore")
    );
}

#[wasm_bindgen_test]
async fn reopen_sees_everything() {
    idb_common::reopen_sees_everything().await;
}

#[wasm_bindgen_test]
async fn client_id_is_stable_per_database() {
    idb_common::client_id_is_stable_per_database().await;
}

#[wasm_bindgen_test]
async fn destroy_deletes_the_database() {
    idb_common::destroy_deletes_the_database().await;
}

#[wasm_bindgen_test]
async fn delete_closes_an_open_store() {
    idb_common::delete_closes_an_open_store().await;
}

#[wasm_bindgen_test]
async fn databases_are_isolated() {
    idb_common::databases_are_isolated().await;
}

#[wasm_bindgen_test]
async fn dropped_commit_stays_consistent() {
    idb_common::dropped_commit_stays_consistent().await;
}

#[wasm_bindgen_test]
async fn clones_share_the_store() {
    idb_common::clones_share_the_store().await;
}

#[wasm_bindgen_test]
async fn foreign_database_is_refused() {
    idb_common::foreign_database_is_refused().await;
}

#[wasm_bindgen_test]
async fn many_rows_reload_in_order() {
    idb_common::many_rows_reload_in_order().await;
}

#[wasm_bindgen_test]
async fn two_connections_interleave() {
    idb_common::two_connections_interleave().await;
}

#[wasm_bindgen_test]
async fn commit_is_seen_by_the_other_connection() {
    idb_common::commit_is_seen_by_the_other_connection().await;
}

#[wasm_bindgen_test]
async fn concurrent_commits_all_land() {
    idb_common::concurrent_commits_all_land().await;
}

#[wasm_bindgen_test]
async fn remote_and_local_writes_stay_consistent() {
    idb_common::remote_and_local_writes_stay_consistent().await;
}
