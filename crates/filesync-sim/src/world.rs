//! One run: build the world from a seed, drive it, heal it, check it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use filesync_core::cas::{ContentStore, SIDECAR_SUFFIX};
use filesync_core::fs::{EntryKind, FileSystem, MemoryFs, collect_stream};
use filesync_core::preprocess::FileInput;
use filesync_core::remote::{MemoryRemote, RemoteStorage};
use filesync_core::schema::{Event, EventSeq, FileRecord};
use filesync_core::store::{MAX_READ_BATCH, MemoryStore, Store};
use filesync_core::sync::MemoryRelay;
use filesync_core::testing::remote::{Fault, FaultyRemote};
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId};
use filesync_core::{FileSync, Options, RetryPolicy};
use sha2::Digest as _;
use tokio::time::Instant;

use crate::parts::{CrashFs, CrashStore, Life, RelayControl, RelayFault, SimLeadership, SimRelay};
use crate::rng::SimRng;

const STORE: &str = "sim";
/// Unused local content younger than this is spared by garbage collection.
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// The shape of a run (derived from the seed unless a test sets it).
#[derive(Debug, Clone)]
pub struct Config {
    /// Devices, each with one engine.
    pub engines: usize,
    /// Random steps before healing.
    pub steps: usize,
    /// Percent of steps that inject a fault rather than run an operation.
    pub fault_percent: u64,
    /// Break something on purpose after healing, to show the checks can fail.
    pub sabotage: Option<Sabotage>,
}

impl Config {
    /// The configuration a seed runs with: 2 to 4 engines, 60 to 139 steps.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = SimRng::new(seed.rotate_left(17));
        Self {
            engines: 2 + rng.index(3),
            steps: 60 + rng.index(80),
            fault_percent: 35,
            sabotage: None,
        }
    }
}

/// Damage done after healing, before the checks: each must make a check fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Flip a byte of one remote object.
    CorruptRemoteObject,
    /// Drop one local content file of the first engine.
    DropLocalContent,
    /// Forget that one acknowledged save happened... by adding a fake acknowledgement.
    PhantomAcknowledgement,
    /// Leave an object in the remote that no file uses.
    OrphanRemoteObject,
}

/// What a passing run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Engines in the run.
    pub engines: usize,
    /// Steps run before healing.
    pub steps: usize,
    /// Faults injected (transfer, relay, restarts, leadership losses, crashes, offline spells).
    pub faults: usize,
    /// Of which process crashes that happened.
    pub crashes: usize,
    /// Acknowledged saves, updates and deletes.
    pub acknowledged: usize,
    /// Reads whose bytes were checked.
    pub reads: usize,
    /// Simulated time the run and the healing took.
    pub simulated: Duration,
    /// SHA-256 of the trace: equal for two runs of one seed.
    pub trace_digest: String,
    /// One line per step.
    pub trace: Vec<String>,
}

/// A failed run: what broke, and the trace that led there.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The broken invariant.
    pub message: String,
    /// One line per step.
    pub trace: Vec<String>,
}

impl Failure {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("cargo xtask sim --seed {} --trace", self.seed)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreplay: {}",
            self.seed,
            self.message,
            self.replay_command()
        )
    }
}

/// Run one seed with its own configuration.
pub fn run_seed(seed: u64) -> Result<Report, Failure> {
    run_with(seed, Config::for_seed(seed))
}

/// Run one seed with `config`, on a fresh single-threaded runtime whose clock is paused.
pub fn run_with(seed: u64, config: Config) -> Result<Report, Failure> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        // tokio's own randomness (which waiter of a `watch` channel wakes first) comes from
        // the seed too (`--cfg tokio_unstable`, set in .cargo/config.toml).
        .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Err(Failure {
                seed,
                message: format!("cannot build a runtime: {e}"),
                trace: Vec::new(),
            });
        }
    };
    runtime.block_on(async move {
        // The paused clock starts a fraction of a millisecond off the timer wheel's ticks, and
        // that fraction (different in every process) decides how the first deadlines round.
        // One sleep lands the clock on a tick; from there every deadline rounds the same way.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let _deterministic = filesync_core::rt::deterministic::install(seed);
        let mut world = World::new(seed, config);
        let result = world.run().await;
        world.stop_all().await;
        let mut trace = std::mem::take(&mut world.trace);
        trace.extend(std::mem::take(&mut *lock(&world.internal)));
        match result {
            Ok(()) => Ok(Report {
                seed,
                engines: world.config.engines,
                steps: world.config.steps,
                faults: world.faults,
                crashes: world.crashes,
                acknowledged: world.acked.len(),
                reads: world.reads,
                simulated: world.started.elapsed(),
                trace_digest: hex::encode(sha2::Sha256::digest(trace.join("\n").as_bytes())),
                trace,
            }),
            Err(message) => Err(Failure {
                seed,
                message,
                trace,
            }),
        }
    })
}

/// An acknowledged change: the API call returned `Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acked {
    Created(FileId, ContentHash),
    Updated(FileId, ContentHash),
    Deleted(FileId),
}

/// One device: its persistent parts and, while its process runs, its engine.
struct Device {
    name: String,
    fs: MemoryFs,
    store: MemoryStore,
    remote: FaultyRemote<MemoryRemote>,
    relay: SimRelay,
    leadership: Arc<SimLeadership>,
    life: Arc<Life>,
    sync: Option<FileSync>,
    offline: bool,
}

struct World {
    seed: u64,
    config: Config,
    rng: SimRng,
    store_id: StoreId,
    relay: MemoryRelay,
    relay_control: Arc<RelayControl>,
    remote: MemoryRemote,
    devices: Vec<Device>,
    /// Every content the run created, by hash: the truth reads are checked against.
    contents: BTreeMap<ContentHash, Bytes>,
    pool: Vec<Bytes>,
    acked: Vec<Acked>,
    trace: Vec<String>,
    /// The engines' own events, with `FILESYNC_SIM_EVENTS` set (for finding where two runs of
    /// one seed part ways).
    internal: Arc<Mutex<Vec<String>>>,
    started: Instant,
    faults: usize,
    crashes: usize,
    reads: usize,
}

fn fail<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

impl World {
    fn new(seed: u64, config: Config) -> Self {
        let mut rng = SimRng::new(seed);
        let relay = MemoryRelay::new();
        let relay_control = Arc::new(RelayControl::default());
        let remote = MemoryRemote::new();
        let devices = (0..config.engines)
            .map(|i| Device {
                name: format!("d{i}"),
                fs: MemoryFs::new(),
                store: MemoryStore::new(),
                remote: FaultyRemote::new(remote.clone()),
                relay: SimRelay {
                    inner: relay.handle(),
                    control: Arc::clone(&relay_control),
                    faults: Arc::new(Mutex::new(VecDeque::new())),
                },
                leadership: SimLeadership::new(),
                life: Life::new(),
                sync: None,
                offline: false,
            })
            .collect();
        // A small pool of contents that saves draw from often, so files share content (and
        // deleting one must not take the bytes of another).
        let pool = (0..4)
            .map(|i| {
                let len = 1 + rng.index(300);
                Bytes::from(
                    (0..len)
                        .map(|j| (i * 31 + j * 7) as u8)
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        Self {
            seed,
            config,
            rng,
            store_id: StoreId::parse(STORE).unwrap_or_else(|_| unreachable!("a valid store id")),
            relay,
            relay_control,
            remote,
            devices,
            contents: BTreeMap::new(),
            pool,
            acked: Vec::new(),
            trace: Vec::new(),
            internal: Arc::default(),
            started: Instant::now(),
            faults: 0,
            crashes: 0,
            reads: 0,
        }
    }

    fn log(&mut self, line: impl AsRef<str>) {
        let t = self.started.elapsed();
        self.trace
            .push(format!("{:>9.3}s {}", t.as_secs_f64(), line.as_ref()));
    }

    fn options(&self, device: usize) -> Options {
        let mut retry = RetryPolicy::default();
        retry.base_delay = Duration::from_millis(200);
        retry.max_elapsed = Duration::from_secs(20);
        retry.max_retries = 5;
        retry.jitter = 0.2;
        let mut o = Options::default();
        o.health_check_interval = Duration::from_secs(1);
        o.heartbeat_interval = Duration::from_secs(5);
        o.stream_stall_threshold = Duration::from_secs(10);
        o.stream_recovery_base_delay = Duration::from_millis(200);
        o.stream_recovery_max_delay = Duration::from_secs(5);
        o.stream_recovery_window = Duration::from_secs(30);
        o.retry = retry;
        o.transfer_timeout = Duration::from_secs(5);
        o.orphan_grace = ORPHAN_GRACE;
        o.jitter_seed = Some(self.seed ^ (device as u64 + 1).wrapping_mul(0x9e37_79b9));
        o
    }

    async fn start(&mut self, i: usize) -> Result<(), String> {
        let options = self.options(i);
        let d = &mut self.devices[i];
        d.life = Life::new();
        let fs = CrashFs {
            inner: d.fs.clone(),
            life: Arc::clone(&d.life),
        };
        let store = CrashStore {
            inner: d.store.clone(),
            life: Arc::clone(&d.life),
        };
        let builder = FileSync::builder(self.store_id.clone(), Arc::new(fs), Arc::new(store));
        if std::env::var_os("FILESYNC_SIM_EVENTS").is_some() {
            let events = builder.events();
            let name = d.name.clone();
            let internal = Arc::clone(&self.internal);
            let t0 = self.started;
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut events = std::pin::pin!(events);
                while let Some(e) = events.next().await {
                    lock(&internal).push(format!(
                        "{:>9.3}s {name}: {e:?}",
                        t0.elapsed().as_secs_f64()
                    ));
                }
            });
        }
        let started = builder
            .with_remote(Arc::new(d.remote.clone()))
            .with_relay(Arc::new(d.relay.clone()))
            .with_leadership(d.leadership.clone())
            .with_options(options)
            .start()
            .await;
        match started {
            Ok(sync) => {
                d.sync = Some(sync);
                let name = d.name.clone();
                self.log(format!("{name}: engine started"));
                Ok(())
            }
            Err(e) => fail(format!(
                "{}: the engine did not start on what its last process left: {}",
                d.name,
                e.report()
            )),
        }
    }

    /// End the device's process: graceful or not, its tasks stop; its disk stays.
    async fn stop(&mut self, i: usize) {
        if let Some(sync) = self.devices[i].sync.take() {
            sync.shutdown().await;
        }
    }

    async fn stop_all(&mut self) {
        for i in 0..self.devices.len() {
            self.stop(i).await;
        }
    }

    async fn run(&mut self) -> Result<(), String> {
        let (engines, steps) = (self.config.engines, self.config.steps);
        self.log(format!(
            "seed {} engines {engines} steps {steps}",
            self.seed
        ));
        for i in 0..engines {
            self.start(i).await?;
        }
        for step in 0..steps {
            let pause = Duration::from_millis(self.rng.below(1500));
            tokio::time::sleep(pause).await;
            self.reap().await?;
            let i = self.rng.index(engines);
            if self.rng.chance(self.config.fault_percent) {
                self.fault(step, i).await;
            } else {
                self.operation(step, i).await?;
            }
        }
        self.heal().await?;
        self.check().await
    }

    /// Restart processes that died (a crash planned by a fault landed).
    async fn reap(&mut self) -> Result<(), String> {
        for i in 0..self.devices.len() {
            let d = &self.devices[i];
            if d.sync.is_some() && d.life.is_dead() {
                self.crashes += 1;
                let name = d.name.clone();
                self.log(format!("{name}: process died; restarting"));
                self.stop(i).await;
                self.start(i).await?;
            }
        }
        Ok(())
    }

    fn content(&mut self) -> Bytes {
        if self.rng.chance(50) {
            let i = self.rng.index(self.pool.len());
            self.pool[i].clone()
        } else {
            let len = self.rng.index(2000);
            let salt = self.rng.next_u64();
            Bytes::from(
                (0..len)
                    .map(|j| (salt.rotate_left(j as u32 % 64) as u8) ^ (j as u8))
                    .collect::<Vec<u8>>(),
            )
        }
    }

    fn remember(&mut self, data: &Bytes) -> ContentHash {
        let hash = filesync_core::hash::hash_bytes(data);
        self.contents.insert(hash, data.clone());
        hash
    }

    /// A live (not deleted) file of device `i`, as its store has it.
    async fn pick_file(&mut self, i: usize) -> Option<FileRecord> {
        let files: Vec<FileRecord> = self.devices[i]
            .store
            .files()
            .await
            .ok()?
            .into_iter()
            .filter(|f| !f.is_deleted())
            .collect();
        if files.is_empty() {
            return None;
        }
        let k = self.rng.index(files.len());
        files.into_iter().nth(k)
    }

    async fn operation(&mut self, step: usize, i: usize) -> Result<(), String> {
        let name = self.devices[i].name.clone();
        let Some(sync) = self.devices[i].sync.clone() else {
            return Ok(());
        };
        // Sometimes the process dies in the middle of the user's call.
        if self.rng.chance(8) {
            let after = self.rng.below(6);
            self.devices[i].life.crash_after(after);
            self.faults += 1;
            self.log(format!("step {step}: {name}: crash after {after} calls"));
        }
        match self.rng.below(100) {
            0..=34 => {
                let data = self.content();
                let hash = self.remember(&data);
                let input = FileInput::from_bytes("f.bin", "application/octet-stream", data);
                match sync.save_file(input).await {
                    Ok(saved) => {
                        if saved.content_hash != hash {
                            return fail(format!(
                                "{name}: save returned hash {} for content {hash}",
                                saved.content_hash
                            ));
                        }
                        self.log(format!(
                            "step {step}: {name}: save {} -> {}",
                            short(&hash),
                            saved.file_id
                        ));
                        self.acked.push(Acked::Created(saved.file_id, hash));
                    }
                    Err(e) => self.log(format!("step {step}: {name}: save failed: {e}")),
                }
            }
            35..=54 => {
                let Some(file) = self.pick_file(i).await else {
                    return Ok(());
                };
                let data = self.content();
                let hash = self.remember(&data);
                let input = FileInput::from_bytes("f.bin", "application/octet-stream", data);
                match sync.update_file(&file.id, input).await {
                    Ok(saved) => {
                        self.log(format!(
                            "step {step}: {name}: update {} to {}",
                            file.id,
                            short(&hash)
                        ));
                        if saved.content_hash != hash {
                            return fail(format!(
                                "{name}: update returned hash {} for content {hash}",
                                saved.content_hash
                            ));
                        }
                        if hash != file.content_hash {
                            self.acked.push(Acked::Updated(file.id, hash));
                        }
                    }
                    Err(e) => self.log(format!("step {step}: {name}: update failed: {e}")),
                }
            }
            55..=66 => {
                let Some(file) = self.pick_file(i).await else {
                    return Ok(());
                };
                match sync.delete_file(&file.id).await {
                    Ok(()) => {
                        self.log(format!("step {step}: {name}: delete {}", file.id));
                        self.acked.push(Acked::Deleted(file.id));
                    }
                    Err(e) => self.log(format!("step {step}: {name}: delete failed: {e}")),
                }
            }
            67..=89 => {
                let Some(file) = self.pick_file(i).await else {
                    return Ok(());
                };
                self.read(step, i, &sync, &file.id).await?;
            }
            90..=94 => {
                self.log(format!("step {step}: {name}: restart"));
                self.stop(i).await;
                self.start(i).await?;
            }
            _ => {
                self.log(format!("step {step}: {name}: trigger sync, retry errors"));
                let _ = sync.trigger_sync().await;
                let _ = sync.retry_errors().await;
            }
        }
        Ok(())
    }

    /// Read through the API and check the bytes against their hash and the run's truth.
    async fn read(
        &mut self,
        step: usize,
        i: usize,
        sync: &FileSync,
        id: &FileId,
    ) -> Result<(), String> {
        let name = self.devices[i].name.clone();
        let content = match sync.read_file(id).await {
            Ok(c) => c,
            Err(e) => {
                self.log(format!("step {step}: {name}: read {id}: {e}"));
                return Ok(());
            }
        };
        let claimed = content.content_hash;
        let bytes = match collect_stream(content.body).await {
            Ok(b) => b,
            Err(e) => {
                self.log(format!("step {step}: {name}: read {id} body: {e}"));
                return Ok(());
            }
        };
        self.reads += 1;
        let actual = filesync_core::hash::hash_bytes(&bytes);
        if actual != claimed {
            return fail(format!(
                "{name}: read of {id} returned bytes hashing to {actual}, claimed {claimed}"
            ));
        }
        match self.contents.get(&claimed) {
            Some(truth) if *truth == bytes => {}
            _ => {
                return fail(format!(
                    "{name}: read of {id} returned content {claimed} that no save wrote"
                ));
            }
        }
        self.log(format!(
            "step {step}: {name}: read {id} = {}",
            short(&claimed)
        ));
        Ok(())
    }

    async fn fault(&mut self, step: usize, i: usize) {
        self.faults += 1;
        let name = self.devices[i].name.clone();
        let line = match self.rng.below(100) {
            0..=29 => {
                let fault = match self.rng.below(4) {
                    0 => Fault::Fail,
                    1 => Fault::Corrupt,
                    2 => Fault::Hang,
                    _ => Fault::CutAt(self.rng.index(200)),
                };
                self.devices[i].remote.push_fault(fault);
                format!("{name}: next transfer {fault:?}")
            }
            30..=49 => {
                let fault = match self.rng.below(3) {
                    0 => RelayFault::FailPush,
                    1 => RelayFault::LoseAck,
                    _ => RelayFault::FailPull,
                };
                lock(&self.devices[i].relay.faults).push_back(fault);
                format!("{name}: next relay call {fault:?}")
            }
            50..=64 => {
                let d = &mut self.devices[i];
                d.offline = !d.offline;
                d.remote.set_offline(d.offline);
                d.relay.inner.set_offline(d.offline);
                format!("{name}: offline = {}", d.offline)
            }
            65..=74 => {
                let down = Duration::from_millis(500 + self.rng.below(8000));
                self.relay_control.set_down(true);
                let control = Arc::clone(&self.relay_control);
                // A plain tokio task: it belongs to the world, not to any engine.
                tokio::spawn(async move {
                    tokio::time::sleep(down).await;
                    control.set_down(false);
                });
                format!("relay restarts, down for {down:?}")
            }
            75..=86 => {
                let pause = Duration::from_millis(self.rng.below(3000));
                self.devices[i].leadership.revoke(pause);
                format!("{name}: loses leadership for {pause:?}")
            }
            _ => {
                let after = self.rng.below(40);
                self.devices[i].life.crash_after(after);
                format!("{name}: process crashes after {after} more calls")
            }
        };
        self.log(format!("step {step}: fault: {line}"));
    }

    /// Clear every fault, bring everyone online and let the engines settle.
    async fn heal(&mut self) -> Result<(), String> {
        self.log("heal");
        self.relay_control.set_down(false);
        for i in 0..self.devices.len() {
            let d = &mut self.devices[i];
            d.offline = false;
            d.remote.set_offline(false);
            d.remote.clear_faults();
            d.relay.inner.set_offline(false);
            lock(&d.relay.faults).clear();
            d.life.crash_after(u64::MAX);
        }
        self.reap().await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.reap().await?;
            if self.settled().await? {
                self.log("settled; collecting garbage once the grace period is over");
                tokio::time::sleep(ORPHAN_GRACE + Duration::from_secs(1)).await;
                for d in &self.devices {
                    if let Some(sync) = &d.sync
                        && let Err(e) = sync.collect_garbage().await
                    {
                        return fail(format!("{}: garbage collection failed: {e}", d.name));
                    }
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let state = self.describe().await;
                return fail(format!(
                    "the engines did not settle within 600 s after healing:\n{state}"
                ));
            }
            for d in &self.devices {
                if let Some(sync) = &d.sync {
                    let _ = sync.retry_errors().await;
                }
            }
        }
    }

    /// Everyone confirmed the relay's whole log, followed it, holds every live file's bytes,
    /// and owes no remote delete.
    async fn settled(&self) -> Result<bool, String> {
        let head = self.relay.log(&self.store_id).len() as u64;
        let mut rows = None;
        for d in &self.devices {
            let s = &d.store;
            let confirmed = s.confirmed().await.map_err(|e| e.to_string())?;
            let local_head = s.head().await.map_err(|e| e.to_string())?;
            let cursor = s.cursor().await.map_err(|e| e.to_string())?;
            if confirmed.global != head
                || local_head != confirmed
                || cursor.last_event_sequence != local_head
                || !s
                    .remote_deletes()
                    .await
                    .map_err(|e| e.to_string())?
                    .is_empty()
            {
                return Ok(false);
            }
            let files = s.files().await.map_err(|e| e.to_string())?;
            let cas = ContentStore::new(Arc::new(d.fs.clone()), self.store_id.clone());
            for f in files.iter().filter(|f| !f.is_deleted()) {
                if f.remote_key.is_none() || !cas.contains(&f.content_hash).await.unwrap_or(false) {
                    return Ok(false);
                }
            }
            match &rows {
                None => rows = Some(files),
                Some(r) if *r != files => return Ok(false),
                Some(_) => {}
            }
        }
        Ok(true)
    }

    async fn describe(&self) -> String {
        let mut out = String::new();
        let head = self.relay.log(&self.store_id).len();
        let _ = writeln!(out, "relay head {head}");
        for d in &self.devices {
            let s = &d.store;
            let _ = writeln!(
                out,
                "{}: confirmed {:?} head {:?} cursor {:?} owed deletes {:?} running {}",
                d.name,
                s.confirmed().await.ok(),
                s.head().await.ok(),
                s.cursor().await.ok().map(|c| c.last_event_sequence),
                s.remote_deletes().await.ok(),
                d.sync.is_some()
            );
            let cas = ContentStore::new(Arc::new(d.fs.clone()), self.store_id.clone());
            for f in s.files().await.unwrap_or_default() {
                let state = s.local_state(&f.id).await.ok().flatten();
                let _ = writeln!(
                    out,
                    "  {} {} deleted={} remote={:?} local={} state={:?}",
                    f.id,
                    short(&f.content_hash),
                    f.is_deleted(),
                    f.remote_key.as_ref().map(ObjectKey::as_str),
                    cas.contains(&f.content_hash).await.unwrap_or(false),
                    state.map(|s| (s.upload_status, s.download_status, s.last_sync_error))
                );
            }
        }
        out
    }

    async fn sabotage(&mut self) {
        let Some(sabotage) = self.config.sabotage else {
            return;
        };
        self.log(format!("sabotage: {sabotage:?}"));
        match sabotage {
            Sabotage::CorruptRemoteObject => {
                if let Some(key) = self.remote.keys().into_iter().next()
                    && let Some(data) = self.remote.object(&key)
                {
                    let mut v = data.to_vec();
                    v.push(0);
                    let request = filesync_core::remote::UploadRequest {
                        key: key.clone(),
                        content_type: None,
                        content_length: v.len() as u64,
                        content_hash: filesync_core::hash::hash_bytes(&v),
                    };
                    let _ = self
                        .remote
                        .upload(request, filesync_core::fs::bytes_stream(v))
                        .await;
                }
            }
            Sabotage::DropLocalContent => {
                let d = &self.devices[0];
                if let Some(f) = d
                    .store
                    .files()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .find(|f| !f.is_deleted())
                {
                    let _ = d.fs.remove(&f.path).await;
                }
            }
            Sabotage::PhantomAcknowledgement => {
                let hash = filesync_core::hash::hash_bytes(b"never saved");
                self.acked.push(Acked::Created(FileId::random(), hash));
            }
            Sabotage::OrphanRemoteObject => {
                let data = Bytes::from_static(b"orphan");
                let hash = filesync_core::hash::hash_bytes(&data);
                let request = filesync_core::remote::UploadRequest {
                    key: ObjectKey::for_content(&self.store_id, &hash),
                    content_type: None,
                    content_length: data.len() as u64,
                    content_hash: hash,
                };
                let _ = self
                    .remote
                    .upload(request, filesync_core::fs::bytes_stream(data))
                    .await;
            }
        }
    }

    /// The invariants, after healing.
    async fn check(&mut self) -> Result<(), String> {
        self.sabotage().await;
        let log = self.relay.log(&self.store_id);
        let relay_events: Vec<&Event> = log.iter().map(|e| &e.event).collect();
        let mut reference: Option<(String, Vec<FileRecord>)> = None;
        for d in &self.devices {
            // 1. The relay's events, in the relay's order, and identical rows.
            let mut events = Vec::new();
            let mut after = EventSeq::ROOT;
            loop {
                let page = d
                    .store
                    .events_after(after, MAX_READ_BATCH)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                events.extend(page.into_iter().map(|e| e.event));
            }
            if events.iter().collect::<Vec<_>>() != relay_events {
                return fail(format!(
                    "{}: its log ({} events) is not the relay's ({} events)",
                    d.name,
                    events.len(),
                    relay_events.len()
                ));
            }
            let files = d.store.files().await.map_err(|e| e.to_string())?;
            match &reference {
                None => reference = Some((d.name.clone(), files.clone())),
                Some((name, rows)) if *rows != files => {
                    return fail(format!("{} and {name} hold different rows", d.name));
                }
                Some(_) => {}
            }
            // 2. Every live file's bytes, here and in the remote.
            let cas = ContentStore::new(Arc::new(d.fs.clone()), self.store_id.clone());
            let live: BTreeSet<ContentHash> = files
                .iter()
                .filter(|f| !f.is_deleted())
                .map(|f| f.content_hash)
                .collect();
            for f in files.iter().filter(|f| !f.is_deleted()) {
                let bytes = match d.fs.read(&f.path).await {
                    Ok(body) => collect_stream(body).await.map_err(|e| e.to_string())?,
                    Err(e) => {
                        return fail(format!(
                            "{}: the bytes of {} are missing: {e}",
                            d.name, f.id
                        ));
                    }
                };
                if filesync_core::hash::hash_bytes(&bytes) != f.content_hash {
                    return fail(format!("{}: the bytes of {} do not match", d.name, f.id));
                }
                let Some(key) = &f.remote_key else {
                    return fail(format!("{}: {} was never uploaded", d.name, f.id));
                };
                match self.remote.object(key) {
                    Some(obj) if filesync_core::hash::hash_bytes(&obj) == f.content_hash => {}
                    Some(_) => return fail(format!("the remote object {key} is corrupt")),
                    None => {
                        return fail(format!(
                            "the remote object {key} of live file {} is gone",
                            f.id
                        ));
                    }
                }
            }
            // 5. No local content that no live file uses (nor temporary files, sidecars of
            // removed content, ...).
            let root = cas
                .path_of(&filesync_core::hash::hash_bytes(b""))
                .parent()
                .ok_or("the content store has no root")?;
            for path in walk(&d.fs, &root).await {
                let name = path.file_name();
                let base = name.strip_suffix(SIDECAR_SUFFIX).unwrap_or(name);
                match ContentHash::parse(base) {
                    Ok(h) if live.contains(&h) => {}
                    _ => {
                        return fail(format!(
                            "{}: {path} is left behind though no live file uses it",
                            d.name
                        ));
                    }
                }
            }
        }
        // 3. Every acknowledged change is in the relay's log.
        for a in &self.acked {
            let found = relay_events.iter().any(|e| match (a, e) {
                (Acked::Created(id, h), Event::FileCreated(c)) => {
                    c.id == *id && c.content_hash == *h
                }
                (Acked::Updated(id, h), Event::FileUpdated(u)) => {
                    u.id == *id && u.content_hash == *h && u.remote_key.is_none()
                }
                (Acked::Deleted(id), Event::FileDeleted(d)) => d.id == *id,
                _ => false,
            });
            if !found {
                return fail(format!("the acknowledged {a:?} is not in the relay's log"));
            }
        }
        // 6. No remote object that no live file uses.
        let live_keys: BTreeSet<ObjectKey> = reference
            .map(|(_, rows)| rows)
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !f.is_deleted())
            .filter_map(|f| f.remote_key)
            .collect();
        for key in self.remote.keys() {
            if !live_keys.contains(&key) {
                let history: Vec<String> = log
                    .iter()
                    .filter(|e| {
                        let hash = match &e.event {
                            Event::FileCreated(c) => Some(c.content_hash),
                            Event::FileUpdated(u) => Some(u.content_hash),
                            _ => None,
                        };
                        hash.is_some_and(|h| key.as_str().ends_with(&h.to_hex()))
                    })
                    .map(|e| format!("  #{} {} by {}", e.seq_num, e.event.name(), e.client_id))
                    .collect();
                let state = self.describe().await;
                return fail(format!(
                    "the remote object {key} is left though no live file uses it; its history:\n{}\n{state}",
                    history.join("\n")
                ));
            }
        }
        self.log(format!(
            "checked: {} relay events, {} acknowledged, {} remote objects",
            relay_events.len(),
            self.acked.len(),
            live_keys.len()
        ));
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(hash: &ContentHash) -> String {
    hash.to_hex()[..8].to_owned()
}

/// Every file below `dir`, depth first.
async fn walk(fs: &MemoryFs, dir: &LocalPath) -> Vec<LocalPath> {
    let mut out = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs.list(&d).await else {
            continue;
        };
        for e in entries {
            match e.kind {
                EntryKind::Directory => todo.push(e.path),
                _ => out.push(e.path),
            }
        }
    }
    out
}
