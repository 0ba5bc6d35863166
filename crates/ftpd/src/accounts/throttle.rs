//! Throttle: a byte-rate limiter per user and direction, shared by all of that user's
//! sessions, so a cap holds however many connections they open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far behind its schedule a limiter may fall and catch up at full speed: the burst.
const BURST: Duration = Duration::from_millis(50);

/// Which way a capped transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// RETR.
    Download,
    /// STOR, APPE, STOU.
    Upload,
}

/// A virtual schedule: each chunk moves the time at which the budget is spent by
/// `bytes / rate`; a taker sleeps until then. Several sessions taking from one limiter share
/// its rate.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: AtomicU64,
    spent_until: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter at `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_second: AtomicU64::new(bytes_per_second.max(1)),
            spent_until: Mutex::new(Instant::now()),
        }
    }

    /// The rate now.
    pub fn rate(&self) -> u64 {
        self.bytes_per_second.load(Ordering::Relaxed)
    }

    /// The largest chunk to take at once, so that each wait stays short (about 100 ms) and
    /// an ABOR or a shutdown is never held up long.
    pub fn chunk(&self) -> usize {
        usize::try_from(self.rate() / 10)
            .unwrap_or(usize::MAX)
            .clamp(4096, 256 * 1024)
    }

    /// Accounts for `bytes` and sleeps (holding no lock) until the schedule allows them.
    pub fn take(&self, bytes: usize) {
        let rate = self.rate() as f64;
        let wait = {
            let mut spent_until = self
                .spent_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let earliest = now.checked_sub(BURST).unwrap_or(now);
            if *spent_until < earliest {
                *spent_until = earliest;
            }
            *spent_until += Duration::from_secs_f64(bytes as f64 / rate);
            spent_until.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// The limiters, one per user and direction, made on first use and kept (there is one per
/// configured cap, so the map stays small); a reload that changes a rate changes it in place.
#[derive(Debug, Default)]
pub struct Throttles {
    limiters: Mutex<HashMap<(String, Way), Arc<RateLimiter>>>,
}

impl Throttles {
    /// The shared limiter for `user` going `way` at `bytes_per_second`.
    pub fn limiter(&self, user: &str, way: Way, bytes_per_second: u64) -> Arc<RateLimiter> {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let limiter = limiters
            .entry((user.to_owned(), way))
            .or_insert_with(|| Arc::new(RateLimiter::new(bytes_per_second)));
        limiter
            .bytes_per_second
            .store(bytes_per_second.max(1), Ordering::Relaxed);
        Arc::clone(limiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_takers_share_one_rate() {
        let throttles = Throttles::default();
        let limiter = throttles.limiter("alice", Way::Download, 4 << 20);
        let same = throttles.limiter("alice", Way::Download, 4 << 20);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for limiter in [&limiter, &same] {
                scope.spawn(move || {
                    for _ in 0..8 {
                        limiter.take(128 * 1024);
                    }
                });
            }
        });
        // 2 MiB at 4 MiB/s: half a second, less the burst.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(!Arc::ptr_eq(
            &limiter,
            &throttles.limiter("bob", Way::Download, 1)
        ));
    }
}
