//! The simulated world's parts: a store and a filesystem that can "crash" between any two
//! operations, a relay connection with injectable faults, and a leadership that can be lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use filesync_core::fs::{ByteStream, DirEntry, FileStat, FileSystem, MemoryFs};
use filesync_core::schema::{Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState};
use filesync_core::store::{MemoryStore, Store, StoredEvent};
use filesync_core::sync::{
    EventExchange, LeaderGuard, Leadership, MemoryRelay, PushOutcome, RelayEvent,
};
use filesync_core::types::{FileId, LocalPath, ObjectKey, StoreId};
use filesync_core::{Error, Result};
use tokio::sync::watch;

/// The life of one engine process: once `dead`, every store and filesystem call fails, as
/// if the process had died between the previous call and this one. `crash_after(n)` lets
/// `n` more calls through first, so a crash lands between any two steps of an operation.
#[derive(Debug, Default)]
pub struct Life {
    dead: AtomicBool,
    /// Calls left before the crash; `u64::MAX` when none is planned.
    left: AtomicU64,
}

impl Life {
    /// A process that lives until told otherwise.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            dead: AtomicBool::new(false),
            left: AtomicU64::new(u64::MAX),
        })
    }

    /// Die after `n` more store or filesystem calls (0: at the next one).
    pub fn crash_after(&self, n: u64) {
        self.left.store(n, Ordering::SeqCst);
    }

    /// Whether the process has died.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn step(&self, what: &str) -> Result<()> {
        if !self.is_dead() {
            let left = self.left.load(Ordering::SeqCst);
            if left == u64::MAX {
                return Ok(());
            }
            if left > 0 {
                self.left.store(left - 1, Ordering::SeqCst);
                return Ok(());
            }
            self.dead.store(true, Ordering::SeqCst);
        }
        Err(Error::Io {
            op: "simulated crash",
            path: what.to_owned(),
            source: std::io::Error::other("the process died"),
        })
    }
}

/// A [`MemoryStore`] seen through one process's [`Life`]: what was committed stays when the
/// process dies; the next process opens the same tables.
#[derive(Debug, Clone)]
pub struct CrashStore {
    /// The tables, which outlive the process.
    pub inner: MemoryStore,
    /// The process.
    pub life: Arc<Life>,
}

#[async_trait]
impl Store for CrashStore {
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>> {
        self.life.step("commit")?;
        self.inner.commit(events).await
    }
    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.life.step("file")?;
        self.inner.file(id).await
    }
    async fn files(&self) -> Result<Vec<FileRecord>> {
        self.life.step("files")?;
        self.inner.files().await
    }
    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>> {
        self.life.step("local_state")?;
        self.inner.local_state(id).await
    }
    async fn local_states(&self) -> Result<Vec<LocalFileState>> {
        self.life.step("local_states")?;
        self.inner.local_states().await
    }
    async fn cursor(&self) -> Result<FileSyncCursor> {
        self.life.step("cursor")?;
        self.inner.cursor().await
    }
    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>> {
        self.life.step("events_after")?;
        self.inner.events_after(after, limit).await
    }
    async fn head(&self) -> Result<EventSeq> {
        self.life.step("head")?;
        self.inner.head().await
    }
    fn watch(&self) -> watch::Receiver<EventSeq> {
        self.inner.watch()
    }
    async fn client_id(&self) -> Result<String> {
        self.life.step("client_id")?;
        self.inner.client_id().await
    }
    async fn confirmed(&self) -> Result<EventSeq> {
        self.life.step("confirmed")?;
        self.inner.confirmed().await
    }
    async fn confirm(&self, seq: EventSeq) -> Result<()> {
        self.life.step("confirm")?;
        self.inner.confirm(seq).await
    }
    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool> {
        self.life.step("apply_remote")?;
        self.inner.apply_remote(events).await
    }
    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>> {
        self.life.step("remote_deletes")?;
        self.inner.remote_deletes().await
    }
    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()> {
        self.life.step("set_remote_delete")?;
        self.inner.set_remote_delete(key, owed).await
    }
}

/// A [`MemoryFs`] seen through one process's [`Life`] (each call is atomic, as the
/// `FileSystem` contract promises of `write` and `rename`).
#[derive(Debug, Clone)]
pub struct CrashFs {
    /// The disk, which outlives the process.
    pub inner: MemoryFs,
    /// The process.
    pub life: Arc<Life>,
}

#[async_trait]
impl FileSystem for CrashFs {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        self.life.step("read")?;
        self.inner.read(path).await
    }
    async fn write(&self, path: &LocalPath, body: ByteStream) -> Result<u64> {
        self.life.step("write")?;
        self.inner.write(path, body).await
    }
    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()> {
        self.life.step("rename")?;
        self.inner.rename(from, to).await
    }
    async fn remove(&self, path: &LocalPath) -> Result<()> {
        self.life.step("remove")?;
        self.inner.remove(path).await
    }
    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>> {
        self.life.step("stat")?;
        self.inner.stat(path).await
    }
    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>> {
        self.life.step("list")?;
        self.inner.list(dir).await
    }
    async fn create_dir_all(&self, path: &LocalPath) -> Result<()> {
        self.life.step("create_dir_all")?;
        self.inner.create_dir_all(path).await
    }
}

/// A fault for the next relay call of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFault {
    /// The next push fails before the relay stores anything.
    FailPush,
    /// The next push is stored, but the answer is lost (the client sees an error).
    LoseAck,
    /// The next pull fails.
    FailPull,
}

/// Relay state shared by every connection: whether the relay is down (restarting).
#[derive(Debug, Default)]
pub struct RelayControl {
    down: AtomicBool,
    /// Bumped by every restart: a `wait` that began before it ends with an error, as a long
    /// poll or stream cut by a restart does.
    generation: AtomicU64,
}

impl RelayControl {
    /// Take the relay down (a restart begins: every call fails) or bring it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn relay_error(what: &str) -> Error {
    Error::Remote {
        what: format!("relay: {what}"),
        status: None,
        retryable: true,
        source: None,
    }
}

/// One client's connection to the shared [`MemoryRelay`], with its own offline switch and
/// fault queue.
#[derive(Debug, Clone)]
pub struct SimRelay {
    /// This client's connection to the one relay (with its own offline switch).
    pub inner: MemoryRelay,
    /// Whether the relay is up, shared by every connection.
    pub control: Arc<RelayControl>,
    /// Faults for this client's next calls, in order.
    pub faults: Arc<Mutex<VecDeque<RelayFault>>>,
}

impl SimRelay {
    fn take(&self, want: &[RelayFault]) -> Option<RelayFault> {
        let mut q = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let pos = q.iter().position(|f| want.contains(f))?;
        q.remove(pos)
    }

    fn up(&self) -> Result<()> {
        if self.control.down.load(Ordering::SeqCst) {
            return Err(relay_error("connection refused (restarting)"));
        }
        Ok(())
    }
}

#[async_trait]
impl EventExchange for SimRelay {
    async fn push(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome> {
        self.up()?;
        match self.take(&[RelayFault::FailPush, RelayFault::LoseAck]) {
            Some(RelayFault::FailPush) => Err(relay_error("push failed")),
            Some(_) => {
                self.inner.push(store, batch).await?;
                Err(relay_error("connection reset before the answer"))
            }
            None => self.inner.push(store, batch).await,
        }
    }

    async fn pull(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        self.up()?;
        if self.take(&[RelayFault::FailPull]).is_some() {
            return Err(relay_error("pull failed"));
        }
        self.inner.pull(store, after, limit).await
    }

    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        self.up()?;
        let generation = self.control.generation.load(Ordering::SeqCst);
        self.inner.wait(store, after, max).await?;
        if self.control.generation.load(Ordering::SeqCst) != generation {
            return Err(relay_error("stream cut by a restart"));
        }
        Ok(())
    }
}

/// Leadership that the simulation can take away: each `revoke` ends the current guard; the
/// engine steps down and acquires again (after `pause`, which the simulation sets).
#[derive(Debug)]
pub struct SimLeadership {
    revoked: watch::Sender<u64>,
    /// How long the next `acquire` waits before it grants leadership again.
    pub pause: Mutex<Duration>,
}

impl SimLeadership {
    /// Leadership granted at once, until revoked.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            revoked: watch::channel(0).0,
            pause: Mutex::new(Duration::ZERO),
        })
    }

    /// End the current leadership; the next `acquire` waits `pause` first.
    pub fn revoke(&self, pause: Duration) {
        *self.pause.lock().unwrap_or_else(|p| p.into_inner()) = pause;
        self.revoked.send_modify(|g| *g += 1);
    }
}

#[async_trait]
impl Leadership for SimLeadership {
    async fn acquire(&self) -> Result<LeaderGuard> {
        let pause = std::mem::take(&mut *self.pause.lock().unwrap_or_else(|p| p.into_inner()));
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut rx = self.revoked.subscribe();
        let now = *rx.borrow_and_update();
        let lost = async move {
            let _ = rx.wait_for(|g| *g != now).await;
        };
        Ok(LeaderGuard::with_loss((), Box::pin(lost)))
    }
}
