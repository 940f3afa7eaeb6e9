//! Waiting for engines to settle, for tests that sync real clients.

use std::sync::Arc;
use std::time::Duration;

use crate::schema::TransferStatus;
use crate::store::Store;
use crate::types::{ContentHash, FileId};

/// Wait (up to ~20 s) until `store` shows file `id` settled: with `want = Some(hash)`, the row
/// has that hash and a remote key and the local copy is that hash and downloaded; with `None`,
/// the row is deleted and its local state gone. Panics (the test's failure report) otherwise.
pub async fn settled(store: &Arc<dyn Store>, id: &FileId, want: Option<ContentHash>) {
    for _ in 0..2000 {
        let rec = store.file(id).await.expect("read the file row");
        let state = store.local_state(id).await.expect("read the local state");
        let ok = match (want, rec) {
            (None, Some(r)) => r.is_deleted() && state.is_none(),
            (Some(h), Some(r)) => {
                r.content_hash == h
                    && r.remote_key.is_some()
                    && state.is_some_and(|s| {
                        s.local_hash == Some(h) && s.download_status == TransferStatus::Done
                    })
            }
            _ => false,
        };
        if ok {
            return;
        }
        crate::rt::sleep(Duration::from_millis(10)).await;
    }
    panic!("file {id} did not settle at {want:?}");
}
