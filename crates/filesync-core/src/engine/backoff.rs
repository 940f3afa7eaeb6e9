//! [`Backoff`]: exponential backoff with jitter, the one delay schedule behind transfer retries
//! (the [executor](super::executor)), stream recovery ([`stream`](super::stream)) and the relay
//! exchange loop ([`exchange`](super::exchange)).
//!
//! The delay before retry `n` (0-based) is `min(base × 2ⁿ, cap)`, multiplied by a random factor
//! in `1 ± jitter` (as object_store's `client/backoff.rs`, with a multiplicative jitter instead
//! of a decorrelated one, to keep the original's schedule). Random factors come from the OS
//! generator; [`Backoff::with_seed`] makes them a deterministic sequence, for tests.

use std::time::Duration;

use crate::rt;

/// Where jitter factors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The OS generator ([`rt::fill_random`]).
    Os,
    /// A splitmix64 sequence from a seed: the same seed gives the same delays.
    Seeded(u64),
}

/// An exponential backoff schedule: `base`, doubling, at most `cap` (before jitter), each
/// delay multiplied by a random factor in `1 ± jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: f64,
    source: Source,
}

impl Backoff {
    /// `base` doubling without a cap, jittered by `1 ± jitter`, with OS randomness.
    pub(crate) fn new(base: Duration, jitter: f64) -> Self {
        Self {
            base,
            cap: Duration::MAX,
            jitter,
            source: Source::Os,
        }
    }

    /// Cap every delay (before jitter) at `cap`.
    pub(crate) fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Draw jitter from a deterministic sequence seeded with `seed` (tests).
    pub(crate) fn with_seed(mut self, seed: u64) -> Self {
        self.source = Source::Seeded(seed);
        self
    }

    /// [`with_seed`](Self::with_seed) when [`Options::jitter_seed`](super::Options::jitter_seed)
    /// is set, mixed with `salt` (which transfer, which attempt) so that different schedules
    /// draw different but reproducible factors; the OS generator otherwise.
    pub(crate) fn seeded(self, seed: Option<u64>, salt: u64) -> Self {
        match seed {
            Some(seed) => self.with_seed(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => self,
        }
    }

    /// A stable salt for a string (FNV-1a), e.g. a file id.
    pub(crate) fn salt(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The delay before retry `n` (0-based), before jitter: `min(base × 2ⁿ, cap)`.
    pub(crate) fn delay(&self, n: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(n))
            .min(self.cap)
    }

    /// The delay before retry `n` (0-based): [`delay`](Self::delay) times a random factor in
    /// `1 ± jitter`.
    pub(crate) fn jittered(&mut self, n: u32) -> Duration {
        let unit = f64::from(self.next_u32()) / f64::from(u32::MAX);
        let factor = (1.0 - self.jitter + 2.0 * self.jitter * unit).max(0.0);
        let delay = self.delay(n);
        Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    fn next_u32(&mut self) -> u32 {
        match &mut self.source {
            Source::Os => {
                let mut r = [0u8; 4];
                rt::fill_random(&mut r);
                u32::from_le_bytes(r)
            }
            Source::Seeded(state) => {
                // splitmix64
                *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 32) as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let schedule = |seed| {
            let mut b = Backoff::new(SECOND, 0.2).with_seed(seed);
            (0..8).map(|n| b.jittered(n)).collect::<Vec<_>>()
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn delays_double_from_the_base() {
        let b = Backoff::new(SECOND, 0.2);
        let delays: Vec<_> = (0..5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        let mut exact = Backoff::new(SECOND, 0.0).with_seed(1);
        for n in 0..5 {
            assert_eq!(exact.jittered(n), b.delay(n));
        }
    }

    #[test]
    fn jitter_stays_within_its_band_and_delays_grow() {
        let mut b = Backoff::new(SECOND, 0.2).with_seed(42);
        for n in 0..10 {
            let d = b.jittered(n);
            let nominal = b.delay(n);
            assert!(
                d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2),
                "{n}: {d:?}"
            );
        }
        // With jitter below a third, the next delay's lowest value is above this one's highest.
        let mut previous = Duration::ZERO;
        for n in 0..10 {
            let d = b.jittered(n);
            assert!(d > previous, "{n}: {d:?} after {previous:?}");
            previous = d;
        }
    }

    #[test]
    fn delays_never_exceed_the_cap() {
        let cap = Duration::from_secs(60);
        let mut exact = Backoff::new(SECOND, 0.0).with_cap(cap).with_seed(3);
        let mut jittered = Backoff::new(SECOND, 0.2).with_cap(cap).with_seed(3);
        for n in [0, 5, 6, 7, 20, 64, u32::MAX] {
            assert!(exact.jittered(n) <= cap, "{n}");
            assert!(jittered.jittered(n) <= cap.mul_f64(1.2), "{n}");
        }
        assert_eq!(exact.jittered(u32::MAX), cap);
    }

    #[test]
    fn os_randomness_stays_within_the_band_without_a_cap() {
        let mut b = Backoff::new(SECOND, 0.2);
        for n in 0..40 {
            let d = b.jittered(n);
            assert!(
                d >= b.delay(n).mul_f64(0.8) && d <= b.delay(n).mul_f64(1.2),
                "{n}"
            );
        }
    }
}
