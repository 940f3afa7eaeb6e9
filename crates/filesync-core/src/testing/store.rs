//! The [`Store`] conformance suite. Each function checks one rule on an empty store.
//!
//! Run it with [`store_conformance!`](crate::store_conformance), one test per rule:
//! ```
//! mod sqlite_store {
//!     use filesync_core::store::SqliteStore;
//!     filesync_core::store_conformance!(#[tokio::test] SqliteStore::scratch().await.unwrap());
//! }
//! # fn main() {}
//! ```

use std::sync::Arc;

use futures::StreamExt;

use crate::Error;
use crate::schema::{
    Event, EventSeq, FileCreated, FileDeleted, FileSyncCursor, FileSyncCursorSet, FileUpdated,
    LocalFileState, LocalFileStateClear, LocalFileStateRemove, MetadataJson, TransferStatus,
};
use crate::store::{Store, subscribe};
use crate::types::{ContentHash, FileId, LocalPath, ObjectKey, Timestamp};

fn id(s: &str) -> FileId {
    FileId::parse(s).expect("valid id")
}

fn hash(n: u8) -> ContentHash {
    ContentHash::from_bytes([n; 32])
}

fn path_of(h: &ContentHash) -> LocalPath {
    LocalPath::parse(format!("livestore-filesync-files/store/{h}")).expect("valid path")
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).expect("valid time")
}

/// A `v1.FileCreated` for `file` with content `n`.
pub fn created(file: &str, n: u8, metadata: MetadataJson) -> Event {
    Event::FileCreated(FileCreated {
        id: id(file),
        path: path_of(&hash(n)),
        content_hash: hash(n),
        metadata_json: metadata,
        created_at: at(1_000),
        updated_at: at(1_000),
    })
}

fn updated(file: &str, n: u8, key: Option<&str>, metadata: MetadataJson) -> Event {
    Event::FileUpdated(FileUpdated {
        id: id(file),
        path: path_of(&hash(n)),
        remote_key: key.map(|k| ObjectKey::parse(k).expect("valid key")),
        content_hash: hash(n),
        metadata_json: metadata,
        updated_at: at(2_000),
    })
}

fn deleted(file: &str) -> Event {
    Event::FileDeleted(FileDeleted {
        id: id(file),
        deleted_at: at(3_000),
    })
}

fn state(file: &str, up: TransferStatus, down: TransferStatus, err: &str) -> LocalFileState {
    LocalFileState {
        file_id: id(file),
        path: Some(path_of(&hash(1))),
        local_hash: Some(hash(1)),
        download_status: down,
        upload_status: up,
        last_sync_error: err.to_owned(),
    }
}

fn cursor_set(seq: EventSeq) -> Event {
    Event::FileSyncCursorSet(FileSyncCursorSet::global(FileSyncCursor {
        last_event_sequence: seq,
        updated_at: at(5_000),
    }))
}

/// SCH-3: an empty store has head `e0`, no rows and the default cursor document.
pub async fn empty_store_defaults(store: Arc<dyn Store>) {
    assert_eq!(store.head().await.expect("head"), EventSeq::ROOT);
    assert!(store.files().await.expect("files").is_empty());
    assert!(store.local_states().await.expect("states").is_empty());
    let cursor = store.cursor().await.expect("cursor");
    assert_eq!(cursor, FileSyncCursor::default());
    assert_eq!(
        serde_json::to_string(&cursor).expect("json"),
        r#"{"lastEventSequence":"e0","updatedAt":"1970-01-01T00:00:00.000Z"}"#
    );
    assert!(
        store
            .events_after(EventSeq::ROOT, 10)
            .await
            .expect("events")
            .is_empty()
    );
}

/// SCH-3: synced events get `e1, e2, …`; client-only events get `e{head}.1, .2, …`.
pub async fn sequence_numbers_follow_livestore(store: Arc<dyn Store>) {
    let seqs = store
        .commit(vec![
            created("f1", 1, MetadataJson::Absent),
            Event::LocalFileStateUpsert(state(
                "f1",
                TransferStatus::Queued,
                TransferStatus::Done,
                "",
            )),
            created("f2", 2, MetadataJson::Absent),
            Event::LocalFileStateUpsert(state(
                "f2",
                TransferStatus::Queued,
                TransferStatus::Done,
                "",
            )),
            Event::LocalFileStateRemove(LocalFileStateRemove { file_id: id("f2") }),
        ])
        .await
        .expect("commit");
    let shown: Vec<String> = seqs.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["e1", "e1.1", "e2", "e2.1", "e2.2"]);
    let more = store
        .commit(vec![Event::LocalFileStateClear(LocalFileStateClear {})])
        .await
        .expect("commit");
    assert_eq!(more[0].to_string(), "e2.3");
    assert_eq!(store.head().await.expect("head").to_string(), "e2");
}

/// SCH-12: `v1.FileCreated` inserts a row with `remoteKey ""`, no `deletedAt`, and missing
/// metadata as null; replaying it changes nothing.
pub async fn file_created_inserts_row(store: Arc<dyn Store>) {
    store
        .commit(vec![created("f", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    let row = store.file(&id("f")).await.expect("file").expect("row");
    assert_eq!(row.path, path_of(&hash(1)));
    assert_eq!(row.content_hash, hash(1));
    assert_eq!(
        (row.remote_key, row.metadata_json, row.deleted_at),
        (None, None, None)
    );
    assert_eq!((row.created_at, row.updated_at), (at(1_000), at(1_000)));
    store
        .commit(vec![created("f", 9, MetadataJson::Value("{}".into()))])
        .await
        .expect("replay");
    let again = store.file(&id("f")).await.expect("file").expect("row");
    assert_eq!(
        again.content_hash,
        hash(1),
        "a replayed FileCreated is a no-op"
    );
}

/// SCH-13: `v1.FileUpdated` sets path, remoteKey, contentHash and updatedAt; metadata only when
/// present (null clears); an unknown id is a no-op; deletedAt is not touched.
pub async fn file_updated_follows_sch_13(store: Arc<dyn Store>) {
    store
        .commit(vec![created(
            "f",
            1,
            MetadataJson::Value(r#"{"mimeType":"a/b"}"#.into()),
        )])
        .await
        .expect("commit");
    store
        .commit(vec![updated("f", 2, Some("store/k"), MetadataJson::Absent)])
        .await
        .expect("commit");
    let row = store.file(&id("f")).await.expect("file").expect("row");
    assert_eq!(row.content_hash, hash(2));
    assert_eq!(row.path, path_of(&hash(2)));
    assert_eq!(
        row.remote_key.as_ref().map(ObjectKey::as_str),
        Some("store/k")
    );
    assert_eq!(row.updated_at, at(2_000));
    assert_eq!(row.created_at, at(1_000));
    assert_eq!(
        row.metadata_json.as_deref(),
        Some(r#"{"mimeType":"a/b"}"#),
        "absent keeps"
    );
    store
        .commit(vec![updated(
            "f",
            2,
            None,
            MetadataJson::Value(r#"{"x":1}"#.into()),
        )])
        .await
        .expect("commit");
    let row = store.file(&id("f")).await.expect("file").expect("row");
    assert_eq!(
        row.metadata_json.as_deref(),
        Some(r#"{"x":1}"#),
        "a string sets"
    );
    assert_eq!(row.remote_key, None, "an empty remoteKey resets it");
    store
        .commit(vec![
            deleted("f"),
            updated("f", 3, None, MetadataJson::Null),
        ])
        .await
        .expect("commit");
    let row = store.file(&id("f")).await.expect("file").expect("row");
    assert_eq!(row.metadata_json, None, "null clears");
    assert_eq!(
        row.deleted_at,
        Some(at(3_000)),
        "an update does not touch deletedAt"
    );
    store
        .commit(vec![updated("unknown", 4, None, MetadataJson::Absent)])
        .await
        .expect("an update of an unknown id is accepted");
    assert!(
        store.file(&id("unknown")).await.expect("file").is_none(),
        "and is a no-op"
    );
}

/// SCH-14: `v1.FileDeleted` sets deletedAt only; the row stays and is still listed.
pub async fn file_deleted_is_soft(store: Arc<dyn Store>) {
    store
        .commit(vec![
            created("b", 1, MetadataJson::Absent),
            created("a", 2, MetadataJson::Absent),
            deleted("b"),
            deleted("missing"),
        ])
        .await
        .expect("commit");
    let files = store.files().await.expect("files");
    let ids: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "b"],
        "files() lists deleted rows too, ordered by id"
    );
    let b = &files[1];
    assert_eq!(b.deleted_at, Some(at(3_000)));
    assert_eq!((b.content_hash, b.updated_at), (hash(1), at(1_000)));
    assert!(store.file(&id("missing")).await.expect("file").is_none());
}

/// SCH-15: Upsert is a full replace, Remove deletes one row, Clear deletes all.
pub async fn local_state_upsert_remove_clear(store: Arc<dyn Store>) {
    let first = state("f", TransferStatus::Error, TransferStatus::Done, "boom");
    store
        .commit(vec![Event::LocalFileStateUpsert(first)])
        .await
        .expect("commit");
    let mut second = LocalFileState::new(id("f"));
    second.upload_status = TransferStatus::InProgress;
    store
        .commit(vec![
            Event::LocalFileStateUpsert(second.clone()),
            Event::LocalFileStateUpsert(state("g", TransferStatus::Done, TransferStatus::Done, "")),
            Event::LocalFileStateUpsert(state(
                "h",
                TransferStatus::Done,
                TransferStatus::Queued,
                "",
            )),
        ])
        .await
        .expect("commit");
    assert_eq!(
        store.local_state(&id("f")).await.expect("state"),
        Some(second),
        "upsert replaces every field"
    );
    store
        .commit(vec![Event::LocalFileStateRemove(LocalFileStateRemove {
            file_id: id("g"),
        })])
        .await
        .expect("commit");
    let ids: Vec<String> = store
        .local_states()
        .await
        .expect("states")
        .into_iter()
        .map(|s| s.file_id.to_string())
        .collect();
    assert_eq!(ids, ["f", "h"]);
    store
        .commit(vec![Event::LocalFileStateClear(LocalFileStateClear {})])
        .await
        .expect("commit");
    assert!(store.local_states().await.expect("states").is_empty());
}

/// SCH-10, ENG-11: `fileSyncCursorSet` persists the cursor document; a cursor beyond the head
/// is refused.
pub async fn cursor_document_round_trips(store: Arc<dyn Store>) {
    store
        .commit(vec![
            created("a", 1, MetadataJson::Absent),
            created("b", 2, MetadataJson::Absent),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![cursor_set(EventSeq::global(2))])
        .await
        .expect("set cursor");
    let c = store.cursor().await.expect("cursor");
    assert_eq!(c.last_event_sequence, EventSeq::global(2));
    assert_eq!(c.updated_at, at(5_000));
    let err = store
        .commit(vec![cursor_set(EventSeq::global(3))])
        .await
        .expect_err("a cursor beyond the head");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert_eq!(
        store.cursor().await.expect("cursor").last_event_sequence,
        EventSeq::global(2)
    );
}

/// A commit of several events is atomic: when one is refused, none is applied or logged.
pub async fn commit_is_atomic(store: Arc<dyn Store>) {
    store
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    let err = store
        .commit(vec![
            created("b", 2, MetadataJson::Absent),
            Event::LocalFileStateUpsert(state(
                "b",
                TransferStatus::Queued,
                TransferStatus::Done,
                "",
            )),
            deleted("a"),
            cursor_set(EventSeq::global(99)),
        ])
        .await
        .expect_err("the batch must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert!(
        store.file(&id("b")).await.expect("file").is_none(),
        "no partial insert"
    );
    assert!(store.local_state(&id("b")).await.expect("state").is_none());
    let a = store.file(&id("a")).await.expect("file").expect("row");
    assert_eq!(a.deleted_at, None, "no partial delete");
    assert_eq!(
        store.head().await.expect("head"),
        EventSeq::global(1),
        "nothing logged"
    );
    let seqs = store
        .commit(vec![created("c", 3, MetadataJson::Absent)])
        .await
        .expect("commit after a refused batch");
    assert_eq!(
        seqs,
        vec![EventSeq::global(2)],
        "no sequence number was burnt"
    );
}

/// ENG-10: `events_after` returns synced events after a position, in order, bounded by `limit`;
/// client-only events are not in the log.
pub async fn events_after_reads_in_order(store: Arc<dyn Store>) {
    for n in 1..=5u8 {
        store
            .commit(vec![
                created(&format!("f{n}"), n, MetadataJson::Absent),
                Event::LocalFileStateUpsert(state(
                    &format!("f{n}"),
                    TransferStatus::Queued,
                    TransferStatus::Done,
                    "",
                )),
            ])
            .await
            .expect("commit");
    }
    let all = store
        .events_after(EventSeq::ROOT, 100)
        .await
        .expect("events");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq.global).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(all.iter().all(|e| e.event.is_synced()));
    assert_eq!(
        all[2].event,
        created("f3", 3, MetadataJson::Absent),
        "events round-trip"
    );
    let page = store
        .events_after(EventSeq::global(2), 2)
        .await
        .expect("events");
    let seqs: Vec<u64> = page.iter().map(|e| e.seq.global).collect();
    assert_eq!(seqs, [3, 4]);
    let client_pos = EventSeq {
        global: 4,
        client: 1,
        rebase: 0,
    };
    let rest = store.events_after(client_pos, 10).await.expect("events");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq, EventSeq::global(5));
}

/// ENG-10: `subscribe` delivers what is there, then waits for and delivers new commits.
pub async fn subscribe_follows_new_commits(store: Arc<dyn Store>) {
    store
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    let mut stream = subscribe(Arc::clone(&store), EventSeq::ROOT);
    let first = stream.next().await.expect("batch").expect("ok");
    assert_eq!(first.len(), 1);
    let next = stream.next();
    let writer = async {
        store
            .commit(vec![Event::LocalFileStateClear(LocalFileStateClear {})])
            .await
            .expect("client-only commit");
        store
            .commit(vec![
                created("b", 2, MetadataJson::Absent),
                created("c", 3, MetadataJson::Absent),
            ])
            .await
            .expect("commit");
    };
    let (batch, ()) = futures::join!(next, writer);
    let batch = batch.expect("batch").expect("ok");
    let seqs: Vec<u64> = batch.iter().map(|e| e.seq.global).collect();
    assert_eq!(seqs, [2, 3]);
}

/// `watch` moves to the new head after commits that append synced events.
pub async fn watch_reports_head(store: Arc<dyn Store>) {
    let mut rx = store.watch();
    assert_eq!(*rx.borrow_and_update(), EventSeq::ROOT);
    store
        .commit(vec![Event::LocalFileStateClear(LocalFileStateClear {})])
        .await
        .expect("commit");
    assert!(
        !rx.has_changed().expect("open"),
        "client-only commits do not move the head"
    );
    store
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    assert!(rx.has_changed().expect("open"));
    assert_eq!(*rx.borrow_and_update(), EventSeq::global(1));
}

/// Concurrent commits are serialised: every synced event gets a distinct, gap-free number.
pub async fn concurrent_commits_get_distinct_numbers(store: Arc<dyn Store>) {
    let commits = (0..20u8).map(|n| {
        let store = Arc::clone(&store);
        async move {
            store
                .commit(vec![created(&format!("c{n}"), n, MetadataJson::Absent)])
                .await
                .expect("commit")[0]
        }
    });
    let mut seqs: Vec<u64> = futures::future::join_all(commits)
        .await
        .into_iter()
        .map(|s| s.global)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    assert_eq!(store.files().await.expect("files").len(), 20);
}

/// The client id is non-empty and stable; nothing is confirmed at first; `confirm` only moves
/// forward and never past the head.
pub async fn confirm_moves_forward_within_the_head(store: Arc<dyn Store>) {
    let id = store.client_id().await.expect("client id");
    assert!(!id.is_empty());
    assert_eq!(store.client_id().await.expect("client id"), id);
    assert_eq!(store.confirmed().await.expect("confirmed"), EventSeq::ROOT);
    store
        .commit(vec![
            created("a", 1, MetadataJson::Absent),
            created("b", 2, MetadataJson::Absent),
        ])
        .await
        .expect("commit");
    let err = store
        .confirm(EventSeq::global(3))
        .await
        .expect_err("past the head");
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    store.confirm(EventSeq::global(2)).await.expect("confirm");
    assert_eq!(
        store.confirmed().await.expect("confirmed"),
        EventSeq::global(2)
    );
    let err = store
        .confirm(EventSeq::global(1))
        .await
        .expect_err("backwards");
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
}

/// Remote events with nothing pending are appended after the confirmed position, materialized,
/// confirmed, and wake subscribers.
pub async fn apply_remote_appends_when_nothing_is_pending(store: Arc<dyn Store>) {
    let mut rx = store.watch();
    rx.borrow_and_update();
    let rebased = store
        .apply_remote(vec![created("r1", 1, MetadataJson::Absent), deleted("r1")])
        .await
        .expect("apply");
    assert!(!rebased);
    assert_eq!(store.head().await.expect("head"), EventSeq::global(2));
    assert_eq!(
        store.confirmed().await.expect("confirmed"),
        EventSeq::global(2)
    );
    assert!(rx.has_changed().expect("open"));
    let row = store.file(&id("r1")).await.expect("file").expect("row");
    assert!(row.is_deleted());
}

/// Pending local events are rebased after remote ones: renumbered, the tables rebuilt in the
/// new order (the later writer wins), the cursor rewound to the old confirmed position.
pub async fn apply_remote_rebases_pending_events(store: Arc<dyn Store>) {
    store
        .apply_remote(vec![created("x", 1, MetadataJson::Absent)])
        .await
        .expect("apply");
    // Local, not yet pushed: an update of x and a new file; the cursor has seen them.
    store
        .commit(vec![
            updated("x", 2, None, MetadataJson::Absent),
            created("mine", 5, MetadataJson::Absent),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![cursor_set(EventSeq::global(3))])
        .await
        .expect("cursor");
    // Meanwhile another client's update of x was ordered first by the relay.
    let rebased = store
        .apply_remote(vec![updated(
            "x",
            3,
            Some("store/k3"),
            MetadataJson::Absent,
        )])
        .await
        .expect("apply");
    assert!(rebased);
    let log = |store: Arc<dyn Store>| async move {
        store
            .events_after(EventSeq::ROOT, 100)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.seq.to_string(), e.event.name().to_owned()))
            .collect::<Vec<_>>()
    };
    // The pending events come after the remote one, renumbered, with the next rebase
    // generation while they are still pending.
    assert_eq!(
        log(Arc::clone(&store)).await,
        [
            ("e1".to_owned(), "v1.FileCreated".to_owned()),
            ("e2".to_owned(), "v1.FileUpdated".to_owned()),
            ("e3r1".to_owned(), "v1.FileUpdated".to_owned()),
            ("e4r1".to_owned(), "v1.FileCreated".to_owned()),
        ]
    );
    assert_eq!(
        store.head().await.expect("head").to_string(),
        "e4r1",
        "the head is the last event's number, generation included"
    );
    let x = store.file(&id("x")).await.expect("file").expect("row");
    assert_eq!(
        x.content_hash,
        hash(2),
        "our later update wins in the new order"
    );
    assert!(store.file(&id("mine")).await.expect("file").is_some());
    assert_eq!(
        store.confirmed().await.expect("confirmed"),
        EventSeq::global(2)
    );
    assert_eq!(
        store.cursor().await.expect("cursor").last_event_sequence,
        EventSeq::global(1),
        "the cursor is rewound to the old confirmed position"
    );
    // Once the relay acknowledges them, their numbers are final: the generation is dropped.
    store.confirm(EventSeq::global(3)).await.expect("confirm");
    assert_eq!(
        log(Arc::clone(&store))
            .await
            .into_iter()
            .map(|(seq, _)| seq)
            .collect::<Vec<_>>(),
        ["e1", "e2", "e3", "e4r1"]
    );
    let head = store.head().await.expect("head");
    assert_eq!(*store.watch().borrow(), head);
    // A cursor recorded at a pending number becomes final with it.
    let pending = EventSeq {
        global: 4,
        client: 0,
        rebase: 1,
    };
    store
        .commit(vec![cursor_set(pending)])
        .await
        .expect("cursor");
    store.confirm(EventSeq::global(4)).await.expect("confirm");
    assert_eq!(
        store.cursor().await.expect("cursor").last_event_sequence,
        EventSeq::global(4)
    );
    // And one recorded late, after the confirmation, is stored final.
    store
        .commit(vec![cursor_set(pending)])
        .await
        .expect("cursor");
    assert_eq!(
        store.cursor().await.expect("cursor").last_event_sequence,
        EventSeq::global(4)
    );
}

/// `apply_remote` refuses client-only events and changes nothing.
pub async fn apply_remote_refuses_client_only_events(store: Arc<dyn Store>) {
    let err = store
        .apply_remote(vec![
            created("a", 1, MetadataJson::Absent),
            Event::LocalFileStateClear(LocalFileStateClear {}),
        ])
        .await
        .expect_err("client-only events never come from the relay");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(store.head().await.expect("head"), EventSeq::ROOT);
    assert!(store.file(&id("a")).await.expect("file").is_none());
}

/// WEAK-7: owed remote deletes are kept in order, idempotently, until cleared.
pub async fn remote_delete_queue(store: Arc<dyn Store>) {
    let k = |s: &str| ObjectKey::parse(s).expect("valid key");
    assert!(store.remote_deletes().await.expect("read").is_empty());
    for key in ["s/b", "s/a", "s/b"] {
        store.set_remote_delete(&k(key), true).await.expect("add");
    }
    assert_eq!(
        store.remote_deletes().await.expect("read"),
        vec![k("s/b"), k("s/a")]
    );
    store
        .set_remote_delete(&k("s/b"), false)
        .await
        .expect("clear");
    store
        .set_remote_delete(&k("s/missing"), false)
        .await
        .expect("clear missing");
    assert_eq!(store.remote_deletes().await.expect("read"), vec![k("s/a")]);
}

/// Expands to one test per rule of the [`Store`](crate::store::Store) contract. The first
/// argument is the test attribute, the second an expression (it may `.await`) that makes a
/// fresh, empty store for each test.
#[macro_export]
macro_rules! store_conformance {
    (#[$attr:meta] $make:expr) => {
        $crate::store_conformance!(@each #[$attr] $make;
            empty_store_defaults,
            sequence_numbers_follow_livestore,
            file_created_inserts_row,
            file_updated_follows_sch_13,
            file_deleted_is_soft,
            local_state_upsert_remove_clear,
            cursor_document_round_trips,
            commit_is_atomic,
            events_after_reads_in_order,
            subscribe_follows_new_commits,
            watch_reports_head,
            concurrent_commits_get_distinct_numbers,
            confirm_moves_forward_within_the_head,
            apply_remote_appends_when_nothing_is_pending,
            apply_remote_rebases_pending_events,
            apply_remote_refuses_client_only_events,
            remote_delete_queue
        );
    };
    (@each #[$attr:meta] $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $rule() {
                let store = $make;
                $crate::testing::store::$rule(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}
