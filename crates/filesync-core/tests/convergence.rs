//! Two engines, each with its own directory (NativeFs) and SQLite store, sharing one
//! MemoryRemote (bytes) and one MemoryRelay (events), converge after saves, updates and deletes
//! on either side, also across a partition.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use filesync_core::FileSync;
use filesync_core::preprocess::FileInput;
use filesync_core::remote::MemoryRemote;
use filesync_core::schema::{EventSeq, TransferStatus};
use filesync_core::store::Store;
use filesync_core::sync::{MemoryRelay, RelayEvent};
use filesync_core::testing::remote::FaultyRemote;
use filesync_core::types::FileId;

use common::engine::{self, Disk, retry_fast};
use common::{store_id, within};

mod common;

struct Client {
    sync: FileSync,
    store: Arc<dyn Store>,
    relay: MemoryRelay,
    remote: FaultyRemote<MemoryRemote>,
}

const STORE: &str = "shared_store";

async fn client(remote: &MemoryRemote, relay: &MemoryRelay) -> Client {
    let disk = Disk::scratch().await;
    let relay = relay.handle();
    let remote = FaultyRemote::new(remote.clone());
    let sync = disk
        .builder(STORE)
        .with_remote(Arc::new(remote.clone()))
        .with_relay(Arc::new(relay.clone()))
        .with_options({
            let mut o = retry_fast();
            o.health_check_interval = Duration::from_millis(50);
            o
        })
        .start()
        .await
        .unwrap();
    Client {
        sync,
        store: disk.store,
        relay,
        remote,
    }
}

async fn content(c: &Client, id: &FileId) -> Option<String> {
    engine::content(&c.sync, id).await
}

/// Both stores hold the same event order and rows, both engines have processed every event,
/// every live file is uploaded and here locally with its current content.
async fn converged(a: &Client, b: &Client) -> bool {
    let (la, lb) = (
        a.store.events_after(EventSeq::ROOT, 1000).await.unwrap(),
        b.store.events_after(EventSeq::ROOT, 1000).await.unwrap(),
    );
    let (fa, fb) = (
        a.store.files().await.unwrap(),
        b.store.files().await.unwrap(),
    );
    if la != lb || fa != fb {
        return false;
    }
    for c in [a, b] {
        // Each engine has processed every event.
        let cursor = c.store.cursor().await.unwrap().last_event_sequence;
        if cursor != c.store.head().await.unwrap() {
            return false;
        }
        for f in c.store.files().await.unwrap() {
            if f.is_deleted() {
                if c.store.local_state(&f.id).await.unwrap().is_some() {
                    return false;
                }
                continue;
            }
            if f.remote_key.is_none() {
                return false;
            }
            let s = c.store.local_state(&f.id).await.unwrap();
            if s.is_none_or(|s| {
                s.local_hash != Some(f.content_hash) || s.download_status != TransferStatus::Done
            }) {
                return false;
            }
        }
    }
    true
}

async fn until_converged(a: &Client, b: &Client, what: &str) {
    if !within(1000, || converged(a, b)).await {
        panic!("did not converge: {what}");
    }
}

fn text(body: &str) -> FileInput {
    common::text("f.txt", body)
}

/// Save on A shows on B; update on B shows on A; delete on A removes it on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_update_delete_converge_both_ways() {
    let (remote, relay) = (MemoryRemote::new(), MemoryRelay::new());
    let a = client(&remote, &relay).await;
    let b = client(&remote, &relay).await;

    let saved = a.sync.save_file(text("from A")).await.unwrap();
    until_converged(&a, &b, "after save on A").await;
    assert_eq!(content(&b, &saved.file_id).await.as_deref(), Some("from A"));

    let updated = b
        .sync
        .update_file(&saved.file_id, text("edited on B"))
        .await
        .unwrap();
    until_converged(&a, &b, "after update on B").await;
    let rec = a.store.file(&saved.file_id).await.unwrap().unwrap();
    assert_eq!(rec.content_hash, updated.content_hash);
    assert_eq!(
        content(&a, &saved.file_id).await.as_deref(),
        Some("edited on B")
    );

    a.sync.delete_file(&saved.file_id).await.unwrap();
    until_converged(&a, &b, "after delete on A").await;
    assert!(
        b.store
            .file(&saved.file_id)
            .await
            .unwrap()
            .unwrap()
            .is_deleted()
    );
    assert!(
        content(&b, &saved.file_id).await.is_none(),
        "B's local copy is gone"
    );
    assert!(b.store.local_state(&saved.file_id).await.unwrap().is_none());

    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

/// While B is offline (no relay, no remote storage) both sides keep saving; afterwards B rebases its events
/// after A's and both end with the same order, rows and files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_clients_rebase_and_converge() {
    let (remote, relay) = (MemoryRemote::new(), MemoryRelay::new());
    let a = client(&remote, &relay).await;
    let b = client(&remote, &relay).await;
    let shared = a
        .sync
        .save_file(text("before the partition"))
        .await
        .unwrap();
    until_converged(&a, &b, "before the partition").await;

    b.relay.set_offline(true);
    b.remote.set_offline(true);
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for n in 0..3 {
        on_a.push(
            a.sync
                .save_file(text(&format!("A{n}")))
                .await
                .unwrap()
                .file_id,
        );
        on_b.push(
            b.sync
                .save_file(text(&format!("B{n}")))
                .await
                .unwrap()
                .file_id,
        );
    }
    // Both edit the same file: the relay's order decides (B's edit arrives last).
    a.sync
        .update_file(&shared.file_id, text("A's edit"))
        .await
        .unwrap();
    b.sync
        .update_file(&shared.file_id, text("B's edit"))
        .await
        .unwrap();
    filesync_core::rt::sleep(Duration::from_millis(200)).await;
    assert!(!converged(&a, &b).await);

    assert!(!b.sync.is_online(), "B noticed it is offline");
    b.relay.set_offline(false);
    b.remote.set_offline(false);
    until_converged(&a, &b, "after the partition").await;
    for id in on_a.iter().chain(&on_b) {
        assert!(content(&a, id).await.is_some() && content(&b, id).await.is_some());
    }
    assert_eq!(
        content(&a, &shared.file_id).await.as_deref(),
        Some("B's edit")
    );
    let log = relay.log(&store_id(STORE));
    let seqs: Vec<u64> = log.iter().map(|e| e.seq_num).collect();
    assert_eq!(
        seqs,
        (1..=log.len() as u64).collect::<Vec<_>>(),
        "no gaps or duplicates"
    );
    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

/// The relay's wire shape: `{name, args, seqNum, parentSeqNum, clientId, sessionId}`.
#[test]
fn relay_event_json_shape() {
    let json = r#"{"name":"v1.FileDeleted","args":{"id":"f","deletedAt":"2026-01-04T08:00:00.000Z"},"seqNum":7,"parentSeqNum":6,"clientId":"c1","sessionId":"s1"}"#;
    let e: RelayEvent = serde_json::from_str(json).unwrap();
    assert_eq!(
        (e.seq_num, e.parent_seq_num, e.client_id.as_str()),
        (7, 6, "c1")
    );
    assert_eq!(serde_json::to_string(&e).unwrap(), json);
}
