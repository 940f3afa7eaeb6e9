//! Wire-format vectors (SCH-1..16): every valid case round-trips byte for byte, every invalid
//! case is refused. The vectors are written from the spec of the TypeScript original.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;

use filesync_core::schema::{Event, FileMetadata, FileRecord, FileSyncCursor, LocalFileState};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Case {
    description: String,
    spec: String,
    #[serde(default)]
    kind: Option<String>,
    json: Box<RawValue>,
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn round_trip<T: DeserializeOwned + serde::Serialize>(case: &Case) {
    let raw = case.json.get();
    let parsed: T = serde_json::from_str(raw)
        .unwrap_or_else(|e| panic!("{} ({}): does not parse: {e}", case.description, case.spec));
    let back = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        back, raw,
        "{} ({}): not byte-identical",
        case.description, case.spec
    );
}

fn refuses<T: DeserializeOwned + std::fmt::Debug>(case: &Case) {
    let parsed = serde_json::from_str::<T>(case.json.get());
    assert!(
        parsed.is_err(),
        "{} ({}): accepted as {:?}",
        case.description,
        case.spec,
        parsed.unwrap()
    );
}

/// SCH-5..11: every event vector round-trips byte for byte and `Event::name` is its JSON name.
#[test]
fn sch_5_to_11_events_round_trip_byte_for_byte() {
    let cases = load("events.json");
    assert!(cases.len() >= 15);
    for case in &cases {
        round_trip::<Event>(case);
        let event: Event = serde_json::from_str(case.json.get()).unwrap();
        let value: serde_json::Value = serde_json::from_str(case.json.get()).unwrap();
        assert_eq!(value["name"], event.name(), "{}", case.description);
    }
}

/// SCH-5..10, SCH-17: the vectors cover every event the schema defines.
#[test]
fn sch_5_to_10_vectors_cover_every_event() {
    let names: BTreeSet<String> = load("events.json")
        .iter()
        .map(|c| {
            serde_json::from_str::<Event>(c.json.get())
                .unwrap()
                .name()
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = [
        "v1.FileCreated",
        "v1.FileUpdated",
        "v1.FileDeleted",
        "v1.LocalFileStateUpsert",
        "v1.LocalFileStateRemove",
        "v1.LocalFileStateClear",
        "fileSyncCursorSet",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
}

/// SCH-1..3, SCH-16: rows, the cursor document and metadata round-trip byte for byte
/// (epoch milliseconds in rows, ISO-8601 in the cursor value).
#[test]
fn sch_1_2_3_16_rows_round_trip_byte_for_byte() {
    let cases = load("rows.json");
    for case in &cases {
        match case.kind.as_deref() {
            Some("files") => round_trip::<FileRecord>(case),
            Some("localFileState") => round_trip::<LocalFileState>(case),
            Some("fileSyncCursor") => round_trip::<FileSyncCursor>(case),
            Some("metadata") => {
                round_trip::<FileMetadata>(case);
                FileMetadata::from_json(case.json.get()).unwrap();
            }
            other => panic!("{}: unknown kind {other:?}", case.description),
        }
    }
    let kinds: BTreeSet<_> = cases.iter().filter_map(|c| c.kind.clone()).collect();
    assert_eq!(kinds.len(), 4);
}

/// Bad input: malformed hashes, escaping paths and keys, unknown names and statuses, bad dates
/// and sequence numbers, missing fields and non-object metadata are refused with an error.
#[test]
fn invalid_vectors_are_refused() {
    let cases = load("invalid.json");
    assert!(cases.len() >= 14);
    for case in &cases {
        match case.kind.as_deref() {
            Some("event") => refuses::<Event>(case),
            Some("files") => refuses::<FileRecord>(case),
            Some("metadata") => assert!(
                FileMetadata::from_json(case.json.get()).is_err(),
                "{}: accepted",
                case.description
            ),
            other => panic!("{}: unknown kind {other:?}", case.description),
        }
    }
}
