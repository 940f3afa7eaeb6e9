//! The transfer executor (EXE-1..8, TST-4, WEAK-9, WEAK-14), on tokio's paused clock.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Executor, ExecutorConfig, TransferHandler};
use crate::engine::RetryPolicy;
use crate::events::TransferKind;
use crate::rt::{Instant, sleep};
use crate::types::FileId;
use crate::{Error, Result};

#[derive(Default)]
struct Recorder {
    /// How many attempts fail before one succeeds, per id (usize::MAX: always fail).
    failures: Mutex<HashMap<String, usize>>,
    /// Ids whose attempts never finish.
    hang: Mutex<Vec<String>>,
    attempts: Mutex<Vec<(TransferKind, String, Duration)>>,
    completed: Mutex<Vec<(TransferKind, String)>>,
    exhausted: Mutex<Vec<(TransferKind, String, String)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    work: Duration,
    start: Mutex<Option<Instant>>,
}

impl Recorder {
    fn new(work: Duration) -> Arc<Self> {
        Arc::new(Self {
            work,
            start: Mutex::new(Some(Instant::now())),
            ..Self::default()
        })
    }
    fn fail(&self, id: &str, times: usize) {
        self.failures.lock().unwrap().insert(id.into(), times);
    }
    fn completed(&self) -> Vec<String> {
        self.completed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }
    fn attempts_of(&self, id: &str) -> Vec<Duration> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, i, _)| i == id)
            .map(|(_, _, t)| *t)
            .collect()
    }
}

#[async_trait]
impl TransferHandler for Recorder {
    async fn run(&self, kind: TransferKind, id: FileId) -> Result<()> {
        let at = Instant::now().duration_since(self.start.lock().unwrap().unwrap());
        self.attempts
            .lock()
            .unwrap()
            .push((kind, id.to_string(), at));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let hang = self.hang.lock().unwrap().contains(&id.to_string());
        if hang {
            futures::future::pending::<()>().await;
        }
        sleep(self.work).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut failures = self.failures.lock().unwrap();
        if let Some(n) = failures.get_mut(id.as_str())
            && *n > 0
        {
            *n = n.saturating_sub(1);
            return Err(Error::Timeout {
                what: "test failure",
            });
        }
        drop(failures);
        self.completed.lock().unwrap().push((kind, id.to_string()));
        Ok(())
    }

    fn exhausted(&self, kind: TransferKind, id: FileId, error: Error) {
        self.exhausted
            .lock()
            .unwrap()
            .push((kind, id.to_string(), error.to_string()));
    }
}

fn id(s: &str) -> FileId {
    FileId::parse(s).unwrap()
}

fn config(up: usize, down: usize) -> ExecutorConfig {
    ExecutorConfig {
        max_concurrent_uploads: up,
        max_concurrent_downloads: down,
        ..ExecutorConfig::default()
    }
}

/// EXE-1, TST-4: uploads and downloads are processed; mixed work completes.
#[tokio::test(start_paused = true)]
async fn exe_1_processes_uploads_and_downloads() {
    let rec = Recorder::new(Duration::from_millis(10));
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.enqueue(TransferKind::Upload, id("u1"));
    exec.enqueue(TransferKind::Download, id("d1"));
    exec.enqueue(TransferKind::Upload, id("u2"));
    exec.await_idle().await;
    let mut done = rec.completed();
    done.sort();
    assert_eq!(done, ["d1", "u1", "u2"]);
    exec.shutdown().await;
}

/// EXE-2: an id queued twice runs once; the same id may be queued for both kinds.
#[tokio::test(start_paused = true)]
async fn exe_2_deduplicates_queued_ids() {
    let rec = Recorder::new(Duration::from_millis(10));
    let exec = Executor::start(rec.clone(), config(1, 1));
    exec.pause();
    for _ in 0..5 {
        exec.enqueue(TransferKind::Upload, id("a"));
        exec.enqueue(TransferKind::Download, id("a"));
    }
    let stats = exec.stats();
    assert_eq!((stats.queued_uploads, stats.queued_downloads), (1, 1));
    exec.resume();
    exec.await_idle().await;
    assert_eq!(rec.completed().len(), 2);
    exec.shutdown().await;
}

/// WEAK-9: an id re-enqueued while its transfer runs is run again afterwards, never dropped.
#[tokio::test(start_paused = true)]
async fn weak_9_reenqueue_while_running_runs_again() {
    let rec = Recorder::new(Duration::from_secs(1));
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.enqueue(TransferKind::Download, id("x"));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(exec.stats().inflight_downloads, 1);
    exec.enqueue(TransferKind::Download, id("x"));
    exec.await_idle().await;
    assert_eq!(rec.completed(), ["x", "x"]);
    assert_eq!(exec.stats(), Default::default());
    exec.shutdown().await;
}

/// EXE-8: pause holds back new work; resume releases it.
#[tokio::test(start_paused = true)]
async fn exe_8_pause_and_resume() {
    let rec = Recorder::new(Duration::from_millis(10));
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.pause();
    exec.enqueue(TransferKind::Upload, id("p"));
    sleep(Duration::from_secs(5)).await;
    assert!(rec.completed().is_empty());
    assert!(exec.stats().paused);
    exec.resume();
    exec.await_idle().await;
    assert_eq!(rec.completed(), ["p"]);
    exec.shutdown().await;
}

/// EXE-3: failures are retried with exponential backoff (1, 2, 4 s ±20 %) until success.
#[tokio::test(start_paused = true)]
async fn exe_3_retries_with_backoff_then_succeeds() {
    let rec = Recorder::new(Duration::ZERO);
    rec.fail("r", 3);
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.enqueue(TransferKind::Upload, id("r"));
    exec.await_idle().await;
    let at = rec.attempts_of("r");
    assert_eq!(at.len(), 4);
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= base * 0.8 - 0.01 && *gap <= base * 1.2 + 0.01,
            "gap {gap} for base {base}"
        );
    }
    assert_eq!(rec.completed(), ["r"]);
    assert!(rec.exhausted.lock().unwrap().is_empty());
    exec.shutdown().await;
}

/// With a jitter seed the retry schedule is reproducible: the same seed gives the same
/// attempt times (jitter on, ±50 %), another seed other times.
#[tokio::test(start_paused = true)]
async fn seeded_jitter_replays_the_same_retry_schedule() {
    async fn schedule(seed: u64) -> Vec<Duration> {
        let rec = Recorder::new(Duration::ZERO);
        rec.fail("s", 4);
        let mut cfg = config(1, 1);
        cfg.retry.jitter = 0.5;
        cfg.jitter_seed = Some(seed);
        let exec = Executor::start(rec.clone(), cfg);
        exec.enqueue(TransferKind::Upload, id("s"));
        exec.await_idle().await;
        exec.shutdown().await;
        let at = rec.attempts_of("s");
        assert_eq!(at.len(), 5);
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }
    let first = schedule(7).await;
    assert_eq!(schedule(7).await, first);
    assert_ne!(schedule(8).await, first);
    // Still the policy's schedule: 1, 2, 4, 8 s within ±50 %.
    for (gap, base) in first.iter().zip([1.0, 2.0, 4.0, 8.0]) {
        let gap = gap.as_secs_f64();
        assert!(
            gap >= base * 0.5 - 0.01 && gap <= base * 1.5 + 0.01,
            "gap {gap} for base {base}"
        );
    }
}

/// EXE-3, EVT-9: after max retries (6 attempts) the transfer is exhausted, once.
#[tokio::test(start_paused = true)]
async fn exe_3_gives_up_after_max_retries() {
    let rec = Recorder::new(Duration::ZERO);
    rec.fail("f", usize::MAX);
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.enqueue(TransferKind::Download, id("f"));
    exec.await_idle().await;
    assert_eq!(rec.attempts_of("f").len(), 6);
    let exhausted = rec.exhausted.lock().unwrap().clone();
    assert_eq!(exhausted.len(), 1);
    assert_eq!(
        (exhausted[0].0, exhausted[0].1.as_str()),
        (TransferKind::Download, "f")
    );
    exec.shutdown().await;
}

/// EXE-3: `max_elapsed` caps the total retry window (not each delay).
#[tokio::test(start_paused = true)]
async fn exe_3_total_elapsed_caps_retries() {
    let rec = Recorder::new(Duration::ZERO);
    rec.fail("slow", usize::MAX);
    let mut cfg = config(1, 1);
    cfg.retry = RetryPolicy {
        base_delay: Duration::from_secs(10),
        max_elapsed: Duration::from_secs(60),
        max_retries: 10,
        jitter: 0.0,
    };
    let exec = Executor::start(rec.clone(), cfg);
    exec.enqueue(TransferKind::Upload, id("slow"));
    exec.await_idle().await;
    // Delays 10 + 20 fit in 60 s; the next (40) would end at 70 s: stop after 3 attempts.
    assert_eq!(rec.attempts_of("slow").len(), 3);
    exec.shutdown().await;
}

/// EXE-4, TST-4: concurrency caps are respected per kind.
#[tokio::test(start_paused = true)]
async fn exe_4_respects_concurrency_caps() {
    let rec = Recorder::new(Duration::from_secs(1));
    let exec = Executor::start(rec.clone(), config(2, 1));
    for n in 0..6 {
        exec.enqueue(TransferKind::Upload, id(&format!("u{n}")));
    }
    sleep(Duration::from_millis(10)).await;
    let s = exec.stats();
    assert_eq!((s.inflight_uploads, s.queued_uploads), (2, 4));
    exec.await_idle().await;
    assert_eq!(rec.max_running.load(Ordering::SeqCst), 2);
    assert_eq!(rec.completed().len(), 6);
    exec.shutdown().await;
}

/// EXE-4: `await_idle` returns at once when there is nothing to do.
#[tokio::test(start_paused = true)]
async fn exe_4_await_idle_when_idle() {
    let rec = Recorder::new(Duration::ZERO);
    let exec = Executor::start(rec, config(2, 2));
    let start = Instant::now();
    exec.await_idle().await;
    assert_eq!(Instant::now(), start);
    exec.shutdown().await;
}

/// EXE-6: a prioritised download jumps the normal queue; prioritising a non-queued id is a no-op.
#[tokio::test(start_paused = true)]
async fn exe_6_prioritize_download_order() {
    let rec = Recorder::new(Duration::from_millis(10));
    let exec = Executor::start(rec.clone(), config(1, 1));
    exec.pause();
    for n in ["a", "b", "c", "d"] {
        exec.enqueue(TransferKind::Download, id(n));
    }
    exec.prioritize_download(&id("c"));
    exec.prioritize_download(&id("c"));
    exec.prioritize_download(&id("zzz"));
    assert_eq!(exec.stats().queued_downloads, 4);
    exec.resume();
    exec.await_idle().await;
    assert_eq!(rec.completed(), ["c", "a", "b", "d"]);
    exec.shutdown().await;
}

/// EXE-5: a cancelled download is skipped (queued) or stopped (running); counts stay right.
#[tokio::test(start_paused = true)]
async fn exe_5_cancel_download() {
    let rec = Recorder::new(Duration::from_secs(1));
    let exec = Executor::start(rec.clone(), config(1, 1));
    exec.enqueue(TransferKind::Download, id("run"));
    exec.enqueue(TransferKind::Download, id("wait"));
    exec.enqueue(TransferKind::Download, id("keep"));
    exec.prioritize_download(&id("wait"));
    sleep(Duration::from_millis(10)).await;
    exec.cancel_download(&id("run"));
    exec.cancel_download(&id("wait"));
    exec.cancel_download(&id("unknown"));
    assert_eq!(exec.stats().queued_downloads, 1);
    exec.await_idle().await;
    assert_eq!(rec.completed(), ["keep"]);
    exec.shutdown().await;
}

/// WEAK-14: an attempt that hangs is abandoned at the timeout and retried.
#[tokio::test(start_paused = true)]
async fn weak_14_hung_transfer_times_out_and_is_retried() {
    let rec = Recorder::new(Duration::ZERO);
    rec.hang.lock().unwrap().push("h".into());
    let mut cfg = config(1, 1);
    cfg.transfer_timeout = Duration::from_secs(30);
    cfg.retry.max_retries = 1;
    let exec = Executor::start(rec.clone(), cfg);
    exec.enqueue(TransferKind::Upload, id("h"));
    exec.await_idle().await;
    assert_eq!(rec.attempts_of("h").len(), 2);
    let exhausted = rec.exhausted.lock().unwrap().clone();
    assert!(exhausted[0].2.contains("timed out"), "{exhausted:?}");
    exec.shutdown().await;
}

/// EXE-8: `interrupt_inflight` aborts running transfers and reports them; shutdown stops all.
#[tokio::test(start_paused = true)]
async fn exe_8_interrupt_inflight_and_shutdown() {
    let rec = Recorder::new(Duration::from_secs(100));
    let exec = Executor::start(rec.clone(), config(2, 2));
    exec.enqueue(TransferKind::Upload, id("i1"));
    exec.enqueue(TransferKind::Download, id("i2"));
    sleep(Duration::from_millis(10)).await;
    let mut interrupted = exec.interrupt_inflight();
    interrupted.sort_by_key(|(_, id)| id.to_string());
    assert_eq!(
        interrupted,
        vec![
            (TransferKind::Upload, id("i1")),
            (TransferKind::Download, id("i2"))
        ]
    );
    assert!(exec.interrupt_inflight().is_empty());
    exec.enqueue(TransferKind::Upload, id("i3"));
    sleep(Duration::from_millis(10)).await;
    exec.shutdown().await;
    sleep(Duration::from_secs(200)).await;
    assert!(
        rec.completed().is_empty(),
        "nothing completes after interrupt/shutdown"
    );
    exec.enqueue(TransferKind::Upload, id("late"));
    exec.await_idle().await;
}
