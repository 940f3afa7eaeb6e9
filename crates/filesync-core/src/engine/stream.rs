//! The sync loop (ENG-16), the event stream with its recovery (ENG-10, NET-6) and the
//! heartbeat (NET-7).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;

use crate::Result;
use crate::events::{HeartbeatReason, RecoveryFrom, SyncEvent};
use crate::rt::{self, Instant, Task};
use crate::store::subscribe;

use super::backoff::Backoff;
use super::{Engine, lock};

/// Each stream-recovery delay is multiplied by a random factor in `1 ± STREAM_JITTER`.
const STREAM_JITTER: f64 = 0.2;

impl Engine {
    /// Become the leader and start syncing ([`run_sync_loop`](Self::run_sync_loop)); a
    /// failure is reported as a `sync:error` in the `start` context and returned.
    pub(crate) async fn start_leading(self: &Arc<Self>) -> Result<()> {
        self.set_leader(true);
        let started = self.run_sync_loop().await;
        if let Err(e) = &started {
            self.emit(SyncEvent::SyncError {
                error: e.report(),
                context: Some("start".into()),
            });
        }
        started
    }

    /// ENG-16: start syncing as the leader.
    pub(crate) async fn run_sync_loop(self: &Arc<Self>) -> Result<()> {
        self.recover().await?;
        if let Some(exec) = self.executor() {
            if self.is_online() {
                exec.resume();
            } else {
                exec.pause();
            }
        }
        if self.needs_bootstrap().await?
            && let Err(e) = self.bootstrap().await
        {
            self.emit(SyncEvent::SyncError {
                error: e.report(),
                context: Some("bootstrap".into()),
            });
        }
        self.start_stream();
        if self.remote.is_some() {
            self.every(self.options.health_check_interval, |e| async move {
                e.health_tick().await;
            });
        }
        {
            let weak = Arc::downgrade(self);
            self.spawn_leader_task(async move {
                let Some(engine) = weak.upgrade() else { return };
                if let Err(e) = engine.collect_garbage().await {
                    tracing::warn!(error = %e, "garbage collection at start failed");
                }
            });
        }
        if let Some(relay) = self.relay.clone() {
            let weak = Arc::downgrade(self);
            self.spawn_leader_task(async move {
                Engine::exchange_loop(weak, relay).await;
            });
        }
        if !self.options.heartbeat_interval.is_zero() {
            self.every(self.options.heartbeat_interval, |e| async move {
                e.heartbeat_tick().await;
            });
        }
        Ok(())
    }

    /// Start (or restart) the event stream from the stored cursor (ENG-10).
    pub(crate) fn start_stream(self: &Arc<Self>) {
        // Only the leader follows the log (ENG-19): a follower's state is the leader's to write.
        if self.stopped.load(Ordering::Acquire) || !self.is_leader() {
            return;
        }
        if lock(&self.stream)
            .task
            .as_ref()
            .is_some_and(|t| !t.is_finished())
        {
            self.stream_restart.notify_one();
            return;
        }
        let weak = Arc::downgrade(self);
        let task = rt::spawn(async move {
            if let Some(engine) = weak.upgrade() {
                engine.stream_loop().await;
            }
        });
        let old = lock(&self.stream).task.replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    fn stream_delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.options.stream_recovery_base_delay, STREAM_JITTER)
            .with_cap(self.options.stream_recovery_max_delay)
            .seeded(self.options.jitter_seed, u64::from(attempt))
            .jittered(attempt.saturating_sub(1))
    }

    /// NET-6: follow the stream; on errors retry with backoff, then give up to the heartbeat.
    async fn stream_loop(self: Arc<Self>) {
        let mut window_start: Option<Instant> = None;
        loop {
            let cursor = match self.store.cursor().await {
                Ok(c) => c.last_event_sequence,
                Err(e) => {
                    self.emit(SyncEvent::SyncError {
                        error: e.report(),
                        context: Some("stream-start".into()),
                    });
                    return;
                }
            };
            let epoch = self.rebase_epoch.load(Ordering::Acquire);
            let mut stream = subscribe(Arc::clone(&self.store), cursor);
            let error = loop {
                let next = {
                    let restart = std::pin::pin!(self.stream_restart.notified());
                    match futures::future::select(stream.next(), restart).await {
                        futures::future::Either::Left((next, _)) => Some(next),
                        futures::future::Either::Right(((), _)) => None,
                    }
                };
                let Some(next) = next else {
                    // Restart requested (rebase, trigger_sync, stall): follow from the cursor.
                    break None;
                };
                match next {
                    None => return,
                    Some(Ok(batch)) => {
                        if self.stream_attempts.swap(0, Ordering::AcqRel) > 0 {
                            window_start = None;
                            self.emit(SyncEvent::Recovery {
                                from: RecoveryFrom::StreamError,
                            });
                        }
                        let gate = self.batch_gate.lock().await;
                        if self.rebase_epoch.load(Ordering::Acquire) != epoch {
                            // The log was rebased after this batch was read: its numbers are
                            // stale. Follow the log again from the (rewound) cursor.
                            drop(gate);
                            break None;
                        }
                        let handled = self.handle_batch(batch).await;
                        drop(gate);
                        if let Err(e) = handled {
                            self.emit(SyncEvent::SyncError {
                                error: e.report(),
                                context: Some("event-batch".into()),
                            });
                            break Some(e);
                        }
                    }
                    Some(Err(e)) => break Some(e),
                }
            };
            let Some(error) = error else {
                continue;
            };
            let attempt = self.stream_attempts.fetch_add(1, Ordering::AcqRel) + 1;
            self.emit(SyncEvent::StreamError {
                error: error.report(),
                attempt,
            });
            let started = *window_start.get_or_insert_with(Instant::now);
            let delay = self.stream_delay(attempt);
            if attempt >= self.options.max_stream_recovery_attempts
                || Instant::now().duration_since(started) + delay
                    > self.options.stream_recovery_window
            {
                self.emit(SyncEvent::StreamExhausted {
                    error: error.report(),
                    attempts: attempt,
                });
                // The heartbeat sees the finished task and restarts the stream.
                return;
            }
            rt::sleep(delay).await;
        }
    }

    /// NET-7 (leader only): restart a dead or stalled stream, unstick a stuck queue. Stall
    /// detection compares with the head of *file* events only (WEAK-10).
    async fn heartbeat_tick(self: &Arc<Self>) {
        if self.is_online()
            && let Err(e) = self.adopt_queued().await
        {
            tracing::debug!(error = %e, "adopting queued rows failed");
        }
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let dead = lock(&self.stream)
            .task
            .as_ref()
            .is_none_or(Task::is_finished);
        if dead {
            self.emit(SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamDead,
            });
            self.stream_attempts.store(0, Ordering::Release);
            self.start_stream();
            return;
        }
        if let Some(exec) = self.executor() {
            let s = exec.stats();
            let stuck = self.is_online()
                && !s.paused
                && s.queued_uploads + s.queued_downloads > 0
                && s.inflight_uploads + s.inflight_downloads == 0;
            let fire = {
                let mut st = lock(&self.stream);
                st.stuck_ticks = if stuck { st.stuck_ticks + 1 } else { 0 };
                if st.stuck_ticks >= 2 {
                    st.stuck_ticks = 0;
                    true
                } else {
                    false
                }
            };
            if fire {
                self.emit(SyncEvent::HeartbeatRecovery {
                    reason: HeartbeatReason::StuckQueue,
                });
                exec.resume();
            }
        }
        let threshold = self.options.stream_stall_threshold;
        let last = lock(&self.stream).last_batch;
        if !threshold.is_zero()
            && self.is_online()
            && let Some((at, cursor)) = last
            && Instant::now().duration_since(at) >= threshold
            && let Ok(head) = self.store.head().await
            && head.global != cursor.global
        {
            self.emit(SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamStalled,
            });
            self.start_stream();
        }
    }
}
