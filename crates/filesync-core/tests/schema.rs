//! The materializers (SCH-12..15) and the schema helpers, on plain values.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::schema::{
    Event, EventSeq, FileCreated, FileDeleted, FileMetadata, FileRecord, FileUpdated,
    LocalFileState, LocalFileStateClear, LocalFileStateRemove, MetadataJson, Mutation,
    TransferStatus, key_for_path, materialize, stored_path,
};
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId, Timestamp};

fn id() -> FileId {
    FileId::parse("f1").unwrap()
}
fn h(n: u8) -> ContentHash {
    ContentHash::from_bytes([n; 32])
}
fn store() -> StoreId {
    StoreId::parse("s").unwrap()
}
fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn row() -> FileRecord {
    FileRecord {
        id: id(),
        path: stored_path(&store(), &h(1)),
        remote_key: Some(ObjectKey::for_content(&store(), &h(1))),
        content_hash: h(1),
        metadata_json: Some("{\"mimeType\":\"a/b\"}".into()),
        created_at: t(1),
        updated_at: t(2),
        deleted_at: None,
    }
}

fn update(metadata: MetadataJson) -> Event {
    Event::FileUpdated(FileUpdated {
        id: id(),
        path: stored_path(&store(), &h(2)),
        remote_key: None,
        content_hash: h(2),
        metadata_json: metadata,
        updated_at: t(9),
    })
}

fn put(m: Mutation) -> FileRecord {
    match m {
        Mutation::PutFile(r) => r,
        other => panic!("expected PutFile, got {other:?}"),
    }
}

/// SCH-12: FileCreated inserts with `remoteKey ""`, `deletedAt null`, missing metadata null.
#[test]
fn sch_12_file_created_inserts_defaults() {
    let ev = Event::FileCreated(FileCreated {
        id: id(),
        path: stored_path(&store(), &h(1)),
        content_hash: h(1),
        metadata_json: MetadataJson::Absent,
        created_at: t(5),
        updated_at: t(6),
    });
    let r = put(materialize(&ev, None));
    assert_eq!(
        (r.remote_key, r.deleted_at, r.metadata_json),
        (None, None, None)
    );
    assert_eq!(
        (r.created_at, r.updated_at, r.content_hash),
        (t(5), t(6), h(1))
    );
    assert_eq!(
        materialize(&ev, Some(&row())),
        Mutation::Nothing,
        "replay is a no-op"
    );
}

/// SCH-13: FileUpdated sets path, remoteKey, contentHash and updatedAt; keeps createdAt.
#[test]
fn sch_13_file_updated_sets_fields() {
    let r = put(materialize(&update(MetadataJson::Absent), Some(&row())));
    assert_eq!(r.path, stored_path(&store(), &h(2)));
    assert_eq!(
        (r.remote_key, r.content_hash, r.updated_at, r.created_at),
        (None, h(2), t(9), t(1))
    );
}

/// SCH-13: an absent metadataJson keeps the row's value.
#[test]
fn sch_13_metadata_absent_keeps_existing() {
    let r = put(materialize(&update(MetadataJson::Absent), Some(&row())));
    assert_eq!(r.metadata_json, row().metadata_json);
}

/// SCH-13: an explicit null clears metadataJson; a string replaces it.
#[test]
fn sch_13_metadata_null_clears_string_sets() {
    let r = put(materialize(&update(MetadataJson::Null), Some(&row())));
    assert_eq!(r.metadata_json, None);
    let r = put(materialize(
        &update(MetadataJson::Value("{}".into())),
        Some(&row()),
    ));
    assert_eq!(r.metadata_json.as_deref(), Some("{}"));
}

/// SCH-13: an unknown id is a no-op; deletedAt is not touched.
#[test]
fn sch_13_unknown_id_noop_and_deleted_at_untouched() {
    assert_eq!(
        materialize(&update(MetadataJson::Absent), None),
        Mutation::Nothing
    );
    let mut deleted = row();
    deleted.deleted_at = Some(t(7));
    let r = put(materialize(&update(MetadataJson::Absent), Some(&deleted)));
    assert_eq!(r.deleted_at, Some(t(7)));
}

/// SCH-14: FileDeleted sets deletedAt only; an unknown id is a no-op.
#[test]
fn sch_14_file_deleted_is_soft() {
    let ev = Event::FileDeleted(FileDeleted {
        id: id(),
        deleted_at: t(8),
    });
    let r = put(materialize(&ev, Some(&row())));
    let mut expected = row();
    expected.deleted_at = Some(t(8));
    assert_eq!(r, expected);
    assert_eq!(materialize(&ev, None), Mutation::Nothing);
}

/// SCH-15: Upsert is a full replace; Remove deletes one row; Clear deletes all.
#[test]
fn sch_15_local_state_mutations() {
    let state = LocalFileState::new(id());
    assert_eq!(
        materialize(&Event::LocalFileStateUpsert(state.clone()), None),
        Mutation::PutLocalState(state)
    );
    assert_eq!(
        materialize(
            &Event::LocalFileStateRemove(LocalFileStateRemove { file_id: id() }),
            None
        ),
        Mutation::RemoveLocalState(id())
    );
    assert_eq!(
        materialize(&Event::LocalFileStateClear(LocalFileStateClear {}), None),
        Mutation::ClearLocalState
    );
}

/// SCH-4: the status strings.
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
        assert_eq!(v.to_string(), s);
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
    }
    assert!("running".parse::<TransferStatus>().is_err());
    assert_eq!(
        LocalFileState::new(id()).upload_status,
        TransferStatus::Pending
    );
}

/// SCH-3: sequence numbers `e{global}[.{client}][r{n}]` parse, print and order.
#[test]
fn sch_3_event_seq_format() {
    for s in ["e0", "e5", "e5.2", "e5r1", "e5.2r3"] {
        assert_eq!(EventSeq::parse(s).unwrap().to_string(), s);
    }
    for bad in ["5", "e", "e-1", "e1.", "e01", "e1.x", "e1r", "E1"] {
        assert!(EventSeq::parse(bad).is_err(), "{bad} accepted");
    }
    let (a, b, c) = (
        EventSeq::parse("e5").unwrap(),
        EventSeq::parse("e5.1").unwrap(),
        EventSeq::parse("e6").unwrap(),
    );
    assert!(a < b && b < c);
    assert!(EventSeq::ROOT.is_root() && !a.is_root());
}

/// SCH-16: metadata must be a JSON object (the original's parser also accepted arrays: WEAK-26).
#[test]
fn sch_16_metadata_must_be_an_object() {
    let m = FileMetadata::from_json("{\"mimeType\":\"image/png\",\"sizeBytes\":3}").unwrap();
    assert_eq!(
        (m.mime_type.as_deref(), m.size_bytes),
        (Some("image/png"), Some(3))
    );
    for bad in ["[]", "3", "\"x\"", "null", "{not json", ""] {
        assert!(FileMetadata::from_json(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(row().metadata().unwrap().mime_type.as_deref(), Some("a/b"));
}

/// API-25, ENG-14: stored paths and the remote key derived from them.
#[test]
fn api_25_eng_14_paths_and_keys() {
    let p = stored_path(&store(), &h(1));
    assert_eq!(p.as_str(), format!("livestore-filesync-files/s/{}", h(1)));
    assert_eq!(key_for_path(&p).unwrap().as_str(), format!("s/{}", h(1)));
    let other = LocalPath::parse("elsewhere/x").unwrap();
    assert_eq!(key_for_path(&other).unwrap().as_str(), "elsewhere/x");
}

/// CFG-5: store ids are sanitised like the original.
#[test]
fn cfg_5_store_id_sanitised() {
    assert_eq!(StoreId::sanitize("my app/1").unwrap().as_str(), "my_app_1");
}
