//! Writes, and keeping memory current with the other connections' writes: the write counter
//! compare-and-write, reloads on a change notification, and the periodic check before log reads.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use filesync_core::rt::Instant;
use filesync_core::{Error, Result};
use wasm_bindgen::JsValue;

use super::batch::{Batch, Pending};
use super::data::load;
use super::schema::{ALL_STORES, META, WRITES, not_a_store, parse_writes};
use super::{IdbStore, Inner};
use crate::idb::{self, Op};

/// How many times one write recomputes its batch after other connections wrote first before
/// it gives up (with a retryable error). Each retry means another write landed.
const MAX_WRITE_ATTEMPTS: u32 = 50;
/// Reads that follow the log
/// ([`Store::events_after`](filesync_core::store::Store::events_after),
/// [`Store::head`](filesync_core::store::Store::head)) check the write counter at most this
/// often, in case a change notification was missed.
pub(super) const READ_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The error of a write on a closed connection.
fn closed_error(op: &'static str) -> Error {
    idb::store_error(
        op,
        &idb::dom_error("InvalidStateError", "the database connection is closed"),
    )
}

impl Inner {
    /// The database's write counter, read in its own transaction.
    pub(super) async fn read_writes(&self, op: &'static str) -> Result<u64> {
        let value = idb::get(&self.db, META, &JsValue::from_str(WRITES))
            .await
            .map_err(|e| idb::store_error(op, &e))?;
        parse_writes(&value).ok_or_else(|| not_a_store(&self.name, "unreadable write counter"))
    }

    /// Replace memory with what the database holds now and tell watchers. Call with the write
    /// lock held.
    pub(super) async fn reload(&self) -> Result<()> {
        let mut fresh = load(&self.db, &self.name).await?;
        let head = {
            let mut data = self.data.borrow_mut();
            fresh.client_seq = data.client_seq;
            tracing::debug!(
                database = %self.name,
                from = data.writes,
                to = fresh.writes,
                "IndexedDB store changed by another connection: reloaded"
            );
            *data = fresh;
            data.head()
        };
        self.checked_at.set(Some(Instant::now()));
        self.head.send_replace(head);
        Ok(())
    }

    /// Reload if another connection wrote since memory was loaded. `wait`: wait for a running
    /// write of this store; otherwise skip the check then (that write brings memory up to date).
    pub(super) async fn refresh(&self, wait: bool) -> Result<()> {
        let _guard = if wait {
            self.write_lock.lock().await
        } else {
            match self.write_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        };
        if self.closed.get() {
            return Ok(());
        }
        let current = self.read_writes("refresh").await?;
        if current == self.data.borrow().writes {
            self.checked_at.set(Some(Instant::now()));
            return Ok(());
        }
        self.reload().await
    }

    /// Another connection says it wrote: reload (in a task) unless memory is that new already.
    pub(super) fn notified(self: Rc<Self>, writes: Option<f64>) {
        if self.closed.get() {
            return;
        }
        if let Some(writes) = writes
            && let Ok(data) = self.data.try_borrow()
            && writes <= data.writes as f64
        {
            return;
        }
        if self.refresh_queued.replace(true) {
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            self.refresh_queued.set(false);
            if let Err(e) = self.refresh(true).await {
                tracing::warn!(database = %self.name, error = %e, "reloading the IndexedDB store failed");
            }
        });
    }

    /// Before a read that follows the log: check the write counter if it was not checked for
    /// [`READ_CHECK_INTERVAL`] (a fallback for missed notifications). Errors are logged only:
    /// the read is then answered from memory.
    pub(super) async fn check_if_due(&self) {
        if self.closed.get() {
            return;
        }
        if let Some(at) = self.checked_at.get()
            && at.elapsed() < READ_CHECK_INTERVAL
        {
            return;
        }
        self.checked_at.set(Some(Instant::now()));
        if let Err(e) = self.refresh(false).await {
            tracing::debug!(database = %self.name, error = %e, "checking the IndexedDB store failed");
        }
    }

    /// Make memory what the database holds after a write of `batch` that left the counter at
    /// `writes`, and tell watchers.
    pub(super) fn apply(&self, batch: Batch, writes: u64, notify: bool) {
        let notify = notify || !batch.log.is_empty();
        let head = {
            let mut data = self.data.borrow_mut();
            batch.apply_to(&mut data);
            data.writes = writes;
            data.head()
        };
        self.checked_at.set(Some(Instant::now()));
        if notify {
            self.head.send_replace(head);
        }
    }

    /// One write, with the write lock held: compute the batch on memory, then store it only
    /// if the database's write counter still equals memory's (bumping it in the same
    /// transaction). If another connection wrote first, reload and compute again.
    pub(super) async fn write_locked<T>(
        &self,
        op: &'static str,
        notify: bool,
        mut f: impl FnMut(&mut Pending<'_>) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            if self.closed.get() {
                return Err(closed_error(op));
            }
            let (outcome, batch, writes) = {
                let data = self.data.borrow();
                let mut pending = Pending {
                    base: &data,
                    batch: Batch::default(),
                };
                let outcome = f(&mut pending);
                (outcome, pending.batch, data.writes)
            };
            let mut ops = match &outcome {
                Ok(_) => batch.ops()?,
                Err(_) => Vec::new(),
            };
            if ops.is_empty() {
                // Nothing to store, or the batch was refused: that answer holds only if memory
                // was current.
                if self.read_writes(op).await? == writes {
                    if outcome.is_ok() {
                        self.apply(batch, writes, notify);
                    }
                    return outcome;
                }
            } else {
                ops.push(Op::Put {
                    store: META,
                    key: JsValue::from_str(WRITES),
                    value: (writes + 1).to_string(),
                });
                let committed = idb::write_if(
                    &self.db,
                    &ALL_STORES,
                    META,
                    &JsValue::from_str(WRITES),
                    move |stored| parse_writes(stored) == Some(writes),
                    ops,
                )
                .await
                .map_err(|e| idb::store_error(op, &e))?;
                if committed {
                    self.apply(batch, writes + 1, notify);
                    if let Some(channel) = &self.channel
                        && let Err(e) =
                            channel.post_message(&JsValue::from_f64((writes + 1) as f64))
                    {
                        tracing::debug!(error = ?e, "posting the IndexedDB change notification failed");
                    }
                    return outcome;
                }
            }
            tracing::debug!(database = %self.name, op, "another connection wrote first: reloading");
            self.reload().await?;
        }
        Err(Error::Store {
            op,
            retryable: true,
            source: Box::new(std::io::Error::other(format!(
                "other connections kept writing the database; gave up after \
                 {MAX_WRITE_ATTEMPTS} attempts"
            ))),
        })
    }
}

impl IdbStore {
    /// Run one write: `f` records its changes on the committed data; they are persisted in one
    /// transaction (if no other connection wrote first: then memory is reloaded and `f` runs
    /// again) and then applied to memory. `notify` sends the head to watchers even when the
    /// log did not change. The write runs in its own task, so dropping the returned future
    /// does not leave memory and the database apart.
    pub(super) async fn write<T: 'static>(
        &self,
        op: &'static str,
        notify: bool,
        f: impl FnMut(&mut Pending<'_>) -> Result<T> + 'static,
    ) -> Result<T> {
        let guard = Arc::clone(&self.inner.write_lock).lock_owned().await;
        let inner = Rc::clone(&self.inner);
        let (tx, rx) = futures::channel::oneshot::channel();
        wasm_bindgen_futures::spawn_local(async move {
            let result = inner.write_locked(op, notify, f).await;
            drop(guard);
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| Error::Shutdown)?
    }
}
