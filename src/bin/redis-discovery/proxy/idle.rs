//! [`Activity`]: whether a client connection is idle (no request in
//! flight for `--idle-timeout`), so that it is closed and its
//! `--max-connections` slot freed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One connection's requests in flight and when the last one began or
/// ended.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request's start or end.
    last_ms: AtomicU64,
}

/// A request in flight until dropped.
#[derive(Debug)]
pub(crate) struct Busy<'a>(&'a Activity);

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Marks a request in flight until the guard is dropped (its response
    /// head is sent or the request is cancelled).
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self)
    }

    /// When the connection is idle if nothing happens before.
    pub(crate) fn idle_at(&self, timeout: Duration) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened + last + timeout
    }

    /// No request in flight, and none began or ended for `timeout`.
    pub(crate) fn is_idle(&self, timeout: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_at(timeout)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
