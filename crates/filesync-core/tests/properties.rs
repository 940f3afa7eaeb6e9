//! Properties over generated input (proptest): every parser of untrusted text either refuses
//! it with an error or accepts it so that what it prints parses back to the same value, and
//! never panics; event and row JSON never panics to decode and round-trips when it decodes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::schema::{Event, EventSeq, FileRecord, LocalFileState};
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId};
use proptest::prelude::*;

/// Text a client or a server could be handed: mostly key-like characters, some anything.
fn text() -> impl Strategy<Value = String> {
    // Paths made of the segments that matter: empty, `.`, `..`, backslashes, plain names.
    let segment = prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("a\\b".to_owned()),
        "[a-z0-9._-]{1,8}",
    ];
    let path = prop::collection::vec(segment, 1..6).prop_map(|s| s.join("/"));
    prop_oneof![
        path,
        "[a-zA-Z0-9._/ -]{0,80}",
        "[0-9a-f]{60,68}",
        "(e[0-9]{1,20}(\\.[0-9]{1,5})?(r[0-9]{1,3})?)",
        "(e[0-9]{1,3}(\\.[1-3])?(r[1-3])?)",
        any::<String>(),
    ]
}

/// `parse(s)` is an error, or a value whose printed form parses back to itself.
macro_rules! round_trips {
    ($name:ident, $ty:ty, $parse:expr) => {
        proptest! {
            #[test]
            fn $name(s in text()) {
                let parse = $parse;
                if let Ok(v) = parse(s.as_str()) {
                    let v: $ty = v;
                    let again: $ty = parse(v.to_string().as_str()).unwrap();
                    prop_assert_eq!(again, v);
                }
            }
        }
    };
}

round_trips!(file_ids, FileId, |s: &str| FileId::parse(s));
round_trips!(store_ids, StoreId, |s: &str| StoreId::parse(s));
round_trips!(object_keys, ObjectKey, |s: &str| ObjectKey::parse(s));
round_trips!(local_paths, LocalPath, |s: &str| LocalPath::parse(s));
round_trips!(content_hashes, ContentHash, |s: &str| ContentHash::parse(s));
round_trips!(event_seqs, EventSeq, |s: &str| EventSeq::parse(s));

proptest! {
    /// An accepted `ObjectKey` or `LocalPath` can never leave its root.
    #[test]
    fn accepted_paths_stay_under_their_root(s in text()) {
        for accepted in [
            ObjectKey::parse(s.as_str()).ok().map(|k| k.to_string()),
            LocalPath::parse(s.as_str()).ok().map(|p| p.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(!accepted.starts_with('/'));
            prop_assert!(!accepted.contains('\\'));
            prop_assert!(accepted.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
        }
    }

    /// Any JSON text decodes to an event (and back to the same event) or is an error.
    #[test]
    fn event_json_never_panics(json in prop_oneof![
        any::<String>(),
        "\\{\"name\":\"v1\\.File(Created|Updated|Deleted)\",\"args\":\\{[ -~]{0,120}\\}\\}",
    ]) {
        if let Ok(event) = serde_json::from_str::<Event>(&json) {
            let again: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
            prop_assert_eq!(again, event);
        }
    }

    /// Any JSON text decodes to a row (and back to the same row) or is an error.
    #[test]
    fn row_json_never_panics(json in prop_oneof![any::<String>(), "\\{[ -~]{0,160}\\}"]) {
        if let Ok(row) = serde_json::from_str::<FileRecord>(&json) {
            let again: FileRecord = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
            prop_assert_eq!(again, row);
        }
        if let Ok(row) = serde_json::from_str::<LocalFileState>(&json) {
            let again: LocalFileState = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
            prop_assert_eq!(again, row);
        }
    }
}

mod push_rule {
    use filesync_core::contract::{AppendDecision, PushOutcome, RelayEvent, decide_append};
    use proptest::prelude::*;

    /// A `v1.FileDeleted` of file `f{file}` at `seq`, by `client`.
    fn event(seq: u64, file: u8, client: &str) -> RelayEvent {
        serde_json::from_value(serde_json::json!({
            "name": "v1.FileDeleted",
            "args": {"id": format!("f{file}"), "deletedAt": "2026-01-04T08:00:00.000Z"},
            "seqNum": seq, "parentSeqNum": seq - 1, "clientId": client, "sessionId": "s",
        }))
        .unwrap()
    }

    fn client(b: bool) -> &'static str {
        if b { "a" } else { "b" }
    }

    proptest! {
        /// `decide_append` against a model: a log of `stored` events, a contiguous batch after
        /// `parent`. Empty: accepted at the head. Beyond the head: invalid. At the head: append.
        /// Before it: accepted again exactly when every event of the batch is stored at its
        /// position by the same client, else the client is behind.
        #[test]
        fn decide_append_matches_the_model(
            stored in prop::collection::vec((0u8..3, any::<bool>()), 0..6),
            parent_offset in 0u64..8,
            batch in prop::collection::vec((0u8..3, any::<bool>()), 0..5),
        ) {
            let log: Vec<RelayEvent> = stored
                .iter()
                .enumerate()
                .map(|(i, (f, c))| event(i as u64 + 1, *f, client(*c)))
                .collect();
            let head = log.len() as u64;
            let parent = parent_offset.min(head + 2);
            let batch: Vec<RelayEvent> = batch
                .iter()
                .enumerate()
                .map(|(i, (f, c))| event(parent + 1 + i as u64, *f, client(*c)))
                .collect();
            let got = decide_append(head, &batch, |seq| {
                Ok(seq.checked_sub(1).and_then(|i| log.get(i as usize)).cloned())
            });
            let want = if batch.is_empty() {
                Some(AppendDecision::Done(PushOutcome::Accepted { head }))
            } else if parent > head {
                None
            } else if parent == head {
                Some(AppendDecision::Append)
            } else {
                let same = batch.iter().all(|e| {
                    log.get(e.seq_num as usize - 1)
                        .is_some_and(|s| s.client_id == e.client_id && s.event == e.event)
                });
                Some(AppendDecision::Done(if same {
                    PushOutcome::Accepted { head }
                } else {
                    PushOutcome::ServerAhead { head }
                }))
            };
            match want {
                Some(want) => prop_assert_eq!(got.unwrap(), want),
                None => prop_assert!(got.is_err()),
            }
        }
    }
}

/// Rebase and confirm against a model: a local store beside a relay (a list of events and
/// [`decide_append`](filesync_core::contract::decide_append), the rule every relay applies),
/// driven by the engine's exchange steps (`engine/exchange.rs`), on `MemoryStore` and on
/// `SqliteStore` (a temporary file) through one property body.
mod rebase {
    use std::collections::BTreeMap;

    use filesync_core::contract::{AppendDecision, PushOutcome, RelayEvent, decide_append};
    use filesync_core::schema::{
        Event, EventSeq, FileCreated, FileDeleted, FileRecord, FileSyncCursor, FileSyncCursorSet,
        FileUpdated, LocalFileState, LocalFileStateRemove, MetadataJson, TransferStatus,
    };
    use filesync_core::store::{MemoryStore, SqliteStore, Store};
    use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, Timestamp};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// Another client's id on the relay.
    const OTHER: &str = "other-client";

    /// A file event: `kind` 0 created, 1 updated, 2 deleted; of file `f{file}`; content and
    /// times from `n`; metadata absent, `null` or a value; an uploaded key or none.
    #[derive(Debug, Clone)]
    struct FileEv {
        kind: u8,
        file: u8,
        n: u8,
        meta: u8,
        uploaded: bool,
    }

    fn file_ev() -> impl Strategy<Value = FileEv> {
        (0u8..3, 0u8..4, any::<u8>(), 0u8..3, any::<bool>()).prop_map(
            |(kind, file, n, meta, uploaded)| FileEv {
                kind,
                file,
                n,
                meta,
                uploaded,
            },
        )
    }

    fn id(file: u8) -> FileId {
        FileId::parse(format!("f{file}")).unwrap()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    impl FileEv {
        fn event(&self) -> Event {
            let hash = ContentHash::from_bytes([self.n; 32]);
            let path = LocalPath::parse(format!("livestore-filesync-files/s/{hash}")).unwrap();
            let metadata = match self.meta {
                0 => MetadataJson::Absent,
                1 => MetadataJson::Null,
                _ => MetadataJson::Value(format!("{{\"n\":{}}}", self.n)),
            };
            let time = at(1_000 + i64::from(self.n));
            match self.kind {
                0 => Event::FileCreated(FileCreated {
                    id: id(self.file),
                    path,
                    content_hash: hash,
                    metadata_json: metadata,
                    created_at: time,
                    updated_at: time,
                }),
                1 => Event::FileUpdated(FileUpdated {
                    id: id(self.file),
                    path,
                    remote_key: self
                        .uploaded
                        .then(|| ObjectKey::parse(format!("s/{hash}")).unwrap()),
                    content_hash: hash,
                    metadata_json: metadata,
                    updated_at: time,
                }),
                _ => Event::FileDeleted(FileDeleted {
                    id: id(self.file),
                    deleted_at: time,
                }),
            }
        }
    }

    /// One event of a local commit: a synced file event or a client-only one.
    #[derive(Debug, Clone)]
    enum LocalEv {
        File(FileEv),
        /// `v1.LocalFileStateUpsert` of `f{file}` (status from the flag).
        Upsert(u8, bool),
        /// `v1.LocalFileStateRemove` of `f{file}`.
        Remove(u8),
        /// `fileSyncCursorSet` to the position of a logged event (picked by the index, the
        /// engine's read of it possibly stale: an old rebase generation).
        Cursor(usize, u64),
    }

    /// What happens next.
    #[derive(Debug, Clone)]
    enum Op {
        /// `Store::commit` of a batch.
        Commit(Vec<LocalEv>),
        /// Another client pushes these events to the relay.
        Remote(Vec<FileEv>),
        /// The engine pushes its pending events; the answer is lost when the flag is set
        /// (the relay stored them, the store is not told).
        Push(bool),
        /// The engine pulls at most this many events, confirms its own, applies the others.
        Pull(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let local = prop_oneof![
            4 => file_ev().prop_map(LocalEv::File),
            1 => (0u8..4, any::<bool>()).prop_map(|(f, b)| LocalEv::Upsert(f, b)),
            1 => (0u8..4).prop_map(LocalEv::Remove),
            1 => (any::<usize>(), 0u64..3).prop_map(|(i, r)| LocalEv::Cursor(i, r)),
        ];
        prop_oneof![
            3 => prop::collection::vec(local, 1..4).prop_map(Op::Commit),
            2 => prop::collection::vec(file_ev(), 1..4).prop_map(Op::Remote),
            2 => any::<bool>().prop_map(Op::Push),
            2 => (1usize..6).prop_map(Op::Pull),
        ]
    }

    /// The model: the relay's log, how much of it the store has confirmed, the local events
    /// the relay has not ordered yet (with their rebase generation), the client-only tables.
    #[derive(Debug, Default)]
    struct Model {
        relay: Vec<RelayEvent>,
        confirmed: usize,
        pending: Vec<(Event, u64)>,
        local: BTreeMap<FileId, LocalFileState>,
        cursor: FileSyncCursor,
    }

    impl Model {
        /// The log the store must hold: the relay's order up to the confirmed position, then
        /// the pending events after it.
        fn log(&self) -> Vec<(EventSeq, Event)> {
            let confirmed = self.relay[..self.confirmed]
                .iter()
                .enumerate()
                .map(|(i, e)| (EventSeq::global(i as u64 + 1), e.event.clone()));
            let pending = self.pending.iter().enumerate().map(|(i, (e, generation))| {
                let seq = EventSeq {
                    global: (self.confirmed + 1 + i) as u64,
                    client: 0,
                    rebase: *generation,
                };
                (seq, e.clone())
            });
            confirmed.chain(pending).collect()
        }

        /// Confirm the first `n` pending events (their numbers become final).
        fn confirm(&mut self, n: usize) {
            self.pending.drain(..n);
            self.confirmed += n;
            let seq = &mut self.cursor.last_event_sequence;
            if seq.rebase != 0 && seq.global <= self.confirmed as u64 {
                seq.rebase = 0;
            }
        }
    }

    /// The `files` rows a log folds to (SCH-12..14): created once (a repeat is a no-op),
    /// updated and soft-deleted only if present; an update keeps `deletedAt` and keeps the
    /// metadata when the event has none.
    fn fold(log: &[(EventSeq, Event)]) -> Vec<FileRecord> {
        let mut rows: BTreeMap<FileId, FileRecord> = BTreeMap::new();
        for (_, e) in log {
            match e {
                Event::FileCreated(a) => {
                    rows.entry(a.id.clone()).or_insert_with(|| FileRecord {
                        id: a.id.clone(),
                        path: a.path.clone(),
                        remote_key: None,
                        content_hash: a.content_hash,
                        metadata_json: a.metadata_json.as_row_value(),
                        created_at: a.created_at,
                        updated_at: a.updated_at,
                        deleted_at: None,
                    });
                }
                Event::FileUpdated(a) => {
                    if let Some(row) = rows.get_mut(&a.id) {
                        row.path = a.path.clone();
                        row.remote_key = a.remote_key.clone();
                        row.content_hash = a.content_hash;
                        row.updated_at = a.updated_at;
                        if !a.metadata_json.is_absent() {
                            row.metadata_json = a.metadata_json.as_row_value();
                        }
                    }
                }
                Event::FileDeleted(a) => {
                    if let Some(row) = rows.get_mut(&a.id) {
                        row.deleted_at = Some(a.deleted_at);
                    }
                }
                _ => unreachable!("only synced events are logged"),
            }
        }
        rows.into_values().collect()
    }

    fn relay_event(seq: u64, event: Event, client: &str) -> RelayEvent {
        RelayEvent {
            event,
            seq_num: seq,
            parent_seq_num: seq - 1,
            client_id: client.to_owned(),
            session_id: "session".to_owned(),
        }
    }

    /// The engine's push (`exchange_step`): every pending event, numbered as the store
    /// numbers it, to the relay; confirmed when the relay accepts (unless the answer is lost).
    async fn push(
        store: &dyn Store,
        model: &mut Model,
        lose_answer: bool,
    ) -> Result<(), TestCaseError> {
        let client = store.client_id().await.unwrap();
        let confirmed = store.confirmed().await.unwrap();
        let pending = store.events_after(confirmed, 500).await.unwrap();
        let Some(last) = pending.last().map(|e| e.seq) else {
            return Ok(());
        };
        let batch: Vec<RelayEvent> = pending
            .into_iter()
            .map(|e| relay_event(e.seq.global, e.event, &client))
            .collect();
        let head = model.relay.len() as u64;
        let decision = decide_append(head, &batch, |seq| {
            Ok(seq
                .checked_sub(1)
                .and_then(|i| model.relay.get(i as usize))
                .cloned())
        })
        .unwrap();
        let accepted = match decision {
            AppendDecision::Append => {
                model.relay.extend(batch);
                true
            }
            AppendDecision::Done(PushOutcome::Accepted { .. }) => true,
            AppendDecision::Done(PushOutcome::ServerAhead { .. }) => false,
        };
        if accepted && !lose_answer {
            store.confirm(last).await.unwrap();
            let n = model.pending.len();
            model.confirm(n);
        }
        Ok(())
    }

    /// The engine's pull (`exchange_step`): its own events coming back only confirm them;
    /// the others are applied, rebasing what is still pending.
    async fn pull(store: &dyn Store, model: &mut Model, limit: usize) -> Result<(), TestCaseError> {
        let client = store.client_id().await.unwrap();
        let confirmed = store.confirmed().await.unwrap();
        let pulled: Vec<RelayEvent> = model
            .relay
            .iter()
            .skip(confirmed.global as usize)
            .take(limit)
            .cloned()
            .collect();
        if pulled.is_empty() {
            return Ok(());
        }
        let pending = store.events_after(confirmed, pulled.len()).await.unwrap();
        let own = pulled
            .iter()
            .zip(&pending)
            .take_while(|(r, p)| r.client_id == client && r.event == p.event)
            .count();
        if own > 0 {
            store
                .confirm(EventSeq::global(confirmed.global + own as u64))
                .await
                .unwrap();
        }
        // The model's own count: its pending events at the head of what was pulled.
        let model_own = pulled
            .iter()
            .zip(&model.pending)
            .take_while(|(r, (p, _))| r.client_id != OTHER && r.event == *p)
            .count();
        prop_assert_eq!(own, model_own, "own events recognised in a pull");
        model.confirm(own);
        let foreign: Vec<Event> = pulled.into_iter().skip(own).map(|e| e.event).collect();
        if !foreign.is_empty() {
            let rebased = store.apply_remote(foreign.clone()).await.unwrap();
            let old_confirmed = model.confirmed as u64;
            model.confirmed += foreign.len();
            let model_rebased = !model.pending.is_empty();
            prop_assert_eq!(
                rebased,
                model_rebased,
                "apply_remote says whether it rebased"
            );
            if model_rebased {
                for (_, generation) in &mut model.pending {
                    *generation += 1;
                }
                if model.cursor.last_event_sequence.global > old_confirmed {
                    model.cursor.last_event_sequence = EventSeq::global(old_confirmed);
                }
            }
        }
        Ok(())
    }

    async fn commit(
        store: &dyn Store,
        model: &mut Model,
        batch: &[LocalEv],
    ) -> Result<(), TestCaseError> {
        let mut events = Vec::new();
        for e in batch {
            // The log as the engine reads it before this batch's own synced events.
            let log = model.log();
            let event = match e {
                LocalEv::File(f) => {
                    let event = f.event();
                    model.pending.push((event.clone(), 0));
                    event
                }
                LocalEv::Upsert(file, done) => {
                    let mut row = LocalFileState::new(id(*file));
                    row.upload_status = if *done {
                        TransferStatus::Done
                    } else {
                        TransferStatus::Queued
                    };
                    model.local.insert(row.file_id.clone(), row.clone());
                    Event::LocalFileStateUpsert(row)
                }
                LocalEv::Remove(file) => {
                    model.local.remove(&id(*file));
                    Event::LocalFileStateRemove(LocalFileStateRemove { file_id: id(*file) })
                }
                LocalEv::Cursor(pick, stale) => {
                    let mut seq = match log.len() {
                        0 => EventSeq::ROOT,
                        n => log[pick % n].0,
                    };
                    if !seq.is_root() {
                        seq.rebase += stale;
                    }
                    let value = FileSyncCursor {
                        last_event_sequence: seq,
                        updated_at: at(5_000 + *pick as i64 % 1000),
                    };
                    // A stale generation of an acknowledged event is stored as final.
                    let mut stored = value.clone();
                    if seq.rebase != 0 && seq.global <= model.confirmed as u64 {
                        stored.last_event_sequence.rebase = 0;
                    }
                    model.cursor = stored;
                    Event::FileSyncCursorSet(FileSyncCursorSet::global(value))
                }
            };
            events.push(event);
        }
        store.commit(events).await.unwrap();
        Ok(())
    }

    /// The store holds exactly what the model says.
    async fn check(store: &dyn Store, model: &Model) -> Result<(), TestCaseError> {
        let log = model.log();
        let got: Vec<(EventSeq, Event)> = store
            .events_after(EventSeq::ROOT, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.event))
            .collect();
        prop_assert_eq!(
            &got,
            &log,
            "the log is the relay's order, then the pending events"
        );
        prop_assert_eq!(
            store.confirmed().await.unwrap(),
            EventSeq::global(model.confirmed as u64)
        );
        prop_assert_eq!(
            store.head().await.unwrap(),
            log.last().map_or(EventSeq::ROOT, |(s, _)| *s)
        );
        prop_assert_eq!(store.files().await.unwrap(), fold(&log), "files rows");
        let local: Vec<LocalFileState> = model.local.values().cloned().collect();
        prop_assert_eq!(store.local_states().await.unwrap(), local);
        prop_assert_eq!(store.cursor().await.unwrap(), model.cursor.clone());
        Ok(())
    }

    /// The property body, for any store: after every step the store matches the model; at
    /// the end the engine's steps run until nothing is pending and the log is the relay's.
    async fn rebase_and_confirm(store: &dyn Store, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Commit(batch) => commit(store, &mut model, batch).await?,
                Op::Remote(events) => {
                    for e in events {
                        let seq = model.relay.len() as u64 + 1;
                        model.relay.push(relay_event(seq, e.event(), OTHER));
                    }
                }
                Op::Push(lose_answer) => push(store, &mut model, *lose_answer).await?,
                Op::Pull(limit) => pull(store, &mut model, *limit).await?,
            }
            check(store, &model).await?;
        }
        // Drain: pull everything, push what is left, pull once more (nobody else pushes now).
        for _ in 0..2 {
            pull(store, &mut model, usize::MAX).await?;
            push(store, &mut model, false).await?;
            check(store, &model).await?;
        }
        prop_assert!(model.pending.is_empty());
        let relay: Vec<Event> = model.relay.iter().map(|e| e.event.clone()).collect();
        let got: Vec<Event> = store
            .events_after(EventSeq::ROOT, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        prop_assert_eq!(got, relay, "synced: the store's log is the relay's");
        Ok(())
    }

    fn run(
        body: impl std::future::Future<Output = Result<(), TestCaseError>>,
    ) -> Result<(), TestCaseError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body)
    }

    /// `default` cases, or `PROPTEST_CASES` when set (to hunt with many more).
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A temporary directory in memory where there is one (`/dev/shm`): the store syncs every
    /// commit, which on a busy disk would make the cases slow, not more thorough.
    fn scratch_dir() -> tempfile::TempDir {
        let shm = std::path::Path::new("/dev/shm");
        match shm.is_dir() {
            true => tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap()),
            false => tempfile::tempdir().unwrap(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(256)))]
        /// 256 cases (or `PROPTEST_CASES`) of up to 24 steps on `MemoryStore`.
        #[test]
        fn memory_store_rebases_and_confirms_as_the_model(ops in prop::collection::vec(op(), 0..24)) {
            run(async {
                let store = MemoryStore::new();
                rebase_and_confirm(&store, &ops).await
            })?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(256)))]
        /// 256 cases (or `PROPTEST_CASES`) of up to 24 steps on `SqliteStore` in a temporary
        /// directory.
        #[test]
        fn sqlite_store_rebases_and_confirms_as_the_model(ops in prop::collection::vec(op(), 0..24)) {
            run(async {
                let dir = scratch_dir();
                let store = SqliteStore::open(dir.path().join("store.sqlite")).await.unwrap();
                rebase_and_confirm(&store, &ops).await
            })?;
        }
    }
}
