//! Online and offline (NET-1..5): the health loop's tick, going offline and coming back.

use std::sync::atomic::Ordering;

use crate::events::SyncEvent;

use super::Engine;

impl Engine {
    /// NET-4: after a failed attempt, probe health; go offline only if the probe fails.
    pub(super) async fn connectivity_check(&self) {
        if let Some(remote) = &self.remote
            && !remote.health().await
        {
            self.go_offline().await;
        }
    }

    /// NET-3: go offline (only if online): pause and reset `inProgress` rows to `queued`.
    pub(crate) async fn go_offline(&self) {
        if self.remote.is_none() || !self.online.swap(false, Ordering::AcqRel) {
            return;
        }
        self.emit(SyncEvent::Offline);
        if let Some(exec) = self.executor() {
            exec.pause();
        }
        let _guard = self.lock_state().await;
        let Ok(rows) = self.store.local_states().await else {
            return;
        };
        self.requeue_in_progress(
            rows.into_iter().map(|r| (r, None)),
            "reset in-progress rows",
        )
        .await;
    }

    /// NET-1: offline → healthy: online, resume, re-enqueue every queued row.
    pub(crate) async fn come_online(&self) {
        if self.online.swap(true, Ordering::AcqRel) {
            return;
        }
        self.emit(SyncEvent::Online);
        if let Some(exec) = self.executor() {
            exec.resume();
        }
        if let Err(e) = self.reenqueue_queued().await {
            tracing::warn!(error = %e, "could not re-enqueue queued rows");
        }
    }

    pub(super) async fn health_tick(&self) {
        let Some(remote) = &self.remote else { return };
        if remote.health().await {
            self.come_online().await;
            self.drain_remote_deletes().await;
        } else {
            self.go_offline().await;
        }
    }
}
