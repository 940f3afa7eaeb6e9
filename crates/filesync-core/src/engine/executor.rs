//! The transfer executor (EXE): an upload queue and two download queues (high, normal), bounded
//! concurrency per kind, de-duplication, retries with exponential backoff and jitter.
//!
//! Unlike the original it wakes on work instead of polling every 100 ms, and keeps one entry per
//! `(kind, id)`: an id re-enqueued while its transfer runs is run again afterwards, never dropped
//! (WEAK-9). Every attempt has a timeout (WEAK-14); `shutdown` aborts everything.

// Ordered maps: the order transfers are stopped in is the same in every run (simulations
// replay exactly).
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use crate::events::TransferKind;
use crate::rt::{self, Instant, MaybeSend, MaybeSync, Task};
use crate::types::FileId;
use crate::{Error, Result};

use super::backoff::Backoff;
use super::options::RetryPolicy;

/// Executor limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecutorConfig {
    /// Uploads running at once (CFG-2: 2).
    pub max_concurrent_uploads: usize,
    /// Downloads running at once (CFG-2: 2).
    pub max_concurrent_downloads: usize,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Longest a single attempt may take before it is abandoned and retried.
    pub transfer_timeout: Duration,
    /// Seed for the retry jitter ([`super::Options::jitter_seed`]); `None`: the OS generator.
    pub jitter_seed: Option<u64>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_concurrent_uploads: 2,
            max_concurrent_downloads: 2,
            retry: RetryPolicy::default(),
            transfer_timeout: Duration::from_secs(300),
            jitter_seed: None,
        }
    }
}

/// What the executor runs. Implemented by the engine.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait TransferHandler: MaybeSend + MaybeSync + 'static {
    /// One attempt of a transfer.
    async fn run(&self, kind: TransferKind, id: FileId) -> Result<()>;
    /// Retries are used up (EXE-3); the last error.
    fn exhausted(&self, kind: TransferKind, id: FileId, error: Error);
}

/// Download priority (EXE-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Background work.
    Normal,
    /// Someone is waiting to see the file.
    High,
}

struct Running {
    task: Option<Task>,
    rerun: Option<Priority>,
    generation: u64,
}

#[derive(Default)]
struct State {
    paused: bool,
    stopped: bool,
    uploads: VecDeque<FileId>,
    high: VecDeque<FileId>,
    normal: VecDeque<FileId>,
    queued_up: BTreeSet<FileId>,
    queued_down: BTreeMap<FileId, Priority>,
    running: BTreeMap<(TransferKind, FileId), Running>,
    next_generation: u64,
}

impl State {
    fn running_count(&self, kind: TransferKind) -> usize {
        self.running.keys().filter(|(k, _)| *k == kind).count()
    }

    fn is_idle(&self) -> bool {
        self.uploads.is_empty()
            && self.high.is_empty()
            && self.normal.is_empty()
            && self.running.is_empty()
    }

    fn push(&mut self, kind: TransferKind, id: FileId, priority: Priority) {
        match kind {
            TransferKind::Upload => {
                if self.queued_up.insert(id.clone()) {
                    self.uploads.push_back(id);
                }
            }
            TransferKind::Download => match self.queued_down.get(&id).copied() {
                None => {
                    self.queued_down.insert(id.clone(), priority);
                    match priority {
                        Priority::High => self.high.push_back(id),
                        Priority::Normal => self.normal.push_back(id),
                    }
                }
                Some(Priority::Normal) if priority == Priority::High => {
                    self.normal.retain(|x| *x != id);
                    self.queued_down.insert(id.clone(), Priority::High);
                    self.high.push_back(id);
                }
                Some(_) => {}
            },
        }
    }
}

/// A snapshot of the executor's counters (EXE-4, EXE-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecutorStats {
    /// Uploads waiting.
    pub queued_uploads: usize,
    /// Downloads waiting (both priorities).
    pub queued_downloads: usize,
    /// Uploads running.
    pub inflight_uploads: usize,
    /// Downloads running.
    pub inflight_downloads: usize,
    /// Whether new work is held back.
    pub paused: bool,
}

/// The executor. Create with [`Executor::start`].
pub struct Executor {
    state: Mutex<State>,
    wake: Arc<Notify>,
    idle: watch::Sender<bool>,
    handler: Arc<dyn TransferHandler>,
    config: ExecutorConfig,
    dispatcher: Mutex<Option<Task>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Executor {
    /// Start an executor (and its dispatcher task) that runs transfers through `handler`.
    pub fn start(handler: Arc<dyn TransferHandler>, config: ExecutorConfig) -> Arc<Self> {
        let exec = Arc::new(Self {
            state: Mutex::default(),
            wake: Arc::new(Notify::new()),
            idle: watch::channel(true).0,
            handler,
            config,
            dispatcher: Mutex::new(None),
        });
        let weak = Arc::downgrade(&exec);
        let wake = Arc::clone(&exec.wake);
        let task = rt::spawn(async move {
            loop {
                let notified = wake.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                let Some(exec) = weak.upgrade() else { return };
                exec.dispatch();
                drop(exec);
                notified.await;
            }
        });
        *exec.dispatcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        exec
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_idle(&self, state: &State) {
        let idle = state.is_idle();
        self.idle.send_if_modified(|v| {
            let changed = *v != idle;
            *v = idle;
            changed
        });
    }

    fn dispatch(self: &Arc<Self>) {
        let mut state = self.lock();
        if state.paused || state.stopped {
            self.publish_idle(&state);
            return;
        }
        while state.running_count(TransferKind::Upload) < self.config.max_concurrent_uploads {
            let Some(id) = state.uploads.pop_front() else {
                break;
            };
            state.queued_up.remove(&id);
            self.launch(&mut state, TransferKind::Upload, id);
        }
        while state.running_count(TransferKind::Download) < self.config.max_concurrent_downloads {
            let Some(id) = state.high.pop_front().or_else(|| state.normal.pop_front()) else {
                break;
            };
            state.queued_down.remove(&id);
            self.launch(&mut state, TransferKind::Download, id);
        }
        self.publish_idle(&state);
    }

    fn launch(self: &Arc<Self>, state: &mut State, kind: TransferKind, id: FileId) {
        let generation = state.next_generation;
        state.next_generation += 1;
        let exec = Arc::clone(self);
        let task_id = id.clone();
        let task = rt::spawn(async move {
            let result = exec.attempts(kind, task_id.clone()).await;
            exec.finish(kind, task_id, generation, result);
        });
        state.running.insert(
            (kind, id),
            Running {
                task: Some(task),
                rerun: None,
                generation,
            },
        );
    }

    async fn attempts(&self, kind: TransferKind, id: FileId) -> Result<()> {
        let policy = self.config.retry;
        let mut backoff = policy
            .backoff()
            .seeded(self.config.jitter_seed, Backoff::salt(id.as_str()));
        let mut first_failure: Option<Instant> = None;
        let mut retry = 0u32;
        loop {
            let attempt = rt::timeout(
                self.config.transfer_timeout,
                self.handler.run(kind, id.clone()),
            )
            .await
            .unwrap_or(Err(Error::Timeout { what: "transfer" }));
            let Err(error) = attempt else { return Ok(()) };
            if retry >= policy.max_retries {
                return Err(error);
            }
            let first = *first_failure.get_or_insert_with(Instant::now);
            let delay = backoff.jittered(retry);
            if Instant::now().duration_since(first) + delay > policy.max_elapsed {
                return Err(error);
            }
            tracing::debug!(%id, %kind, retry, ?delay, %error, "transfer failed; retrying");
            rt::sleep(delay).await;
            retry += 1;
        }
    }

    fn finish(&self, kind: TransferKind, id: FileId, generation: u64, result: Result<()>) {
        {
            let mut state = self.lock();
            let key = (kind, id.clone());
            let ours = state
                .running
                .get(&key)
                .is_some_and(|r| r.generation == generation);
            if !ours {
                return; // cancelled or interrupted meanwhile
            }
            let rerun = state.running.remove(&key).and_then(|r| r.rerun);
            if let Some(priority) = rerun
                && !state.stopped
            {
                state.push(kind, id.clone(), priority);
            }
            self.publish_idle(&state);
        }
        if let Err(error) = result {
            self.handler.exhausted(kind, id, error);
        }
        self.wake.notify_one();
    }

    /// Queue a transfer (EXE-2: at most once). If it is running, it runs again afterwards.
    pub fn enqueue(&self, kind: TransferKind, id: FileId) {
        self.enqueue_with(kind, id, Priority::Normal);
    }

    fn enqueue_with(&self, kind: TransferKind, id: FileId, priority: Priority) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        if let Some(running) = state.running.get_mut(&(kind, id.clone())) {
            running.rerun = Some(priority.max_with(running.rerun));
        } else {
            state.push(kind, id, priority);
        }
        self.publish_idle(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Whether `id` is queued or running for `kind`.
    pub fn knows(&self, kind: TransferKind, id: &FileId) -> bool {
        let state = self.lock();
        let queued = match kind {
            TransferKind::Upload => state.queued_up.contains(id),
            TransferKind::Download => state.queued_down.contains_key(id),
        };
        queued || state.running.contains_key(&(kind, id.clone()))
    }

    /// Move a queued download to the high-priority queue (EXE-6). No-op if it is not queued.
    pub fn prioritize_download(&self, id: &FileId) {
        let mut state = self.lock();
        if state.queued_down.get(id) == Some(&Priority::Normal) {
            state.push(TransferKind::Download, id.clone(), Priority::High);
        }
    }

    /// Drop a queued or running download (EXE-5); no-op for unknown ids.
    pub fn cancel_download(&self, id: &FileId) {
        let mut state = self.lock();
        if state.queued_down.remove(id).is_some() {
            state.high.retain(|x| x != id);
            state.normal.retain(|x| x != id);
        }
        if let Some(running) = state.running.remove(&(TransferKind::Download, id.clone()))
            && let Some(task) = running.task
        {
            task.abort();
        }
        self.publish_idle(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Hold back new work; running transfers continue (EXE-8).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Release held-back work.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.wake.notify_one();
    }

    /// Abort every running transfer and return what was running (EXE-8). Queues are kept.
    pub fn interrupt_inflight(&self) -> Vec<(TransferKind, FileId)> {
        let mut state = self.lock();
        let running: Vec<_> = std::mem::take(&mut state.running).into_iter().collect();
        self.publish_idle(&state);
        drop(state);
        running
            .into_iter()
            .map(|((kind, id), r)| {
                if let Some(task) = r.task {
                    task.abort();
                }
                (kind, id)
            })
            .collect()
    }

    /// Counters (EXE-4, EXE-7).
    pub fn stats(&self) -> ExecutorStats {
        let state = self.lock();
        ExecutorStats {
            queued_uploads: state.queued_up.len(),
            queued_downloads: state.queued_down.len(),
            inflight_uploads: state.running_count(TransferKind::Upload),
            inflight_downloads: state.running_count(TransferKind::Download),
            paused: state.paused,
        }
    }

    /// Wait until nothing is queued or running.
    pub async fn await_idle(&self) {
        let mut rx = self.idle.subscribe();
        let _ = rx.wait_for(|idle| *idle).await;
    }

    /// Stop for good: abort running transfers, drop the queues, stop the dispatcher.
    pub async fn shutdown(&self) {
        let dispatcher = {
            let mut state = self.lock();
            state.stopped = true;
            state.uploads.clear();
            state.high.clear();
            state.normal.clear();
            state.queued_up.clear();
            state.queued_down.clear();
            self.dispatcher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        };
        let running = {
            let mut state = self.lock();
            let r: Vec<_> = std::mem::take(&mut state.running).into_iter().collect();
            self.publish_idle(&state);
            r
        };
        for (_, r) in running {
            if let Some(task) = r.task {
                task.shutdown().await;
            }
        }
        if let Some(d) = dispatcher {
            d.shutdown().await;
        }
    }
}

impl Priority {
    fn max_with(self, other: Option<Priority>) -> Priority {
        if self == Priority::High || other == Some(Priority::High) {
            Priority::High
        } else {
            Priority::Normal
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
