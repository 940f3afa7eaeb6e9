//! [`MemoryEventLog`]: the in-memory reference [`EventLog`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::EventLog;
use crate::Result;
use crate::contract::{AppendDecision, PushOutcome, RelayEvent, collect_page, decide_append};
use crate::types::StoreId;

/// One store's events (`events[i]` has `seqNum` `i + 1`) and the sender `wait` listens to.
#[derive(Debug)]
struct Log {
    events: Vec<RelayEvent>,
    head: watch::Sender<u64>,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            head: watch::channel(0).0,
        }
    }
}

/// An in-memory [`EventLog`]: the reference implementation, the simplest that passes the
/// `event_log_conformance!` suite. Nothing survives the process. Cloning shares the events,
/// so several routers (or a router and a test) can serve one log.
#[derive(Debug, Clone, Default)]
pub struct MemoryEventLog {
    stores: Arc<Mutex<HashMap<StoreId, Log>>>,
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StoreId, Log>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome> {
        let mut stores = self.lock();
        let log = stores.entry(store.clone()).or_default();
        let head = log.events.len() as u64;
        let decision = decide_append(head, &batch, |seq| {
            Ok(usize::try_from(seq)
                .ok()
                .and_then(|s| s.checked_sub(1))
                .and_then(|i| log.events.get(i))
                .cloned())
        })?;
        if let AppendDecision::Done(outcome) = decision {
            return Ok(outcome);
        }
        log.events.extend(batch);
        let head = log.events.len() as u64;
        log.head.send_replace(head);
        Ok(PushOutcome::Accepted { head })
    }

    async fn read(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        let stores = self.lock();
        let Some(log) = stores.get(store) else {
            return Ok(Vec::new());
        };
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        collect_page(log.events.iter().skip(start).cloned().map(Ok), limit)
    }

    async fn head(&self, store: &StoreId) -> Result<u64> {
        Ok(self
            .lock()
            .get(store)
            .map_or(0, |log| log.events.len() as u64))
    }

    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        // Subscribe under the lock that appends take, so no append is missed.
        let mut rx = self
            .lock()
            .entry(store.clone())
            .or_default()
            .head
            .subscribe();
        let _ = crate::rt::timeout(max, rx.wait_for(|head| *head > after)).await;
        Ok(())
    }
}
