//! The `IdbStore`-specific tests, run by `idb_browser.rs` (a page) and `idb_worker.rs` (a
//! dedicated worker).

use std::sync::Arc;

use filesync_core::Error;
use filesync_core::schema::{
    Event, EventSeq, FileSyncCursor, FileSyncCursorSet, FileUpdated, LocalFileState,
    LocalFileStateClear, MetadataJson, TransferStatus,
};
use filesync_core::store::Store;
use filesync_core::testing::store::created;
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, Timestamp};
use filesync_opfs::IdbStore;
use wasm_bindgen::{JsCast, JsValue};

fn id(s: &str) -> FileId {
    FileId::parse(s).expect("valid id")
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).expect("valid key")
}

fn updated(file: &str, n: u8, remote: Option<&str>) -> Event {
    Event::FileUpdated(FileUpdated {
        id: id(file),
        path: LocalPath::parse(format!("livestore-filesync-files/s/{n}")).expect("path"),
        remote_key: remote.map(key),
        content_hash: ContentHash::from_bytes([n; 32]),
        metadata_json: MetadataJson::Value(format!("{{\"n\":{n}}}")),
        updated_at: Timestamp::from_millis(2_000).expect("time"),
    })
}

fn upsert(file: &str, status: TransferStatus, error: &str) -> Event {
    let mut s = LocalFileState::new(id(file));
    s.upload_status = status;
    s.last_sync_error = error.to_owned();
    Event::LocalFileStateUpsert(s)
}

fn cursor_set(seq: EventSeq) -> Event {
    Event::FileSyncCursorSet(FileSyncCursorSet::global(FileSyncCursor {
        last_event_sequence: seq,
        updated_at: Timestamp::from_millis(5_000).expect("time"),
    }))
}

/// Everything a store can report, for comparing a store before and after a reopen.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<(String, Event)>,
    files: Vec<filesync_core::schema::FileRecord>,
    local: Vec<LocalFileState>,
    cursor: FileSyncCursor,
    head: EventSeq,
    confirmed: EventSeq,
    client_id: String,
    remote_deletes: Vec<ObjectKey>,
}

async fn snapshot(store: &IdbStore) -> Snapshot {
    Snapshot {
        events: store
            .events_after(EventSeq::ROOT, 1000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.seq.to_string(), e.event))
            .collect(),
        files: store.files().await.expect("files"),
        local: store.local_states().await.expect("local"),
        cursor: store.cursor().await.expect("cursor"),
        head: store.head().await.expect("head"),
        confirmed: store.confirmed().await.expect("confirmed"),
        client_id: store.client_id().await.expect("client id"),
        remote_deletes: store.remote_deletes().await.expect("remote deletes"),
    }
}

/// Everything committed (events with rebase generations, rows, local states, cursor, confirmed
/// position, client id, owed remote deletes) is there after the store is dropped and reopened,
/// and numbering continues where it stopped.
pub async fn reopen_sees_everything() {
    let store = IdbStore::scratch().await.expect("open");
    let name = store.name().to_owned();
    store
        .apply_remote(
            (1..=9)
                .map(|n| created(&format!("r{n}"), n, MetadataJson::Absent))
                .collect(),
        )
        .await
        .expect("remote");
    store
        .commit(vec![
            updated("r1", 20, None),
            upsert("r1", TransferStatus::Queued, ""),
            created("mine", 21, MetadataJson::Null),
            upsert("mine", TransferStatus::Error, "boom"),
            upsert("gone", TransferStatus::Done, ""),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![
            Event::LocalFileStateRemove(filesync_core::schema::LocalFileStateRemove {
                file_id: id("gone"),
            }),
            cursor_set(EventSeq::global(11)),
        ])
        .await
        .expect("commit");
    // Another client's update ordered first: ours are rebased (e12r1, e13r1).
    assert!(
        store
            .apply_remote(vec![
                updated("r1", 30, Some("s/k30")),
                created("r10", 10, MetadataJson::Absent)
            ])
            .await
            .expect("rebase")
    );
    store.confirm(EventSeq::global(12)).await.expect("confirm");
    for k in ["s/b", "s/a", "s/c"] {
        store.set_remote_delete(&key(k), true).await.expect("owe");
    }
    store
        .set_remote_delete(&key("s/a"), false)
        .await
        .expect("clear");
    // A refused batch is not persisted either.
    store
        .commit(vec![
            created("refused", 1, MetadataJson::Absent),
            cursor_set(EventSeq::global(99)),
        ])
        .await
        .expect_err("beyond the head");

    let before = snapshot(&store).await;
    let seqs: Vec<&str> = before.events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        seqs,
        [
            "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10", "e11", "e12", "e13r1"
        ]
    );
    assert_eq!(before.head.to_string(), "e13r1");
    assert_eq!(before.confirmed, EventSeq::global(12));
    assert_eq!(
        before.cursor.last_event_sequence,
        EventSeq::global(9),
        "rewound by the rebase"
    );
    assert_eq!(before.remote_deletes, vec![key("s/b"), key("s/c")]);
    assert_eq!(
        before
            .local
            .iter()
            .map(|s| s.file_id.as_str())
            .collect::<Vec<_>>(),
        ["mine", "r1"]
    );
    let r1 = before.files.iter().find(|f| f.id == id("r1")).expect("r1");
    assert_eq!(
        r1.content_hash,
        ContentHash::from_bytes([20; 32]),
        "our later update wins"
    );
    drop(store);

    let again = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(snapshot(&again).await, before);
    assert_eq!(
        *again.watch().borrow(),
        before.head,
        "watch starts at the stored head"
    );

    // Numbering continues: client-only events after the head, then the next global number.
    let seqs = again
        .commit(vec![
            Event::LocalFileStateClear(LocalFileStateClear {}),
            created("n", 7, MetadataJson::Absent),
        ])
        .await
        .expect("commit after reopen");
    assert_eq!(
        seqs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["e13.1", "e14"]
    );
    again.confirm(EventSeq::global(14)).await.expect("confirm");
    drop(again);
    let third = IdbStore::open(&name).await.expect("reopen");
    let after = snapshot(&third).await;
    assert!(after.local.is_empty(), "the clear was persisted");
    assert_eq!(after.head, EventSeq::global(14));
    assert_eq!(
        after.events[12].0, "e13",
        "the confirm made e13 final on disk"
    );
    third.destroy().await.expect("destroy");
}

/// The client id is created with the database and stays; another database has another one.
pub async fn client_id_is_stable_per_database() {
    let a = IdbStore::scratch().await.expect("open");
    let b = IdbStore::scratch().await.expect("open");
    let id_a = a.client_id().await.expect("id");
    assert_eq!(id_a.len(), 36, "a UUID: {id_a}");
    assert_ne!(id_a, b.client_id().await.expect("id"));
    let name = a.name().to_owned();
    drop(a);
    for _ in 0..3 {
        let again = IdbStore::open(&name).await.expect("reopen");
        assert_eq!(again.client_id().await.expect("id"), id_a);
    }
    IdbStore::delete(&name).await.expect("delete");
    b.destroy().await.expect("destroy");
}

/// `destroy` deletes the database: reopening the name starts empty, with a new client id.
pub async fn destroy_deletes_the_database() {
    let store = IdbStore::scratch().await.expect("open");
    let name = store.name().to_owned();
    let old_id = store.client_id().await.expect("id");
    store
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    store
        .set_remote_delete(&key("s/x"), true)
        .await
        .expect("owe");
    store.destroy().await.expect("destroy");
    let fresh = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(fresh.head().await.expect("head"), EventSeq::ROOT);
    assert!(fresh.files().await.expect("files").is_empty());
    assert!(fresh.remote_deletes().await.expect("queue").is_empty());
    assert_ne!(fresh.client_id().await.expect("id"), old_id);
    fresh.destroy().await.expect("destroy");
    IdbStore::delete(&name)
        .await
        .expect("deleting a missing database is fine");
}

/// Deleting a database while a store has it open does not wait for that store: it closes
/// its connection; its writes then fail (not retryable) and change nothing, reads still work.
pub async fn delete_closes_an_open_store() {
    let store = IdbStore::scratch().await.expect("open");
    store
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    IdbStore::delete(store.name()).await.expect("delete");
    let err = store
        .commit(vec![created("b", 2, MetadataJson::Absent)])
        .await
        .expect_err("the connection is closed");
    assert!(
        matches!(
            err,
            Error::Store {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        format!("{:?}", std::error::Error::source(&err)).contains("closed"),
        "{err:?}"
    );
    assert_eq!(
        store.head().await.expect("head"),
        EventSeq::global(1),
        "memory unchanged"
    );
    assert!(store.file(&id("b")).await.expect("file").is_none());
    assert!(store.file(&id("a")).await.expect("file").is_some());
    let reopened = IdbStore::open(store.name()).await.expect("reopen");
    assert_eq!(
        reopened.head().await.expect("head"),
        EventSeq::ROOT,
        "it was deleted"
    );
    reopened.destroy().await.expect("destroy");
}

/// Two names are two separate stores, even while both are open.
pub async fn databases_are_isolated() {
    let a = IdbStore::scratch().await.expect("open");
    let b = IdbStore::scratch().await.expect("open");
    assert_ne!(a.name(), b.name());
    a.commit(vec![created("only-a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    a.set_remote_delete(&key("s/a"), true).await.expect("owe");
    b.commit(vec![
        cursor_set(EventSeq::ROOT),
        upsert("only-b", TransferStatus::Done, ""),
    ])
    .await
    .expect("commit");
    assert_eq!(b.head().await.expect("head"), EventSeq::ROOT);
    assert!(b.files().await.expect("files").is_empty());
    assert!(b.remote_deletes().await.expect("queue").is_empty());
    assert!(a.local_states().await.expect("local").is_empty());
    let (na, nb) = (a.name().to_owned(), b.name().to_owned());
    drop((a, b));
    let (a, b) = (
        IdbStore::open(&na).await.expect("a"),
        IdbStore::open(&nb).await.expect("b"),
    );
    assert_eq!(a.files().await.expect("files").len(), 1);
    assert!(b.files().await.expect("files").is_empty());
    assert_eq!(b.local_states().await.expect("local").len(), 1);
    a.destroy().await.expect("destroy");
    b.destroy().await.expect("destroy");
}

/// A commit whose future is dropped after it started still lands whole, in memory and in the
/// database, and the next commit is numbered after it.
pub async fn dropped_commit_stays_consistent() {
    let store = IdbStore::scratch().await.expect("open");
    let mut first = Box::pin(store.commit(vec![created("a", 1, MetadataJson::Absent)]));
    assert!(
        futures::poll!(first.as_mut()).is_pending(),
        "waits for the transaction"
    );
    drop(first);
    let seqs = store
        .commit(vec![created("b", 2, MetadataJson::Absent)])
        .await
        .expect("commit");
    assert_eq!(seqs, vec![EventSeq::global(2)]);
    assert!(store.file(&id("a")).await.expect("file").is_some());
    let name = store.name().to_owned();
    let before = snapshot(&store).await;
    drop(store);
    let again = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(snapshot(&again).await, before);
    again.destroy().await.expect("destroy");
}

/// Two clones share one connection and one log.
// filesync-core's API takes `Arc<dyn Store>`; on wasm32 nothing needs to be `Send`.
#[allow(clippy::arc_with_non_send_sync)]
pub async fn clones_share_the_store() {
    let store = IdbStore::scratch().await.expect("open");
    let clone = store.clone();
    let mut rx = store.watch();
    clone
        .commit(vec![created("a", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    assert!(rx.has_changed().expect("open"));
    assert_eq!(*rx.borrow_and_update(), EventSeq::global(1));
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    assert_eq!(shared.files().await.expect("files").len(), 1);
    drop(clone);
    store.destroy().await.expect("destroy");
}

/// Await an `IDBRequest` (test helper: plain `onsuccess`/`onerror` promise).
async fn await_request(request: &web_sys::IdbRequest) -> Result<JsValue, JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    wasm_bindgen_futures::JsFuture::from(promise).await?;
    request.result()
}

fn factory() -> web_sys::IdbFactory {
    super::global("indexedDB").unchecked_into()
}

/// Another program's database (no filesync object stores, or a newer version) is refused
/// with `NotAStore` and left as it was.
pub async fn foreign_database_is_refused() {
    for version in [1u32, 7] {
        let name = super::unique("filesync-foreign");
        let request = factory().open_with_u32(&name, version).expect("open");
        let db: web_sys::IdbDatabase = await_request(&request)
            .await
            .expect("created")
            .unchecked_into();
        db.close();
        let err = IdbStore::open(&name)
            .await
            .expect_err("not a filesync store");
        assert!(
            matches!(err, Error::NotAStore { .. }),
            "version {version}: {err:?}"
        );
        let request = factory().open(&name).expect("open");
        let db: web_sys::IdbDatabase = await_request(&request)
            .await
            .expect("still there")
            .unchecked_into();
        assert_eq!(db.version(), f64::from(version), "untouched");
        assert_eq!(db.object_store_names().length(), 0, "untouched");
        db.close();
        IdbStore::delete(&name).await.expect("delete");
    }
    let err = IdbStore::open("").await.expect_err("empty name");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

/// A store with many rows reloads them all, in order (numeric log keys past 9 and 99 too).
pub async fn many_rows_reload_in_order() {
    let store = IdbStore::scratch().await.expect("open");
    for chunk in 0..5u32 {
        let events: Vec<Event> = (0..50u32)
            .flat_map(|i| {
                let n = chunk * 50 + i;
                let f = format!("f{n:04}");
                [
                    created(&f, (n % 251) as u8, MetadataJson::Absent),
                    upsert(&f, TransferStatus::Done, ""),
                ]
            })
            .collect();
        store.commit(events).await.expect("commit");
    }
    let name = store.name().to_owned();
    let before = snapshot(&store).await;
    assert_eq!(before.head, EventSeq::global(250));
    drop(store);
    let again = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(snapshot(&again).await, before);
    let page = again
        .events_after(EventSeq::global(99), 3)
        .await
        .expect("events");
    assert_eq!(
        page.iter().map(|e| e.seq.global).collect::<Vec<_>>(),
        [100, 101, 102]
    );
    again.destroy().await.expect("destroy");
}

/// How long another connection may take to see a write (the brief: ~2 s).
const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait until `a` and `b` report the same store (they converge once each has seen the other's
/// writes), and return it.
async fn converged(a: &IdbStore, b: &IdbStore) -> Snapshot {
    let start = filesync_core::rt::Instant::now();
    loop {
        let (sa, sb) = (snapshot(a).await, snapshot(b).await);
        if sa == sb {
            return sa;
        }
        assert!(
            start.elapsed() < SEEN_WITHIN,
            "the two connections did not converge:\n{sa:#?}\n{sb:#?}"
        );
        filesync_core::rt::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The events of a snapshot as `(seq, file id)` of their rows, for readable assertions.
fn logged(s: &Snapshot) -> Vec<String> {
    s.events
        .iter()
        .map(|(seq, e)| match e {
            Event::FileCreated(c) => format!("{seq}:{}", c.id.as_str()),
            Event::FileUpdated(u) => format!("{seq}:{}~", u.id.as_str()),
            _ => seq.clone(),
        })
        .collect()
}

fn file_ids(s: &Snapshot) -> Vec<&str> {
    s.files.iter().map(|f| f.id.as_str()).collect()
}

/// Two `IdbStore`s on one database (two tabs, in one page here) committing in turn: every
/// commit gets the next global number (no gaps, none reused), and both end with the same log
/// and rows, which a fresh open confirms.
pub async fn two_connections_interleave() {
    let a = IdbStore::scratch().await.expect("open a");
    let b = IdbStore::open(a.name()).await.expect("open b");
    let mut seqs = Vec::new();
    for n in 1..=8u8 {
        let (store, tag) = if n % 2 == 1 { (&a, "a") } else { (&b, "b") };
        let file = format!("{tag}{n}");
        let got = store
            .commit(vec![
                created(&file, n, MetadataJson::Absent),
                upsert(&file, TransferStatus::Queued, ""),
            ])
            .await
            .expect("commit");
        seqs.push(got[0]);
        // Every other round, the same connection commits twice in a row.
        if n % 4 == 0 {
            let got = store
                .commit(vec![updated(&file, n + 100, None)])
                .await
                .expect("commit");
            seqs.push(got[0]);
        }
    }
    assert_eq!(
        seqs,
        (1..=10).map(EventSeq::global).collect::<Vec<_>>(),
        "distinct, gap-free numbers in commit order"
    );
    let both = converged(&a, &b).await;
    assert_eq!(
        logged(&both),
        [
            "e1:a1", "e2:b2", "e3:a3", "e4:b4", "e5:b4~", "e6:a5", "e7:b6", "e8:a7", "e9:b8",
            "e10:b8~"
        ]
    );
    assert_eq!(
        file_ids(&both),
        ["a1", "a3", "a5", "a7", "b2", "b4", "b6", "b8"]
    );
    assert_eq!(both.local.len(), 8);
    assert_eq!(both.head, EventSeq::global(10));
    let name = a.name().to_owned();
    let fresh = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(snapshot(&fresh).await, both, "the database holds the same");
    drop((fresh, b));
    a.destroy().await.expect("destroy");
}

/// A commit on one connection reaches the other without it writing: its `watch`, `head`,
/// `events_after`, `files` and `subscribe` (how the leader's engine follows the log).
// filesync-core's API takes `Arc<dyn Store>`; on wasm32 nothing needs to be `Send`.
#[allow(clippy::arc_with_non_send_sync)]
pub async fn commit_is_seen_by_the_other_connection() {
    use futures::StreamExt;

    let a = IdbStore::scratch().await.expect("open a");
    let b = IdbStore::open(a.name()).await.expect("open b");
    let mut rx = b.watch();
    rx.borrow_and_update();
    let mut follow = filesync_core::store::subscribe(Arc::new(b.clone()), EventSeq::ROOT);
    a.commit(vec![created("x", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    filesync_core::rt::timeout(SEEN_WITHIN, rx.changed())
        .await
        .expect("b's watch changes in time")
        .expect("open");
    assert_eq!(*rx.borrow_and_update(), EventSeq::global(1));
    assert_eq!(b.head().await.expect("head"), EventSeq::global(1));
    let events = b.events_after(EventSeq::ROOT, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    assert!(b.file(&id("x")).await.expect("file").is_some());
    assert_eq!(b.files().await.expect("files").len(), 1);
    let batch = filesync_core::rt::timeout(SEEN_WITHIN, follow.next())
        .await
        .expect("subscribe yields in time")
        .expect("open")
        .expect("events");
    assert_eq!(batch[0].seq, EventSeq::global(1));

    // A rebase and a confirm on `a` (not just appends) reach `b` as well.
    a.apply_remote(vec![created("r", 2, MetadataJson::Absent)])
        .await
        .expect("rebase");
    a.confirm(EventSeq::global(2)).await.expect("confirm");
    let both = converged(&a, &b).await;
    assert_eq!(logged(&both), ["e1:r", "e2:x"]);
    assert_eq!(both.confirmed, EventSeq::global(2));
    assert_eq!(*b.watch().borrow(), EventSeq::global(2));
    let batch = filesync_core::rt::timeout(SEEN_WITHIN, follow.next())
        .await
        .expect("subscribe yields in time")
        .expect("open")
        .expect("events");
    assert_eq!(batch.last().map(|e| e.seq.global), Some(2));
    drop((follow, b));
    a.destroy().await.expect("destroy");
}

/// Commits started on both connections at the same moment (neither has seen the other's):
/// all land, with distinct numbers, none overwritten.
pub async fn concurrent_commits_all_land() {
    let a = IdbStore::scratch().await.expect("open a");
    let b = IdbStore::open(a.name()).await.expect("open b");
    for round in 0..5u8 {
        let (fa, fb, fa2) = (
            format!("a{round}"),
            format!("b{round}"),
            format!("c{round}"),
        );
        let (ra, rb, ra2) = futures::join!(
            a.commit(vec![
                created(&fa, round, MetadataJson::Absent),
                upsert(&fa, TransferStatus::Queued, ""),
            ]),
            b.commit(vec![
                upsert(&fb, TransferStatus::Queued, ""),
                created(&fb, round, MetadataJson::Absent),
            ]),
            a.commit(vec![created(&fa2, round, MetadataJson::Absent)]),
        );
        let mut globals = vec![
            ra.expect("a")[0].global,
            rb.expect("b")[1].global,
            ra2.expect("a again")[0].global,
        ];
        globals.sort_unstable();
        let base = u64::from(round) * 3;
        assert_eq!(
            globals,
            [base + 1, base + 2, base + 3],
            "round {round}: distinct numbers"
        );
    }
    let both = converged(&a, &b).await;
    assert_eq!(both.events.len(), 15, "{:?}", logged(&both));
    for (n, (seq, _)) in both.events.iter().enumerate() {
        assert_eq!(*seq, format!("e{}", n + 1));
    }
    assert_eq!(both.files.len(), 15, "no file overwritten");
    assert_eq!(both.local.len(), 10);
    let fresh = IdbStore::open(a.name()).await.expect("reopen");
    assert_eq!(snapshot(&fresh).await, both);
    drop((fresh, b));
    a.destroy().await.expect("destroy");
}

/// The leader applies remote events and confirms while a follower commits (at the same time):
/// the follower's events are rebased after the remote ones, never lost, and both connections
/// (and the database) agree on every table.
pub async fn remote_and_local_writes_stay_consistent() {
    let leader = IdbStore::scratch().await.expect("open leader");
    let follower = IdbStore::open(leader.name()).await.expect("open follower");
    follower
        .commit(vec![created("mine1", 1, MetadataJson::Absent)])
        .await
        .expect("commit");
    let (rebased, mine2) = futures::join!(
        leader.apply_remote(vec![
            created("r1", 11, MetadataJson::Absent),
            created("r2", 12, MetadataJson::Absent),
        ]),
        follower.commit(vec![
            created("mine2", 2, MetadataJson::Absent),
            upsert("mine2", TransferStatus::Queued, ""),
        ]),
    );
    assert!(rebased.expect("apply remote"), "mine1 was pending");
    mine2.expect("commit");
    let mid = converged(&leader, &follower).await;
    assert_eq!(mid.confirmed, EventSeq::global(2));
    let ids: Vec<String> = logged(&mid)
        .iter()
        .map(|s| s.split(':').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["r1", "r2", "mine1", "mine2"], "{:?}", logged(&mid));
    assert_eq!(mid.events[2].0, "e3r1", "rebased: {:?}", logged(&mid));

    let (confirmed, mine3, cursor) = futures::join!(
        leader.confirm(EventSeq::global(4)),
        follower.commit(vec![created("mine3", 3, MetadataJson::Absent)]),
        leader.commit(vec![cursor_set(EventSeq::global(4))]),
    );
    confirmed.expect("confirm");
    assert_eq!(mine3.expect("commit"), vec![EventSeq::global(5)]);
    cursor.expect("cursor");
    let end = converged(&leader, &follower).await;
    assert_eq!(
        end.events
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["e1", "e2", "e3", "e4", "e5"],
        "confirmed numbers are final"
    );
    assert_eq!(end.confirmed, EventSeq::global(4));
    assert_eq!(end.cursor.last_event_sequence, EventSeq::global(4));
    assert_eq!(
        file_ids(&end),
        ["mine1", "mine2", "mine3", "r1", "r2"],
        "nothing lost"
    );
    follower
        .set_remote_delete(&key("s/x"), true)
        .await
        .expect("owe");
    leader
        .set_remote_delete(&key("s/x"), false)
        .await
        .expect("clear the follower's entry, unseen so far");
    let end = converged(&leader, &follower).await;
    assert!(end.remote_deletes.is_empty());
    let fresh = IdbStore::open(leader.name()).await.expect("reopen");
    assert_eq!(snapshot(&fresh).await, end);
    drop((fresh, follower));
    leader.destroy().await.expect("destroy");
}

/// Every `IdbStore` test, expanded once per mode (`idb_browser.rs`: a page; `idb_worker.rs`: a
/// dedicated worker), so the two files differ only in where they run.
#[macro_export]
macro_rules! idb_tests {
    () => {
        mod conformance {
            filesync_core::store_conformance!(
                #[wasm_bindgen_test::wasm_bindgen_test]
                filesync_opfs::IdbStore::scratch()
                    .await
                    .expect("open a scratch IdbStore")
            );
        }

        $crate::idb_tests!(@each reopen_sees_everything, client_id_is_stable_per_database, destroy_deletes_the_database, delete_closes_an_open_store, databases_are_isolated, dropped_commit_stays_consistent, clones_share_the_store, foreign_database_is_refused, many_rows_reload_in_order, two_connections_interleave, commit_is_seen_by_the_other_connection, concurrent_commits_all_land, remote_and_local_writes_stay_consistent);
    };
    (@each $($rule:ident),*) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $rule() {
                common::idb::$rule().await;
            }
        )*
    };
}
