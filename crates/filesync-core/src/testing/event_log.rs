//! The [`EventLog`] conformance suite (features `testing` + `server`, native): one function
//! per rule of the relay log's contract, each on a fresh, empty log. Run it against every
//! log with [`event_log_conformance!`](crate::event_log_conformance), one test per rule:
//! ```
//! mod memory {
//!     use filesync_core::server::MemoryEventLog;
//!     filesync_core::event_log_conformance!(#[tokio::test] MemoryEventLog::new());
//! }
//! # fn main() {}
//! ```
//! A log that keeps its events across a restart implements [`DurableEventLogFixture`] and is
//! run with `durable` before the expression, which adds the rule
//! [`acknowledged_events_survive_reopen`].
//!
//! The push rule itself is [`decide_append`](crate::contract::decide_append); these rules
//! check that a log applies it atomically, numbers and reads events, and wakes waiters.

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;
use crate::contract::{
    MAX_CLIENT_ID_LEN, MAX_METADATA_JSON_BYTES, MAX_PAGE_BYTES, MAX_PUSH_BATCH, MAX_SEQ_NUM,
    PushOutcome, RelayEvent, event_json_len,
};
use crate::rt::Instant;
use crate::schema::{Event, FileCreated, FileDeleted, LocalFileStateClear, MetadataJson};
use crate::server::EventLog;
use crate::types::{ContentHash, FileId, LocalPath, StoreId, Timestamp};

/// What a rule runs on: a fresh, empty log, together with whatever keeps it alive (a
/// temporary directory, a database). Every [`EventLog`] is its own fixture.
pub trait EventLogFixture: Send + Sync {
    /// The log under test.
    fn log(&self) -> &dyn EventLog;
}

impl<L: EventLog> EventLogFixture for L {
    fn log(&self) -> &dyn EventLog {
        self
    }
}

/// A fixture whose log is durable: its events outlive the process that wrote them.
#[async_trait]
pub trait DurableEventLogFixture: EventLogFixture {
    /// Close the log and open the same storage again, as a restarted server does.
    async fn reopen(&mut self);
}

/// How long a rule lets a waiter wait when it expects to be woken early.
const LONG: Duration = Duration::from_secs(30);
/// How long a rule lets a waiter wait when it expects nothing to come.
const SHORT: Duration = Duration::from_millis(300);

fn store(name: &str) -> StoreId {
    StoreId::parse(name).expect("a valid store id")
}

/// A synced event at `seq` from `client`; `tag` tells batches apart.
fn event(seq: u64, client: &str, tag: &str) -> RelayEvent {
    RelayEvent {
        event: Event::FileDeleted(FileDeleted {
            id: FileId::parse(format!("file-{tag}-{seq}")).expect("a valid file id"),
            deleted_at: Timestamp::from_millis(1_000 + seq as i64).expect("a valid time"),
        }),
        seq_num: seq,
        parent_seq_num: seq - 1,
        client_id: client.to_owned(),
        session_id: format!("session-{client}"),
    }
}

/// A synced `v1.FileCreated` at `seq` whose `metadataJson` is `metadata`.
pub fn created_with_metadata(seq: u64, client: &str, metadata: MetadataJson) -> RelayEvent {
    let at = Timestamp::from_millis(1_000 + (seq % 1_000_000) as i64).expect("a valid time");
    let hash = ContentHash::from_bytes([7; 32]);
    RelayEvent {
        event: Event::FileCreated(FileCreated {
            id: FileId::parse(format!("file-{seq}")).expect("a valid file id"),
            path: LocalPath::parse(format!("livestore-filesync-files/s/{hash}"))
                .expect("a valid path"),
            content_hash: hash,
            metadata_json: metadata,
            created_at: at,
            updated_at: at,
        }),
        seq_num: seq,
        parent_seq_num: seq.saturating_sub(1),
        client_id: client.to_owned(),
        session_id: format!("session-{client}"),
    }
}

/// A `metadataJson` value that is valid JSON (an object with one string) of exactly `len`
/// bytes (`len` at least 10).
pub fn metadata_of_len(len: usize) -> MetadataJson {
    // `{"pad":"` + padding + `"}` is 10 bytes plus the padding.
    MetadataJson::Value(format!(r#"{{"pad":"{}"}}"#, "x".repeat(len - 10)))
}

/// `n` contiguous events after `parent`.
fn batch(parent: u64, n: u64, client: &str, tag: &str) -> Vec<RelayEvent> {
    (parent + 1..=parent + n)
        .map(|seq| event(seq, client, tag))
        .collect()
}

async fn append(log: &dyn EventLog, s: &StoreId, b: Vec<RelayEvent>) -> PushOutcome {
    log.append(s, b).await.expect("append")
}

/// Every event of `s` (the rules store fewer than `10 * MAX_PUSH_BATCH`).
async fn all(log: &dyn EventLog, s: &StoreId) -> Vec<RelayEvent> {
    log.read(s, 0, 10 * MAX_PUSH_BATCH).await.expect("read")
}

fn seqs(events: &[RelayEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq_num).collect()
}

/// Assert that `log` refused `b` as invalid and stored none of it.
async fn refused(log: &dyn EventLog, s: &StoreId, b: Vec<RelayEvent>, why: &str) {
    let before = all(log, s).await;
    match log.append(s, b).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("{why}: want an invalid-input error, got {other:?}"),
    }
    assert_eq!(
        all(log, s).await,
        before,
        "{why}: a refused batch stored events"
    );
    assert_eq!(
        log.head(s).await.expect("head"),
        before.len() as u64,
        "{why}: a refused batch moved the head"
    );
}

/// A store nothing was pushed to has head 0 and no events.
pub async fn empty_log_has_head_zero(log: &dyn EventLog) {
    let s = store("empty");
    assert_eq!(log.head(&s).await.expect("head"), 0);
    assert!(all(log, &s).await.is_empty());
}

/// A batch whose first `parentSeqNum` is 0 is appended to an empty store: `Accepted` with the
/// new head, and reading returns exactly the pushed events.
pub async fn append_to_empty_log_is_accepted(log: &dyn EventLog) {
    let s = store("s");
    let b = batch(0, 3, "a", "first");
    assert_eq!(
        append(log, &s, b.clone()).await,
        PushOutcome::Accepted { head: 3 }
    );
    assert_eq!(all(log, &s).await, b);
    assert_eq!(log.head(&s).await.expect("head"), 3);
}

/// Batches pushed at the head extend the log without gaps: `seqNum` 1, 2, 3, … with each
/// `parentSeqNum` one less, whichever client pushed them.
pub async fn appends_are_numbered_contiguously(log: &dyn EventLog) {
    let s = store("s");
    let mut want = Vec::new();
    for (parent, n, client) in [(0, 2, "a"), (2, 1, "b"), (3, 4, "a"), (7, 1, "c")] {
        let b = batch(parent, n, client, client);
        want.extend(b.clone());
        assert_eq!(
            append(log, &s, b).await,
            PushOutcome::Accepted { head: parent + n }
        );
    }
    let got = all(log, &s).await;
    assert_eq!(seqs(&got), (1..=8).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e.parent_seq_num + 1 == e.seq_num));
    assert_eq!(got, want);
}

/// A batch starting before the head with events the log does not hold is `ServerAhead`
/// with the log's head, and stores nothing: the client must pull and rebase.
pub async fn stale_parent_is_server_ahead(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 2, "a", "a")).await;
    let stored = all(log, &s).await;
    for parent in [0, 1] {
        assert_eq!(
            append(log, &s, batch(parent, 2, "b", "b")).await,
            PushOutcome::ServerAhead { head: 2 },
            "a push after {parent}"
        );
    }
    assert_eq!(all(log, &s).await, stored);
}

/// Pushing again events that are stored at exactly those positions (a client whose
/// acknowledgement was lost) is `Accepted` with the current head and stores nothing twice,
/// also after others have pushed on top.
pub async fn repeated_push_is_acknowledged_again(log: &dyn EventLog) {
    let s = store("s");
    let first = batch(0, 2, "a", "a");
    append(log, &s, first.clone()).await;
    assert_eq!(
        append(log, &s, first.clone()).await,
        PushOutcome::Accepted { head: 2 }
    );
    append(log, &s, batch(2, 3, "b", "b")).await;
    assert_eq!(
        append(log, &s, first.clone()).await,
        PushOutcome::Accepted { head: 5 }
    );
    assert_eq!(
        append(log, &s, first[1..].to_vec()).await,
        PushOutcome::Accepted { head: 5 },
        "a repeated tail of a batch"
    );
    assert_eq!(seqs(&all(log, &s).await), [1, 2, 3, 4, 5]);
}

/// The same event at the same position pushed by another client is not a repeat: it is
/// `ServerAhead`.
pub async fn repush_by_another_client_is_server_ahead(log: &dyn EventLog) {
    let s = store("s");
    let b = batch(0, 1, "a", "same");
    append(log, &s, b.clone()).await;
    let mut other = b;
    other[0].client_id = "b".into();
    assert_eq!(
        append(log, &s, other).await,
        PushOutcome::ServerAhead { head: 1 }
    );
    assert_eq!(all(log, &s).await[0].client_id, "a");
}

/// A batch whose first `parentSeqNum` is beyond the head is refused as invalid and stores
/// nothing.
pub async fn parent_beyond_head_is_refused(log: &dyn EventLog) {
    let s = store("s");
    refused(log, &s, batch(1, 1, "a", "a"), "on an empty log").await;
    append(log, &s, batch(0, 2, "a", "a")).await;
    refused(log, &s, batch(3, 2, "a", "b"), "after head 2").await;
}

/// A batch whose numbers are not contiguous, or whose `parentSeqNum` is not its `seqNum`
/// minus one, is refused as a whole: none of it is stored.
pub async fn non_contiguous_batch_is_refused(log: &dyn EventLog) {
    let s = store("s");
    let mut gap = batch(0, 3, "a", "gap");
    gap.remove(1);
    refused(log, &s, gap, "a gap").await;
    let mut parent = batch(0, 2, "a", "parent");
    parent[1].parent_seq_num = 0;
    refused(log, &s, parent, "a wrong parentSeqNum").await;
    let mut first = batch(0, 1, "a", "first");
    first[0].seq_num = 2;
    refused(log, &s, first, "a first seqNum after a gap").await;
}

/// Client-only events are never synced: a batch holding one is refused as a whole.
pub async fn client_only_events_are_refused(log: &dyn EventLog) {
    let s = store("s");
    let mut b = batch(0, 2, "a", "local");
    b[1].event = Event::LocalFileStateClear(LocalFileStateClear {});
    refused(log, &s, b, "a client-only event").await;
}

/// A batch of more than `MAX_PUSH_BATCH` events is refused; one of exactly that many is
/// appended.
pub async fn oversized_batch_is_refused(log: &dyn EventLog) {
    let s = store("s");
    let max = MAX_PUSH_BATCH as u64;
    refused(log, &s, batch(0, max + 1, "a", "big"), "an oversized batch").await;
    assert_eq!(
        append(log, &s, batch(0, max, "a", "big")).await,
        PushOutcome::Accepted { head: max }
    );
}

/// An empty batch stores nothing and is `Accepted` with the head.
pub async fn empty_batch_is_accepted_with_the_head(log: &dyn EventLog) {
    let s = store("s");
    assert_eq!(
        append(log, &s, Vec::new()).await,
        PushOutcome::Accepted { head: 0 }
    );
    append(log, &s, batch(0, 2, "a", "a")).await;
    assert_eq!(
        append(log, &s, Vec::new()).await,
        PushOutcome::Accepted { head: 2 }
    );
    assert_eq!(seqs(&all(log, &s).await), [1, 2]);
}

/// `read(after, limit)` returns the events with `seqNum > after`, in order, at most `limit`
/// of them; nothing at or beyond the head, nothing for `limit` 0.
pub async fn read_honours_after_and_limit(log: &dyn EventLog) {
    let s = store("s");
    let b = batch(0, 5, "a", "a");
    append(log, &s, b.clone()).await;
    let read = |after: u64, limit: usize| log.read(&s, after, limit);
    assert_eq!(read(0, 10).await.expect("read"), b);
    assert_eq!(read(1, 2).await.expect("read"), b[1..3]);
    assert_eq!(read(3, 10).await.expect("read"), b[3..]);
    assert_eq!(read(4, 1).await.expect("read"), b[4..]);
    assert!(read(5, 10).await.expect("read").is_empty());
    assert!(read(9, 10).await.expect("read").is_empty());
    assert!(read(0, 0).await.expect("read").is_empty());
}

/// A read stops before the events' JSON would exceed `MAX_PAGE_BYTES` (counted as the page's
/// `events` array), even when `limit` allows more, but is full: the next event would not have
/// fitted. Reading on from each page's last `seqNum` returns every event once, in order.
pub async fn read_is_capped_in_bytes(log: &dyn EventLog) {
    let s = store("s");
    let n = 3 * (MAX_PAGE_BYTES / MAX_METADATA_JSON_BYTES) as u64;
    let big: Vec<RelayEvent> = (1..=n)
        .map(|seq| created_with_metadata(seq, "a", metadata_of_len(MAX_METADATA_JSON_BYTES)))
        .collect();
    append(log, &s, big.clone()).await;
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = log.read(&s, after, MAX_PUSH_BATCH).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.seq_num;
        let bytes = serde_json::to_vec(&page).expect("encode").len();
        assert!(
            bytes <= MAX_PAGE_BYTES,
            "a page of {} events holds {bytes} bytes of JSON",
            page.len()
        );
        if let Some(next) = big.get(after as usize) {
            let with_next = bytes + 1 + event_json_len(next).expect("encode");
            assert!(
                with_next > MAX_PAGE_BYTES,
                "a page of {bytes} bytes stopped although the next event fitted"
            );
        }
        pages.push(page);
    }
    assert!(pages.len() >= 3, "{} pages for {n} events", pages.len());
    assert_eq!(
        pages.concat(),
        big,
        "paging by the last seqNum reads every event once"
    );
}

/// A read after a position beyond the largest storable one (`MAX_SEQ_NUM`, `i64::MAX`) is
/// empty: it never wraps around to the start of the log.
pub async fn read_after_beyond_max_seq_is_empty(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 3, "a", "a")).await;
    for after in [MAX_SEQ_NUM, MAX_SEQ_NUM + 1, u64::MAX / 2 + 7, u64::MAX] {
        assert!(
            log.read(&s, after, 10).await.expect("read").is_empty(),
            "read after {after}"
        );
    }
}

/// Each event's fields are bounded (`check_relay_event`): a batch holding one event with a
/// `metadataJson` over `MAX_METADATA_JSON_BYTES` or not JSON, a `clientId`/`sessionId` that is
/// empty, over `MAX_CLIENT_ID_LEN` or holds another character than ASCII letters, digits,
/// `-_.:`, or a `seqNum` beyond `MAX_SEQ_NUM`, is refused as a whole and stores nothing. Ids
/// as LiveStore (nanoid) and this crate (UUIDs) make them, and values at the limits, pass.
pub async fn out_of_bounds_events_are_refused(log: &dyn EventLog) {
    let s = store("s");
    let ok = |seq| created_with_metadata(seq, "a", metadata_of_len(64));
    let with = |f: &dyn Fn(&mut RelayEvent)| {
        let mut b = vec![ok(1), ok(2)];
        f(&mut b[1]);
        b
    };
    let long_id = "x".repeat(MAX_CLIENT_ID_LEN + 1);
    let too_big = metadata_of_len(MAX_METADATA_JSON_BYTES + 1);
    refused(
        log,
        &s,
        with(&|e| *e = created_with_metadata(2, "a", too_big.clone())),
        "metadataJson over the limit",
    )
    .await;
    for bad in ["{", "not json", r#"{"a":1} trailing"#, ""] {
        let m = MetadataJson::Value(bad.to_owned());
        refused(
            log,
            &s,
            with(&|e| *e = created_with_metadata(2, "a", m.clone())),
            bad,
        )
        .await;
    }
    for bad in ["", long_id.as_str(), "a b", "a/b", "é", "a\nb", "a\u{0}"] {
        refused(
            log,
            &s,
            with(&|e| e.client_id = bad.to_owned()),
            "a bad clientId",
        )
        .await;
        refused(
            log,
            &s,
            with(&|e| e.session_id = bad.to_owned()),
            "a bad sessionId",
        )
        .await;
    }
    let mut beyond = created_with_metadata(MAX_SEQ_NUM, "a", MetadataJson::Null);
    beyond.seq_num = MAX_SEQ_NUM + 1;
    beyond.parent_seq_num = MAX_SEQ_NUM;
    refused(log, &s, vec![beyond], "a seqNum beyond MAX_SEQ_NUM").await;
    let mut last = created_with_metadata(1, "a", MetadataJson::Null);
    (last.seq_num, last.parent_seq_num) = (u64::MAX, u64::MAX - 1);
    refused(log, &s, vec![last], "seqNum u64::MAX").await;
    // Within the bounds: accepted.
    let mut fine = vec![
        created_with_metadata(1, "V1StG", metadata_of_len(MAX_METADATA_JSON_BYTES)),
        created_with_metadata(
            2,
            "0b7c3a52-1d5e-4f2a-9c1b-7e8d9f0a1b2c",
            MetadataJson::Null,
        ),
        created_with_metadata(
            3,
            &"A-_.:9".repeat(22)[..MAX_CLIENT_ID_LEN],
            MetadataJson::Absent,
        ),
        created_with_metadata(4, "a", MetadataJson::Value("[1,\"two\",null]".into())),
    ];
    fine[0].session_id = "xK_9-".into();
    fine[2].session_id = fine[2].client_id.clone();
    assert_eq!(
        append(log, &s, fine.clone()).await,
        PushOutcome::Accepted { head: 4 }
    );
    assert_eq!(all(log, &s).await, fine);
}

/// `head` is the last stored `seqNum`, per store, and moves only on accepted pushes.
pub async fn head_follows_accepted_appends(log: &dyn EventLog) {
    let s = store("s");
    assert_eq!(log.head(&s).await.expect("head"), 0);
    append(log, &s, batch(0, 2, "a", "a")).await;
    assert_eq!(log.head(&s).await.expect("head"), 2);
    append(log, &s, batch(0, 1, "b", "b")).await; // ServerAhead
    assert_eq!(log.head(&s).await.expect("head"), 2);
    append(log, &s, batch(2, 3, "b", "b")).await;
    assert_eq!(log.head(&s).await.expect("head"), 5);
}

/// Stores are independent logs: each is numbered from 1, reads and heads see only its own
/// events, and a push to one is judged against its own head.
pub async fn stores_are_isolated(log: &dyn EventLog) {
    let (a, b) = (store("store-a"), store("store-b"));
    let in_a = batch(0, 3, "x", "in-a");
    let in_b = batch(0, 1, "x", "in-b");
    assert_eq!(
        append(log, &a, in_a.clone()).await,
        PushOutcome::Accepted { head: 3 }
    );
    assert_eq!(
        append(log, &b, in_b.clone()).await,
        PushOutcome::Accepted { head: 1 }
    );
    assert_eq!(all(log, &a).await, in_a);
    assert_eq!(all(log, &b).await, in_b);
    assert_eq!(log.head(&a).await.expect("head"), 3);
    assert_eq!(log.head(&b).await.expect("head"), 1);
    assert_eq!(log.head(&store("store-c")).await.expect("head"), 0);
    // A's events repeated into B are not repeats there: B holds other events.
    assert_eq!(
        append(log, &b, in_a[..1].to_vec()).await,
        PushOutcome::ServerAhead { head: 1 }
    );
}

/// Of two pushes racing at the same head, exactly one is accepted; the other is
/// `ServerAhead` with the winner's head.
pub async fn racing_pushes_accept_exactly_one(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 1, "base", "base")).await;
    let (x, y) = futures::join!(
        log.append(&s, batch(1, 2, "a", "a")),
        log.append(&s, batch(1, 2, "b", "b")),
    );
    let outcomes = [x.expect("append a"), y.expect("append b")];
    let accepted = PushOutcome::Accepted { head: 3 };
    let behind = PushOutcome::ServerAhead { head: 3 };
    assert!(
        outcomes == [accepted, behind] || outcomes == [behind, accepted],
        "{outcomes:?}"
    );
    let winner = if outcomes[0] == accepted { "a" } else { "b" };
    let stored = all(log, &s).await;
    assert_eq!(seqs(&stored), [1, 2, 3]);
    assert!(stored[1..].iter().all(|e| e.client_id == winner));
}

/// `wait(after)` returns at once when the head is already beyond `after`.
pub async fn wait_returns_at_once_when_the_head_is_beyond(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 2, "a", "a")).await;
    let start = Instant::now();
    log.wait(&s, 1, LONG).await.expect("wait");
    assert!(
        start.elapsed() < LONG / 2,
        "wait(after 1) with head 2 waited {:?}",
        start.elapsed()
    );
}

/// A waiter is woken by an append beyond its position, long before its `max`.
pub async fn wait_wakes_on_append(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 1, "a", "a")).await;
    let start = Instant::now();
    let (waited, appended) = futures::join!(
        async {
            log.wait(&s, 1, LONG).await.expect("wait");
            start.elapsed()
        },
        async {
            crate::rt::sleep(Duration::from_millis(200)).await;
            log.append(&s, batch(1, 1, "b", "b")).await.expect("append")
        },
    );
    assert_eq!(appended, PushOutcome::Accepted { head: 2 });
    assert!(
        waited < LONG / 2,
        "the waiter was not woken by the append (waited {waited:?})"
    );
}

/// With nothing appended, `wait` returns `Ok` after `max`, not before.
pub async fn wait_times_out_when_nothing_comes(log: &dyn EventLog) {
    let s = store("s");
    append(log, &s, batch(0, 1, "a", "a")).await;
    let start = Instant::now();
    log.wait(&s, 1, SHORT).await.expect("wait");
    let waited = start.elapsed();
    assert!(waited >= SHORT / 2, "wait returned after {waited:?}");
    assert!(waited < LONG, "wait overran its max: {waited:?}");
}

/// A waiter on one store is not woken by appends to another.
pub async fn wait_ignores_other_stores(log: &dyn EventLog) {
    let (a, b) = (store("store-a"), store("store-b"));
    let start = Instant::now();
    let (waited, _) = futures::join!(
        async {
            log.wait(&a, 0, SHORT).await.expect("wait");
            start.elapsed()
        },
        async {
            crate::rt::sleep(Duration::from_millis(20)).await;
            append(log, &b, batch(0, 1, "x", "x")).await
        },
    );
    assert!(
        waited >= SHORT / 2,
        "an append to another store woke the waiter after {waited:?}"
    );
    assert_eq!(log.head(&a).await.expect("head"), 0);
}

/// (Durable logs.) What was acknowledged is still there after the log is reopened: the same
/// events and head, a repeated push is acknowledged again, numbering continues from the
/// head, and a stale push is still `ServerAhead`.
pub async fn acknowledged_events_survive_reopen<F: DurableEventLogFixture + ?Sized>(
    fixture: &mut F,
) {
    let (a, b) = (store("store-a"), store("store-b"));
    let first = batch(0, 3, "x", "first");
    append(fixture.log(), &a, first.clone()).await;
    append(fixture.log(), &b, batch(0, 1, "x", "other")).await;
    let before = all(fixture.log(), &a).await;
    fixture.reopen().await;
    let log = fixture.log();
    assert_eq!(all(log, &a).await, before);
    assert_eq!(log.head(&a).await.expect("head"), 3);
    assert_eq!(log.head(&b).await.expect("head"), 1);
    assert_eq!(
        append(log, &a, first).await,
        PushOutcome::Accepted { head: 3 }
    );
    assert_eq!(
        append(log, &a, batch(0, 1, "y", "stale")).await,
        PushOutcome::ServerAhead { head: 3 }
    );
    assert_eq!(
        append(log, &a, batch(3, 2, "y", "next")).await,
        PushOutcome::Accepted { head: 5 }
    );
    assert_eq!(seqs(&all(log, &a).await), [1, 2, 3, 4, 5]);
}

/// Run every [`EventLog`] rule as its own test, each on a fresh log. `$make` is an
/// expression (it may `.await`) giving an [`EventLogFixture`]: any `EventLog`, or a fixture
/// that keeps its storage alive. With `durable` before it, the fixture must also be a
/// [`DurableEventLogFixture`] and [`acknowledged_events_survive_reopen`] runs too, e.g.
/// `event_log_conformance!(#[tokio::test] durable ScratchLog::new().await)`.
#[macro_export]
macro_rules! event_log_conformance {
    (#[$attr:meta] durable $make:expr) => {
        $crate::event_log_conformance!(#[$attr] $make);

        #[$attr]
        async fn acknowledged_events_survive_reopen() {
            let mut fixture = $make;
            $crate::testing::event_log::acknowledged_events_survive_reopen(&mut fixture).await;
        }
    };
    (#[$attr:meta] $make:expr) => {
        $crate::event_log_conformance!(@each #[$attr] $make;
            empty_log_has_head_zero,
            append_to_empty_log_is_accepted,
            appends_are_numbered_contiguously,
            stale_parent_is_server_ahead,
            repeated_push_is_acknowledged_again,
            repush_by_another_client_is_server_ahead,
            parent_beyond_head_is_refused,
            non_contiguous_batch_is_refused,
            client_only_events_are_refused,
            oversized_batch_is_refused,
            empty_batch_is_accepted_with_the_head,
            read_honours_after_and_limit,
            read_is_capped_in_bytes,
            read_after_beyond_max_seq_is_empty,
            out_of_bounds_events_are_refused,
            head_follows_accepted_appends,
            stores_are_isolated,
            racing_pushes_accept_exactly_one,
            wait_returns_at_once_when_the_head_is_beyond,
            wait_wakes_on_append,
            wait_times_out_when_nothing_comes,
            wait_ignores_other_stores
        );
    };
    (@each #[$attr:meta] $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $rule() {
                let fixture = $make;
                $crate::testing::event_log::$rule(
                    $crate::testing::event_log::EventLogFixture::log(&fixture),
                )
                .await;
            }
        )*
    };
}
