//! The event exchange with other devices through the relay: push pending events, pull and
//! apply remote ones, rebase on conflicts.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::events::SyncEvent;
use crate::rt;
use crate::schema::{Event, EventSeq};
use crate::types::FileId;
use crate::{Error, Result};

use super::Engine;

/// The longest exchange retry delay, before jitter, in units of the retry base delay (2⁵).
const EXCHANGE_MAX_FACTOR: u32 = 32;

impl Engine {
    /// Push local events and pull remote ones through the relay, rebasing on conflicts. Never
    /// loses or duplicates an event across a crash: a push whose answer was lost is
    /// recognised when its own events come back in a pull.
    pub(super) async fn exchange_loop(
        weak: Weak<Engine>,
        relay: Arc<dyn crate::sync::EventExchange>,
    ) {
        let session = FileId::random().to_string();
        let mut failures = 0u32;
        loop {
            let Some(engine) = weak.upgrade() else { return };
            let step = engine.exchange_step(&*relay, &session).await;
            let wait = match step {
                Ok(true) => {
                    failures = 0;
                    continue;
                }
                Ok(false) => {
                    failures = 0;
                    None
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, failures, "event exchange failed");
                    // Retried with backoff either way (a token may be fixed on the server),
                    // but say whether retrying the same request can help.
                    engine.emit(SyncEvent::SyncError {
                        error: e.report(),
                        context: Some(
                            if e.is_retryable() {
                                "relay"
                            } else {
                                "relay:refused"
                            }
                            .into(),
                        ),
                    });
                    let retry = engine.options.retry;
                    let mut backoff = retry
                        .backoff()
                        .with_cap(retry.base_delay.saturating_mul(EXCHANGE_MAX_FACTOR))
                        .seeded(engine.options.jitter_seed, u64::from(failures));
                    Some(backoff.jittered(failures - 1))
                }
            };
            let store = Arc::clone(&engine.store);
            let store_id = engine.store_id.clone();
            drop(engine);
            match wait {
                Some(delay) => rt::sleep(delay).await,
                None => {
                    let confirmed = store.confirmed().await.map(|c| c.global).unwrap_or(0);
                    let mut local = store.watch();
                    local.borrow_and_update();
                    let pending = store.head().await.map(|h| h.global).unwrap_or(0) > confirmed;
                    if pending {
                        continue;
                    }
                    let remote = relay.wait(&store_id, confirmed, Duration::from_secs(25));
                    let remote = std::pin::pin!(remote);
                    let local = std::pin::pin!(local.changed());
                    let _ = futures::future::select(remote, local).await;
                }
            }
        }
    }

    /// One round: pull (and apply) remote events, else push pending ones. Returns whether it
    /// made progress.
    async fn exchange_step(
        self: &Arc<Self>,
        relay: &dyn crate::sync::EventExchange,
        session: &str,
    ) -> Result<bool> {
        use crate::sync::{PushOutcome, RelayEvent};
        let client = self.store.client_id().await?;
        let confirmed = self.store.confirmed().await?;
        let pulled = relay.pull(&self.store_id, confirmed.global, 500).await?;
        if !pulled.is_empty() {
            for (i, e) in pulled.iter().enumerate() {
                if e.seq_num != confirmed.global + 1 + i as u64 {
                    return Err(Error::Conflict {
                        reason: format!("relay sent {} after {}", e.seq_num, confirmed),
                    });
                }
            }
            // Our own events coming back (a push whose answer was lost) only confirm them.
            let pending = self.store.events_after(confirmed, pulled.len()).await?;
            let own = pulled
                .iter()
                .zip(&pending)
                .take_while(|(r, p)| r.client_id == client && r.event == p.event)
                .count();
            if own > 0 {
                self.store
                    .confirm(EventSeq::global(confirmed.global + own as u64))
                    .await?;
                self.verify_uploaded(uploaded(pulled[..own].iter().map(|e| &e.event)));
            }
            let foreign: Vec<Event> = pulled.into_iter().skip(own).map(|e| e.event).collect();
            if !foreign.is_empty() {
                let gate = self.batch_gate.lock().await;
                let rebased = self.store.apply_remote(foreign).await?;
                if rebased {
                    self.rebase_epoch.fetch_add(1, Ordering::AcqRel);
                }
                drop(gate);
                if rebased {
                    // Pending events were renumbered: follow the log again from the rewound cursor.
                    self.start_stream();
                }
            }
            return Ok(true);
        }
        let pending = self.store.events_after(confirmed, 500).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let last = pending.last().map_or(confirmed, |e| e.seq);
        let uploads = uploaded(pending.iter().map(|e| &e.event));
        let batch: Vec<RelayEvent> = pending
            .into_iter()
            .map(|e| RelayEvent {
                seq_num: e.seq.global,
                parent_seq_num: e.seq.global - 1,
                event: e.event,
                client_id: client.clone(),
                session_id: session.to_owned(),
            })
            .collect();
        match relay.push(&self.store_id, batch).await? {
            PushOutcome::Accepted { .. } => {
                self.store.confirm(last).await?;
                self.verify_uploaded(uploads);
            }
            PushOutcome::ServerAhead { .. } => {} // the next round pulls and rebases
        }
        Ok(true)
    }
}

/// The files whose upload these events record (a `FileUpdated` that sets the remote key).
fn uploaded<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<FileId> {
    events
        .filter_map(|e| match e {
            Event::FileUpdated(u) if u.remote_key.is_some() => Some(u.id.clone()),
            _ => None,
        })
        .collect()
}
