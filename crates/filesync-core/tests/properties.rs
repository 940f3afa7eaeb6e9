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
