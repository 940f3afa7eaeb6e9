//! The store-implementer interface: what a new [`Store`] implementation builds on, so every
//! store numbers, materializes, rebases and confirms events the same way.
//!
//! The algorithms live here once: [`commit_batch`] ([`Store::commit`]), [`rebase_batch`]
//! ([`Store::apply_remote`]) and [`confirm_batch`] ([`Store::confirm`]). A store implements
//! [`Tables`] (a dozen primitive reads and writes: the log, the `files` and `localFileState`
//! tables through [`Mutation`]s, the confirmed position, the cursor document) over *one of its
//! own transactions*, and calls those functions with it. Examples in this workspace: the
//! in-memory tables behind [`MemoryStore`](super::MemoryStore) (`store.rs`), `Tx` over a rusqlite
//! transaction behind `SqliteStore` (`store/sqlite.rs`), and the IndexedDB store in
//! `filesync-opfs` (`idb_store/`).
//!
//! The contract for a store:
//! - Open a transaction, run the function in it, and commit the transaction only if the
//!   function returned `Ok`; on `Err`, discard every write it made (roll back, or work on a
//!   copy and drop it). The functions leave half-written tables behind on errors.
//! - `commit_batch` takes the store's in-memory `(last global, last client)` counter for
//!   client-only events (start at `(0, 0)`, never persisted): pass a copy, and keep the updated
//!   copy only once the transaction committed.
//! - After a commit that appended synced events, after `confirm_batch` and after
//!   `rebase_batch`, publish the new head to [`Store::watch`] receivers.
//! - [`Tables`] methods see the transaction's own earlier writes (`append` then `log_after`
//!   returns the appended event; `apply` then `file` returns the new row).
//! - The conformance suite `testing::store` (feature `testing`, `store_conformance!`) checks
//!   the result.
//!
//! A store's `commit`, reduced to its shape (the transaction is any [`Tables`]):
//!
//! ```
//! use filesync_core::Result;
//! use filesync_core::schema::{Event, EventSeq};
//! use filesync_core::store::backend::{Tables, commit_batch};
//!
//! fn commit<T: Tables>(
//!     begin: impl FnOnce() -> Result<T>,
//!     finish: impl FnOnce(T) -> Result<()>,
//!     client_seq: &mut (u64, u64),
//!     events: &[Event],
//! ) -> Result<Vec<EventSeq>> {
//!     let mut tx = begin()?;
//!     let mut next = *client_seq;
//!     // On error `tx` is dropped without `finish`: the transaction rolls back.
//!     let seqs = commit_batch(&mut tx, &mut next, events)?;
//!     finish(tx)?;
//!     *client_seq = next; // only once the transaction committed
//!     Ok(seqs)
//! }
//! ```

#[cfg(doc)]
use super::Store;
use super::StoredEvent;
use crate::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, Mutation, materialize,
};
use crate::types::FileId;
use crate::{Error, Result};

/// The table operations [`commit_batch`], [`rebase_batch`] and [`confirm_batch`] need:
/// implemented by each store's transaction. A [`Store`] in another crate (the browser's
/// IndexedDB store, say) implements this over its own transaction and calls those three
/// functions, so every store numbers, materializes and rebases events the same way.
pub trait Tables {
    /// The `files` row of `id`.
    fn file(&mut self, id: &FileId) -> Result<Option<FileRecord>>;
    /// The last logged event's position (`e0` when the log is empty).
    fn head(&mut self) -> Result<EventSeq>;
    /// Log a synced event at `seq`.
    fn append(&mut self, seq: EventSeq, event: &Event) -> Result<()>;
    /// Apply a materializer's mutation to the tables.
    fn apply(&mut self, mutation: Mutation) -> Result<()>;
    /// Logged events after `seq` (by global position), in order.
    fn log_after(&mut self, seq: EventSeq) -> Result<Vec<StoredEvent>>;
    /// Remove logged events after `seq` (by global position).
    fn truncate_after(&mut self, seq: EventSeq) -> Result<()>;
    /// Drop the rebase generation of logged events up to `global`.
    fn finalize_up_to(&mut self, global: u64) -> Result<()>;
    /// Empty the `files` table.
    fn clear_files(&mut self) -> Result<()>;
    /// The confirmed position.
    fn confirmed(&mut self) -> Result<EventSeq>;
    /// Set the confirmed position.
    fn set_confirmed(&mut self, seq: EventSeq) -> Result<()>;
    /// The cursor document (the default when none is stored).
    fn cursor(&mut self) -> Result<FileSyncCursor>;
}

fn apply_event<T: Tables>(tables: &mut T, event: &Event) -> Result<()> {
    let current = match event.file_id() {
        Some(id) => tables.file(id)?,
        None => None,
    };
    tables.apply(materialize(event, current.as_ref()))
}

/// The one implementation of [`Store::apply_remote`], shared by every store. Run it inside
/// one transaction and discard everything if it fails.
pub fn rebase_batch<T: Tables>(tables: &mut T, remote: &[Event]) -> Result<bool> {
    if let Some(e) = remote.iter().find(|e| !e.is_synced()) {
        return Err(Error::invalid(
            "remote event",
            format!("{} is client-only and never comes from the relay", e.name()),
        ));
    }
    let confirmed = tables.confirmed()?;
    let pending = tables.log_after(confirmed)?;
    tables.truncate_after(confirmed)?;
    let mut seq = confirmed.global;
    for e in remote {
        seq += 1;
        tables.append(EventSeq::global(seq), e)?;
    }
    tables.set_confirmed(EventSeq::global(seq))?;
    if pending.is_empty() {
        for e in remote {
            apply_event(tables, e)?;
        }
        return Ok(false);
    }
    // Still pending, now after the remote events: a new global number and the next rebase
    // generation (`e{global}r{generation}`, SCH-3), until the relay acknowledges them.
    for p in &pending {
        seq += 1;
        let renumbered = EventSeq {
            global: seq,
            client: 0,
            rebase: p.seq.rebase + 1,
        };
        tables.append(renumbered, &p.event)?;
    }
    // The order changed: rebuild `files` from the whole log (a pure function of it).
    tables.clear_files()?;
    for e in tables.log_after(EventSeq::ROOT)? {
        apply_event(tables, &e.event)?;
    }
    let mut cursor = tables.cursor()?;
    if cursor.last_event_sequence.global > confirmed.global {
        cursor.last_event_sequence = confirmed;
        tables.apply(Mutation::PutCursor {
            id: CURSOR_DOCUMENT_ID.to_owned(),
            value: cursor,
        })?;
    }
    Ok(true)
}

/// The one implementation of [`Store::confirm`], shared by every store (inside one
/// transaction): move the confirmed position and make the acknowledged numbers final (no rebase generation), in the log and
/// in the cursor.
pub fn confirm_batch<T: Tables>(tables: &mut T, seq: EventSeq) -> Result<()> {
    let (confirmed, head) = (tables.confirmed()?, tables.head()?);
    check_confirm(seq, confirmed, head)?;
    tables.set_confirmed(EventSeq::global(seq.global))?;
    tables.finalize_up_to(seq.global)?;
    let cursor = tables.cursor()?;
    if let Some(value) = finalized_cursor(&cursor, seq.global) {
        tables.apply(Mutation::PutCursor {
            id: CURSOR_DOCUMENT_ID.to_owned(),
            value,
        })?;
    }
    Ok(())
}

/// `cursor` without its rebase generation, if it points at or before `confirmed`.
fn finalized_cursor(cursor: &FileSyncCursor, confirmed: u64) -> Option<FileSyncCursor> {
    let seq = cursor.last_event_sequence;
    (seq.rebase != 0 && seq.global <= confirmed).then(|| {
        let mut c = cursor.clone();
        c.last_event_sequence.rebase = 0;
        c
    })
}

/// The one implementation of [`Store::commit`], shared by every store: assign sequence
/// numbers, check invariants, log synced events and apply the materializers. The caller wraps
/// it in its own transaction and discards everything if it fails. `client_seq` is the store's
/// in-memory `(last global, last client)` counter for client-only events (start at `(0, 0)`).
pub fn commit_batch<T: Tables>(
    tables: &mut T,
    client_seq: &mut (u64, u64),
    events: &[Event],
) -> Result<Vec<EventSeq>> {
    let mut head = tables.head()?;
    let mut assigned = Vec::with_capacity(events.len());
    let (mut last_global, mut client) = *client_seq;
    if last_global != head.global {
        last_global = head.global;
        client = 0;
    }
    for event in events {
        let seq = if event.is_synced() {
            head = EventSeq::global(head.global + 1);
            tables.append(head, event)?;
            last_global = head.global;
            client = 0;
            head
        } else {
            client += 1;
            EventSeq {
                global: last_global,
                client,
                rebase: 0,
            }
        };
        if let Event::FileSyncCursorSet(set) = event {
            if set.value.last_event_sequence.global > head.global {
                return Err(Error::Conflict {
                    reason: format!(
                        "cursor {} is beyond the log head {}",
                        set.value.last_event_sequence, head
                    ),
                });
            }
            if set.id != CURSOR_DOCUMENT_ID {
                return Err(Error::invalid(
                    "fileSyncCursorSet",
                    format!("document id must be \"global\", not {:?}", set.id),
                ));
            }
        }
        match event {
            // An engine that read an event before it was acknowledged may record the old
            // (rebase-generation) number; the number is final now.
            Event::FileSyncCursorSet(set)
                if set.value.last_event_sequence.rebase != 0
                    && let Some(value) =
                        finalized_cursor(&set.value, tables.confirmed()?.global) =>
            {
                let mut set = set.clone();
                set.value = value;
                apply_event(tables, &Event::FileSyncCursorSet(set))?;
            }
            _ => apply_event(tables, event)?,
        }
        assigned.push(seq);
    }
    *client_seq = (last_global, client);
    Ok(assigned)
}

/// `confirm` may only move forward, and never past the head.
fn check_confirm(seq: EventSeq, confirmed: EventSeq, head: EventSeq) -> Result<()> {
    if seq.global > head.global {
        return Err(Error::Conflict {
            reason: format!("cannot confirm {seq}: the head is {head}"),
        });
    }
    if seq.global < confirmed.global {
        return Err(Error::Conflict {
            reason: format!("cannot confirm {seq}: already confirmed up to {confirmed}"),
        });
    }
    Ok(())
}
