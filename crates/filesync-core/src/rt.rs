//! The runtime seam: the only module that names tokio's runtime, `wasm-bindgen-futures` or the clock.
//!
//! Natively everything runs on tokio. On `wasm32` tasks run on the browser's microtask queue through
//! `wasm-bindgen-futures` and timers use `setTimeout` (through `gloo-timers`), because tokio's timers
//! and `std::time::Instant::now` panic there. Signing and expiry code takes `now` as an argument.
#![allow(clippy::disallowed_methods)] // this is the one module allowed to call them

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{AbortHandle, Abortable};
use futures::stream::Stream;

pub use web_time::{SystemTime, UNIX_EPOCH};

/// A monotonic instant. Natively this is tokio's `Instant`, so tests with a paused clock
/// (`#[tokio::test(start_paused = true)]`) control it; on `wasm32` it is `web_time::Instant`
/// (`performance.now()`).
#[cfg(not(target_arch = "wasm32"))]
pub use tokio::time::Instant;
/// A monotonic instant (`performance.now()` on `wasm32`).
#[cfg(target_arch = "wasm32")]
pub use web_time::Instant;

/// `Send` on native targets, nothing on `wasm32` (where JS values are not `Send`).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` on native targets, nothing on `wasm32` (where JS values are not `Send`).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets, nothing on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` on native targets, nothing on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A boxed future that is `Send` natively and local on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
/// A boxed future that is `Send` natively and local on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = futures::future::LocalBoxFuture<'a, T>;

/// A boxed stream that is `Send` natively and local on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxStream<'a, T> = futures::stream::BoxStream<'a, T>;
/// A boxed stream that is `Send` natively and local on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub type BoxStream<'a, T> = futures::stream::LocalBoxStream<'a, T>;

/// Box a future into [`BoxFuture`].
pub fn boxed<'a, F, T>(fut: F) -> BoxFuture<'a, T>
where
    F: Future<Output = T> + MaybeSend + 'a,
{
    Box::pin(fut)
}

/// Box a stream into [`BoxStream`].
pub fn boxed_stream<'a, S, T>(stream: S) -> BoxStream<'a, T>
where
    S: Stream<Item = T> + MaybeSend + 'a,
{
    Box::pin(stream)
}

/// The current wall-clock time (works on `wasm32`, where `std::time::SystemTime::now` panics).
pub fn now() -> SystemTime {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    if let Some(t) = deterministic::now() {
        return t;
    }
    SystemTime::now()
}

/// The payload of a task's panic, as `std::panic::catch_unwind` returns it.
type Panic = Box<dyn std::any::Any + Send + 'static>;

/// A handle to a task started with [`spawn`]. Dropping it detaches the task.
#[derive(Debug)]
pub struct Task {
    abort: AbortHandle,
    finished: Arc<AtomicBool>,
    /// Closed when the task ends; carries its panic if it panicked.
    done: tokio::sync::oneshot::Receiver<Panic>,
}

impl Task {
    /// Stop the task at its next await point. Idempotent.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Whether the task has finished, whichever way it ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Abort the task and wait until it has stopped running.
    pub async fn shutdown(self) {
        self.abort.abort();
        let _ = self.done.await;
    }

    /// Wait for the task to finish on its own. If the task panicked, the panic is resumed
    /// here (with its original payload), as `std::thread::JoinHandle::join().unwrap()` would:
    /// a failure inside the task is never mistaken for a normal end.
    ///
    /// Natively the panic is caught where the task runs, so the runtime and other tasks are
    /// unaffected until `join` resumes it. On `wasm32` (built with `panic = "abort"`) a panic
    /// aborts the whole module before `join` can see it.
    pub async fn join(self) {
        if let Ok(panic) = self.done.await {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Spawn a future on the current runtime: tokio natively, the browser's event loop on `wasm32`.
pub fn spawn<F>(fut: F) -> Task
where
    F: Future<Output = ()> + MaybeSend + 'static,
{
    let (abort, registration) = AbortHandle::new_pair();
    let (tx, done) = tokio::sync::oneshot::channel::<Panic>();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let fut = async move {
        // Catch a panic so that `join` can resume it; the panic hook has already reported it.
        let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut));
        let outcome = Abortable::new(caught, registration).await;
        flag.store(true, Ordering::Release);
        if let Ok(Err(panic)) = outcome {
            let _ = tx.send(panic);
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        tokio::spawn(fut);
    }
    #[cfg(target_arch = "wasm32")]
    {
        wasm_bindgen_futures::spawn_local(fut);
    }
    Task {
        abort,
        finished,
        done,
    }
}

/// Wait for `duration`.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;
    #[cfg(target_arch = "wasm32")]
    gloo_timers::future::sleep(duration).await;
}

/// The error of [`timeout`]: the future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct Elapsed(pub Duration);

/// Run `fut`, giving up after `duration`.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        tokio::time::timeout(duration, fut)
            .await
            .map_err(|_| Elapsed(duration))
    }
    #[cfg(target_arch = "wasm32")]
    {
        use futures::future::{Either, select};
        let fut = std::pin::pin!(fut);
        let timer = std::pin::pin!(sleep(duration));
        match select(fut, timer).await {
            Either::Left((out, _)) => Ok(out),
            Either::Right(((), _)) => Err(Elapsed(duration)),
        }
    }
}

/// A stream that yields every `period`, first after one `period`. Missed ticks are skipped, not
/// bunched up, and the schedule does not drift.
pub fn interval(period: Duration) -> Interval {
    Interval {
        period,
        next: Instant::now() + period,
        sleep: None,
    }
}

/// The stream returned by [`interval`].
pub struct Interval {
    period: Duration,
    next: Instant,
    sleep: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interval")
            .field("period", &self.period)
            .finish()
    }
}

impl Stream for Interval {
    type Item = Instant;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        let this = &mut *self;
        if this.sleep.is_none() {
            let wait = this.next.saturating_duration_since(Instant::now());
            this.sleep = Some(boxed(sleep(wait)));
        }
        if let Some(timer) = this.sleep.as_mut()
            && timer.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        this.sleep = None;
        let now = Instant::now();
        let fired = this.next;
        this.next += this.period;
        if this.next <= now {
            // Skip missed ticks instead of firing them in a burst.
            let behind = now.duration_since(this.next).as_nanos() / this.period.as_nanos().max(1);
            let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
            this.next += this.period.saturating_mul(skip);
        }
        Poll::Ready(Some(fired))
    }
}

/// Run blocking work (SQLite, `std::fs`) off the async threads. Native only.
///
/// The work starts at once; awaiting the returned future gives its result, dropping it lets the
/// work finish in the background.
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn_blocking<F, T>(f: F) -> impl Future<Output = std::io::Result<T>> + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = tokio::task::spawn_blocking(f);
    async move { handle.await.map_err(std::io::Error::other) }
}

/// Fill `buf` with cryptographically secure random bytes: the OS generator natively,
/// `crypto.getRandomValues` on `wasm32` (through `getrandom`'s `wasm_js` backend).
///
/// # Panics
///
/// If the platform has no secure random source (a JS host without `crypto`); there is no
/// weaker fallback.
pub fn fill_random(buf: &mut [u8]) {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    if deterministic::fill(buf) {
        return;
    }
    if let Err(e) = getrandom::fill(buf) {
        panic!("no secure random source: {e}");
    }
}

/// Reproducible randomness and wall-clock time for simulations (feature `testing`, native):
/// while a [`deterministic::Guard`] is alive on a thread, [`fill_random`] on that thread draws
/// from a seeded generator and [`now`] is a fixed epoch plus the tokio clock's elapsed time (so
/// a paused clock pauses it too). Other threads, and the thread once the guard is dropped, use
/// the OS as always. Never install a guard outside tests: its bytes are predictable.
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod deterministic {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::{SystemTime, UNIX_EPOCH};

    struct State {
        rng: u64,
        epoch: SystemTime,
        start: tokio::time::Instant,
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    /// Restores the OS sources on this thread when dropped.
    #[derive(Debug)]
    #[must_use = "the deterministic sources last only while the guard is alive"]
    pub struct Guard(());

    impl Drop for Guard {
        fn drop(&mut self) {
            STATE.with(|s| *s.borrow_mut() = None);
        }
    }

    /// Make this thread's randomness a sequence seeded by `seed` and its wall clock start at
    /// 2026-01-01T00:00:00Z and follow the tokio clock. Call inside a tokio runtime.
    pub fn install(seed: u64) -> Guard {
        let state = State {
            rng: seed,
            epoch: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            start: tokio::time::Instant::now(),
        };
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Guard(())
    }

    /// splitmix64: tiny, full-period, and plenty for names and jitter in a simulation.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn fill(buf: &mut [u8]) -> bool {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let Some(state) = s.as_mut() else {
                return false;
            };
            for chunk in buf.chunks_mut(8) {
                let v = next(&mut state.rng).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            true
        })
    }

    pub(super) fn now() -> Option<SystemTime> {
        STATE.with(|s| s.borrow().as_ref().map(|st| st.epoch + st.start.elapsed()))
    }
}

/// `bytes` random bytes ([`fill_random`]) as lower-case hex: temporary names, secrets.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf);
    hex::encode(buf)
}

/// A reqwest client builder with this crate's transport settings; every HTTP client in the
/// crate starts here.
///
/// Natively: rustls with the aws-lc-rs crypto provider handed to this client (no process-wide
/// default is read or installed), the Mozilla root certificates bundled in the binary (`webpki-roots`, as before: no
/// dependency on the system's certificate store), and ALPN offering HTTP/2
/// then HTTP/1.1. On `wasm32`: the browser's `fetch`, which does TLS itself.
pub fn http_client() -> crate::Result<reqwest::ClientBuilder> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                crate::Error::invalid_because("TLS configuration", "no safe protocol version", e)
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(reqwest::Client::builder().tls_backend_preconfigured(tls))
    }
    #[cfg(target_arch = "wasm32")]
    Ok(reqwest::Client::builder())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn interval_ticks_on_schedule_and_skips_missed_ticks() {
        let start = Instant::now();
        let mut ticks = interval(Duration::from_secs(10));
        let first = ticks.next().await.expect("tick");
        assert_eq!(first.duration_since(start), Duration::from_secs(10));
        let second = ticks.next().await.expect("tick");
        assert_eq!(second.duration_since(start), Duration::from_secs(20));
        // Stall for 35 s: the missed ticks at 30 s and 40 s are skipped, not bunched up.
        sleep(Duration::from_secs(35)).await;
        let late = ticks.next().await.expect("tick");
        assert_eq!(late.duration_since(start), Duration::from_secs(30));
        let next = ticks.next().await.expect("tick");
        assert_eq!(next.duration_since(start), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_gives_up_and_passes_through() {
        let slow = timeout(Duration::from_secs(1), sleep(Duration::from_secs(5))).await;
        assert_eq!(slow, Err(Elapsed(Duration::from_secs(1))));
        let fast = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(fast, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn spawned_task_can_be_aborted_and_awaited() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = spawn(async move {
            loop {
                let _ = tx.send(());
                sleep(Duration::from_secs(1)).await;
            }
        });
        rx.recv().await.expect("the task runs");
        assert!(!task.is_finished());
        task.shutdown().await;
        // The sender was dropped with the task: the channel closes after the buffered sends.
        while rx.recv().await.is_some() {}
        let done = spawn(async {});
        let probe = done.finished.clone();
        done.join().await;
        assert!(probe.load(Ordering::Acquire));
    }

    /// `join` resumes the task's panic with its payload; an aborted task joins quietly.
    #[tokio::test]
    async fn join_resumes_the_panic_of_the_task() {
        use futures::FutureExt;
        let task = spawn(async { panic!("boom in the task") });
        let joined = std::panic::AssertUnwindSafe(task.join())
            .catch_unwind()
            .await;
        let payload = joined.expect_err("the panic reaches join");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the task"));
        // The runtime survived: tasks still run and join normally.
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(async move {
            let _ = tx.send(7);
        })
        .join()
        .await;
        assert_eq!(rx.await, Ok(7));
        let pending = spawn(futures::future::pending());
        pending.abort();
        pending.join().await;
    }

    #[tokio::test]
    async fn random_bytes_differ_and_blocking_work_runs() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        fill_random(&mut a);
        fill_random(&mut b);
        assert_ne!(a, b);
        assert_eq!(spawn_blocking(|| 6 * 7).await.expect("runs"), 42);
    }

    #[test]
    fn http_client_takes_the_explicit_tls_config() {
        // reqwest refuses to build with a preconfigured TLS value it does not recognise (a
        // different rustls major), so building proves the aws-lc-rs config is the one in use.
        http_client().expect("TLS config").build().expect("client");
    }
}
