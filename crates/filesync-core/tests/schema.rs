//! The materializers (SCH-12..15) and the schema helpers (SCH-3, SCH-4, SCH-16, FS-1, ENG-14,
//! CFG-5), on plain values. The wire format itself is pinned by `tests/vectors.rs`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FILES_ROOT, FileCreated, FileDeleted, FileMetadata,
    FileRecord, FileSyncCursor, FileSyncCursorSet, FileUpdated, ImageSize, LocalFileState,
    LocalFileStateClear, LocalFileStateRemove, MetadataJson, Mutation, TransferStatus,
    key_for_path, materialize, store_root, stored_path,
};
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId, Timestamp};

const ID: &str = "dd59401e-6591-4b1b-adf6-904d7a4a58a8";
const OTHER_ID: &str = "c7a048aa-3511-4a6d-9424-ea77d2facdb3";
const STORE: &str = "node_filesync_store";
const METADATA: &str =
    r#"{"mimeType":"image/png","sizeBytes":1234,"image":{"width":400,"height":400}}"#;

fn id() -> FileId {
    FileId::parse(ID).unwrap()
}

fn hash(n: u8) -> ContentHash {
    ContentHash::from_bytes([n; 32])
}

fn store() -> StoreId {
    StoreId::parse(STORE).unwrap()
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// An uploaded, live row with metadata, as a materialized `v1.FileCreated` + upload would leave it.
fn row() -> FileRecord {
    FileRecord {
        id: id(),
        path: stored_path(&store(), &hash(1)),
        remote_key: Some(ObjectKey::for_content(&store(), &hash(1))),
        content_hash: hash(1),
        metadata_json: Some(METADATA.to_owned()),
        created_at: at(1_767_472_224_642),
        updated_at: at(1_767_472_260_001),
        deleted_at: None,
    }
}

fn created(metadata_json: MetadataJson) -> Event {
    Event::FileCreated(FileCreated {
        id: id(),
        path: stored_path(&store(), &hash(1)),
        content_hash: hash(1),
        metadata_json,
        created_at: at(1_767_472_224_642),
        updated_at: at(1_767_472_224_643),
    })
}

/// A content change to hash 2 (remoteKey reset, KEY-2) with the given metadataJson.
fn updated(metadata_json: MetadataJson) -> Event {
    Event::FileUpdated(FileUpdated {
        id: id(),
        path: stored_path(&store(), &hash(2)),
        remote_key: None,
        content_hash: hash(2),
        metadata_json,
        updated_at: at(1_767_472_320_000),
    })
}

fn deleted(ms: i64) -> Event {
    Event::FileDeleted(FileDeleted {
        id: id(),
        deleted_at: at(ms),
    })
}

fn put(m: Mutation) -> FileRecord {
    match m {
        Mutation::PutFile(r) => r,
        other => panic!("expected PutFile, got {other:?}"),
    }
}

fn full_state(file_id: FileId) -> LocalFileState {
    LocalFileState {
        file_id,
        path: Some(stored_path(&store(), &hash(1))),
        local_hash: Some(hash(1)),
        download_status: TransferStatus::Done,
        upload_status: TransferStatus::Error,
        last_sync_error: "UploadError: Failed to upload".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// SCH-12: v1.FileCreated
// ---------------------------------------------------------------------------------------------

/// SCH-12: FileCreated inserts id, path, contentHash, createdAt and updatedAt from the args,
/// with `remoteKey` at its default `""` (None) and `deletedAt` null.
#[test]
fn sch_12_file_created_inserts_row() {
    let r = put(materialize(&created(MetadataJson::Absent), None));
    assert_eq!(
        r,
        FileRecord {
            id: id(),
            path: stored_path(&store(), &hash(1)),
            remote_key: None,
            content_hash: hash(1),
            metadata_json: None,
            created_at: at(1_767_472_224_642),
            updated_at: at(1_767_472_224_643),
            deleted_at: None,
        }
    );
    assert!(!r.is_deleted());
}

/// SCH-12: a missing metadataJson becomes null.
#[test]
fn sch_12_missing_metadata_becomes_null() {
    let r = put(materialize(&created(MetadataJson::Absent), None));
    assert_eq!(r.metadata_json, None);
    assert_eq!(r.metadata(), None);
}

/// SCH-12: an explicit null metadataJson is stored as null.
#[test]
fn sch_12_null_metadata_stays_null() {
    let r = put(materialize(&created(MetadataJson::Null), None));
    assert_eq!(r.metadata_json, None);
}

/// SCH-12: a metadataJson string is stored as is (an opaque string).
#[test]
fn sch_12_metadata_string_stored_verbatim() {
    let r = put(materialize(
        &created(MetadataJson::Value(METADATA.to_owned())),
        None,
    ));
    assert_eq!(r.metadata_json.as_deref(), Some(METADATA));
    assert_eq!(r.metadata().unwrap().size_bytes, Some(1234));
}

/// SCH-12: a replayed FileCreated for an id that already has a row changes nothing, whether the
/// row is live or soft-deleted.
#[test]
fn sch_12_replayed_file_created_is_nothing() {
    let ev = created(MetadataJson::Null);
    assert_eq!(materialize(&ev, Some(&row())), Mutation::Nothing);
    let mut gone = row();
    gone.deleted_at = Some(at(1_767_513_600_000));
    assert_eq!(materialize(&ev, Some(&gone)), Mutation::Nothing);
}

// ---------------------------------------------------------------------------------------------
// SCH-13: v1.FileUpdated
// ---------------------------------------------------------------------------------------------

/// SCH-13: FileUpdated sets path, remoteKey, contentHash and updatedAt; id and createdAt stay.
#[test]
fn sch_13_file_updated_sets_path_remote_key_hash_updated_at() {
    let r = put(materialize(&updated(MetadataJson::Absent), Some(&row())));
    assert_eq!(r.id, id());
    assert_eq!(r.path, stored_path(&store(), &hash(2)));
    assert_eq!(r.remote_key, None);
    assert_eq!(r.content_hash, hash(2));
    assert_eq!(r.updated_at, at(1_767_472_320_000));
    assert_eq!(r.created_at, row().created_at);
}

/// SCH-13, KEY-1: an upload's FileUpdated sets remoteKey to `<storeId>/<hash>`.
#[test]
fn sch_13_file_updated_sets_remote_key() {
    let mut fresh = row();
    fresh.remote_key = None;
    let key = ObjectKey::for_content(&store(), &hash(1));
    let ev = Event::FileUpdated(FileUpdated {
        id: id(),
        path: fresh.path.clone(),
        remote_key: Some(key.clone()),
        content_hash: hash(1),
        metadata_json: MetadataJson::from_row_value(fresh.metadata_json.clone()),
        updated_at: at(1_767_472_260_002),
    });
    let r = put(materialize(&ev, Some(&fresh)));
    assert_eq!(r.remote_key, Some(key));
    assert_eq!(r.metadata_json, fresh.metadata_json);
}

/// SCH-13: an absent metadataJson keeps the row's existing value.
#[test]
fn sch_13_metadata_absent_keeps_existing() {
    let r = put(materialize(&updated(MetadataJson::Absent), Some(&row())));
    assert_eq!(r.metadata_json.as_deref(), Some(METADATA));
}

/// SCH-13: an explicit null metadataJson clears it.
#[test]
fn sch_13_metadata_null_clears() {
    let r = put(materialize(&updated(MetadataJson::Null), Some(&row())));
    assert_eq!(r.metadata_json, None);
}

/// SCH-13: a metadataJson string replaces the row's value.
#[test]
fn sch_13_metadata_string_sets() {
    let new = r#"{"mimeType":"image/webp","sizeBytes":99}"#;
    let r = put(materialize(
        &updated(MetadataJson::Value(new.to_owned())),
        Some(&row()),
    ));
    assert_eq!(r.metadata_json.as_deref(), Some(new));
    let mut without = row();
    without.metadata_json = None;
    let r = put(materialize(
        &updated(MetadataJson::Value(new.to_owned())),
        Some(&without),
    ));
    assert_eq!(r.metadata_json.as_deref(), Some(new));
}

/// SCH-13: an update of an unknown id is a no-op.
#[test]
fn sch_13_unknown_id_is_nothing() {
    for m in [
        MetadataJson::Absent,
        MetadataJson::Null,
        MetadataJson::Value("{}".into()),
    ] {
        assert_eq!(materialize(&updated(m), None), Mutation::Nothing);
    }
}

/// SCH-13: the update does not touch deletedAt, so a deleted row stays deleted.
#[test]
fn sch_13_deleted_at_untouched_on_deleted_row() {
    let mut gone = row();
    gone.deleted_at = Some(at(1_767_513_600_000));
    let r = put(materialize(&updated(MetadataJson::Null), Some(&gone)));
    assert_eq!(r.deleted_at, Some(at(1_767_513_600_000)));
    assert!(r.is_deleted());
    assert_eq!(r.content_hash, hash(2));
    let live = put(materialize(&updated(MetadataJson::Null), Some(&row())));
    assert_eq!(live.deleted_at, None);
}

// ---------------------------------------------------------------------------------------------
// SCH-14: v1.FileDeleted
// ---------------------------------------------------------------------------------------------

/// SCH-14: FileDeleted sets deletedAt and nothing else (soft delete; the row stays).
#[test]
fn sch_14_file_deleted_sets_deleted_at_only() {
    let r = put(materialize(&deleted(1_767_513_600_000), Some(&row())));
    let mut expected = row();
    expected.deleted_at = Some(at(1_767_513_600_000));
    assert_eq!(r, expected);
    assert!(r.is_deleted());
}

/// SCH-14: a second FileDeleted overwrites deletedAt (the original's `update({deletedAt})`).
#[test]
fn sch_14_file_deleted_again_overwrites_deleted_at() {
    let mut gone = row();
    gone.deleted_at = Some(at(1_767_513_600_000));
    let r = put(materialize(&deleted(1_767_513_600_001), Some(&gone)));
    assert_eq!(r.deleted_at, Some(at(1_767_513_600_001)));
    assert_eq!(r.updated_at, row().updated_at);
}

/// SCH-14: deleting an unknown id is a no-op.
#[test]
fn sch_14_unknown_id_is_nothing() {
    assert_eq!(
        materialize(&deleted(1_767_513_600_000), None),
        Mutation::Nothing
    );
}

// ---------------------------------------------------------------------------------------------
// SCH-15, SCH-10: client-only events
// ---------------------------------------------------------------------------------------------

/// SCH-15: Upsert is a full replace: the mutation carries exactly the new row, whatever the
/// `files` row, so a sparse upsert does not merge with an earlier full one.
#[test]
fn sch_15_upsert_is_full_replace() {
    let full = full_state(id());
    assert_eq!(
        materialize(&Event::LocalFileStateUpsert(full.clone()), Some(&row())),
        Mutation::PutLocalState(full)
    );
    let sparse = LocalFileState::new(id());
    assert_eq!(
        materialize(&Event::LocalFileStateUpsert(sparse.clone()), None),
        Mutation::PutLocalState(LocalFileState {
            file_id: id(),
            path: None,
            local_hash: None,
            download_status: TransferStatus::Pending,
            upload_status: TransferStatus::Pending,
            last_sync_error: String::new(),
        })
    );
    assert_eq!(sparse, LocalFileState::new(id()));
}

/// SCH-15: Remove deletes the one row of that fileId.
#[test]
fn sch_15_remove_deletes_one_row() {
    let other = FileId::parse(OTHER_ID).unwrap();
    assert_eq!(
        materialize(
            &Event::LocalFileStateRemove(LocalFileStateRemove {
                file_id: other.clone()
            }),
            Some(&row())
        ),
        Mutation::RemoveLocalState(other)
    );
}

/// SCH-15: Clear deletes every row.
#[test]
fn sch_15_clear_deletes_all_rows() {
    assert_eq!(
        materialize(&Event::LocalFileStateClear(LocalFileStateClear {}), None),
        Mutation::ClearLocalState
    );
}

/// SCH-10: fileSyncCursorSet sets the `global` cursor document.
#[test]
fn sch_10_cursor_set_puts_cursor_document() {
    let value = FileSyncCursor {
        last_event_sequence: EventSeq::parse("e12.3").unwrap(),
        updated_at: at(1_767_472_224_642),
    };
    let set = FileSyncCursorSet::global(value.clone());
    assert_eq!(set.id, CURSOR_DOCUMENT_ID);
    assert_eq!(CURSOR_DOCUMENT_ID, "global");
    assert_eq!(
        materialize(&Event::FileSyncCursorSet(set), None),
        Mutation::PutCursor {
            id: "global".to_owned(),
            value
        }
    );
}

/// SCH-5..10: only the three file events carry a `files` row id and are synced.
#[test]
fn sch_5_to_10_file_id_and_synced_only_for_file_events() {
    assert_eq!(created(MetadataJson::Absent).file_id(), Some(&id()));
    assert_eq!(updated(MetadataJson::Absent).file_id(), Some(&id()));
    assert_eq!(deleted(0).file_id(), Some(&id()));
    let client_only = [
        Event::LocalFileStateUpsert(LocalFileState::new(id())),
        Event::LocalFileStateRemove(LocalFileStateRemove { file_id: id() }),
        Event::LocalFileStateClear(LocalFileStateClear {}),
        Event::FileSyncCursorSet(FileSyncCursorSet::global(FileSyncCursor::default())),
    ];
    for ev in &client_only {
        assert_eq!(ev.file_id(), None, "{}", ev.name());
        assert!(!ev.is_synced(), "{}", ev.name());
    }
    assert!(created(MetadataJson::Absent).is_synced());
    assert!(updated(MetadataJson::Absent).is_synced());
    assert!(deleted(0).is_synced());
}

// ---------------------------------------------------------------------------------------------
// SCH-2, SCH-4: statuses and state-row defaults
// ---------------------------------------------------------------------------------------------

/// SCH-4: the five status strings parse, print and serialize exactly.
#[test]
fn sch_4_status_strings() {
    for (s, v) in [
        ("pending", TransferStatus::Pending),
        ("queued", TransferStatus::Queued),
        ("inProgress", TransferStatus::InProgress),
        ("done", TransferStatus::Done),
        ("error", TransferStatus::Error),
    ] {
        assert_eq!(s.parse::<TransferStatus>().unwrap(), v);
        assert_eq!(v.as_str(), s);
        assert_eq!(v.to_string(), s);
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
        assert_eq!(
            serde_json::from_str::<TransferStatus>(&format!("\"{s}\"")).unwrap(),
            v
        );
    }
}

/// SCH-4: anything else is refused, case-sensitively.
#[test]
fn sch_4_status_rejects_unknown() {
    for bad in ["running", "InProgress", "in_progress", "DONE", "", " done"] {
        assert!(bad.parse::<TransferStatus>().is_err(), "{bad:?} accepted");
        assert!(
            serde_json::from_str::<TransferStatus>(&format!("\"{bad}\"")).is_err(),
            "{bad:?} accepted by serde"
        );
    }
}

/// SCH-2, SCH-4: the column defaults: path and localHash `""`, both statuses `pending`, no error.
#[test]
fn sch_2_local_state_defaults() {
    assert_eq!(TransferStatus::default(), TransferStatus::Pending);
    let s = LocalFileState::new(id());
    assert_eq!(
        (s.path, s.local_hash, s.download_status, s.upload_status),
        (None, None, TransferStatus::Pending, TransferStatus::Pending)
    );
    assert_eq!(s.last_sync_error, "");
}

// ---------------------------------------------------------------------------------------------
// SCH-3: sequence numbers and the cursor
// ---------------------------------------------------------------------------------------------

/// SCH-3: `e{global}[.{client}][r{rebaseGeneration}]` parses and prints back unchanged.
#[test]
fn sch_3_event_seq_round_trip() {
    for (s, global, client, rebase) in [
        ("e0", 0, 0, 0),
        ("e5", 5, 0, 0),
        ("e5.2", 5, 2, 0),
        ("e5r1", 5, 0, 1),
        ("e5.2r3", 5, 2, 3),
        ("e10.10r10", 10, 10, 10),
        ("e18446744073709551615", u64::MAX, 0, 0),
    ] {
        let seq = EventSeq::parse(s).unwrap();
        assert_eq!(
            seq,
            EventSeq {
                global,
                client,
                rebase
            },
            "{s}"
        );
        assert_eq!(seq.to_string(), s);
        assert_eq!(s.parse::<EventSeq>().unwrap(), seq);
        assert_eq!(serde_json::to_string(&seq).unwrap(), format!("\"{s}\""));
    }
}

/// SCH-3: zero client and rebase parts are not printed (LiveStore's `toString`).
#[test]
fn sch_3_event_seq_zero_parts_not_printed() {
    let seq = EventSeq {
        global: 7,
        client: 0,
        rebase: 0,
    };
    assert_eq!(seq.to_string(), "e7");
    assert_eq!(EventSeq::global(7), seq);
    assert_eq!(EventSeq::ROOT.to_string(), "e0");
    assert_eq!(EventSeq::default(), EventSeq::ROOT);
}

/// SCH-3: malformed sequence numbers are refused.
#[test]
fn sch_3_event_seq_rejects_malformed() {
    for bad in [
        "",
        "5",
        "e",
        "E1",
        "x5",
        "e-1",
        "e+1",
        "e1.",
        "e.1",
        "e01",
        "e1.01",
        "e1r01",
        "e1.x",
        "e1r",
        "e1r1r1",
        "e1.2.3",
        "e1+2",
        " e1",
        "e1 ",
        "e1.2r",
        "e1r-1",
        "e18446744073709551616",
    ] {
        assert!(EventSeq::parse(bad).is_err(), "{bad:?} accepted");
        assert!(
            serde_json::from_str::<EventSeq>(&format!("\"{bad}\"")).is_err(),
            "{bad:?} accepted by serde"
        );
    }
    assert!(serde_json::from_str::<EventSeq>("5").is_err());
}

/// SCH-3: sequence numbers order by global, then client, then rebase generation.
#[test]
fn sch_3_event_seq_ordering() {
    let ordered = [
        "e0", "e1", "e1r1", "e1.1", "e1.1r2", "e1.2", "e2", "e10", "e10.1",
    ]
    .map(|s| EventSeq::parse(s).unwrap());
    for pair in ordered.windows(2) {
        assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
    }
    let mut shuffled = ordered;
    shuffled.reverse();
    shuffled.sort();
    assert_eq!(shuffled, ordered);
    assert!(EventSeq::ROOT.is_root());
    assert!(!EventSeq::parse("e0.1").unwrap().is_root());
    assert!(!EventSeq::parse("e1").unwrap().is_root());
}

/// SCH-3: the default cursor is `e0` at the epoch.
#[test]
fn sch_3_default_cursor() {
    let c = FileSyncCursor::default();
    assert_eq!(c.last_event_sequence, EventSeq::ROOT);
    assert_eq!(c.updated_at, Timestamp::EPOCH);
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"lastEventSequence":"e0","updatedAt":"1970-01-01T00:00:00.000Z"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// SCH-16: metadata
// ---------------------------------------------------------------------------------------------

/// SCH-16: a JSON object parses into the four known fields; unknown keys are ignored.
#[test]
fn sch_16_metadata_from_json_object() {
    let m = FileMetadata::from_json(METADATA).unwrap();
    assert_eq!(
        m,
        FileMetadata {
            mime_type: Some("image/png".to_owned()),
            size_bytes: Some(1234),
            image: Some(ImageSize {
                width: 400,
                height: 400
            }),
            custom: None,
            name: None,
        }
    );
    assert_eq!(m.to_json(), METADATA);
    let m = FileMetadata::from_json(r#"{"custom":{"alt":"a cat"},"thumbnail":"x"}"#).unwrap();
    assert_eq!(m.custom.unwrap()["alt"], "a cat");
    assert_eq!(
        FileMetadata::from_json("{}").unwrap(),
        FileMetadata::default()
    );
    assert_eq!(FileMetadata::default().to_json(), "{}");
}

/// SCH-16: anything but a JSON object is an error (the original returns null; it also accepts
/// arrays, WEAK-26).
#[test]
fn sch_16_metadata_from_json_rejects_non_objects() {
    for bad in [
        "[]",
        "[\"image/png\"]",
        "42",
        "\"x\"",
        "null",
        "true",
        "{not json",
        "",
        "{\"sizeBytes\":\"big\"}",
        "{\"image\":{\"width\":1}}",
    ] {
        assert!(FileMetadata::from_json(bad).is_err(), "{bad:?} accepted");
    }
}

/// SCH-16: `FileRecord::metadata` is `None` for null or unparseable metadataJson.
#[test]
fn sch_16_record_metadata_none_when_unparseable() {
    assert_eq!(
        row().metadata().unwrap().mime_type.as_deref(),
        Some("image/png")
    );
    for bad in [None, Some("[1]"), Some("{oops"), Some("")] {
        let mut r = row();
        r.metadata_json = bad.map(str::to_owned);
        assert_eq!(r.metadata(), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// FS-1, API-25, ENG-14, CFG-5: paths, keys and store ids
// ---------------------------------------------------------------------------------------------

/// FS-1, API-25: `livestore-filesync-files/<storeId>/<hash>` and the store root.
#[test]
fn fs_1_stored_path_layout() {
    assert_eq!(FILES_ROOT, "livestore-filesync-files");
    let p = stored_path(&store(), &hash(0xab));
    assert_eq!(
        p.as_str(),
        format!(
            "livestore-filesync-files/node_filesync_store/{}",
            "ab".repeat(32)
        )
    );
    assert_eq!(p.file_name(), "ab".repeat(32));
    assert_eq!(p.parent(), Some(store_root(&store())));
    assert_eq!(
        store_root(&store()).as_str(),
        "livestore-filesync-files/node_filesync_store"
    );
}

/// ENG-14: the remote key is the stored path without `livestore-filesync-files/`.
#[test]
fn eng_14_key_for_path_strips_files_root() {
    let s = StoreId::parse("s").unwrap();
    let h = hash(0x5c);
    let p = LocalPath::parse(format!("livestore-filesync-files/s/{h}")).unwrap();
    assert_eq!(key_for_path(&p).unwrap().as_str(), format!("s/{h}"));
    assert_eq!(key_for_path(&p).unwrap(), ObjectKey::for_content(&s, &h));
    assert_eq!(
        key_for_path(&stored_path(&store(), &h)).unwrap().as_str(),
        format!("node_filesync_store/{h}")
    );
}

/// ENG-14 (`stripFilesRoot`): a path outside the files root is used unchanged; only a whole
/// `livestore-filesync-files/` segment is stripped.
#[test]
fn eng_14_key_for_path_without_files_root() {
    for (path, key) in [
        ("elsewhere/x", "elsewhere/x"),
        ("livestore-filesync-filesX/a", "livestore-filesync-filesX/a"),
        ("livestore-filesync-files", "livestore-filesync-files"),
        (
            "livestore-filesync-files/livestore-filesync-files/a",
            "livestore-filesync-files/a",
        ),
    ] {
        let p = LocalPath::parse(path).unwrap();
        assert_eq!(key_for_path(&p).unwrap().as_str(), key, "{path}");
    }
}

/// CFG-5: every character outside `[A-Za-z0-9._-]` becomes `_`; allowed ones are kept.
#[test]
fn cfg_5_store_id_sanitize() {
    for (raw, expected) in [
        ("node_filesync_store", "node_filesync_store"),
        ("my-app.v2", "my-app.v2"),
        ("node filesync/store@1", "node_filesync_store_1"),
        ("a:b\\c", "a_b_c"),
        ("störe", "st_re"),
        ("..a", "..a"),
    ] {
        assert_eq!(
            StoreId::sanitize(raw).unwrap().as_str(),
            expected,
            "{raw:?}"
        );
    }
}

/// CFG-5: the original's regex (`/[^A-Za-z0-9._-]/g`, no `u` flag) replaces each UTF-16 code
/// unit, so a character outside the Basic Multilingual Plane becomes two underscores. Paths and
/// keys must match the original's, or clients of one store disagree on where content lives.
#[test]
fn cfg_5_store_id_sanitize_counts_utf16_units() {
    assert_eq!(StoreId::sanitize("photos📷").unwrap().as_str(), "photos__");
    assert_eq!(StoreId::sanitize("a😀b").unwrap().as_str(), "a__b");
}

/// CFG-5: ids that sanitise to nothing usable (empty, `.` or `..`) are refused.
#[test]
fn cfg_5_store_id_sanitize_refuses_unusable() {
    for bad in ["", ".", ".."] {
        assert!(StoreId::sanitize(bad).is_err(), "{bad:?} accepted");
    }
}
