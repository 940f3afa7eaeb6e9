//! One write's changes: [`Changes`] per table, the [`Batch`] of them with the IndexedDB
//! operations that persist it, and [`Pending`], the [`Tables`] the shared batch functions run on.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use filesync_core::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState, Mutation,
};
use filesync_core::store::StoredEvent;
use filesync_core::store::backend::Tables;
use filesync_core::types::{FileId, ObjectKey};
use filesync_core::{Error, Result};
use serde::Serialize;
use wasm_bindgen::JsValue;

use super::data::Data;
use super::schema::{CONFIRMED, CURSORS, EVENTLOG, FILES, LOCAL, LogRow, META, REMOTE_DELETES};
use crate::idb::Op;

/// Changes to one table on top of its committed rows: a row is replaced (`Some`) or removed
/// (`None`); `cleared` hides every committed row.
#[derive(Debug)]
pub(super) struct Changes<K, V> {
    cleared: bool,
    rows: BTreeMap<K, Option<V>>,
}

impl<K, V> Default for Changes<K, V> {
    fn default() -> Self {
        Self {
            cleared: false,
            rows: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> Changes<K, V> {
    pub(super) fn is_empty(&self) -> bool {
        !self.cleared && self.rows.is_empty()
    }

    fn get<'a>(&'a self, base: &'a BTreeMap<K, V>, key: &K) -> Option<&'a V> {
        match self.rows.get(key) {
            Some(row) => row.as_ref(),
            None if self.cleared => None,
            None => base.get(key),
        }
    }

    pub(super) fn put(&mut self, key: K, value: V) {
        self.rows.insert(key, Some(value));
    }

    pub(super) fn remove(&mut self, key: K) {
        self.rows.insert(key, None);
    }

    fn clear(&mut self) {
        self.cleared = true;
        self.rows.clear();
    }

    /// The rows in `range` as they are with these changes.
    fn range<'a, R: RangeBounds<K> + Clone>(
        &'a self,
        base: &'a BTreeMap<K, V>,
        range: R,
    ) -> BTreeMap<&'a K, &'a V> {
        let mut out: BTreeMap<&K, &V> = if self.cleared {
            BTreeMap::new()
        } else {
            base.range(range.clone()).collect()
        };
        for (key, row) in self.rows.range(range) {
            match row {
                Some(value) => out.insert(key, value),
                None => out.remove(key),
            };
        }
        out
    }

    /// The last row as it is with these changes.
    fn last<'a>(&'a self, base: &'a BTreeMap<K, V>) -> Option<(&'a K, &'a V)> {
        let changed = self
            .rows
            .iter()
            .rev()
            .find_map(|(k, row)| row.as_ref().map(|v| (k, v)));
        let kept = if self.cleared {
            None
        } else {
            base.iter().rev().find(|(k, _)| !self.rows.contains_key(*k))
        };
        match (changed, kept) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn apply_to(self, base: &mut BTreeMap<K, V>) {
        if self.cleared {
            base.clear();
        }
        for (key, row) in self.rows {
            match row {
                Some(value) => base.insert(key, value),
                None => base.remove(&key),
            };
        }
    }

    /// The operations that make the object store `store` match.
    pub(super) fn ops(
        &self,
        store: &'static str,
        key: impl Fn(&K) -> JsValue,
        value: impl Fn(&V) -> Result<String>,
        out: &mut Vec<Op>,
    ) -> Result<()> {
        if self.cleared {
            out.push(Op::Clear(store));
        }
        for (k, row) in &self.rows {
            out.push(match row {
                Some(v) => Op::Put {
                    store,
                    key: key(k),
                    value: value(v)?,
                },
                None => Op::Delete { store, key: key(k) },
            });
        }
        Ok(())
    }
}

/// Everything one write changes, recorded while the shared batch function runs.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) log: Changes<u64, StoredEvent>,
    pub(super) files: Changes<FileId, FileRecord>,
    pub(super) local: Changes<FileId, LocalFileState>,
    pub(super) cursors: Changes<String, FileSyncCursor>,
    pub(super) remote_deletes: Changes<u64, ObjectKey>,
    pub(super) confirmed: Option<EventSeq>,
    pub(super) client_seq: Option<(u64, u64)>,
}

fn json<T: Serialize>(what: &'static str) -> impl Fn(&T) -> Result<String> {
    move |v| {
        serde_json::to_string(v).map_err(|e| Error::InvalidInput {
            what,
            reason: "cannot be encoded as JSON".into(),
            source: Some(e.into()),
        })
    }
}

fn number_key(k: &u64) -> JsValue {
    // Exact up to 2^53, far beyond any log.
    JsValue::from_f64(*k as f64)
}

impl Batch {
    /// The IndexedDB operations that persist this batch (empty if it changes nothing stored).
    pub(super) fn ops(&self) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        let log_value = |e: &StoredEvent| {
            json("event")(&LogRow {
                seq: e.seq,
                event: e.event.clone(),
            })
        };
        self.log.ops(EVENTLOG, number_key, log_value, &mut ops)?;
        let str_key = |k: &FileId| JsValue::from_str(k.as_str());
        self.files.ops(FILES, str_key, json("file row"), &mut ops)?;
        self.local
            .ops(LOCAL, str_key, json("local file state"), &mut ops)?;
        self.cursors.ops(
            CURSORS,
            |k: &String| JsValue::from_str(k),
            json("cursor"),
            &mut ops,
        )?;
        self.remote_deletes.ops(
            REMOTE_DELETES,
            number_key,
            |k: &ObjectKey| Ok(k.as_str().to_owned()),
            &mut ops,
        )?;
        if let Some(seq) = self.confirmed {
            ops.push(Op::Put {
                store: META,
                key: JsValue::from_str(CONFIRMED),
                value: seq.global.to_string(),
            });
        }
        Ok(ops)
    }

    pub(super) fn apply_to(self, data: &mut Data) {
        self.log.apply_to(&mut data.log);
        self.files.apply_to(&mut data.files);
        self.local.apply_to(&mut data.local);
        self.cursors.apply_to(&mut data.cursors);
        self.remote_deletes.apply_to(&mut data.remote_deletes);
        if let Some(seq) = self.confirmed {
            data.confirmed = seq;
        }
        if let Some(seq) = self.client_seq {
            data.client_seq = seq;
        }
    }
}

/// The tables as one write sees them: the committed data plus this write's changes.
pub(super) struct Pending<'a> {
    pub(super) base: &'a Data,
    pub(super) batch: Batch,
}

impl Tables for Pending<'_> {
    fn file(&mut self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(self.batch.files.get(&self.base.files, id).cloned())
    }

    fn head(&mut self) -> Result<EventSeq> {
        Ok(self
            .batch
            .log
            .last(&self.base.log)
            .map_or(EventSeq::ROOT, |(_, e)| e.seq))
    }

    fn append(&mut self, seq: EventSeq, event: &Event) -> Result<()> {
        let seq = EventSeq { client: 0, ..seq };
        self.batch.log.put(
            seq.global,
            StoredEvent {
                seq,
                event: event.clone(),
            },
        );
        Ok(())
    }

    fn apply(&mut self, mutation: Mutation) -> Result<()> {
        match mutation {
            Mutation::PutFile(row) => self.batch.files.put(row.id.clone(), row),
            Mutation::PutLocalState(row) => self.batch.local.put(row.file_id.clone(), row),
            Mutation::RemoveLocalState(id) => self.batch.local.remove(id),
            Mutation::ClearLocalState => self.batch.local.clear(),
            Mutation::PutCursor { id, value } => self.batch.cursors.put(id, value),
            Mutation::Nothing => {}
        }
        Ok(())
    }

    fn log_after(&mut self, seq: EventSeq) -> Result<Vec<StoredEvent>> {
        Ok(self
            .batch
            .log
            .range(
                &self.base.log,
                (Bound::Excluded(seq.global), Bound::Unbounded),
            )
            .into_values()
            .cloned()
            .collect())
    }

    fn truncate_after(&mut self, seq: EventSeq) -> Result<()> {
        let keys: Vec<u64> = self
            .batch
            .log
            .range(
                &self.base.log,
                (Bound::Excluded(seq.global), Bound::Unbounded),
            )
            .into_keys()
            .copied()
            .collect();
        for key in keys {
            self.batch.log.remove(key);
        }
        Ok(())
    }

    fn finalize_up_to(&mut self, global: u64) -> Result<()> {
        let finalized: Vec<StoredEvent> = self
            .batch
            .log
            .range(&self.base.log, ..=global)
            .into_values()
            .filter(|e| e.seq.rebase != 0)
            .map(|e| StoredEvent {
                seq: EventSeq::global(e.seq.global),
                event: e.event.clone(),
            })
            .collect();
        for e in finalized {
            self.batch.log.put(e.seq.global, e);
        }
        Ok(())
    }

    fn clear_files(&mut self) -> Result<()> {
        self.batch.files.clear();
        Ok(())
    }

    fn confirmed(&mut self) -> Result<EventSeq> {
        Ok(self.batch.confirmed.unwrap_or(self.base.confirmed))
    }

    fn set_confirmed(&mut self, seq: EventSeq) -> Result<()> {
        self.batch.confirmed = Some(seq);
        Ok(())
    }

    fn cursor(&mut self) -> Result<FileSyncCursor> {
        Ok(self
            .batch
            .cursors
            .get(&self.base.cursors, &CURSOR_DOCUMENT_ID.to_owned())
            .cloned()
            .unwrap_or_default())
    }
}
