//! Engine options ([`Options`]) and the transfer retry policy ([`RetryPolicy`]): public, and
//! re-exported at the crate root.

use std::time::Duration;

use super::backoff::Backoff;

/// Engine options, with the original's defaults (CFG-2, CFG-3). Every one is settable (WEAK-22).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Downloads at once (2).
    pub max_concurrent_downloads: usize,
    /// Uploads at once (2).
    pub max_concurrent_uploads: usize,
    /// How often the remote's health is probed (10 s).
    pub health_check_interval: Duration,
    /// `resolve_file_url` moves a queued download to the front (true).
    pub auto_prioritize_on_resolve: bool,
    /// How long `resolve_file_url` reuses a signed download URL for the same object instead
    /// of asking the signer again (60 s; zero disables). Keep it well under the server's URL
    /// lifetime (900 s by default) (WEAK-16).
    pub signed_url_reuse: Duration,
    /// Heartbeat period (15 s); zero disables it.
    pub heartbeat_interval: Duration,
    /// How long the stream may lag behind file events before it is restarted (30 s); zero disables.
    pub stream_stall_threshold: Duration,
    /// Stream attempts before giving up to the heartbeat (5).
    pub max_stream_recovery_attempts: u32,
    /// First stream-recovery delay (1 s), doubling.
    pub stream_recovery_base_delay: Duration,
    /// Cap of one stream-recovery delay (60 s).
    pub stream_recovery_max_delay: Duration,
    /// Total stream-recovery window (120 s).
    pub stream_recovery_window: Duration,
    /// Transfer retries: 1 s base, ×0.8–1.2 jitter, 5 retries, 60 s window.
    pub retry: RetryPolicy,
    /// Longest one transfer attempt may take (5 min).
    pub transfer_timeout: Duration,
    /// Directory the `FileSystem` is rooted at, to build `file://` URLs (API-9).
    pub local_path_root: Option<String>,
    /// Where the random jitter of every backoff (transfer retries, stream recovery, relay
    /// exchange) comes from: `None` (the default) draws from the OS; `Some(seed)` makes the
    /// delays a reproducible sequence, for tests and simulations on a paused clock.
    pub jitter_seed: Option<u64>,
    /// How old unused local content, sidecars and temporary files must be before garbage
    /// collection removes them (1 h): younger ones may belong to a save still running in this
    /// or another process on the same directory. Collection runs when the engine starts
    /// leading and on [`FileSync::collect_garbage`](crate::FileSync::collect_garbage).
    pub orphan_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_concurrent_downloads: 2,
            max_concurrent_uploads: 2,
            health_check_interval: Duration::from_millis(10_000),
            auto_prioritize_on_resolve: true,
            signed_url_reuse: Duration::from_secs(60),
            heartbeat_interval: Duration::from_millis(15_000),
            stream_stall_threshold: Duration::from_millis(30_000),
            max_stream_recovery_attempts: 5,
            stream_recovery_base_delay: Duration::from_millis(1000),
            stream_recovery_max_delay: Duration::from_millis(60_000),
            stream_recovery_window: Duration::from_millis(120_000),
            retry: RetryPolicy::default(),
            transfer_timeout: Duration::from_secs(300),
            local_path_root: None,
            jitter_seed: None,
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

/// How failed transfers are retried (EXE-3). Defaults: 1 s base doubling (1, 2, 4, 8, 16 s),
/// each delay jittered by ×0.8–1.2, at most 5 retries, and no retry that would end more than
/// 60 s after the first failure.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The first delay.
    pub base_delay: Duration,
    /// Total time after the first failure within which retries may start (`maxDelayMs`).
    pub max_elapsed: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Each delay is multiplied by a random factor in `1 ± jitter`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(1000),
            max_elapsed: Duration::from_millis(60_000),
            max_retries: 5,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.backoff().delay(retry)
    }

    /// This policy's delay schedule: `base_delay` doubling, no cap, `1 ± jitter`.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.jitter)
    }
}
