//! Wire-format vectors (SCH-1..17, KEY): every valid case in `tests/vectors/{events,rows}.json`
//! parses and serializes back to its exact raw text, byte for byte; every case in
//! `tests/vectors/invalid.json` is refused. The vectors are written from the spec of the
//! TypeScript original (`@livestore-filesync/core` 0.8.0), not from this crate's output.
//!
//! Each check collects every failing case before asserting, so one run reports all of them.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::fmt::Debug;

use filesync_core::schema::{
    Event, FILE_EVENT_NAMES, FileMetadata, FileRecord, FileSyncCursor, LocalFileState, Mutation,
    materialize,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// One vector. `json` keeps the exact raw text of the value as written in the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    spec: String,
    #[serde(default)]
    kind: Option<String>,
    json: Box<RawValue>,
}

impl Case {
    fn raw(&self) -> &str {
        self.json.get()
    }

    fn label(&self) -> String {
        format!("{} [{}]", self.description, self.spec)
    }
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases: Vec<Case> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid: {e}"));
    assert!(!cases.is_empty(), "{path} has no cases");
    cases
}

/// Parse the raw text as `T` and serialize it back; `Err` describes the failure.
fn round_trip<T: DeserializeOwned + Serialize>(case: &Case) -> Result<T, String> {
    let raw = case.raw();
    let parsed: T =
        serde_json::from_str(raw).map_err(|e| format!("{}: does not parse: {e}", case.label()))?;
    let back = serde_json::to_string(&parsed)
        .map_err(|e| format!("{}: does not serialize: {e}", case.label()))?;
    if back != raw {
        return Err(format!(
            "{}: not byte-identical\n   vector: {raw}\n     rust: {back}",
            case.label()
        ));
    }
    Ok(parsed)
}

/// `Err` when the raw text parses as `T`.
fn refused<T: DeserializeOwned + Debug>(case: &Case) -> Result<(), String> {
    match serde_json::from_str::<T>(case.raw()) {
        Ok(v) => Err(format!("{}: accepted as {v:?}", case.label())),
        Err(_) => Ok(()),
    }
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A stable index per variant. The match is exhaustive, so adding an [`Event`] variant fails to
/// compile here until [`ALL_EVENT_NAMES`] and the vectors cover it.
fn variant_index(event: &Event) -> usize {
    match event {
        Event::FileCreated(_) => 0,
        Event::FileUpdated(_) => 1,
        Event::FileDeleted(_) => 2,
        Event::LocalFileStateUpsert(_) => 3,
        Event::LocalFileStateRemove(_) => 4,
        Event::LocalFileStateClear(_) => 5,
        Event::FileSyncCursorSet(_) => 6,
    }
}

/// Every event name, indexed by [`variant_index`] (SCH-17's `events`).
const ALL_EVENT_NAMES: [&str; 7] = [
    "v1.FileCreated",
    "v1.FileUpdated",
    "v1.FileDeleted",
    "v1.LocalFileStateUpsert",
    "v1.LocalFileStateRemove",
    "v1.LocalFileStateClear",
    "fileSyncCursorSet",
];

/// The `name` member of an event vector, read without this crate's types.
fn json_name(case: &Case) -> String {
    let value: serde_json::Value = serde_json::from_str(case.raw()).unwrap();
    value["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no string name", case.label()))
        .to_owned()
}

fn find<'a>(cases: &'a [Case], description: &str) -> &'a Case {
    cases
        .iter()
        .find(|c| c.description == description)
        .unwrap_or_else(|| panic!("no vector described {description:?}"))
}

/// SCH-5..11: every event vector parses as an [`Event`] and serializes back to exactly the same
/// bytes (field order, absent vs `null` metadataJson, `""` remoteKey, ISO-8601 dates with
/// milliseconds, sequence-number strings, string escapes).
#[test]
fn sch_5_to_11_events_round_trip_byte_for_byte() {
    let cases = load("events.json");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            if case.kind.is_some() {
                return Some(format!("{}: events need no kind", case.label()));
            }
            round_trip::<Event>(case).err()
        })
        .collect();
    assert_no_failures("event", &failures);
}

/// SCH-5..10: `Event::name()` is the JSON `name`, and synced-ness matches the three file events.
#[test]
fn sch_5_to_10_event_name_matches_json_name() {
    for case in &load("events.json") {
        // A vector that does not parse is reported by `sch_5_to_11_events_round_trip_byte_for_byte`.
        let Ok(event) = Event::from_json(case.raw()) else {
            continue;
        };
        let name = json_name(case);
        assert_eq!(event.name(), name, "{}", case.label());
        assert_eq!(
            ALL_EVENT_NAMES[variant_index(&event)],
            name,
            "{}",
            case.label()
        );
        assert_eq!(
            event.is_synced(),
            FILE_EVENT_NAMES.contains(&event.name()),
            "{}",
            case.label()
        );
    }
}

/// SCH-17: every event the schema defines appears in `events.json` at least once.
#[test]
fn sch_17_vectors_cover_every_event() {
    let seen: BTreeSet<String> = load("events.json").iter().map(json_name).collect();
    let expected: BTreeSet<String> = ALL_EVENT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen, expected);
    assert_eq!(
        FILE_EVENT_NAMES,
        ["v1.FileCreated", "v1.FileUpdated", "v1.FileDeleted"]
    );
}

/// SCH-1..4, SCH-16: rows (epoch milliseconds), the cursor document value (ISO-8601) and
/// metadata objects round-trip byte for byte; metadata also through `FileMetadata::from_json`.
#[test]
fn sch_1_2_3_16_rows_round_trip_byte_for_byte() {
    let cases = load("rows.json");
    let mut failures = Vec::new();
    for case in &cases {
        let result = match case.kind.as_deref() {
            Some("files") => round_trip::<FileRecord>(case).map(drop),
            Some("localFileState") => round_trip::<LocalFileState>(case).map(drop),
            Some("fileSyncCursor") => round_trip::<FileSyncCursor>(case).map(drop),
            Some("metadata") => round_trip::<FileMetadata>(case).and_then(|m| {
                match FileMetadata::from_json(case.raw()) {
                    Ok(parsed) if parsed == m && parsed.to_json() == case.raw() => Ok(()),
                    Ok(parsed) => Err(format!(
                        "{}: from_json/to_json differ: {parsed:?}",
                        case.label()
                    )),
                    Err(e) => Err(format!("{}: from_json refused: {e}", case.label())),
                }
            }),
            other => Err(format!("{}: unknown kind {other:?}", case.label())),
        };
        failures.extend(result.err());
    }
    assert_no_failures("row", &failures);
    let kinds: BTreeSet<_> = cases.iter().filter_map(|c| c.kind.as_deref()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["fileSyncCursor", "files", "localFileState", "metadata"])
    );
}

/// SCH-3: the default cursor document value is exactly the vector.
#[test]
fn sch_3_default_cursor_matches_vector() {
    let cases = load("rows.json");
    let case = find(&cases, "default cursor document value");
    assert_eq!(
        serde_json::to_string(&FileSyncCursor::default()).unwrap(),
        case.raw()
    );
}

/// SCH-11, SCH-12..14: materializing the event vectors yields the row vectors; ISO-8601 dates
/// in events become epoch milliseconds in rows.
#[test]
fn sch_11_events_materialize_to_row_vectors() {
    let events = load("events.json");
    let rows = load("rows.json");
    let event = |d: &str| Event::from_json(find(&events, d).raw()).unwrap();
    let row = |d: &str| -> FileRecord { serde_json::from_str(find(&rows, d).raw()).unwrap() };
    let put = |m: Mutation| match m {
        Mutation::PutFile(r) => r,
        other => panic!("expected PutFile, got {other:?}"),
    };

    let created = put(materialize(
        &event("FileCreated without metadataJson (older events omit it)"),
        None,
    ));
    let fresh =
        row("files row after FileCreated: remoteKey empty, metadataJson null, deletedAt null");
    assert_eq!(created, fresh);
    assert_eq!(
        serde_json::to_string(&created).unwrap(),
        find(
            &rows,
            "files row after FileCreated: remoteKey empty, metadataJson null, deletedAt null"
        )
        .raw()
    );

    let uploaded = put(materialize(
        &event("FileUpdated after upload: remoteKey set, metadataJson absent"),
        Some(&created),
    ));
    assert_eq!(uploaded, row("files row after upload: remoteKey set"));

    let deleted = put(materialize(&event("FileDeleted"), Some(&uploaded)));
    assert_eq!(deleted, row("files row soft-deleted: deletedAt set"));
}

/// SCH-1..16, KEY-1: malformed names, hashes, paths, keys, statuses, dates, sequence numbers and
/// ids, missing fields, wrong JSON types and non-object metadata are all refused.
#[test]
fn sch_invalid_vectors_are_refused() {
    let cases = load("invalid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let result = match case.kind.as_deref() {
            Some("event") => refused::<Event>(case),
            Some("files") => refused::<FileRecord>(case),
            Some("localFileState") => refused::<LocalFileState>(case),
            Some("fileSyncCursor") => refused::<FileSyncCursor>(case),
            Some("metadata") => match FileMetadata::from_json(case.raw()) {
                Ok(m) => Err(format!("{}: accepted as {m:?}", case.label())),
                Err(_) => Ok(()),
            },
            other => Err(format!("{}: unknown kind {other:?}", case.label())),
        };
        failures.extend(result.err());
    }
    assert_no_failures("invalid", &failures);
}

/// The vector files stay well-formed: known spec IDs, unique descriptions, and every `json` value
/// written compactly on one line (so the raw text is what `serde_json::to_string` produces).
#[test]
fn vector_files_are_well_formed() {
    for name in ["events.json", "rows.json", "invalid.json"] {
        let cases = load(name);
        let mut descriptions = BTreeSet::new();
        for case in &cases {
            assert!(
                descriptions.insert(case.description.as_str()),
                "{name}: duplicate description {:?}",
                case.description
            );
            let (area, number) = case
                .spec
                .split_once('-')
                .unwrap_or_else(|| panic!("{name}: bad spec id {:?}", case.spec));
            assert!(
                ["SCH", "KEY", "FS", "ENG"].contains(&area) && number.parse::<u32>().is_ok(),
                "{name}: bad spec id {:?}",
                case.spec
            );
            let value: serde_json::Value = serde_json::from_str(case.raw()).unwrap();
            let raw = case.raw();
            assert!(
                !raw.contains('\n') && raw.len() == compact_len(&value),
                "{name}: {}: json is not compact",
                case.label()
            );
        }
    }
}

/// The length of `value` written compactly (object members in any order have the same length).
fn compact_len(value: &serde_json::Value) -> usize {
    serde_json::to_string(value).unwrap().len()
}
